#version 450
// x, y [rows][n]; weight [n] (has_weight = 0: w = 1). One workgroup per row:
// y = x / sqrt(mean(x²) + eps) · w. Sum of squares reduced in shared memory (float; the CPU
// reference sums in double, hence the test tolerance).
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) readonly buffer WBuf { float weight[]; };
layout(binding = 2) writeonly buffer YBuf { float y[]; };

layout(push_constant) uniform Push {  // mirrors NormPush in core/vk_ops.cpp
    uint rows, n, has_weight, has_bias;
    float eps;
} p;

shared float red[WG];

void main() {
    const uint row = linear_group();
    if (row >= p.rows) return;
    const uint t = gl_LocalInvocationID.x, base = row * p.n;
    float s = 0.0;
    for (uint i = t; i < p.n; i += WG) s += x[base + i] * x[base + i];
    red[t] = s;
    barrier();
    for (uint stride = WG / 2; stride > 0; stride /= 2) {
        if (t < stride) red[t] += red[t + stride];
        barrier();
    }
    const float inv = 1.0 / sqrt(red[0] / float(p.n) + p.eps);
    for (uint i = t; i < p.n; i += WG) {
        const float v = x[base + i] * inv;
        y[base + i] = p.has_weight != 0 ? v * weight[i] : v;
    }
}
