// The matmul engine (core/matmul.h) against its reference, on every weight type, awkward
// shapes, both kernel paths and several thread counts.
//
// Tolerances (got vs reference, per output element; u = 2^-24, S = Σ_k |x_k·w_k|):
// - f32 arithmetic (float weights; any weight type for M ≥ kMatvecMaxM): √K·u·S + tiny.
//   The reference sums in double, the kernels in float (one FMA chain per element in the
//   blocked kernel, 8–32 interleaved partial sums elsewhere). On these random signed inputs
//   rounding errors add like a random walk; the largest observed is ~0.25·√K·u·S. (The
//   worst case for adversarial inputs is K·u·S: this is a statistical bound, not a proof.)
// - quantized matvec (quantized weights, M < kMatvecMaxM): the activations are rounded to
//   8-bit codes first. Against the reference on those rounded activations x̂ the f32 bound
//   above applies; against the reference on x the extra error is bounded rigorously by
//   Σ_k |w_k|·|x_k − x̂_k| ≤ Σ_k |w_k|·amax_b(k)·(1/254 + 2^-10), where amax_b(k) is the
//   largest |x| in k's activation block (half a quantization step, plus the f16 rounding of
//   the Q8_0 scale).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/matmul.h"
#include "core/matmul_kernels.h"
#include "core/quant.h"
#include "core/thread_pool.h"
#include "tests/helpers.h"

using namespace glimpse;

