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
// for JPEG, WebP and TIFF. The OpenCV paths run in a module of their own, loaded when an
// image first needs one (vision/opencv/codecs.h says why); if it cannot be loaded, or in a build
// with CMake's GLIMPSE_OPENCV=OFF, those formats are one-line errors.
#include "vision/image.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <jpeglib.h>
#include <webp/decode.h>

#include <cctype>
#include <climits>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#ifndef GLIMPSE_NO_OPENCV
#include <dlfcn.h>
#endif

#include "core/error.h"
#include "core/mapped_file.h"
#include "vision/image_probe.h"
#include "vision/opencv/codecs.h"

namespace glimpse {

namespace {

namespace probe = image_probe;

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
// The OpenCV codecs' module (vision/opencv/codecs.h), loaded once, when an image first needs
// it: from where GLIMPSE_OPENCV_MODULE names, else beside the running executable, else where
// this build put it (the tests' and fuzz targets' executables live elsewhere in the tree).
struct OpenCvModule {
    const OpenCvCodecs* codecs = nullptr;
    std::string error;  // why there are none: one line
};

#ifndef GLIMPSE_OPENCV_MODULE_PATH
#define GLIMPSE_OPENCV_MODULE_PATH ""
#endif

OpenCvModule load_opencv_module() {
    constexpr const char* kName = "libglimpse_opencv.so";
    std::vector<std::string> places;
    if (const char* env = std::getenv("GLIMPSE_OPENCV_MODULE"); env && *env) {
        places.emplace_back(env);
    } else {
        std::error_code ec;
        const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
        if (!ec) places.push_back((exe.parent_path() / kName).string());
        const std::string built = GLIMPSE_OPENCV_MODULE_PATH;
        if (!built.empty() && (places.empty() || places[0] != built)) places.push_back(built);
    }
    OpenCvModule m;
    for (const std::string& p : places) {
        std::error_code ec;
        if (!std::filesystem::exists(p, ec)) continue;
        void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char* why = dlerror();
            m.error = why ? why : p + ": cannot be loaded";
            continue;
        }
        using Entry = const OpenCvCodecs* (*)();
        const auto entry = reinterpret_cast<Entry>(dlsym(h, "glimpse_opencv_codecs"));
        const OpenCvCodecs* c = entry ? entry() : nullptr;
        if (!c || c->version != OpenCvCodecs::kVersion) {
            m.error = p + " is not this glimpse's OpenCV module";
            continue;  // (left loaded: nothing of it runs)
        }
        m.codecs = c;
        m.error.clear();
        return m;
    }
    if (m.error.empty()) {
        std::string where;
        for (const std::string& p : places) where += (where.empty() ? "" : ", ") + p;
        m.error = std::string(kName) + " was not found (looked at " + where + "; GLIMPSE_OPENCV_MODULE names it)";
    }
    return m;
}

const OpenCvModule& opencv_module() {
    static const OpenCvModule m = load_opencv_module();
    return m;
}
#endif

RgbImage decode_opencv(const uint8_t* data, size_t size, probe::Format fmt, const probe::Dimensions& dim,
                       const std::string& name) {
    const std::string what = fmt == probe::Format::Jpeg ? "CMYK/YCCK JPEG" : probe::format_name(fmt);
#ifdef GLIMPSE_NO_OPENCV
    (void)data, (void)size, (void)dim;
    throw input_error(name, what + " images need OpenCV, and this glimpse was built without it (GLIMPSE_OPENCV=OFF)");
#else
    const OpenCvModule& m = opencv_module();
    if (!m.codecs) throw input_error(name, what + " images need OpenCV, whose module did not load: " + m.error);
    RgbImage out;
    switch (m.codecs->decode(data, size, int(dim.width), int(dim.height), out)) {
        case OpenCvDecode::Ok: return out;
        case OpenCvDecode::Corrupt: break;
        case OpenCvDecode::UnsupportedDepth:
            throw input_error(name, std::string("unsupported ") + probe::format_name(fmt) +
                                        " sample format (only 8- and 16-bit integer samples are read)");
    }
    throw input_error(name, std::string("truncated or corrupt ") + probe::format_name(fmt));
#endif
}

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

// The extensions encode_image writes through OpenCV (the module), where it is there.
bool opencv_writes(const std::string& ext) {
    return ext == "jpg" || ext == "jpeg" || ext == "webp" || ext == "tif" || ext == "tiff";
}

}  // namespace

std::vector<uint8_t> encode_image(const RgbImage& img, const std::string& ext) {
    if (img.empty()) throw Error(ErrorKind::Usage, "cannot encode an empty image");
    if (ext == "png" || ext == "bmp") {  // stb_image_write: no OpenCV round trip
        std::vector<uint8_t> bytes;
        const int ok = ext == "png" ? stbi_write_png_to_func(append_bytes, &bytes, img.width, img.height, 3,
                                                             img.pixels.data(), img.width * 3)
                                    : stbi_write_bmp_to_func(append_bytes, &bytes, img.width, img.height, 3,
                                                             img.pixels.data());
        if (!ok) throw Error(ErrorKind::Usage, "encoding a " + ext + " image failed");
        return bytes;
    }
    if (!opencv_writes(ext))
        throw Error(ErrorKind::Usage, "cannot write images of type '" + ext + "' (png, jpg, bmp, tiff, webp)");
#ifdef GLIMPSE_NO_OPENCV
    throw Error(ErrorKind::Usage, "cannot write " + ext +
                                      " images: this glimpse was built without OpenCV (GLIMPSE_OPENCV=OFF); png and "
                                      "bmp work");
#else
    const OpenCvModule& m = opencv_module();
    if (!m.codecs)
        throw Error(ErrorKind::Usage, "cannot write " + ext + " images: OpenCV's module did not load (" + m.error +
                                          "); png and bmp work");
    std::vector<uint8_t> bytes;
    if (!m.codecs->encode(img, ext, bytes)) throw Error(ErrorKind::Usage, "encoding a " + ext + " image failed");
    return bytes;
#endif
}

bool can_encode_image(const std::string& ext) {
    if (ext == "png" || ext == "bmp") return true;
#ifdef GLIMPSE_NO_OPENCV
    return false;
#else
    return opencv_writes(ext) && opencv_module().codecs != nullptr;
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
