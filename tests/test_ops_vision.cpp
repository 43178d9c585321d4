// ops::patch_embed against a naive convolution; ops::pixel_shuffle against a transcription of
// HF's view/permute/reshape sequence built from generic reshape/permute steps.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "tests/helpers.h"

using namespace glimpse;
using glimpse::test::close_enough;
using glimpse::test::random_floats;

// ---- pixel shuffle --------------------------------------------------------------------------

namespace {

// A row-major (outermost-first, like torch) N-D array: just enough of torch's semantics to
// transcribe the HF code. view/reshape relabel the shape of the logical row-major order;
// permute materialises the permuted array in row-major order.
struct NdArray {
    std::vector<int64_t> shape;
    std::vector<float> data;
};

NdArray reshape(NdArray a, const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    REQUIRE(n == int64_t(a.data.size()));
    a.shape = shape;
    return a;
}

// torch.permute(dims): out.shape[k] = in.shape[dims[k]], out[idx] = in[j] with j[dims[k]] = idx[k].
NdArray permute(const NdArray& a, const std::vector<int>& dims) {
    const size_t nd = a.shape.size();
    NdArray out;
    for (size_t k = 0; k < nd; ++k) out.shape.push_back(a.shape[size_t(dims[k])]);
    out.data.resize(a.data.size());
    std::vector<int64_t> idx(nd, 0), j(nd);
    for (size_t flat = 0; flat < out.data.size(); ++flat) {
        for (size_t k = 0; k < nd; ++k) j[size_t(dims[k])] = idx[k];
        int64_t off = 0;
        for (size_t k = 0; k < nd; ++k) off = off * a.shape[k] + j[k];
        out.data[flat] = a.data[size_t(off)];
        for (size_t k = nd; k-- > 0;) {  // odometer over the output index, last axis fastest
            if (++idx[k] < out.shape[k]) break;
            idx[k] = 0;
        }
    }
    return out;
}

// modeling_smolvlm.py / modeling_idefics3.py `pixel_shuffle`, line by line (bsz = 1).
NdArray hf_pixel_shuffle(NdArray x, int64_t s) {
    const int64_t bsz = x.shape[0], seq = x.shape[1], embed_dim = x.shape[2];
    int64_t height = 0;
    while ((height + 1) * (height + 1) <= seq) ++height;
    const int64_t width = height;
    x = reshape(x, {bsz, height, width, embed_dim});
    x = reshape(x, {bsz, height, width / s, embed_dim * s});
    x = permute(x, {0, 2, 1, 3});
    x = reshape(x, {bsz, width / s, height / s, embed_dim * s * s});
    x = permute(x, {0, 2, 1, 3});
    x = reshape(x, {bsz, seq / (s * s), embed_dim * s * s});
    return x;
}

}  // namespace

TEST_CASE("pixel_shuffle equals HF's view/permute/reshape sequence", "[ops][pixel_shuffle]") {
    struct Case {
        int64_t side, s, dim;
    };
    const Case c = GENERATE(Case{2, 2, 1}, Case{4, 2, 3}, Case{6, 3, 2}, Case{8, 4, 5}, Case{8, 2, 7},
                            Case{32, 4, 768});
    const int64_t seq = c.side * c.side;
    NdArray x{{1, seq, c.dim}, std::vector<float>(size_t(seq * c.dim))};
    for (int64_t p = 0; p < seq; ++p)
        for (int64_t e = 0; e < c.dim; ++e) x.data[size_t(p * c.dim + e)] = float(p * 1000 + e);  // exact in float

    const NdArray ref = hf_pixel_shuffle(x, c.s);
    std::vector<float> y(x.data.size(), -1.0f);
    ops::pixel_shuffle(x.data.data(), seq, c.dim, c.s, y.data());
    REQUIRE(ref.shape == std::vector<int64_t>{1, seq / (c.s * c.s), c.dim * c.s * c.s});
    const auto diff = std::mismatch(y.begin(), y.end(), ref.data.begin());
    if (diff.first != y.end()) {
        INFO("index " << (diff.first - y.begin()) << ": got " << *diff.first << ", expected " << *diff.second);
        REQUIRE(false);
    }
}

