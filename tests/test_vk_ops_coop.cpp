// The tensor-core matmul and attention (shaders/matmul_coop.comp, vk::MatmulPath::Coop*;
// shaders/attention_coop.comp, vk::AttentionPath::Coop*): on every device their emulated builds
// (the three cooperative-matrix operations written out), and the real kernels where the device
// has them, against f16-rounded inputs; when Auto takes them.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/fp16.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "core/quant.h"
#include "core/vk_ops.h"
#include "tests/test_vk_helpers.h"

using namespace glimpse;
using glimpse::test::make_weight;
using glimpse::test::random_floats;
using glimpse::test::reference_pool;
using glimpse::test::require_close;
using glimpse::test::run_matmul;

namespace {

// Each value rounded to f16 (and back), as the tensor-core kernels stage it.
std::vector<float> f16_rounded(std::vector<float> v) {
    for (float& x : v) x = fp16_to_f32(f32_to_fp16(x));
    return v;
}

// y = x·Wᵀ with x and W's values rounded to f16 first, summed in double: what the tensor-core
// kernel computes (f16 products are exact in float; only its float sums differ).
std::vector<float> f16_reference(const Tensor& W, const std::vector<float>& x, int64_t M) {
    const int64_t K = W.ne[0], N = W.ne[1];
    std::vector<float> w(size_t(K * N)), y(size_t(M * N));
    for (int64_t n = 0; n < N; ++n)
        dequantize_row(W.dtype, static_cast<const uint8_t*>(W.data) + n * W.nb[1], w.data() + n * K, K);
    w = f16_rounded(std::move(w));
    const std::vector<float> xr = f16_rounded(x);
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            double s = 0;
            for (int64_t k = 0; k < K; ++k) s += double(xr[size_t(m * K + k)]) * w[size_t(n * K + k)];
            y[size_t(m * N + n)] = float(s);
        }
    return y;
}

}  // namespace

TEST_CASE("the tensor-core matmul (emulated here, and real where the device has it) sums f16-rounded x and W",
          "[vulkan]") {
    const DType type = GENERATE(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K);
    VK_OR_SKIP(ctx);
    const int64_t block = dtype_info(type).block_elems;
    struct Shape {
        int64_t M, N, K;
    };
    // K a multiple of 4 but not of the 32-value step (float types); M and N on both sides of
    // the 64- and 128-wide tiles and of the 16-wide fragments; the model widths.
    const std::vector<Shape> shapes = block == 1
        ? std::vector<Shape>{{9, 7, 4}, {13, 129, 100}, {129, 65, 132}, {127, 960, 64}, {200, 17, 576}}
        : block == 32 ? std::vector<Shape>{{9, 7, 32}, {65, 129, 96}, {127, 576, 64}, {200, 33, 160}}
                      : std::vector<Shape>{{9, 33, 256}, {130, 17, 512}, {64, 200, 256}};
    std::vector<vk::MatmulPath> paths{vk::MatmulPath::CoopEmu64, vk::MatmulPath::CoopEmu128};
    if (ctx->coop_matmul_supported()) {
        paths.push_back(vk::MatmulPath::Coop64);
        paths.push_back(vk::MatmulPath::Coop128);
    }
    for (const Shape& s : shapes) {
        const Tensor W = make_weight(type, s.K, s.N, random_floats(size_t(s.K * s.N), 11 + s.N));
        const auto x = random_floats(size_t(s.M * s.K), 5 + s.M);
        const auto ref = f16_reference(W, x, s.M);
        std::vector<float> exact(size_t(s.M * s.N));
        matmul_reference(W, x.data(), exact.data(), s.M);
        for (const vk::MatmulPath p : paths) {
            INFO(dtype_name(type) << " M=" << s.M << " N=" << s.N << " K=" << s.K << " path=" << int(p));
            const auto got = run_matmul(*ctx, W, x, s.M, p);
            // Float sums of K exact products against double sums, and a driver's rounding of
            // the halves (packHalf2x16's rounding is the implementation's).
            require_close(got, ref, 1e-5f * float(s.K) + 1e-5f, 1e-4f);
            // And the unrounded product, to what f16 inputs allow.
            require_close(got, exact, 1e-3f * float(s.K) + 1e-3f, 2e-3f);
        }
    }
}

