// ops (core/ops.h): element-wise, norms, softmax, activations, RoPE, get_rows, concat,
// permute, transpose — each against a plain reference written here (naive loops, double
// accumulation). Attention and the KV cache: test_ops_attention.cpp; patch embedding and
// pixel shuffle: test_ops_vision.cpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "core/ops.h"
#include "core/quant.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "tests/helpers.h"

using namespace glimpse;
using glimpse::test::close_enough;
using glimpse::test::random_floats;

namespace {

// Checks got against ref element by element; reports the first mismatch only.
void require_close(const std::vector<float>& got, const std::vector<double>& ref, float abs_tol,
                   float rel_tol) {
    REQUIRE(got.size() == ref.size());
    for (size_t i = 0; i < got.size(); ++i) {
        if (!close_enough(got[i], float(ref[i]), abs_tol, rel_tol)) {
            INFO("index " << i << ": got " << got[i] << ", expected " << ref[i]);
            REQUIRE(false);
        }
    }
}

// Bit-for-bit equality, reporting the first difference (not the whole arrays).
void require_same(const std::vector<float>& got, const std::vector<float>& ref) {
    REQUIRE(got.size() == ref.size());
    const auto diff = std::mismatch(got.begin(), got.end(), ref.begin());
    if (diff.first != got.end()) {
        INFO("index " << (diff.first - got.begin()) << ": got " << *diff.first << ", expected " << *diff.second);
        REQUIRE(false);
    }
}

}  // namespace

TEST_CASE("element-wise add, mul, scale, add_row_bias", "[ops]") {
    const int64_t n = GENERATE(1, 7, 13, 127, 576, 960);
    const auto a = random_floats(size_t(n), 1, 3.0f), b = random_floats(size_t(n), 2, 3.0f);
    std::vector<float> y(static_cast<size_t>(n));
    std::vector<double> ref(static_cast<size_t>(n));

    ops::add(a.data(), b.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ref[size_t(i)] = double(a[size_t(i)]) + b[size_t(i)];
    require_close(y, ref, 1e-6f, 1e-6f);

    ops::mul(a.data(), b.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ref[size_t(i)] = double(a[size_t(i)]) * b[size_t(i)];
    require_close(y, ref, 1e-6f, 1e-6f);

    ops::scale(a.data(), -0.37f, y.data(), n);
    for (int64_t i = 0; i < n; ++i) ref[size_t(i)] = double(a[size_t(i)]) * -0.37f;
    require_close(y, ref, 1e-6f, 1e-6f);

    // In place: y aliases a.
    std::vector<float> inplace = a;
    ops::add(inplace.data(), b.data(), inplace.data(), n);
    for (int64_t i = 0; i < n; ++i) REQUIRE(inplace[size_t(i)] == a[size_t(i)] + b[size_t(i)]);

    const int64_t rows = 5;
    auto x = random_floats(size_t(rows * n), 3);
    const auto x0 = x;
    ops::add_row_bias(x.data(), b.data(), rows, n);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i)
            REQUIRE(x[size_t(r * n + i)] == x0[size_t(r * n + i)] + b[size_t(i)]);
}

TEST_CASE("rms_norm matches the formula", "[ops]") {
    const int64_t n = GENERATE(1, 7, 13, 127, 576, 960);
    const int64_t rows = GENERATE(1, 3, 37);
    const bool with_weight = GENERATE(true, false);
    ThreadPool pool(2);
    const auto x = random_floats(size_t(rows * n), 10 + n, 4.0f);
    const auto w = random_floats(size_t(n), 11, 2.0f);
    const float eps = 1e-5f;
    std::vector<float> y(x.size());
    ops::rms_norm(x.data(), with_weight ? w.data() : nullptr, y.data(), rows, n, eps, pool);

    std::vector<double> ref(x.size());
    for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) ss += double(x[size_t(r * n + i)]) * x[size_t(r * n + i)];
        const double inv = 1.0 / std::sqrt(ss / double(n) + eps);
        for (int64_t i = 0; i < n; ++i)
            ref[size_t(r * n + i)] = x[size_t(r * n + i)] * inv * (with_weight ? w[size_t(i)] : 1.0);
    }
    require_close(y, ref, 1e-5f, 1e-5f);

    // In place gives the same bits.
    std::vector<float> inplace = x;
    ops::rms_norm(inplace.data(), with_weight ? w.data() : nullptr, inplace.data(), rows, n, eps, pool);
    require_same(inplace, y);
}

