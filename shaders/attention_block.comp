#version 450
// Multi-head attention for many query rows at once, register-blocked: the same result as
// attention.comp and attention_tiled.comp (core/ops.h attention, MODELS.md §1.2), computed the
// way the tiled matmul computes y, in blocks held by each invocation.
// One workgroup of 8×8 invocations per (batch, block of BQ = 32 query rows, head h); batch b's
// rows see only batch b's keys (n_batch > 1: the ViT's tiles in one dispatch). The block's
// rows of q are staged once in shared memory; the keys are walked in tiles of BKV = 32, each
// tile's K and V rows staged in shared memory (the next tile's read from global memory into
// registers while this one is computed). Invocation (ty, tx) owns rows ty + 8i and keys
// tx + 8j (i, j < 4) of a tile's score block S = scale · q·Kᵀ, and the same rows, dimensions
// (vec4 columns) tx + 8c (c < 2), of the output: its 16 scores come from 8 vec4 loads per 4
// dimensions (64 multiply-adds), its 32 output sums from 12 vec4 loads per 4 keys (128).
// The earlier kernels made one multiply-add per K/V float they loaded.
// Online softmax over the tiles, as FlashAttention does it (Dao et al. 2022,
// arXiv:2205.14135): a row's maximum m is kept over the tiles seen; the row's eight
// invocations put their share of a tile's maximum in shared memory, each then reads the row's
// eight and rescales its sums by exp(m_old − m_new); the tile's probabilities
// P = exp(S − m_new) go to shared memory (over the staged keys, which S no longer needs) and
// O += P·V is a small matmul like S. Each invocation sums its own keys' P; the row's eight
// sums are added once at the end. Causal: row i sees keys 0 .. q_pos0 + i (clamped); the
// workgroup stops after the last key its last row sees.
// head_dim ≤ 64 and a multiple of 4 (HEAD_DIM, specialized). The stride between staged rows is
// 17 vec4s (68 floats): the rows an invocation reads, 8 apart, then start 4 banks apart.
// Shared memory: 26 KiB (vk::attention checks the device has it).
#include "common.glsl"

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint HEAD_DIM = 64;  // = p.head_dim, ≤ 64, a multiple of 4
const uint BQ = 32, BKV = 32;                     // query rows a workgroup, keys a tile
const uint MAX_D4 = 16;                            // vec4s of the longest row
const uint D4 = HEAD_DIM / 4;
const uint ROW = MAX_D4 + 1;                       // vec4 stride of staged q and K rows
const uint PROW = BKV / 4 + 2;                     // vec4 stride of P's rows (40 floats)
const uint LOADS = BKV * MAX_D4 / 64;              // vec4s of K (and of V) an invocation stages

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

shared vec4 qs[BQ * ROW];
shared vec4 ks[BKV * ROW];  // a tile's K rows; then its P[row][key], rows PROW vec4s apart
shared vec4 vs[BKV * MAX_D4];
shared float red[8 * BQ];   // red[tx][row]: the row's tile maxima, at the end its sums

// This invocation's share of the K and V rows of the tile at key j0 (zero past n_block), read
// from global memory. Element e = t + 64·s of a tile's stage is key e / D4, vec4 e % D4:
// consecutive invocations read consecutive vec4s of a key row.
void fetch_tile(uint j0, uint n_block, uint kv0, uint kv_stride4, out vec4 kn[LOADS], out vec4 vn[LOADS]) {
    for (uint s = 0; s < LOADS; ++s) {
        const uint e = gl_LocalInvocationID.x + 64 * s, key = j0 + e / D4;
        const bool ok = e < BKV * D4 && key < n_block;
        const uint a = kv0 + key * kv_stride4 + e % D4;
        kn[s] = ok ? k[a] : vec4(0.0);
        vn[s] = ok ? v[a] : vec4(0.0);
    }
}

