// Reading what an image file says about itself before any decoder runs: its format (from
// the magic bytes), its dimensions (from the header), whether a JPEG is complete, and its
// EXIF orientation. Everything here reads only the bytes given, with every read bounds-checked,
// and allocates nothing proportional to the image; load_image uses it to refuse oversized or
// truncated files before a decoder allocates the pixel buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace glimpse::image_probe {

enum class Format { Unknown, Jpeg, Png, Bmp, Gif, Webp, Tiff };

const char* format_name(Format f);  // "JPEG", "PNG", ...

Format sniff(const uint8_t* data, size_t size);

// Width and height as the header states them (before EXIF rotation). Throws
// Error(BadInput) "<name>: truncated or corrupt <FORMAT>" when the header cannot be read or
// states a zero dimension.
struct Dimensions {
    int64_t width = 0, height = 0;
};
Dimensions dimensions(Format f, const uint8_t* data, size_t size, const std::string& name);

// A JPEG is complete when its marker structure can be walked from SOI through every scan's
// entropy-coded data to the EOI marker. libjpeg itself pads a truncated file with grey and
// only warns; Pillow refuses such files ("image file is truncated"), and so do we.
bool jpeg_is_complete(const uint8_t* data, size_t size);

// EXIF orientation 1..8 (1 = as stored) from a JPEG APP1 "Exif" segment, a PNG eXIf chunk
// or a WebP EXIF chunk; 1 when absent or unreadable (as Pillow's exif_transpose, which leaves
// an image alone when it cannot read the tag).
int exif_orientation(Format f, const uint8_t* data, size_t size);

// A PNG chunk: its four type bytes (not NUL-terminated), its data and the length it states.
struct PngChunk {
    const uint8_t* type;
    const uint8_t* data;
    size_t length;
};
// Calls fn for each chunk after the signature, in order, through IEND or until fn returns
// false. A chunk whose stated length runs past the end of the data ends the walk unvisited:
// false is returned and it is put in *overrun (if given). The data's end inside a chunk's
// header or CRC ends the walk too, as a truncation (true).
bool walk_png_chunks(const uint8_t* data, size_t size, const std::function<bool(const PngChunk&)>& fn,
                     PngChunk* overrun = nullptr);

// Orientation from a TIFF structure (the payload of an EXIF block): IFD0 tag 0x0112.
int tiff_orientation(const uint8_t* tiff, size_t size);

}  // namespace glimpse::image_probe
