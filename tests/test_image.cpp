// Image decoding: every accepted format, the conversions to 8-bit RGB (grey, 16-bit, palette,
// alpha), EXIF orientation, limits and hostile input. PNG and GIF files are built byte by byte
// here (stored-deflate PNGs, fixed-width-LZW GIFs) so that every sample value is known.
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tests/helpers.h"
#include "vision/image.h"

using namespace glimpse;

namespace {

using Bytes = std::vector<uint8_t>;

void put_be32(Bytes& b, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}

uint32_t crc32(const uint8_t* p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

void png_chunk(Bytes& png, const char* type, const Bytes& data) {
    put_be32(png, uint32_t(data.size()));
    const size_t start = png.size();
    png.insert(png.end(), type, type + 4);
    png.insert(png.end(), data.begin(), data.end());
    put_be32(png, crc32(png.data() + start, png.size() - start));
}

// zlib stream of stored (uncompressed) deflate blocks.
Bytes zlib_stored(const Bytes& raw) {
    Bytes z = {0x78, 0x01};
    size_t pos = 0;
    do {
        const size_t n = std::min<size_t>(raw.size() - pos, 65535);
        z.push_back(pos + n == raw.size() ? 1 : 0);
        z.push_back(uint8_t(n)), z.push_back(uint8_t(n >> 8));
        z.push_back(uint8_t(~n)), z.push_back(uint8_t(~n >> 8));
        z.insert(z.end(), raw.begin() + long(pos), raw.begin() + long(pos + n));
        pos += n;
    } while (pos < raw.size());
    uint32_t a = 1, b = 0;
    for (uint8_t v : raw) a = (a + v) % 65521, b = (b + a) % 65521;
    put_be32(z, b << 16 | a);
    return z;
}

// A PNG from raw scanline bytes (without filter bytes): color_type 0 grey, 2 RGB, 3 palette,
// 4 grey+alpha, 6 RGBA. `extra` chunks (PLTE, tRNS, eXIf) go before IDAT.
Bytes make_png(int w, int h, int depth, int color_type, const Bytes& rows,
               const std::vector<std::pair<const char*, Bytes>>& extra = {}) {
    Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    Bytes ihdr;
    put_be32(ihdr, uint32_t(w)), put_be32(ihdr, uint32_t(h));
    ihdr.insert(ihdr.end(), {uint8_t(depth), uint8_t(color_type), 0, 0, 0});
    png_chunk(png, "IHDR", ihdr);
    for (const auto& [type, data] : extra) png_chunk(png, type, data);
    Bytes raw;
    const size_t stride = rows.size() / size_t(h);
    for (int y = 0; y < h; ++y) {
        raw.push_back(0);  // filter type None
        raw.insert(raw.end(), rows.begin() + long(size_t(y) * stride), rows.begin() + long(size_t(y + 1) * stride));
    }
    png_chunk(png, "IDAT", zlib_stored(raw));
    png_chunk(png, "IEND", {});
    return png;
}

// The same image as an Adam7-interlaced 8-bit RGB PNG: seven passes, each a sub-image of
// every dx-th pixel from (x0, y0), with a filter byte per pass row.
Bytes make_png_adam7(const RgbImage& img) {
    Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    Bytes ihdr;
    put_be32(ihdr, uint32_t(img.width)), put_be32(ihdr, uint32_t(img.height));
    ihdr.insert(ihdr.end(), {8, 2, 0, 0, 1});
    png_chunk(png, "IHDR", ihdr);
    const int pass[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    Bytes raw;
    for (const auto& [x0, y0, dx, dy] : pass) {
        if (x0 >= img.width) continue;  // an empty pass has no rows at all
        for (int y = y0; y < img.height; y += dy) {
            raw.push_back(0);
            for (int x = x0; x < img.width; x += dx) raw.insert(raw.end(), img.at(x, y), img.at(x, y) + 3);
        }
    }
    png_chunk(png, "IDAT", zlib_stored(raw));
    png_chunk(png, "IEND", {});
    return png;
}

// A GIF with a 4-colour global palette; each pixel an LZW literal of 3 bits, with a clear code
// before every pair so that the code width never grows.
Bytes make_gif(int w, int h, const uint8_t palette[12], const Bytes& index, int transparent = -1) {
    Bytes g = {'G', 'I', 'F', '8', '9', 'a', uint8_t(w), uint8_t(w >> 8), uint8_t(h), uint8_t(h >> 8), 0x91, 0, 0};
    g.insert(g.end(), palette, palette + 12);
    if (transparent >= 0) g.insert(g.end(), {0x21, 0xF9, 4, 1, 0, 0, uint8_t(transparent), 0});
    g.insert(g.end(), {0x2C, 0, 0, 0, 0, uint8_t(w), uint8_t(w >> 8), uint8_t(h), uint8_t(h >> 8), 0, 2});
    std::vector<int> codes;
    for (size_t i = 0; i < index.size(); ++i) {
        if (i % 2 == 0) codes.push_back(4);
        codes.push_back(index[i]);
    }
    codes.push_back(5);
    Bytes packed;
    uint32_t acc = 0;
    int bits = 0;
    for (int c : codes) {
        acc |= uint32_t(c) << bits, bits += 3;
        while (bits >= 8) packed.push_back(uint8_t(acc)), acc >>= 8, bits -= 8;
    }
    if (bits > 0) packed.push_back(uint8_t(acc));
    for (size_t pos = 0; pos < packed.size(); pos += 255) {
        const size_t n = std::min<size_t>(255, packed.size() - pos);
        g.push_back(uint8_t(n));
        g.insert(g.end(), packed.begin() + long(pos), packed.begin() + long(pos + n));
    }
    g.insert(g.end(), {0, 0x3B});
    return g;
}

RgbImage test_pattern(int w, int h, uint64_t seed) {
    RgbImage img(w, h);
    const auto noise = test::random_floats(img.pixels.size(), seed, 1.0f);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t((noise[i] + 1.0f) * 127.5f);
    return img;
}

RgbImage decode(const Bytes& b, const ImageLimits& lim = {}) { return decode_image(b.data(), b.size(), "t.img", lim); }

std::string error_of(const Bytes& b, const ImageLimits& lim = {}) {
    try {
        decode(b, lim);
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::BadInput);
        return e.what();
    }
    return "(no error)";
}

// An APP1 "Exif" segment with IFD0 = { orientation }, big-endian TIFF, spliced after SOI.
// (Built with push_back: GCC 12 reports a false -Warray-bounds for vector::insert here.)
Bytes with_exif_orientation(const Bytes& jpeg, int orientation) {
    const uint8_t tiff[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1,
                            0, uint8_t(orientation), 0, 0, 0, 0, 0, 0};
    const uint8_t head[] = {0xFF, 0xE1, 0, uint8_t(2 + 6 + sizeof tiff), 'E', 'x', 'i', 'f', 0, 0};
    Bytes out;
    out.reserve(jpeg.size() + sizeof head + sizeof tiff);
    out.push_back(jpeg[0]), out.push_back(jpeg[1]);
    for (uint8_t b : head) out.push_back(b);
    for (uint8_t b : tiff) out.push_back(b);
    for (size_t i = 2; i < jpeg.size(); ++i) out.push_back(jpeg[i]);
    return out;
}

}  // namespace

TEST_CASE("lossless formats decode to the exact pixels", "[image]") {
    const std::string ext = GENERATE("png", "bmp", "tiff", "webp");
    const RgbImage img = test_pattern(13, 7, 11);
    const RgbImage got = decode(encode_image(img, ext));
    REQUIRE(got.width == 13);
    REQUIRE(got.height == 7);
    CHECK(got.pixels == img.pixels);
}

TEST_CASE("JPEG decodes close to the encoded image", "[image]") {
    RgbImage img(32, 16);
    for (int y = 0; y < 16; ++y)
        for (int x = 0; x < 32; ++x) img.at(x, y)[0] = uint8_t(x * 8), img.at(x, y)[1] = uint8_t(y * 16), img.at(x, y)[2] = 100;
    const RgbImage got = decode(encode_image(img, "jpg"));
    REQUIRE(got.width == 32);
    REQUIRE(got.height == 16);
    int worst = 0;
    for (size_t i = 0; i < img.pixels.size(); ++i) worst = std::max(worst, std::abs(int(got.pixels[i]) - img.pixels[i]));
    CHECK(worst <= 12);
}

// A w×h picture of `channels` 8-bit channels: a gradient in x and y per channel plus noise
// from an LCG, so that partial blocks, chroma upsampling and compression all show.
cv::Mat noisy_picture(int w, int h, int channels, uint32_t seed) {
    cv::Mat m(h, w, CV_8UC(channels));
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < channels; ++c) {
                seed = seed * 1664525u + 1013904223u;
                m.ptr<uint8_t>(y)[x * channels + c] = uint8_t(x * (5 + 2 * c) + y * (3 + 4 * c) + (seed >> 27));
            }
    return m;
}

