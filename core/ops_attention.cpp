// Scaled dot-product attention with GQA and an optional causal mask (core/ops.h,
// MODELS.md §1.2).
//
// Work is cut into items (query head h, block of kQBlock query rows), head-major, and items
// are split across threads. Each item reads its KV head's keys transposed, kt [head_dim][n_kv]
// (attention_kt: straight from the KvCache, which keeps keys that way; attention: a per-thread
// copy), so that scores for consecutive keys are consecutive floats:
//   scores[r][j] = Σ_d q_r[d] · kt[d][j]        out_r[d] = Σ_j p_r[j] · v[j][d]
// Both sums are register-blocked over kRows query rows × 8 keys (or 8 values of d), so each
// load of kt or v feeds several rows. Consecutive items of one thread share the KV head (same
// head, or GQA heads of one group), so kt is built once per KV head and only extended when a
// causal block sees more keys. Per-thread scratch, kept between calls: kt (head_dim · n_kv
// floats, attention only) and scores (kRows · n_kv floats); the [n_heads][n_q][n_kv] score
// matrix is never formed. The exponentials are core/vmath's.
//
// Every output is computed by the same sequence of float operations whatever the blocking, the
// thread count or the number of masked keys, so a decode step (n_q = 1) reproduces the
// corresponding row of a prefill exactly.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/ops.h"
#include "core/ops_internal.h"
#include "core/vmath.h"

namespace glimpse::ops {

using detail::parallel_rows;
using detail::require;

namespace {

constexpr int64_t kQBlock = 16;  // query rows per work item

struct AttentionShape {
    int64_t n_q, n_kv, n_heads, n_kv_heads, head_dim;
    float scale;
    bool causal;
    int64_t q_pos0;

