#version 450
// Multi-head attention for many query rows at once (prefill, the ViT): the same result as
// attention.comp (core/ops.h attention, MODELS.md §1.2), laid out for throughput.
// One workgroup per (batch, block of BQ query rows, head h), batch b's rows seeing only batch
// b's keys (n_batch > 1: the ViT's tiles), WG = BQ · SPLIT invocations: invocation
// t owns query row b·BQ + t % BQ and every SPLIT-th tile of BK keys, starting at tile t / BQ,
// and keeps its row of q and its share of the output in registers. The BQ invocations of a
// split walk the same keys in the same order, so each K/V load has one address for all of
// them: the hardware serves it once (a broadcast) for BQ query rows, which is what a shared
// memory tile would buy, without barriers in the loop. (Mesa 22.3's lavapipe also loses
// private arrays that live across a barrier in a long loop.) Splitting the keys gives the
// device SPLIT times more invocations to hide memory latency with. Each invocation runs its
// own online softmax (a tile's scores in registers, its output rescaled by exp(m_old − m_new)
// once per tile); at the end the splits of a row are merged through shared memory, each
// scaled by exp(m_split − m_row). Causal: row i sees keys 0 .. q_pos0 + i (clamped); the
// workgroup stops after the last key its last row sees.
// HEAD_DIM is specialized to the model's head dimension (a multiple of 4, ≤ MAX_DIM, which
// the build sets per variant: a smaller bound keeps the row arrays in registers). The host
// splits only the MAX_DIM = 64 variant (SPLIT = 1 otherwise): LLVM, under lavapipe, takes
// minutes to compile 2 × 128 floats live across the merge's barriers.
#include "common.glsl"

#ifndef MAX_DIM
#define MAX_DIM 128
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;       // = BQ · SPLIT
layout(constant_id = 1) const uint HEAD_DIM = 64;  // = p.head_dim
layout(constant_id = 2) const uint BQ = 32;        // query rows per workgroup; BQ·HEAD_DIM ≤ 2048
const uint SPLIT = WG / BQ;
const uint BK = 16;  // keys per softmax tile
const uint D4 = HEAD_DIM / 4;
// Arrays have fixed sizes: Mesa 22.3's lavapipe sizes an array declared with a
// specialization constant by the constant's default value, not the specialized one.
const uint MAX_WG = 256;

layout(binding = 0) readonly buffer QBuf { vec4 q[]; };
layout(binding = 1) readonly buffer KBuf { vec4 k[]; };
layout(binding = 2) readonly buffer VBuf { vec4 v[]; };
layout(binding = 3) writeonly buffer OBuf { vec4 o[]; };

layout(push_constant) uniform Push {  // mirrors AttentionPush in core/vk_ops.cpp
    uint n_q, n_kv, n_heads, n_kv_heads, head_dim, causal, q_pos0;
    float scale;
    uint n_split;  // attention.comp's; 1 here
    uint n_batch;  // batch b's rows see batch b's keys (the ViT's tiles)
    uint row0;     // q's and o's rows start at this row (one sequence of a batched prefill)
} p;

shared float split_m[MAX_WG], split_l[MAX_WG];  // each invocation's running max and sum
shared vec4 merged[512];                         // the block's output rows, BQ·D4 ≤ 512