TEST_CASE("pixel_shuffle: SmolVLM tile closed form (MODELS.md §3.5)", "[ops][pixel_shuffle]") {
    const int64_t side = 32, s = 4, D = 768, G = 8;
    std::vector<float> x(size_t(side * side * D)), y(x.size());
    for (int64_t p = 0; p < side * side; ++p)
        for (int64_t e = 0; e < D; ++e) x[size_t(p * D + e)] = float(p * 1000 + e);
    ops::pixel_shuffle(x.data(), side * side, D, s, y.data());
    // Output token t = R·8 + C, channel m = dh·(s·D) + dw·D + e takes patch (4R+dh)·32 + (4C+dw).
    for (int64_t t = 0; t < G * G; ++t)
        for (int64_t m = 0; m < s * s * D; ++m) {
            const int64_t R = t / G, C = t % G, dh = m / (s * D), dw = (m / D) % s, e = m % D;
            const auto val = int64_t(y[size_t(t * s * s * D + m)]);
            REQUIRE(val / 1000 == (s * R + dh) * side + (s * C + dw));
            REQUIRE(val % 1000 == e);
        }
}

TEST_CASE("pixel_shuffle rejects shapes it cannot shuffle", "[ops][pixel_shuffle]") {
    std::vector<float> buf(64);
    CHECK_THROWS_AS(ops::pixel_shuffle(buf.data(), 15, 1, 1, buf.data()), std::invalid_argument);  // not square
    CHECK_THROWS_AS(ops::pixel_shuffle(buf.data(), 36, 1, 4, buf.data()), std::invalid_argument);  // 6 % 4
    CHECK_THROWS_AS(ops::pixel_shuffle(buf.data(), 16, 1, 0, buf.data()), std::invalid_argument);
}

// ---- patch embedding ------------------------------------------------------------------------

namespace {

Tensor kernel_view(DType t, int64_t p, int64_t C, int64_t D, const void* data) {
    Tensor k;
    k.name = "v.patch_embd.weight";
    k.dtype = t;
    k.n_dims = 4;
    k.ne = {p, p, C, D};
    k.nb = contiguous_strides(t, k.ne);
    k.data = data;
    return k;
}

// Naive Conv2d(kernel p, stride p, no padding) in double over the HF weight w [D][C][p][p].
std::vector<double> conv_ref(const std::vector<float>& img, int64_t C, int64_t H, int64_t W,
                             const std::vector<float>& w, const float* bias, int64_t D, int64_t p) {
    const int64_t gh = H / p, gw = W / p;
    std::vector<double> out(size_t(gh * gw * D));
    for (int64_t r = 0; r < gh; ++r)
        for (int64_t c = 0; c < gw; ++c)
            for (int64_t o = 0; o < D; ++o) {
                double acc = bias ? bias[o] : 0.0;
                for (int64_t ch = 0; ch < C; ++ch)
                    for (int64_t kh = 0; kh < p; ++kh)
                        for (int64_t kw = 0; kw < p; ++kw)
                            acc += double(w[size_t(((o * C + ch) * p + kh) * p + kw)]) *
                                   img[size_t((ch * H + r * p + kh) * W + c * p + kw)];
                out[size_t((r * gw + c) * D + o)] = acc;
            }
    return out;
}

}  // namespace

TEST_CASE("patch_embed matches a naive convolution", "[ops][patch_embed]") {
    struct Case {
        int64_t C, H, W, p;
    };
    const Case c = GENERATE(Case{3, 32, 32, 16}, Case{3, 45, 30, 14}, Case{1, 5, 7, 2}, Case{2, 9, 9, 3},
                            Case{3, 1, 1, 1});
    const int64_t D = GENERATE(1, 7, 13, 127);
    const DType type = GENERATE(DType::F32, DType::F16, DType::BF16);
    const bool with_bias = GENERATE(true, false);
    INFO("C " << c.C << " H " << c.H << " W " << c.W << " p " << c.p << " D " << D << " " << dtype_name(type));
    ThreadPool pool(2);
    const auto img = random_floats(size_t(c.C * c.H * c.W), 300);
    auto w = random_floats(size_t(D * c.C * c.p * c.p), 301, 0.5f);
    const auto bias = random_floats(size_t(D), 302);

    // The kernel bytes in the requested type; the reference uses the values they hold.
    std::vector<uint16_t> halfs(w.size());
    const void* data = w.data();
    if (type != DType::F32) {
        for (size_t i = 0; i < w.size(); ++i) {
            halfs[i] = type == DType::F16 ? f32_to_fp16(w[i]) : f32_to_bf16(w[i]);
            w[i] = type == DType::F16 ? fp16_to_f32(halfs[i]) : bf16_to_f32(halfs[i]);
        }
        data = halfs.data();
    }
    const int64_t n_patches = (c.H / c.p) * (c.W / c.p);
    std::vector<float> out(size_t(n_patches * D), NAN);
    ops::patch_embed(img.data(), c.C, c.H, c.W, kernel_view(type, c.p, c.C, D, data),
                     with_bias ? bias.data() : nullptr, c.p, out.data(), pool);
    const auto ref = conv_ref(img, c.C, c.H, c.W, w, with_bias ? bias.data() : nullptr, D, c.p);
    for (size_t i = 0; i < out.size(); ++i) {
        INFO("index " << i);
        REQUIRE(close_enough(out[i], float(ref[i]), 1e-4f, 1e-4f));
    }
}