TEST_CASE("layer_norm matches the formula (biased variance)", "[ops]") {
    const int64_t n = GENERATE(1, 7, 13, 127, 576, 960);
    const int64_t rows = GENERATE(1, 37);
    const int affine = GENERATE(0, 1, 2, 3);  // bit 0: weight, bit 1: bias
    ThreadPool pool(2);
    // An offset mean makes the two-pass variance matter.
    auto x = random_floats(size_t(rows * n), 20 + n, 3.0f);
    for (auto& v : x) v += 5.0f;
    const auto w = random_floats(size_t(n), 21, 2.0f), b = random_floats(size_t(n), 22, 1.0f);
    const float* wp = (affine & 1) ? w.data() : nullptr;
    const float* bp = (affine & 2) ? b.data() : nullptr;
    const float eps = 1e-6f;
    std::vector<float> y(x.size());
    ops::layer_norm(x.data(), wp, bp, y.data(), rows, n, eps, pool);

    std::vector<double> ref(x.size());
    for (int64_t r = 0; r < rows; ++r) {
        const float* row = x.data() + r * n;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; ++i) mean += row[i];
        mean /= double(n);
        for (int64_t i = 0; i < n; ++i) var += (row[i] - mean) * (row[i] - mean);
        var /= double(n);
        for (int64_t i = 0; i < n; ++i) {
            double v = (row[i] - mean) / std::sqrt(var + eps);
            if (wp) v *= wp[i];
            if (bp) v += bp[i];
            ref[size_t(r * n + i)] = v;
        }
    }
    // n = 1: x − μ is exactly 0, so y is the bias alone.
    require_close(y, ref, 2e-5f, 2e-5f);
}

TEST_CASE("norms reject empty rows", "[ops]") {
    ThreadPool pool(1);
    float x = 1.0f;
    CHECK_THROWS_AS(ops::rms_norm(&x, nullptr, &x, 1, 0, 1e-5f, pool), std::invalid_argument);
    CHECK_THROWS_AS(ops::layer_norm(&x, nullptr, nullptr, &x, -1, 1, 1e-5f, pool), std::invalid_argument);
}

TEST_CASE("softmax_rows and the causal variant", "[ops]") {
    const int64_t n = GENERATE(1, 7, 13, 127, 576, 960);
    const int64_t rows = 4;
    auto x = random_floats(size_t(rows * n), 30 + n, 20.0f);  // large logits: max subtraction matters
    x[0] = 300.0f;                                              // exp(300) overflows without it

    auto softmax_ref = [&](const std::vector<float>& in, int64_t r, int64_t visible, std::vector<double>& out) {
        double max = -INFINITY, sum = 0;
        for (int64_t i = 0; i < visible; ++i) max = std::max(max, double(in[size_t(r * n + i)]));
        for (int64_t i = 0; i < visible; ++i) sum += std::exp(in[size_t(r * n + i)] - max);
        for (int64_t i = 0; i < n; ++i)
            out[size_t(r * n + i)] = i < visible ? std::exp(in[size_t(r * n + i)] - max) / sum : 0.0;
    };

    std::vector<float> y = x;
    ops::softmax_rows(y.data(), rows, n);
    std::vector<double> ref(x.size());
    for (int64_t r = 0; r < rows; ++r) softmax_ref(x, r, n, ref);
    require_close(y, ref, 1e-6f, 1e-5f);

    for (int64_t offset : {int64_t(-2), int64_t(0), int64_t(3), n + 10}) {
        INFO("offset " << offset);
        std::vector<float> yc = x;
        ops::softmax_rows_causal(yc.data(), rows, n, offset);
        for (int64_t r = 0; r < rows; ++r)
            softmax_ref(x, r, std::clamp<int64_t>(r + offset + 1, 0, n), ref);
        require_close(yc, ref, 1e-6f, 1e-5f);
    }
}