void main() {
    const uint n_blocks = (p.n_q + BQ - 1) / BQ;
    const uint wg_id = linear_group();
    if (wg_id >= p.n_batch * n_blocks * p.n_heads) return;  // uniform per workgroup
    const uint t = gl_LocalInvocationID.x;
    const uint r = t % BQ, sp = t / BQ;  // row of the block, key split
    const uint h = wg_id % p.n_heads, bb = wg_id / p.n_heads;
    const uint batch = bb / n_blocks, b = bb % n_blocks;
    const uint g = h / (p.n_heads / p.n_kv_heads);
    const uint kv_stride4 = p.n_kv_heads * D4;  // one key row of all KV heads, in vec4s
    const uint kv0 = batch * p.n_kv * kv_stride4;  // the batch's keys
    const uint i = b * BQ + r;                      // the row within the batch
    const uint qo = ((p.row0 + batch * p.n_q + i) * p.n_heads + h) * D4;  // its q (and o) row
    const bool in_range = i < p.n_q;

    vec4 qr[MAX_DIM / 4], acc[MAX_DIM / 4];  // the first D4 used
    for (uint c = 0; c < D4; ++c) {
        qr[c] = in_range ? q[qo + c] : vec4(0.0);
        acc[c] = vec4(0.0);
    }
    // Keys this row sees, and the most any row of the block sees (its last row's count).
    const uint i_last = min(b * BQ + BQ, p.n_q) - 1;
    uint n_vis = p.n_kv, n_block = p.n_kv;
    if (p.causal != 0) {
        n_vis = min(p.q_pos0 + i + 1, p.n_kv);
        n_block = min(p.q_pos0 + i_last + 1, p.n_kv);
    }
    if (!in_range) n_vis = 0;

    const float neg_inf = -1.0 / 0.0;
    float m_run = neg_inf, l_run = 0.0;
    for (uint j0 = sp * BK; j0 < n_block; j0 += SPLIT * BK) {
        const uint nk = min(BK, n_block - j0);  // the same for the split's invocations
        float s[BK];
        float m_new = m_run;
        for (uint jj = 0; jj < BK; ++jj) {
            s[jj] = neg_inf;
            if (jj < nk) {
                const uint kb = kv0 + (j0 + jj) * kv_stride4 + g * D4;
                float d = 0.0;
                for (uint c = 0; c < D4; ++c) d += dot(qr[c], k[kb + c]);
                if (j0 + jj < n_vis) s[jj] = p.scale * d;
            }
            m_new = max(m_new, s[jj]);
        }
        if (m_new == neg_inf) continue;  // the row sees none of these keys (nor earlier ones)
        const float alpha = exp(m_run - m_new);  // 0 on the row's first tile (m_run = −inf)
        l_run *= alpha;
        for (uint c = 0; c < D4; ++c) acc[c] *= alpha;
        for (uint jj = 0; jj < nk; ++jj) {
            const float e = exp(s[jj] - m_new);  // 0 for keys the row does not see
            l_run += e;
            const uint vb = kv0 + (j0 + jj) * kv_stride4 + g * D4;
            for (uint c = 0; c < D4; ++c) acc[c] += e * v[vb + c];
        }
        m_run = m_new;
    }

    if (SPLIT == 1) {  // specialized away: no barrier (and no merge) in the unsplit kernel
        if (!in_range) return;
        const float inv = n_vis > 0 ? 1.0 / l_run : 0.0;
        for (uint c = 0; c < D4; ++c) o[qo + c] = acc[c] * inv;
        return;
    }
    // Merge the splits of each row: m = max of theirs, each scaled by exp(m_split − m).
    split_m[t] = m_run;
    split_l[t] = l_run;
    barrier();
    float m_row = neg_inf;
    for (uint s2 = 0; s2 < SPLIT; ++s2) m_row = max(m_row, split_m[s2 * BQ + r]);
    float l_row = 0.0;
    for (uint s2 = 0; s2 < SPLIT; ++s2) {
        const float ms = split_m[s2 * BQ + r];
        if (ms != neg_inf) l_row += split_l[s2 * BQ + r] * exp(ms - m_row);
    }
    const float f = m_run == neg_inf ? 0.0 : exp(m_run - m_row);
    for (uint s2 = 0; s2 < SPLIT; ++s2) {  // one split at a time adds its share
        if (sp == s2)
            for (uint c = 0; c < D4; ++c) merged[r * D4 + c] = (s2 == 0 ? vec4(0.0) : merged[r * D4 + c]) + f * acc[c];
        barrier();
    }
    if (sp != 0 || !in_range) return;
    const float inv = n_vis > 0 ? 1.0 / l_row : 0.0;
    for (uint c = 0; c < D4; ++c) o[qo + c] = merged[r * D4 + c] * inv;
}
