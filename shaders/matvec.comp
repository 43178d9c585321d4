#version 450
// y[m][n] = Σ_k x[m][k] · W[n][k] for a few activation rows (decode): M ≤ MAX_M.
// W: W_TYPE w[N rows of K values]; x [M][K]; y [M][N] (at y_offset, through the fused epilogue
// of matmul_epilogue.glsl: bias, activation, residual; or GLU). K a multiple of W_BLOCK.
//
// Decode is bound by reading W once, so the layout is chosen for wide, coalesced weight loads:
// - A workgroup of WG invocations computes WG / ROW_THREADS output columns n (weight rows); the
//   ROW_THREADS invocations of a row (one subgroup where the host passes the device's subgroup
//   size and the pipeline gets it) stride over the row in runs of 4 consecutive values, so
//   neighbouring invocations read neighbouring words and a subgroup reads a contiguous span.
//   One row per workgroup (the old layout) left most of a 128-wide group idle on K = 960 rows
//   and made N workgroups of them; this makes N / (WG / ROW_THREADS).
// - w_vec4 (weights.glsl) decodes the 4 values with one 8/16-byte load for F16/BF16/F32 and one
//   scale read per run for the quantized types; x is read as vec4 (L1-resident: M·K floats).
// - When the row's invocations are exactly one subgroup, subgroupAdd finishes the row with no
//   shared memory and no barrier; otherwise (portable variant, or a device whose pipeline
//   subgroup is not ROW_THREADS wide) a shared-memory tree reduces each row's slice.
// Float weights with K not a multiple of 4 (test shapes like 13, 127) take a scalar w_at loop.
// Each weight value is read once per workgroup and used for all M rows.
#include "quant.glsl"
#include "common.glsl"
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_basic : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
// Invocations per output row: a power of two dividing WG (core/vk_ops.cpp: the subgroup size).
layout(constant_id = 5) const uint ROW_THREADS = 32;
const uint MAX_M = 8;

layout(binding = 0) readonly buffer WBuf { W_TYPE w[]; };
// The same weights as words, for w_vec4's wide loads (aliased bindings are valid SPIR-V).
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
layout(constant_id = 1) const uint HAS_BIAS = 0;
layout(constant_id = 2) const uint ACT = 0;
layout(constant_id = 3) const uint ACCUMULATE = 0;
// GLU = 1: W holds 2N rows (gate rows, then up rows) and y[m][n] = silu(x·W[n]) · x·W[n + N].
layout(constant_id = 4) const uint GLU = 0;

#include "weights.glsl"
#include "matmul_epilogue.glsl"

shared float partial[MAX_M][WG];
shared float partial2[GLU != 0 ? MAX_M : 1][WG];  // the up sums of GLU

// acc[m] += this invocation's share of x[m] · W[row], `lane` of ROW_THREADS. The m loops run to
// the constant MAX_M so that they unroll and acc stays in registers.
void dot_row(uint row, uint lane, inout float acc[MAX_M]) {
    const uint K = p.K;
    if (K % 4u == 0u) {  // always for the quantized types (W_BLOCK ≥ 32)
        for (uint k = 4u * lane; k < K; k += 4u * ROW_THREADS) {
            const vec4 wv = w_vec4(row, k, K);
            for (uint m = 0; m < MAX_M; ++m)
                if (m < p.M) acc[m] += dot(wv, x4[(m * K + k) / 4u]);
        }
    } else {
        for (uint k = lane; k < K; k += ROW_THREADS) {
            const float wv = w_at(row, k, K);
            for (uint m = 0; m < MAX_M; ++m)
                if (m < p.M) acc[m] += wv * x[m * K + k];
        }
    }
}


void main() {
    const uint t = gl_LocalInvocationID.x;
    // Which row of the workgroup (slice) and which invocation of it (lane).
#ifdef USE_SUBGROUP
    const bool row_is_subgroup = gl_SubgroupSize == ROW_THREADS;  // uniform
    const uint slice = row_is_subgroup ? gl_SubgroupID : t / ROW_THREADS;
    const uint lane = row_is_subgroup ? gl_SubgroupInvocationID : t % ROW_THREADS;
#else
    const bool row_is_subgroup = false;
    const uint slice = t / ROW_THREADS, lane = t % ROW_THREADS;
#endif
    const uint n = linear_group() * (WG / ROW_THREADS) + slice;
    const bool in_range = n < p.N;  // the last workgroup's spare rows still join the barriers
    float acc[MAX_M], acc2[MAX_M];
    for (uint m = 0; m < MAX_M; ++m) acc[m] = acc2[m] = 0.0;
    if (in_range) {
        dot_row(n, lane, acc);
        if (GLU != 0) dot_row(n + p.N, lane, acc2);
    }
#ifdef USE_SUBGROUP
    if (row_is_subgroup) {
        for (uint m = 0; m < MAX_M; ++m) {
            if (m >= p.M) break;
            const float s = subgroupAdd(acc[m]);
            if (GLU != 0) {
                const float s2 = subgroupAdd(acc2[m]);
                if (in_range && lane == 0u) store_glu(m, n, s, s2);
            } else if (in_range && lane == 0u) {
                store_output(m, n, s);
            }
        }
        return;
    }
#endif
    // Shared-memory tree over each row's ROW_THREADS slots (a power of two).
    for (uint m = 0; m < MAX_M; ++m) {
        partial[m][t] = acc[m];
        if (GLU != 0) partial2[m][t] = acc2[m];
    }
    barrier();
    for (uint stride = ROW_THREADS / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride)
            for (uint m = 0; m < MAX_M; ++m) {
                if (m >= p.M) break;
                partial[m][t] += partial[m][t + stride];
                if (GLU != 0) partial2[m][t] += partial2[m][t + stride];
            }
        barrier();
    }
    if (in_range && lane == 0u)
        for (uint m = 0; m < p.M; ++m) {
            if (GLU != 0) store_glu(m, n, partial[m][t], partial2[m][t]);
            else store_output(m, n, partial[m][t]);
        }
}