    // Keys visible to query row i: 0 .. q_pos0 + i (causal), clamped to n_kv.
    int64_t visible(int64_t i) const {
        if (!causal) return n_kv;
        const int64_t last = q_pos0 + i;
        return last + 1 < n_kv ? last + 1 : n_kv;
    }
};

// kt[d][j] = k[j][g][d] for keys j in [from, to); kt has row stride n_kv.
void transpose_keys(const float* k, const AttentionShape& s, int64_t g, int64_t from, int64_t to, float* kt) {
    const int64_t kv_stride = s.n_kv_heads * s.head_dim;
    for (int64_t j = from; j < to; ++j) {
        const float* key = k + j * kv_stride + g * s.head_dim;
        for (int64_t d = 0; d < s.head_dim; ++d) kt[d * s.n_kv + j] = key[d];
    }
}

// Query rows scored together: each load of kt feeds kRows rows.
constexpr int kRows = 4;

// Four floats as one SSE/NEON register (GCC/Clang vector extension; arithmetic is per lane,
// and a scalar operand is broadcast). Used only inside functions, never passed by value.
typedef float f32x4 __attribute__((vector_size(16)));

// scores[r][j] = Σ_d q[r][d] · kt[d][j] for rows r < R and keys j < n (kt has row stride
// ld_kt, scores ld_s). A register block of R rows × 8 keys accumulates over all of d. Every
// score is 0 + q[0]k[0] + q[1]k[1] + ... in increasing d, in the blocked and the tail loop alike,
// so a score never depends on R or n: a decode step reproduces its prefill row bit for bit.
template <int R>
void score_rows(const float* const* q, const float* kt, int64_t ld_kt, int64_t head_dim, int64_t n, float* scores,
                int64_t ld_s) {
    int64_t j0 = 0;
    for (; j0 + 8 <= n; j0 += 8) {
        f32x4 acc[R][2] = {};
        for (int64_t d = 0; d < head_dim; ++d) {
            f32x4 k_lo, k_hi;
            std::memcpy(&k_lo, kt + d * ld_kt + j0, sizeof(k_lo));
            std::memcpy(&k_hi, kt + d * ld_kt + j0 + 4, sizeof(k_hi));
            for (int r = 0; r < R; ++r) {
                const float qd = q[r][d];
                acc[r][0] += qd * k_lo;
                acc[r][1] += qd * k_hi;
            }
        }
        for (int r = 0; r < R; ++r) {
            std::memcpy(scores + r * ld_s + j0, &acc[r][0], sizeof(f32x4));
            std::memcpy(scores + r * ld_s + j0 + 4, &acc[r][1], sizeof(f32x4));
        }
    }
    for (; j0 < n; ++j0)
        for (int r = 0; r < R; ++r) {
            float acc = 0.0f;
            for (int64_t d = 0; d < head_dim; ++d) acc += q[r][d] * kt[d * ld_kt + j0];
            scores[r * ld_s + j0] = acc;
        }
}

// out[r][d] = Σ_{j < n_vis[r]} p[r][j] · v_j[d] (p has row stride ld, v_j is key j's value row,
// v_row(j) = v + j · v_stride). Registers hold R rows × 8 values of d while j runs, so each v
// load feeds R rows. Every output is 0 + p_0 v_0 + p_1 v_1 + ... in increasing j, whatever R.
template <int R>
void weigh_values(const float* p, int64_t ld, const int64_t* n_vis, const float* v, int64_t v_stride,
                  int64_t head_dim, float* const* out) {
    int64_t d0 = 0;
    for (; d0 + 8 <= head_dim; d0 += 8) {
        f32x4 acc[R][2] = {};
        auto add_key = [&](int r, int64_t j) {
            f32x4 v_lo, v_hi;
            std::memcpy(&v_lo, v + j * v_stride + d0, sizeof(v_lo));
            std::memcpy(&v_hi, v + j * v_stride + d0 + 4, sizeof(v_hi));
            const float pj = p[r * ld + j];
            acc[r][0] += pj * v_lo;
            acc[r][1] += pj * v_hi;
        };
        int64_t j = 0;
        for (; j < n_vis[0]; ++j)  // keys every row sees (n_vis is non-decreasing)
            for (int r = 0; r < R; ++r) add_key(r, j);
        for (int r = 1; r < R; ++r)
            for (int64_t jr = j; jr < n_vis[r]; ++jr) add_key(r, jr);
        for (int r = 0; r < R; ++r) {
            std::memcpy(out[r] + d0, &acc[r][0], sizeof(f32x4));
            std::memcpy(out[r] + d0 + 4, &acc[r][1], sizeof(f32x4));
        }
    }
    for (; d0 < head_dim; ++d0)
        for (int r = 0; r < R; ++r) {
            float acc = 0.0f;
            for (int64_t j = 0; j < n_vis[r]; ++j) acc += p[r * ld + j] * v[j * v_stride + d0];
            out[r][d0] = acc;
        }
}

// R consecutive query rows i0 .. i0+R−1 of head h (KV head g, keys kt with row stride ld_kt):
// scores, softmax over each row's visible keys, weighted sum of the values, times 1/Σ.
template <int R>
void attend_rows(const float* q, const float* kt, int64_t ld_kt, const float* v, float* out, const AttentionShape& s,
                 int64_t h, int64_t g, int64_t i0, float* scores) {
    const int64_t q_stride = s.n_heads * s.head_dim, kv_stride = s.n_kv_heads * s.head_dim;
    const float* q_rows[R];
    float* out_rows[R];
    int64_t n_vis[R];
    float inv[R];
    for (int r = 0; r < R; ++r) {
        q_rows[r] = q + (i0 + r) * q_stride + h * s.head_dim;
        out_rows[r] = out + (i0 + r) * q_stride + h * s.head_dim;
        n_vis[r] = s.visible(i0 + r);  // non-decreasing in r
    }
    score_rows<R>(q_rows, kt, ld_kt, s.head_dim, n_vis[R - 1], scores, s.n_kv);
    for (int r = 0; r < R; ++r) inv[r] = vmath::exp_scaled_row(scores + r * s.n_kv, n_vis[r], s.scale);
    weigh_values<R>(scores, s.n_kv, n_vis, v + g * s.head_dim, kv_stride, s.head_dim, out_rows);
    for (int r = 0; r < R; ++r)
        for (int64_t d = 0; d < s.head_dim; ++d) out_rows[r][d] *= inv[r];
}

void check_attention(int64_t n_q, int64_t n_kv, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, bool causal,
                     int64_t q_pos0) {
    require(n_q >= 0 && n_kv >= 0 && head_dim >= 0, "attention", "negative size");
    require(n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0, "attention",
            "n_heads must be a positive multiple of n_kv_heads");
    require(!causal || q_pos0 >= 0, "attention", "negative q_pos0");
    require(n_q == 0 || head_dim == 0 || n_kv > 0, "attention", "no keys");
}

// Both entry points: keys as rows k (transposed per thread) or already transposed (kt_in, row
// stride kt_ld, KV head g at kt_in + g · head_dim · kt_ld).
void attention_impl(const float* q, const float* k, const float* kt_in, int64_t kt_ld, const float* v, float* out,
                    const AttentionShape& s, ThreadPool& pool) {
    const int64_t group = s.n_heads / s.n_kv_heads;
    const int64_t n_blocks = (s.n_q + kQBlock - 1) / kQBlock;
    const int64_t cost = kQBlock * s.n_kv * s.head_dim * 4;

    parallel_rows(pool, s.n_heads * n_blocks, cost, [&](int64_t item0, int64_t item1) {
        // Scratch kept by each thread between calls (a decode step would otherwise allocate,
        // and at long contexts mmap and unmap, both buffers for every layer).
        thread_local std::vector<float> kt_buf, scores;
        if (scores.size() < size_t(kRows * s.n_kv)) scores.resize(size_t(kRows * s.n_kv));
        if (!kt_in && kt_buf.size() < size_t(s.head_dim * s.n_kv)) kt_buf.resize(size_t(s.head_dim * s.n_kv));
        int64_t kt_head = -1, kt_cols = 0;  // which KV head kt_buf holds, and how many keys
        for (int64_t item = item0; item < item1; ++item) {
            const int64_t h = item / n_blocks, block = item % n_blocks;
            const int64_t g = h / group;
            const int64_t i0 = block * kQBlock;
            const int64_t i1 = i0 + kQBlock < s.n_q ? i0 + kQBlock : s.n_q;
            const float* kt = nullptr;
            int64_t ld = 0;
            if (kt_in) {
                kt = kt_in + g * s.head_dim * kt_ld;
                ld = kt_ld;
            } else {
                if (g != kt_head) {
                    kt_head = g;
                    kt_cols = 0;
                }
                const int64_t need = s.visible(i1 - 1);
                if (need > kt_cols) {
                    transpose_keys(k, s, g, kt_cols, need, kt_buf.data());
                    kt_cols = need;
                }
                kt = kt_buf.data();
                ld = s.n_kv;
            }
            int64_t i = i0;
            for (; i + kRows <= i1; i += kRows) attend_rows<kRows>(q, kt, ld, v, out, s, h, g, i, scores.data());
            for (; i < i1; ++i) attend_rows<1>(q, kt, ld, v, out, s, h, g, i, scores.data());
        }
    });
}

}  // namespace

void attention(const float* q, const float* k, const float* v, float* out, int64_t n_q, int64_t n_kv,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale, bool causal,
               int64_t q_pos0, ThreadPool& pool) {
    check_attention(n_q, n_kv, n_heads, n_kv_heads, head_dim, causal, q_pos0);
    if (n_q == 0 || head_dim == 0) return;
    attention_impl(q, k, nullptr, 0, v, out, {n_q, n_kv, n_heads, n_kv_heads, head_dim, scale, causal, q_pos0}, pool);
}

void attention_kt(const float* q, const float* kt, int64_t kt_ld, const float* v, float* out, int64_t n_q,
                  int64_t n_kv, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale, bool causal,
                  int64_t q_pos0, ThreadPool& pool) {
    check_attention(n_q, n_kv, n_heads, n_kv_heads, head_dim, causal, q_pos0);
    require(kt_ld >= n_kv, "attention", "key row stride shorter than the key count");
    if (n_q == 0 || head_dim == 0) return;
    attention_impl(q, nullptr, kt, kt_ld, v, out, {n_q, n_kv, n_heads, n_kv_heads, head_dim, scale, causal, q_pos0},
                   pool);
}

}  // namespace glimpse::ops
