// Resampling and per-family preprocessing on small synthetic images, with expectations
// computed by hand from the rules in vision/resample.h and vision/preprocess.h (the HF
// processors and Pillow); the golden comparison is in test_preprocess_golden.cpp.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "tests/helpers.h"
#include "vision/preprocess.h"
#include "vision/resample.h"

using namespace glimpse;

namespace {

RgbImage noise_image(int w, int h, uint64_t seed) {
    RgbImage img(w, h);
    const auto v = test::random_floats(img.pixels.size(), seed, 1.0f);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t((v[i] + 1.0f) * 127.5f);
    return img;
}

// A one-row image whose red channel is `values` (green and blue 0).
RgbImage row_image(const std::vector<uint8_t>& values) {
    RgbImage img(int(values.size()), 1);
    for (size_t i = 0; i < values.size(); ++i) img.pixels[i * 3] = values[i];
    return img;
}

std::vector<uint8_t> red_row(const RgbImage& img) {
    std::vector<uint8_t> r;
    for (int x = 0; x < img.width; ++x) r.push_back(img.at(x, 0)[0]);
    return r;
}

}  // namespace

TEST_CASE("a same-size resize is a copy", "[preprocess]") {
    const Resample f = GENERATE(Resample::Nearest, Resample::Bilinear, Resample::Bicubic, Resample::Lanczos);
    const RgbImage img = noise_image(7, 5, 1);
    CHECK(resize_pillow(img, 7, 5, f).pixels == img.pixels);
}

TEST_CASE("a constant image stays constant under every filter", "[preprocess]") {
    const Resample f = GENERATE(Resample::Nearest, Resample::Bilinear, Resample::Bicubic, Resample::Lanczos);
    RgbImage img(9, 6);
    for (size_t i = 0; i < img.pixels.size(); i += 3) img.pixels[i] = 17, img.pixels[i + 1] = 200, img.pixels[i + 2] = 255;
    for (auto [w, h] : std::vector<std::pair<int, int>>{{3, 2}, {20, 13}, {9, 31}, {1, 1}, {5, 6}}) {
        const RgbImage out = resize_pillow(img, w, h, f);
        REQUIRE(out.width == w);
        REQUIRE(out.height == h);
        for (size_t i = 0; i < out.pixels.size(); i += 3) {
            REQUIRE(out.pixels[i] == 17);
            REQUIRE(out.pixels[i + 1] == 200);
            REQUIRE(out.pixels[i + 2] == 255);
        }
    }
}

TEST_CASE("nearest: 2x up repeats, 2x down takes the odd samples", "[preprocess]") {
    // Pillow's affine nearest: source = int((i + 0.5) * in / out).
    CHECK(red_row(resize_pillow(row_image({10, 20, 30}), 6, 1, Resample::Nearest)) ==
          std::vector<uint8_t>{10, 10, 20, 20, 30, 30});
    CHECK(red_row(resize_pillow(row_image({1, 2, 3, 4, 5, 6}), 3, 1, Resample::Nearest)) ==
          std::vector<uint8_t>{2, 4, 6});
}

TEST_CASE("bilinear and bicubic match hand-computed fixed-point results", "[preprocess]") {
    // Bilinear 2 -> 4 of [0, 255]: centres 0.25, 0.75, 1.25, 1.75. Output 0 and 3 see one
    // sample (weight 1); output 1 has weights 0.75 / 0.25 -> 2^21 + 255 * 2^20 = 257 * 2^20,
    // >> 22 = 64; output 2 has 0.25 / 0.75 -> (2 + 765) * 2^20 >> 22 = 191.
    CHECK(red_row(resize_pillow(row_image({0, 255}), 4, 1, Resample::Bilinear)) == std::vector<uint8_t>{0, 64, 191, 255});
    // Bicubic (a = -0.5) 4 -> 2 of [0, 0, 255, 255]: support 2 * 2 = 4, output 0 centre 1:
    // taps at (x - 0.5) / 2 = -0.25, 0.25, 0.75, 1.25 -> 0.8671875, 0.8671875, 0.2265625,
    // -0.0703125 (sum 1.890625); normalised and in 22-bit fixed point 502623 and -155987
    // on the 255 samples: (2^21 + 255 * 346636) >> 22 = 21; by symmetry output 1 = 234.
    CHECK(red_row(resize_pillow(row_image({0, 0, 255, 255}), 2, 1, Resample::Bicubic)) == std::vector<uint8_t>{21, 234});
}

