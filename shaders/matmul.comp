#version 450
// y[m][n] = Σ_k x[m][k] · W[n][k] for many activation rows (prefill, ViT): shared-memory
// tiles with register blocking. A workgroup of 16×16 invocations computes a BM×BN tile of y
// (BM = 16·TM, BN = 16·TN; TM and TN multiples of 4), each invocation TM×TN outputs: rows
// ty·4 .. ty·4+3 of each 64-row band of the tile, columns tx·4 .. tx·4+3 of each 64-column band.
// K is walked in steps of BK. The stage keeps x[BM][BK] and the dequantized W[BN][BK]
// transposed (k-major), so an invocation reads its 4 rows (or columns) at one k as one vec4
// load: TM/4 + TN/4 shared loads feed TM·TN multiply-adds (the earlier kernel read one float
// per multiply-add pair). The next stage's values are read from global memory into registers
// before this stage's arithmetic, so those loads are in flight while it runs. Edges (M, N, K
// not multiples of the tile) are zero-filled, so any shape works. W: W_TYPE w[N rows of K];
// x [M][K]; y [M][N] (at y_offset, through the fused epilogue of matmul_epilogue.glsl: bias,
// activation, residual; or GLU).
#include "quant.glsl"
#include "common.glsl"

layout(local_size_x = 16, local_size_y = 16) in;
// The defaults are the largest values the host passes: Mesa 22.3's lavapipe may size an array
// declared with a specialization constant by the default (attention_tiled.comp).
layout(constant_id = 0) const uint TM = 8;  // rows of y per invocation, a multiple of 4
layout(constant_id = 1) const uint TN = 8;  // columns of y per invocation, a multiple of 4
layout(constant_id = 2) const uint BK = 16; // a multiple of 4
const uint BM = 16 * TM;
const uint BN = 16 * TN;

layout(binding = 0) readonly buffer WBuf { W_TYPE w[]; };
// The same weights as words, for w_vec4's wide loads of the float types (aliased bindings are
// valid SPIR-V; matvec.comp does the same).
#if defined(W_F32)
layout(binding = 0) readonly buffer WVec { vec4 w4[]; };
#define W_VEC4_ALIAS
#elif defined(W_F16) || defined(W_BF16)
layout(binding = 0) readonly buffer WVec { uvec2 w4[]; };
#define W_VEC4_ALIAS
#endif
layout(binding = 1) readonly buffer XBuf { float x[]; };
layout(binding = 1) readonly buffer XVec { vec4 x4[]; };  // x as vec4, where K % 4 == 0
layout(binding = 2) buffer YBuf { float y[]; };  // read too when accumulating
layout(binding = 3) readonly buffer BiasBuf { float bias[]; };

layout(push_constant) uniform Push {  // mirrors MatmulPush in core/vk_ops.cpp
    uint M, N, K;
    uint y_offset;  // where y's row 0 starts
} p;
// The epilogue (matmul_epilogue.glsl): bias, activation (0 none, else UnaryOp + 1), residual.
layout(constant_id = 3) const uint HAS_BIAS = 0;
layout(constant_id = 4) const uint ACT = 0;
layout(constant_id = 5) const uint ACCUMULATE = 0;
// GLU = 1: W holds 2N rows (gate rows, then up rows) and y[m][n] = silu(x·W[n]) · x·W[n + N].
layout(constant_id = 6) const uint GLU = 0;

#include "weights.glsl"
#include "matmul_epilogue.glsl"

// The stage, k-major: xs[k][m] and ws[k][n] as vec4 rows of BM/4 (BN/4) vec4s plus one of
// padding. The padding (4 floats) shifts each k row by 4 banks, so the stores of a stage (BK
// consecutive k of one row of x or W from BK invocations) spread over the banks: no two of
// 32 invocations share one at BK = 8, two at BK = 16. Read in fours (below), 32 invocations
// store k 4q + i of 8 rows (q < 4) at once: two share a bank there too.
const uint XROW = BM / 4 + 1;
const uint WROW = BN / 4 + 1;
shared vec4 xs[BK * XROW];
shared vec4 ws[BK * WROW];
shared vec4 ws2[GLU != 0 ? BK * WROW : 1];  // the up rows of GLU

// Values each invocation stages per step. Where K % 4 == 0 (every quantized type, the real
// models) it reads them four consecutive k at a time: x as one vec4, W through w_vec4 (one
// 16- or 8-byte word for the float types, the block's scale once for the quantized ones);
// group g = tid + 256·j of the x (W) stage is row g / (BK/4), k 4·(g % (BK/4)) .. + 3, so 4
// consecutive invocations read one row's BK values. Otherwise one value at a time: element
// e = tid + 256·s is row e / BK, k e % BK. Value s of the registers below is, with fours,
// value s % 4 of group s / 4.
const uint XLOADS = BM * BK / 256;
const uint WLOADS = BN * BK / 256;
const uint BK4 = BK / 4;

// (row, k) within the stage of value s of this invocation's share.
uvec2 stage_slot(uint tid, uint s, bool fours) {
    if (fours) {
        const uint g = tid + 256 * (s / 4);
        return uvec2(g / BK4, 4 * (g % BK4) + s % 4);
    }
    const uint e = tid + 256 * s;
    return uvec2(e / BK, e % BK);
}

