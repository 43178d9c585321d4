#include "fusion/inspect_pictures.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "fusion/tile_sheet.h"
#include "vision/bitmap_font.h"
#include "vision/resample.h"

namespace glimpse {

namespace {

constexpr int kMargin = 8;
constexpr int kTextScale = 2;  // 12×16-pixel characters
constexpr int kLineH = kGlyphH * kTextScale + 4;
constexpr uint8_t kBlack[3] = {0, 0, 0};
constexpr uint8_t kGrey[3] = {90, 90, 90};

RgbImage white_canvas(int w, int h) {
    RgbImage img(w, h);
    std::fill(img.pixels.begin(), img.pixels.end(), uint8_t(255));
    return img;
}

void paste(RgbImage& dst, const RgbImage& src, int x0, int y0) {
    for (int y = 0; y < src.height && y0 + y < dst.height; ++y)
        std::memcpy(dst.at(x0, y0 + y), src.row(y), size_t(std::min(src.width, dst.width - x0)) * 3);
}

// The "hot" colour map: black → red → yellow → white as v goes 0 → 1.
void heat(float v, float rgb[3]) {
    for (int c = 0; c < 3; ++c) rgb[c] = 255.0f * std::clamp(3.0f * v - float(c), 0.0f, 1.0f);
}

int token_side(const ImageGrid& g) {
    const int side = int(std::lround(std::sqrt(double(g.tokens_per_tile))));
    if (side <= 0 || side * side != g.tokens_per_tile)
        throw Error(ErrorKind::Model, "attention map: " + std::to_string(g.tokens_per_tile) +
                                          " image tokens per tile do not form a square grid");
    return side;
}

// Shrinks (or grows) img to fit a box × box square, keeping its aspect ratio.
RgbImage fit(const RgbImage& img, int box) {
    const double s = std::min(double(box) / img.width, double(box) / img.height);
    const int w = std::max(1, int(std::lround(img.width * s))), h = std::max(1, int(std::lround(img.height * s)));
    return resize_pillow(img, w, h, Resample::Bilinear);
}

}  // namespace

RgbImage tiles_picture(const std::vector<RgbImage>& tiles, const ImageGrid& grid, int patch,
                       const std::vector<std::string>& caption) {
    const RgbImage sheet = tile_sheet(tiles, grid, patch);
    int width = sheet.width;
    for (const std::string& line : caption) width = std::max(width, text_width(line, kTextScale) + 2 * kMargin);
    RgbImage out = white_canvas(width, sheet.height + int(caption.size()) * kLineH + kMargin / 2);
    paste(out, sheet, 0, 0);
    for (size_t i = 0; i < caption.size(); ++i)
        draw_text(out, kMargin, sheet.height + int(i) * kLineH, caption[i], kBlack, kTextScale);
    return out;
}

RgbImage attention_sheet(const std::vector<RgbImage>& tiles, const ImageGrid& grid, const float* weights) {
    const int side = token_side(grid);
    float max_w = 0.0f;
    for (int i = 0; i < grid.n_embeddings(); ++i) max_w = std::max(max_w, weights[i]);
    std::vector<RgbImage> tinted;
    tinted.reserve(tiles.size());
    for (size_t t = 0; t < tiles.size(); ++t) {
        const RgbImage& src = tiles[t];
        RgbImage dst(src.width, src.height);
        const float* w = weights + t * size_t(grid.tokens_per_tile);
        for (int y = 0; y < src.height; ++y)
            for (int x = 0; x < src.width; ++x) {
                const int token = (y * side / src.height) * side + x * side / src.width;
                float hot[3];
                heat(max_w > 0.0f ? w[token] / max_w : 0.0f, hot);
                const uint8_t* p = src.at(x, y);
                const float grey = 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
                uint8_t* q = dst.at(x, y);
                for (int c = 0; c < 3; ++c) q[c] = uint8_t(std::lround(0.35f * grey + 0.65f * hot[c]));
            }
        tinted.push_back(std::move(dst));
    }
    // The patch grid of tile_sheet, drawn at the size of one image token: the cells tinted above.
    return tile_sheet(tinted, grid, std::max(1, tiles[0].width / side));
}

RgbImage attention_strip(const std::vector<RgbImage>& tiles, const ImageGrid& grid,
                         const std::vector<StepAttention>& steps, const std::string& title, int cell, int per_row) {
    const int n = int(steps.size());
    const int cols = std::clamp(n, 1, per_row), rows = std::max(1, (n + per_row - 1) / per_row);
    const int cell_w = cell + kMargin, cell_h = cell + 2 * kLineH + kMargin;
    const int width = std::max(kMargin + cols * cell_w, text_width(title, kTextScale) + 2 * kMargin);
    RgbImage out = white_canvas(width, kMargin + kLineH + rows * cell_h);
    draw_text(out, kMargin, kMargin, title, kBlack, kTextScale);
    if (n == 0) draw_text(out, kMargin, kMargin + kLineH, "(no tokens generated)", kGrey, kTextScale);
    for (int i = 0; i < n; ++i) {
        const StepAttention& s = steps[size_t(i)];
        const int x0 = kMargin + (i % per_row) * cell_w, y0 = kMargin + kLineH + (i / per_row) * cell_h;
        const RgbImage small = fit(attention_sheet(tiles, grid, s.image.data()), cell);
        paste(out, small, x0, y0);
        draw_text(out, x0, y0 + small.height + 2, fit_text(s.label, cell, kTextScale), kBlack, kTextScale);
        const std::string share = "image " + std::to_string(int(std::lround(100.0 * s.image_share))) + "%";
        draw_text(out, x0, y0 + small.height + 2 + kLineH, share, kGrey, kTextScale);
    }
    return out;
}

}  // namespace glimpse