TEST_CASE("activations match their formulas", "[ops]") {
    const int64_t n = GENERATE(1, 7, 13, 127, 576, 960);
    const bool threaded = GENERATE(false, true);
    ThreadPool pool(2);
    auto x = random_floats(size_t(n), 40 + n, 6.0f);
    if (n >= 7) {  // the tails: large |x| must not produce NaN
        x[0] = -120.0f;
        x[1] = 120.0f;
        x[2] = 0.0f;
    }
    const auto up = random_floats(size_t(n), 41, 2.0f);
    std::vector<float> y(static_cast<size_t>(n));
    std::vector<double> ref(static_cast<size_t>(n));
    auto sigmoid = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
    const double kPi = 3.14159265358979323846;

    SECTION("gelu_tanh") {
        threaded ? ops::gelu_tanh(x.data(), y.data(), n, pool) : ops::gelu_tanh(x.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i) {
            const double v = x[size_t(i)];
            ref[size_t(i)] = 0.5 * v * (1 + std::tanh(std::sqrt(2 / kPi) * (v + 0.044715 * v * v * v)));
        }
    }
    SECTION("gelu_erf") {
        threaded ? ops::gelu_erf(x.data(), y.data(), n, pool) : ops::gelu_erf(x.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i) {
            const double v = x[size_t(i)];
            ref[size_t(i)] = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
        }
    }
    SECTION("quick_gelu") {
        threaded ? ops::quick_gelu(x.data(), y.data(), n, pool) : ops::quick_gelu(x.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i) ref[size_t(i)] = x[size_t(i)] * sigmoid(1.702 * x[size_t(i)]);
    }
    SECTION("silu") {
        threaded ? ops::silu(x.data(), y.data(), n, pool) : ops::silu(x.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i) ref[size_t(i)] = x[size_t(i)] * sigmoid(x[size_t(i)]);
    }
    SECTION("swiglu") {
        threaded ? ops::swiglu(x.data(), up.data(), y.data(), n, pool)
                 : ops::swiglu(x.data(), up.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i)
            ref[size_t(i)] = x[size_t(i)] * sigmoid(x[size_t(i)]) * up[size_t(i)];
    }
    require_close(y, ref, 1e-6f, 2e-6f);
}

TEST_CASE("threaded activations cover large arrays exactly like the serial ones", "[ops]") {
    const int64_t n = 3 * 4096 * 5 + 17;  // several chunks per thread plus a partial one
    ThreadPool pool(2);
    const auto x = random_floats(size_t(n), 50, 5.0f);
    std::vector<float> serial(static_cast<size_t>(n)), threaded(static_cast<size_t>(n), -1.0f);
    ops::gelu_tanh(x.data(), serial.data(), n);
    ops::gelu_tanh(x.data(), threaded.data(), n, pool);
    require_same(threaded, serial);
}

// ---- RoPE -----------------------------------------------------------------------------------

namespace {

// RoPE in double from MODELS.md §1.4: θ_i = base^(−2i/d), a = pos·θ_i, pairs per style.
std::vector<double> rope_ref(const std::vector<float>& x, const std::vector<int32_t>& pos, int64_t n_heads,
                             int64_t d, double base, ops::RopeStyle style) {
    std::vector<double> y(x.begin(), x.end());
    const int64_t n_tokens = int64_t(pos.size());
    for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t h = 0; h < n_heads; ++h)
            for (int64_t i = 0; i < d / 2; ++i) {
                const double a = pos[size_t(t)] * std::pow(base, -2.0 * double(i) / double(d));
                const int64_t base_idx = (t * n_heads + h) * d;
                const int64_t i0 = style == ops::RopeStyle::AdjacentPairs ? 2 * i : i;
                const int64_t i1 = style == ops::RopeStyle::AdjacentPairs ? 2 * i + 1 : i + d / 2;
                const double u = x[size_t(base_idx + i0)], v = x[size_t(base_idx + i1)];
                y[size_t(base_idx + i0)] = u * std::cos(a) - v * std::sin(a);
                y[size_t(base_idx + i1)] = u * std::sin(a) + v * std::cos(a);
            }
    return y;
}

// The HF→GGUF converter's per-head row permutation (MODELS.md §1.4):
// gguf[h·d + 2i + p] = hf[h·d + p·(d/2) + i], applied to every token's [n_heads][d] vector.
std::vector<float> permute_like_converter(const std::vector<float>& hf, int64_t n_tokens, int64_t n_heads,
                                          int64_t d) {
    std::vector<float> gguf(hf.size());
    for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t h = 0; h < n_heads; ++h)
            for (int64_t p = 0; p < 2; ++p)
                for (int64_t i = 0; i < d / 2; ++i) {
                    const int64_t row = (t * n_heads + h) * d;
                    gguf[size_t(row + 2 * i + p)] = hf[size_t(row + p * (d / 2) + i)];
                }
    return gguf;
}

}  // namespace

