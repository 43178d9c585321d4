// Idefics3 pixel-shuffle + linear and the LLaVA MLP projector (fusion/projector.h).
#include "fusion/projector.h"

#include <cmath>
#include <stdexcept>

#include "core/matmul.h"
#include "core/ops.h"

namespace glimpse {

namespace {

int grid_side(int n_patches) {
    const int side = int(std::lround(std::sqrt(double(n_patches))));
    if (side * side != n_patches) throw std::invalid_argument("projector: n_patches is not a square");
    return side;
}

}  // namespace

int projector_tokens(const ProjectorConfig& c, int n_patches) {
    if (c.kind == ProjectorKind::Mlp) return n_patches;
    const int s = c.scale_factor;
    return s > 0 ? n_patches / (s * s) : 0;
}

int64_t projector_scratch_floats(const ProjectorConfig& c, int n_tiles, int n_patches, int n_embd) {
    if (c.kind == ProjectorKind::Idefics3) return int64_t(n_tiles) * n_patches * n_embd;  // shuffled rows
    return int64_t(n_tiles) * n_patches * c.n_hidden;                                     // mm.0 output
}

void project(const ProjectorConfig& c, const ProjectorWeights& w, const float* features, int n_tiles,
             int n_patches, int n_embd, float* out, float* scratch, ThreadPool& pool, const ActivationTrace* trace) {
    if (c.kind == ProjectorKind::Idefics3) {
        // Space-to-depth keeps the values, only reorders them: [T][D] -> [T/s²][D·s²] per tile.
        const int s = c.scale_factor;
        const int64_t tile_floats = int64_t(n_patches) * n_embd;
        grid_side(n_patches);
        for (int t = 0; t < n_tiles; ++t)
            ops::pixel_shuffle(features + t * tile_floats, n_patches, n_embd, s, scratch + t * tile_floats);
        const int64_t rows = int64_t(n_tiles) * projector_tokens(c, n_patches);
        if (trace) (*trace)("pixel_shuffle", scratch, rows, int64_t(n_embd) * s * s);
        matmul(w.fc, scratch, out, rows, pool);
        return;
    }
    // LLaVA: linear_1 -> GELU (erf, HF projector_hidden_act "gelu") -> linear_2.
    const int64_t rows = int64_t(n_tiles) * n_patches;
    matmul(w.mm0_w, features, scratch, rows, pool);
    ops::add_row_bias(scratch, f32_data(w.mm0_b), rows, c.n_hidden);
    if (trace) (*trace)("mm0", scratch, rows, c.n_hidden);
    ops::gelu_erf(scratch, scratch, rows * c.n_hidden, pool);
    if (trace) (*trace)("mm0_gelu", scratch, rows, c.n_hidden);
    matmul(w.mm2_w, scratch, out, rows, pool);
    ops::add_row_bias(out, f32_data(w.mm2_b), rows, c.n_out);
}

}  // namespace glimpse
