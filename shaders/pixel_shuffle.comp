#version 450
// Idefics3 / SmolVLM pixel shuffle (space-to-depth; core/ops.h pixel_shuffle, MODELS.md §3.5)
// of n_tiles tiles at once: x [n_tiles][side²][dim] -> y [n_tiles][G²][dim·s²], G = side/s:
//   y[t][R·G + C][dh·(s·dim) + dw·dim + e] = x[t][(s·R + dh)·side + (s·C + dw)][e]
// One invocation per output float.
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) writeonly buffer YBuf { float y[]; };

layout(push_constant) uniform Push {  // mirrors PixelShufflePush in core/vk_ops_vision.cpp
    uint n_tiles, side, dim, s;
} p;

void main() {
    const uint idx = linear_invocation(WG);
    const uint tile = p.side * p.side * p.dim;
    if (idx >= p.n_tiles * tile) return;
    const uint t = idx / tile, rem = idx % tile;
    const uint width = p.dim * p.s * p.s, G = p.side / p.s;
    const uint row = rem / width, col = rem % width;
    const uint dh = col / (p.s * p.dim), dw = (col / p.dim) % p.s, e = col % p.dim;
    const uint R = row / G, C = row % G;
    y[idx] = x[t * tile + ((p.s * R + dh) * p.side + (p.s * C + dw)) * p.dim + e];
}
