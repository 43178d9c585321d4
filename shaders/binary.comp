#version 450
// y[i] = a[i] ∘ b[i % nb] for i < n: OP (core/vk_ops.h BinaryOp) 0 add, 1 mul, 2 swiglu
// (silu(a) · b). nb = n for element-wise ops; nb = row length broadcasts b over rows
// (add_row_bias). In place allowed (y may be a).
#include "common.glsl"
#include "activation.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint OP = 0;

layout(binding = 0) readonly buffer ABuf { float a[]; };
layout(binding = 1) readonly buffer BBuf { float b[]; };
layout(binding = 2) writeonly buffer YBuf { float y[]; };

layout(push_constant) uniform Push {  // mirrors BinaryPush in core/vk_ops.cpp
    uint n, nb;
} p;

void main() {
    const uint i = linear_invocation(WG);
    if (i >= p.n) return;
    const float u = a[i], v = b[i % p.nb];
    float r;
    if (OP == 0) r = u + v;
    else if (OP == 1) r = u * v;
    else r = swiglu(u, v);
    y[i] = r;
}