// OpenCV's decoding of a JPEG (libjpeg-turbo behind its own wrapper), as RGB.
RgbImage opencv_rgb(const Bytes& jpeg) {
    const cv::Mat buf(1, int(jpeg.size()), CV_8U, const_cast<uint8_t*>(jpeg.data()));
    const cv::Mat bgr = cv::imdecode(buf, cv::IMREAD_COLOR);
    REQUIRE(!bgr.empty());
    RgbImage out(bgr.cols, bgr.rows);
    for (int y = 0; y < bgr.rows; ++y)
        for (int x = 0; x < bgr.cols; ++x) {
            const cv::Vec3b p = bgr.at<cv::Vec3b>(y, x);
            out.at(x, y)[0] = p[2], out.at(x, y)[1] = p[1], out.at(x, y)[2] = p[0];
        }
    return out;
}

TEST_CASE("JPEG pixels are OpenCV's (and so Pillow's) for every kind of JPEG", "[image]") {
    // A noisy picture with odd sides, so that partial MCUs and chroma upsampling both matter.
    const int w = 37, h = 23;
    const cv::Mat bgr = noisy_picture(w, h, 3, 7), grey = noisy_picture(w, h, 1, 8);
    struct Kind {
        const char* name;
        bool grey;
        std::vector<int> params;
    };
    const std::vector<Kind> kinds = {
        {"baseline 4:2:0", false, {cv::IMWRITE_JPEG_QUALITY, 90}},
        {"progressive", false, {cv::IMWRITE_JPEG_PROGRESSIVE, 1}},
        {"optimized Huffman, restart markers", false, {cv::IMWRITE_JPEG_OPTIMIZE, 1, cv::IMWRITE_JPEG_RST_INTERVAL, 2}},
        {"greyscale", true, {cv::IMWRITE_JPEG_QUALITY, 80}},
    };
    for (const Kind& k : kinds) {
        INFO(k.name);
        std::vector<uint8_t> jpeg;
        REQUIRE(cv::imencode(".jpg", k.grey ? grey : bgr, jpeg, k.params));
        const RgbImage got = decode(jpeg);
        const RgbImage want = opencv_rgb(jpeg);
        REQUIRE(got.width == w);
        REQUIRE(got.height == h);
        CHECK(got.pixels == want.pixels);
    }
    // Written by Pillow (OpenCV 4.6 writes only 4:2:0): 4:4:4 and 4:2:2 chroma, and an Adobe
    // CMYK JPEG, which goes through OpenCV's own conversion.
    for (const char* file : {"noise-444.jpg", "noise-422.jpg", "cmyk-20x12.jpg"}) {
        INFO(file);
        const auto f = MappedFile::open(std::string(GLIMPSE_SOURCE_DIR) + "/tests/data/images/" + file);
        const Bytes bytes(f->data(), f->data() + f->size());
        const RgbImage want = opencv_rgb(bytes);
        const RgbImage got = decode(bytes);
        REQUIRE(got.width == want.width);
        REQUIRE(got.height == want.height);
        CHECK(got.pixels == want.pixels);
    }
}