TEST_CASE("rope: both styles match the formulas; position 0 is the identity", "[ops][rope]") {
    const int64_t head_dim = GENERATE(2, 8, 64, 128);
    const int64_t n_heads = GENERATE(1, 3, 9);
    const auto style = GENERATE(ops::RopeStyle::AdjacentPairs, ops::RopeStyle::HalfSplit);
    const float base = 10000.0f;
    const std::vector<int32_t> pos = {0, 1, 2, 7, 63, 300, 1199};
    const int64_t n_tokens = int64_t(pos.size());
    const auto x = random_floats(size_t(n_tokens * n_heads * head_dim), 60 + head_dim);

    std::vector<float> y = x;
    ops::rope(y.data(), pos.data(), n_tokens, n_heads, head_dim, base, style);
    // Position 0: cos 0 = 1, sin 0 = 0 exactly, so token 0 is unchanged bit for bit.
    for (int64_t i = 0; i < n_heads * head_dim; ++i) REQUIRE(y[size_t(i)] == x[size_t(i)]);
    // The float angle pos·θ carries a relative error of a few ulp (ggml's iterated θ: up to
    // ~d/2 roundings): a few 1e-4 rad at pos 1199.
    require_close(y, rope_ref(x, pos, n_heads, head_dim, base, style), 6e-4f, 1e-5f);
}

TEST_CASE("rope: AdjacentPairs on converter-permuted Q/K equals HalfSplit on HF Q/K", "[ops][rope]") {
    const int64_t head_dim = GENERATE(8, 64);
    const int64_t n_heads = 9, n_kv_heads = 3;
    const float base = GENERATE(10000.0f, 100000.0f);
    const std::vector<int32_t> pos = {0, 5, 17, 129, 800};
    const int64_t T = int64_t(pos.size());
    const auto q_hf = random_floats(size_t(T * n_heads * head_dim), 70);
    const auto k_hf = random_floats(size_t(T * n_kv_heads * head_dim), 71);

    std::vector<float> q_half = q_hf, k_half = k_hf;
    ops::rope(q_half.data(), pos.data(), T, n_heads, head_dim, base, ops::RopeStyle::HalfSplit);
    ops::rope(k_half.data(), pos.data(), T, n_kv_heads, head_dim, base, ops::RopeStyle::HalfSplit);
    auto q_adj = permute_like_converter(q_hf, T, n_heads, head_dim);
    auto k_adj = permute_like_converter(k_hf, T, n_kv_heads, head_dim);
    ops::rope(q_adj.data(), pos.data(), T, n_heads, head_dim, base, ops::RopeStyle::AdjacentPairs);
    ops::rope(k_adj.data(), pos.data(), T, n_kv_heads, head_dim, base, ops::RopeStyle::AdjacentPairs);

    // Scores between every query token/head and every key token of its KV head (GQA).
    auto dot = [&](const std::vector<float>& q, const std::vector<float>& k, int64_t tq, int64_t h, int64_t tk) {
        const int64_t g = h / (n_heads / n_kv_heads);
        double s = 0;
        for (int64_t d = 0; d < head_dim; ++d)
            s += double(q[size_t((tq * n_heads + h) * head_dim + d)]) * k[size_t((tk * n_kv_heads + g) * head_dim + d)];
        return s;
    };
    bool any_rotated = false;
    for (int64_t tq = 0; tq < T; ++tq)
        for (int64_t h = 0; h < n_heads; ++h)
            for (int64_t tk = 0; tk < T; ++tk) {
                const double s_half = dot(q_half, k_half, tq, h, tk);
                const double s_adj = dot(q_adj, k_adj, tq, h, tk);
                INFO("q token " << tq << " head " << h << " k token " << tk);
                REQUIRE(close_enough(float(s_adj), float(s_half), 2e-3f, 1e-4f));
                // Rotation does change the scores here, so the equality above says something.
                if (std::fabs(s_half - dot(q_hf, k_hf, tq, h, tk)) > 1e-2) any_rotated = true;
            }
    REQUIRE(any_rotated);
    // Not only the dot products: the rotated vectors are the permutation of each other.
    const auto q_half_perm = permute_like_converter(q_half, T, n_heads, head_dim);
    for (size_t i = 0; i < q_adj.size(); ++i) REQUIRE(close_enough(q_adj[i], q_half_perm[i], 6e-4f, 1e-5f));
}

