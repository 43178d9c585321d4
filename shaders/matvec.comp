#version 450
// y[m][n] = Σ_k x[m][k] · W[n][k] for a few activation rows (decode): M ≤ MAX_M.
// One workgroup per output column n (weight row): its WG invocations stride over K, each
// keeping M partial sums, which are then reduced — with subgroupAdd and one shared slot per
// subgroup (USE_SUBGROUP), or with a shared-memory tree (portable). Each weight value is read
// once per workgroup and used for all M rows.
// W: W_TYPE w[N rows of K values]; x [M][K]; y [M][N] (at y_offset, through the fused epilogue
// of matmul_epilogue.glsl: bias, activation, residual). K a multiple of W_BLOCK.
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

#include "weights.glsl"
#include "matmul_epilogue.glsl"

shared float partial[MAX_M][WG];

void main() {
    const uint n = linear_group();
    if (n >= p.N) return;  // uniform per workgroup
    const uint t = gl_LocalInvocationID.x;
    float acc[MAX_M];
    for (uint m = 0; m < MAX_M; ++m) acc[m] = 0.0;
    for (uint k = t; k < p.K; k += WG) {
        const float wv = w_at(n, k, p.K);
        for (uint m = 0; m < p.M; ++m) acc[m] += wv * x[m * p.K + k];
    }
#ifdef USE_SUBGROUP
    for (uint m = 0; m < p.M; ++m) acc[m] = subgroupAdd(acc[m]);
    if (subgroupElect())
        for (uint m = 0; m < p.M; ++m) partial[m][gl_SubgroupID] = acc[m];
    barrier();
    if (t == 0) {
        for (uint m = 0; m < p.M; ++m) {
            float s = 0.0;
            for (uint g = 0; g < gl_NumSubgroups; ++g) s += partial[m][g];
            store_output(m, n, s);
        }
    }
#else
    for (uint m = 0; m < p.M; ++m) partial[m][t] = acc[m];
    barrier();
    for (uint stride = WG / 2; stride > 0; stride /= 2) {
        if (t < stride)
            for (uint m = 0; m < p.M; ++m) partial[m][t] += partial[m][t + stride];
        barrier();
    }
    if (t == 0)
        for (uint m = 0; m < p.M; ++m) store_output(m, n, partial[m][0]);
#endif
}
