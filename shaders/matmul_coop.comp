#version 450
// y[m][n] = Σ_k x[m][k] · W[n][k] on tensor cores: VK_NV_cooperative_matrix's 16×16×16
// products of f16 matrices summed in f32 (GL_NV_cooperative_matrix: fcoopmatNV, coopMatLoadNV,
// coopMatMulAddNV, coopMatStoreNV). Built twice: as such (ShaderId matmul_coop_<type>), run
// only where the device offers that shape (vk::Context::coop_matmul), and with -DEMULATE
// (matmul_coop_emu_<type>), where the three matrix operations are written out in plain GLSL
// with the same arguments and the same data in shared memory. The emulated kernel runs on any
// device, lavapipe included, so the tests check everything around the tensor-core instructions
// there (staging, f16 rounding, tile and fragment indexing, edges, the epilogue); the
// instructions themselves only where a GPU runs the tests.
//
// A workgroup of 128 invocations, four subgroups of 32 (the host requires subgroup size 32 for
// the real kernel) in a 2×2 grid, computes a BT×BT tile of y (BT = 32·TF): each subgroup a
// square of TF×TF fragments of 16×16. K is walked in steps of BK = 32 (two fragments deep).
// x's rows and W's rows of a step are staged in shared memory as f16 (packHalf2x16), k
// contiguous: as matrix A (M×K) row-major, and W's rows as matrix B (K×N) column-major. The
// next step's values are read into registers during this one's products. Every weight type
// goes through w_vec4 (weights.glsl), so K must be a multiple of 4 (the host checks it) and
// the edges (M, N, K past the tile) are zero-filled. The sums leave through a 16×16 float
// scratch a subgroup, fragment by fragment, into the epilogue of matmul_epilogue.glsl (bias,
// activation, residual, y_offset; or GLU: W's up rows n + N staged and summed beside the gate
// rows n, silu(gate)·up stored; 64×64 tiles only, the host sees to it).
#ifndef EMULATE
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#endif
#ifdef EMULATE
#extension GL_EXT_control_flow_attributes : require  // coop_ops.glsl's one kept loop
#endif
#include "quant.glsl"
#include "common.glsl"

layout(local_size_x = 128) in;
// Fragments a subgroup computes along each of M and N: 2 (64×64 tiles) or 4 (128×128). The
// default is the largest (Mesa 22.3's lavapipe may size arrays by the default; matmul.comp).
layout(constant_id = 0) const uint TF = 4;
const uint BT = 32 * TF;  // the workgroup's tile of y, square
const uint BK = 32;       // k a step
// A staged row: BK halves and 8 of padding, as uvec2 words (4 halves each): rows 80 bytes
// apart, so the 16 rows of a fragment start on different banks.
const uint SROW = (BK + 8) / 4;

layout(binding = 0) readonly buffer WBuf { W_TYPE w[]; };
#if defined(W_F32)
layout(binding = 0) readonly buffer WVec { vec4 w4[]; };
#define W_VEC4_ALIAS
#elif defined(W_F16) || defined(W_BF16)
layout(binding = 0) readonly buffer WVec { uvec2 w4[]; };
#define W_VEC4_ALIAS
#endif
layout(binding = 1) readonly buffer XVec { vec4 x4[]; };
layout(binding = 2) buffer YBuf { float y[]; };  // read too when accumulating
layout(binding = 3) readonly buffer BiasBuf { float bias[]; };

layout(push_constant) uniform Push {  // mirrors MatmulPush in core/vk_ops.cpp
    uint M, N, K;
    uint y_offset;
} p;
layout(constant_id = 3) const uint HAS_BIAS = 0;
layout(constant_id = 4) const uint ACT = 0;
layout(constant_id = 5) const uint ACCUMULATE = 0;
layout(constant_id = 6) const uint GLU = 0;

#include "weights.glsl"
#include "matmul_epilogue.glsl"

shared uvec2 xs[BT * SROW];  // A: x's rows m0 .. m0+BT−1, k0 .. k0+BK−1
shared uvec2 ws[BT * SROW];  // B: W's rows n0 .. n0+BT−1, the same k
shared uvec2 ws2[GLU != 0 ? BT * SROW : 1];  // GLU's up rows n0 + N .., the same k
shared float scratch[4 * 256];  // a 16×16 fragment of sums per subgroup, row-major

// ---- the cooperative-matrix operations (coop_ops.glsl) and this kernel's fragment loads -----
// Locations (`at`, `stride`) are in uvec2 words of xs/ws, as coopMatLoadNV counts them for a
// uvec2 array.
#ifdef EMULATE
// A and B stay in shared memory: a fragment is its location there.
#define FragA uint
#define FragB uint
const uint IN_WS2 = 0x80000000u;  // a B fragment in ws2 rather than ws
// Element (r, k) of a 16-long-k fragment stored k-contiguous from `at`: A row-major (r = row),
// B column-major (r = column); either way row r starts r·SROW words on.
float frag_at(bool is_a, uint at, uint r, uint k) {
    const uint i = (at & ~IN_WS2) + r * SROW + k / 4;
    const uvec2 u = is_a ? xs[i] : (at & IN_WS2) != 0 ? ws2[i] : ws[i];
    return half_of(u, k % 4);
}
float frag_a_at(FragA a, uint r, uint k) { return frag_at(true, a, r, k); }
float frag_b_at(FragB b, uint c, uint k) { return frag_at(false, b, c, k); }
#endif
#include "coop_ops.glsl"
#ifndef EMULATE
void load_a(out FragA a, uint at) { coopMatLoadNV(a, xs, at, SROW, false); }
void load_b(out FragB b, uint at) { coopMatLoadNV(b, ws, at, SROW, true); }
void load_b2(out FragB b, uint at) { coopMatLoadNV(b, ws2, at, SROW, true); }
#else
void load_a(out FragA a, uint at) { a = at; }
void load_b(out FragB b, uint at) { b = at; }
void load_b2(out FragB b, uint at) { b = at | IN_WS2; }
#endif

