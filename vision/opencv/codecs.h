// The OpenCV codecs (BMP, TIFF and CMYK/YCCK JPEG decoding; JPEG, WebP and TIFF encoding) as a
// module of their own, libglimpse_opencv.so, which vision/image.cpp loads (dlopen) the first time
// an image needs it. Linked into glimpse, OpenCV's imgcodecs brought about 140 shared libraries
// with it (GDAL, GDCM, Poppler, ...): loading and relocating them was most of every command's
// start-up (about 130 ms of the 140 `glimpse --help` took), whether or not it touched an image.
//
// The module and glimpse are built together by the same compiler, so the table passes C++
// types; only the entry point, glimpse_opencv_codecs, is extern "C". No OpenCV type or
// exception crosses it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "vision/image.h"

namespace glimpse {

// Alpha over opaque white, rounded to nearest: (a*c + (255-a)*255 + 127) / 255. This equals
// Pillow's alpha_composite onto an opaque white canvas (the Hugging Face convert_to_rgb) for
// every (a, c), checked exhaustively. Shared by the module and vision/image.cpp's decoders.
inline uint8_t over_white(uint32_t c, uint32_t a) { return uint8_t((a * c + (255 - a) * 255 + 127) / 255); }

enum class OpenCvDecode {
    Ok,
    Corrupt,         // OpenCV could not decode it, or not to the probed size, or to > 4 channels
    UnsupportedDepth  // samples other than 8- or 16-bit integers
};

struct OpenCvCodecs {
    // Raised when the table's layout changes: a module of another build is refused.
    static constexpr int kVersion = 1;
    int version = kVersion;
    // Decodes data into out (8-bit RGB, alpha over white, 16-bit samples' high byte) when it is
    // an image of width × height.
    OpenCvDecode (*decode)(const uint8_t* data, size_t size, int width, int height, RgbImage& out);
    // Encodes img as `ext` (jpg/jpeg at quality 95, lossless webp, tif/tiff); false on failure.
    bool (*encode)(const RgbImage& img, const std::string& ext, std::vector<uint8_t>& bytes);
};

}  // namespace glimpse

// The module's entry point.
extern "C" const glimpse::OpenCvCodecs* glimpse_opencv_codecs();
