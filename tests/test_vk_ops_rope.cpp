// Parity of the Vulkan rotary-embedding ops with the CPU's ops::rope (the rest of the ops:
// test_vk_ops.cpp): rope in place, at an offset and on two tensors at once; rope_qkv, which
// splits a fused Q·K·V product into q and the KV cache; and attention_qkv, a decode step's
// attention that does rope_qkv's work itself. Tolerances as there.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/ops.h"
#include "core/thread_pool.h"
#include "core/vk_ops.h"
#include "tests/test_vk_helpers.h"

using namespace glimpse;
using glimpse::test::random_floats;
using glimpse::test::require_close;
using glimpse::test::reference_pool;

namespace {

// Sequences side by side in one batch, as a batched step or prefill has them: sequence s has
// seqs[s].n_q rows after seqs[s].q_pos0 cached positions. qkv [rows + 1][row] random (a
// sentinel row after theirs), pos [rows + 1] each row's position (the sentinel's -1).
struct SideBySide {
    struct Seq {
        int64_t n_q, q_pos0;
    };
    std::vector<Seq> seqs;
    int64_t rows = 0;
    std::vector<float> qkv;
    std::vector<int32_t> pos;
    int64_t row_floats;

    SideBySide(std::vector<Seq> s, int64_t row, uint32_t seed) : seqs(std::move(s)), row_floats(row) {
        for (const Seq& q : seqs) {
            rows += q.n_q;
            for (int64_t t = 0; t < q.n_q; ++t) pos.push_back(int32_t(q.q_pos0 + t));
        }
        pos.push_back(-1);
        qkv = random_floats(size_t((rows + 1) * row), seed, 2.0f);
    }
};
using Seq = SideBySide::Seq;

// Rows [row0, row0 + n) of sb's qkv and positions in buffers of their own: a sequence alone.
vk::Buffer qkv_rows(vk::Context& ctx, const SideBySide& sb, int64_t row0, int64_t n) {
    const auto first = sb.qkv.begin() + row0 * sb.row_floats;
    return vk::upload_floats(ctx, std::vector<float>(first, first + n * sb.row_floats));
}
vk::Buffer pos_rows(vk::Context& ctx, const SideBySide& sb, int64_t row0, int64_t n) {
    vk::Buffer b(ctx, uint64_t(n) * 4);
    vk::upload(ctx, b, sb.pos.data() + row0, uint64_t(n) * 4);
    return b;
}

// Rows [row0, row0 + n) of `all`, rows of row_floats floats: one sequence's part of a batch's output.
std::vector<float> rows_of(const std::vector<float>& all, int64_t row0, int64_t n, int64_t row_floats) {
    return std::vector<float>(all.begin() + row0 * row_floats, all.begin() + (row0 + n) * row_floats);
}

// The first n floats of a and b equal, bit for bit (a sequence's caches written batched and alone).
void require_same_floats(vk::Context& ctx, const vk::Buffer& a, const vk::Buffer& b, uint64_t n) {
    REQUIRE(vk::download_floats(ctx, a, n) == vk::download_floats(ctx, b, n));
}

}  // namespace

