#version 450
// Patch rows for the patch-embedding convolution (kernel p, stride p, no padding; core/ops.h
// patch_embed): cols [n_patches][C·p·p] from one image [C][H][W] planar that starts at float
// `src_offset` of the input buffer (one tile of a batch):
//   cols[r·grid_w + c][(ch·p + kh)·p + kw] = image[ch][r·p + kh][c·p + kw]
// The convolution is then cols · kernelᵀ with the tiled matmul (kernel ne {C·p·p, D}).
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer Img { float img[]; };
layout(binding = 1) writeonly buffer Cols { float cols[]; };

layout(push_constant) uniform Push {  // mirrors Im2colPush in core/vk_ops_vision.cpp
    uint H, W, C, p, grid_w, n_patches, src_offset;
} pc;

void main() {
    const uint idx = linear_invocation(WG);
    const uint K = pc.C * pc.p * pc.p;
    if (idx >= pc.n_patches * K) return;
    const uint pi = idx / K, u = idx % K;
    const uint ch = u / (pc.p * pc.p), kh = (u / pc.p) % pc.p, kw = u % pc.p;
    const uint r = pi / pc.grid_w, c = pi % pc.grid_w;
    cols[idx] = img[pc.src_offset + (ch * pc.H + r * pc.p + kh) * pc.W + c * pc.p + kw];
}