TEST_CASE("WebP pixels are OpenCV's (and so Pillow's): lossy and lossless, with and without alpha", "[image]") {
    const int w = 29, h = 17;
    cv::Mat bgra = noisy_picture(w, h, 4, 11), bgr(h, w, CV_8UC3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < 10; ++x) bgra.at<cv::Vec4b>(y, x)[3] = 255;  // opaque on the left, varied on the right
    const int bgr_of_bgra[] = {0, 0, 1, 1, 2, 2};
    cv::mixChannels(&bgra, 1, &bgr, 1, bgr_of_bgra, 3);
    for (const bool alpha : {false, true}) {
        for (const int quality : {80, 101}) {  // 101: lossless
            INFO((alpha ? "BGRA" : "BGR") << ", quality " << quality);
            std::vector<uint8_t> webp;
            REQUIRE(cv::imencode(".webp", alpha ? bgra : bgr, webp, {cv::IMWRITE_WEBP_QUALITY, quality}));
            const cv::Mat buf(1, int(webp.size()), CV_8U, webp.data());
            const cv::Mat ref = cv::imdecode(buf, cv::IMREAD_UNCHANGED);
            REQUIRE(ref.channels() == (alpha ? 4 : 3));
            const RgbImage got = decode(webp);
            REQUIRE(got.width == w);
            REQUIRE(got.height == h);
            int alpha_seen = 0;
            for (int y = 0; y < h; ++y)
                for (int x = 0; x < w; ++x) {
                    const uint8_t* p = ref.ptr<uint8_t>(y) + x * ref.channels();
                    const uint32_t a = alpha ? p[3] : 255;
                    alpha_seen += a < 255;
                    for (int c = 0; c < 3; ++c) {
                        const uint32_t v = p[2 - c];
                        CHECK(int(got.at(x, y)[c]) == int((a * v + (255 - a) * 255 + 127) / 255));
                    }
                }
            CHECK((alpha_seen > 0) == alpha);
        }
    }
}

