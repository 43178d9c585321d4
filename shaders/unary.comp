#version 450
// y[i] = f(x[i]) for i < n; f chosen by the specialization constant OP (core/vk_ops.h
// UnaryOp): 0 gelu_tanh, 1 gelu_erf, 2 quick_gelu, 3 silu, 4 scale (y = x · s). In place allowed.
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint OP = 0;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) writeonly buffer YBuf { float y[]; };

layout(push_constant) uniform Push {  // mirrors UnaryPush in core/vk_ops.cpp
    uint n;
    float s;
} p;

// erf(x) with |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit, in float).
float erf_approx(float v) {
    const float z = abs(v);
    const float t = 1.0 / (1.0 + 0.5 * z);
    const float r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                    t * (-0.82215223 + t * 0.17087277)))))))));
    return v >= 0.0 ? 1.0 - r : r - 1.0;
}

float sigmoid(float v) { return 1.0 / (1.0 + exp(-v)); }

void main() {
    const uint i = linear_invocation(WG);
    if (i >= p.n) return;
    const float v = x[i];
    float r;
    if (OP == 0) {
        // tanh's argument clamped: tanh(±10) is ±1 in float, and some drivers compute tanh
        // through exp(2a), which overflows for large a.
        const float a = clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -10.0, 10.0);
        r = 0.5 * v * (1.0 + tanh(a));
    } else if (OP == 1) {
        r = 0.5 * v * (1.0 + erf_approx(v * 0.7071067811865476));
    } else if (OP == 2) {
        r = v * sigmoid(1.702 * v);
    } else if (OP == 3) {
        r = v * sigmoid(v);
    } else {
        r = v * p.s;
    }
    y[i] = r;
}