namespace {

constexpr double kU = 1.0 / (1 << 24);

// N rows of K random values in [-1, 1) stored as type t (quantized with quantize_row), at
// byte offset `misalign` inside the buffer so kernels see unaligned rows too.
Tensor make_weight(DType t, int64_t K, int64_t N, uint64_t seed, size_t misalign = 0) {
    const auto vals = test::random_floats(size_t(K * N), seed);
    Tensor w;
    w.name = "test.weight";
    w.dtype = t;
    w.n_dims = 2;
    w.ne = {K, N, 1, 1};
    w.nb = contiguous_strides(t, w.ne);
    auto buf = std::shared_ptr<uint8_t[]>(new uint8_t[w.bytes() + misalign + 1]());
    for (int64_t n = 0; n < N; ++n) quantize_row(t, vals.data() + n * K, buf.get() + misalign + n * w.nb[1], K);
    w.data = buf.get() + misalign;
    w.storage = std::shared_ptr<const void>(buf, buf.get());
    return w;
}

std::vector<float> dequantized(const Tensor& w) {
    std::vector<float> out(size_t(w.ne[0] * w.ne[1]));
    for (int64_t n = 0; n < w.ne[1]; ++n) dequantize_row(w.dtype, w.row(n), out.data() + n * w.ne[0], w.ne[0]);
    return out;
}

bool is_quantized(DType t) { return t != DType::F32 && t != DType::F16 && t != DType::BF16; }
bool is_k(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

// The activations as the quantized matvec sees them (x̂), and per element the rigorous bound
// on |x − x̂| / ... : amax of the element's block times (1/254 + 2^-10).
void activation_rounding(DType t, const std::vector<float>& x, int64_t K, std::vector<float>& xq,
                         std::vector<float>& step) {
    const int64_t M = int64_t(x.size()) / K;
    xq.assign(x.size(), 0.0f);
    step.assign(x.size(), 0.0f);
    const int64_t blk = is_k(t) ? 256 : 32;
    for (int64_t m = 0; m < M; ++m) {
        const float* xr = x.data() + m * K;
        if (is_k(t)) {
            std::vector<BlockQ8_K> q(size_t(K / 256));
            quantize_row_q8_K(xr, q.data(), K);
            for (int64_t k = 0; k < K; ++k) xq[size_t(m * K + k)] = q[size_t(k / 256)].d * q[size_t(k / 256)].qs[k % 256];
        } else {
            std::vector<BlockQ8_0> q(size_t(K / 32));
            quantize_row_q8_0_activations(xr, q.data(), K);
            dequantize_row(DType::Q8_0, q.data(), xq.data() + m * K, K);
        }
        for (int64_t b = 0; b < K; b += blk) {
            float amax = 0;
            for (int64_t k = b; k < b + blk; ++k) amax = std::max(amax, std::fabs(xr[k]));
            for (int64_t k = b; k < b + blk; ++k) step[size_t(m * K + k)] = amax * float(1.0 / 254 + 1.0 / 1024);
        }
    }
}

struct Case {
    DType t;
    int64_t M, K, N;
};

std::string describe(const Case& c, KernelPath p, int threads) {
    return std::string(dtype_name(c.t)) + " M=" + std::to_string(c.M) + " K=" + std::to_string(c.K) +
           " N=" + std::to_string(c.N) + (p == KernelPath::Auto ? " auto" : p == KernelPath::Avx2 ? " avx2" : " scalar") +
           " threads=" + std::to_string(threads);
}

// Runs matmul and checks every element against the reference with the bounds above.
void check_case(const Case& c, KernelPath path, ThreadPool& pool, size_t misalign = 0) {
    INFO(describe(c, path, pool.size()) + " misalign=" + std::to_string(misalign));
    const Tensor w = make_weight(c.t, c.K, c.N, 1000 + uint64_t(c.K * 7 + c.N), misalign);
    const auto x = test::random_floats(size_t(c.M * c.K), 7 + uint64_t(c.M));
    const auto wf = dequantized(w);
    std::vector<float> y(size_t(c.M * c.N), -1.0f), ref(y.size());
    matmul(w, x.data(), y.data(), c.M, pool, path);
    matmul_reference(w, x.data(), ref.data(), c.M);

    const bool quant_acts = is_quantized(c.t) && c.M < kMatvecMaxM;
    std::vector<float> xq, step, refq(y.size());
    if (quant_acts) {
        activation_rounding(c.t, x, c.K, xq, step);
        matmul_reference(w, xq.data(), refq.data(), c.M);
    }
    const double f32_factor = std::sqrt(double(c.K)) * kU;
    int bad = 0;
    for (int64_t m = 0; m < c.M && bad < 5; ++m) {
        for (int64_t n = 0; n < c.N && bad < 5; ++n) {
            double s = 0, sq = 0, qerr = 0;
            for (int64_t k = 0; k < c.K; ++k) {
                const double wk = std::fabs(double(wf[size_t(n * c.K + k)]));
                s += std::fabs(double(x[size_t(m * c.K + k)])) * wk;
                if (quant_acts) {
                    sq += std::fabs(double(xq[size_t(m * c.K + k)])) * wk;
                    qerr += double(step[size_t(m * c.K + k)]) * wk;
                }
            }
            const size_t i = size_t(m * c.N + n);
            const double got = y[i];
            bool ok;
            if (quant_acts) {
                ok = std::fabs(got - refq[i]) <= f32_factor * sq + 1e-6 &&
                     std::fabs(got - ref[i]) <= qerr + f32_factor * s + 1e-6;
            } else {
                ok = std::fabs(got - ref[i]) <= f32_factor * s + 1e-6;
            }
            if (!ok) {
                ++bad;
                UNSCOPED_INFO("y[" << m << "][" << n << "] = " << got << ", reference " << ref[i]
                                   << (quant_acts ? ", reference on rounded activations " + std::to_string(refq[i]) : "")
                                   << ", S = " << s);
            }
        }
    }
    CHECK(bad == 0);
}

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,
                           DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                           DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<int64_t> ks_for(DType t) {
    if (is_k(t)) return {256, 1536};
    if (is_quantized(t)) return {256, 576, 960};
    return {37, 576, 1536};  // float types take any K: 37 exercises the tails
}

}  // namespace

TEST_CASE("matmul matches the reference for every type and shape", "[matmul]") {
    const DType t = GENERATE(from_range(std::begin(kAllTypes), std::end(kAllTypes)));
    const KernelPath path = GENERATE(KernelPath::Auto, KernelPath::Avx2, KernelPath::Scalar);
    ThreadPool pool(2);
    for (int64_t K : ks_for(t))
        for (int64_t M : {1, 2, 7, 13})
            for (int64_t N : {1, 7, 13, 127, 576}) check_case({t, M, K, N}, path, pool);
}

TEST_CASE("matmul blocked path at ViT size", "[matmul]") {
    const DType t = GENERATE(from_range(std::begin(kAllTypes), std::end(kAllTypes)));
    ThreadPool pool(2);
    check_case({t, 1024, 256, 37}, KernelPath::Auto, pool);
    if (t == DType::F32 || t == DType::F16 || t == DType::Q8_0)
        check_case({t, 1024, 768, 131}, KernelPath::Auto, pool);
}

// The AVX-512 GEMM tile does, lane by lane, the FMAs the AVX2 tile does: the same bits, at
// shapes that exercise 32-wide pairs, a lone last panel, partial panels and every row count.
TEST_CASE("matmul: the AVX-512 and AVX2 GEMM paths give identical bits", "[matmul]") {
    if (!has_avx512_kernels()) {
        WARN("SKIPPED: this CPU (or GLIMPSE_NO_AVX512) has no AVX-512 GEMM path");
        return;
    }
    const DType t = GENERATE(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_K);
    ThreadPool pool(2);
    for (const auto& [M, K, N] : {std::array<int64_t, 3>{4, 256, 16}, {13, 256, 48}, {25, 768, 37}, {179, 1024, 100},
                                  {1024, 256, 96}, {12, 1536, 512}}) {
        INFO(describe({t, M, K, N}, KernelPath::Auto, 2));
        const Tensor w = make_weight(t, K, N, 41);
        const auto x = test::random_floats(size_t(M * K), 9);
        std::vector<float> y512(size_t(M * N)), y2(y512.size());
        matmul(w, x.data(), y512.data(), M, pool, KernelPath::Auto);
        matmul(w, x.data(), y2.data(), M, pool, KernelPath::Avx2);
        CHECK(std::memcmp(y512.data(), y2.data(), y2.size() * 4) == 0);
    }
}

TEST_CASE("matmul reads unaligned weight rows", "[matmul]") {
    const DType t = GENERATE(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_1, DType::Q6_K);
    const KernelPath path = GENERATE(KernelPath::Auto, KernelPath::Scalar);
    ThreadPool pool(1);
    for (int64_t M : {1, 7}) check_case({t, M, 256, 19}, path, pool, 1);
}

TEST_CASE("matmul gives the same bits on 1, 2 and 3 threads", "[matmul]") {
    const DType t = GENERATE(from_range(std::begin(kAllTypes), std::end(kAllTypes)));
    const KernelPath path = GENERATE(KernelPath::Auto, KernelPath::Scalar);
    ThreadPool p1(1), p2(2), p3(3);
    for (const auto& [M, K, N] : {std::array<int64_t, 3>{1, 512, 333}, {3, 256, 77},
                                  {13, 512, 45}, {40, 256, 200}, {100, 768, 7}}) {
        INFO(describe({t, M, K, N}, path, 0));
        const Tensor w = make_weight(t, K, N, 99);
        const auto x = test::random_floats(size_t(M * K), 5);
        std::vector<float> y1(size_t(M * N)), y2(y1.size()), y3(y1.size());
        matmul(w, x.data(), y1.data(), M, p1, path);
        matmul(w, x.data(), y2.data(), M, p2, path);
        matmul(w, x.data(), y3.data(), M, p3, path);
        CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * 4) == 0);
        CHECK(std::memcmp(y1.data(), y3.data(), y1.size() * 4) == 0);
    }
}