TEST_CASE("vulkan rope (both styles) matches the CPU", "[vulkan]") {
    VK_OR_SKIP(ctx);
    const ops::RopeStyle style = GENERATE(ops::RopeStyle::AdjacentPairs, ops::RopeStyle::HalfSplit);
    struct Shape {
        int64_t tokens, heads, dim;
        float base;
    };
    for (const Shape s : {Shape{1, 1, 2, 10000.f}, Shape{7, 3, 64, 10000.f}, Shape{13, 5, 128, 100000.f}, Shape{3, 2, 30, 500.f}}) {
        INFO("tokens=" << s.tokens << " heads=" << s.heads << " dim=" << s.dim);
        const size_t total = size_t(s.tokens * s.heads * s.dim);
        const auto x = random_floats(total, 21);
        std::vector<int32_t> pos(size_t(s.tokens));
        for (int64_t t = 0; t < s.tokens; ++t) pos[size_t(t)] = int32_t(t * 97 + (t % 2 ? 1000 : 3));  // up to ~2200
        vk::Buffer dx = vk::upload_floats(*ctx, x);
        vk::Buffer dpos(*ctx, pos.size() * 4);
        vk::upload(*ctx, dpos, pos.data(), pos.size() * 4);
        const vk::RopeTable table = vk::make_rope_table(*ctx, s.dim, s.base, style);
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::rope(rec, dx, dpos, table, s.tokens, s.heads);
        rec.submit_and_wait();
        auto ref = x;
        ops::rope(ref.data(), pos.data(), s.tokens, s.heads, s.dim, s.base, style);
        // Angles up to ~2200 rad: float's own spacing there is 2.4e-4.
        require_close(vk::download_floats(*ctx, dx, total), ref, 2e-5f, 1e-4f);
        // The same rows at an offset (a KV-cache row): rotated there, the floats around untouched.
        const int64_t off = 2 * s.dim + 1;
        std::vector<float> padded(size_t(off) + total + 5, 7.5f);
        std::copy(x.begin(), x.end(), padded.begin() + off);
        vk::Buffer dp = vk::upload_floats(*ctx, padded);
        rec.begin();
        vk::rope(rec, dp, dpos, table, s.tokens, s.heads, off);
        rec.submit_and_wait();
        const auto rotated = vk::download_floats(*ctx, dx, total);
        std::copy(rotated.begin(), rotated.end(), padded.begin() + off);
        REQUIRE(vk::download_floats(*ctx, dp, padded.size()) == padded);
        // Two tensors in one dispatch (Q, and K rows at a cache offset with other heads): each
        // exactly as rotated alone.
        const int64_t heads2 = s.heads + 2;
        const auto x2 = random_floats(size_t(s.tokens * heads2 * s.dim), 22);
        std::vector<float> padded2(size_t(off) + x2.size() + 3, -2.5f);
        std::copy(x2.begin(), x2.end(), padded2.begin() + off);
        vk::Buffer da = vk::upload_floats(*ctx, x), db = vk::upload_floats(*ctx, padded2);
        vk::Buffer db_alone = vk::upload_floats(*ctx, padded2);
        rec.begin();
        const vk::RopeTarget second{&db, heads2, off};
        vk::rope(rec, vk::RopeTarget{&da, s.heads, 0}, &second, dpos, table, s.tokens);
        vk::rope(rec, db_alone, dpos, table, s.tokens, heads2, off);
        rec.submit_and_wait();
        REQUIRE(vk::download_floats(*ctx, da, total) == rotated);
        const auto alone = vk::download_floats(*ctx, db_alone, padded2.size());
        REQUIRE(vk::download_floats(*ctx, db, padded2.size()) == alone);
        REQUIRE(alone[size_t(off - 1)] == -2.5f);
        auto ref2 = x2;
        ops::rope(ref2.data(), pos.data(), s.tokens, heads2, s.dim, s.base, style);
        require_close(std::vector<float>(alone.begin() + off, alone.begin() + off + int64_t(x2.size())), ref2, 2e-5f,
                      1e-4f);
    }
}

