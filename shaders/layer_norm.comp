#version 450
// x, y [rows][n]; weight, bias [n] (has_weight/has_bias = 0: 1 / 0). One workgroup per row:
// μ = mean(x), σ² = mean((x − μ)²), y = (x − μ) / sqrt(σ² + eps) · w + b. Two passes over the
// row (mean, then centred squares) as the CPU reference does, so large offsets do not cancel.
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) readonly buffer WBuf { float weight[]; };
layout(binding = 2) readonly buffer BBuf { float bias[]; };
layout(binding = 3) writeonly buffer YBuf { float y[]; };

layout(push_constant) uniform Push {  // mirrors NormPush in core/vk_ops.cpp
    uint rows, n, has_weight, has_bias;
    float eps;
} p;

shared float red[WG];

float workgroup_sum(float v) {
    const uint t = gl_LocalInvocationID.x;
    red[t] = v;
    barrier();
    for (uint stride = WG / 2; stride > 0; stride /= 2) {
        if (t < stride) red[t] += red[t + stride];
        barrier();
    }
    const float s = red[0];
    barrier();  // red[] is reused by the next call
    return s;
}

void main() {
    const uint row = linear_group();
    if (row >= p.rows) return;
    const uint t = gl_LocalInvocationID.x, base = row * p.n;
    float s = 0.0;
    for (uint i = t; i < p.n; i += WG) s += x[base + i];
    const float mean = workgroup_sum(s) / float(p.n);
    float s2 = 0.0;
    for (uint i = t; i < p.n; i += WG) {
        const float d = x[base + i] - mean;
        s2 += d * d;
    }
    const float inv = 1.0 / sqrt(workgroup_sum(s2) / float(p.n) + p.eps);
    for (uint i = t; i < p.n; i += WG) {
        float v = (x[base + i] - mean) * inv;
        if (p.has_weight != 0) v *= weight[i];
        if (p.has_bias != 0) v += bias[i];
        y[base + i] = v;
    }
}