TEST_CASE("matmul_same_x gives each weight the bits of its own matmul", "[matmul]") {
    const KernelPath path = GENERATE(KernelPath::Auto, KernelPath::Scalar);
    ThreadPool p1(1), p3(3);
    // Mixed types: float, legacy and K-quantized activations in one job; N not a multiple of
    // any chunk, one weight with a single row.
    const int64_t K = 512;
    const Tensor a = make_weight(DType::Q8_0, K, 133, 1), b = make_weight(DType::F16, K, 1, 2),
                 c = make_weight(DType::Q4_K, K, 70, 3), d = make_weight(DType::F32, K, 45, 4);
    for (int64_t M : {1, 2, 3, 4, 9}) {
        INFO("M = " << M);
        const auto x = test::random_floats(size_t(M * K), 7);
        for (ThreadPool* pool : {&p1, &p3}) {
            std::vector<float> ya(size_t(M) * 133), yb(static_cast<size_t>(M)), yc(size_t(M) * 70), yd(size_t(M) * 45);
            matmul_same_x({{&a, ya.data()}, {&b, yb.data()}, {&c, yc.data()}, {&d, yd.data()}}, x.data(), M, *pool,
                          path);
            for (const auto& [w, y] : {std::pair{&a, &ya}, {&b, &yb}, {&c, &yc}, {&d, &yd}}) {
                std::vector<float> want(y->size());
                matmul(*w, x.data(), want.data(), M, p1, path);
                CHECK(std::memcmp(y->data(), want.data(), want.size() * 4) == 0);
            }
        }
    }
    const Tensor short_k = make_weight(DType::F32, 256, 8, 5);
    std::vector<float> x(K), y1(133), y2(8);
    CHECK_THROWS_WITH(matmul_same_x({{&a, y1.data()}, {&short_k, y2.data()}}, x.data(), 1, p1),
                      Catch::Contains("K differs"));
}

