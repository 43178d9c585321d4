#version 450
// Multi-head attention over a KV cache (core/ops.h attention, MODELS.md §1.2), for few query
// rows (decode); attention_tiled.comp is the kernel for many.
// q [n_q][n_heads][head_dim], k and v [n_kv][n_kv_heads][head_dim], out [n_q][n_heads][head_dim],
// each n_batch times over (batch b's rows see only batch b's keys: the ViT's tiles).
// One workgroup of WG invocations per (query row i, head h); KV head g = h / (n_heads / n_kv_heads).
// Keys are visited in chunks of up to CHUNK with an online softmax (running max m and sum l,
// the output rescaled by exp(m_old − m_new) when the max grows), so the [n_q][n_kv] score
// matrix is never stored and long image prompts cost no memory. Per chunk:
//   1. scores: each invocation takes keys t, t + WG, ... (a whole dot product each) into
//      shared memory; one max reduction over the workgroup;
//   2. the exponentials, in place, and one sum reduction;
//   3. values: the workgroup splits into groups of `lanes` invocations that cover a key's row,
//      4 consecutive dims each; group r accumulates keys r, r + groups, ... (many short
//      independent loads in flight rather than one long chain).
// The groups' partial outputs are added once, at the end. Causal: row i sees keys
// 0 .. q_pos0 + i (clamped). head_dim ≤ 2·WG ≤ 512 (checked on the host: WG ≥ 128 on every
// Vulkan device, head_dim ≤ 256). A row that sees no key gets 0.
//
// FROM_QKV (core/vk_ops.h attention_qkv): a decode step's attention straight from the stacked
// Q·K·V product, rope_qkv.comp's work done here. qkv [n_q][n_heads + 2·n_kv_heads][head_dim]
// holds the step's rows; the caches hold rows 0 .. q_pos0 − 1, and the step's keys are
// positions q_pos0 .. q_pos0 + n_q − 1. Each workgroup rotates its q row as it loads it; the
// keys from q_pos0 on ("fresh") come from qkv, K rotated into shared memory by the workgroups
// that see them, V read from qkv; and workgroup (row 0, split 0) of each KV head's first query
// head writes the step's K (rotated) and V rows into the caches for the steps after. No
// workgroup reads a cache row at or after q_pos0, so those writes race with nothing.
// row0, either way: the rows start at row row0 of q (of qkv and positions) and o (one sequence
// of a batched decode step or prefill, whose rows sit side by side there while each sequence
// has its own caches).
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
const uint MAX_D = 256;
const uint CHUNK = 2048;

#ifdef FROM_QKV
layout(binding = 0) readonly buffer QkvBuf { float qkv[]; };
#else
layout(binding = 0) readonly buffer QBuf { float q[]; };
#endif
layout(binding = 1) readonly buffer KBuf { float k[]; };
layout(binding = 1) readonly buffer KBuf4 { vec4 k4[]; };  // the same keys, for head_dim % 4 == 0
layout(binding = 2) readonly buffer VBuf { float v[]; };
layout(binding = 2) readonly buffer VBuf4 { vec4 v4[]; };  // the same values, for head_dim % 4 == 0
layout(binding = 3) writeonly buffer OBuf { float o[]; };
#ifdef FROM_QKV
layout(binding = 1) writeonly buffer KOut { float k_out[]; };  // the cache rows from q_pos0
layout(binding = 2) writeonly buffer VOut { float v_out[]; };
layout(binding = 5) readonly buffer Pos { int positions[]; };  // [n_q]
layout(binding = 6) readonly buffer Freq { float inv_freq[]; };
#endif
// Split mode (n_split > 1): workgroup (row i, head h, split s) sees only keys
// [s·L, (s+1)·L), L = ⌈n_kv / n_split⌉, and writes its partial result unnormalized, as
// [m, l, acc[head_dim]], to part[COUNTERS + ((i·n_heads + h)·n_split + s)·(head_dim + 2)].
// Decode has few (row, head) pairs, so splitting the keys is what lets more of the device's
// cores work on them. The splits of a pair count themselves done in cnt[i·n_heads + h] (the
// buffer's first COUNTERS words, zero between dispatches); the last one to finish merges the
// pair's partials into o and sets its counter back to zero:
//   o = Σ_s exp(m_s − m)·acc_s / Σ_s exp(m_s − m)·l_s,   m = max_s m_s,
// where a split that saw no key (m_s = −inf) adds nothing, and a row that saw none gets 0.
// That merge used to be a second dispatch, whose launch and barrier cost a decode layer ~5 µs
// on an H200.
const uint COUNTERS = 128;   // kVkAttentionSplitBelow in core/vk_ops.h: (row, head) pairs that split
const uint MAX_SPLITS = 32;  // kVkAttentionMaxSplits
layout(binding = 4) coherent buffer PBuf { float part[]; };
layout(binding = 4) coherent buffer PCnt { uint cnt[]; };

