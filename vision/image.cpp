// Decoding: probe (format, dimensions, limits) -> decoder -> 8-bit RGB -> EXIF orientation.
//
// Which decoder: the libraries Pillow uses, so pixels match the Hugging Face pipelines. JPEG:
// libjpeg-turbo called directly, with its defaults (the ISLOW IDCT and fancy upsampling, as
// Pillow and OpenCV leave them) and RGB out, so no byte swap on the way (OpenCV's wrapper
// would swap every pixel to BGR and back: half as much time again as the decoding of a
// photo); CMYK/YCCK JPEGs still go through OpenCV. WebP: libwebp called directly, because
// OpenCV's imdecode picks its decoder by sniffing, and a WebP whose bitstream header libwebp
// refuses fell through to the next decoder whose signature matched: a corrupt WebP with
// "DICM" at byte 128 reached GDCM, which aborts the process on an assertion (found by
// fuzz_image). The formats still sent to OpenCV (BMP, TIFF, CMYK JPEG) are claimed by their
// magic bytes alone, by decoders OpenCV tries before GDCM. OpenCV imgcodecs for BMP and TIFF
// (libtiff). stb_image for PNG (lossless,
// so any correct decoder gives Pillow's pixels; stb is silent on bad input where libpng under
// OpenCV prints to stderr) and GIF, which OpenCV 4.6 cannot read. OpenCV is called with
// IMREAD_UNCHANGED so that it neither rotates nor converts: orientation, 16-bit reduction,
// palette and alpha are handled here, by rules stated once (docs/IMAGES.md).
//
// Encoding: stb_image_write for PNG and BMP (the pictures `glimpse inspect` writes), OpenCV
// for JPEG, WebP and TIFF. A build with CMake's GLIMPSE_OPENCV=OFF has neither OpenCV path:
// those formats are then one-line errors.
#include "vision/image.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <jpeglib.h>
#include <webp/decode.h>

#include <cctype>
#include <climits>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <streambuf>
#ifndef GLIMPSE_NO_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

#include "core/error.h"
#include "core/mapped_file.h"
#include "vision/image_probe.h"