TEST_CASE("a corrupt WebP with DICOM's magic at byte 128 is an error, not an abort inside GDCM", "[image]") {
    // Found by fuzz_image: OpenCV's imdecode passed this file, whose VP8L header libwebp
    // refuses, on to its DICOM decoder, which stops the process on an assertion.
    const auto f = MappedFile::open(std::string(GLIMPSE_SOURCE_DIR) + "/tests/data/images/corrupt-webp-dicm.webp");
    const Bytes bytes(f->data(), f->data() + f->size());
    CHECK_THROWS_WITH(decode(bytes), "t.img: truncated or corrupt WebP");
    // The formats still decoded by OpenCV are claimed by their magic bytes before its DICOM
    // decoder is asked: damaged BMP and TIFF files with the same bytes at 128 are errors or
    // pictures, never a GDCM abort.
    for (const char* ext : {"bmp", "tiff"}) {
        INFO(ext);
        Bytes b = encode_image(test_pattern(40, 30, 3), ext);
        REQUIRE(b.size() > 150);
        std::memcpy(b.data() + 128, bytes.data() + 128, bytes.size() - 128);
        for (size_t cut : {b.size(), size_t(128 + 12)}) {
            b.resize(std::min(b.size(), cut));
            try {
                const RgbImage got = decode(b);
                CHECK(got.width == 40);
            } catch (const Error& e) {
                CHECK(e.kind() == ErrorKind::BadInput);
            }
        }
    }
}

