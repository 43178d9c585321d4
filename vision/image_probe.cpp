// Header probes for the six accepted formats. Layouts (all offsets in bytes):
//   PNG  signature(8) | IHDR: length(4)=13 "IHDR" width(4, BE) height(4, BE) ...
//   JPEG FFD8 | segments FFxx len(2, BE, includes itself) ... ; SOFn: P(1) Y(2) X(2) ...
//   BMP  "BM" size(4) res(4) offset(4) | DIB header: size(4); 12 = OS/2 (w, h: u16),
//        otherwise w, h: i32 LE, h < 0 = top-down
//   GIF  "GIF8?a" screen width(2, LE) height(2, LE)   (stb_image allocates the screen size)
//   WebP "RIFF" size(4) "WEBP" | chunk "VP8 " / "VP8L" / "VP8X" (see webp_dimensions)
//   TIFF "II*\0" / "MM\0*" IFD0 offset(4) | IFD: count(2), entries of 12 bytes
#include "vision/image_probe.h"

#include <cstring>

#include "core/error.h"

namespace glimpse::image_probe {

namespace {

uint32_t be16(const uint8_t* p) { return uint32_t(p[0]) << 8 | p[1]; }
uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
uint32_t le16(const uint8_t* p) { return uint32_t(p[1]) << 8 | p[0]; }
uint32_t le24(const uint8_t* p) { return uint32_t(p[2]) << 16 | uint32_t(p[1]) << 8 | p[0]; }
uint32_t le32(const uint8_t* p) { return uint32_t(p[3]) << 24 | uint32_t(p[2]) << 16 | uint32_t(p[1]) << 8 | p[0]; }

[[noreturn]] void corrupt(Format f, const std::string& name) {
    throw input_error(name, std::string("truncated or corrupt ") + format_name(f));
}

bool is_sof(uint8_t m) { return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC; }

// Offset of the next marker byte (the xx of FFxx) at or after `pos`, skipping fill bytes;
// `size` when there is none.
size_t next_marker(const uint8_t* d, size_t size, size_t pos) {
    while (pos < size && d[pos] != 0xFF) ++pos;  // garbage between segments: tolerated as libjpeg does
    while (pos < size && d[pos] == 0xFF) ++pos;
    return pos;
}

Dimensions jpeg_dimensions(const uint8_t* d, size_t size, const std::string& name) {
    size_t pos = 2;
    while (true) {
        pos = next_marker(d, size, pos);
        if (pos >= size) corrupt(Format::Jpeg, name);
        const uint8_t m = d[pos++];
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // no length field
        if (m == 0xD9 || m == 0xDA || pos + 2 > size) corrupt(Format::Jpeg, name);  // EOI/SOS before SOF
        const size_t len = be16(d + pos);
        if (len < 2 || pos + len > size) corrupt(Format::Jpeg, name);
        if (is_sof(m)) {
            if (len < 7) corrupt(Format::Jpeg, name);
            Dimensions dim{be16(d + pos + 5), be16(d + pos + 3)};
            if (dim.width == 0 || dim.height == 0) corrupt(Format::Jpeg, name);
            return dim;
        }
        pos += len;
    }
}

Dimensions bmp_dimensions(const uint8_t* d, size_t size, const std::string& name) {
    if (size < 26) corrupt(Format::Bmp, name);
    const uint32_t dib = le32(d + 14);
    Dimensions dim;
    if (dib == 12) {
        dim = {le16(d + 18), le16(d + 20)};
    } else {
        if (dib < 40) corrupt(Format::Bmp, name);
        dim.width = int32_t(le32(d + 18));
        dim.height = int32_t(le32(d + 22));
        if (dim.height < 0) dim.height = -dim.height;  // top-down; int64, so INT32_MIN is fine
    }
    if (dim.width <= 0 || dim.height <= 0) corrupt(Format::Bmp, name);
    return dim;
}

// RIFF chunks: fourcc(4) size(4, LE) payload, padded to even. Returns the payload offset of
// the first chunk with `id`, or 0.
size_t riff_find(const uint8_t* d, size_t size, const char* id, size_t* payload_size) {
    size_t pos = 12;
    while (pos + 8 <= size) {
        const size_t len = le32(d + pos + 4);
        if (std::memcmp(d + pos, id, 4) == 0) {
            *payload_size = len <= size - pos - 8 ? len : size - pos - 8;
            return pos + 8;
        }
        if (len > size - pos - 8) return 0;
        pos += 8 + len + (len & 1);
    }
    return 0;
}

Dimensions webp_dimensions(const uint8_t* d, size_t size, const std::string& name) {
    if (size < 30) corrupt(Format::Webp, name);
    const uint8_t* c = d + 12;  // first chunk
    const uint8_t* p = c + 8;   // its payload
    Dimensions dim;
    if (std::memcmp(c, "VP8 ", 4) == 0) {
        // frame tag(3) start code 9D 01 2A, then 14-bit width and height (2 scale bits above).
        if (p[3] != 0x9D || p[4] != 0x01 || p[5] != 0x2A) corrupt(Format::Webp, name);
        dim = {le16(p + 6) & 0x3FFF, le16(p + 8) & 0x3FFF};
    } else if (std::memcmp(c, "VP8L", 4) == 0) {
        // signature 0x2F, then width-1 (14 bits) and height-1 (14 bits), LSB first.
        if (p[0] != 0x2F) corrupt(Format::Webp, name);
        const uint32_t bits = le32(p + 1);
        dim = {(bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1};
    } else if (std::memcmp(c, "VP8X", 4) == 0) {
        // flags(1) reserved(3) canvas width-1 (24 bits) canvas height-1 (24 bits).
        dim = {int64_t(le24(p + 4)) + 1, int64_t(le24(p + 7)) + 1};
    } else {
        corrupt(Format::Webp, name);
    }
    if (dim.width == 0 || dim.height == 0) corrupt(Format::Webp, name);
    return dim;
}

// A bounds-checked view of a TIFF structure in either byte order.
struct TiffReader {
    const uint8_t* d;
    size_t size;
    bool le;
    bool ok(size_t off, size_t n) const { return off <= size && n <= size - off; }
    uint32_t u16(size_t off) const { return le ? le16(d + off) : be16(d + off); }
    uint32_t u32(size_t off) const { return le ? le32(d + off) : be32(d + off); }
};

bool tiff_open(const uint8_t* d, size_t size, TiffReader* r, size_t* ifd0) {
    if (size < 8) return false;
    if (std::memcmp(d, "II*\0", 4) == 0) *r = {d, size, true};
    else if (std::memcmp(d, "MM\0*", 4) == 0) *r = {d, size, false};
    else return false;
    *ifd0 = r->u32(4);
    return r->ok(*ifd0, 2);
}

// Value of a SHORT or LONG tag with count 1 in IFD0, or -1.
int64_t tiff_tag(const TiffReader& r, size_t ifd, uint32_t tag) {
    const size_t n = r.u16(ifd);
    for (size_t i = 0; i < n; ++i) {
        const size_t e = ifd + 2 + 12 * i;
        if (!r.ok(e, 12)) return -1;
        if (r.u16(e) != tag) continue;
        const uint32_t type = r.u16(e + 2);
        if (r.u32(e + 4) != 1) return -1;
        if (type == 3) return r.u16(e + 8);
        if (type == 4) return r.u32(e + 8);
        return -1;
    }
    return -1;
}

Dimensions tiff_dimensions(const uint8_t* d, size_t size, const std::string& name) {
    TiffReader r{};
    size_t ifd = 0;
    if (!tiff_open(d, size, &r, &ifd)) corrupt(Format::Tiff, name);
    const Dimensions dim{tiff_tag(r, ifd, 256), tiff_tag(r, ifd, 257)};
    if (dim.width <= 0 || dim.height <= 0) corrupt(Format::Tiff, name);
    return dim;
}

int valid_orientation(int64_t v) { return v >= 1 && v <= 8 ? int(v) : 1; }

int jpeg_orientation(const uint8_t* d, size_t size) {
    size_t pos = 2;
    while (true) {
        pos = next_marker(d, size, pos);
        if (pos >= size) return 1;
        const uint8_t m = d[pos++];
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;
        if (m == 0xD9 || m == 0xDA || pos + 2 > size) return 1;  // metadata comes before the scan
        const size_t len = be16(d + pos);
        if (len < 2 || pos + len > size) return 1;
        if (m == 0xE1 && len >= 8 && std::memcmp(d + pos + 2, "Exif\0\0", 6) == 0)
            return tiff_orientation(d + pos + 8, len - 8);
        pos += len;
    }
}

int png_orientation(const uint8_t* d, size_t size) {
    int orientation = 1;
    walk_png_chunks(d, size, [&](const PngChunk& c) {
        if (std::memcmp(c.type, "eXIf", 4) != 0) return true;
        orientation = tiff_orientation(c.data, c.length);
        return false;
    });
    return orientation;
}

int webp_orientation(const uint8_t* d, size_t size) {
    size_t len = 0;
    const size_t at = riff_find(d, size, "EXIF", &len);
    if (at == 0) return 1;
    const uint8_t* p = d + at;
    if (len >= 6 && std::memcmp(p, "Exif\0\0", 6) == 0) p += 6, len -= 6;  // some writers keep the JPEG prefix
    return tiff_orientation(p, len);
}

}  // namespace

bool walk_png_chunks(const uint8_t* d, size_t size, const std::function<bool(const PngChunk&)>& fn,
                     PngChunk* overrun) {
    for (size_t pos = 8; pos + 12 <= size;) {  // length(4) type(4) data CRC(4)
        const PngChunk c{d + pos + 4, d + pos + 8, be32(d + pos)};
        if (c.length > size - pos - 12) {
            if (overrun) *overrun = c;
            return false;
        }
        if (!fn(c) || std::memcmp(c.type, "IEND", 4) == 0) return true;
        pos += 12 + c.length;
    }
    return true;
}

const char* format_name(Format f) {
    switch (f) {
        case Format::Jpeg: return "JPEG";
        case Format::Png: return "PNG";
        case Format::Bmp: return "BMP";
        case Format::Gif: return "GIF";
        case Format::Webp: return "WebP";
        case Format::Tiff: return "TIFF";
        case Format::Unknown: break;
    }
    return "image";
}

Format sniff(const uint8_t* d, size_t size) {
    auto starts = [&](const char* magic, size_t n) { return size >= n && std::memcmp(d, magic, n) == 0; };
    if (starts("\xFF\xD8\xFF", 3)) return Format::Jpeg;
    if (starts("\x89PNG\r\n\x1A\n", 8)) return Format::Png;
    if (starts("BM", 2)) return Format::Bmp;
    if (starts("GIF87a", 6) || starts("GIF89a", 6)) return Format::Gif;
    if (size >= 12 && starts("RIFF", 4) && std::memcmp(d + 8, "WEBP", 4) == 0) return Format::Webp;
    if (starts("II*\0", 4) || starts("MM\0*", 4)) return Format::Tiff;
    return Format::Unknown;
}

Dimensions dimensions(Format f, const uint8_t* d, size_t size, const std::string& name) {
    switch (f) {
        case Format::Png: {
            if (size < 24 || be32(d + 8) != 13 || std::memcmp(d + 12, "IHDR", 4) != 0) corrupt(f, name);
            const Dimensions dim{be32(d + 16), be32(d + 20)};
            if (dim.width == 0 || dim.height == 0) corrupt(f, name);
            return dim;
        }
        case Format::Jpeg: return jpeg_dimensions(d, size, name);
        case Format::Bmp: return bmp_dimensions(d, size, name);
        case Format::Gif: {
            if (size < 10) corrupt(f, name);
            const Dimensions dim{le16(d + 6), le16(d + 8)};
            if (dim.width == 0 || dim.height == 0) corrupt(f, name);
            return dim;
        }
        case Format::Webp: return webp_dimensions(d, size, name);
        case Format::Tiff: return tiff_dimensions(d, size, name);
        case Format::Unknown: break;
    }
    throw input_error(name, "not an image (unknown format)");
}

bool jpeg_is_complete(const uint8_t* d, size_t size) {
    size_t pos = 2;
    while (true) {
        pos = next_marker(d, size, pos);
        if (pos >= size) return false;
        const uint8_t m = d[pos++];
        if (m == 0xD9) return true;
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;
        if (pos + 2 > size) return false;
        const size_t len = be16(d + pos);
        if (len < 2 || pos + len > size) return false;
        pos += len;
        if (m != 0xDA) continue;
        // Entropy-coded data: FF 00 is a stuffed byte and FF D0..D7 a restart marker; any
        // other FFxx ends the scan.
        while (true) {
            while (pos < size && d[pos] != 0xFF) ++pos;
            if (pos + 1 >= size) return false;
            const uint8_t n = d[pos + 1];
            if (n == 0x00 || (n >= 0xD0 && n <= 0xD7) || n == 0xFF) {
                pos += n == 0xFF ? 1 : 2;
                continue;
            }
            break;  // the marker after the scan; the outer loop reads it
        }
    }
}

int tiff_orientation(const uint8_t* tiff, size_t size) {
    TiffReader r{};
    size_t ifd = 0;
    if (!tiff_open(tiff, size, &r, &ifd)) return 1;
    return valid_orientation(tiff_tag(r, ifd, 0x0112));
}

int exif_orientation(Format f, const uint8_t* d, size_t size) {
    switch (f) {
        case Format::Jpeg: return jpeg_orientation(d, size);
        case Format::Png: return png_orientation(d, size);
        case Format::Webp: return webp_orientation(d, size);
        default: return 1;
    }
}

}  // namespace glimpse::image_probe