layout(push_constant) uniform Push {  // mirrors AttentionPush in core/vk_ops.cpp
    uint n_q, n_kv, n_heads, n_kv_heads, head_dim, causal, q_pos0;
    float scale;
    uint n_split;  // 1: the whole row here, written to o
    uint n_batch;
    uint row0;  // the first row of q (qkv and positions with FROM_QKV) and o
#ifdef FROM_QKV
    uint style;  // rope_pair's (rope.glsl)
    float theta_scale;
#endif
} p;

#ifdef FROM_QKV
#include "rope.glsl"
const uint MAX_FRESH = 1024;  // kVkAttentionFreshFloats: n_q keys of head_dim rounded up to 4
shared vec4 fresh_k[MAX_FRESH / 4];  // the fresh keys this workgroup sees, rotated, (D + 3) / 4 vec4s each

// Where head slot `slot` (Q heads, then K's, then V's) of token tok's qkv row starts.
uint qkv_head(uint tok, uint slot) { return ((p.row0 + tok) * (p.n_heads + 2u * p.n_kv_heads) + slot) * p.head_dim; }

// Pair ip of that head, rotated at the token's position; iu and iv: the pair's two dims.
vec2 qkv_rotated(uint tok, uint slot, uint ip, out uint iu, out uint iv) {
    float a;
    rope_pair(float(positions[p.row0 + tok]), ip, p.head_dim, a, iu, iv);
    const uint src = qkv_head(tok, slot);
    return rotated(qkv[src + iu], qkv[src + iv], a);
}
#define V_AT(fresh, idx) ((fresh) ? qkv[idx] : v[idx])
#else
#define V_AT(fresh, idx) v[idx]
#endif
#define O_ROW(row) (p.row0 * p.n_heads + (row))  // (query row, head) pair `row` of o (and q)

shared vec4 qs[MAX_D / 4];  // q's row; scalar dim d at qs[d / 4][d % 4]
shared float scores[CHUNK];
shared float red[WG];
shared bool merge_here;  // split mode: this workgroup is its pair's last split

float reduce_max(float val) {
    const uint t = gl_LocalInvocationID.x;
    red[t] = val;
    barrier();
    for (uint s = WG / 2; s > 0; s /= 2) {
        if (t < s) red[t] = max(red[t], red[t + s]);
        barrier();
    }
    const float r = red[0];
    barrier();
    return r;
}

float reduce_sum(float val) {
    const uint t = gl_LocalInvocationID.x;
    red[t] = val;
    barrier();
    for (uint s = WG / 2; s > 0; s /= 2) {
        if (t < s) red[t] += red[t + s];
        barrier();
    }
    const float r = red[0];
    barrier();
    return r;
}