TEST_CASE("lanczos halving of a 2-periodic pattern gives its mean", "[preprocess]") {
    // Downscaling a 2-periodic pattern by 2 with an antialiasing filter gives its mean.
    std::vector<uint8_t> stripes;
    for (int i = 0; i < 40; ++i) stripes.push_back(i % 2 ? 200 : 100);
    const auto half = red_row(resize_pillow(row_image(stripes), 20, 1, Resample::Lanczos));
    for (size_t i = 3; i + 3 < half.size(); ++i) CHECK(std::abs(int(half[i]) - 150) <= 1);
}

TEST_CASE("a resize window is the same as cropping the full resize", "[preprocess]") {
    const Resample f = GENERATE(Resample::Nearest, Resample::Bilinear, Resample::Bicubic, Resample::Lanczos);
    const RgbImage img = noise_image(23, 17, 2);
    for (auto [w, h] : std::vector<std::pair<int, int>>{{40, 31}, {11, 7}, {23, 40}, {50, 17}}) {
        const RgbImage full = resize_pillow(img, w, h, f);
        const int x0 = w / 3, y0 = h / 4, ww = w / 2, hh = h / 2;
        CHECK(resize_pillow_window(img, w, h, x0, y0, ww, hh, f).pixels == crop(full, x0, y0, ww, hh).pixels);
    }
    CHECK_THROWS_AS(resize_pillow(img, 0, 3, f), Error);
    CHECK_THROWS_AS(resize_pillow_window(img, 10, 10, 5, 5, 6, 1, f), Error);
}

TEST_CASE("Idefics3 tile grid for several aspect ratios", "[preprocess]") {
    struct Case {
        int w, h, L, M;
        int w1, h1, w2, h2, rows, cols;
    };
    // MODELS.md 3.8's worked examples (L 2048, M 512) and HF-PREPROCESSING.md 3.1 (L 384, M 128),
    // each checked by hand: e.g. 80 x 100: H1 = 2048, W1 = int(2048 * 0.8) = 1638 (even);
    // H2 = 2048, W2 = ceil(int(2048 * 1638 / 2048) / 512) * 512 = 2048.
    const Case cases[] = {
        {80, 100, 2048, 512, 1638, 2048, 2048, 2048, 4, 4},
        {640, 480, 2048, 512, 2048, 1536, 2048, 1536, 3, 4},
        {200, 100, 2048, 512, 2048, 1024, 2048, 1024, 2, 4},
        {512, 512, 2048, 512, 2048, 2048, 2048, 2048, 4, 4},
        {64, 64, 384, 128, 384, 384, 384, 384, 3, 3},
        {200, 120, 384, 128, 384, 230, 384, 256, 2, 3},
        {37, 91, 384, 128, 156, 384, 256, 384, 3, 2},
        // very wide: H1 = int(2048 / 100) = 20 (even), H2 = ceil(int(2048 / (2048 / 20)) / 512) * 512 = 512
        {1000, 10, 2048, 512, 2048, 20, 2048, 512, 1, 4},
        // L = M: one unsplit tile
        {300, 200, 512, 512, 512, 342, 512, 512, 0, 0},
    };
    for (const Case& c : cases) {
        INFO(c.w << "x" << c.h << " L " << c.L << " M " << c.M);
        const Idefics3Plan p = plan_idefics3(c.w, c.h, c.L, c.M);
        CHECK(p.stage1_w == c.w1);
        CHECK(p.stage1_h == c.h1);
        CHECK(p.stage2_w == c.w2);
        CHECK(p.stage2_h == c.h2);
        CHECK(p.rows == c.rows);
        CHECK(p.cols == c.cols);
        CHECK(p.n_tiles() == c.rows * c.cols + 1);
    }
}

TEST_CASE("the tile cap lowers the longest edge in tile steps", "[preprocess]") {
    // 640 x 480, L 2048: 3 x 4 = 12 tiles. Cap 6: L 1536 gives 1536 x 1152 -> 1536 x 1536, 3 x 3
    // = 9 > 6; L 1024 gives 1024 x 768 -> 1024 x 1024, 2 x 2 = 4.
    Idefics3Plan p = plan_idefics3(640, 480, 2048, 512, 6);
    CHECK(p.longest_edge == 1024);
    CHECK(p.rows == 2);
    CHECK(p.cols == 2);
    p = plan_idefics3(640, 480, 2048, 512, 12);
    CHECK(p.longest_edge == 2048);
    CHECK(p.rows * p.cols == 12);
    p = plan_idefics3(640, 480, 2048, 512, 1);  // only L = M fits: one unsplit tile
    CHECK(p.longest_edge == 512);
    CHECK(p.rows == 0);
    CHECK(p.n_tiles() == 1);
    CHECK_THROWS_AS(plan_idefics3(640, 480, 0, 512), Error);
    CHECK_THROWS_AS(plan_idefics3(640, 480, 2048, -1), Error);
    CHECK_THROWS_AS(plan_idefics3(640, 480, 1 << 20, 512), Error);
}