TEST_CASE("the tensor-core matmul is taken only where asked and possible", "[vulkan]") {
    VK_OR_SKIP(ctx);
    vk::MatmulEpilogue plain, glu, norm;
    glu.glu = true;
    vk::Buffer nw = vk::upload_floats(*ctx, std::vector<float>(64, 1.0f));
    norm.norm = &nw;
    CHECK(vk::coop_matmul_fits(64, plain));
    CHECK_FALSE(vk::coop_matmul_fits(66, plain));  // K % 4: w_vec4 reads four values at once
    CHECK(vk::coop_matmul_fits(64, glu));
    CHECK_FALSE(vk::coop_matmul_fits(64, norm));
    // Off unless asked, even where supported (its tests have not run on a GPU yet).
    CHECK_FALSE(ctx->coop_matmul());
    CHECK_FALSE(vk::ContextOptions{}.coop_matmul.has_value());
    const Tensor W = make_weight(DType::F16, 64, 20, random_floats(64 * 20, 3));
    const vk::DeviceMatrix dw = vk::upload_matrix(*ctx, W), du = vk::upload_stacked(*ctx, {&W, &W});
    vk::Buffer dx = vk::upload_floats(*ctx, random_floats(64 * 30, 4)), dy(*ctx, 30 * 20 * 4);
    vk::Recorder rec(*ctx);
    rec.begin();
    CHECK_THROWS_AS(vk::matmul(rec, du, dx, dy, 30, glu, vk::MatmulPath::CoopEmu128), std::invalid_argument);
    CHECK_THROWS_AS(vk::matmul(rec, dw, dx, dy, 30, norm, vk::MatmulPath::CoopEmu64), std::invalid_argument);
    if (!ctx->coop_matmul_supported()) {
        // Asked for on a device without it: a clear device error naming the device.
        CHECK_THROWS_WITH(vk::matmul(rec, dw, dx, dy, 30, vk::MatmulPath::Coop),
                          Catch::Contains(ctx->label()) && Catch::Contains("tensor-core"));
    }
    rec.submit_and_wait();
    // Auto on this context: the tiled kernel (profiled by shader name).
    const bool was = ctx->profiling();
    if (!ctx->set_profiling(true)) return;  // no timestamps on this queue
    ctx->take_profile();
    rec.begin();
    vk::matmul(rec, dw, dx, dy, 30, vk::MatmulPath::Auto);
    rec.submit_and_wait();
    const vk::DeviceProfile prof = ctx->take_profile();
    ctx->set_profiling(was);
    CHECK(prof.shaders.count("matmul_f16") == 1);
    CHECK(prof.shaders.count("matmul_coop_f16") == 0);
}

