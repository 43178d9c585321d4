// The pictures `glimpse inspect` writes: the tiles the vision encoder is given (tiles.png) and,
// for every generated token, where in the image the decoder looked (attention.png).
#pragma once

#include <string>
#include <vector>

#include "fusion/mm_prompt.h"
#include "vision/image.h"

namespace glimpse {

// The tile sheet of fusion/tile_sheet.h (tiles in encoder order, patch grid drawn over them)
// with the caption lines written under it.
RgbImage tiles_picture(const std::vector<RgbImage>& tiles, const ImageGrid& grid, int patch,
                       const std::vector<std::string>& caption);

// One generated token and the attention it paid to the image.
struct StepAttention {
    std::string label;         // the token's text
    std::vector<float> image;  // [grid.n_embeddings()]: weight on each image token, in embedding order
    float image_share = 0;     // Σ image: the part of the attention that went to the image at all
};

// The tile sheet with every tile tinted by the weights of its image tokens: each tile's tokens
// form a side × side grid (side² = tokens_per_tile, row-major, as the Idefics3 pixel shuffle and
// the CLIP patch order lay them out), normalised by the largest weight: dark = ignored, bright
// yellow = the most looked-at token. Error(Model) when tokens_per_tile is not a square.
RgbImage attention_sheet(const std::vector<RgbImage>& tiles, const ImageGrid& grid, const float* weights);

// attention.png: a title line, then one cell per step (at most `per_row` to a row): the
// attention sheet shrunk to fit `cell` pixels, the token's text under it and the image share
// as a percentage.
RgbImage attention_strip(const std::vector<RgbImage>& tiles, const ImageGrid& grid,
                         const std::vector<StepAttention>& steps, const std::string& title, int cell = 160,
                         int per_row = 8);

}  // namespace glimpse