TEST_CASE("rope: the wrong style is visible away from position 0", "[ops][rope]") {
    const int64_t d = 64;
    const std::vector<int32_t> pos = {0, 40};
    const auto x = random_floats(size_t(2 * d), 80);
    std::vector<float> adj = x, half = x;
    ops::rope(adj.data(), pos.data(), 2, 1, d, 10000.0f, ops::RopeStyle::AdjacentPairs);
    ops::rope(half.data(), pos.data(), 2, 1, d, 10000.0f, ops::RopeStyle::HalfSplit);
    CHECK(std::equal(adj.begin(), adj.begin() + d, half.begin()));
    double diff = 0;
    for (int64_t i = d; i < 2 * d; ++i) diff += std::fabs(adj[size_t(i)] - half[size_t(i)]);
    CHECK(diff > 1.0);
    int32_t p = 0;
    float odd[3] = {1, 2, 3};
    CHECK_THROWS_AS(ops::rope(odd, &p, 1, 1, 3, 10000.0f, ops::RopeStyle::HalfSplit), std::invalid_argument);
}

// ---- get_rows -------------------------------------------------------------------------------

namespace {

Tensor table_view(const std::string& name, DType t, int64_t dim, int64_t n_rows, const void* data) {
    Tensor tab;
    tab.name = name;
    tab.dtype = t;
    tab.n_dims = 2;
    tab.ne = {dim, n_rows, 1, 1};
    tab.nb = contiguous_strides(t, tab.ne);
    tab.data = data;
    return tab;
}

}  // namespace

TEST_CASE("get_rows from an F32 table", "[ops][get_rows]") {
    const int64_t dim = GENERATE(1, 7, 13, 127, 576, 960);
    const int64_t n_rows = 11;
    const auto table = random_floats(size_t(dim * n_rows), 90 + dim);
    const Tensor tab = table_view("token_embd.weight", DType::F32, dim, n_rows, table.data());
    const std::vector<int32_t> ids = {3, 0, 10, 3, 7};
    std::vector<float> out(ids.size() * size_t(dim));
    ops::get_rows(tab, ids.data(), int64_t(ids.size()), out.data());
    for (size_t i = 0; i < ids.size(); ++i)
        for (int64_t e = 0; e < dim; ++e) REQUIRE(out[i * size_t(dim) + size_t(e)] == table[size_t(ids[i] * dim + e)]);
}

TEST_CASE("get_rows: an id out of range throws a model error naming the tensor", "[ops][get_rows]") {
    const std::vector<float> table(4 * 5, 1.0f);
    const Tensor tab = table_view("token_embd.weight", DType::F32, 4, 5, table.data());
    std::vector<float> out(4);
    for (int32_t bad : {-1, 5, 1 << 30}) {
        try {
            ops::get_rows(tab, &bad, 1, out.data());
            FAIL("no exception for id " << bad);
        } catch (const Error& e) {
            CHECK(e.kind() == ErrorKind::Model);
            CHECK_THAT(std::string(e.what()), Catch::Contains("token_embd.weight") && Catch::Contains(std::to_string(bad)));
        }
    }
}

TEST_CASE("get_rows from F16 and Q8_0 tables", "[ops][get_rows]") {
    const int64_t dim = GENERATE(32, 64, 576, 960);
    const int64_t n_rows = 6;
    const std::vector<int32_t> ids = {5, 1, 1, 0};
    std::vector<float> out(ids.size() * size_t(dim));

    SECTION("F16") {
        const auto src = random_floats(size_t(dim * n_rows), 100, 4.0f);
        std::vector<uint16_t> halfs(src.size());
        for (size_t i = 0; i < src.size(); ++i) halfs[i] = f32_to_fp16(src[i]);
        ops::get_rows(table_view("emb", DType::F16, dim, n_rows, halfs.data()), ids.data(), int64_t(ids.size()),
                      out.data());
        for (size_t i = 0; i < ids.size(); ++i)
            for (int64_t e = 0; e < dim; ++e)
                REQUIRE(out[i * size_t(dim) + size_t(e)] == fp16_to_f32(halfs[size_t(ids[i] * dim + e)]));
    }
    SECTION("Q8_0") {
        // Blocks written by hand: value = d · qs with d = 2^-k, so every product is exact.
        const int64_t blocks_per_row = dim / kQK;
        std::vector<BlockQ8_0> blocks(size_t(blocks_per_row * n_rows));
        for (size_t b = 0; b < blocks.size(); ++b) {
            blocks[b].d = f32_to_fp16(std::ldexp(1.0f, -int(b % 5)));
            for (int j = 0; j < kQK; ++j) blocks[b].qs[j] = int8_t(int(b * 7 + size_t(j) * 13) % 255 - 127);
        }
        ops::get_rows(table_view("emb", DType::Q8_0, dim, n_rows, blocks.data()), ids.data(), int64_t(ids.size()),
                      out.data());
        for (size_t i = 0; i < ids.size(); ++i)
            for (int64_t e = 0; e < dim; ++e) {
                const BlockQ8_0& blk = blocks[size_t(ids[i] * blocks_per_row + e / kQK)];
                REQUIRE(out[i * size_t(dim) + size_t(e)] == fp16_to_f32(blk.d) * float(blk.qs[e % kQK]));
            }
    }
}