namespace glimpse {

namespace {

namespace probe = image_probe;

// Alpha over opaque white, rounded to nearest: (a*c + (255-a)*255 + 127) / 255. This equals
// Pillow's alpha_composite onto an opaque white canvas (the Hugging Face convert_to_rgb) for
// every (a, c), checked exhaustively.
inline uint8_t over_white(uint32_t c, uint32_t a) { return uint8_t((a * c + (255 - a) * 255 + 127) / 255); }

void check_limits(const probe::Dimensions& d, const ImageLimits& lim, const std::string& name) {
    const std::string dims = std::to_string(d.width) + "x" + std::to_string(d.height);
    if (d.width > lim.max_side || d.height > lim.max_side)
        throw input_error(name, "image is " + dims + ", larger than the " + std::to_string(lim.max_side) +
                                    "-pixel limit");
    if (d.width * d.height > lim.max_pixels)
        throw input_error(name, "image is " + dims + " (" + std::to_string(d.width * d.height) +
                                    " pixels), more than the " + std::to_string(lim.max_pixels) + "-pixel limit");
}

#ifndef GLIMPSE_NO_OPENCV
void silence_opencv() {
    static std::once_flag once;
    // OpenCV logs decoder failures to stderr; glimpse reports them as one Error line instead.
    std::call_once(once, [] { cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT); });
}

// std::cerr writes nothing while one of these lives. OpenCV 4.6's imdecode prints the exception
// of a failed decoder straight to std::cerr ("imdecode_(''): can't read data: ..."), past its
// logger, which silence_opencv quiets. glimpse itself never writes to std::cerr (its messages
// go through stdio), so muting it only mutes OpenCV. Decodes on several threads share one
// muting: the first to start swaps the stream's buffer, the last to finish puts it back.
class CerrMuted {
public:
    CerrMuted() {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (depth_++ == 0) saved_ = std::cerr.rdbuf(&discard_);
    }
    ~CerrMuted() {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (--depth_ == 0) std::cerr.rdbuf(saved_);  // rdbuf() also clears the stream's state
    }
    CerrMuted(const CerrMuted&) = delete;
    CerrMuted& operator=(const CerrMuted&) = delete;

private:
    // Accepts every character and keeps none (the default overflow would fail the stream).
    struct Discard : std::streambuf {
        int overflow(int c) override { return traits_type::not_eof(c); }
        std::streamsize xsputn(const char*, std::streamsize n) override { return n; }
    };
    static inline std::mutex mutex_;
    static inline int depth_ = 0;
    static inline std::streambuf* saved_ = nullptr;
    static inline Discard discard_;
};

// One pixel of an OpenCV image (BGR order, 1-4 channels, 8 or 16 bits) as RGB over white.
// 16-bit samples keep their high byte (v >> 8), as Pillow does when it opens 16-bit RGB PNGs.
template <typename T>
void convert_rows(const cv::Mat& m, RgbImage& out) {
    const int ch = m.channels();
    const int shift = sizeof(T) == 2 ? 8 : 0;
    if (ch == 3 && shift == 0) {  // 8-bit BGR, what every JPEG becomes: a byte swap per pixel
        for (int y = 0; y < m.rows; ++y) {
            const T* src = m.ptr<T>(y);
            uint8_t* dst = out.row(y);
            for (int x = 0; x < m.cols; ++x, src += 3, dst += 3)
                dst[0] = uint8_t(src[2]), dst[1] = uint8_t(src[1]), dst[2] = uint8_t(src[0]);
        }
        return;
    }
    for (int y = 0; y < m.rows; ++y) {
        const T* src = m.ptr<T>(y);
        uint8_t* dst = out.row(y);
        for (int x = 0; x < m.cols; ++x, src += ch, dst += 3) {
            uint32_t r, g, b, a = 255;
            if (ch <= 2) {
                r = g = b = uint32_t(src[0]) >> shift;
                if (ch == 2) a = uint32_t(src[1]) >> shift;
            } else {
                b = uint32_t(src[0]) >> shift, g = uint32_t(src[1]) >> shift, r = uint32_t(src[2]) >> shift;
                if (ch == 4) a = uint32_t(src[3]) >> shift;
            }
            if (a == 255) {
                dst[0] = uint8_t(r), dst[1] = uint8_t(g), dst[2] = uint8_t(b);
            } else {
                dst[0] = over_white(r, a), dst[1] = over_white(g, a), dst[2] = over_white(b, a);
            }
        }
    }
}

RgbImage decode_opencv(const uint8_t* data, size_t size, probe::Format fmt, const probe::Dimensions& dim,
                       const std::string& name) {
    silence_opencv();
    cv::Mat decoded;
    try {
        const cv::Mat buf(1, int(size), CV_8U, const_cast<uint8_t*>(data));
        const CerrMuted quiet;
        decoded = cv::imdecode(buf, cv::IMREAD_UNCHANGED);
    } catch (const cv::Exception&) {
        decoded.release();
    }
    const int depth = decoded.depth();
    if (decoded.empty() || decoded.dims != 2 || decoded.cols != dim.width || decoded.rows != dim.height ||
        decoded.channels() > 4)
        throw input_error(name, std::string("truncated or corrupt ") + probe::format_name(fmt));
    if (depth != CV_8U && depth != CV_16U)
        throw input_error(name, std::string("unsupported ") + probe::format_name(fmt) +
                                    " sample format (only 8- and 16-bit integer samples are read)");
    RgbImage out(decoded.cols, decoded.rows);
    if (depth == CV_8U) convert_rows<uint8_t>(decoded, out);
    else convert_rows<uint16_t>(decoded, out);
    return out;
}
#else
// A build without OpenCV (CMake GLIMPSE_OPENCV=OFF) has no decoder for these formats.
RgbImage decode_opencv(const uint8_t*, size_t, probe::Format fmt, const probe::Dimensions&, const std::string& name) {
    const std::string what = fmt == probe::Format::Jpeg ? "CMYK/YCCK JPEG" : probe::format_name(fmt);
    throw input_error(name, what + " images need OpenCV, and this glimpse was built without it (GLIMPSE_OPENCV=OFF)");
}
#endif

// JPEG through libjpeg-turbo. Its errors longjmp back to the setjmp in decode_jpeg_rows, a
// function with no C++ object of its own (the picture and the row buffer belong to the
// caller), so nothing is skipped by the jump; warnings (corrupt data libjpeg decodes past, as
// OpenCV and Pillow also do) are not printed.
struct JpegErrors {
    jpeg_error_mgr mgr;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
    auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, e->message);
    std::longjmp(e->jump, 1);
}
void jpeg_quiet(j_common_ptr) {}

