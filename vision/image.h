// Image input: every accepted file becomes an 8-bit RGB image, upright (EXIF orientation
// applied), as the Hugging Face pipelines see it after Pillow's open + exif_transpose +
// convert("RGB"), except that alpha is composited over white (docs/IMAGES.md has the rules).
//
// Formats: JPEG, PNG, BMP, WebP, TIFF (OpenCV imgcodecs: libjpeg-turbo, libpng, libwebp,
// libtiff) and GIF, first frame (stb_image). The format is taken from the magic bytes, never
// from the file name; the header's dimensions are checked against ImageLimits before a
// decoder allocates anything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace glimpse {

struct RgbImage {
    int width = 0, height = 0;
    std::vector<uint8_t> pixels;  // [height][width][3], R G B

    RgbImage() = default;
    RgbImage(int w, int h) : width(w), height(h), pixels(size_t(w) * size_t(h) * 3) {}

    bool empty() const { return width == 0 || height == 0; }
    uint8_t* row(int y) { return pixels.data() + size_t(y) * size_t(width) * 3; }
    const uint8_t* row(int y) const { return pixels.data() + size_t(y) * size_t(width) * 3; }
    uint8_t* at(int x, int y) { return row(y) + size_t(x) * 3; }
    const uint8_t* at(int x, int y) const { return row(y) + size_t(x) * 3; }
};

// Refuse images whose header states more than this, before decoding. The defaults admit any
// real photo (16384 px a side, 100 Mpx = 300 MB of RGB) and nothing that would exhaust memory.
struct ImageLimits {
    int64_t max_side = 16384;
    int64_t max_pixels = 100'000'000;
};

// Reads and decodes a file. Errors are Error(BadInput), one line starting with `path`:
// "no such file", "empty file", "not an image (unknown format)", "truncated or corrupt JPEG"
// (PNG, ...), "image is WxH, larger than the N-pixel limit", "image is WxH (P pixels), more
// than the N-pixel limit".
RgbImage load_image(const std::string& path, const ImageLimits& lim = {});

// The same from memory (e.g. base64-decoded bytes from the server); `name` starts errors.
RgbImage decode_image(const uint8_t* data, size_t size, const std::string& name, const ImageLimits& lim = {});

// Lossless (png, bmp: stb_image_write; tiff, webp: OpenCV) or lossy (jpg, quality 95: OpenCV)
// encoding; `ext` is the format's file extension without the dot. Error(Usage) for any other
// extension, and for jpg/webp/tiff in a build without OpenCV (GLIMPSE_OPENCV=OFF).
std::vector<uint8_t> encode_image(const RgbImage& img, const std::string& ext);
// Whether encode_image writes this extension in this build.
bool can_encode_image(const std::string& ext);
void save_image(const RgbImage& img, const std::string& path);  // format from the extension

// EXIF orientation 1..8 applied the way Pillow's ImageOps.exif_transpose does: 2 mirror,
// 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90
// counter-clockwise; 1 (or anything else) returns the image unchanged.
RgbImage apply_orientation(RgbImage img, int orientation);

// Copy of the rectangle [x, x+w) x [y, y+h), which must lie inside the image.
RgbImage crop(const RgbImage& img, int x, int y, int w, int h);

}  // namespace glimpse