TEST_CASE("vulkan rope_qkv splits a fused Q·K·V product into q and the caches, Q and K rotated", "[vulkan]") {
    VK_OR_SKIP(ctx);
    const ops::RopeStyle style = GENERATE(ops::RopeStyle::AdjacentPairs, ops::RopeStyle::HalfSplit);
    struct Shape {
        int64_t tokens, heads, kv_heads, dim;
    };
    for (const Shape s : {Shape{1, 1, 1, 2}, Shape{7, 3, 1, 64}, Shape{13, 6, 2, 30}, Shape{5, 4, 4, 128}}) {
        INFO("tokens=" << s.tokens << " heads=" << s.heads << " kv_heads=" << s.kv_heads << " dim=" << s.dim);
        const int64_t qd = s.heads * s.dim, kvd = s.kv_heads * s.dim, row = qd + 2 * kvd;
        const auto qkv = random_floats(size_t(s.tokens * row), 31);
        std::vector<int32_t> pos(size_t(s.tokens));
        for (int64_t t = 0; t < s.tokens; ++t) pos[size_t(t)] = int32_t(40 + t * 131);
        // The CPU: each token's row cut into Q, K and V; Q and K rotated.
        std::vector<float> q_ref, k_ref, v_ref;
        for (int64_t t = 0; t < s.tokens; ++t) {
            const float* r = qkv.data() + t * row;
            q_ref.insert(q_ref.end(), r, r + qd);
            k_ref.insert(k_ref.end(), r + qd, r + qd + kvd);
            v_ref.insert(v_ref.end(), r + qd + kvd, r + row);
        }
        ops::rope(q_ref.data(), pos.data(), s.tokens, s.heads, s.dim, 10000.f, style);
        ops::rope(k_ref.data(), pos.data(), s.tokens, s.kv_heads, s.dim, 10000.f, style);
        // The caches hold other rows before and after the ones written (cache_offset: two rows in).
        const int64_t off = 2 * kvd, cache = off + s.tokens * kvd + kvd;
        const std::vector<float> k_old(size_t(cache), 3.25f), v_old(size_t(cache), -1.5f);
        vk::Buffer dqkv = vk::upload_floats(*ctx, qkv), dq(*ctx, uint64_t(s.tokens * qd) * 4);
        vk::Buffer dk = vk::upload_floats(*ctx, k_old), dv = vk::upload_floats(*ctx, v_old);
        vk::Buffer dpos(*ctx, pos.size() * 4);
        vk::upload(*ctx, dpos, pos.data(), pos.size() * 4);
        const vk::RopeTable table = vk::make_rope_table(*ctx, s.dim, 10000.f, style);
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::rope_qkv(rec, dqkv, vk::QkvSplit{&dq, &dk, &dv, s.heads, s.kv_heads, off}, dpos, table, s.tokens);
        rec.submit_and_wait();
        require_close(vk::download_floats(*ctx, dq, uint64_t(s.tokens * qd)), q_ref, 2e-5f, 1e-4f);
        const auto k = vk::download_floats(*ctx, dk, uint64_t(cache)), v = vk::download_floats(*ctx, dv, uint64_t(cache));
        require_close(std::vector<float>(k.begin() + off, k.begin() + off + int64_t(k_ref.size())), k_ref, 2e-5f, 1e-4f);
        REQUIRE(std::vector<float>(v.begin() + off, v.begin() + off + int64_t(v_ref.size())) == v_ref);
        for (int64_t i = 0; i < cache; ++i)
            if (i < off || i >= off + s.tokens * kvd) {
                INFO("cache float " << i);
                REQUIRE(k[size_t(i)] == 3.25f);
                REQUIRE(v[size_t(i)] == -1.5f);
            }
    }
    // A destination that is also the source is refused.
    vk::Buffer a(*ctx, 64 * 4), b(*ctx, 64 * 4), c(*ctx, 64 * 4), pos(*ctx, 4);
    const vk::RopeTable table = vk::make_rope_table(*ctx, 2, 10000.f, style);
    vk::Recorder rec(*ctx);
    rec.begin();
    CHECK_THROWS_AS(vk::rope_qkv(rec, a, vk::QkvSplit{&a, &b, &c, 1, 1, 0}, pos, table, 1), std::invalid_argument);
    CHECK_THROWS_AS(vk::rope_qkv(rec, a, vk::QkvSplit{&b, &c, &c, 1, 1, 0}, pos, table, 1), std::invalid_argument);
    rec.submit_and_wait();
}