enum class JpegResult { Ok, Failed, NotRgb };

// Decodes into out (already sized from the probe) through row (width bytes, for grey rows).
JpegResult decode_jpeg_rows(const uint8_t* data, size_t size, RgbImage& out, uint8_t* row, JpegErrors& err) {
    jpeg_decompress_struct cinfo;
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_fail;
    err.mgr.output_message = jpeg_quiet;
    err.message[0] = '\0';
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return JpegResult::Failed;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
    jpeg_read_header(&cinfo, TRUE);
    const bool grey = cinfo.num_components == 1;
    if ((!grey && cinfo.num_components != 3) || int(cinfo.image_width) != out.width ||
        int(cinfo.image_height) != out.height) {
        jpeg_destroy_decompress(&cinfo);
        return cinfo.num_components == 4 ? JpegResult::NotRgb : JpegResult::Failed;
    }
    cinfo.out_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t* dst = out.row(int(cinfo.output_scanline));
        JSAMPROW target = grey ? row : dst;
        if (jpeg_read_scanlines(&cinfo, &target, 1) != 1) break;
        if (grey)
            for (int x = 0; x < out.width; ++x) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
    }
    const bool complete = cinfo.output_scanline == cinfo.output_height;
    if (complete) jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return complete ? JpegResult::Ok : JpegResult::Failed;
}

RgbImage decode_jpeg(const uint8_t* data, size_t size, const probe::Dimensions& dim, const std::string& name) {
    RgbImage out(int(dim.width), int(dim.height));
    std::vector<uint8_t> row(size_t(dim.width));
    JpegErrors err;
    switch (decode_jpeg_rows(data, size, out, row.data(), err)) {
        case JpegResult::Ok: return out;
        case JpegResult::NotRgb: return decode_opencv(data, size, probe::Format::Jpeg, dim, name);  // CMYK, YCCK
        case JpegResult::Failed: break;
    }
    throw input_error(name, err.message[0] ? std::string("truncated or corrupt JPEG (") + err.message + ")"
                                           : std::string("truncated or corrupt JPEG"));
}

// PNG and GIF: stb_image. Requested as RGBA, so grey is replicated, palettes expanded and
// tRNS turned into alpha; 16-bit PNG samples keep their high byte (v >> 8). For GIF stb
// returns the first frame composed on the logical screen (transparent entries: alpha 0).
// stb reports failures only through its return value, where libpng and OpenCV print to stderr.
template <typename T>
RgbImage rgba_over_white(const T* src, int w, int h) {
    const int shift = sizeof(T) == 2 ? 8 : 0;
    RgbImage out(w, h);
    uint8_t* dst = out.pixels.data();
    for (size_t i = 0; i < size_t(w) * size_t(h); ++i, src += 4, dst += 3) {
        const uint32_t a = uint32_t(src[3]) >> shift;
        for (int c = 0; c < 3; ++c) dst[c] = over_white(uint32_t(src[c]) >> shift, a);
    }
    return out;
}

