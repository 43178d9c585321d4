// Internal to ops::attention (core/ops_attention.cpp): the register-blocked kernels of one work
// item, written once over a vector type so that the portable build (4-lane vectors, separate
// multiply and add) and the AVX2 build (core/ops_attention_avx2.cpp: 8 lanes, fused
// multiply-add) share them. Each element's arithmetic depends only on the path, never on the
// blocking, the key count or the thread split, so on one path a decode step reproduces its
// prefill row bit for bit.
//
// Ops (a struct of static functions) supplies the arithmetic:
//   V madd(V a, V b, V acc)            acc + a·b per lane (fused or not)
//   float madd1(float a, float b, float acc)   the same on one float, with the same rounding
#pragma once

#include <cstdint>
#include <cstring>

#include "core/vmath.h"

namespace glimpse::ops::attn {

struct Shape {
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

// Query rows scored together: each load of kt feeds kRows rows.
constexpr int kRows = 4;

template <class V, class Ops>
struct Kernels {
    static constexpr int64_t L = int64_t(sizeof(V) / sizeof(float));  // lanes

    static V load(const float* p) {
        V v;
        std::memcpy(&v, p, sizeof(v));
        return v;
    }
    static void store(float* p, V v) { std::memcpy(p, &v, sizeof(v)); }
    // x in every lane: one broadcast (x − (+0) is x exactly, −0 and NaN included; a loop over
    // the lanes compiles to one masked insert per lane).
    static V splat(float x) { return x - V{}; }

    // One register block: scores[r][j0 .. j0 + NV·L) for rows r < R, accumulated over all of d.
    template <int R, int NV>
    static void score_block(const float* const* q, const float* kt, int64_t ld_kt, int64_t head_dim, int64_t j0,
                            float* scores, int64_t ld_s) {
        V acc[R][NV];
        for (int r = 0; r < R; ++r)
            for (int u = 0; u < NV; ++u) acc[r][u] = splat(0.0f);
        for (int64_t d = 0; d < head_dim; ++d) {
            V k[NV];
            for (int u = 0; u < NV; ++u) k[u] = load(kt + d * ld_kt + j0 + u * L);
            for (int r = 0; r < R; ++r) {
                const V qd = splat(q[r][d]);
                for (int u = 0; u < NV; ++u) acc[r][u] = Ops::madd(qd, k[u], acc[r][u]);
            }
        }
        for (int r = 0; r < R; ++r)
            for (int u = 0; u < NV; ++u) store(scores + r * ld_s + j0 + u * L, acc[r][u]);
    }

    // scores[r][j] = Σ_d q[r][d] · kt[d][j] for rows r < R and keys j < n (kt has row stride
    // ld_kt, scores ld_s): register blocks of R rows × 2L keys, then of R × L, the final block
    // ending at n and overlapping the one before it (the keys it repeats get the same bits
    // again, and no key is left to a scalar loop with strided loads). Every score is
    // madd(q[d], k[d], ...) in increasing d from 0, in every block and in the scalar loop for
    // fewer than L keys, so a score never depends on R or n.
    template <int R>
    static void score_rows(const float* const* q, const float* kt, int64_t ld_kt, int64_t head_dim, int64_t n,
                           float* scores, int64_t ld_s) {
        int64_t j0 = 0;
        for (; j0 + 2 * L <= n; j0 += 2 * L) score_block<R, 2>(q, kt, ld_kt, head_dim, j0, scores, ld_s);
        if (j0 < n && n >= L) {
            for (; j0 < n; j0 += L) score_block<R, 1>(q, kt, ld_kt, head_dim, j0 + L <= n ? j0 : n - L, scores, ld_s);
            return;
        }
        for (; j0 < n; ++j0)  // fewer than L keys in all
            for (int r = 0; r < R; ++r) {
                float acc = 0.0f;
                for (int64_t d = 0; d < head_dim; ++d) acc = Ops::madd1(q[r][d], kt[d * ld_kt + j0], acc);
                scores[r * ld_s + j0] = acc;
            }
    }

