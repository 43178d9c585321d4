#version 450
// Multi-head attention for many query rows at once on tensor cores: the same result as
// attention_block.comp (core/ops.h attention, MODELS.md §1.2), with its two products,
// S = q·Kᵀ and O += P·V, done as VK_NV_cooperative_matrix 16×16×16 products of f16 matrices
// summed in f32 (GL_NV_cooperative_matrix). Built twice like matmul_coop.comp: as such
// (ShaderId attention_coop), run only where the device has that shape (vk::Context::
// coop_matmul), and with -DEMULATE (attention_coop_emu), the three matrix operations written
// out in plain GLSL over the same shared memory, which lavapipe runs in the tests.
//
// One workgroup of 128 invocations, four subgroups of 32, per (batch, block of BQ = 64 query
// rows, head h); batch b's rows see only batch b's keys (n_batch > 1: the ViT's tiles). Subgroup
// s owns rows 16s .. 16s+15 of the block. The block's q rows are staged once in shared memory
// as f16; the keys are walked in tiles of BKV = 32, each tile's K and V rows staged as f16 (the
// next tile's read into registers during this one). A tile:
//   1. each subgroup's 16×32 scores, two fragments, each HEAD_DIM / 16 products of a q
//      fragment (A, row-major) and a K fragment (B, column-major: K's rows are B's columns),
//      stored to the subgroup's scratch in f32;
//   2. the online softmax (FlashAttention, Dao et al. 2022, arXiv:2205.14135) in f32, lane l
//      of a subgroup taking row l / 2 and half l % 2 of its 32 keys: the row's maximum from
//      the lane pair through shared memory, the lane's share of the output and of the sum
//      rescaled by exp(m_old − m_new), P = exp(S − m_new) written as f16 over the staged keys;
//   3. O += P·V, two 16×16 fragments of the output at a time (P as A, V's rows as B
//      row-major), through the scratch into the lanes' output registers: lane l keeps row l / 2,
//      columns 8·(l % 2) .. +8 of every fragment, so that the rescaling by row is plain
//      arithmetic (a fragment's element layout is the driver's).
// Causal: row i sees keys 0 .. q_pos0 + i (clamped), the workgroup stops after the last key
// its last row sees. HEAD_DIM: a multiple of 16, ≤ 64 (the host checks). Shared memory:
// 27 KiB. Every barrier is reached by the whole workgroup (the loops are uniform).
#ifndef EMULATE
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#endif
#ifdef EMULATE
#extension GL_EXT_control_flow_attributes : require  // coop_ops.glsl's one kept loop
#endif
#include "common.glsl"

layout(local_size_x = 128) in;
layout(constant_id = 0) const uint HEAD_DIM = 64;  // = p.head_dim
const uint BQ = 64, BKV = 32;                     // query rows a workgroup, keys a tile
const uint MAX_D4 = 16;                            // uvec2 words (4 halves) of the longest row
const uint D4 = HEAD_DIM / 4;
const uint DF = HEAD_DIM / 16;                     // fragments along a row
// Staged rows, in uvec2 words: q, K and V rows 18 words (144 bytes) apart, P's rows 10 (80
// bytes): 16-byte aligned, as cooperative loads want, and not a multiple of 128 bytes.
const uint ROW = MAX_D4 + 2, PROW = BKV / 4 + 2;
const uint LOADS = BKV * MAX_D4 / 128;  // vec4s of K (and of V) an invocation stages

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

shared uvec2 qs[BQ * ROW];
shared uvec2 ks[BQ * PROW > BKV * ROW ? BQ * PROW : BKV * ROW];  // K's rows; then P's
shared uvec2 vs[BKV * ROW];
shared float scratch[4 * 16 * BKV];  // a subgroup's 16×32 scores, or a 16×16 fragment of P·V
shared float red[128];               // a lane's maximum, at the end its sum