// Two ways a small PNG makes stb_image allocate without bound, checked before stb sees it:
// - stb grows its IDAT buffer to a chunk's declared length before it reads the chunk: a
//   162-byte 8x6 PNG (found by fuzz_image) whose second IDAT claims 1.5 GB allocated 2 GiB.
//   A chunk that runs past the end of the file is refused.
// - stb inflates the whole IDAT stream into a buffer that grows as needed, however much
//   larger than the image it is (deflate reaches 1032:1, and Debian 12's stb reads zero bits
//   past the end of a stream). The stream is first inflated into a fixed buffer as large as
//   the image's filtered scanlines (plus one byte, so an overrun is seen); one that overruns
//   it, or does not inflate, is refused.
// "the IDAT chunk", or "a chunk" when the type is not four ASCII letters (as in a damaged file).
std::string chunk_name(const uint8_t* type) {
    for (int i = 0; i < 4; ++i)
        if (!std::isalpha(type[i])) return "a chunk";
    return "the " + std::string(reinterpret_cast<const char*>(type), 4) + " chunk";
}

void check_png_inflate(const uint8_t* d, size_t size, const probe::Dimensions& dim, const std::string& name) {
    if (size < 33) return;  // dimensions() has checked the IHDR; stb refuses what is missing
    const uint32_t depth = d[24], colour = d[25], interlace = d[28];
    const uint32_t channels = colour == 2 ? 3 : colour == 4 ? 2 : colour == 6 ? 4 : 1;
    const uint64_t row = (uint64_t(dim.width) * channels * depth + 7) / 8 + 1;  // + the filter byte
    // Adam7 adds at most one filter byte per pass row and rounds each pass row up to a byte.
    const uint64_t bound = uint64_t(dim.height) * row + (interlace ? 15ull * dim.height + 7 : 0);
    std::vector<char> idat;
    bool headerless = false;  // Apple's CgBI PNGs store raw deflate without the zlib header
    probe::PngChunk overrun{};
    const bool whole = probe::walk_png_chunks(d, size, [&](const probe::PngChunk& c) {
        if (std::memcmp(c.type, "CgBI", 4) == 0) headerless = true;
        if (std::memcmp(c.type, "IDAT", 4) == 0) idat.insert(idat.end(), c.data, c.data + c.length);
        return true;
    }, &overrun);
    if (!whole)
        throw input_error(name, "truncated or corrupt PNG (" + chunk_name(overrun.type) + " of " +
                                    std::to_string(overrun.length) + " bytes runs past the end of the file)");
    if (idat.empty() || idat.size() > size_t(INT_MAX) || bound >= uint64_t(INT_MAX)) return;
    std::vector<char> out(size_t(bound) + 1);
    const int got = headerless ? stbi_zlib_decode_noheader_buffer(out.data(), int(out.size()), idat.data(), int(idat.size()))
                               : stbi_zlib_decode_buffer(out.data(), int(out.size()), idat.data(), int(idat.size()));
    if (got < 0 || uint64_t(got) > bound)
        throw input_error(name, "corrupt PNG (its pixel data does not inflate to the " + std::to_string(dim.width) +
                                    "x" + std::to_string(dim.height) + " image its header declares)");
}

RgbImage decode_stb(const uint8_t* data, size_t size, probe::Format fmt, const probe::Dimensions& dim,
                    const std::string& name) {
    if (fmt == probe::Format::Png) check_png_inflate(data, size, dim, name);
    const int len = int(size);
    int w = 0, h = 0, n = 0;
    const bool wide = fmt == probe::Format::Png && stbi_is_16_bit_from_memory(data, len);
    std::unique_ptr<void, void (*)(void*)> px(
        wide ? static_cast<void*>(stbi_load_16_from_memory(data, len, &w, &h, &n, 4))
             : static_cast<void*>(stbi_load_from_memory(data, len, &w, &h, &n, 4)),
        stbi_image_free);
    if (!px || w != dim.width || h != dim.height)
        throw input_error(name, std::string("truncated or corrupt ") + probe::format_name(fmt));
    return wide ? rgba_over_white(static_cast<const uint16_t*>(px.get()), w, h)
                : rgba_over_white(static_cast<const uint8_t*>(px.get()), w, h);
}