// The decode matvec of Q8_0 is exactly llama.cpp's computation: activations quantized with
// quantize_row_q8_0_activations, per block the exact integer Σ q_w·q_x times d_w·d_x.
// Only the order of the float additions of the blocks may differ.
TEST_CASE("Q8_0 matvec equals quantize-then-integer-dot", "[matmul]") {
    const KernelPath path = GENERATE(KernelPath::Auto, KernelPath::Scalar);
    const int64_t K = GENERATE(32, 576, 960, 2048);
    const int64_t N = 129;
    ThreadPool pool(2);
    const Tensor w = make_weight(DType::Q8_0, K, N, 3);
    auto x = test::random_floats(size_t(K), 11, 3.0f);
    x[5] = 0.0f;  // an exact zero and a large outlier in the first block
    x[6] = 40.0f;
    std::vector<float> y(static_cast<size_t>(N));
    matmul(w, x.data(), y.data(), 1, pool, path);

    std::vector<BlockQ8_0> xq(size_t(K / 32));
    quantize_row_q8_0_activations(x.data(), xq.data(), K);
    for (int64_t n = 0; n < N; ++n) {
        std::vector<BlockQ8_0> wq(size_t(K / 32));
        std::memcpy(wq.data(), w.row(n), wq.size() * sizeof(BlockQ8_0));
        double ref = 0, mag = 0;
        for (size_t b = 0; b < wq.size(); ++b) {
            int isum = 0;
            for (int j = 0; j < 32; ++j) isum += int(wq[b].qs[j]) * int(xq[b].qs[j]);
            const float d = fp16_to_f32(wq[b].d) * fp16_to_f32(xq[b].d);  // as ggml: one f32 product
            ref += double(d) * isum;
            mag += std::fabs(double(d) * isum);
        }
        INFO("n = " << n << " K = " << K);
        CHECK(std::fabs(double(y[size_t(n)]) - ref) <= 4 * std::sqrt(double(K / 32) + 1) * kU * mag + 1e-30);
    }
}

