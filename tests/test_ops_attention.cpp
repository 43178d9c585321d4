// ops::attention and KvCache: against a naive double-precision reference, causal and not, GQA,
// q_pos0 > 0, thread-count independence, and the nanoVLM invariant (a prefill of T tokens
// equals T single-token decode steps through the KV cache).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/kv_cache.h"
#include "core/ops.h"
#include "core/thread_pool.h"
#include "tests/helpers.h"

using namespace glimpse;
using glimpse::test::close_enough;
using glimpse::test::random_floats;

namespace {

struct AttnCase {
    int64_t n_q, n_kv, n_heads, n_kv_heads, head_dim;
};

// Naive attention in double, straight from MODELS.md §1.2: scores, mask, softmax, weighted sum.
std::vector<double> attention_ref(const std::vector<float>& q, const std::vector<float>& k,
                                  const std::vector<float>& v, const AttnCase& c, double scale, bool causal,
                                  int64_t q_pos0) {
    const int64_t d = c.head_dim, group = c.n_heads / c.n_kv_heads;
    std::vector<double> out(size_t(c.n_q * c.n_heads * d), 0.0);
    std::vector<double> s(size_t(c.n_kv));
    for (int64_t i = 0; i < c.n_q; ++i)
        for (int64_t h = 0; h < c.n_heads; ++h) {
            const int64_t g = h / group;
            double max = -INFINITY;
            for (int64_t j = 0; j < c.n_kv; ++j) {
                double dot = 0;
                for (int64_t e = 0; e < d; ++e)
                    dot += double(q[size_t((i * c.n_heads + h) * d + e)]) * k[size_t((j * c.n_kv_heads + g) * d + e)];
                const bool masked = causal && j > q_pos0 + i;
                s[size_t(j)] = masked ? -INFINITY : dot * scale;
                max = std::max(max, s[size_t(j)]);
            }
            double sum = 0;
            for (int64_t j = 0; j < c.n_kv; ++j) sum += s[size_t(j)] = std::exp(s[size_t(j)] - max);
            for (int64_t j = 0; j < c.n_kv; ++j)
                for (int64_t e = 0; e < d; ++e)
                    out[size_t((i * c.n_heads + h) * d + e)] +=
                        s[size_t(j)] / sum * v[size_t((j * c.n_kv_heads + g) * d + e)];
        }
    return out;
}

void require_close(const std::vector<float>& got, const std::vector<double>& ref, float abs_tol, float rel_tol) {
    REQUIRE(got.size() == ref.size());
    for (size_t i = 0; i < got.size(); ++i) {
        if (!close_enough(got[i], float(ref[i]), abs_tol, rel_tol)) {
            INFO("index " << i << ": got " << got[i] << ", expected " << ref[i]);
            REQUIRE(false);
        }
    }
}

}  // namespace

TEST_CASE("attention matches the reference (causal, GQA, q_pos0, odd sizes)", "[ops][attention]") {
    const AttnCase c = GENERATE(AttnCase{1, 1, 1, 1, 64}, AttnCase{7, 7, 3, 1, 64}, AttnCase{13, 13, 9, 3, 64},
                                AttnCase{13, 20, 9, 3, 13}, AttnCase{127, 127, 15, 5, 64},
                                AttnCase{33, 40, 4, 4, 7}, AttnCase{64, 64, 2, 2, 1},
                                AttnCase{576, 576, 2, 1, 64}, AttnCase{5, 960, 3, 3, 80},
                                // one-vector blocks, the last one overlapping (head_dim and keys
                                // between one and two vectors of 8 or 16 lanes, or past two)
                                AttnCase{64, 64, 4, 4, 24}, AttnCase{30, 30, 4, 2, 24},
                                AttnCase{9, 25, 4, 2, 40}, AttnCase{3, 12, 2, 1, 12});
    const bool causal = GENERATE(false, true);
    const int threads = GENERATE(1, 2);
    // Causal: the queries are the last n_q positions (a prefill continuing a cache), and once
    // from position 0 with more keys than the rows can see (clamping).
    const bool continuing = GENERATE(false, true);
    if (!causal && continuing) return;  // q_pos0 only matters with the mask
    const int64_t q_pos0 = continuing ? c.n_kv - c.n_q : 0;
    INFO("n_q " << c.n_q << " n_kv " << c.n_kv << " heads " << c.n_heads << "/" << c.n_kv_heads << " d "
                << c.head_dim << " causal " << causal << " q_pos0 " << q_pos0 << " threads " << threads);
    ThreadPool pool(threads);
    const auto q = random_floats(size_t(c.n_q * c.n_heads * c.head_dim), 200, 2.0f);
    const auto k = random_floats(size_t(c.n_kv * c.n_kv_heads * c.head_dim), 201, 2.0f);
    const auto v = random_floats(size_t(c.n_kv * c.n_kv_heads * c.head_dim), 202);
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    std::vector<float> out(q.size(), NAN);
    ops::attention(q.data(), k.data(), v.data(), out.data(), c.n_q, c.n_kv, c.n_heads, c.n_kv_heads, c.head_dim,
                   scale, causal, q_pos0, pool);
    require_close(out, attention_ref(q, k, v, c, scale, causal, q_pos0), 2e-5f, 1e-4f);
}

