// Per-family image preprocessing, matching the Hugging Face image processors the checkpoints
// were trained with (MODELS.md 3.8 and 4.4, shared/golden/HF-PREPROCESSING.md 3 and 4), all
// resampling through resize_pillow (Pillow-exact). Output tiles are 8-bit RGB;
// normalize_to_chw turns a tile into the encoder's float input.
#pragma once

#include <vector>

#include "vision/image.h"

namespace glimpse {

// ---- SmolVLM / Idefics3 (transformers SmolVLMImageProcessor, PIL path) ----

// The sizes the processor goes through for a W x H image (all integer rules of the HF code,
// evaluated in double like Python):
//   stage 1: longest edge -> L (short side int(L / aspect) or int(L * aspect), made even, >= 1;
//            then the 4096 upper bound); LANCZOS
//   stage 2: each side rounded up to a multiple of M (the short side from int(long / aspect));
//            LANCZOS from the stage-1 image
//   split:   if a side exceeds M: rows = H2 / M, cols = W2 / M, plus a global image (the stage-2
//            image resized to M x M); otherwise rows = cols = 0 and one M x M frame.
struct Idefics3Plan {
    int longest_edge = 0;  // L actually used (smaller than asked when max_tiles capped it)
    int stage1_w = 0, stage1_h = 0;
    int stage2_w = 0, stage2_h = 0;
    int rows = 0, cols = 0;  // 0, 0 = not split
    int n_tiles() const { return rows * cols + 1; }  // tiles fed to the encoder, global included
};

// max_tiles (0 = no cap) is the per-image token budget: while rows * cols > max_tiles, L is
// lowered by M (2048 -> 1536 -> 1024 -> 512 for SmolVLM); at L <= M the image is one unsplit
// tile, so any cap is met. Error(Model) for a non-positive or absurd (> 16384) L or M.
Idefics3Plan plan_idefics3(int width, int height, int longest_edge, int tile_size, int max_tiles = 0);

struct TiledImage {
    int rows = 0, cols = 0;  // grid; 0, 0 = not split
    int tile_size = 0;
    std::vector<RgbImage> tiles;  // row by row, then the global image last when split
};

TiledImage preprocess_idefics3(const RgbImage& img, int longest_edge, int tile_size, int max_tiles = 0);

// ---- LLaVA-1.5 (CLIP image processor) ----

enum class LlavaResize {
    // llava-hf CLIPImageProcessor (the default, and what the golden references use): shortest
    // edge -> S with the long side int(S * long / short), BICUBIC; centre crop S x S at
    // top = (H' - S) / 2, left = (W' - S) / 2.
    ShortestEdgeCrop,
    // The original LLaVA repository (image_aspect_ratio = "pad"): paste the image centred on a
    // square canvas of side max(W, H) filled with int(mean[c] * 255), then as above.
    PadToSquare,
};

// size = S; mean = the processor's image_mean (only PadToSquare uses it, for the fill colour).
RgbImage preprocess_llava(const RgbImage& img, int size, LlavaResize mode, const float mean[3]);

// ---- both ----

// out[c][y][x] = (tile[y][x][c] / 255.0f - mean[c]) / std[c] in float32: bit-identical to the
// HF rescale (u8 * (1/255) in float64, cast to float32) followed by normalize.
void normalize_to_chw(const RgbImage& tile, const float mean[3], const float std[3], float* out /* [3][H][W] */);

}  // namespace glimpse