TEST_CASE("grey, 16-bit, palette and alpha PNGs become RGB by the stated rules", "[image]") {
    SECTION("8-bit grey is replicated") {
        const RgbImage got = decode(make_png(3, 1, 8, 0, {0, 128, 255}));
        CHECK(got.pixels == Bytes{0, 0, 0, 128, 128, 128, 255, 255, 255});
    }
    SECTION("16-bit RGB keeps the high byte") {
        const RgbImage got = decode(make_png(2, 1, 16, 2, {0x12, 0x34, 0xAB, 0xFF, 0x00, 0x80, 0xFF, 0xFF, 0x01, 0x02, 0x7F, 0xFF}));
        CHECK(got.pixels == Bytes{0x12, 0xAB, 0x00, 0xFF, 0x01, 0x7F});
    }
    SECTION("16-bit grey keeps the high byte") {
        const RgbImage got = decode(make_png(2, 1, 16, 0, {0xC0, 0xFF, 0x01, 0x00}));
        CHECK(got.pixels == Bytes{0xC0, 0xC0, 0xC0, 0x01, 0x01, 0x01});
    }
    SECTION("RGBA is composited over white: (a*c + (255-a)*255 + 127) / 255") {
        const RgbImage got = decode(make_png(3, 1, 8, 6, {10, 20, 30, 255, 10, 20, 30, 0, 0, 100, 255, 128}));
        // a = 128: c = 0 -> (0 + 127*255 + 127)/255 = 127; c = 100 -> (12800 + 32385 + 127)/255 = 177;
        // c = 255 -> 255.
        CHECK(got.pixels == Bytes{10, 20, 30, 255, 255, 255, 127, 177, 255});
    }
    SECTION("grey + alpha") {
        const RgbImage got = decode(make_png(2, 1, 8, 4, {200, 255, 0, 51}));
        // a = 51, c = 0: (0 + 204*255 + 127) / 255 = 204
        CHECK(got.pixels == Bytes{200, 200, 200, 204, 204, 204});
    }
    SECTION("palette with a transparent entry") {
        const Bytes plte = {255, 0, 0, 0, 255, 0, 0, 0, 255};
        const RgbImage got = decode(make_png(3, 1, 8, 3, {0, 1, 2}, {{"PLTE", plte}, {"tRNS", {255, 0}}}));
        CHECK(got.pixels == Bytes{255, 0, 0, 255, 255, 255, 0, 0, 255});
    }
}

TEST_CASE("GIF: first frame through stb_image, transparency over white", "[image]") {
    const uint8_t pal[12] = {0, 0, 0, 255, 0, 0, 0, 255, 0, 10, 20, 30};
    const Bytes index = {0, 1, 2, 3, 3, 2};
    SECTION("opaque") {
        const RgbImage got = decode(make_gif(3, 2, pal, index));
        REQUIRE(got.width == 3);
        REQUIRE(got.height == 2);
        CHECK(got.pixels == Bytes{0, 0, 0, 255, 0, 0, 0, 255, 0, 10, 20, 30, 10, 20, 30, 0, 255, 0});
    }
    SECTION("transparent index 3") {
        const RgbImage got = decode(make_gif(3, 2, pal, index, 3));
        CHECK(got.pixels == Bytes{0, 0, 0, 255, 0, 0, 0, 255, 0, 255, 255, 255, 255, 255, 255, 0, 255, 0});
    }
}

TEST_CASE("apply_orientation follows Pillow's exif_transpose", "[image]") {
    RgbImage src(3, 2);  // a b c / d e f, label in the red channel
    for (int i = 0; i < 6; ++i) src.pixels[size_t(i) * 3] = uint8_t('a' + i);
    auto labels = [](const RgbImage& im) {
        std::string s;
        for (int y = 0; y < im.height; ++y) {
            for (int x = 0; x < im.width; ++x) s += char(im.at(x, y)[0]);
            s += '/';
        }
        return s;
    };
    CHECK(labels(apply_orientation(src, 1)) == "abc/def/");
    CHECK(labels(apply_orientation(src, 2)) == "cba/fed/");
    CHECK(labels(apply_orientation(src, 3)) == "fed/cba/");
    CHECK(labels(apply_orientation(src, 4)) == "def/abc/");
    CHECK(labels(apply_orientation(src, 5)) == "ad/be/cf/");
    CHECK(labels(apply_orientation(src, 6)) == "da/eb/fc/");
    CHECK(labels(apply_orientation(src, 7)) == "fc/eb/da/");
    CHECK(labels(apply_orientation(src, 8)) == "cf/be/ad/");
    CHECK(labels(apply_orientation(src, 9)) == "abc/def/");
}

