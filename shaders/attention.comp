#version 450
// Multi-head attention over a KV cache (core/ops.h attention, MODELS.md §1.2).
// q [n_q][n_heads][head_dim], k and v [n_kv][n_kv_heads][head_dim], out [n_q][n_heads][head_dim].
// One workgroup per (query row i, head h); KV head g = h / (n_heads / n_kv_heads). Keys are
// visited in chunks of WG with an online softmax (running max m and sum l, the output rescaled
// by exp(m_old − m_new) when the max grows), so the [n_q][n_kv] score matrix is never stored
// and long image prompts cost no memory. Causal: row i sees keys 0 .. q_pos0 + i (clamped).
// head_dim ≤ 256 (checked on the host). A row that sees no key gets 0.
#include "common.glsl"

layout(local_size_x = 64) in;
const uint WG = 64;
const uint MAX_D = 256;
const uint PER_THREAD = MAX_D / WG;  // output dims owned by each invocation: t + WG·c

layout(binding = 0) readonly buffer QBuf { float q[]; };
layout(binding = 1) readonly buffer KBuf { float k[]; };
layout(binding = 2) readonly buffer VBuf { float v[]; };
layout(binding = 3) writeonly buffer OBuf { float o[]; };

layout(push_constant) uniform Push {  // mirrors AttentionPush in core/vk_ops.cpp
    uint n_q, n_kv, n_heads, n_kv_heads, head_dim, causal, q_pos0;
    float scale;
} p;

shared float qs[MAX_D];
shared float probs[WG];
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
    if (wg_id >= p.n_q * p.n_heads) return;
    const uint t = gl_LocalInvocationID.x;
    const uint i = wg_id / p.n_heads, h = wg_id % p.n_heads;
    const uint g = h / (p.n_heads / p.n_kv_heads);
    const uint D = p.head_dim;
    const uint kv_stride = p.n_kv_heads * D;
    for (uint d = t; d < D; d += WG) qs[d] = q[(i * p.n_heads + h) * D + d];
    barrier();

    uint n_vis = p.n_kv;
    if (p.causal != 0) n_vis = min(p.q_pos0 + i + 1, p.n_kv);

    float m_run = -1.0 / 0.0, l_run = 0.0;
    float acc[PER_THREAD];
    for (uint c = 0; c < PER_THREAD; ++c) acc[c] = 0.0;
    for (uint j0 = 0; j0 < n_vis; j0 += WG) {
        const uint j = j0 + t;
        float s = -1.0 / 0.0;
        if (j < n_vis) {
            const uint kb = j * kv_stride + g * D;
            float dot = 0.0;
            for (uint d = 0; d < D; ++d) dot += qs[d] * k[kb + d];
            s = p.scale * dot;
        }
        const float m_new = max(m_run, reduce_max(s));
        const float e = j < n_vis ? exp(s - m_new) : 0.0;
        probs[t] = e;
        const float chunk_sum = reduce_sum(e);  // its barriers also publish probs[]
        const float alpha = exp(m_run - m_new);  // 0 on the first chunk (m_run = −inf)
        l_run = l_run * alpha + chunk_sum;
        const uint n_chunk = min(WG, n_vis - j0);
        for (uint c = 0; c < PER_THREAD; ++c) {
            const uint d = t + WG * c;
            if (d >= D) break;
            float a = acc[c] * alpha;
            for (uint jj = 0; jj < n_chunk; ++jj) a += probs[jj] * v[(j0 + jj) * kv_stride + g * D + d];
            acc[c] = a;
        }
        m_run = m_new;
        barrier();  // probs[] is rewritten by the next chunk
    }
    const float inv = n_vis > 0 ? 1.0 / l_run : 0.0;
    for (uint c = 0; c < PER_THREAD; ++c) {
        const uint d = t + WG * c;
        if (d < D) o[(i * p.n_heads + h) * D + d] = acc[c] * inv;
    }
}