// The AVX2 integer dots against the portable ones, on rows whose codes hit the extremes
// (all-max and all-min weights, activations at ±amax), where saturation would show.
TEST_CASE("quantized matvec: AVX2 and portable dots agree at extreme codes", "[matmul]") {
    if (!has_avx2_kernels()) {
        WARN("SKIPPED: this CPU has no AVX2/FMA/F16C; only the portable path exists here");
        return;
    }
    const DType t = GENERATE(DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                             DType::Q4_K, DType::Q5_K, DType::Q6_K);
    const int64_t K = 512, N = 4;
    std::vector<float> vals(size_t(K * N));
    for (int64_t k = 0; k < K; ++k) {
        vals[size_t(k)] = 1.0f;                                  // all at the top code
        vals[size_t(K + k)] = -1.0f;                             // all at the bottom code
        vals[size_t(2 * K + k)] = (k % 2) ? 1.0f : -1.0f;        // alternating
        vals[size_t(3 * K + k)] = float(k % 37) / 18.0f - 1.0f;  // a ramp
    }
    Tensor w;
    w.name = "extreme.weight";
    w.dtype = t;
    w.n_dims = 2;
    w.ne = {K, N, 1, 1};
    w.nb = contiguous_strides(t, w.ne);
    auto buf = std::shared_ptr<uint8_t[]>(new uint8_t[w.bytes()]());
    for (int64_t n = 0; n < N; ++n) quantize_row(t, vals.data() + n * K, buf.get() + n * w.nb[1], K);
    w.data = buf.get();
    w.storage = std::shared_ptr<const void>(buf, buf.get());
    ThreadPool pool(1);
    for (float sign : {1.0f, -1.0f}) {
        std::vector<float> x(size_t(K), sign * 2.5f);
        x[3] = -sign * 2.5f;
        std::vector<float> ya(static_cast<size_t>(N)), ys(static_cast<size_t>(N));
        matmul(w, x.data(), ya.data(), 1, pool, KernelPath::Auto);
        matmul(w, x.data(), ys.data(), 1, pool, KernelPath::Scalar);
        for (int64_t n = 0; n < N; ++n) {
            INFO(dtype_name(t) << " row " << n << " sign " << sign);
            CHECK(test::close_enough(ya[size_t(n)], ys[size_t(n)], 1e-4f, 1e-5f));
        }
    }
}

// The matvec's own activation quantizers must give exactly the bytes of quant's
// quantize_row_q8_0_activations / quantize_row_q8_K, including ties, zeros and non-finite
// values (the K types' golden numbers depend on them).
TEST_CASE("activation quantizers are bit-identical to quant's", "[matmul]") {
    const int64_t K = 1024;
    std::vector<std::vector<float>> rows;
    rows.push_back(test::random_floats(size_t(K), 21, 5.0f));
    std::vector<float> r(size_t(K), 0.0f);
    for (int64_t k = 0; k < K; ++k) r[size_t(k)] = float(k % 253 - 126) + 0.5f;  // |r| ≤ 126.5
    r[0] = 127.0f;     // Q8_0 block 0: amax 127 → id = 1, so the .5 values are exact ties
    r[256] = -127.0f;  // Q8_K block 1: max = -127 → iscale = 1, ties again
    r[600] = -127.0f;  // Q8_K block 2: two largest magnitudes; the first one sets the sign
    r[601] = 127.0f;
    rows.push_back(r);
    std::vector<float> special(size_t(K), 0.0f);  // block 0 (and Q8_K block 0): all zeros
    special[300] = std::nanf("");
    special[301] = 1e-40f;  // subnormal
    special[302] = -0.0f;
    special[520] = std::numeric_limits<float>::infinity();
    special[521] = 3.0f;
    special[800] = -1e30f;
    special[801] = 1e-30f;
    rows.push_back(special);
    const mm::KernelSet& ks = has_avx2_kernels() ? mm::avx2_kernels() : mm::scalar_kernels();
    for (size_t i = 0; i < rows.size(); ++i) {
        INFO("row " << i);
        std::vector<BlockQ8_0> ref(size_t(K / 32));
        quantize_row_q8_0_activations(rows[i].data(), ref.data(), K);
        std::vector<mm::ActQ8x32> got(size_t(K / 32));
        ks.quantize_q8x32(rows[i].data(), K, got.data());
        for (size_t b = 0; b < ref.size(); ++b) {
            INFO("Q8_0 block " << b);
            CHECK(std::memcmp(got[b].qs, ref[b].qs, 32) == 0);
            const float d = fp16_to_f32(ref[b].d);
            CHECK(std::memcmp(&got[b].d, &d, 4) == 0);
        }
        std::vector<BlockQ8_K> refk(size_t(K / 256)), gotk(refk.size());
        quantize_row_q8_K(rows[i].data(), refk.data(), K);
        ks.quantize_q8k(rows[i].data(), K, gotk.data());
        for (size_t b = 0; b < refk.size(); ++b) {
            INFO("Q8_K block " << b);
            CHECK(std::memcmp(&gotk[b], &refk[b], sizeof(BlockQ8_K)) == 0);
        }
    }
}

