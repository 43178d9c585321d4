// `glimpse bench --device vulkan[:i]`: the model benchmark on a Vulkan device — encode ms per
// tile of the vision tower, prefill and decode tokens/s of the text model — with the towers
// placed as the other commands place them (apps/device_option.h).
#pragma once

#include <string>

#include "apps/device_option.h"
#include "core/dtype.h"

namespace glimpse::app {

struct DeviceBenchOptions {
    DeviceArgs device;
    std::string model, mmproj;  // -m / --mmproj; neither: the embedded tiny SmolVLM
    std::string random;         // --random SHAPE: a random-weight text model of that shape
    DType type = DType::Q8_0;   // its weight type
    uint64_t seed = 1;
    bool vit = false;           // --vit: the random SmolVLM-256M-shaped tower only
    int tiles = 4;              // tiles encoded per call
    int prompt = 512, gen = 128, repeats = 3;
    bool json = false;
    bool profile = false;       // --profile: GPU time by shader of one encode, prefill and decode
};

// Returns the exit code. Error(Device) when the device cannot be used.
int run_device_bench(const DeviceBenchOptions& o);

}  // namespace glimpse::app