    // One register block: out[r][d0 .. d0 + NV·L) = Σ_{j < n_vis[r]} p[r][j] · v_j[...].
    template <int R, int NV>
    static void weigh_block(const float* p, int64_t ld, const int64_t* n_vis, const float* v, int64_t v_stride,
                            int64_t d0, float* const* out) {
        V acc[R][NV];
        for (int r = 0; r < R; ++r)
            for (int u = 0; u < NV; ++u) acc[r][u] = splat(0.0f);
        auto add_key = [&](int r, int64_t j) {
            const V pj = splat(p[r * ld + j]);
            for (int u = 0; u < NV; ++u) acc[r][u] = Ops::madd(pj, load(v + j * v_stride + d0 + u * L), acc[r][u]);
        };
        int64_t j = 0;
        for (; j < n_vis[0]; ++j)  // keys every row sees (n_vis is non-decreasing)
            for (int r = 0; r < R; ++r) add_key(r, j);
        for (int r = 1; r < R; ++r)
            for (int64_t jr = j; jr < n_vis[r]; ++jr) add_key(r, jr);
        for (int r = 0; r < R; ++r)
            for (int u = 0; u < NV; ++u) store(out[r] + d0 + u * L, acc[r][u]);
    }

    // out[r][d] = Σ_{j < n_vis[r]} p[r][j] · v_j[d] (p has row stride ld, v_j = v + j · v_stride).
    // Registers hold R rows × 2L values of d (then L, the last block ending at head_dim like
    // score_rows' last block) while j runs, so each v load feeds R rows. Every output is
    // madd(p_j, v_j[d], ...) in increasing j from 0, whatever R and the blocking.
    template <int R>
    static void weigh_values(const float* p, int64_t ld, const int64_t* n_vis, const float* v, int64_t v_stride,
                             int64_t head_dim, float* const* out) {
        int64_t d0 = 0;
        for (; d0 + 2 * L <= head_dim; d0 += 2 * L) weigh_block<R, 2>(p, ld, n_vis, v, v_stride, d0, out);
        if (d0 < head_dim && head_dim >= L) {
            for (; d0 < head_dim; d0 += L)
                weigh_block<R, 1>(p, ld, n_vis, v, v_stride, d0 + L <= head_dim ? d0 : head_dim - L, out);
            return;
        }
        for (; d0 < head_dim; ++d0)
            for (int r = 0; r < R; ++r) {
                float acc = 0.0f;
                for (int64_t j = 0; j < n_vis[r]; ++j) acc = Ops::madd1(p[r * ld + j], v[j * v_stride + d0], acc);
                out[r][d0] = acc;
            }
    }

    // R consecutive query rows i0 .. i0+R−1 of head h (KV head g, keys kt with row stride
    // ld_kt): scores, softmax over each row's visible keys, weighted sum of the values, × 1/Σ.
    template <int R>
    static void attend_rows(const float* q, const float* kt, int64_t ld_kt, const float* v, float* out,
                            const Shape& s, int64_t h, int64_t g, int64_t i0, float* scores) {
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

    // Query rows [i0, i1) of head h: kRows at a time, then one by one.
    static void attend(const float* q, const float* kt, int64_t ld_kt, const float* v, float* out, const Shape& s,
                       int64_t h, int64_t g, int64_t i0, int64_t i1, float* scores) {
        int64_t i = i0;
        for (; i + kRows <= i1; i += kRows) attend_rows<kRows>(q, kt, ld_kt, v, out, s, h, g, i, scores);
        for (; i < i1; ++i) attend_rows<1>(q, kt, ld_kt, v, out, s, h, g, i, scores);
    }
};

// The AVX2+FMA instantiation (core/ops_attention_avx2.cpp); call only if has_avx2_kernels().
void attend_avx2(const float* q, const float* kt, int64_t ld_kt, const float* v, float* out, const Shape& s, int64_t h,
                 int64_t g, int64_t i0, int64_t i1, float* scores);
// The AVX-512F instantiation (core/ops_attention_avx512.cpp, identical results); call only if
// has_avx512_kernels().
void attend_avx512(const float* q, const float* kt, int64_t ld_kt, const float* v, float* out, const Shape& s,
                   int64_t h, int64_t g, int64_t i0, int64_t i1, float* scores);

}  // namespace glimpse::ops::attn