TEST_CASE("vulkan attention_qkv equals rope_qkv then attention: the output and the cache rows it writes",
          "[vulkan]") {
    VK_OR_SKIP(ctx);
    const ops::RopeStyle style = GENERATE(ops::RopeStyle::AdjacentPairs, ops::RopeStyle::HalfSplit);
    struct Shape {
        int64_t n_q, heads, kv_heads, dim, q_pos0;
        bool split;  // with a partials buffer, so the keys split where attention splits them
    };
    // An empty cache; a short one (unsplit); the keys split 10 ways (decode of SmolVLM's
    // heads); a head_dim not a multiple of 4 (scalar loads) with 3 new keys; 8 new keys of
    // head_dim 128 (the 1024 floats the shader stages); head_dim 256 (two rows); keys past
    // one 2048-key chunk, split, and unsplit with the new keys on both sides of the chunk's end.
    const Shape shapes[] = {{1, 1, 1, 2, 0, true},     {1, 4, 2, 64, 5, true},  {1, 15, 5, 64, 700, true},
                            {3, 3, 1, 30, 200, true},  {8, 4, 4, 128, 130, true}, {2, 2, 1, 256, 64, true},
                            {7, 6, 2, 64, 121, true},  {1, 2, 1, 64, 2500, true}, {5, 2, 1, 64, 2045, false}};
    int64_t most = 0;
    for (const Shape& s : shapes) most = std::max(most, vk::attention_partial_floats(s.n_q, s.heads, s.dim));
    vk::Buffer partials(*ctx, uint64_t(most) * 4);
    vk::upload(*ctx, partials, std::vector<uint32_t>(size_t(most), 0u).data(), uint64_t(most) * 4);
    ThreadPool pool(1);
    for (const Shape& s : shapes) {
        INFO("n_q=" << s.n_q << " heads=" << s.heads << "/" << s.kv_heads << " dim=" << s.dim << " q_pos0=" << s.q_pos0
                    << (s.split ? "" : " unsplit"));
        REQUIRE(vk::attention_qkv_fits(s.n_q, s.dim));
        const int64_t qd = s.heads * s.dim, kvd = s.kv_heads * s.dim, row = qd + 2 * kvd;
        const int64_t n_kv = s.q_pos0 + s.n_q, cache = (n_kv + 1) * kvd;  // one row past the step's
        const auto qkv = random_floats(size_t(s.n_q * row), 41, 2.0f);
        auto k_old = random_floats(size_t(cache), 42, 2.0f), v_old = random_floats(size_t(cache), 43);
        std::vector<int32_t> pos(size_t(s.n_q));
        for (int64_t t = 0; t < s.n_q; ++t) pos[size_t(t)] = int32_t(s.q_pos0 + t);
        // The CPU: Q, K and V cut from qkv, Q and K rotated, the step's K and V after the cache's rows.
        std::vector<float> q, k(k_old.begin(), k_old.begin() + n_kv * kvd), v(v_old.begin(), v_old.begin() + n_kv * kvd);
        for (int64_t t = 0; t < s.n_q; ++t) {
            const float* r = qkv.data() + t * row;
            q.insert(q.end(), r, r + qd);
            std::copy(r + qd, r + qd + kvd, k.begin() + (s.q_pos0 + t) * kvd);
            std::copy(r + qd + kvd, r + row, v.begin() + (s.q_pos0 + t) * kvd);
        }
        ops::rope(q.data(), pos.data(), s.n_q, s.heads, s.dim, 10000.f, style);
        ops::rope(k.data() + s.q_pos0 * kvd, pos.data(), s.n_q, s.kv_heads, s.dim, 10000.f, style);
        const float scale = 1.0f / std::sqrt(float(s.dim));
        std::vector<float> ref(size_t(s.n_q * qd));
        ops::attention(q.data(), k.data(), v.data(), ref.data(), s.n_q, n_kv, s.heads, s.kv_heads, s.dim, scale,
                       /*causal=*/true, s.q_pos0, pool);

        vk::Buffer dqkv = vk::upload_floats(*ctx, qkv), dpos(*ctx, pos.size() * 4);
        vk::upload(*ctx, dpos, pos.data(), pos.size() * 4);
        const vk::RopeTable table = vk::make_rope_table(*ctx, s.dim, 10000.f, style);
        vk::Buffer dk = vk::upload_floats(*ctx, k_old), dv = vk::upload_floats(*ctx, v_old);
        vk::Buffer dk2 = vk::upload_floats(*ctx, k_old), dv2 = vk::upload_floats(*ctx, v_old);
        vk::Buffer dout(*ctx, uint64_t(s.n_q * qd) * 4), dout2(*ctx, uint64_t(s.n_q * qd) * 4);
        vk::Buffer dq(*ctx, uint64_t(s.n_q * qd) * 4);
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::attention_qkv(rec, dqkv, dpos, table, dk, dv, dout, s.n_q, s.q_pos0, s.heads, s.kv_heads, scale,
                          s.split ? &partials : nullptr);
        vk::rope_qkv(rec, dqkv, vk::QkvSplit{&dq, &dk2, &dv2, s.heads, s.kv_heads, s.q_pos0 * kvd}, dpos, table,
                     s.n_q);
        vk::attention(rec, dq, dk2, dv2, dout2, s.n_q, n_kv, s.heads, s.kv_heads, s.dim, scale, true, s.q_pos0,
                      vk::AttentionPath::PerRow, s.split ? &partials : nullptr);
        rec.submit_and_wait();
        const auto out = vk::download_floats(*ctx, dout, uint64_t(s.n_q * qd));
        require_close(out, ref, 2e-5f, 1e-4f);
        require_close(out, vk::download_floats(*ctx, dout2, uint64_t(s.n_q * qd)), 1e-6f, 1e-5f);
        // The caches: the step's rows as rope_qkv writes them, the rows before and after untouched.
        const auto gk = vk::download_floats(*ctx, dk, uint64_t(cache)), gv = vk::download_floats(*ctx, dv, uint64_t(cache));
        const auto gk2 = vk::download_floats(*ctx, dk2, uint64_t(cache));
        const int64_t s0 = s.q_pos0 * kvd, s1 = n_kv * kvd;  // the step's floats in each cache
        auto want_v = v_old;
        std::copy(v.begin() + s0, v.end(), want_v.begin() + s0);
        REQUIRE(gv == want_v);
        auto k_around = gk;
        std::copy(k_old.begin() + s0, k_old.begin() + s1, k_around.begin() + s0);
        REQUIRE(k_around == k_old);
        const std::vector<float> k_step(gk.begin() + s0, gk.begin() + s1);
        require_close(k_step, std::vector<float>(gk2.begin() + s0, gk2.begin() + s1), 1e-6f, 1e-5f);
        require_close(k_step, std::vector<float>(k.begin() + s0, k.end()), 2e-5f, 1e-4f);
    }
    // What it does not take: 16 rows (the tiled kernels' size), an odd head_dim, more fresh
    // floats than the shader stages, the cache as the product.
    CHECK_FALSE(vk::attention_qkv_fits(16, 64));
    CHECK_FALSE(vk::attention_qkv_fits(1, 63));
    CHECK_FALSE(vk::attention_qkv_fits(5, 256));
    CHECK(vk::attention_qkv_fits(15, 64));
    vk::Buffer a(*ctx, 64 * 4), b(*ctx, 64 * 4), c(*ctx, 64 * 4), pos(*ctx, 4);
    const vk::RopeTable table = vk::make_rope_table(*ctx, 2, 10000.f, style);
    vk::Recorder rec(*ctx);
    rec.begin();
    CHECK_THROWS_AS(vk::attention_qkv(rec, a, pos, table, a, b, c, 1, 0, 1, 1, 1.0f), std::invalid_argument);
    CHECK_THROWS_AS(vk::attention_qkv(rec, a, pos, table, b, c, c, 1, 0, 1, 1, 1.0f), std::invalid_argument);
    CHECK_THROWS_AS(vk::attention_qkv(rec, a, pos, table, b, c, pos, 16, 0, 1, 1, 1.0f), std::invalid_argument);
    rec.submit_and_wait();
}

