// `glimpse tokenize --image IMG`: what a vision-language model makes of an image and a prompt.
#pragma once

#include <cstdio>
#include <string>

#include "fusion/vlm.h"

namespace glimpse::app {

struct TokenizeImageOptions {
    std::string model, mmproj, image, prompt, grid_png;
    int max_tiles = 0;
    bool json = false;
};

// Prints the image's tile grid and token count, then the prompt's tokens with each run of
// image positions shown as one line; writes the tile sheet PNG when grid_png is set.
int run_tokenize_image(const TokenizeImageOptions& o);

// What `tokenize --image` prints as text, to `out`: the image size, its tiles and image-token
// count, then the prompt one token per line ("   id  'piece'") with each run of image positions
// as one line ("  [tile r1 c2: 64 image positions]"). `glimpse inspect` writes it to tokens.txt.
void print_image_prompt(std::FILE* out, const VlmModel& m, const std::string& image_name, const RgbImage& img,
                        const ImageGrid& g, const MmPrompt& prompt);

// "tile r2 c3", "global image", or "image" (an unsplit one): where an image run sits.
std::string image_run_place(const ImageGrid& g, const PromptPiece& p);
// A token's text on one line: "\n" for newlines, invalid UTF-8 replaced.
std::string token_text(const Tokenizer& tok, int32_t id);

}  // namespace glimpse::app