TEST_CASE("preprocess_idefics3 makes the tiles of the plan, global image last", "[preprocess]") {
    const RgbImage img = noise_image(50, 30, 3);
    const TiledImage t = preprocess_idefics3(img, 96, 32);
    // 50 x 30 -> 96 x int(96 / (50/30)) = 96 x 57 -> 58 (even) -> 96 x ceil(int(96 / (96/58)) / 32) * 32 = 96 x 64
    REQUIRE(t.rows == 2);
    REQUIRE(t.cols == 3);
    REQUIRE(t.tiles.size() == 7);
    const RgbImage stage2 = resize_pillow(resize_pillow(img, 96, 58, Resample::Lanczos), 96, 64, Resample::Lanczos);
    for (int r = 0; r < 2; ++r)
        for (int c = 0; c < 3; ++c) CHECK(t.tiles[size_t(r * 3 + c)].pixels == crop(stage2, c * 32, r * 32, 32, 32).pixels);
    CHECK(t.tiles.back().pixels == resize_pillow(stage2, 32, 32, Resample::Lanczos).pixels);
    const TiledImage single = preprocess_idefics3(img, 32, 32);
    CHECK(single.rows == 0);
    REQUIRE(single.tiles.size() == 1);
    CHECK(single.tiles[0].width == 32);
    CHECK(single.tiles[0].height == 32);
}

TEST_CASE("LLaVA shortest-edge resize and centre crop", "[preprocess]") {
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const RgbImage img = noise_image(20, 12, 4);
    // short 12 -> 8, long int(8 * 20 / 12) = 13; crop left (13 - 8) / 2 = 2, top 0.
    const RgbImage out = preprocess_llava(img, 8, LlavaResize::ShortestEdgeCrop, mean);
    REQUIRE(out.width == 8);
    REQUIRE(out.height == 8);
    CHECK(out.pixels == crop(resize_pillow(img, 13, 8, Resample::Bicubic), 2, 0, 8, 8).pixels);
    // Tall: 7 x 19 -> 8 x int(8 * 19 / 7) = 8 x 21, top (21 - 8) / 2 = 6.
    const RgbImage tall = noise_image(7, 19, 5);
    CHECK(preprocess_llava(tall, 8, LlavaResize::ShortestEdgeCrop, mean).pixels ==
          crop(resize_pillow(tall, 8, 21, Resample::Bicubic), 0, 6, 8, 8).pixels);
}

TEST_CASE("LLaVA pad-to-square fills with int(mean * 255) and centres the image", "[preprocess]") {
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};  // fill 122, 116, 104
    RgbImage img(4, 2);
    for (size_t i = 0; i < img.pixels.size(); i += 3) img.pixels[i] = 255, img.pixels[i + 1] = 0, img.pixels[i + 2] = 0;
    // Square canvas 4 x 4, image at rows 1..2; S = 4 keeps the size, so no resampling.
    const RgbImage out = preprocess_llava(img, 4, LlavaResize::PadToSquare, mean);
    REQUIRE(out.width == 4);
    REQUIRE(out.height == 4);
    for (int y = 0; y < 4; ++y) {
        const bool image_row = y == 1 || y == 2;
        for (int x = 0; x < 4; ++x) {
            INFO("x " << x << " y " << y);
            CHECK(int(out.at(x, y)[0]) == (image_row ? 255 : 122));
            CHECK(int(out.at(x, y)[1]) == (image_row ? 0 : 116));
            CHECK(int(out.at(x, y)[2]) == (image_row ? 0 : 104));
        }
    }
}

TEST_CASE("normalize_to_chw: (u8 / 255 - mean) / std, planar", "[preprocess]") {
    RgbImage tile(2, 1);
    tile.pixels = {0, 255, 51, 255, 0, 102};
    const float mean[3] = {0.5f, 0.5f, 0.2f}, stdv[3] = {0.5f, 0.5f, 0.4f};
    std::vector<float> out(6);
    normalize_to_chw(tile, mean, stdv, out.data());
    // R plane: -1, 1; G plane: 1, -1; B plane: (0.2 - 0.2) / 0.4 = 0, (0.4 - 0.2) / 0.4 = 0.5
    CHECK(out[0] == -1.0f);
    CHECK(out[1] == 1.0f);
    CHECK(out[2] == 1.0f);
    CHECK(out[3] == -1.0f);
    CHECK(std::fabs(out[4]) < 1e-7f);
    CHECK(std::fabs(out[5] - 0.5f) < 1e-6f);
    CHECK(out[4] == (51.0f / 255.0f - 0.2f) / 0.4f);
}