// A batched decode step: the sequences' rows side by side in one qkv, positions and out, each
// sequence with its own caches and length, one dispatch each from its first row (row0).
TEST_CASE("vulkan attention_qkv from row row0: each sequence of a batch as if it ran alone", "[vulkan]") {
    VK_OR_SKIP(ctx);
    const ops::RopeStyle style = GENERATE(ops::RopeStyle::AdjacentPairs, ops::RopeStyle::HalfSplit);
    const int64_t heads = 6, kv_heads = 2, dim = 64, qd = heads * dim, kvd = kv_heads * dim, row = qd + 2 * kvd;
    // Rows 0, 1 .. 2, 3, 4: cache lengths from empty to past a 2048-key chunk; a sentinel row after.
    const SideBySide sb({{1, 37}, {2, 0}, {1, 2100}, {1, 5}}, row, 51);
    const auto& [seqs, rows, qkv, pos, row_floats] = sb;
    const float scale = 0.125f;
    const vk::RopeTable table = vk::make_rope_table(*ctx, dim, 10000.f, style);
    vk::Buffer partials = vk::attention_partials(*ctx, 2, heads, dim);
    vk::Buffer dqkv = vk::upload_floats(*ctx, qkv), dpos(*ctx, pos.size() * 4);
    vk::upload(*ctx, dpos, pos.data(), pos.size() * 4);
    const std::vector<float> sentinel(size_t((rows + 1) * qd), 7.0f);
    vk::Buffer dout = vk::upload_floats(*ctx, sentinel);
    std::vector<vk::Buffer> k, v, k_alone, v_alone;
    int64_t seed = 60;
    for (const Seq& q : seqs) {
        const auto k0 = random_floats(size_t((q.q_pos0 + q.n_q) * kvd), uint32_t(seed++), 2.0f);
        const auto v0 = random_floats(size_t((q.q_pos0 + q.n_q) * kvd), uint32_t(seed++));
        k.push_back(vk::upload_floats(*ctx, k0));
        v.push_back(vk::upload_floats(*ctx, v0));
        k_alone.push_back(vk::upload_floats(*ctx, k0));
        v_alone.push_back(vk::upload_floats(*ctx, v0));
    }
    vk::Recorder rec(*ctx);
    rec.begin();
    int64_t row0 = 0;
    for (size_t s = 0; s < std::size(seqs); ++s) {
        vk::attention_qkv(rec, dqkv, dpos, table, k[s], v[s], dout, seqs[s].n_q, seqs[s].q_pos0, heads, kv_heads,
                          scale, &partials, row0);
        row0 += seqs[s].n_q;
    }
    rec.submit_and_wait();
    const auto out = vk::download_floats(*ctx, dout, uint64_t((rows + 1) * qd));
    // Alone: the sequence's rows copied to buffers of their own, row0 = 0.
    row0 = 0;
    for (size_t s = 0; s < std::size(seqs); ++s) {
        const Seq& q = seqs[s];
        INFO("sequence " << s << ": " << q.n_q << " rows after " << q.q_pos0);
        vk::Buffer aqkv = qkv_rows(*ctx, sb, row0, q.n_q), apos = pos_rows(*ctx, sb, row0, q.n_q);
        vk::Buffer aout(*ctx, uint64_t(q.n_q * qd) * 4);
        rec.begin();
        vk::attention_qkv(rec, aqkv, apos, table, k_alone[s], v_alone[s], aout, q.n_q, q.q_pos0, heads, kv_heads,
                          scale, &partials);
        rec.submit_and_wait();
        const auto alone = vk::download_floats(*ctx, aout, uint64_t(q.n_q * qd));
        REQUIRE(rows_of(out, row0, q.n_q, qd) == alone);
        const uint64_t cache = uint64_t((q.q_pos0 + q.n_q) * kvd);
        require_same_floats(*ctx, k[s], k_alone[s], cache);
        require_same_floats(*ctx, v[s], v_alone[s], cache);
        row0 += q.n_q;
    }
    REQUIRE(std::vector<float>(out.begin() + rows * qd, out.end()) == std::vector<float>(size_t(qd), 7.0f));
    // Sequences writing different rows of one output, each with its own caches and partials,
    // need no barrier between them (the Recorder tracks the rows: vk::out_range); rows that
    // overlap, or a shared partials buffer, do.
    {
        std::vector<vk::Buffer> kc, vc, parts;
        for (int s = 0; s < 3; ++s) {
            kc.emplace_back(*ctx, uint64_t(8 * kvd) * 4);
            vc.emplace_back(*ctx, uint64_t(8 * kvd) * 4);
            parts.push_back(vk::attention_partials(*ctx, 2, heads, dim));
        }
        rec.begin();
        vk::attention_qkv(rec, dqkv, dpos, table, kc[0], vc[0], dout, 1, 3, heads, kv_heads, scale, &parts[0], 0);
        vk::attention_qkv(rec, dqkv, dpos, table, kc[1], vc[1], dout, 2, 3, heads, kv_heads, scale, &parts[1], 1);
        CHECK(rec.barrier_count() == 0);
        vk::attention_qkv(rec, dqkv, dpos, table, kc[2], vc[2], dout, 1, 3, heads, kv_heads, scale, &parts[2], 2);
        CHECK(rec.barrier_count() == 1);  // row 2 is the second call's too
        vk::attention_qkv(rec, dqkv, dpos, table, kc[2], vc[2], dout, 1, 3, heads, kv_heads, scale, &parts[0], 3);
        CHECK(rec.barrier_count() == 2);  // the third call's caches
        rec.submit_and_wait();
    }
    // Rows past the buffers are refused.
    rec.begin();
    CHECK_THROWS_AS(vk::attention_qkv(rec, dqkv, dpos, table, k[0], v[0], dout, 1, 37, heads, kv_heads, scale,
                                      &partials, rows + 1),
                    std::invalid_argument);
    rec.submit_and_wait();
}

