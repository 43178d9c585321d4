// SmolVLM/Idefics3 and LLaVA-1.5 preprocessing. Source lines cited are from
// transformers/src/transformers/models/smolvlm/image_processing_smolvlm.py (commit 00964605)
// and image_transforms.py, as listed in shared/golden/HF-PREPROCESSING.md section 1.
#include "vision/preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "vision/resample.h"

namespace glimpse {

namespace {

constexpr int kMaxImageSize = 4096;  // MAX_IMAGE_SIZE (L53): stage-1 upper bound
constexpr int kMaxParam = 16384;     // refuse preprocessing parameters beyond any real model

int ceil_to(int v, int m) { return (v + m - 1) / m * m; }

void check_param(const char* what, int v) {
    if (v <= 0 || v > kMaxParam)
        throw Error(ErrorKind::Model, std::string("image preprocessing: ") + what + " = " + std::to_string(v) +
                                          " is out of range (1.." + std::to_string(kMaxParam) + ")");
}

// _resize_output_size_rescale_to_max_len (L56-90) then _resize_output_size_scale_below_upper_bound
// (L93-121). Sizes are (w, h).
void stage1_size(int W, int H, int L, int* w1, int* h1) {
    const double aspect = double(W) / H;
    int w = W, h = H;
    if (w >= h) {
        w = L;
        h = int(w / aspect);
        if (h % 2 != 0) ++h;
    } else {
        h = L;
        w = int(h * aspect);
        if (w % 2 != 0) ++w;
    }
    h = std::max(h, 1), w = std::max(w, 1);
    const double aspect2 = double(w) / h;
    if (w >= h && w > kMaxImageSize) {
        w = kMaxImageSize;
        h = int(w / aspect2);
    } else if (h > w && h > kMaxImageSize) {
        h = kMaxImageSize;
        w = int(h * aspect2);
    }
    *w1 = std::max(w, 1), *h1 = std::max(h, 1);
}

// resize_for_vision_encoder (L458-495). The HF code could produce a 0 side for a degenerate
// float rounding (and then fail inside Pillow); here a side is at least one tile.
void stage2_size(int w1, int h1, int M, int* w2, int* h2) {
    const double aspect = double(w1) / h1;
    if (w1 >= h1) {
        *w2 = ceil_to(w1, M);
        *h2 = ceil_to(int(*w2 / aspect), M);
    } else {
        *h2 = ceil_to(h1, M);
        *w2 = ceil_to(int(*h2 * aspect), M);
    }
    *w2 = std::max(*w2, M), *h2 = std::max(*h2, M);
}

Idefics3Plan plan_uncapped(int W, int H, int L, int M) {
    Idefics3Plan p;
    p.longest_edge = L;
    stage1_size(W, H, L, &p.stage1_w, &p.stage1_h);
    stage2_size(p.stage1_w, p.stage1_h, M, &p.stage2_w, &p.stage2_h);
    if (p.stage2_w > M || p.stage2_h > M) p.rows = p.stage2_h / M, p.cols = p.stage2_w / M;  // split_image L379-456
    return p;
}

}  // namespace

Idefics3Plan plan_idefics3(int width, int height, int longest_edge, int tile_size, int max_tiles) {
    check_param("longest edge", longest_edge);
    check_param("tile size", tile_size);
    if (width <= 0 || height <= 0)
        throw Error(ErrorKind::Usage, "cannot preprocess an empty image (" + std::to_string(width) + "x" +
                                          std::to_string(height) + ")");
    int L = longest_edge;
    Idefics3Plan p = plan_uncapped(width, height, L, tile_size);
    while (max_tiles > 0 && p.rows * p.cols > max_tiles && L > tile_size) {
        L = std::max(L - tile_size, tile_size);
        p = plan_uncapped(width, height, L, tile_size);
    }
    return p;
}

TiledImage preprocess_idefics3(const RgbImage& img, int longest_edge, int tile_size, int max_tiles) {
    const Idefics3Plan p = plan_idefics3(img.width, img.height, longest_edge, tile_size, max_tiles);
    const int M = tile_size;
    const RgbImage stage1 = resize_pillow(img, p.stage1_w, p.stage1_h, Resample::Lanczos);
    const RgbImage stage2 = resize_pillow(stage1, p.stage2_w, p.stage2_h, Resample::Lanczos);
    TiledImage out;
    out.rows = p.rows, out.cols = p.cols, out.tile_size = M;
    if (p.rows == 0) {
        out.tiles.push_back(stage2);  // stage 2 made it exactly M x M
        return out;
    }
    for (int r = 0; r < p.rows; ++r)
        for (int c = 0; c < p.cols; ++c) out.tiles.push_back(crop(stage2, c * M, r * M, M, M));
    out.tiles.push_back(resize_pillow(stage2, M, M, Resample::Lanczos));  // the global image (L443-450)
    return out;
}

namespace {

// get_resize_output_image_size(default_to_square=False) + center_crop, computing only the
// crop: new short side = S, new long side = int(S * long / short) (integer product, true
// division, truncation), crop at ((W' - S) / 2, (H' - S) / 2).
RgbImage shortest_edge_crop(const RgbImage& img, int S) {
    const int64_t W = img.width, H = img.height;
    const int64_t shorter = std::min(W, H), longer = std::max(W, H);
    const double new_long = double(int64_t(S) * longer) / double(shorter);
    if (new_long > double(INT32_MAX))
        throw Error(ErrorKind::BadInput, "image " + std::to_string(W) + "x" + std::to_string(H) +
                                             " is too elongated to resize its short side to " + std::to_string(S));
    const int L = int(new_long);
    const int out_w = W <= H ? S : L, out_h = W <= H ? L : S;
    return resize_pillow_window(img, out_w, out_h, (out_w - S) / 2, (out_h - S) / 2, S, S, Resample::Bicubic);
}

// expand2square of the LLaVA repository. Sides above kPadMaxSide are first reduced (BICUBIC,
// aspect kept), so that the square canvas stays small for hostile, very elongated images.
RgbImage pad_to_square(const RgbImage& src, const float mean[3]) {
    constexpr int kPadMaxSide = 4096;
    RgbImage img = src;
    if (std::max(img.width, img.height) > kPadMaxSide) {
        const double s = double(kPadMaxSide) / std::max(img.width, img.height);
        img = resize_pillow(img, std::max(1, int(img.width * s)), std::max(1, int(img.height * s)), Resample::Bicubic);
    }
    const int side = std::max(img.width, img.height);
    if (img.width == img.height) return img;
    RgbImage canvas(side, side);
    uint8_t fill[3];
    for (int c = 0; c < 3; ++c) fill[c] = uint8_t(std::clamp(int(double(mean[c]) * 255), 0, 255));
    for (size_t i = 0; i < canvas.pixels.size(); i += 3) std::copy(fill, fill + 3, canvas.pixels.begin() + long(i));
    const int x0 = (side - img.width) / 2, y0 = (side - img.height) / 2;
    for (int y = 0; y < img.height; ++y) std::copy(img.row(y), img.row(y) + size_t(img.width) * 3, canvas.at(x0, y0 + y));
    return canvas;
}

}  // namespace

RgbImage preprocess_llava(const RgbImage& img, int size, LlavaResize mode, const float mean[3]) {
    check_param("image size", size);
    if (img.empty()) throw Error(ErrorKind::Usage, "cannot preprocess an empty image");
    if (mode == LlavaResize::PadToSquare) return shortest_edge_crop(pad_to_square(img, mean), size);
    return shortest_edge_crop(img, size);
}

void normalize_to_chw(const RgbImage& tile, const float mean[3], const float std[3], float* out) {
    const size_t plane = size_t(tile.width) * size_t(tile.height);
    for (int c = 0; c < 3; ++c) {
        float* dst = out + size_t(c) * plane;
        const uint8_t* src = tile.pixels.data() + c;
        for (size_t i = 0; i < plane; ++i) dst[i] = (float(src[i * 3]) / 255.0f - mean[c]) / std[c];
    }
}

}  // namespace glimpse
