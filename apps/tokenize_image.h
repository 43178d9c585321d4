// `glimpse tokenize --image IMG`: what a vision-language model makes of an image and a prompt.
#pragma once

#include <string>

namespace glimpse::app {

struct TokenizeImageOptions {
    std::string model, mmproj, image, prompt, grid_png;
    int max_tiles = 0;
    bool json = false;
};

// Prints the image's tile grid and token count, then the prompt's tokens with each run of
// image positions shown as one line; writes the tile sheet PNG when grid_png is set.
int run_tokenize_image(const TokenizeImageOptions& o);

}  // namespace glimpse::app
