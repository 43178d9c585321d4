// Vulkan versions of the vision ops (core/ops.h patch_embed's im2col, pixel_shuffle), in the
// manner of core/vk_ops.h: each records dispatches into a Recorder; the CPU function of the
// same name is the specification (tests/test_vk_ops.cpp compares them). Size errors are
// std::invalid_argument.
#pragma once

#include <cstdint>

#include "core/vk_buffer.h"
#include "core/vk_pipeline.h"

namespace glimpse::vk {

// cols [n_images][n_patches][C·p·p] = the patch rows of n_images images [C][H][W], one after
// the other from float `image_offset` of `image` (n_patches = (H/p)·(W/p), row-major patches;
// see ops::patch_embed).
void im2col(Recorder& rec, const Buffer& image, int64_t image_offset, int64_t C, int64_t H, int64_t W, int64_t p,
            Buffer& cols, int64_t n_images = 1);

// x [n_tiles][seq][dim] -> y [n_tiles][seq/s²][dim·s²] (seq = side², side % s == 0), per tile
// as ops::pixel_shuffle.
void pixel_shuffle(Recorder& rec, const Buffer& x, int64_t n_tiles, int64_t seq, int64_t dim, int64_t s, Buffer& y);

}  // namespace glimpse::vk
