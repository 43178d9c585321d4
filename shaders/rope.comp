#version 450
// Rotary position embedding in place (core/ops.h rope, MODELS.md §1.4).
// x [n_tokens][n_heads][head_dim] from x_offset; positions [n_tokens] int32; inv_freq [head_dim/2].
// One invocation per rotated pair i of one head of one token, angle a:
//   style 0 (AdjacentPairs, ggml NORMAL): pair (2i, 2i+1), a = pos · s · s ⋯ (i factors of
//     theta_scale, multiplied one at a time in float, as ggml and the CPU reference do);
//   style 1 (HalfSplit, HF rotate_half): pair (i, i + d/2), a = float(pos) · inv_freq[i]
//     (inv_freq computed on the host exactly as the CPU reference does).
// (u, v) -> (u cos a − v sin a, u sin a + v cos a), with sin/cos computed in the shader (below).
// A second tensor x2 [n_tokens][n_heads2][head_dim] from x2_offset, at the same positions, takes
// the invocations after x's (n_heads2 = 0: none): a step's Q and its new K rows in one dispatch.
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) buffer XBuf { float x[]; };
layout(binding = 1) readonly buffer Pos { int positions[]; };
layout(binding = 2) readonly buffer Freq { float inv_freq[]; };
layout(binding = 3) buffer X2Buf { float x2[]; };  // may alias x when n_heads2 = 0

layout(push_constant) uniform Push {  // mirrors RopePush in core/vk_ops.cpp
    uint n_tokens, n_heads, head_dim, style;
    float theta_scale;
    uint x_offset;  // where token 0 starts in x (a KV-cache row)
    uint n_heads2, x2_offset;
} p;

#include "rope.glsl"

void main() {
    const uint half_d = p.head_dim / 2;
    const uint first = p.n_tokens * p.n_heads * half_d;  // x's pairs; x2's follow
    uint idx = linear_invocation(WG);
    const bool second = idx >= first;
    if (second) idx -= first;
    const uint heads = second ? p.n_heads2 : p.n_heads;
    if (idx >= p.n_tokens * heads * half_d) return;
    const uint i = idx % half_d;
    const uint row = idx / half_d;  // token · heads + head
    const uint token = row / heads;
    const uint base = (second ? p.x2_offset : p.x_offset) + row * p.head_dim;
    const float pos = float(positions[token]);
    float a;
    uint iu, iv;
    rope_pair(pos, i, p.head_dim, a, iu, iv);
    iu += base;
    iv += base;
    if (second) {
        const vec2 r = rotated(x2[iu], x2[iv], a);
        x2[iu] = r.x;
        x2[iv] = r.y;
    } else {
        const vec2 r = rotated(x[iu], x[iv], a);
        x[iu] = r.x;
        x[iv] = r.y;
    }
}
