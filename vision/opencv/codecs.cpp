// libglimpse_opencv.so: the OpenCV codecs of vision/opencv/codecs.h, loaded by vision/image.cpp
// when an image needs them.
#include "vision/opencv/codecs.h"

#include <iostream>
#include <mutex>
#include <streambuf>

#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>

namespace glimpse {

namespace {

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

OpenCvDecode decode(const uint8_t* data, size_t size, int width, int height, RgbImage& out) {
    silence_opencv();
    cv::Mat decoded;
    try {
        const cv::Mat buf(1, int(size), CV_8U, const_cast<uint8_t*>(data));
        const CerrMuted quiet;
        decoded = cv::imdecode(buf, cv::IMREAD_UNCHANGED);
    } catch (const cv::Exception&) {
        decoded.release();
    }
    if (decoded.empty() || decoded.dims != 2 || decoded.cols != width || decoded.rows != height ||
        decoded.channels() > 4)
        return OpenCvDecode::Corrupt;
    const int depth = decoded.depth();
    if (depth != CV_8U && depth != CV_16U) return OpenCvDecode::UnsupportedDepth;
    out = RgbImage(decoded.cols, decoded.rows);
    if (depth == CV_8U) convert_rows<uint8_t>(decoded, out);
    else convert_rows<uint16_t>(decoded, out);
    return OpenCvDecode::Ok;
}

bool encode(const RgbImage& img, const std::string& ext, std::vector<uint8_t>& bytes) {
    silence_opencv();
    std::vector<int> params;
    if (ext == "jpg" || ext == "jpeg") params = {cv::IMWRITE_JPEG_QUALITY, 95};
    else if (ext == "webp") params = {cv::IMWRITE_WEBP_QUALITY, 101};  // > 100 = lossless
    cv::Mat bgr(img.height, img.width, CV_8UC3);
    for (int y = 0; y < img.height; ++y) {
        const uint8_t* s = img.row(y);
        uint8_t* d = bgr.ptr<uint8_t>(y);
        for (int x = 0; x < img.width; ++x, s += 3, d += 3) d[0] = s[2], d[1] = s[1], d[2] = s[0];
    }
    try {
        return cv::imencode("." + ext, bgr, bytes, params);
    } catch (const cv::Exception&) {
        return false;
    }
}

const OpenCvCodecs kCodecs{OpenCvCodecs::kVersion, decode, encode};

}  // namespace

}  // namespace glimpse

extern "C" const glimpse::OpenCvCodecs* glimpse_opencv_codecs() { return &glimpse::kCodecs; }
