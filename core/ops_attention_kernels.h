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

    // scores[r][j] = Σ_d q[r][d] · kt[d][j] for rows r < R and keys j < n (kt has row stride
    // ld_kt, scores ld_s). A register block of R rows × 2L keys accumulates over all of d.
    // Every score is madd(q[d], k[d], ...) in increasing d from 0, in the blocked and the tail
    // loop alike, so a score never depends on R or n.
    template <int R>
    static void score_rows(const float* const* q, const float* kt, int64_t ld_kt, int64_t head_dim, int64_t n,
                           float* scores, int64_t ld_s) {
        int64_t j0 = 0;
        for (bool last = false; !last && n >= 2 * L; j0 += 2 * L) {
            // The final block ends at n, overlapping the one before it: the keys it repeats get
            // the same bits again, and no key is left to a scalar loop with strided loads.
            if (j0 + 2 * L >= n) {
                j0 = n - 2 * L;
                last = true;
            }
            V acc[R][2];
            for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = splat(0.0f);
            for (int64_t d = 0; d < head_dim; ++d) {
                const V k_lo = load(kt + d * ld_kt + j0), k_hi = load(kt + d * ld_kt + j0 + L);
                for (int r = 0; r < R; ++r) {
                    const V qd = splat(q[r][d]);
                    acc[r][0] = Ops::madd(qd, k_lo, acc[r][0]);
                    acc[r][1] = Ops::madd(qd, k_hi, acc[r][1]);
                }
            }
            for (int r = 0; r < R; ++r) {
                store(scores + r * ld_s + j0, acc[r][0]);
                store(scores + r * ld_s + j0 + L, acc[r][1]);
            }
        }
        if (n >= 2 * L) return;
        for (; j0 < n; ++j0)  // fewer than 2L keys in all
            for (int r = 0; r < R; ++r) {
                float acc = 0.0f;
                for (int64_t d = 0; d < head_dim; ++d) acc = Ops::madd1(q[r][d], kt[d * ld_kt + j0], acc);
                scores[r * ld_s + j0] = acc;
            }
    }

    // out[r][d] = Σ_{j < n_vis[r]} p[r][j] · v_j[d] (p has row stride ld, v_j = v + j · v_stride).
    // Registers hold R rows × 2L values of d while j runs, so each v load feeds R rows. Every
    // output is madd(p_j, v_j[d], ...) in increasing j from 0, whatever R.
    template <int R>
    static void weigh_values(const float* p, int64_t ld, const int64_t* n_vis, const float* v, int64_t v_stride,
                             int64_t head_dim, float* const* out) {
        int64_t d0 = 0;
        for (; d0 + 2 * L <= head_dim; d0 += 2 * L) {
            V acc[R][2];
            for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = splat(0.0f);
            auto add_key = [&](int r, int64_t j) {
                const V pj = splat(p[r * ld + j]);
                acc[r][0] = Ops::madd(pj, load(v + j * v_stride + d0), acc[r][0]);
                acc[r][1] = Ops::madd(pj, load(v + j * v_stride + d0 + L), acc[r][1]);
            };
            int64_t j = 0;
            for (; j < n_vis[0]; ++j)  // keys every row sees (n_vis is non-decreasing)
                for (int r = 0; r < R; ++r) add_key(r, j);
            for (int r = 1; r < R; ++r)
                for (int64_t jr = j; jr < n_vis[r]; ++jr) add_key(r, jr);
            for (int r = 0; r < R; ++r) {
                store(out[r] + d0, acc[r][0]);
                store(out[r] + d0 + L, acc[r][1]);
            }
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