// ---- concat, permute, transpose -------------------------------------------------------------

TEST_CASE("concat along the inner and the outer axis", "[ops]") {
    const int64_t rows = GENERATE(1, 7, 13);
    const int64_t na = GENERATE(1, 127, 576), nb = GENERATE(7, 960);
    const auto a = random_floats(size_t(rows * na), 110), b = random_floats(size_t(rows * nb), 111);
    std::vector<float> y(size_t(rows * (na + nb)));
    ops::concat_inner(a.data(), b.data(), y.data(), rows, na, nb);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < na + nb; ++i)
            REQUIRE(y[size_t(r * (na + nb) + i)] == (i < na ? a[size_t(r * na + i)] : b[size_t(r * nb + i - na)]));

    const int64_t rows_b = 3;
    const auto c = random_floats(size_t(rows_b * na), 112);
    std::vector<float> z(size_t((rows + rows_b) * na));
    ops::concat_outer(a.data(), rows, c.data(), rows_b, z.data(), na);
    for (int64_t r = 0; r < rows + rows_b; ++r)
        for (int64_t i = 0; i < na; ++i)
            REQUIRE(z[size_t(r * na + i)] == (r < rows ? a[size_t(r * na + i)] : c[size_t((r - rows) * na + i)]));
}

TEST_CASE("permute: every axis order of an awkward 4-D shape", "[ops]") {
    const int64_t ne[4] = {3, 4, 5, 13};  // ggml order: ne[0] innermost
    const int64_t n = 3 * 4 * 5 * 13;
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) x[size_t(i)] = float(i);
    int order[4] = {0, 1, 2, 3};
    do {
        std::vector<float> y(static_cast<size_t>(n), -1.0f);
        ops::permute(x.data(), ne, order, y.data());
        // Scatter reference: input element j = (j0, j1, j2, j3) lands at output index i with
        // i_k = j_{order[k]}, output extents ne[order[k]].
        int64_t ny[4];
        for (int k = 0; k < 4; ++k) ny[k] = ne[order[k]];
        for (int64_t j3 = 0; j3 < ne[3]; ++j3)
            for (int64_t j2 = 0; j2 < ne[2]; ++j2)
                for (int64_t j1 = 0; j1 < ne[1]; ++j1)
                    for (int64_t j0 = 0; j0 < ne[0]; ++j0) {
                        const int64_t j[4] = {j0, j1, j2, j3};
                        const int64_t off_y =
                            j[order[0]] + ny[0] * (j[order[1]] + ny[1] * (j[order[2]] + ny[2] * j[order[3]]));
                        const int64_t off_x = j0 + ne[0] * (j1 + ne[1] * (j2 + ne[2] * j3));
                        INFO("order " << order[0] << order[1] << order[2] << order[3]);
                        REQUIRE(y[size_t(off_y)] == x[size_t(off_x)]);
                    }
    } while (std::next_permutation(order, order + 4));

    // The documented example: [T][H][d] (ne {d, H, T}) -> [H][T][d] with order {0, 2, 1, 3}.
    const int64_t d = 2, H = 3, T = 4;
    const int64_t ne2[4] = {d, H, T, 1};
    const int swap12[4] = {0, 2, 1, 3};
    std::vector<float> y(size_t(d * H * T));
    ops::permute(x.data(), ne2, swap12, y.data());
    for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t e = 0; e < d; ++e) REQUIRE(y[size_t((h * T + t) * d + e)] == x[size_t((t * H + h) * d + e)]);

    const int bad[4] = {0, 1, 1, 3};
    CHECK_THROWS_AS(ops::permute(x.data(), ne, bad, y.data()), std::invalid_argument);
}

TEST_CASE("transpose_2d", "[ops]") {
    const int64_t rows = GENERATE(1, 7, 13, 127), cols = GENERATE(1, 33, 576, 960);
    const auto x = random_floats(size_t(rows * cols), 120);
    std::vector<float> y(x.size());
    ops::transpose_2d(x.data(), y.data(), rows, cols);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) REQUIRE(y[size_t(c * rows + r)] == x[size_t(r * cols + c)]);
}
