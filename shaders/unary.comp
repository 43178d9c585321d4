#version 450
// y[i] = f(x[i]) for i < n; f chosen by the specialization constant OP (core/vk_ops.h
// UnaryOp, activation.glsl): 0 gelu_tanh, 1 gelu_erf, 2 quick_gelu, 3 silu, 4 scale
// (y = x · s). In place allowed.
#include "common.glsl"
#include "activation.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint OP = 0;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) writeonly buffer YBuf { float y[]; };

layout(push_constant) uniform Push {  // mirrors UnaryPush in core/vk_ops.cpp
    uint n;
    float s;
} p;

void main() {
    const uint i = linear_invocation(WG);
    if (i >= p.n) return;
    y[i] = activation(OP, x[i], p.s);
}