TEST_CASE("matmul edge sizes", "[matmul]") {
    ThreadPool pool(2);
    SECTION("K = 0 gives zeros") {
        const Tensor w = make_weight(DType::F32, 0, 5, 1);
        std::vector<float> x(1), y(10, 3.0f);
        matmul(w, x.data(), y.data(), 2, pool);
        for (float v : y) CHECK(v == 0.0f);
    }
    SECTION("M = 0 and N = 0 do nothing") {
        const Tensor w = make_weight(DType::Q8_0, 64, 0, 1);
        std::vector<float> x(64), y(1, 3.0f);
        matmul(w, x.data(), y.data(), 1, pool);
        CHECK(y[0] == 3.0f);
        const Tensor w2 = make_weight(DType::Q8_0, 64, 3, 1);
        matmul(w2, x.data(), y.data(), 0, pool);
        CHECK(y[0] == 3.0f);
    }
    SECTION("a 1-D weight is one row") {
        Tensor w = make_weight(DType::F16, 64, 1, 1);
        w.n_dims = 1;
        const auto x = test::random_floats(64, 2);
        float y = 0, ref = 0;
        matmul(w, x.data(), &y, 1, pool);
        matmul_reference(w, x.data(), &ref, 1);
        CHECK(test::close_enough(y, ref, 1e-5f, 1e-5f));
    }
}

TEST_CASE("matmul rejects unusable weights with one clear line", "[matmul]") {
    ThreadPool pool(1);
    std::vector<float> x(1024, 1.0f), y(1024);
    auto expect_error = [&](const Tensor& w, const std::string& fragment) {
        try {
            matmul(w, x.data(), y.data(), 1, pool);
            FAIL("no error for: " << fragment);
        } catch (const Error& e) {
            const std::string msg = e.what();
            INFO(msg);
            CHECK(e.kind() == ErrorKind::Model);
            CHECK(msg.find(w.name) == 0);
            CHECK(msg.find(fragment) != std::string::npos);
            CHECK(msg.find('\n') == std::string::npos);
        }
    };
    Tensor w = make_weight(DType::Q8_0, 64, 4, 1);
    w.name = "blk.0.attn_q.weight";

    Tensor bad = w;
    bad.dtype = DType::Q2_K;
    expect_error(bad, "Q2_K is not supported");
    bad = w;
    bad.ne = {64, 2, 2, 1};
    expect_error(bad, "2-D");
    bad = w;
    bad.ne[0] = 48;
    expect_error(bad, "multiple of the Q8_0 block size");
    bad = w;
    bad.nb[1] = 10;
    expect_error(bad, "row stride");
    bad = w;
    bad.data = nullptr;
    expect_error(bad, "no data");
    // y overlapping x
    try {
        matmul(w, x.data(), x.data() + 10, 1, pool);
        FAIL("no error for overlapping output");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("overlaps") != std::string::npos);
    }
    CHECK(matmul_supports(DType::Q6_K));
    CHECK_FALSE(matmul_supports(DType::I32));
}

TEST_CASE("cpu features are reported", "[matmul]") {
    const auto& f = cpu_features();
    const std::string s = cpu_features_string();
    CHECK_FALSE(s.empty());
    const bool forced_off = std::getenv("GLIMPSE_NO_AVX2") != nullptr;
    CHECK(has_avx2_kernels() == (f.x86_64 && f.avx2 && f.fma && f.f16c && !forced_off));
    CHECK(has_avx512_kernels() == (has_avx2_kernels() && f.avx512f && std::getenv("GLIMPSE_NO_AVX512") == nullptr));
    if (f.avx2) CHECK(s.find("avx2") != std::string::npos);
#if defined(__x86_64__)
    CHECK(f.x86_64);
#endif
}
