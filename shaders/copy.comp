#version 450
// y[dst_offset + i] = x[src_offset + i] for i < n (32-bit words, copied as bits: floats or
// int32): picking rows out of a batch (the last row before the logits), and a decode step's
// input rows, positions and logits between host-visible and device buffers. x and y are
// different buffers.
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer XBuf { uint x[]; };
layout(binding = 1) buffer YBuf { uint y[]; };

layout(push_constant) uniform Push {  // mirrors CopyPush in core/vk_ops.cpp
    uint n, src_offset, dst_offset;
} p;

void main() {
    const uint i = linear_invocation(WG);
    if (i >= p.n) return;
    y[p.dst_offset + i] = x[p.src_offset + i];
}
