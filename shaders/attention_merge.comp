#version 450
// The second pass of split attention (attention.comp with n_split > 1): for each (query row i,
// head h), combine the splits' partial results [m_s, l_s, acc_s[head_dim]] (acc_s unnormalized,
// under the split's own running max m_s) into
//   o = Σ_s exp(m_s − m)·acc_s / Σ_s exp(m_s − m)·l_s,   m = max_s m_s,
// where a split that saw no key (m_s = −inf) adds nothing, and a row that saw none gets 0.
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;

layout(binding = 0) readonly buffer PBuf { float part[]; };
layout(binding = 1) writeonly buffer OBuf { float o[]; };

layout(push_constant) uniform Push {  // mirrors AttentionPush in core/vk_ops.cpp
    uint n_q, n_kv, n_heads, n_kv_heads, head_dim, causal, q_pos0;
    float scale;
    uint n_split;
} p;

void main() {
    const uint row = linear_group();  // i·n_heads + h
    if (row >= p.n_q * p.n_heads) return;
    const uint D = p.head_dim, S = p.n_split, stride = D + 2u;
    const uint base = row * S * stride;
    const float neg_inf = -1.0 / 0.0;
    float m = neg_inf;
    for (uint s = 0; s < S; ++s) m = max(m, part[base + s * stride]);
    float l = 0.0;
    for (uint s = 0; s < S; ++s) {
        const float ms = part[base + s * stride];
        if (ms != neg_inf) l += exp(ms - m) * part[base + s * stride + 1u];
    }
    const float inv = l > 0.0 ? 1.0 / l : 0.0;
    for (uint d = gl_LocalInvocationID.x; d < D; d += WG) {
        float sum = 0.0;
        for (uint s = 0; s < S; ++s) {
            const float ms = part[base + s * stride];
            if (ms != neg_inf) sum += exp(ms - m) * part[base + s * stride + 2u + d];
        }
        o[row * D + d] = sum * inv;
    }
}
