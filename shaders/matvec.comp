#version 450
// y[m][n] = Σ_k x[m][k] · W[n][k] for a few activation rows (decode): M ≤ MAX_M.
// One workgroup per output column n (weight row): its WG invocations stride over K, each
// keeping M partial sums, which are then reduced — with subgroupAdd and one shared slot per
// subgroup (USE_SUBGROUP), or with a shared-memory tree (portable). Each weight value is read
// once per workgroup and used for all M rows.
// W: W_TYPE w[N rows of K values]; x [M][K]; y [M][N] (at y_offset, through the fused epilogue
// of matmul_epilogue.glsl: bias, activation, residual; or GLU). K a multiple of W_BLOCK.
#include "quant.glsl"
#include "common.glsl"
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_basic : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
const uint MAX_M = 8;

layout(binding = 0) readonly buffer WBuf { W_TYPE w[]; };
layout(binding = 1) readonly buffer XBuf { float x[]; };
layout(binding = 2) buffer YBuf { float y[]; };  // read too when accumulating
layout(binding = 3) readonly buffer BiasBuf { float bias[]; };

layout(push_constant) uniform Push {  // mirrors MatmulPush in core/vk_ops.cpp
    uint M, N, K;
    uint y_offset;  // where y's row 0 starts
} p;
// The epilogue (matmul_epilogue.glsl): bias, activation (0 none, else UnaryOp + 1), residual.
layout(constant_id = 1) const uint HAS_BIAS = 0;
layout(constant_id = 2) const uint ACT = 0;
layout(constant_id = 3) const uint ACCUMULATE = 0;
// GLU = 1: W holds 2N rows (gate rows, then up rows) and y[m][n] = silu(x·W[n]) · x·W[n + N].
layout(constant_id = 4) const uint GLU = 0;

#include "weights.glsl"
#include "matmul_epilogue.glsl"

shared float partial[MAX_M][WG];
shared float partial2[GLU != 0 ? MAX_M : 1][WG];  // the up sums of GLU

void main() {
    const uint n = linear_group();
    if (n >= p.N) return;  // uniform per workgroup
    const uint t = gl_LocalInvocationID.x;
    float acc[MAX_M], acc2[MAX_M];
    for (uint m = 0; m < MAX_M; ++m) acc[m] = acc2[m] = 0.0;
    for (uint k = t; k < p.K; k += WG) {
        const float wv = w_at(n, k, p.K);
        for (uint m = 0; m < p.M; ++m) acc[m] += wv * x[m * p.K + k];
        if (GLU != 0) {
            const float wu = w_at(n + p.N, k, p.K);
            for (uint m = 0; m < p.M; ++m) acc2[m] += wu * x[m * p.K + k];
        }
    }
#ifdef USE_SUBGROUP
    for (uint m = 0; m < p.M; ++m) acc[m] = subgroupAdd(acc[m]);
    if (GLU != 0)
        for (uint m = 0; m < p.M; ++m) acc2[m] = subgroupAdd(acc2[m]);
    if (subgroupElect()) {
        for (uint m = 0; m < p.M; ++m) partial[m][gl_SubgroupID] = acc[m];
        if (GLU != 0)
            for (uint m = 0; m < p.M; ++m) partial2[m][gl_SubgroupID] = acc2[m];
    }
    barrier();
    if (t == 0) {
        for (uint m = 0; m < p.M; ++m) {
            float s = 0.0, s2 = 0.0;
            for (uint g = 0; g < gl_NumSubgroups; ++g) s += partial[m][g];
            if (GLU != 0) {
                for (uint g = 0; g < gl_NumSubgroups; ++g) s2 += partial2[m][g];
                store_glu(m, n, s, s2);
            } else {
                store_output(m, n, s);
            }
        }
    }
#else
    for (uint m = 0; m < p.M; ++m) partial[m][t] = acc[m];
    if (GLU != 0)
        for (uint m = 0; m < p.M; ++m) partial2[m][t] = acc2[m];
    barrier();
    for (uint stride = WG / 2; stride > 0; stride /= 2) {
        if (t < stride) {
            for (uint m = 0; m < p.M; ++m) partial[m][t] += partial[m][t + stride];
            if (GLU != 0)
                for (uint m = 0; m < p.M; ++m) partial2[m][t] += partial2[m][t + stride];
        }
        barrier();
    }
    if (t == 0)
        for (uint m = 0; m < p.M; ++m) {
            if (GLU != 0) store_glu(m, n, partial[m][0], partial2[m][0]);
            else store_output(m, n, partial[m][0]);
        }
#endif
}
