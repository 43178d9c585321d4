#version 450
// A greedy decoding step's picks, on the device: for each row r (one workgroup a row, r =
// gl_WorkGroupID.x), ids[out_slot + r] = argmax(x[r·n .. r·n + n-1]), ties to the lowest index,
// as the host's argmax() (text/sampler.cpp) picks it, NaN included: a NaN never wins, except at
// index 0, where nothing can beat it. And, when has_position != 0, position[r] += 1: row r's
// sequence moves to its next position, so that the next step needs nothing from the host
// (LlamaVulkanRun::decode_greedy, one sequence; decode_greedy_batch, one a row). Each
// invocation keeps the largest value of its stride (the first of equals), then the workgroup
// reduces the (value, index) pairs in shared memory.
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) writeonly buffer Ids { int ids[]; };
layout(binding = 2) buffer Pos { int position[]; };

layout(push_constant) uniform Push {  // mirrors GreedyPickPush in core/vk_ops.cpp
    uint n, out_slot, has_position;
} p;

shared float best_v[WG];
shared uint best_i[WG];

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint row = gl_WorkGroupID.x, x0 = row * p.n;
    float v = -1.0 / 0.0;  // nothing is picked over index 0 unless it is larger
    uint at = 0;
    for (uint i = t; i < p.n; i += WG) {
        const float xi = x[x0 + i];
        if (xi > v) {
            v = xi;
            at = i;
        }
    }
    best_v[t] = v;
    best_i[t] = at;
    barrier();
    for (uint stride = WG / 2; stride > 0; stride /= 2) {
        if (t < stride) {
            const float o = best_v[t + stride];
            const uint oi = best_i[t + stride];
            if (o > best_v[t] || (o == best_v[t] && oi < best_i[t])) {
                best_v[t] = o;
                best_i[t] = oi;
            }
        }
        barrier();
    }
    if (t == 0) {
        ids[p.out_slot + row] = isnan(x[x0]) ? 0 : int(best_i[0]);
        if (p.has_position != 0) position[row] += 1;
    }
}