TEST_CASE("attention: causal row 0 from position 0 returns value row 0 of its KV head", "[ops][attention]") {
    ThreadPool pool(1);
    const AttnCase c{4, 4, 6, 2, 16};
    const auto q = random_floats(size_t(c.n_q * c.n_heads * c.head_dim), 210, 3.0f);
    const auto k = random_floats(size_t(c.n_kv * c.n_kv_heads * c.head_dim), 211, 3.0f);
    const auto v = random_floats(size_t(c.n_kv * c.n_kv_heads * c.head_dim), 212);
    std::vector<float> out(q.size());
    ops::attention(q.data(), k.data(), v.data(), out.data(), c.n_q, c.n_kv, c.n_heads, c.n_kv_heads, c.head_dim,
                   0.25f, true, 0, pool);
    for (int64_t h = 0; h < c.n_heads; ++h)
        for (int64_t e = 0; e < c.head_dim; ++e)
            REQUIRE(out[size_t(h * c.head_dim + e)] == v[size_t((h / 3) * c.head_dim + e)]);
}

TEST_CASE("attention: 1 and 2 threads give identical bits", "[ops][attention]") {
    const bool causal = GENERATE(false, true);
    const AttnCase c{100, 100, 6, 2, 64};
    const auto q = random_floats(size_t(c.n_q * c.n_heads * c.head_dim), 220);
    const auto k = random_floats(size_t(c.n_kv * c.n_kv_heads * c.head_dim), 221);
    const auto v = random_floats(size_t(c.n_kv * c.n_kv_heads * c.head_dim), 222);
    std::vector<float> one(q.size()), two(q.size());
    ThreadPool pool1(1), pool2(2);
    ops::attention(q.data(), k.data(), v.data(), one.data(), c.n_q, c.n_kv, c.n_heads, c.n_kv_heads, c.head_dim,
                   0.125f, causal, 0, pool1);
    ops::attention(q.data(), k.data(), v.data(), two.data(), c.n_q, c.n_kv, c.n_heads, c.n_kv_heads, c.head_dim,
                   0.125f, causal, 0, pool2);
    REQUIRE(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
}

TEST_CASE("attention: prefill equals token-by-token decode through the KV cache", "[ops][attention][kv_cache]") {
    const int64_t T = 37, H = 9, Hkv = 3, d = 64, layer = 1;
    const int threads = GENERATE(1, 2);
    ThreadPool pool(threads);
    const auto q = random_floats(size_t(T * H * d), 230, 2.0f);
    const auto k = random_floats(size_t(T * Hkv * d), 231, 2.0f);
    const auto v = random_floats(size_t(T * Hkv * d), 232);
    const float scale = 0.125f;

    // Prefill: all T tokens at once.
    KvCache prefill_cache(2, 64, Hkv, d);
    prefill_cache.write(layer, 0, k.data(), v.data(), T);
    std::vector<float> prefill(size_t(T * H * d));
    ops::attention_kt(q.data(), prefill_cache.kt(layer), prefill_cache.kt_stride(), prefill_cache.v(layer),
                      prefill.data(), T, T, H, Hkv, d, scale, true, 0, pool);
    require_close(prefill, attention_ref(q, k, v, {T, T, H, Hkv, d}, scale, true, 0), 2e-5f, 1e-4f);

    // Decode: one token per step, each seeing the cache so far.
    KvCache cache(2, 64, Hkv, d);
    std::vector<float> step(size_t(H * d));
    for (int64_t t = 0; t < T; ++t) {
        cache.write(layer, t, k.data() + t * Hkv * d, v.data() + t * Hkv * d, 1);
        REQUIRE(cache.used() == t + 1);
        ops::attention_kt(q.data() + t * H * d, cache.kt(layer), cache.kt_stride(), cache.v(layer), step.data(), 1,
                          t + 1, H, Hkv, d, scale, true, t, pool);
        for (int64_t i = 0; i < H * d; ++i) {
            INFO("token " << t << " element " << i);
            REQUIRE(close_enough(step[size_t(i)], prefill[size_t(t * H * d + i)], 1e-6f, 1e-6f));
        }
    }

    // Chunked prefill: 20 tokens, then the other 17 with q_pos0 = 20.
    KvCache chunked(2, 64, Hkv, d);
    const int64_t first = 20;
    chunked.write(layer, 0, k.data(), v.data(), first);
    chunked.write(layer, first, k.data() + first * Hkv * d, v.data() + first * Hkv * d, T - first);
    std::vector<float> rest(size_t((T - first) * H * d));
    ops::attention_kt(q.data() + first * H * d, chunked.kt(layer), chunked.kt_stride(), chunked.v(layer), rest.data(),
                      T - first, T, H, Hkv, d, scale, true, first, pool);
    for (size_t i = 0; i < rest.size(); ++i)
        REQUIRE(close_enough(rest[i], prefill[size_t(first * H * d) + i], 1e-6f, 1e-6f));
}

TEST_CASE("attention rejects inconsistent arguments", "[ops][attention]") {
    ThreadPool pool(1);
    std::vector<float> buf(64, 0.0f);
    CHECK_THROWS_AS(ops::attention(buf.data(), buf.data(), buf.data(), buf.data(), 1, 1, 3, 2, 4, 1.0f, false, 0, pool),
                    std::invalid_argument);
    CHECK_THROWS_AS(ops::attention(buf.data(), buf.data(), buf.data(), buf.data(), 1, 1, 2, 2, 4, 1.0f, true, -1, pool),
                    std::invalid_argument);
    CHECK_THROWS_AS(ops::attention(buf.data(), buf.data(), buf.data(), buf.data(), 1, 0, 2, 2, 4, 1.0f, false, 0, pool),
                    std::invalid_argument);
}

TEST_CASE("KvCache: bounds, overflow, clear and truncate", "[ops][kv_cache]") {
    const int64_t n_ctx = 8, Hkv = 3, d = 5;
    KvCache cache(2, n_ctx, Hkv, d);
    CHECK(cache.n_ctx() == n_ctx);
    CHECK(cache.row_size() == Hkv * d);
    // Key rows padded to an odd number of 64-byte lines (16 floats here).
    CHECK(cache.kt_stride() == 16);
    CHECK(KvCache(1, 16, 1, 1).kt_stride() == 16);
    CHECK(KvCache(1, 17, 1, 1).kt_stride() == 48);
    CHECK(KvCache(1, 4096, 1, 1).kt_stride() == 4112);
    CHECK(cache.bytes() == uint64_t(2 * (16 + n_ctx) * Hkv * d * 4));
    const auto rows = random_floats(size_t(n_ctx * Hkv * d), 240);
    const auto rows_v = random_floats(size_t(n_ctx * Hkv * d), 241);

    cache.write(0, 0, rows.data(), rows_v.data(), 6);
    cache.write(0, 6, rows.data() + 6 * Hkv * d, rows_v.data() + 6 * Hkv * d, 2);  // exactly full: fine
    CHECK(cache.used() == n_ctx);
    for (int64_t pos = 0; pos < n_ctx; ++pos)
        for (int64_t g = 0; g < Hkv; ++g)
            for (int64_t e = 0; e < d; ++e) REQUIRE(cache.key(0, pos, g, e) == rows[size_t((pos * Hkv + g) * d + e)]);
    CHECK(std::memcmp(cache.v(0), rows_v.data(), rows_v.size() * sizeof(float)) == 0);

    try {
        cache.write(1, 7, rows.data(), rows_v.data(), 2);  // positions 7, 8: one too many
        FAIL("no exception when the context is full");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Usage);
        CHECK_THAT(std::string(e.what()), Catch::Contains("KV cache full") && Catch::Contains("8"));
    }
    CHECK_THROWS_AS(cache.write(0, n_ctx, rows.data(), rows_v.data(), 1), Error);
    CHECK_THROWS_AS(cache.write(0, INT64_MAX, rows.data(), rows_v.data(), 1), Error);
    CHECK_THROWS_AS(cache.write(2, 0, rows.data(), rows_v.data(), 1), std::invalid_argument);
    CHECK_THROWS_AS(cache.write(0, -1, rows.data(), rows_v.data(), 1), std::invalid_argument);
    CHECK_THROWS_AS(cache.kt(-1), std::invalid_argument);

    cache.truncate(3);
    CHECK(cache.used() == 3);
    cache.truncate(5);
    CHECK(cache.used() == 3);
    cache.clear();
    CHECK(cache.used() == 0);

    CHECK_THROWS_AS(KvCache(0, 8, 1, 1), std::invalid_argument);
    CHECK_THROWS_AS(KvCache(1 << 20, int64_t(1) << 40, 64, 128), std::invalid_argument);
}
