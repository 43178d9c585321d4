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
// - Where K % 8 == 0 (every quantized type, the real float models) the runs are 8 values and
//   each lane issues the loads of UNROLL runs (2·UNROLL with GLU) before it uses one
//   (dot_rows8). On an H200 the 4-value, one-load-at-a-time loop took ~10 µs per dispatch
//   whether it read F16 or Q8_0 weights: bound by load latency, with ~2 KB in flight per SM.
//   w_vec8 (weights.glsl) reads F16/BF16 runs as one 16-byte word, Q8_0 as four 2-byte words
//   (its 34-byte blocks are 2-byte aligned), Q4_K as one 8-byte word.
// - Otherwise w_vec4 decodes 4 values with one 8/16-byte load for F16/BF16/F32 and one scale
//   read per run for the quantized types. x is read as vec4 (L1-resident: M·K floats).
// - When the row's invocations are exactly one subgroup, subgroupAdd finishes the row with no
//   shared memory and no barrier; otherwise (portable variant, or a device whose pipeline
//   subgroup is not ROW_THREADS wide) a shared-memory tree reduces each row's slice.
// Float weights with K not a multiple of 4 (test shapes like 13, 127) take a scalar w_at loop.
// Each weight value is read once per workgroup and used for all M rows.
// NORM = 1 fuses an RMSNorm into the product: y[m][n] = r[m] · Σ_k x[m][k]·g[k]·W[n][k], with
// r[m] = 1 / sqrt(mean_k x[m][k]² + eps) and g the norm weight. The lanes of a row cover every k
// once, so each sums x² over its share as it goes and the row's reduction yields Σ x² beside the
// dot product: no extra pass over x, no extra barrier, and the rms_norm dispatch before the
// matvec (and its barrier) goes away.
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
layout(binding = 0) readonly buffer WVec8 { uvec4 w8[]; };
#define W_VEC4_ALIAS
#elif defined(W_Q8_0)
layout(binding = 0) readonly buffer WHalf { uint16_t wh[]; };
#elif defined(W_Q4_K)
layout(binding = 0) readonly buffer WVec8 { uvec2 w8[]; };
#endif
#define W_VEC8_ALIAS  // w_vec8 for every type: the wide reads above, two w_vec4 for the rest
layout(binding = 1) readonly buffer XBuf { float x[]; };
layout(binding = 1) readonly buffer XVec { vec4 x4[]; };  // x as vec4, where K % 4 == 0
layout(binding = 2) buffer YBuf { float y[]; };  // read too when accumulating
layout(binding = 3) readonly buffer BiasBuf { float bias[]; };
layout(binding = 4) readonly buffer NormBuf { float g[]; };  // NORM: the norm weight [K]
layout(binding = 4) readonly buffer NormVec { vec4 g4[]; };

layout(push_constant) uniform Push {  // mirrors MatmulPush in core/vk_ops.cpp
    uint M, N, K;
    uint y_offset;  // where y's row 0 starts
    float eps;      // NORM: the RMSNorm epsilon
} p;
// The epilogue (matmul_epilogue.glsl): bias, activation (0 none, else UnaryOp + 1), residual.
layout(constant_id = 1) const uint HAS_BIAS = 0;
layout(constant_id = 2) const uint ACT = 0;
layout(constant_id = 3) const uint ACCUMULATE = 0;
// GLU = 1: W holds 2N rows (gate rows, then up rows) and y[m][n] = silu(x·W[n]) · x·W[n + N].
layout(constant_id = 4) const uint GLU = 0;
layout(constant_id = 6) const uint NORM = 0;

#include "weights.glsl"
#include "matmul_epilogue.glsl"

shared float partial[MAX_M][WG];
shared float partial2[GLU != 0 ? MAX_M : 1][WG];  // the up sums of GLU
shared float partial_sq[NORM != 0 ? MAX_M : 1][WG];  // the Σ x² of NORM

// x[m] from k (4 values), times the norm weight under NORM; its squares go into sq[m].
vec4 x_at4(uint m, uint k, inout float sq[MAX_M]) {
    const vec4 v = x4[(m * p.K + k) / 4u];
    if (NORM == 0) return v;
    sq[m] += dot(v, v);
    return v * g4[k / 4u];
}

// acc[m] += this invocation's share of x[m] · W[row], `lane` of ROW_THREADS. The m loops run to
// the constant MAX_M so that they unroll and acc stays in registers.
// With NORM, sq[m] += this invocation's share of Σ x[m]² (pass a scratch array on the second
// call of a GLU pair: the first one has counted them).
void dot_row(uint row, uint lane, inout float acc[MAX_M], inout float sq[MAX_M]) {
    const uint K = p.K;
    if (K % 4u == 0u) {  // always for the quantized types (W_BLOCK ≥ 32)
        for (uint k = 4u * lane; k < K; k += 4u * ROW_THREADS) {
            const vec4 wv = w_vec4(row, k, K);
            for (uint m = 0; m < MAX_M; ++m)
                if (m < p.M) acc[m] += dot(wv, x_at4(m, k, sq));
        }
    } else {
        for (uint k = lane; k < K; k += ROW_THREADS) {
            const float wv = w_at(row, k, K);
            for (uint m = 0; m < MAX_M; ++m)
                if (m < p.M) {
                    float v = x[m * K + k];
                    if (NORM != 0) {
                        sq[m] += v * v;
                        v *= g[k];
                    }
                    acc[m] += wv * v;
                }
        }
    }
}


