// libFuzzer target for image decoding: any bytes must either decode into a consistent RGB
// image within the limits or give one glimpse::Error line (BadInput) naming the input.
// Small limits keep every decode cheap; a decoded image is also run through the Pillow-exact
// resampler, whose coefficients depend on the decoded size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "vision/image.h"
#include "vision/resample.h"

namespace {

const char* const kName = "fuzz.img";

void check_message(const glimpse::Error& e) {
    const std::string m = e.what();
    if (e.kind() != glimpse::ErrorKind::BadInput || m.rfind(std::string(kName) + ": ", 0) != 0 ||
        m.find('\n') != std::string::npos)
        std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    glimpse::ImageLimits lim;
    lim.max_side = 512;
    lim.max_pixels = 64 * 1024;
    try {
        const glimpse::RgbImage img = glimpse::decode_image(data, size, kName, lim);
        if (img.width <= 0 || img.height <= 0 || img.width > lim.max_side || img.height > lim.max_side ||
            img.pixels.size() != size_t(img.width) * size_t(img.height) * 3)
            std::abort();
        const glimpse::RgbImage small = glimpse::resize_pillow(img, 7, 5, glimpse::Resample::Lanczos);
        volatile uint8_t sink = small.pixels[0];
        (void)sink;
    } catch (const glimpse::Error& e) {
        check_message(e);
    }
    return 0;
}