TEST_CASE("vulkan rope_qkv and attention from row row0: a batched prefill's sequences, each as if alone, by "
          "every kernel",
          "[vulkan]") {
    VK_OR_SKIP(ctx);
    const int64_t heads = 4, kv_heads = 2, dim = 32, qd = heads * dim, kvd = kv_heads * dim, row = qd + 2 * kvd;
    // Prompts of 20, 5, 40 and 1 rows, some after earlier positions: rows 0 .. 65 of one batch,
    // then a sentinel row.
    const SideBySide sb({{20, 0}, {5, 7}, {40, 3}, {1, 0}}, row, 41);
    const auto& [seqs, rows, qkv, pos, row_floats] = sb;
    const float scale = 1.0f / std::sqrt(float(dim));
    const vk::RopeTable table = vk::make_rope_table(*ctx, dim, 10000.f, ops::RopeStyle::HalfSplit);
    vk::Buffer dqkv = vk::upload_floats(*ctx, qkv), dpos(*ctx, pos.size() * 4);
    vk::upload(*ctx, dpos, pos.data(), pos.size() * 4);
    using P = vk::AttentionPath;
    std::vector<P> paths{P::PerRow, P::Tiled};
    if (ctx->info().max_shared_memory >= vk::kVkAttentionBlockedShared) paths.push_back(P::Blocked);
    if (ctx->info().max_shared_memory >= vk::kVkAttentionCoopShared) paths.push_back(P::CoopEmu);
    for (const P path : paths) {
        INFO("path " << int(path));
        // Each sequence's caches: its earlier positions, then room for its prompt.
        std::vector<vk::Buffer> k, v, parts;
        std::vector<std::vector<float>> k0, v0;
        uint32_t seed = 70;
        for (const Seq& q : seqs) {
            k0.push_back(random_floats(size_t((q.q_pos0 + q.n_q) * kvd), seed++, 2.0f));
            v0.push_back(random_floats(size_t((q.q_pos0 + q.n_q) * kvd), seed++));
            k.push_back(vk::upload_floats(*ctx, k0.back()));
            v.push_back(vk::upload_floats(*ctx, v0.back()));
            parts.push_back(vk::attention_partials(*ctx, 1, heads, dim));
        }
        const std::vector<float> sentinel(size_t((rows + 1) * qd), 7.0f);
        vk::Buffer dq = vk::upload_floats(*ctx, sentinel), dout = vk::upload_floats(*ctx, sentinel);
        // Batched: every sequence's rope_qkv, then every sequence's attention. Their rows of q and
        // out are apart and their caches their own, so the one barrier is between the two.
        vk::Recorder rec(*ctx);
        rec.begin();
        int64_t row0 = 0;
        for (size_t s = 0; s < std::size(seqs); ++s) {
            vk::rope_qkv(rec, dqkv, vk::QkvSplit{&dq, &k[s], &v[s], heads, kv_heads, seqs[s].q_pos0 * kvd, row0}, dpos,
                         table, seqs[s].n_q);
            row0 += seqs[s].n_q;
        }
        CHECK(rec.barrier_count() == 0);
        row0 = 0;
        for (size_t s = 0; s < std::size(seqs); ++s) {
            const Seq& q = seqs[s];
            vk::attention(rec, dq, k[s], v[s], dout, q.n_q, q.q_pos0 + q.n_q, heads, kv_heads, dim, scale,
                          /*causal=*/true, q.q_pos0, path, &parts[s], 1, row0);
            row0 += q.n_q;
        }
        CHECK(rec.barrier_count() == 1);
        rec.submit_and_wait();
        const auto q_all = vk::download_floats(*ctx, dq, uint64_t((rows + 1) * qd));
        const auto out = vk::download_floats(*ctx, dout, uint64_t((rows + 1) * qd));
        // Alone: each sequence's rows in buffers of their own, row0 = 0, the same kernel.
        row0 = 0;
        for (size_t s = 0; s < std::size(seqs); ++s) {
            const Seq& q = seqs[s];
            INFO("sequence " << s << ": " << q.n_q << " rows after " << q.q_pos0);
            vk::Buffer aqkv = qkv_rows(*ctx, sb, row0, q.n_q), apos = pos_rows(*ctx, sb, row0, q.n_q);
            vk::Buffer aq(*ctx, uint64_t(q.n_q * qd) * 4), aout(*ctx, uint64_t(q.n_q * qd) * 4);
            vk::Buffer ak = vk::upload_floats(*ctx, k0[s]), av = vk::upload_floats(*ctx, v0[s]);
            rec.begin();
            vk::rope_qkv(rec, aqkv, vk::QkvSplit{&aq, &ak, &av, heads, kv_heads, q.q_pos0 * kvd}, apos, table, q.n_q);
            vk::attention(rec, aq, ak, av, aout, q.n_q, q.q_pos0 + q.n_q, heads, kv_heads, dim, scale, true, q.q_pos0,
                          path, &parts[s]);
            rec.submit_and_wait();
            REQUIRE(rows_of(q_all, row0, q.n_q, qd) == vk::download_floats(*ctx, aq, uint64_t(q.n_q * qd)));
            REQUIRE(rows_of(out, row0, q.n_q, qd) == vk::download_floats(*ctx, aout, uint64_t(q.n_q * qd)));
            const uint64_t cache = uint64_t((q.q_pos0 + q.n_q) * kvd);
            require_same_floats(*ctx, k[s], ak, cache);
            require_same_floats(*ctx, v[s], av, cache);
            row0 += q.n_q;
        }
        const std::vector<float> untouched(size_t(qd), 7.0f);
        REQUIRE(std::vector<float>(q_all.begin() + rows * qd, q_all.end()) == untouched);
        REQUIRE(std::vector<float>(out.begin() + rows * qd, out.end()) == untouched);
        // And what alone computes is the CPU's attention (the last sequence's rows, the longest).
        const Seq& q = seqs[2];
        const int64_t r0 = seqs[0].n_q + seqs[1].n_q;
        std::vector<float> qr, kr = k0[2], vr = v0[2];
        for (int64_t t = 0; t < q.n_q; ++t) {
            const float* src = qkv.data() + (r0 + t) * row;
            qr.insert(qr.end(), src, src + qd);
            std::copy(src + qd, src + qd + kvd, kr.begin() + (q.q_pos0 + t) * kvd);
            std::copy(src + qd + kvd, src + row, vr.begin() + (q.q_pos0 + t) * kvd);
        }
        ops::rope(qr.data(), pos.data() + r0, q.n_q, heads, dim, 10000.f, ops::RopeStyle::HalfSplit);
        ops::rope(kr.data() + q.q_pos0 * kvd, pos.data() + r0, q.n_q, kv_heads, dim, 10000.f,
                  ops::RopeStyle::HalfSplit);
        std::vector<float> ref(size_t(q.n_q * qd));
        ops::attention(qr.data(), kr.data(), vr.data(), ref.data(), q.n_q, q.q_pos0 + q.n_q, heads, kv_heads, dim,
                       scale, true, q.q_pos0, reference_pool());
        const float tol = path == P::CoopEmu ? 4e-3f : 2e-5f;  // CoopEmu: f16 inputs (its own test says why)
        require_close(rows_of(out, r0, q.n_q, qd), ref, tol, path == P::CoopEmu ? 4e-3f : 1e-4f);
    }
    // Rows past the buffers are refused.
    vk::Buffer small(*ctx, uint64_t(rows * qd) * 4), big(*ctx, uint64_t((rows + 2) * qd) * 4);
    vk::Buffer kc(*ctx, uint64_t(8 * kvd) * 4), vc(*ctx, uint64_t(8 * kvd) * 4);
    vk::Recorder rec(*ctx);
    rec.begin();
    CHECK_THROWS_AS(vk::rope_qkv(rec, dqkv, vk::QkvSplit{&small, &kc, &vc, heads, kv_heads, 0, rows}, dpos, table, 1),
                    std::invalid_argument);
    CHECK_THROWS_AS(vk::attention(rec, small, kc, vc, big, 2, 2, heads, kv_heads, dim, scale, true, 0, P::PerRow,
                                  nullptr, 1, rows - 1),
                    std::invalid_argument);  // q's rows
    CHECK_THROWS_AS(vk::attention(rec, big, kc, vc, small, 2, 2, heads, kv_heads, dim, scale, true, 0, P::PerRow,
                                  nullptr, 1, rows - 1),
                    std::invalid_argument);  // out's rows
    rec.submit_and_wait();
}
