#version 450
// Multi-head attention over a KV cache (core/ops.h attention, MODELS.md §1.2), for few query
// rows (decode); attention_tiled.comp is the kernel for many.
// q [n_q][n_heads][head_dim], k and v [n_kv][n_kv_heads][head_dim], out [n_q][n_heads][head_dim].
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
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
const uint MAX_D = 256;
const uint CHUNK = 2048;

layout(binding = 0) readonly buffer QBuf { float q[]; };
layout(binding = 1) readonly buffer KBuf { float k[]; };
layout(binding = 1) readonly buffer KBuf4 { vec4 k4[]; };  // the same keys, for head_dim % 4 == 0
layout(binding = 2) readonly buffer VBuf { float v[]; };
layout(binding = 3) writeonly buffer OBuf { float o[]; };
// Split mode (n_split > 1): workgroup (row i, head h, split s) sees only keys
// [s·L, (s+1)·L), L = ⌈n_kv / n_split⌉, and writes its partial result unnormalized, as
// [m, l, acc[head_dim]], to part[((i·n_heads + h)·n_split + s)·(head_dim + 2)];
// attention_merge.comp combines the splits. Decode has few (row, head) pairs, so splitting
// the keys is what lets more of the device's cores work on them.
layout(binding = 4) writeonly buffer PBuf { float part[]; };

layout(push_constant) uniform Push {  // mirrors AttentionPush in core/vk_ops.cpp
    uint n_q, n_kv, n_heads, n_kv_heads, head_dim, causal, q_pos0;
    float scale;
    uint n_split;  // 1: the whole row here, written to o
} p;

shared vec4 qs[MAX_D / 4];  // q's row; scalar dim d at qs[d / 4][d % 4]
shared float scores[CHUNK];
shared float red[WG];

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
    if (wg_id >= p.n_q * p.n_heads * p.n_split) return;
    const uint t = gl_LocalInvocationID.x;
    const uint row = wg_id / p.n_split, split = wg_id % p.n_split;
    const uint i = row / p.n_heads, h = row % p.n_heads;
    const uint g = h / (p.n_heads / p.n_kv_heads);
    const uint D = p.head_dim;
    const uint kv_stride = p.n_kv_heads * D;
    for (uint d = t; d < D; d += WG) qs[d / 4u][d % 4u] = q[(i * p.n_heads + h) * D + d];
    barrier();

    uint n_vis = p.n_kv;
    if (p.causal != 0) n_vis = min(p.q_pos0 + i + 1, p.n_kv);
    const uint span_keys = (p.n_kv + p.n_split - 1) / p.n_split;
    const uint j_begin = min(split * span_keys, n_vis), j_end = min(j_begin + span_keys, n_vis);

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
        float mx = -1.0 / 0.0;
        for (uint c = t; c < nk; c += WG) {
            const uint kb = (j0 + c) * kv_stride + g * D;
            float sum = 0.0;
            if (R == 4u) {  // vec4 loads, four at a time: independent loads in flight
                const uint kb4 = kb / 4u, D4 = D / 4u;
                uint d4 = 0;
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
            const uint vb = j0 * kv_stride + g * D + d0;
            for (uint c = grp; c < nk; c += groups) {
                const float e = scores[c];
                const uint base = vb + c * kv_stride;
                for (uint r = 0; r < 4; ++r)
                    if (r < R) acc[0][r] += e * v[base + r];
                if (span + d0 < D)  // R = 1 here
                    acc[1][0] += e * v[base + span];
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
    const uint pb = wg_id * (D + 2u);
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
                else o[row * D + d] = sum * inv;
            }
    }
}