TEST_CASE("EXIF orientation in a JPEG is applied", "[image]") {
    // 4 x 2 blocks of 8 x 8 pixels, each a different flat colour.
    RgbImage img(32, 16);
    for (int y = 0; y < 16; ++y)
        for (int x = 0; x < 32; ++x) {
            const int b = (y / 8) * 4 + x / 8;
            img.at(x, y)[0] = uint8_t(b * 30), img.at(x, y)[1] = uint8_t(255 - b * 30), img.at(x, y)[2] = uint8_t(b % 2 * 200);
        }
    const Bytes jpeg = encode_image(img, "jpg");
    const RgbImage plain = decode(jpeg);
    for (int o = 1; o <= 8; ++o) {
        INFO("orientation " << o);
        const RgbImage got = decode(with_exif_orientation(jpeg, o));
        const RgbImage want = apply_orientation(plain, o);
        REQUIRE(got.width == want.width);
        REQUIRE(got.height == want.height);
        CHECK(got.pixels == want.pixels);
    }
    // Orientation 6 (rotate 90 clockwise): 16 x 32, and its top-left block is the source's
    // bottom-left block (b = 4: red 120, green 135, blue 0).
    const RgbImage r6 = decode(with_exif_orientation(jpeg, 6));
    REQUIRE(r6.width == 16);
    REQUIRE(r6.height == 32);
    CHECK(std::abs(int(r6.at(3, 3)[0]) - 120) <= 6);
    CHECK(std::abs(int(r6.at(3, 3)[1]) - 135) <= 6);
    CHECK(int(r6.at(3, 3)[2]) <= 6);
}

TEST_CASE("EXIF orientation in a PNG eXIf chunk is applied", "[image]") {
    const Bytes exif = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0};
    const RgbImage got = decode(make_png(2, 1, 8, 0, {10, 20}, {{"eXIf", exif}}));
    REQUIRE(got.width == 1);  // orientation 8: rotate 90 counter-clockwise
    REQUIRE(got.height == 2);
    CHECK(got.pixels == Bytes{20, 20, 20, 10, 10, 10});
}

TEST_CASE("bad files give one clear BadInput line", "[image]") {
    CHECK(error_of({}) == "t.img: empty file");
    CHECK(error_of({'h', 'e', 'l', 'l', 'o'}) == "t.img: not an image (unknown format)");
    CHECK(error_of({0xFF, 0xD8, 0xFF, 0xE0, 0, 16}) == "t.img: truncated or corrupt JPEG");
    try {
        load_image("/nonexistent/dir/x.jpg");
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "/nonexistent/dir/x.jpg: no such file");
        CHECK(e.kind() == ErrorKind::BadInput);
    }
}

TEST_CASE("a PNG whose pixel data inflates past its size is refused, not decoded", "[image]") {
    // Found by fuzz_image: an 8x6 RGB PNG of 162 bytes whose second IDAT chunk claims
    // 1526323200 bytes; stb_image grew its buffer to 2 GiB before reading the chunk.
    const Bytes bomb = test::read_file(std::string(GLIMPSE_SOURCE_DIR) + "/fuzz/corpus/image/regress-idat-length.png");
    REQUIRE(bomb.size() == 162);
    CHECK(error_of(bomb) ==
          "t.img: truncated or corrupt PNG (the IDAT chunk of 1526323200 bytes runs past the end of the file)");
    // A stream that inflates to more than the image: 8x6 RGB is 6 rows of 1 + 24 bytes.
    const RgbImage small = test_pattern(8, 6, 2);
    Bytes rows(small.pixels.begin(), small.pixels.end());
    rows.resize(rows.size() * 100, 7);  // 600 rows' worth of scanlines for a 6-row header
    Bytes over = make_png(8, 600, 8, 2, rows);
    over[22] = 0, over[23] = 6;  // the IHDR now says 8x6 (its CRC is not checked by stb)
    CHECK(error_of(over) == "t.img: corrupt PNG (its pixel data does not inflate to the 8x6 image its header declares)");
    // Honest PNGs still decode, interlaced or not, at sizes where Adam7 passes are empty.
    for (const auto& [w, h] : {std::pair{8, 6}, std::pair{1, 1}, std::pair{3, 9}, std::pair{17, 5}}) {
        const RgbImage img = test_pattern(w, h, 2);
        CHECK(decode(encode_image(img, "png")).pixels == img.pixels);
        CHECK(decode(make_png_adam7(img)).pixels == img.pixels);
    }
}

