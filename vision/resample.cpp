// Pillow 9.4 resampling, reimplemented from the rules in resample.h (HF-PREPROCESSING.md and
// MODELS.md 3.8 give the same formulas). Every double operation happens in the order Pillow's
// C code does it, so the fixed-point weights, and therefore the pixels, are bit-identical.
#include "vision/resample.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"

namespace glimpse {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // 22 fractional bits, as Pillow's 8-bit path

double bilinear(double x) {
    x = std::fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic(double x) {
    constexpr double a = -0.5;
    x = std::fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

double sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return std::sin(x) / x;
}

double lanczos(double x) { return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0; }

struct Filter {
    double (*fn)(double);
    double support;
};

Filter filter_of(Resample f) {
    switch (f) {
        case Resample::Bilinear: return {bilinear, 1.0};
        case Resample::Bicubic: return {bicubic, 2.0};
        default: return {lanczos, 3.0};
    }
}

// Fixed-point weights for output samples [first, first + count) of an in -> out resize along
// one axis: sample i reads input [start[i], start[i] + len[i]) with weights k[i * ksize ...].
struct AxisCoeffs {
    int ksize = 0;
    std::vector<int> start, len;
    std::vector<int32_t> k;
};

AxisCoeffs axis_coeffs(int in, int out, int first, int count, const Filter& filter) {
    const double scale = double(in) / out;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = filter.support * filterscale;
    AxisCoeffs c;
    c.ksize = int(std::ceil(support)) * 2 + 1;
    c.start.resize(size_t(count));
    c.len.resize(size_t(count));
    c.k.assign(size_t(count) * size_t(c.ksize), 0);
    std::vector<double> w(size_t(c.ksize));
    for (int i = 0; i < count; ++i) {
        const double center = (first + i + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        const int xmin = std::max(int(center - support + 0.5), 0);
        const int xmax = std::min(int(center + support + 0.5), in) - xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            w[size_t(x)] = filter.fn((x + xmin - center + 0.5) * ss);
            ww += w[size_t(x)];
        }
        int32_t* k = &c.k[size_t(i) * size_t(c.ksize)];
        for (int x = 0; x < xmax; ++x) {
            const double v = ww != 0.0 ? w[size_t(x)] / ww : w[size_t(x)];
            k[x] = int32_t(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
        }
        c.start[size_t(i)] = xmin;
        c.len[size_t(i)] = std::max(xmax, 0);
    }
    return c;
}

inline uint8_t clip8(int64_t acc) {
    const int64_t v = acc >> kPrecisionBits;
    return uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
}

// out[y][j] = sum_x src[y][start[j] + x] * k[j][x] for every row of src.
RgbImage horizontal(const RgbImage& src, const AxisCoeffs& c) {
    const int w = int(c.start.size());
    RgbImage out(w, src.height);
    for (int y = 0; y < src.height; ++y) {
        const uint8_t* s = src.row(y);
        uint8_t* d = out.row(y);
        for (int j = 0; j < w; ++j) {
            const int32_t* k = &c.k[size_t(j) * size_t(c.ksize)];
            const uint8_t* p = s + size_t(c.start[size_t(j)]) * 3;
            int64_t acc[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
            for (int x = 0; x < c.len[size_t(j)]; ++x, p += 3)
                for (int ch = 0; ch < 3; ++ch) acc[ch] += int64_t(p[ch]) * k[x];
            for (int ch = 0; ch < 3; ++ch) d[size_t(j) * 3 + size_t(ch)] = clip8(acc[ch]);
        }
    }
    return out;
}

// out[i][x] = sum_y src[start[i] - row0 + y][x] * k[i][y]; src holds input rows from row0.
RgbImage vertical(const RgbImage& src, int row0, const AxisCoeffs& c) {
    const int h = int(c.start.size());
    RgbImage out(src.width, h);
    const size_t n = size_t(src.width) * 3;
    std::vector<int64_t> acc(n);
    for (int i = 0; i < h; ++i) {
        std::fill(acc.begin(), acc.end(), int64_t(1) << (kPrecisionBits - 1));
        const int32_t* k = &c.k[size_t(i) * size_t(c.ksize)];
        for (int y = 0; y < c.len[size_t(i)]; ++y) {
            const uint8_t* s = src.row(c.start[size_t(i)] - row0 + y);
            for (size_t e = 0; e < n; ++e) acc[e] += int64_t(s[e]) * k[y];
        }
        uint8_t* d = out.row(i);
        for (size_t e = 0; e < n; ++e) d[e] = clip8(acc[e]);
    }
    return out;
}

// Pillow's NEAREST goes through its affine transform: source coordinate of output i is
// int(xo) with xo = scale / 2 advanced by `scale` per sample (accumulated, as Pillow does).
std::vector<int> nearest_index(int in, int out, int first, int count) {
    const double scale = double(in) / out;
    std::vector<int> idx(static_cast<size_t>(count));
    double xo = scale * 0.5;
    for (int i = 0; i < first + count; ++i, xo += scale)
        if (i >= first) idx[size_t(i - first)] = std::min(int(xo), in - 1);
    return idx;
}

RgbImage nearest_window(const RgbImage& src, int out_w, int out_h, int x0, int y0, int w, int h) {
    const std::vector<int> xs = nearest_index(src.width, out_w, x0, w);
    const std::vector<int> ys = nearest_index(src.height, out_h, y0, h);
    RgbImage out(w, h);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) std::memcpy(out.at(x, y), src.at(xs[size_t(x)], ys[size_t(y)]), 3);
    return out;
}

}  // namespace

const char* resample_name(Resample f) {
    switch (f) {
        case Resample::Nearest: return "nearest";
        case Resample::Bilinear: return "bilinear";
        case Resample::Bicubic: return "bicubic";
        case Resample::Lanczos: return "lanczos";
    }
    return "?";
}

RgbImage resize_pillow_window(const RgbImage& src, int out_w, int out_h, int x0, int y0, int w, int h,
                              Resample filter) {
    if (src.empty() || out_w <= 0 || out_h <= 0)
        throw Error(ErrorKind::Usage, "cannot resize a " + std::to_string(src.width) + "x" + std::to_string(src.height) +
                                          " image to " + std::to_string(out_w) + "x" + std::to_string(out_h));
    if (x0 < 0 || y0 < 0 || w <= 0 || h <= 0 || x0 > out_w - w || y0 > out_h - h)
        throw Error(ErrorKind::Usage, "resize window outside the " + std::to_string(out_w) + "x" +
                                          std::to_string(out_h) + " result");
    if (out_w == src.width && out_h == src.height) return crop(src, x0, y0, w, h);
    if (filter == Resample::Nearest) return nearest_window(src, out_w, out_h, x0, y0, w, h);

    const Filter f = filter_of(filter);
    const bool need_h = out_w != src.width, need_v = out_h != src.height;
    AxisCoeffs vc;
    int row0 = y0, row1 = y0 + h;  // input rows the vertical pass reads
    if (need_v) {
        vc = axis_coeffs(src.height, out_h, y0, h, f);
        row0 = src.height, row1 = 0;
        for (size_t i = 0; i < vc.start.size(); ++i) {
            row0 = std::min(row0, vc.start[i]);
            row1 = std::max(row1, vc.start[i] + vc.len[i]);
        }
        row1 = std::max(row1, row0);
    }
    const RgbImage rows = crop(src, 0, row0, src.width, row1 - row0);
    const RgbImage tmp = need_h ? horizontal(rows, axis_coeffs(src.width, out_w, x0, w, f)) : crop(rows, x0, 0, w, rows.height);
    return need_v ? vertical(tmp, row0, vc) : tmp;
}

RgbImage resize_pillow(const RgbImage& src, int out_w, int out_h, Resample filter) {
    return resize_pillow_window(src, out_w, out_h, 0, 0, out_w, out_h, filter);
}

}  // namespace glimpse