// WebP through libwebp (the library OpenCV and Pillow wrap, so the same pixels): RGB straight
// into the picture when there is no alpha; RGBA composed over white, as stb's, when there is.
RgbImage decode_webp(const uint8_t* data, size_t size, const probe::Dimensions& dim, const std::string& name) {
    WebPBitstreamFeatures f;
    if (WebPGetFeatures(data, size, &f) != VP8_STATUS_OK || f.width != dim.width || f.height != dim.height)
        throw input_error(name, "truncated or corrupt WebP");
    if (f.has_animation) throw input_error(name, "animated WebP (only still images are read)");
    if (!f.has_alpha) {
        RgbImage out(f.width, f.height);
        if (!WebPDecodeRGBInto(data, size, out.pixels.data(), out.pixels.size(), f.width * 3))
            throw input_error(name, "truncated or corrupt WebP");
        return out;
    }
    std::vector<uint8_t> rgba(size_t(f.width) * size_t(f.height) * 4);
    if (!WebPDecodeRGBAInto(data, size, rgba.data(), rgba.size(), f.width * 4))
        throw input_error(name, "truncated or corrupt WebP");
    return rgba_over_white(rgba.data(), f.width, f.height);
}

}  // namespace

RgbImage decode_image(const uint8_t* data, size_t size, const std::string& name, const ImageLimits& lim) {
    if (size == 0) throw input_error(name, "empty file");
    if (size > size_t(INT_MAX)) throw input_error(name, "file is larger than 2 GiB, not read as an image");
    const probe::Format fmt = probe::sniff(data, size);
    if (fmt == probe::Format::Unknown) throw input_error(name, "not an image (unknown format)");
    const probe::Dimensions dim = probe::dimensions(fmt, data, size, name);
    check_limits(dim, lim, name);
    if (fmt == probe::Format::Jpeg && !probe::jpeg_is_complete(data, size))
        throw input_error(name, "truncated or corrupt JPEG");
    const bool stb = fmt == probe::Format::Png || fmt == probe::Format::Gif;
    RgbImage img = stb                           ? decode_stb(data, size, fmt, dim, name)
                   : fmt == probe::Format::Jpeg ? decode_jpeg(data, size, dim, name)
                   : fmt == probe::Format::Webp ? decode_webp(data, size, dim, name)
                                                : decode_opencv(data, size, fmt, dim, name);
    return apply_orientation(std::move(img), probe::exif_orientation(fmt, data, size));
}

RgbImage load_image(const std::string& path, const ImageLimits& lim) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw input_error(path, "no such file");
    const auto file = MappedFile::open(path);
    return decode_image(file->data(), size_t(file->size()), path, lim);
}

RgbImage apply_orientation(RgbImage img, int orientation) {
    if (orientation < 2 || orientation > 8) return img;
    const int w = img.width, h = img.height;
    const bool swap = orientation >= 5;  // transposing orientations exchange width and height
    RgbImage out(swap ? h : w, swap ? w : h);
    for (int y = 0; y < out.height; ++y) {
        for (int x = 0; x < out.width; ++x) {
            int sx = x, sy = y;  // source pixel of output (x, y)
            switch (orientation) {
                case 2: sx = w - 1 - x; break;
                case 3: sx = w - 1 - x, sy = h - 1 - y; break;
                case 4: sy = h - 1 - y; break;
                case 5: sx = y, sy = x; break;
                case 6: sx = y, sy = h - 1 - x; break;
                case 7: sx = w - 1 - y, sy = h - 1 - x; break;
                case 8: sx = w - 1 - y, sy = x; break;
            }
            std::memcpy(out.at(x, y), img.at(sx, sy), 3);
        }
    }
    return out;
}

