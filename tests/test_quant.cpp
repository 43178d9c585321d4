// core/quant: dequantization against the MODELS.md §2.3 formulas (written out independently
// here, element by element), quantize -> dequantize error bounds, awkward inputs, activation
// blocks (Q8_0 / Q8_K), and bit-exactness with llama.cpp's Q8_0 files from the golden folder.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "core/quant.h"
#include "tests/helpers.h"
#include "weights/gguf.h"

using namespace glimpse;

namespace {

// splitmix64: deterministic bytes for random blocks.
uint64_t next_u64(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

template <class Block>
Block random_block(uint64_t seed) {
    Block b;
    auto* p = reinterpret_cast<uint8_t*>(&b);
    for (size_t i = 0; i < sizeof b; ++i) p[i] = uint8_t(next_u64(seed));
    return b;
}

// An f16 scale in about ±[2^-8, 2^3], finite, from the seed.
uint16_t random_scale(uint64_t& s, bool allow_negative = true) {
    const float mag = std::ldexp(1.0f + float(next_u64(s) % 1024) / 1024.0f, int(next_u64(s) % 12) - 8);
    return f32_to_fp16(allow_negative && (next_u64(s) & 1) ? -mag : mag);
}

// Gaussian-like weights: Box-Muller on the helpers' uniform stream.
std::vector<float> gaussian_floats(size_t n, uint64_t seed) {
    const auto u = test::random_floats(2 * n, seed, 0.5f);
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) {
        const double u1 = 0.5 + double(u[2 * i]) + 1e-12, u2 = 0.5 + double(u[2 * i + 1]);
        x[i] = float(std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }
    return x;
}

size_t row_bytes(DType t, int64_t n) { return size_t(*dtype_row_bytes(t, uint64_t(n))); }

std::vector<float> round_trip(DType t, const std::vector<float>& x) {
    std::vector<uint8_t> q(row_bytes(t, int64_t(x.size())));
    quantize_row(t, x.data(), q.data(), int64_t(x.size()));
    std::vector<float> y(x.size());
    dequantize_row(t, q.data(), y.data(), int64_t(x.size()));
    return y;
}

// Dequantized values must equal the formula up to float rounding of a product of at most
// three factors and one sum: |got - ref| <= 4 ulp of the magnitudes involved.
void check_close(float got, double ref, double magnitude, int64_t i) {
    INFO("element " << i << ": got " << got << ", formula " << ref);
    REQUIRE(std::fabs(double(got) - ref) <= 4.8e-7 * magnitude + 1e-30);
}

// The 6-bit scale/min j of a Q4_K/Q5_K block, from the MODELS.md text.
void six_bit_scale_min(const uint8_t* s, int j, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// 1. Dequantization of hand-built blocks against the written formulas
// ---------------------------------------------------------------------------------------------

TEST_CASE("Q4_0 literal block", "[quant]") {
    BlockQ4_0 b{};
    b.d = f32_to_fp16(0.5f);
    for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));
    float y[32];
    dequantize_block(b, y);
    for (int j = 0; j < 16; ++j) {
        CHECK(y[j] == float(j - 8) * 0.5f);            // low nibbles: first 16 values
        CHECK(y[j + 16] == float(15 - j - 8) * 0.5f);  // high nibbles: last 16
    }
}

TEST_CASE("legacy blocks dequantize as the MODELS.md formulas", "[quant]") {
    const uint64_t seed = GENERATE(range(1, 41));
    uint64_t s = seed * 7919;
    float y[32];
    // The fifth bit of element i: bit i of qh read as a little-endian u32.
    auto high_bit = [](const uint8_t qh[4], int i) { return (qh[i / 8] >> (i % 8)) & 1; };
    auto nibble = [](const uint8_t* qs, int i) { return i < 16 ? qs[i] & 0xF : qs[i - 16] >> 4; };

    auto q40 = random_block<BlockQ4_0>(seed);
    q40.d = random_scale(s);
    dequantize_block(q40, y);
    const double d40 = fp16_to_f32(q40.d);
    for (int i = 0; i < 32; ++i) check_close(y[i], (nibble(q40.qs, i) - 8) * d40, std::fabs(8 * d40), i);

    auto q41 = random_block<BlockQ4_1>(seed + 100);
    q41.d = random_scale(s);
    q41.m = random_scale(s);
    dequantize_block(q41, y);
    const double d41 = fp16_to_f32(q41.d), m41 = fp16_to_f32(q41.m);
    for (int i = 0; i < 32; ++i)
        check_close(y[i], nibble(q41.qs, i) * d41 + m41, std::fabs(15 * d41) + std::fabs(m41), i);

    auto q50 = random_block<BlockQ5_0>(seed + 200);
    q50.d = random_scale(s);
    dequantize_block(q50, y);
    const double d50 = fp16_to_f32(q50.d);
    for (int i = 0; i < 32; ++i)
        check_close(y[i], ((nibble(q50.qs, i) | high_bit(q50.qh, i) << 4) - 16) * d50, std::fabs(16 * d50), i);

    auto q51 = random_block<BlockQ5_1>(seed + 300);
    q51.d = random_scale(s);
    q51.m = random_scale(s);
    dequantize_block(q51, y);
    const double d51 = fp16_to_f32(q51.d), m51 = fp16_to_f32(q51.m);
    for (int i = 0; i < 32; ++i)
        check_close(y[i], (nibble(q51.qs, i) | high_bit(q51.qh, i) << 4) * d51 + m51,
                    std::fabs(31 * d51) + std::fabs(m51), i);

    auto q80 = random_block<BlockQ8_0>(seed + 400);
    q80.d = random_scale(s);
    dequantize_block(q80, y);
    for (int i = 0; i < 32; ++i) CHECK(y[i] == float(q80.qs[i]) * fp16_to_f32(q80.d));  // exact
}

TEST_CASE("K blocks dequantize as the MODELS.md formulas", "[quant]") {
    const uint64_t seed = GENERATE(range(1, 21));
    uint64_t s = seed * 104729;
    float y[256];

    // Q4_K / Q5_K: element i is in sub-block j = i/32 and chunk c = i/64; its 4 low bits are
    // the low nibble of qs[32c + i%32] for even j, the high nibble for odd j; Q5_K's fifth bit
    // is bit j of qh[i%32]. y = d·sc_j·q - dmin·m_j.
    auto q4k = random_block<BlockQ4_K>(seed);
    q4k.d = random_scale(s);
    q4k.dmin = random_scale(s);
    dequantize_block(q4k, y);
    for (int i = 0; i < 256; ++i) {
        const int j = i / 32, byte = q4k.qs[32 * (i / 64) + i % 32];
        const int q = j % 2 == 0 ? byte & 0xF : byte >> 4;
        int sc, m;
        six_bit_scale_min(q4k.scales, j, sc, m);
        const double d = fp16_to_f32(q4k.d) * sc, dm = fp16_to_f32(q4k.dmin) * m;
        check_close(y[i], d * q - dm, std::fabs(d * q) + std::fabs(dm), i);
    }

    auto q5k = random_block<BlockQ5_K>(seed + 1000);
    q5k.d = random_scale(s);
    q5k.dmin = random_scale(s);
    dequantize_block(q5k, y);
    for (int i = 0; i < 256; ++i) {
        const int j = i / 32, byte = q5k.qs[32 * (i / 64) + i % 32];
        const int q = (j % 2 == 0 ? byte & 0xF : byte >> 4) | (((q5k.qh[i % 32] >> j) & 1) << 4);
        int sc, m;
        six_bit_scale_min(q5k.scales, j, sc, m);
        const double d = fp16_to_f32(q5k.d) * sc, dm = fp16_to_f32(q5k.dmin) * m;
        check_close(y[i], d * q - dm, std::fabs(d * q) + std::fabs(dm), i);
    }

    // Q6_K: element i = 128h + 32k + l (half h, quarter k, l < 32) has low bits
    // ql[64h + l + 32(k%2)] >> 4(k/2), high bits qh[32h + l] >> 2k, scale scales[i/16].
    auto q6k = random_block<BlockQ6_K>(seed + 2000);
    q6k.d = random_scale(s);
    dequantize_block(q6k, y);
    for (int i = 0; i < 256; ++i) {
        const int h = i / 128, k = (i % 128) / 32, l = i % 32;
        const int lo = (q6k.ql[64 * h + l + 32 * (k % 2)] >> (4 * (k / 2))) & 0xF;
        const int hi = (q6k.qh[32 * h + l] >> (2 * k)) & 3;
        const double v = double(fp16_to_f32(q6k.d)) * q6k.scales[i / 16] * ((lo | hi << 4) - 32);
        check_close(y[i], v, std::fabs(v), i);
    }
}

TEST_CASE("dequantize_row and quantize_row take unaligned buffers", "[quant]") {
    const DType t = GENERATE(DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                             DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K);
    INFO(dtype_name(t));
    const int64_t n = 512;
    const auto x = test::random_floats(size_t(n), 77);
    const size_t bytes = row_bytes(t, n);
    std::vector<uint8_t> aligned(bytes), shifted(bytes + 1);
    quantize_row(t, x.data(), aligned.data(), n);
    quantize_row(t, x.data(), shifted.data() + 1, n);  // odd address: every block misaligned
    REQUIRE(std::memcmp(aligned.data(), shifted.data() + 1, bytes) == 0);
    std::vector<float> ya(static_cast<size_t>(n)), yu(static_cast<size_t>(n) + 1);
    dequantize_row(t, aligned.data(), ya.data(), n);
    dequantize_row(t, shifted.data() + 1, yu.data() + 1, n);
    REQUIRE(std::memcmp(ya.data(), yu.data() + 1, size_t(n) * 4) == 0);
}

TEST_CASE("row functions reject bad lengths and unsupported types", "[quant]") {
    float y[256] = {};
    uint8_t q[512] = {};
    CHECK_THROWS_AS(dequantize_row(DType::Q8_0, q, y, 33), std::invalid_argument);
    CHECK_THROWS_AS(dequantize_row(DType::Q4_K, q, y, 128), std::invalid_argument);
    CHECK_THROWS_AS(dequantize_row(DType::F16, q, y, -1), std::invalid_argument);
    CHECK_THROWS_AS(dequantize_row(DType::Q2_K, q, y, 256), std::invalid_argument);
    CHECK_THROWS_AS(dequantize_row(DType::I32, q, y, 4), std::invalid_argument);
    CHECK_THROWS_AS(dequantize_row(static_cast<DType>(99), q, y, 32), std::invalid_argument);
    CHECK_THROWS_AS(quantize_row(DType::Q5_1, y, q, 48), std::invalid_argument);
    CHECK_THROWS_AS(quantize_row(DType::Q3_K, y, q, 256), std::invalid_argument);
    CHECK_THROWS_AS(quantize_row(static_cast<DType>(99), y, q, 32), std::invalid_argument);
    CHECK_THROWS_AS(quantize_row_q8_K(y, nullptr, 100), std::invalid_argument);
    CHECK_THROWS_AS(quantize_row_q8_0_activations(y, nullptr, 31), std::invalid_argument);
    CHECK(can_quantize(DType::Q6_K));
    CHECK(can_quantize(DType::BF16));
    CHECK_FALSE(can_quantize(DType::Q2_K));
    CHECK_FALSE(can_quantize(DType::I8));
    dequantize_row(DType::Q8_0, q, y, 0);  // empty rows are fine
    quantize_row(DType::F32, y, q, 0);
}

// ---------------------------------------------------------------------------------------------
// 2. Plain types: exact round trips
// ---------------------------------------------------------------------------------------------

TEST_CASE("F16 and BF16 rows round-trip every finite value exactly", "[quant]") {
    const DType t = GENERATE(DType::F16, DType::BF16);
    INFO(dtype_name(t));
    std::vector<uint16_t> all(65536);
    for (uint32_t i = 0; i < 65536; ++i) all[i] = uint16_t(i);
    std::vector<float> f(65536);
    dequantize_row(t, all.data(), f.data(), 65536);
    std::vector<uint16_t> back(65536);
    quantize_row(t, f.data(), back.data(), 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
        if (std::isnan(f[i])) {
            REQUIRE(std::isnan(t == DType::F16 ? fp16_to_f32(back[i]) : bf16_to_f32(back[i])));
            continue;
        }
        INFO("pattern " << i);
        REQUIRE(back[i] == all[i]);
    }
    // f32 -> f16/bf16 -> f32: relative error within half an ulp of the short type.
    const auto x = gaussian_floats(4096, 5);
    const auto y = round_trip(t, x);
    const double half_ulp = t == DType::F16 ? 1.0 / 2048 : 1.0 / 256;
    for (size_t i = 0; i < x.size(); ++i)
        if (std::fabs(x[i]) > 1e-4f) REQUIRE(std::fabs(y[i] - x[i]) <= half_ulp * std::fabs(x[i]));
}

// ---------------------------------------------------------------------------------------------
// 3. Quantize -> dequantize error bounds
// ---------------------------------------------------------------------------------------------

namespace {

// Per-element bound for the legacy formats, derived from the quantizer (d32 = the exact
// float scale, d16 its f16 rounding, m16 the f16 min):
//   Q8_0: round(x/d) -> |err| <= d32/2 + 127·|d32 - d16|
//   Q4_0 / Q5_0: trunc(x/d + 8.5) clamped to 15 (31): the value opposite the signed max
//     lands on the clamp, so |err| <= |d32| + 8|Δd| (16|Δd|)
//   Q4_1 / Q5_1: round((x - min)/d) -> |err| <= d32/2 + 15|Δd| (31|Δd|) + |min - m16|
void check_legacy_bounds(DType t, const std::vector<float>& x, const std::vector<float>& y) {
    for (size_t b = 0; b < x.size() / 32; ++b) {
        const float* xb = x.data() + 32 * b;
        float amax = 0, max = 0, mn = xb[0], mx = xb[0];
        for (int j = 0; j < 32; ++j) {
            if (std::fabs(xb[j]) > amax) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
            mn = std::min(mn, xb[j]);
            mx = std::max(mx, xb[j]);
        }
        double d32 = 0, bound = 0;
        auto dd = [&](double d) { return std::fabs(d - fp16_to_f32(f32_to_fp16(float(d)))); };
        switch (t) {
        case DType::Q8_0: d32 = amax / 127.0f; bound = d32 / 2 + 127 * dd(d32); break;
        case DType::Q4_0: d32 = max / -8.0f; bound = std::fabs(d32) + 8 * dd(d32); break;
        case DType::Q5_0: d32 = max / -16.0f; bound = std::fabs(d32) + 16 * dd(d32); break;
        case DType::Q4_1: d32 = (mx - mn) / 15.0f; bound = d32 / 2 + 15 * dd(d32) + dd(mn); break;
        case DType::Q5_1: d32 = (mx - mn) / 31.0f; bound = d32 / 2 + 31 * dd(d32) + dd(mn); break;
        default: FAIL("not a legacy type");
        }
        bound = bound * (1 + 1e-5) + 1e-30;
        for (int j = 0; j < 32; ++j) {
            INFO(dtype_name(t) << " block " << b << " element " << j << ": x " << xb[j] << " y "
                               << y[32 * b + j] << " bound " << bound);
            REQUIRE(std::fabs(double(xb[j]) - y[32 * b + j]) <= bound);
        }
    }
}

double relative_rms_error(const std::vector<float>& x, const std::vector<float>& y) {
    double e = 0, r = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        e += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
        r += double(x[i]) * x[i];
    }
    return r > 0 ? std::sqrt(e / r) : std::sqrt(e);
}

bool is_k(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

}  // namespace

TEST_CASE("legacy formats: per-element error bounds on random rows", "[quant]") {
    const DType t = GENERATE(DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1);
    const size_t n = GENERATE(32, 96, 256, 1056, 4096);
    const int dist = GENERATE(0, 1, 2);
    INFO(dtype_name(t) << " n=" << n << " distribution " << dist);
    std::vector<float> x = dist == 0   ? test::random_floats(n, n + 1)
                           : dist == 1 ? gaussian_floats(n, n + 2)
                                       : test::random_floats(n, n + 3, 1000.0f);
    const auto y = round_trip(t, x);
    check_legacy_bounds(t, x, y);
}

// Relative RMS errors measured over 200 rows of 4096 (mean / worst):
//   uniform [-1,1):  Q4_K 0.0546/0.0561  Q5_K 0.0276/0.0282  Q6_K 0.0132/0.0136
//   Gaussian:        Q4_K 0.0713/0.0743  Q5_K 0.0361/0.0372  Q6_K 0.0178/0.0184
// (for comparison Q4_1 0.078 and Q5_1 0.038 on Gaussian data). Bounds: worst + ~8%, with
// more slack for the short rows, which average fewer blocks.
TEST_CASE("K formats: relative RMS error on random rows", "[quant]") {
    const DType t = GENERATE(DType::Q4_K, DType::Q5_K, DType::Q6_K);
    const size_t n = GENERATE(256, 512, 1536, 4096);
    const bool gaussian = GENERATE(false, true);
    INFO(dtype_name(t) << " n=" << n << (gaussian ? " gaussian" : " uniform"));
    const auto x = gaussian ? gaussian_floats(n, n * 3 + 1) : test::random_floats(n, n * 3 + 2);
    const double err = relative_rms_error(x, round_trip(t, x));
    const double slack = n >= 1536 ? 1.08 : 1.2;
    const double bound = (t == DType::Q4_K   ? (gaussian ? 0.0743 : 0.0561)
                          : t == DType::Q5_K ? (gaussian ? 0.0372 : 0.0282)
                                             : (gaussian ? 0.0184 : 0.0136)) *
                         slack;
    INFO("relative RMS error " << err << ", bound " << bound);
    CHECK(err < bound);
    CHECK(err > 0.1 * bound);  // a quantizer that returned its input would be a bug here
}

TEST_CASE("awkward rows: zeros, an outlier, negative-only, constants", "[quant]") {
    const DType t = GENERATE(DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q4_K,
                             DType::Q5_K, DType::Q6_K);
    const size_t n = 512;
    INFO(dtype_name(t));

    SECTION("all zeros give exact zeros") {
        const auto y = round_trip(t, std::vector<float>(n, 0.0f));
        for (float v : y) REQUIRE(v == 0.0f);
    }
    SECTION("one huge outlier is kept, the rest stay bounded") {
        auto x = gaussian_floats(n, 11);
        for (auto& v : x) v *= 0.01f;
        x[300] = 1000.0f;
        const auto y = round_trip(t, x);
        for (float v : y) REQUIRE(std::isfinite(v));
        CHECK(std::fabs(y[300] - 1000.0f) <= 1000.0f * 0.02f);
        if (!is_k(t)) check_legacy_bounds(t, x, y);
        // Blocks without the outlier keep their own scale.
        std::vector<float> xs(x.begin(), x.begin() + 256), ys(y.begin(), y.begin() + 256);
        CHECK(relative_rms_error(xs, ys) < 0.1);
    }
    SECTION("negative-only rows") {
        auto x = test::random_floats(n, 12, 0.5f);
        for (auto& v : x) v -= 1.5f;  // in [-2, -1)
        const auto y = round_trip(t, x);
        if (is_k(t))
            CHECK(relative_rms_error(x, y) < 0.03);  // measured 0.010 .. 0.023
        else
            check_legacy_bounds(t, x, y);
    }
    SECTION("constant rows") {
        // (Much smaller constants lose precision to subnormal f16 scales, e.g. Q6_K's
        // d = c/4096 - inherent to the format.)
        for (float c : {0.3f, -2.75f, 0.07f}) {
            const std::vector<float> x(n, c);
            const auto y = round_trip(t, x);
            if (!is_k(t)) check_legacy_bounds(t, x, y);
            for (float v : y) REQUIRE(std::fabs(v - c) <= std::fabs(c) * 0.02f);
        }
    }
    SECTION("non-finite input is defined (no UB) and stays inside its blocks") {
        std::vector<float> x = gaussian_floats(1024, 13);
        x[3] = std::numeric_limits<float>::quiet_NaN();
        x[260] = std::numeric_limits<float>::infinity();
        x[261] = -std::numeric_limits<float>::infinity();
        const auto y = round_trip(t, x);
        // Values 512.. share no block (32 or 256 values) with the non-finite ones.
        const std::vector<float> xs(x.begin() + 512, x.end()), ys(y.begin() + 512, y.end());
        if (!is_k(t)) check_legacy_bounds(t, xs, ys);
        CHECK(relative_rms_error(xs, ys) < 0.1);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Properties of ggml's quantizers that a transcription slip would break
// ---------------------------------------------------------------------------------------------

TEST_CASE("Q4_0 and Q5_0 map the signed maximum to the lowest code exactly", "[quant]") {
    for (float sign : {1.0f, -1.0f}) {
        auto x = test::random_floats(32, 21, 3.0f);
        x[7] = 4.0f * sign;  // the largest magnitude; 4/8 and 4/16 are exact in f16
        BlockQ4_0 b4;
        quantize_block(x.data(), b4);
        CHECK((b4.qs[7] & 0xF) == 0);
        BlockQ5_0 b5;
        quantize_block(x.data(), b5);
        CHECK((b5.qs[7] & 0xF) == 0);
        CHECK((b5.qh[0] >> 7 & 1) == 0);
        float y[32];
        dequantize_block(b4, y);
        CHECK(y[7] == x[7]);
        dequantize_block(b5, y);
        CHECK(y[7] == x[7]);
    }
}

TEST_CASE("K formats use the full range of their block scales", "[quant]") {
    const auto x = gaussian_floats(256, 31);
    BlockQ6_K b6;
    quantize_block(x.data(), b6);
    // The sub-block scale of largest magnitude is stored as -128 (d = max_scale / -128).
    CHECK(*std::min_element(b6.scales, b6.scales + 16) == -128);
    BlockQ4_K b4;
    quantize_block(x.data(), b4);
    BlockQ5_K b5;
    quantize_block(x.data(), b5);
    int max_sc4 = 0, max_m4 = 0, max_sc5 = 0, max_m5 = 0;
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        k_scale_min(b4.scales, j, sc, m);
        max_sc4 = std::max(max_sc4, int(sc));
        max_m4 = std::max(max_m4, int(m));
        k_scale_min(b5.scales, j, sc, m);
        max_sc5 = std::max(max_sc5, int(sc));
        max_m5 = std::max(max_m5, int(m));
    }
    CHECK(max_sc4 == 63);  // d = max_scale / 63
    CHECK(max_m4 == 63);   // dmin = max_min / 63
    CHECK(max_sc5 == 63);
    CHECK(max_m5 == 63);
}

TEST_CASE("Q8_0 requantizes its own output to the same blocks", "[quant]") {
    const auto x = gaussian_floats(2048, 41);
    std::vector<uint8_t> q1(row_bytes(DType::Q8_0, 2048)), q2(q1.size());
    quantize_row(DType::Q8_0, x.data(), q1.data(), 2048);
    std::vector<float> y(2048);
    dequantize_row(DType::Q8_0, q1.data(), y.data(), 2048);
    quantize_row(DType::Q8_0, y.data(), q2.data(), 2048);
    CHECK(q1 == q2);
}

// The K searches are heuristics: a slip in their parameters still gives a working quantizer,
// only a slightly worse one. Measured on 32 Gaussian rows of 4096 (relative RMS error):
//             ggml's search   without the iscale sweep
//   Q4_K      0.0715          0.0756  (nstep = 0)
//   Q5_K      0.0361          0.0372  (nstep = 0)
//   Q6_K      0.0177          0.0184  (no k = -9..9 sweep)
// The aggregate over 128 Ki values is stable to ~0.2%, so these bounds separate the two.
TEST_CASE("K formats: the scale searches pay off (aggregate RMS error)", "[quant]") {
    const DType t = GENERATE(DType::Q4_K, DType::Q5_K, DType::Q6_K);
    INFO(dtype_name(t));
    const auto x = gaussian_floats(32 * 4096, 71);
    const double err = relative_rms_error(x, round_trip(t, x));
    const double bound = t == DType::Q4_K ? 0.0730 : t == DType::Q5_K ? 0.0366 : 0.0180;
    INFO("relative RMS error " << err);
    CHECK(err < bound);
}

// A lock on the exact bytes every quantizer writes for a fixed input (integer-generated, so
// the same on every IEEE platform). The quantizers were checked line by line against
// ggml-quants.c and Q8_0 is bit-exact with llama.cpp's files (golden tests below), but no
// ggml-made K/Q4/Q5 file with its float source exists here; this test makes sure the bytes
// never change silently (e.g. a "faster" reordering of the float sums in a search). If you
// change a quantizer on purpose, re-derive these values and say why in the commit. (Same
// values with GCC and clang, -O0 and -O3 -mfma: core/quant*.cpp turn FMA contraction off.)
TEST_CASE("quantizer output bytes are locked", "[quant]") {
    // 16384 values: skewed noise, a positive-only run, a bell-shaped run (sum of 4 uniforms),
    // a constant run, an outlier and a zero run.
    constexpr size_t n = 16384;
    const auto u = test::random_floats(4 * n, 99);
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = u[i] * u[i] * u[i] * 3.0f + u[n + i] * 0.25f;
    for (size_t i = 4096; i < 8192; ++i) x[i] = u[i] * u[i] + 0.5f * u[n + i] + 0.6f;  // > 0
    for (size_t i = 8192; i < 12288; ++i) x[i] = u[i] + u[n + i] + u[2 * n + i] + u[3 * n + i];
    std::fill(x.begin() + 12288, x.begin() + 12800, 0.4375f);
    x[13000] = 250.0f;
    std::fill(x.begin() + 15360, x.end(), 0.0f);
    auto fnv1a = [](const std::vector<uint8_t>& b) {
        uint64_t h = 0xcbf29ce484222325ull;
        for (uint8_t c : b) h = (h ^ c) * 0x100000001b3ull;
        return h;
    };
    const std::pair<DType, uint64_t> expected[] = {
        {DType::F16, 0x325cf197ef686697ull},  {DType::BF16, 0x6141327a7720a2d9ull},
        {DType::Q8_0, 0x5eb39509c0ac12d1ull}, {DType::Q4_0, 0x8245cd15637e645cull},
        {DType::Q4_1, 0x5717659d62cfaa9eull}, {DType::Q5_0, 0x744f7ebd00338299ull},
        {DType::Q5_1, 0xe3c065930378ce9eull}, {DType::Q4_K, 0x91b7274290e5192cull},
        {DType::Q5_K, 0xa75d0dbd2b7f1352ull}, {DType::Q6_K, 0x266a7f67dfb8cac5ull},
    };
    for (const auto& [t, digest] : expected) {
        std::vector<uint8_t> q(row_bytes(t, n));
        quantize_row(t, x.data(), q.data(), n);
        INFO(dtype_name(t) << " digest 0x" << std::hex << fnv1a(q));
        CHECK(fnv1a(q) == digest);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Activation blocks for the integer dot products
// ---------------------------------------------------------------------------------------------

TEST_CASE("Q8_0: file quantizer rounds ties away from zero, activations to even", "[quant]") {
    // amax = 127 gives d = 1 and a multiplier of exactly 1 in both, so x = k + 0.5 is a tie.
    std::vector<float> x(32, 0.0f);
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 3.5f;
    x[4] = 0.5f;
    BlockQ8_0 file, act;
    quantize_block(x.data(), file);
    quantize_row_q8_0_activations(x.data(), &act, 32);
    CHECK(fp16_to_f32(file.d) == 1.0f);
    CHECK(fp16_to_f32(act.d) == 1.0f);
    CHECK(file.qs[1] == 3);
    CHECK(file.qs[2] == -3);
    CHECK(file.qs[3] == 4);
    CHECK(file.qs[4] == 1);
    CHECK(act.qs[1] == 2);
    CHECK(act.qs[2] == -2);
    CHECK(act.qs[3] == 4);
    CHECK(act.qs[4] == 0);
}

TEST_CASE("Q8_0 activations: same scale as the file quantizer, codes within one", "[quant]") {
    const auto x = gaussian_floats(4096, 51);
    std::vector<BlockQ8_0> file(128), act(128);
    quantize_row(DType::Q8_0, x.data(), file.data(), 4096);
    quantize_row_q8_0_activations(x.data(), act.data(), 4096);
    int differing = 0;
    for (int b = 0; b < 128; ++b) {
        REQUIRE(file[b].d == act[b].d);
        for (int j = 0; j < 32; ++j) {
            REQUIRE(std::abs(file[b].qs[j] - act[b].qs[j]) <= 1);
            differing += file[b].qs[j] != act[b].qs[j];
        }
    }
    CHECK(differing < 40);  // only last-bit differences of x/d vs x·127/amax
}

TEST_CASE("Q8_K blocks: scale, rounding, clamping and group sums", "[quant]") {
    const auto x = gaussian_floats(1024, 61);
    std::vector<BlockQ8_K> q(4);
    quantize_row_q8_K(x.data(), q.data(), 1024);
    for (int b = 0; b < 4; ++b) {
        const float* xb = x.data() + 256 * b;
        float max = 0;
        for (int j = 0; j < 256; ++j)
            if (std::fabs(xb[j]) > std::fabs(max)) max = xb[j];
        CHECK(q[b].d == 1 / (-127.0f / max));  // d = 1/iscale, sign opposite to max
        for (int j = 0; j < 256; ++j) {
            REQUIRE(q[b].qs[j] >= -127);
            REQUIRE(std::fabs(double(q[b].d) * q[b].qs[j] - xb[j]) <= std::fabs(q[b].d) * 0.5 * (1 + 1e-5));
        }
        for (int g = 0; g < 16; ++g) {
            int sum = 0;
            for (int k = 0; k < 16; ++k) sum += q[b].qs[16 * g + k];
            REQUIRE(q[b].bsums[g] == sum);
        }
    }
    // The signed maximum maps to -127; ties round to even.
    std::vector<float> t(256, 0.0f);
    t[0] = -127.0f;  // iscale = 1
    t[1] = 2.5f;
    t[2] = 3.5f;
    BlockQ8_K tb;
    quantize_row_q8_K(t.data(), &tb, 256);
    CHECK(tb.d == 1.0f);
    CHECK(tb.qs[0] == -127);
    CHECK(tb.qs[1] == 2);
    CHECK(tb.qs[2] == 4);
    CHECK(tb.bsums[0] == -127 + 2 + 4);
    // An all-zero block.
    std::vector<float> z(256, 0.0f);
    BlockQ8_K zb;
    std::memset(&zb, 0x5a, sizeof zb);
    quantize_row_q8_K(z.data(), &zb, 256);
    CHECK(zb.d == 0.0f);
    for (int j = 0; j < 256; ++j) REQUIRE(zb.qs[j] == 0);
    for (int g = 0; g < 16; ++g) REQUIRE(zb.bsums[g] == 0);
}

// ---------------------------------------------------------------------------------------------
// 6. Golden: bit-exact Q8_0 against the files llama.cpp's tools wrote
// ---------------------------------------------------------------------------------------------

namespace {

// Quantizes every Q8_0 tensor's source (same name in `source`, any float type) row by row and
// compares the bytes. Returns the number of tensors compared.
int compare_q8_0_files(const std::filesystem::path& source, const std::filesystem::path& quantized) {
    const GgufFile src = GgufFile::open(source.string());
    const GgufFile q8 = GgufFile::open(quantized.string());
    int compared = 0;
    for (const Tensor& tq : q8.tensors()) {
        if (tq.dtype != DType::Q8_0) continue;
        const Tensor& ts = src.tensor(tq.name);
        INFO(tq.name << " from " << source.filename().string() << " (" << dtype_name(ts.dtype) << ")");
        REQUIRE(ts.ne == tq.ne);
        const int64_t n = tq.ne[0];
        std::vector<float> row(static_cast<size_t>(n));
        std::vector<uint8_t> mine(row_bytes(DType::Q8_0, n));
        int64_t bad_blocks = 0;
        for (int64_t r = 0; r < tq.rows(); ++r) {
            dequantize_row(ts.dtype, ts.row(r), row.data(), n);
            quantize_row(DType::Q8_0, row.data(), mine.data(), n);
            for (int64_t b = 0; b < n / 32; ++b)
                bad_blocks += std::memcmp(mine.data() + 34 * b, tq.row(r) + 34 * b, 34) != 0;
        }
        CHECK(bad_blocks == 0);
        ++compared;
    }
    return compared;
}

}  // namespace

TEST_CASE("golden: Q8_0 of the F32 SmolVLM text model is bit-identical to llama.cpp's", "[quant][golden]") {
    GOLDEN_OR_SKIP(golden);
    const auto dir = golden / "smolvlm-tiny";
    CHECK(compare_q8_0_files(dir / "smolvlm-tiny-text-f32.gguf", dir / "smolvlm-tiny-text-q8_0.gguf") == 15);
}

// The LLaVA Q8_0 file was written from the original float32 weights (manifest: every text
// file is the same weights stored by convert_hf_to_gguf's rules), which are not in the golden
// folder; only their F16 rounding is. Quantizing the F16 values must then land within one
// code and one f16 step of d of the file, and the file's values within d/2 (+ d's f16
// rounding) of the float32 originals, i.e. that plus F16 rounding of the F16 values.
TEST_CASE("golden: Q8_0 of the F16 LLaVA text model agrees with llama.cpp's to one code", "[quant][golden]") {
    GOLDEN_OR_SKIP(golden);
    const auto dir = golden / "llava-tiny";
    const GgufFile f16 = GgufFile::open((dir / "llava-tiny-text-f16.gguf").string());
    const GgufFile q8 = GgufFile::open((dir / "llava-tiny-text-q8_0.gguf").string());
    int compared = 0;
    int64_t blocks = 0, identical = 0;
    for (const Tensor& tq : q8.tensors()) {
        if (tq.dtype != DType::Q8_0) continue;
        const Tensor& ts = f16.tensor(tq.name);
        INFO(tq.name);
        REQUIRE(ts.dtype == DType::F16);
        REQUIRE(ts.ne == tq.ne);
        const int64_t n = tq.ne[0];
        std::vector<float> x(static_cast<size_t>(n)), theirs(static_cast<size_t>(n));
        std::vector<BlockQ8_0> mine(size_t(n / 32)), file(size_t(n / 32));
        for (int64_t r = 0; r < tq.rows(); ++r) {
            dequantize_row(DType::F16, ts.row(r), x.data(), n);
            quantize_row(DType::Q8_0, x.data(), mine.data(), n);
            std::memcpy(file.data(), tq.row(r), file.size() * sizeof(BlockQ8_0));
            dequantize_row(DType::Q8_0, tq.row(r), theirs.data(), n);
            for (size_t b = 0; b < file.size(); ++b, ++blocks) {
                identical += std::memcmp(&mine[b], &file[b], sizeof(BlockQ8_0)) == 0;
                REQUIRE(std::abs(int(mine[b].d) - int(file[b].d)) <= 1);  // positive f16: adjacent
                const float d = fp16_to_f32(file[b].d);
                for (int j = 0; j < 32; ++j) {
                    REQUIRE(std::abs(mine[b].qs[j] - file[b].qs[j]) <= 1);
                    const float v = x[32 * b + size_t(j)];
                    // d/2, plus d's own f16 rounding times |q| <= 127, plus v's F16 rounding.
                    const float bound = 0.5f * d + 127 * d / 2048 + std::fabs(v) / 2048;
                    REQUIRE(std::fabs(theirs[32 * b + size_t(j)] - v) <= bound * 1.0001f);
                }
            }
        }
        ++compared;
    }
    CHECK(compared == 16);
    // About 55% of the blocks still come out identical (F16 rounding moves x/d across a .5
    // boundary somewhere in the other 45%).
    INFO(identical << " of " << blocks << " blocks identical");
    CHECK(identical > blocks / 3);
}
