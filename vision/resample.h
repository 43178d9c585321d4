// Pillow-exact resampling of 8-bit RGB images: the same pixels as Pillow 9.4's
// Image.resize(size, filter) (libImaging/Resample.c for the convolution filters, the affine
// nearest-neighbour path for NEAREST), because the Hugging Face image processors that the
// SmolVLM and LLaVA checkpoints were trained with call exactly that.
//
// Convolution filters (Bilinear support 1, Bicubic a = -0.5 support 2, Lanczos a = 3 support
// 3), per axis with in -> out samples:
//   scale = in / out, fs = max(scale, 1), support = filter_support * fs
//   output i: center = (i + 0.5) * scale
//             xmin = max(int(center - support + 0.5), 0), xmax = min(int(center + support + 0.5), in)
//             w[x] = filter((x - center + 0.5) / fs) for x in [xmin, xmax), normalised to sum 1
//   weights in fixed point: round_half_away(w * 2^22); acc = 2^21 + sum(pixel * w);
//   out = clamp(acc >> 22, 0, 255)
// Horizontal pass first into an 8-bit intermediate, then vertical; a pass whose size does not
// change is skipped (a same-size resize is a copy).
#pragma once

#include "vision/image.h"

namespace glimpse {

enum class Resample { Nearest, Bilinear, Bicubic, Lanczos };

const char* resample_name(Resample f);  // "nearest", "bilinear", "bicubic", "lanczos"

// src resized to out_w x out_h. Error(Usage) if src is empty or a size is not positive.
RgbImage resize_pillow(const RgbImage& src, int out_w, int out_h, Resample filter);

// The window [x0, x0+w) x [y0, y0+h) of resize_pillow(src, out_w, out_h, filter), computed
// without making the rest: the same pixels as cropping the full result, at the cost of the
// window (used for resize-then-centre-crop, where the full resize of a very elongated image
// would be large). The window must lie inside out_w x out_h.
RgbImage resize_pillow_window(const RgbImage& src, int out_w, int out_h, int x0, int y0, int w, int h,
                              Resample filter);

}  // namespace glimpse