// ---- staging ---------------------------------------------------------------------------------
// A step is BT rows × BK values of x and of W: BT·BK/4 groups of four consecutive k each, 2·TF
// groups an invocation. Group g = tid + 128·j is row g / (BK/4), k 4·(g % (BK/4)); 8
// consecutive invocations read one row's 32 values.
const uint LOADS = 2 * TF;
vec4 xn[LOADS], wn[LOADS], wn2[GLU != 0 ? LOADS : 1];

void fetch_step(uint tid, uint m0, uint n0, uint k0) {
    for (uint j = 0; j < LOADS; ++j) {
        const uint g = tid + 128 * j, r = g / (BK / 4), k = k0 + 4 * (g % (BK / 4));
        const uint m = m0 + r, n = n0 + r;
        xn[j] = (m < p.M && k < p.K) ? x4[(m * p.K + k) / 4] : vec4(0.0);
        wn[j] = (n < p.N && k < p.K) ? w_vec4(n, k, p.K) : vec4(0.0);
        if (GLU != 0) wn2[j] = (n < p.N && k < p.K) ? w_vec4(n + p.N, k, p.K) : vec4(0.0);
    }
}

void stage_step(uint tid) {
    for (uint j = 0; j < LOADS; ++j) {
        const uint g = tid + 128 * j, at = (g / (BK / 4)) * SROW + g % (BK / 4);
        xs[at] = pack4(xn[j]);
        ws[at] = pack4(wn[j]);
        if (GLU != 0) ws2[at] = pack4(wn2[j]);
    }
}

void main() {
    const uint tid = gl_LocalInvocationIndex;
    // The epilogue's share of a fragment goes by the lane within the subgroup (staging, by tid,
    // does not care which subgroup an invocation is in).
    const uint sg = subgroup_index(), lane = lane_index();
    const uint n0 = gl_WorkGroupID.x * BT, m0 = gl_WorkGroupID.y * BT;
    // This subgroup's square of the tile: rows sm .. sm+16·TF−1, columns sn .. of the tile.
    const uint sm = (sg / 2) * 16 * TF, sn = (sg % 2) * 16 * TF;

    const uint TF2 = GLU != 0 ? TF : 1;
    Acc acc[TF][TF], acc2[TF2][TF2];
    for (uint i = 0; i < TF; ++i)
        for (uint j = 0; j < TF; ++j) acc[i][j] = acc_zero();
    if (GLU != 0)
        for (uint i = 0; i < TF; ++i)
            for (uint j = 0; j < TF; ++j) acc2[i][j] = acc_zero();

    fetch_step(tid, m0, n0, 0);
    for (uint k0 = 0; k0 < p.K; k0 += BK) {
        stage_step(tid);
        barrier();
        if (k0 + BK < p.K) fetch_step(tid, m0, n0, k0 + BK);
        for (uint kf = 0; kf < BK / 16; ++kf) {
            FragA a[TF];
            for (uint i = 0; i < TF; ++i) load_a(a[i], (sm + 16 * i) * SROW + kf * 4);
            for (uint j = 0; j < TF; ++j) {
                FragB b;
                load_b(b, (sn + 16 * j) * SROW + kf * 4);
                for (uint i = 0; i < TF; ++i) acc[i][j] = mul_add(a[i], b, acc[i][j]);
                if (GLU != 0) {
                    load_b2(b, (sn + 16 * j) * SROW + kf * 4);
                    for (uint i = 0; i < TF; ++i) acc2[i][j] = mul_add(a[i], b, acc2[i][j]);
                }
            }
        }
        barrier();
    }

    // Fragment by fragment through this subgroup's scratch into the epilogue (GLU: the gate
    // sums kept in registers, then the up sums through the scratch). Every subgroup runs the
    // same TF·TF rounds, so the workgroup barriers are reached uniformly.
    for (uint i = 0; i < TF; ++i)
        for (uint j = 0; j < TF; ++j) {
            store_acc(acc[i][j], sg * 256, 16);
            barrier();
            if (GLU == 0) {
                for (uint e = lane; e < 256; e += 32) {
                    const uint m = m0 + sm + 16 * i + e / 16, n = n0 + sn + 16 * j + e % 16;
                    if (m < p.M && n < p.N) store_output(m, n, scratch[sg * 256 + e]);
                }
                barrier();
                continue;
            }
            float gate[8];
            for (uint q = 0; q < 8; ++q) gate[q] = scratch[sg * 256 + lane + 32 * q];
            barrier();
            store_acc(acc2[i][j], sg * 256, 16);
            barrier();
            for (uint q = 0; q < 8; ++q) {
                const uint e = lane + 32 * q;
                const uint m = m0 + sm + 16 * i + e / 16, n = n0 + sn + 16 * j + e % 16;
                if (m < p.M && n < p.N) store_glu(m, n, gate[q], scratch[sg * 256 + e]);
            }
            barrier();
        }
}