float x_at(uint m, uint k) { return (m < p.M && k < p.K) ? x[m * p.K + k] : 0.0; }
float wt_at(uint n, uint k) { return (n < p.N && k < p.K) ? w_at(n, k, p.K) : 0.0; }
float wt2_at(uint n, uint k) { return (n < p.N && k < p.K) ? w_at(n + p.N, k, p.K) : 0.0; }
// Four values from k (K % 4 == 0, so all four lie inside the row or none does).
vec4 x_at4(uint m, uint k) { return (m < p.M && k < p.K) ? x4[(m * p.K + k) / 4] : vec4(0.0); }
vec4 wt_at4(uint n, uint k) { return (n < p.N && k < p.K) ? w_vec4(n, k, p.K) : vec4(0.0); }
vec4 wt2_at4(uint n, uint k) { return (n < p.N && k < p.K) ? w_vec4(n + p.N, k, p.K) : vec4(0.0); }

// The next stage, in this invocation's registers (private, not shared; global so that one
// function fills them, its sizes coming from specialization constants).
float xn[XLOADS], wn[WLOADS], wn2[GLU != 0 ? WLOADS : 1];

// Reads this invocation's share of the stage at k0 of the tile at (m0, n0) into xn, wn, wn2.
void fetch_stage(uint tid, uint m0, uint n0, uint k0, bool fours) {
    if (fours) {
        for (uint s = 0; s < XLOADS; s += 4) {
            const uvec2 rc = stage_slot(tid, s, true);
            const vec4 v = x_at4(m0 + rc.x, k0 + rc.y);
            for (uint i = 0; i < 4; ++i) xn[s + i] = v[i];
        }
        for (uint s = 0; s < WLOADS; s += 4) {
            const uvec2 rc = stage_slot(tid, s, true);
            const vec4 v = wt_at4(n0 + rc.x, k0 + rc.y);
            for (uint i = 0; i < 4; ++i) wn[s + i] = v[i];
            if (GLU != 0) {
                const vec4 v2 = wt2_at4(n0 + rc.x, k0 + rc.y);
                for (uint i = 0; i < 4; ++i) wn2[s + i] = v2[i];
            }
        }
        return;
    }
    for (uint s = 0; s < XLOADS; ++s) {
        const uvec2 rc = stage_slot(tid, s, false);
        xn[s] = x_at(m0 + rc.x, k0 + rc.y);
    }
    for (uint s = 0; s < WLOADS; ++s) {
        const uvec2 rc = stage_slot(tid, s, false);
        wn[s] = wt_at(n0 + rc.x, k0 + rc.y);
        if (GLU != 0) wn2[s] = wt2_at(n0 + rc.x, k0 + rc.y);
    }
}

void main() {
    const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    const uint tid = ty * 16 + tx;
    const uint n0 = gl_WorkGroupID.x * BN, m0 = gl_WorkGroupID.y * BM;
    vec4 acc[TM][TN / 4], acc2[TM][TN / 4];
    for (uint i = 0; i < TM; ++i)
        for (uint j = 0; j < TN / 4; ++j) acc[i][j] = acc2[i][j] = vec4(0.0);

    // Fours where K allows them and each invocation's share is whole groups (BK = 16: always).
    const bool fours = p.K % 4 == 0 && BK % 4 == 0 && XLOADS % 4 == 0 && WLOADS % 4 == 0;
    fetch_stage(tid, m0, n0, 0, fours);

    for (uint k0 = 0; k0 < p.K; k0 += BK) {
        for (uint s = 0; s < XLOADS; ++s) {
            const uvec2 rc = stage_slot(tid, s, fours);
            xs[rc.y * XROW + rc.x / 4][rc.x % 4] = xn[s];
        }
        for (uint s = 0; s < WLOADS; ++s) {
            const uvec2 rc = stage_slot(tid, s, fours);
            ws[rc.y * WROW + rc.x / 4][rc.x % 4] = wn[s];
            if (GLU != 0) ws2[rc.y * WROW + rc.x / 4][rc.x % 4] = wn2[s];
        }
        barrier();
        const uint k1 = k0 + BK;
        if (k1 < p.K) fetch_stage(tid, m0, n0, k1, fours);
        for (uint c = 0; c < BK; ++c) {
            vec4 xr[TM / 4], wr[TN / 4];
            for (uint i = 0; i < TM / 4; ++i) xr[i] = xs[c * XROW + i * 16 + ty];
            for (uint j = 0; j < TN / 4; ++j) wr[j] = ws[c * WROW + j * 16 + tx];
            for (uint i = 0; i < TM; ++i)
                for (uint j = 0; j < TN / 4; ++j) acc[i][j] += xr[i / 4][i % 4] * wr[j];
            if (GLU != 0) {
                for (uint j = 0; j < TN / 4; ++j) wr[j] = ws2[c * WROW + j * 16 + tx];
                for (uint i = 0; i < TM; ++i)
                    for (uint j = 0; j < TN / 4; ++j) acc2[i][j] += xr[i / 4][i % 4] * wr[j];
            }
        }
        barrier();
    }
    for (uint i = 0; i < TM; ++i) {
        const uint m = m0 + (i / 4) * 64 + ty * 4 + i % 4;
        if (m >= p.M) continue;
        for (uint j = 0; j < TN / 4; ++j)
            for (uint q = 0; q < 4; ++q) {
                const uint n = n0 + j * 64 + tx * 4 + q;
                if (n >= p.N) continue;
                if (GLU != 0) store_glu(m, n, acc[i][j][q], acc2[i][j][q]);
                else store_output(m, n, acc[i][j][q]);
            }
    }
}