TEST_CASE("patch_embed: 1 and 2 threads give identical bits", "[ops][patch_embed]") {
    const int64_t C = 3, H = 128, W = 112, p = 16, D = 96;  // 56 patches: several blocks
    const auto img = random_floats(size_t(C * H * W), 310);
    const auto w = random_floats(size_t(D * C * p * p), 311);
    const auto bias = random_floats(size_t(D), 312);
    const Tensor kernel = kernel_view(DType::F32, p, C, D, w.data());
    std::vector<float> one(size_t((H / p) * (W / p) * D)), two(one.size());
    ThreadPool pool1(1), pool2(2);
    ops::patch_embed(img.data(), C, H, W, kernel, bias.data(), p, one.data(), pool1);
    ops::patch_embed(img.data(), C, H, W, kernel, bias.data(), p, two.data(), pool2);
    REQUIRE(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
}

TEST_CASE("patch_embed: images embedded together give each image's own bits", "[ops][patch_embed]") {
    const int64_t C = 3, H = 48, W = 40, p = 8, D = 40, n = 3, P = (H / p) * (W / p);
    const auto imgs = random_floats(size_t(n * C * H * W), 320);
    const auto w = random_floats(size_t(D * C * p * p), 321);
    const auto bias = random_floats(size_t(D), 322);
    std::vector<uint16_t> halfs(w.size());
    for (size_t i = 0; i < w.size(); ++i) halfs[i] = f32_to_fp16(w[i]);
    const Tensor kernel = kernel_view(DType::F16, p, C, D, halfs.data());
    const int threads = GENERATE(1, 2);
    ThreadPool pool(threads);
    std::vector<float> together(size_t(n * P * D), NAN), alone(together.size(), NAN);
    ops::patch_embed(imgs.data(), C, H, W, kernel, bias.data(), p, together.data(), pool, n);
    for (int64_t i = 0; i < n; ++i)
        ops::patch_embed(imgs.data() + i * C * H * W, C, H, W, kernel, bias.data(), p, alone.data() + i * P * D, pool);
    REQUIRE(std::memcmp(together.data(), alone.data(), together.size() * sizeof(float)) == 0);
}

TEST_CASE("patch_embed: a kernel of the wrong shape or type is a model error", "[ops][patch_embed]") {
    ThreadPool pool(1);
    std::vector<float> img(3 * 32 * 32), out(64);
    std::vector<uint8_t> bytes(8192);
    auto expect_model_error = [&](const Tensor& k, int64_t p) {
        try {
            ops::patch_embed(img.data(), 3, 32, 32, k, nullptr, p, out.data(), pool);
            FAIL("no exception");
        } catch (const Error& e) {
            CHECK(e.kind() == ErrorKind::Model);
            CHECK_THAT(std::string(e.what()), Catch::Contains("v.patch_embd.weight"));
        }
    };
    expect_model_error(kernel_view(DType::F32, 7, 3, 4, bytes.data()), 8);     // p mismatch
    expect_model_error(kernel_view(DType::F32, 8, 1, 4, bytes.data()), 8);     // C mismatch
    expect_model_error(kernel_view(DType::Q8_0, 32, 3, 1, bytes.data()), 32);  // unsupported type
}
