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
layout(binding = 1) readonly buffer XBuf { float x[]; };
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
// 32 invocations share one at BK = 8, two at BK = 16.
const uint XROW = BM / 4 + 1;
const uint WROW = BN / 4 + 1;
shared vec4 xs[BK * XROW];
shared vec4 ws[BK * WROW];
shared vec4 ws2[GLU != 0 ? BK * WROW : 1];  // the up rows of GLU

// Values each invocation stages per step: element e = tid + 256·s of the x (W) stage is row
// e / BK, k e % BK, so 16 (or 8) consecutive invocations read consecutive k of one row.
const uint XLOADS = BM * BK / 256;
const uint WLOADS = BN * BK / 256;

float x_at(uint m, uint k) { return (m < p.M && k < p.K) ? x[m * p.K + k] : 0.0; }
float wt_at(uint n, uint k) { return (n < p.N && k < p.K) ? w_at(n, k, p.K) : 0.0; }
float wt2_at(uint n, uint k) { return (n < p.N && k < p.K) ? w_at(n + p.N, k, p.K) : 0.0; }

// The next stage, in this invocation's registers (private, not shared; global so that one
// function fills them, its sizes coming from specialization constants).
float xn[XLOADS], wn[WLOADS], wn2[GLU != 0 ? WLOADS : 1];

// Reads this invocation's share of the stage at k0 of the tile at (m0, n0) into xn, wn, wn2.
void fetch_stage(uint tid, uint m0, uint n0, uint k0) {
    for (uint s = 0; s < XLOADS; ++s) {
        const uint e = tid + 256 * s;
        xn[s] = x_at(m0 + e / BK, k0 + e % BK);
    }
    for (uint s = 0; s < WLOADS; ++s) {
        const uint e = tid + 256 * s;
        wn[s] = wt_at(n0 + e / BK, k0 + e % BK);
        if (GLU != 0) wn2[s] = wt2_at(n0 + e / BK, k0 + e % BK);
    }
}

void main() {
    const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    const uint tid = ty * 16 + tx;
    const uint n0 = gl_WorkGroupID.x * BN, m0 = gl_WorkGroupID.y * BM;
    vec4 acc[TM][TN / 4], acc2[TM][TN / 4];
    for (uint i = 0; i < TM; ++i)
        for (uint j = 0; j < TN / 4; ++j) acc[i][j] = acc2[i][j] = vec4(0.0);

    fetch_stage(tid, m0, n0, 0);

    for (uint k0 = 0; k0 < p.K; k0 += BK) {
        for (uint s = 0; s < XLOADS; ++s) {
            const uint e = tid + 256 * s, r = e / BK, c = e % BK;
            xs[c * XROW + r / 4][r % 4] = xn[s];
        }
        for (uint s = 0; s < WLOADS; ++s) {
            const uint e = tid + 256 * s, r = e / BK, c = e % BK;
            ws[c * WROW + r / 4][r % 4] = wn[s];
            if (GLU != 0) ws2[c * WROW + r / 4][r % 4] = wn2[s];
        }
        barrier();
        const uint k1 = k0 + BK;
        if (k1 < p.K) fetch_stage(tid, m0, n0, k1);
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
