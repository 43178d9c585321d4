// Vision-tower ops: patch embedding (the ViT's stride-p convolution, run as im2col + matmul)
// and the Idefics3 pixel shuffle (core/ops.h, MODELS.md §3.4, §3.5, §4.3).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "core/ops_internal.h"
#include "core/scratch.h"

namespace glimpse::ops {

using detail::parallel_rows;
using detail::require;

namespace {

void check_kernel(const Tensor& kernel, int64_t C, int64_t p) {
    if (kernel.data == nullptr) throw model_error(kernel.name, "tensor has no data");
    if (kernel.ne[0] != p || kernel.ne[1] != p || kernel.ne[2] != C || kernel.ne[3] <= 0)
        throw model_error(kernel.name, "patch kernel has shape " + kernel.shape_string() + ", expected [" +
                                           std::to_string(p) + ", " + std::to_string(p) + ", " +
                                           std::to_string(C) + ", D]");
    const DType t = kernel.dtype;
    if (t != DType::F32 && t != DType::F16 && t != DType::BF16)
        throw model_error(kernel.name, "patch kernel type " + std::string(dtype_name(t)) +
                                           " is not supported (F32, F16 or BF16)");
    // Each filter [C][p][p] must be one contiguous run of values (filters may be spaced by nb[3]).
    const uint64_t elem = dtype_info(t).block_bytes;
    if (kernel.nb[0] != elem || kernel.nb[1] != elem * uint64_t(p) || kernel.nb[2] != kernel.nb[1] * uint64_t(p) ||
        kernel.nb[3] < kernel.nb[2] * uint64_t(C))
        throw model_error(kernel.name, "patch kernel filters are not contiguous");
}

}  // namespace

// The convolution as a matrix product: im2col gathers each patch into a row
// cols[patch][k], k = ch·p·p + kh·p + kw, which is exactly the order of one HF filter
// W[o][ch][kh][kw]; so the kernel, viewed as a weight matrix ne = {C·p·p, D} (filter o = row o),
// gives out = cols · Wᵀ through matmul, then + bias.
void patch_embed(const float* image, int64_t C, int64_t H, int64_t W, const Tensor& kernel,
                 const float* bias, int64_t p, float* out, ThreadPool& pool, int64_t n_images) {
    require(C > 0 && H >= 0 && W >= 0 && p > 0 && n_images >= 0, "patch_embed", "bad image or patch size");
    check_kernel(kernel, C, p);
    const int64_t D = kernel.ne[3], K = C * p * p;
    const int64_t grid_w = W / p, n_patches = (H / p) * grid_w, rows = n_images * n_patches;
    if (rows == 0) return;

    // im2col into this thread's scratch (core/scratch.h).
    thread_local std::vector<float> cols_store;
    ScratchFloats cols(cols_store, size_t(rows * K));
    float* const u0 = cols.data();
    parallel_rows(pool, rows, K, [&](int64_t first, int64_t last) {
        for (int64_t row = first; row < last; ++row) {
            const int64_t i = row / n_patches, patch = row % n_patches;
            const int64_t r = patch / grid_w, c = patch % grid_w;
            const float* img = image + i * C * H * W;
            float* u = u0 + row * K;
            for (int64_t ch = 0; ch < C; ++ch)
                for (int64_t kh = 0; kh < p; ++kh)
                    std::memcpy(u + (ch * p + kh) * p, img + (ch * H + r * p + kh) * W + c * p,
                                size_t(p) * sizeof(float));
        }
    });

    Tensor w = kernel;
    w.n_dims = 2;
    w.ne = {K, D, 1, 1};
    w.nb = {kernel.nb[0], kernel.nb[3], kernel.nb[3] * uint64_t(D), kernel.nb[3] * uint64_t(D)};
    matmul(w, u0, out, rows, pool);
    if (bias) add_row_bias(out, bias, rows, D);
}

// Derivation from HF (modeling_smolvlm.py / modeling_idefics3.py `pixel_shuffle`), x as
// [side][side][dim] (h, w, e):
//   view(side, G, s·dim)       → a[h][wb][dw·dim + e]          with w = s·wb + dw
//   permute(1, 0, 2)           → b[wb][h][j]
//   reshape(G, G, s²·dim)      → c[wb][hb][dh·s·dim + j]       with h = s·hb + dh
//   permute(1, 0, 2), reshape  → y[hb·G + wb][dh·s·dim + dw·dim + e]
// which is the formula in core/ops.h with R = hb, C = wb.
void pixel_shuffle(const float* x, int64_t seq, int64_t dim, int64_t s, float* y) {
    require(seq >= 0 && dim >= 0 && s > 0, "pixel_shuffle", "bad size");
    const auto side = int64_t(std::llround(std::sqrt(double(seq))));
    require(side * side == seq, "pixel_shuffle", "sequence length is not a square");
    require(side % s == 0, "pixel_shuffle", "grid side is not a multiple of the scale factor");
    const int64_t G = side / s;
    if (dim == 0) return;
    for (int64_t R = 0; R < G; ++R)
        for (int64_t C = 0; C < G; ++C) {
            float* token = y + (R * G + C) * dim * s * s;
            for (int64_t dh = 0; dh < s; ++dh)
                for (int64_t dw = 0; dw < s; ++dw) {
                    const float* src = x + ((s * R + dh) * side + (s * C + dw)) * dim;
                    std::memcpy(token + (dh * s + dw) * dim, src, size_t(dim) * sizeof(float));
                }
        }
}

}  // namespace glimpse::ops
