#version 450
// x [rows][n] in place: each row becomes exp(x − max) / Σ exp(x − max). Causal (causal = 1):
// row r sees columns [0, r + offset] only (clamped to n); the others become 0, and a row that
// sees none becomes all 0 (core/ops.h softmax_rows_causal). One workgroup per row.
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) buffer XBuf { float x[]; };

layout(push_constant) uniform Push {  // mirrors SoftmaxPush in core/vk_ops.cpp
    uint rows, n, causal;
    int offset;
} p;

shared float red[WG];

void main() {
    const uint row = linear_group();
    if (row >= p.rows) return;
    const uint t = gl_LocalInvocationID.x, base = row * p.n;
    uint visible = p.n;
    if (p.causal != 0) {
        const int last = int(row) + p.offset;  // last visible column; |offset| < 2^31 - rows
        visible = last < 0 ? 0u : min(uint(last) + 1u, p.n);
    }
    float mx = -1.0 / 0.0;
    for (uint i = t; i < visible; i += WG) mx = max(mx, x[base + i]);
    red[t] = mx;
    barrier();
    for (uint stride = WG / 2; stride > 0; stride /= 2) {
        if (t < stride) red[t] = max(red[t], red[t + stride]);
        barrier();
    }
    mx = red[0];
    barrier();
    float s = 0.0;
    for (uint i = t; i < visible; i += WG) {
        const float e = exp(x[base + i] - mx);
        x[base + i] = e;
        s += e;
    }
    red[t] = s;
    barrier();
    for (uint stride = WG / 2; stride > 0; stride /= 2) {
        if (t < stride) red[t] += red[t + stride];
        barrier();
    }
    const float inv = 1.0 / red[0];
    for (uint i = t; i < p.n; i += WG) x[base + i] = i < visible ? x[base + i] * inv : 0.0;
}
