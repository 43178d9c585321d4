#version 450
// A fused Q·K·V product split into its three destinations, with the rotary embedding of rope.comp
// (core/ops.h rope, MODELS.md §1.4) applied on the way: q gets Q rotated, the K cache K rotated
// and the V cache V as it is. qkv [n_tokens][n_heads + 2·n_kv_heads][head_dim]: each token's row
// is its Q heads, then its K heads, then its V heads (the product of the stacked wq, wk, wv
// rows); q [n_tokens][n_heads][head_dim]; the caches' rows [pos][n_kv_heads][head_dim] from
// kv_offset. One invocation per pair i of one head slot (Q, K or V) of one token; a V pair is
// copied. Tokens start at row row0 of qkv, positions and q (one sequence of a batched prefill,
// whose rows sit side by side there while each sequence has its own caches). This is one
// dispatch where the unfused layer has the separate products write q and the caches and
// rope.comp rotate them in place.
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer QkvBuf { float qkv[]; };
layout(binding = 1) readonly buffer Pos { int positions[]; };
layout(binding = 2) readonly buffer Freq { float inv_freq[]; };
layout(binding = 3) writeonly buffer QBuf { float q[]; };
layout(binding = 4) writeonly buffer KBuf { float kc[]; };
layout(binding = 5) writeonly buffer VBuf { float vc[]; };

layout(push_constant) uniform Push {  // mirrors RopeQkvPush in core/vk_ops.cpp
    uint n_tokens, n_heads, n_kv_heads, head_dim, style;
    float theta_scale;
    uint kv_offset;  // where token 0's row starts in each cache
    uint row0;       // token 0's row in qkv, positions and q
} p;

#include "rope.glsl"

void main() {
    const uint half_d = p.head_dim / 2;
    const uint slots = p.n_heads + 2 * p.n_kv_heads;  // head slots of a token's qkv row
    const uint idx = linear_invocation(WG);
    if (idx >= p.n_tokens * slots * half_d) return;
    const uint i = idx % half_d;
    const uint slot = (idx / half_d) % slots;
    const uint token = idx / (half_d * slots);
    const uint src = ((p.row0 + token) * slots + slot) * p.head_dim;
    const uint kv_row = p.kv_offset + token * p.n_kv_heads * p.head_dim;
    uint iu, iv;
    if (slot >= p.n_heads + p.n_kv_heads) {  // V: copied, no angle
        rope_dims(i, p.head_dim, iu, iv);
        const uint dst = kv_row + (slot - p.n_heads - p.n_kv_heads) * p.head_dim;
        vc[dst + iu] = qkv[src + iu];
        vc[dst + iv] = qkv[src + iv];
        return;
    }
    float a;
    rope_pair(float(positions[p.row0 + token]), i, p.head_dim, a, iu, iv);
    const vec2 r = rotated(qkv[src + iu], qkv[src + iv], a);
    if (slot < p.n_heads) {
        const uint dst = ((p.row0 + token) * p.n_heads + slot) * p.head_dim;
        q[dst + iu] = r.x;
        q[dst + iv] = r.y;
    } else {
        const uint dst = kv_row + (slot - p.n_heads) * p.head_dim;
        kc[dst + iu] = r.x;
        kc[dst + iv] = r.y;
    }
}