TEST_CASE("limits are checked from the header, before decoding", "[image]") {
    // A PNG that is only a signature and an IHDR claiming 100000 x 100000 pixels.
    Bytes huge = make_png(1, 1, 8, 0, {0});
    huge.resize(33);
    huge[16] = huge[20] = 0, huge[17] = huge[21] = 0x01, huge[18] = huge[22] = 0x86, huge[19] = huge[23] = 0xA0;
    CHECK(error_of(huge) == "t.img: image is 100000x100000, larger than the 16384-pixel limit");
    ImageLimits small;
    small.max_pixels = 10;
    CHECK(error_of(encode_image(test_pattern(5, 4, 1), "png"), small) ==
          "t.img: image is 5x4 (20 pixels), more than the 10-pixel limit");
    small.max_side = 4;
    CHECK(error_of(encode_image(test_pattern(5, 4, 1), "jpg"), small) ==
          "t.img: image is 5x4, larger than the 4-pixel limit");
    small.max_pixels = 5;
    CHECK(error_of(make_gif(3, 2, std::vector<uint8_t>(12).data(), Bytes(6)), small) ==
          "t.img: image is 3x2 (6 pixels), more than the 5-pixel limit");
}

TEST_CASE("every prefix of a PNG or JPEG fails cleanly or decodes completely", "[image]") {
    const RgbImage img = test_pattern(6, 5, 3);
    const std::string ext = GENERATE("png", "jpg");
    const Bytes full = encode_image(img, ext);
    const RgbImage whole = decode(full);
    int errors = 0;
    for (size_t n = 0; n < full.size(); ++n) {
        const Bytes prefix(full.begin(), full.begin() + long(n));
        try {
            const RgbImage got = decode(prefix);
            CHECK(ext == "png");  // a JPEG without its EOI is always refused
            CHECK(got.pixels == whole.pixels);  // only the trailing IEND may be missing
        } catch (const Error& e) {
            ++errors;
            CHECK(e.kind() == ErrorKind::BadInput);
            CHECK(std::string(e.what()).rfind("t.img: ", 0) == 0);
        }
    }
    CHECK(errors >= int(full.size()) - 12);
}

TEST_CASE("corrupted bytes never crash the decoders", "[image]") {
    const uint8_t pal[12] = {0, 0, 0, 255, 0, 0, 0, 255, 0, 10, 20, 30};
    const Bytes seeds[] = {encode_image(test_pattern(9, 7, 5), "png"), encode_image(test_pattern(9, 7, 5), "jpg"),
                           encode_image(test_pattern(9, 7, 5), "bmp"), encode_image(test_pattern(9, 7, 5), "webp"),
                           encode_image(test_pattern(9, 7, 5), "tiff"), make_gif(3, 2, pal, {0, 1, 2, 3, 3, 2})};
    uint64_t state = 12345;
    for (const Bytes& seed : seeds) {
        for (int trial = 0; trial < 60; ++trial) {
            Bytes b = seed;
            for (int k = 0; k < 4; ++k) {
                state ^= state << 13, state ^= state >> 7, state ^= state << 17;
                b[size_t(state % b.size())] = uint8_t(state >> 32);
            }
            try {
                const RgbImage got = decode(b);
                CHECK(got.pixels.size() == size_t(got.width) * size_t(got.height) * 3);
            } catch (const Error& e) {
                CHECK(e.kind() == ErrorKind::BadInput);
            }
        }
    }
}

TEST_CASE("load_image and save_image round-trip through a file", "[image]") {
    test::TempDir dir;
    const RgbImage img = test_pattern(4, 3, 9);
    save_image(img, (dir / "x.png").string());
    CHECK(load_image((dir / "x.png").string()).pixels == img.pixels);
    test::write_file(dir / "empty.png", Bytes{});
    CHECK_THROWS_WITH(load_image((dir / "empty.png").string()), Catch::Contains("empty.png: empty file"));
    CHECK_THROWS_AS(encode_image(img, "xyz"), Error);
    // This build has OpenCV (test_image.cpp is left out of builds without it): every format.
    for (const char* ext : {"png", "bmp", "jpg", "jpeg", "webp", "tif", "tiff"}) CHECK(can_encode_image(ext));
    CHECK_FALSE(can_encode_image("xyz"));
}
