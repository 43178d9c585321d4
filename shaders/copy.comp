#version 450
// y[dst_offset + i] = x[src_offset + i] for i < n (floats): the KV-cache write (a batch's K/V
// rows into their positions of the cache) and picking rows out of a batch (the last row
// before the logits). x and y are different buffers.
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) buffer YBuf { float y[]; };

layout(push_constant) uniform Push {  // mirrors CopyPush in core/vk_ops.cpp
    uint n, src_offset, dst_offset;
} p;

void main() {
    const uint i = linear_invocation(WG);
    if (i >= p.n) return;
    y[p.dst_offset + i] = x[p.src_offset + i];
}