// ---- the cooperative-matrix operations (coop_ops.glsl) and this kernel's fragment loads -----
// Locations and strides are in uvec2 words of qs/ks/vs (floats of scratch).
#ifdef EMULATE
// A fragment is its place in shared memory: which array, where, its stride and whether its
// 16 k values run along its rows (A; B column-major) or down its columns (B row-major).
struct Frag {
    uint arr, at, stride;
    bool k_along_rows;
};
#define FragA Frag
#define FragB Frag
// Element (r, k) of A, or (k, r) of B: r the row of A or the column of B.
float frag_at(Frag f, uint r, uint kk) {
    const uint along = f.k_along_rows ? kk : r, across = f.k_along_rows ? r : kk;
    const uint i = f.at + across * f.stride + along / 4;
    return half_of(f.arr == 0 ? qs[i] : f.arr == 1 ? ks[i] : vs[i], along % 4);
}
float frag_a_at(FragA a, uint r, uint k) { return frag_at(a, r, k); }
float frag_b_at(FragB b, uint c, uint k) { return frag_at(b, c, k); }
#endif
#include "coop_ops.glsl"
#ifndef EMULATE
void load_q(out FragA a, uint at) { coopMatLoadNV(a, qs, at, ROW, false); }
void load_k(out FragB b, uint at) { coopMatLoadNV(b, ks, at, ROW, true); }
void load_p(out FragA a, uint at) { coopMatLoadNV(a, ks, at, PROW, false); }
void load_v(out FragB b, uint at) { coopMatLoadNV(b, vs, at, ROW, false); }
#else
void load_q(out FragA a, uint at) { a = Frag(0, at, ROW, true); }
void load_k(out FragB b, uint at) { b = Frag(1, at, ROW, true); }
void load_p(out FragA a, uint at) { a = Frag(1, at, PROW, true); }
void load_v(out FragB b, uint at) { b = Frag(2, at, ROW, false); }
#endif

