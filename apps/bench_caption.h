// `glimpse bench --caption`: captioning throughput (images/min) of one image at a time
// against --batch N, on generated pictures, with the model loaded once (apps/caption_engine.h).
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace glimpse::app {

struct CaptionBenchOptions {
    std::string model, mmproj;   // -m / --mmproj; neither and no --random: the default model
    std::string random;          // --random smolvlm-256m | smolvlm-500m: a random-weight pair
    DType type = DType::Q8_0;    // text weights of the random pair (its mmproj is F16, as BASELINE.md's)
    std::string save;            // --save FILE: keep the random text model there, its mmproj beside it
    int images = 8;              // pictures per run
    int image_size = 0;          // their width and height (0: 512 for --random, else 256)
    int batch = 8;               // compared with --batch 1
    int lanes = 0;               // --lanes for the batch-N runs (0: the engine's choice)
    int max_tokens = 32;         // -n
    int max_tiles = 0;           // --image-max-tiles
    int repeats = 1;             // -r: runs of each, alternating; medians reported
    int threads = 0;
    std::string device = "auto"; // --device: where both towers run (apps/device_option.h)
    bool json = false;
};

// Prints images/min for --batch 1 and --batch N (and against llama.cpp's 1.47 images/min
// for the random SmolVLM-256M pair, BASELINE.md). Returns the exit code.
int run_caption_bench(const CaptionBenchOptions& opt);

}  // namespace glimpse::app