void main() {
    const uint n_blocks = (p.n_q + BQ - 1) / BQ;
    const uint wg_id = linear_group();
    if (wg_id >= p.n_batch * n_blocks * p.n_heads) return;  // uniform per workgroup
    const uint t = gl_LocalInvocationID.x;
    const uint tx = t % 8, ty = t / 8;
    const uint h = wg_id % p.n_heads, bb = wg_id / p.n_heads;
    const uint batch = bb / n_blocks, b = bb % n_blocks;
    const uint g = h / (p.n_heads / p.n_kv_heads);
    const uint kv_stride4 = p.n_kv_heads * D4;  // one key row of all KV heads, in vec4s
    const uint kv0 = batch * p.n_kv * kv_stride4 + g * D4;  // the batch's keys, head g
    const uint q0 = p.row0 + batch * p.n_q;                // the batch's first q (and o) row
    const uint row0 = b * BQ;                              // the block's first row in the batch
    const uint i_last = min(row0 + BQ, p.n_q) - 1;
    const uint n_block = p.causal != 0 ? min(p.q_pos0 + i_last + 1, p.n_kv) : p.n_kv;
    const float neg_inf = -1.0 / 0.0;

    // The block's q rows (zero past n_q).
    for (uint e = t; e < BQ * D4; e += 64) {
        const uint r = e / D4, c = e % D4, i = row0 + r;
        qs[r * ROW + c] = i < p.n_q ? q[((q0 + i) * p.n_heads + h) * D4 + c] : vec4(0.0);
    }
    // Keys row ty + 8i sees.
    uint n_vis[4];
    for (uint i = 0; i < 4; ++i) {
        const uint row = row0 + ty + 8 * i;
        n_vis[i] = row >= p.n_q ? 0 : p.causal != 0 ? min(p.q_pos0 + row + 1, p.n_kv) : p.n_kv;
    }

    vec4 kn[LOADS], vn[LOADS];
    fetch_tile(0, n_block, kv0, kv_stride4, kn, vn);

    vec4 acc[4][2];
    float m_run[4], l_part[4];
    for (uint i = 0; i < 4; ++i) {
        acc[i][0] = acc[i][1] = vec4(0.0);
        m_run[i] = neg_inf;
        l_part[i] = 0.0;
    }

    for (uint j0 = 0; j0 < n_block; j0 += BKV) {
        for (uint s = 0; s < LOADS; ++s) {
            const uint e = t + 64 * s;
            if (e < BKV * D4) {
                ks[(e / D4) * ROW + e % D4] = kn[s];
                vs[(e / D4) * MAX_D4 + e % D4] = vn[s];
            }
        }
        barrier();
        const uint j1 = j0 + BKV;
        if (j1 < n_block) fetch_tile(j1, n_block, kv0, kv_stride4, kn, vn);

        // S = scale · q·Kᵀ for rows ty + 8i, keys tx + 8j; −inf where the row does not see the key.
        float s[4][4];
        for (uint i = 0; i < 4; ++i)
            for (uint j = 0; j < 4; ++j) s[i][j] = 0.0;
        for (uint c = 0; c < D4; ++c) {
            vec4 qr[4], kr[4];
            for (uint i = 0; i < 4; ++i) qr[i] = qs[(ty + 8 * i) * ROW + c];
            for (uint j = 0; j < 4; ++j) kr[j] = ks[(tx + 8 * j) * ROW + c];
            for (uint i = 0; i < 4; ++i)
                for (uint j = 0; j < 4; ++j) s[i][j] += dot(qr[i], kr[j]);
        }
        for (uint i = 0; i < 4; ++i) {
            float m = neg_inf;
            for (uint j = 0; j < 4; ++j) {
                s[i][j] = j0 + tx + 8 * j < n_vis[i] ? p.scale * s[i][j] : neg_inf;
                m = max(m, s[i][j]);
            }
            red[tx * BQ + ty + 8 * i] = m;
        }
        barrier();

        // The rows' maxima so far; P over the staged keys; the sums rescaled.
        for (uint i = 0; i < 4; ++i) {
            const uint r = ty + 8 * i;
            float m_new = m_run[i];
            for (uint x = 0; x < 8; ++x) m_new = max(m_new, red[x * BQ + r]);
            // A row that has seen no key yet keeps m = −inf, its P zero and its sums zero.
            const bool none = m_new == neg_inf;
            const float alpha = none ? 1.0 : exp(m_run[i] - m_new);  // 0 on the row's first keys
            float sum = 0.0;
            for (uint j = 0; j < 4; ++j) {
                const float e = none ? 0.0 : exp(s[i][j] - m_new);  // 0 for keys the row does not see
                sum += e;
                const uint key = tx + 8 * j;
                ks[r * PROW + key / 4][key % 4] = e;
            }
            l_part[i] = l_part[i] * alpha + sum;
            acc[i][0] *= alpha;
            acc[i][1] *= alpha;
            m_run[i] = m_new;
        }
        barrier();

        // O += P·V for rows ty + 8i, vec4 columns tx + 8c.
        for (uint j4 = 0; j4 < BKV / 4; ++j4) {
            vec4 pr[4];
            for (uint i = 0; i < 4; ++i) pr[i] = ks[(ty + 8 * i) * PROW + j4];
            for (uint kk = 0; kk < 4; ++kk) {
                const uint key = 4 * j4 + kk;
                const vec4 v0 = tx < D4 ? vs[key * MAX_D4 + tx] : vec4(0.0);  // past D4: unstaged
                const vec4 v1 = tx + 8 < D4 ? vs[key * MAX_D4 + tx + 8] : vec4(0.0);
                for (uint i = 0; i < 4; ++i) {
                    acc[i][0] += pr[i][kk] * v0;
                    acc[i][1] += pr[i][kk] * v1;
                }
            }
        }
        barrier();
    }

    // Each row's sum is its eight invocations' sums.
    for (uint i = 0; i < 4; ++i) red[tx * BQ + ty + 8 * i] = l_part[i];
    barrier();
    for (uint i = 0; i < 4; ++i) {
        const uint r = ty + 8 * i, row = row0 + r;
        if (row >= p.n_q) continue;
        float l = 0.0;
        for (uint x = 0; x < 8; ++x) l += red[x * BQ + r];
        const float inv = l > 0.0 ? 1.0 / l : 0.0;  // a row that sees no key (n_kv = 0) gets zeros
        const uint ob = ((q0 + row) * p.n_heads + h) * D4;
        if (tx < D4) o[ob + tx] = acc[i][0] * inv;
        if (tx + 8 < D4) o[ob + tx + 8] = acc[i][1] * inv;
    }
}