TEST_CASE("the tensor-core attention (emulated here, and real where the device has it) is attention over "
          "f16-rounded q, K and V",
          "[vulkan]") {
    VK_OR_SKIP(ctx);
    using Shape = glimpse::test::AttentionShape;
    // Query blocks of 64 rows and key tiles of 32: rows and keys short of, at and past them;
    // each head_dim it takes; grouped KV heads; a batch of tiles; causal rows, some of whose
    // tiles they see none of; a SigLIP-sized head block.
    const Shape shapes[] = {
        {1, 16, 1, 1, 1, 16, false, 0},  {1, 17, 31, 2, 1, 32, false, 0},  {1, 64, 32, 3, 3, 48, false, 0},
        {1, 65, 33, 4, 2, 64, false, 0}, {1, 130, 257, 2, 2, 64, false, 0}, {3, 40, 40, 3, 3, 64, false, 0},
        {2, 33, 50, 4, 2, 32, true, 17}, {1, 100, 100, 2, 1, 64, true, 0},  {1, 70, 200, 2, 2, 16, true, 120},
        {1, 256, 256, 2, 2, 64, false, 0},
    };
    std::vector<vk::AttentionPath> paths{vk::AttentionPath::CoopEmu};
    if (ctx->coop_matmul_supported()) paths.push_back(vk::AttentionPath::Coop);
    for (const Shape& s : shapes)
        for (const vk::AttentionPath path : paths) {
            INFO("batch=" << s.batch << " n_q=" << s.n_q << " n_kv=" << s.n_kv << " heads=" << s.heads << "/"
                          << s.kv_heads << " dim=" << s.dim << " causal=" << s.causal << " q_pos0=" << s.q_pos0
                          << " path=" << int(path));
            const size_t nq = size_t(s.n_q * s.heads * s.dim), nk = size_t(s.n_kv * s.kv_heads * s.dim);
            const size_t B = size_t(s.batch);
            const auto q = random_floats(B * nq, 91 + s.n_q, 2.0f), k = random_floats(B * nk, 92 + s.n_kv, 2.0f);
            const auto v = random_floats(B * nk, 93);
            const float scale = 1.0f / std::sqrt(float(s.dim));
            vk::Buffer dq = vk::upload_floats(*ctx, q), dk = vk::upload_floats(*ctx, k);
            vk::Buffer dv = vk::upload_floats(*ctx, v), dout(*ctx, B * nq * 4);
            vk::Recorder rec(*ctx);
            rec.begin();
            vk::attention(rec, dq, dk, dv, dout, s.n_q, s.n_kv, s.heads, s.kv_heads, s.dim, scale, s.causal, s.q_pos0,
                          path, nullptr, s.batch);
            rec.submit_and_wait();
            const std::vector<float> got = vk::download_floats(*ctx, dout, B * nq);
            // The reference over the same f16-rounded inputs, and over the exact ones. What
            // remains between the kernel and the first is P's rounding to f16 (2^-11 relative;
            // V's values are within ±1, so the weighted mean moves by less than 1e-3) and float
            // sums in another order.
            const auto qr = f16_rounded(q), kr = f16_rounded(k), vr = f16_rounded(v);
            std::vector<float> ref(B * nq), exact(B * nq);
            for (size_t b = 0; b < B; ++b) {
                ops::attention(qr.data() + b * nq, kr.data() + b * nk, vr.data() + b * nk, ref.data() + b * nq, s.n_q,
                               s.n_kv, s.heads, s.kv_heads, s.dim, scale, s.causal, s.q_pos0, reference_pool());
                ops::attention(q.data() + b * nq, k.data() + b * nk, v.data() + b * nk, exact.data() + b * nq, s.n_q,
                               s.n_kv, s.heads, s.kv_heads, s.dim, scale, s.causal, s.q_pos0, reference_pool());
            }
            require_close(got, ref, 1e-3f, 2e-3f);
            require_close(got, exact, 4e-3f, 4e-3f);
        }
}

TEST_CASE("the tensor-core attention is taken only where asked and possible", "[vulkan]") {
    VK_OR_SKIP(ctx);
    using P = vk::AttentionPath;
    // This context does not ask (coop_matmul unset): never Coop.
    CHECK(vk::attention_path(*ctx, 1024, 64, false) != P::Coop);
    CHECK(vk::attention_path(*ctx, 1024, 64, false) != P::CoopEmu);
    vk::ContextOptions o = ctx->options();
    o.coop_matmul_emulated = true;  // where the tensor cores would run, the emulated kernel
    vk::Context emu(ctx->info().index, o);
    const bool room = emu.info().max_shared_memory >= vk::kVkAttentionCoopShared;
    CHECK(vk::attention_path(emu, 1024, 64, false) == (room ? P::CoopEmu : P::Blocked));
    CHECK(vk::attention_path(emu, 1024, 64, true) != P::CoopEmu);  // causal: not the ViT's
    CHECK(vk::attention_path(emu, 1024, 36, false) != P::CoopEmu);  // head_dim % 16
    CHECK(vk::attention_path(emu, 1024, 80, false) != P::CoopEmu);  // head_dim > 64
    CHECK(vk::attention_path(emu, 8, 64, false) == P::PerRow);      // few rows
    o.coop_attention = false;  // the products on tensor cores, the attention not
    vk::Context apart(ctx->info().index, o);
    CHECK(vk::attention_path(apart, 1024, 64, false) != P::CoopEmu);
    vk::Buffer d(*ctx, 64 * 80 * 4);
    vk::Recorder rec(*ctx);
    rec.begin();
    CHECK_THROWS_AS(vk::attention(rec, d, d, d, d, 16, 16, 1, 1, 36, 1.0f, false, 0, P::CoopEmu),
                    std::invalid_argument);
    CHECK_THROWS_AS(vk::attention(rec, d, d, d, d, 16, 16, 1, 1, 80, 1.0f, false, 0, P::CoopEmu),
                    std::invalid_argument);
    if (!ctx->coop_matmul_supported())
        CHECK_THROWS_WITH(vk::attention(rec, d, d, d, d, 16, 16, 1, 1, 64, 1.0f, false, 0, P::Coop),
                          Catch::Contains(ctx->label()) && Catch::Contains("tensor-core"));
    rec.end();
}