// This invocation's share of the K and V rows of the tile at key j0 (zero past n_block).
// Element e = t + 128·s of a tile's stage is key e / D4, vec4 e % D4.
void fetch_tile(uint j0, uint n_block, uint kv0, uint kv_stride4, out vec4 kn[LOADS], out vec4 vn[LOADS]) {
    for (uint s = 0; s < LOADS; ++s) {
        const uint e = gl_LocalInvocationIndex + 128 * s, key = j0 + e / D4;
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
    const uint t = gl_LocalInvocationIndex;
    const uint sg = subgroup_index(), lane = lane_index();
    const uint h = wg_id % p.n_heads, bb = wg_id / p.n_heads;
    const uint batch = bb / n_blocks, b = bb % n_blocks;
    const uint g = h / (p.n_heads / p.n_kv_heads);
    const uint kv_stride4 = p.n_kv_heads * D4;             // one key row of all KV heads, in vec4s
    const uint kv0 = batch * p.n_kv * kv_stride4 + g * D4;  // the batch's keys, head g
    const uint q0 = p.row0 + batch * p.n_q;                // the batch's first q (and o) row
    const uint row0 = b * BQ;                              // the block's first row in the batch
    const uint i_last = min(row0 + BQ, p.n_q) - 1;
    const uint n_block = p.causal != 0 ? min(p.q_pos0 + i_last + 1, p.n_kv) : p.n_kv;
    const float neg_inf = -1.0 / 0.0;

    // The block's q rows as f16 (zero past n_q).
    for (uint e = t; e < BQ * D4; e += 128) {
        const uint r = e / D4, c = e % D4, i = row0 + r;
        qs[r * ROW + c] = pack4(i < p.n_q ? q[((q0 + i) * p.n_heads + h) * D4 + c] : vec4(0.0));
    }
    // This lane's row of the block and the keys it sees; its half of each tile's keys.
    const uint r = lane / 2, half_ = lane % 2, row = row0 + 16 * sg + r;
    const uint me = 32 * sg + lane;  // red's slot; its pair, me ^ 1, has the same row
    const uint n_vis = row >= p.n_q ? 0 : p.causal != 0 ? min(p.q_pos0 + row + 1, p.n_kv) : p.n_kv;

    vec4 kn[LOADS], vn[LOADS];
    fetch_tile(0, n_block, kv0, kv_stride4, kn, vn);

    float acc[MAX_D4 * 2];  // columns 16f + 8·half_ + c of the row (f < DF, c < 8)
    for (uint c = 0; c < MAX_D4 * 2; ++c) acc[c] = 0.0;
    float m_run = neg_inf, l_part = 0.0;
    const uint sc = sg * 16 * BKV;  // this subgroup's scratch

    for (uint j0 = 0; j0 < n_block; j0 += BKV) {
        for (uint s = 0; s < LOADS; ++s) {
            const uint e = t + 128 * s;
            if (e < BKV * D4) {
                ks[(e / D4) * ROW + e % D4] = pack4(kn[s]);
                vs[(e / D4) * ROW + e % D4] = pack4(vn[s]);
            }
        }
        barrier();
        if (j0 + BKV < n_block) fetch_tile(j0 + BKV, n_block, kv0, kv_stride4, kn, vn);

        // 1. S for the subgroup's 16 rows and the tile's 32 keys.
        for (uint nb = 0; nb < BKV / 16; ++nb) {
            Acc s = acc_zero();
            for (uint kf = 0; kf < DF; ++kf) {
                FragA a;
                FragB bk;
                load_q(a, 16 * sg * ROW + 4 * kf);
                load_k(bk, 16 * nb * ROW + 4 * kf);
                s = mul_add(a, bk, s);
            }
            store_acc(s, sc + 16 * nb, BKV);
        }
        barrier();

        // 2. The softmax: this lane's 16 scores, the row's maximum over the lane pair.
        float sv[16];
        float m = neg_inf;
        for (uint c = 0; c < 16; ++c) {
            const uint key = 16 * half_ + c;
            sv[c] = j0 + key < n_vis ? p.scale * scratch[sc + r * BKV + key] : neg_inf;
            m = max(m, sv[c]);
        }
        red[me] = m;
        barrier();
        const float m_new = max(m_run, max(m, red[me ^ 1]));
        // A row that has seen no key yet keeps m = −inf, its P and its sums zero.
        const bool none = m_new == neg_inf;
        const float alpha = none ? 1.0 : exp(m_run - m_new);  // 0 on the row's first keys
        float sum = 0.0;
        for (uint w = 0; w < 4; ++w) {
            vec4 e4;
            for (uint c = 0; c < 4; ++c) {
                e4[c] = none ? 0.0 : exp(sv[4 * w + c] - m_new);  // 0 for keys the row does not see
                sum += e4[c];
            }
            ks[(16 * sg + r) * PROW + 4 * half_ + w] = pack4(e4);  // K is no longer read
        }
        l_part = l_part * alpha + sum;
        for (uint c = 0; c < 8 * DF; ++c) acc[c] *= alpha;
        m_run = m_new;
        barrier();

        // 3. O += P·V, two fragments of the output's columns at a time (the scratch holds two).
        for (uint f0 = 0; f0 < DF; f0 += 2) {
            const uint nf = min(2, DF - f0);
            for (uint i = 0; i < nf; ++i) {
                Acc pv = acc_zero();
                for (uint kf = 0; kf < BKV / 16; ++kf) {
                    FragA a;
                    FragB bv;
                    load_p(a, 16 * sg * PROW + 4 * kf);
                    load_v(bv, 16 * kf * ROW + 4 * (f0 + i));
                    pv = mul_add(a, bv, pv);
                }
                store_acc(pv, sc + 256 * i, 16);
            }
            barrier();
            for (uint i = 0; i < nf; ++i)
                for (uint c = 0; c < 8; ++c) acc[8 * (f0 + i) + c] += scratch[sc + 256 * i + r * 16 + 8 * half_ + c];
            barrier();
        }
    }

    // A row's sum is its lane pair's.
    red[me] = l_part;
    barrier();
    if (row >= p.n_q) return;
    const float l = l_part + red[me ^ 1];
    const float inv = l > 0.0 ? 1.0 / l : 0.0;  // a row that sees no key (n_kv = 0) gets zeros
    const uint ob = ((q0 + row) * p.n_heads + h) * D4;
    for (uint f = 0; f < DF; ++f)
        for (uint c4 = 0; c4 < 2; ++c4) {
            const uint c = 8 * f + 4 * c4;
            o[ob + 4 * f + 2 * half_ + c4] = vec4(acc[c], acc[c + 1], acc[c + 2], acc[c + 3]) * inv;
        }
}