void main() {
    const uint wg_id = linear_group();
    if (wg_id >= p.n_batch * p.n_q * p.n_heads * p.n_split) return;
    const uint t = gl_LocalInvocationID.x;
    const uint row = wg_id / p.n_split, split = wg_id % p.n_split;
    const uint i = row / p.n_heads, h = row % p.n_heads;
    const uint g = h / (p.n_heads / p.n_kv_heads);
    const uint D = p.head_dim;
    const uint kv_stride = p.n_kv_heads * D;
    const uint kv0 = (i / p.n_q) * p.n_kv * kv_stride;  // the row's batch's keys; i: row of all batches
    uint n_vis = p.n_kv;
    if (p.causal != 0) n_vis = min(p.q_pos0 + i % p.n_q + 1, p.n_kv);
    const uint span_keys = (p.n_kv + p.n_split - 1) / p.n_split;
    const uint j_begin = min(split * span_keys, n_vis), j_end = min(j_begin + span_keys, n_vis);
#ifdef FROM_QKV
    const uint half_d = D / 2u, v_slot = p.n_heads + p.n_kv_heads + g;  // KV head g's V in qkv
    const uint fresh0 = p.q_pos0;  // the step's first key; n_batch = 1, causal
    if (i == 0u && split == 0u && h % (p.n_heads / p.n_kv_heads) == 0u) {
        for (uint e = t; e < p.n_q * half_d; e += WG) {  // KV head g's rows of the step's tokens
            const uint tok = e / half_d;
            uint iu, iv;
            const vec2 r = qkv_rotated(tok, p.n_heads + g, e % half_d, iu, iv);
            const uint dst = (fresh0 + tok) * kv_stride + g * D;
            const uint vsrc = qkv_head(tok, v_slot);
            k_out[dst + iu] = r.x;
            k_out[dst + iv] = r.y;
            v_out[dst + iu] = qkv[vsrc + iu];
            v_out[dst + iv] = qkv[vsrc + iv];
        }
    }
    for (uint ip = t; ip < half_d; ip += WG) {
        uint iu, iv;
        const vec2 r = qkv_rotated(i, h, ip, iu, iv);
        qs[iu / 4u][iu % 4u] = r.x;
        qs[iv / 4u][iv % 4u] = r.y;
    }
    const uint f_begin = max(j_begin, fresh0);  // this workgroup's fresh keys: [f_begin, j_end)
    const uint fd4 = (D + 3u) / 4u;
    for (uint e = t; f_begin < j_end && e < (j_end - f_begin) * half_d; e += WG) {
        const uint c = e / half_d;
        uint iu, iv;
        const vec2 r = qkv_rotated(f_begin - fresh0 + c, p.n_heads + g, e % half_d, iu, iv);
        fresh_k[c * fd4 + iu / 4u][iu % 4u] = r.x;
        fresh_k[c * fd4 + iv / 4u][iv % 4u] = r.y;
    }
#else
    for (uint d = t; d < D; d += WG) qs[d / 4u][d % 4u] = q[O_ROW(i * p.n_heads + h) * D + d];
#endif
    barrier();

    // The value phase's layout: `lanes` invocations cover a key's row, lane owning R = 4
    // consecutive dims (R = 1 where head_dim is not a multiple of 4), and again `span` dims
    // further on where one pass of lanes does not cover head_dim (R = 1, head_dim > WG); the
    // workgroup's WG / lanes groups take every groups-th key of the chunk.
    const uint R = D % 4u == 0u ? 4u : 1u;
    const uint lanes = min(D / R, WG), groups = WG / lanes, span = lanes * R;
    const uint lane = t % lanes, grp = t / lanes;  // grp == groups: idle in the value phase
    float acc[2][4];
    for (uint c = 0; c < 2; ++c)
        for (uint r = 0; r < 4; ++r) acc[c][r] = 0.0;
    float m_run = -1.0 / 0.0, l_run = 0.0;
    for (uint j0 = j_begin; j0 < j_end; j0 += CHUNK) {
        const uint nk = min(CHUNK, j_end - j0);
        // The chunk's keys from the cache: all of them, or (FROM_QKV) those before the fresh
        // ones, the last n_q keys (in the last chunk, or the last two).
#ifdef FROM_QKV
        const uint n_cached = fresh0 > j0 ? min(nk, fresh0 - j0) : 0u;
#else
        const uint n_cached = nk;
#endif
        float mx = -1.0 / 0.0;
        for (uint c = t; c < nk; c += WG) {
            const uint kb = kv0 + (j0 + c) * kv_stride + g * D;
            float sum = 0.0;
            if (c >= n_cached) {
#ifdef FROM_QKV
                const uint f = j0 + c - f_begin;  // the fresh key's place in fresh_k
                if (R == 4u)
                    for (uint d4 = 0; d4 < D / 4u; ++d4) sum += dot(qs[d4], fresh_k[f * fd4 + d4]);
                else
                    for (uint d = 0; d < D; ++d) sum += qs[d / 4u][d % 4u] * fresh_k[f * fd4 + d / 4u][d % 4u];
#endif
            } else if (R == 4u) {  // vec4 loads, four at a time: independent loads in flight
                const uint kb4 = kb / 4u, D4 = D / 4u;
                uint d4 = 0;
                for (; d4 + 8u <= D4; d4 += 8u) {  // head_dim 64: two rounds of loads, not four
                    vec4 kk[8];
                    for (uint u = 0; u < 8u; ++u) kk[u] = k4[kb4 + d4 + u];
                    for (uint u = 0; u < 8u; ++u) sum += dot(qs[d4 + u], kk[u]);
                }
                for (; d4 + 4u <= D4; d4 += 4u) {
                    const vec4 k0 = k4[kb4 + d4], k1 = k4[kb4 + d4 + 1u];
                    const vec4 k2 = k4[kb4 + d4 + 2u], k3 = k4[kb4 + d4 + 3u];
                    sum += dot(qs[d4], k0) + dot(qs[d4 + 1u], k1) + dot(qs[d4 + 2u], k2) + dot(qs[d4 + 3u], k3);
                }
                for (; d4 < D4; ++d4) sum += dot(qs[d4], k4[kb4 + d4]);
            } else {
                for (uint d = 0; d < D; ++d) sum += qs[d / 4u][d % 4u] * k[kb + d];
            }
            scores[c] = p.scale * sum;
            mx = max(mx, scores[c]);
        }
        const float m_new = max(m_run, reduce_max(mx));
        float sum = 0.0;
        for (uint c = t; c < nk; c += WG) {
            const float e = exp(scores[c] - m_new);
            scores[c] = e;
            sum += e;
        }
        const float chunk_sum = reduce_sum(sum);  // its barriers also publish scores[]
        const float alpha = exp(m_run - m_new);   // 0 on the first chunk (m_run = −inf)
        l_run = l_run * alpha + chunk_sum;
        for (uint c = 0; c < 2; ++c)
            for (uint r = 0; r < 4; ++r) acc[c][r] *= alpha;
        if (grp < groups) {
            const uint d0 = lane * R;
            const uint vb = kv0 + j0 * kv_stride + g * D + d0;
            uint c = grp;
            if (R == 4u) {  // four keys' loads in flight before their sums (cached keys only)
                vec4 a = vec4(0.0);
                const uint vb4 = vb / 4u, st4 = kv_stride / 4u;
                for (; c + 3u * groups < n_cached; c += 4u * groups) {
                    const vec4 v0 = v4[vb4 + c * st4], v1 = v4[vb4 + (c + groups) * st4];
                    const vec4 v2 = v4[vb4 + (c + 2u * groups) * st4], v3 = v4[vb4 + (c + 3u * groups) * st4];
                    a += scores[c] * v0 + scores[c + groups] * v1 + scores[c + 2u * groups] * v2 +
                         scores[c + 3u * groups] * v3;
                }
                for (uint r = 0; r < 4; ++r) acc[0][r] += a[r];
            }
            for (; c < nk; c += groups) {
                const float e = scores[c];
#ifdef FROM_QKV
                // A fresh key's V: the V head of its token's qkv row.
                const bool fresh = c >= n_cached;
                const uint base = fresh ? qkv_head(j0 + c - fresh0, v_slot) + d0 : vb + c * kv_stride;
#else
                const bool fresh = false;
                const uint base = vb + c * kv_stride;
#endif
                for (uint r = 0; r < 4; ++r)
                    if (r < R) acc[0][r] += e * V_AT(fresh, base + r);
                if (span + d0 < D)  // R = 1 here
                    acc[1][0] += e * V_AT(fresh, base + span);
            }
        }
        m_run = m_new;
        barrier();  // scores[] is rewritten by the next chunk
    }
    // Add the groups' partial outputs, 8 floats an invocation in scores[] (now free: the
    // loop ended on a barrier; 8·WG ≤ CHUNK).
    for (uint c = 0; c < 2; ++c)
        for (uint r = 0; r < 4; ++r) scores[t * 8u + c * 4u + r] = acc[c][r];
    barrier();
    const bool partial = p.n_split > 1;
    const uint pb = COUNTERS + wg_id * (D + 2u);
    if (partial && t == 0) {
        part[pb] = m_run;
        part[pb + 1u] = l_run;
    }
    if (t < lanes) {
        const float inv = partial ? 1.0 : (n_vis > 0 ? 1.0 / l_run : 0.0);
        for (uint c = 0; c < 2; ++c)
            for (uint r = 0; r < 4; ++r) {
                const uint d = t * R + r + c * span;
                if (r >= R || d >= D) continue;
                float sum = 0.0;
                for (uint gi = 0; gi < groups; ++gi) sum += scores[(gi * lanes + t) * 8u + c * 4u + r];
                if (partial) part[pb + 2u + d] = sum;
                else o[O_ROW(row) * D + d] = sum * inv;
            }
    }
    if (!partial) return;
    // Publish this split's partial, then count it; the split that counts last merges.
    memoryBarrierBuffer();
    barrier();
    if (t == 0u) merge_here = atomicAdd(cnt[row], 1u) == p.n_split - 1u;
    barrier();
    if (!merge_here) return;
    memoryBarrierBuffer();
    // The merge, with as few dependent reads as may be (it is on the step's critical path): the
    // splits' m_s and l_s into shared memory at once, then `ls` lanes of splits per dim d,
    // each lane summing every ls-th split, and the lanes' sums added.
    const uint S = p.n_split, stride = D + 2u, base = COUNTERS + row * S * stride;
    const float neg_inf = -1.0 / 0.0;
    if (t < S) {
        scores[t] = part[base + t * stride];
        scores[MAX_SPLITS + t] = part[base + t * stride + 1u];
    }
    barrier();
    float m = neg_inf;
    for (uint s = 0; s < S; ++s) m = max(m, scores[s]);
    float l = 0.0;
    for (uint s = 0; s < S; ++s)
        if (scores[s] != neg_inf) l += exp(scores[s] - m) * scores[MAX_SPLITS + s];
    const float inv = l > 0.0 ? 1.0 / l : 0.0;
    const uint ls = max(1u, WG / D);  // split lanes; 1 where head_dim > WG / 2
    const uint sl = t / D;
    float sums[2] = {0.0, 0.0};  // dims d and d + WG (head_dim up to 2·WG, ls = 1)
    if (sl < ls)
        for (uint s = sl; s < S; s += ls) {
            if (scores[s] == neg_inf) continue;
            const float w = exp(scores[s] - m);
            const uint pd = base + s * stride + 2u;
            for (uint c = 0; c < 2; ++c) {
                const uint d = (ls == 1u ? t : t % D) + c * WG;
                if (d < D) sums[c] += w * part[pd + d];
            }
        }
    barrier();  // scores[] is read above, reused below
    if (ls > 1u) {
        if (sl < ls) scores[2u * MAX_SPLITS + t] = sums[0];  // t = sl·D + d
        barrier();
        if (t < D) {
            float sum = 0.0;
            for (uint k = 0; k < ls; ++k) sum += scores[2u * MAX_SPLITS + k * D + t];
            o[O_ROW(row) * D + t] = sum * inv;
        }
    } else {
        for (uint c = 0; c < 2; ++c) {
            const uint d = t + c * WG;
            if (d < D) o[O_ROW(row) * D + d] = sums[c] * inv;
        }
    }
    if (t == 0u) cnt[row] = 0u;
}
