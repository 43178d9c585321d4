#version 450
// Patch rows for the patch-embedding convolution (kernel p, stride p, no padding; core/ops.h
// patch_embed): cols [n_images][n_patches][C·p·p] from n_images images [C][H][W] planar, one
// after the other from float `src_offset` of the input buffer (the tiles of a group):
//   cols[i][r·grid_w + c][(ch·p + kh)·p + kw] = image i [ch][r·p + kh][c·p + kw]
// The convolution is then cols · kernelᵀ with the tiled matmul (kernel ne {C·p·p, D}).
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer Img { float img[]; };
layout(binding = 1) writeonly buffer Cols { float cols[]; };

layout(push_constant) uniform Push {  // mirrors Im2colPush in core/vk_ops_vision.cpp
    uint H, W, C, p, grid_w, n_patches, src_offset, n_images;
} pc;

void main() {
    const uint idx = linear_invocation(WG);
    const uint K = pc.C * pc.p * pc.p;
    if (idx >= pc.n_images * pc.n_patches * K) return;
    const uint image = idx / (pc.n_patches * K), pi = (idx / K) % pc.n_patches, u = idx % K;
    const uint ch = u / (pc.p * pc.p), kh = (u / pc.p) % pc.p, kw = u % pc.p;
    const uint r = pi / pc.grid_w, c = pi % pc.grid_w;
    const uint src = pc.src_offset + image * pc.C * pc.H * pc.W;
    cols[idx] = img[src + (ch * pc.H + r * pc.p + kh) * pc.W + c * pc.p + kw];
}
