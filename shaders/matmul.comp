#version 450
// y[m][n] = Σ_k x[m][k] · W[n][k] for many activation rows (prefill, ViT): shared-memory
// tiles. A workgroup of 16×16 invocations computes a BM×BN tile of y (BM = 16·TM, BN = 16·TN),
// each invocation TM×TN outputs; K is walked in steps of BK, staging x[BM][BK] and the
// dequantized W[BN][BK] in shared memory. Edges (M, N, K not multiples of the tile) are
// zero-filled, so any shape works. W: W_TYPE w[N rows of K]; x [M][K]; y [M][N] (at y_offset,
// through the fused epilogue of matmul_epilogue.glsl: bias, activation, residual; or GLU).
#include "quant.glsl"
#include "common.glsl"

layout(local_size_x = 16, local_size_y = 16) in;
layout(constant_id = 0) const uint TM = 4;
layout(constant_id = 1) const uint TN = 4;
layout(constant_id = 2) const uint BK = 16;
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

// +1 column of padding so that invocations reading down a column hit different banks.
shared float xs[BM * (BK + 1)];
shared float ws[BN * (BK + 1)];
shared float ws2[GLU != 0 ? BN * (BK + 1) : 1];  // the up rows of GLU

void main() {
    const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    const uint tid = ty * 16 + tx;
    const uint n0 = gl_WorkGroupID.x * BN, m0 = gl_WorkGroupID.y * BM;
    float acc[TM][TN], acc2[TM][TN];
    for (uint i = 0; i < TM; ++i)
        for (uint j = 0; j < TN; ++j) acc[i][j] = acc2[i][j] = 0.0;

    for (uint k0 = 0; k0 < p.K; k0 += BK) {
        for (uint e = tid; e < BM * BK; e += 256) {
            const uint r = e / BK, c = e % BK;
            const uint m = m0 + r, k = k0 + c;
            xs[r * (BK + 1) + c] = (m < p.M && k < p.K) ? x[m * p.K + k] : 0.0;
        }
        for (uint e = tid; e < BN * BK; e += 256) {
            const uint r = e / BK, c = e % BK;
            const uint n = n0 + r, k = k0 + c;
            ws[r * (BK + 1) + c] = (n < p.N && k < p.K) ? w_at(n, k, p.K) : 0.0;
            if (GLU != 0) ws2[r * (BK + 1) + c] = (n < p.N && k < p.K) ? w_at(n + p.N, k, p.K) : 0.0;
        }
        barrier();
        for (uint c = 0; c < BK; ++c) {
            float xr[TM], wr[TN];
            for (uint i = 0; i < TM; ++i) xr[i] = xs[(ty + 16 * i) * (BK + 1) + c];
            for (uint j = 0; j < TN; ++j) wr[j] = ws[(tx + 16 * j) * (BK + 1) + c];
            for (uint i = 0; i < TM; ++i)
                for (uint j = 0; j < TN; ++j) acc[i][j] += xr[i] * wr[j];
            if (GLU != 0) {
                for (uint j = 0; j < TN; ++j) wr[j] = ws2[(tx + 16 * j) * (BK + 1) + c];
                for (uint i = 0; i < TM; ++i)
                    for (uint j = 0; j < TN; ++j) acc2[i][j] += xr[i] * wr[j];
            }
        }
        barrier();
    }
    for (uint i = 0; i < TM; ++i) {
        const uint m = m0 + ty + 16 * i;
        if (m >= p.M) continue;
        for (uint j = 0; j < TN; ++j) {
            const uint n = n0 + tx + 16 * j;
            if (n >= p.N) continue;
            if (GLU != 0) store_glu(m, n, acc[i][j], acc2[i][j]);
            else store_output(m, n, acc[i][j]);
        }
    }
}