// acc[m] += x[m][k..k+8) · (lo, hi): eight weights of a row, for every activation row m (and,
// with GLU, acc2[m] += the same x · (lo2, hi2)); NORM: x times g, its squares into sq[m].
void fma8(vec4 lo, vec4 hi, vec4 lo2, vec4 hi2, uint k, inout float acc[MAX_M], inout float acc2[MAX_M],
          inout float sq[MAX_M]) {
    for (uint m = 0; m < MAX_M; ++m)
        if (m < p.M) {
            const vec4 a = x_at4(m, k, sq), b = x_at4(m, k + 4u, sq);
            acc[m] += dot(lo, a) + dot(hi, b);
            if (GLU != 0) acc2[m] += dot(lo2, a) + dot(hi2, b);
        }
}

// dot_row for K % 8 == 0, of row `row` into acc and, with GLU, of row2 into acc2. Each lane
// takes runs of 8 values (one 16-byte load for F16/BF16) and issues the loads of UNROLL runs
// per row (2·UNROLL with GLU) before it uses any: decode is bound by the latency of the weight
// reads, not their bandwidth, so what counts is the bytes in flight. With 32 lanes a K = 960
// row is one pass of the loop (24 lanes load 4 runs, 8 lanes 3).
const uint UNROLL = 4;
void dot_rows8(uint row, uint row2, uint lane, inout float acc[MAX_M], inout float acc2[MAX_M],
               inout float sq[MAX_M]) {
    const uint K = p.K, STEP = 8u * ROW_THREADS;
    for (uint k0 = 8u * lane; k0 < K; k0 += UNROLL * STEP) {
        vec4 lo[UNROLL], hi[UNROLL], lo2[UNROLL], hi2[UNROLL];
        for (uint u = 0; u < UNROLL; ++u) {
            // Past the row's end the run is clamped to its last 8 values (a valid address, so the
            // load needs no branch) and its product skipped below.
            const uint k = min(k0 + u * STEP, K - 8u);
            w_vec8(row, k, K, lo[u], hi[u]);
            if (GLU != 0) w_vec8(row2, k, K, lo2[u], hi2[u]);
        }
        for (uint u = 0; u < UNROLL; ++u) {
            const uint k = k0 + u * STEP;
            if (k < K) fma8(lo[u], hi[u], lo2[u], hi2[u], k, acc, acc2, sq);
        }
    }
}

// NORM: 1 / RMS of an x row from its Σ x².
float rms_scale(float sum_sq) { return inversesqrt(sum_sq / float(p.K) + p.eps); }

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
    float acc[MAX_M], acc2[MAX_M], sq[MAX_M], sq2[MAX_M];
    for (uint m = 0; m < MAX_M; ++m) acc[m] = acc2[m] = sq[m] = sq2[m] = 0.0;
    if (in_range) {
        if (p.K % 8u == 0u) {
            dot_rows8(n, n + p.N, lane, acc, acc2, sq);
        } else {
            dot_row(n, lane, acc, sq);
            if (GLU != 0) dot_row(n + p.N, lane, acc2, sq2);  // sq2: x² counted once, above
        }
    }
#ifdef USE_SUBGROUP
    if (row_is_subgroup) {
        for (uint m = 0; m < MAX_M; ++m) {
            if (m >= p.M) break;
            const float r = NORM != 0 ? rms_scale(subgroupAdd(sq[m])) : 1.0;
            const float s = r * subgroupAdd(acc[m]);
            if (GLU != 0) {
                const float s2 = r * subgroupAdd(acc2[m]);
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
        if (NORM != 0) partial_sq[m][t] = sq[m];
    }
    barrier();
    for (uint stride = ROW_THREADS / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride)
            for (uint m = 0; m < MAX_M; ++m) {
                if (m >= p.M) break;
                partial[m][t] += partial[m][t + stride];
                if (GLU != 0) partial2[m][t] += partial2[m][t + stride];
                if (NORM != 0) partial_sq[m][t] += partial_sq[m][t + stride];
            }
        barrier();
    }
    if (in_range && lane == 0u)
        for (uint m = 0; m < p.M; ++m) {
            const float r = NORM != 0 ? rms_scale(partial_sq[m][t]) : 1.0;
            if (GLU != 0) store_glu(m, n, r * partial[m][t], r * partial2[m][t]);
            else store_output(m, n, r * partial[m][t]);
        }
}