RgbImage crop(const RgbImage& img, int x, int y, int w, int h) {
    if (x < 0 || y < 0 || w < 0 || h < 0 || x + w > img.width || y + h > img.height)
        throw Error(ErrorKind::Usage, "crop " + std::to_string(w) + "x" + std::to_string(h) + "+" + std::to_string(x) +
                                          "+" + std::to_string(y) + " outside a " + std::to_string(img.width) + "x" +
                                          std::to_string(img.height) + " image");
    RgbImage out(w, h);
    for (int r = 0; r < h; ++r) std::memcpy(out.row(r), img.at(x, y + r), size_t(w) * 3);
    return out;
}

namespace {

void append_bytes(void* context, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(context);
    const auto* p = static_cast<const uint8_t*>(data);
    out->insert(out->end(), p, p + size);
}

}  // namespace

std::vector<uint8_t> encode_image(const RgbImage& img, const std::string& ext) {
    if ((ext == "png" || ext == "bmp") && !img.empty()) {  // stb_image_write: no OpenCV round trip
        std::vector<uint8_t> bytes;
        const int ok = ext == "png" ? stbi_write_png_to_func(append_bytes, &bytes, img.width, img.height, 3,
                                                             img.pixels.data(), img.width * 3)
                                    : stbi_write_bmp_to_func(append_bytes, &bytes, img.width, img.height, 3,
                                                             img.pixels.data());
        if (!ok) throw Error(ErrorKind::Usage, "encoding a " + ext + " image failed");
        return bytes;
    }
#ifdef GLIMPSE_NO_OPENCV
    throw Error(ErrorKind::Usage, "cannot write " + ext +
                                      " images: this glimpse was built without OpenCV (GLIMPSE_OPENCV=OFF); png and "
                                      "bmp work");
#else
    silence_opencv();
    std::vector<int> params;
    if (ext == "jpg" || ext == "jpeg") params = {cv::IMWRITE_JPEG_QUALITY, 95};
    else if (ext == "webp") params = {cv::IMWRITE_WEBP_QUALITY, 101};  // > 100 = lossless
    else if (ext != "png" && ext != "bmp" && ext != "tif" && ext != "tiff")
        throw Error(ErrorKind::Usage, "cannot write images of type '" + ext + "' (png, jpg, bmp, tiff, webp)");
    if (img.empty()) throw Error(ErrorKind::Usage, "cannot encode an empty image");
    cv::Mat bgr(img.height, img.width, CV_8UC3);
    for (int y = 0; y < img.height; ++y) {
        const uint8_t* s = img.row(y);
        uint8_t* d = bgr.ptr<uint8_t>(y);
        for (int x = 0; x < img.width; ++x, s += 3, d += 3) d[0] = s[2], d[1] = s[1], d[2] = s[0];
    }
    std::vector<uint8_t> bytes;
    bool ok = false;
    try {
        ok = cv::imencode("." + ext, bgr, bytes, params);
    } catch (const cv::Exception&) {
        ok = false;
    }
    if (!ok) throw Error(ErrorKind::Usage, "encoding a " + ext + " image failed");
    return bytes;
#endif
}

bool can_encode_image(const std::string& ext) {
    if (ext == "png" || ext == "bmp") return true;
#ifdef GLIMPSE_NO_OPENCV
    return false;
#else
    return ext == "jpg" || ext == "jpeg" || ext == "webp" || ext == "tif" || ext == "tiff";
#endif
}

void save_image(const RgbImage& img, const std::string& path) {
    std::string ext = std::filesystem::path(path).extension().string();
    if (!ext.empty()) ext.erase(0, 1);
    for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
    const std::vector<uint8_t> bytes = encode_image(img, ext);
    std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), std::fclose);
    if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size())
        throw input_error(path, "cannot write the image file");
}

}  // namespace glimpse
