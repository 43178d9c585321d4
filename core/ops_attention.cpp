// Scaled dot-product attention with GQA and an optional causal mask (core/ops.h,
// MODELS.md §1.2).
//
// Work is cut into items (query head h, block of kQBlock query rows), head-major, and items
// are split across threads. Each item reads its KV head's keys transposed, kt [head_dim][n_kv]
// (attention_kt: straight from the KvCache, which keeps keys that way; attention: a per-thread
// copy), so that scores for consecutive keys are consecutive floats:
//   scores[r][j] = Σ_d q_r[d] · kt[d][j]        out_r[d] = Σ_j p_r[j] · v[j][d]
// Both sums are register-blocked over kRows query rows × 2 vectors of keys (or of values of
// d), so each load of kt or v feeds several rows (core/ops_attention_kernels.h; AVX2+FMA where
// the CPU has it, 4-lane portable vectors elsewhere). Consecutive items of one thread share the KV head (same
// head, or GQA heads of one group), so kt is built once per KV head and only extended when a
// causal block sees more keys. Per-thread scratch, kept between calls: kt (head_dim · n_kv
// floats, attention only) and scores (kRows · n_kv floats); the [n_heads][n_q][n_kv] score
// matrix is never formed. The exponentials are core/vmath's.
//
// On one path, every output is computed by the same sequence of float operations whatever the
// blocking, the thread count or the number of masked keys, so a decode step (n_q = 1)
// reproduces the corresponding row of a prefill exactly.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "core/ops.h"
#include "core/ops_attention_kernels.h"
#include "core/ops_internal.h"

namespace glimpse::ops {

using detail::parallel_rows;
using detail::require;

namespace {

constexpr int64_t kQBlock = 16;  // query rows per work item

using AttentionShape = attn::Shape;
using attn::kRows;

// The portable path: 4-lane vectors (one SSE/NEON register), multiply then add.
typedef float f32x4 __attribute__((vector_size(16)));
struct PortableOps {
    static f32x4 madd(f32x4 a, f32x4 b, f32x4 acc) { return acc + a * b; }
    static float madd1(float a, float b, float acc) { return acc + a * b; }
};

// kt[d][j] = k[j][g][d] for keys j in [from, to); kt has row stride n_kv.
void transpose_keys(const float* k, const AttentionShape& s, int64_t g, int64_t from, int64_t to, float* kt) {
    const int64_t kv_stride = s.n_kv_heads * s.head_dim;
    for (int64_t j = from; j < to; ++j) {
        const float* key = k + j * kv_stride + g * s.head_dim;
        for (int64_t d = 0; d < s.head_dim; ++d) kt[d * s.n_kv + j] = key[d];
    }
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
    const bool avx512 = has_avx512_kernels(), avx2 = has_avx2_kernels();

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
            if (avx512) attn::attend_avx512(q, kt, ld, v, out, s, h, g, i0, i1, scores.data());
            else if (avx2) attn::attend_avx2(q, kt, ld, v, out, s, h, g, i0, i1, scores.data());
            else attn::Kernels<f32x4, PortableOps>::attend(q, kt, ld, v, out, s, h, g, i0, i1, scores.data());
        }
    });
}

}  // namespace

#if !defined(__x86_64__)
// No *_avx2.cpp or *_avx512.cpp is built for other targets and has_avx2_kernels() is false
// there; the symbols must exist.
void attn::attend_avx2(const float* q, const float* kt, int64_t ld_kt, const float* v, float* out, const Shape& s,
                       int64_t h, int64_t g, int64_t i0, int64_t i1, float* scores) {
    attn::Kernels<f32x4, PortableOps>::attend(q, kt, ld_kt, v, out, s, h, g, i0, i1, scores);
}
void attn::attend_avx512(const float* q, const float* kt, int64_t ld_kt, const float* v, float* out, const Shape& s,
                         int64_t h, int64_t g, int64_t i0, int64_t i1, float* scores) {
    attn::Kernels<f32x4, PortableOps>::attend(q, kt, ld_kt, v, out, s, h, g, i0, i1, scores);
}
#endif

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
