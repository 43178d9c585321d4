// libFuzzer target: any bytes given to the safetensors parser must either parse into views
// that lie inside the input, or fail with glimpse::Error; never crash, hang or over-read.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "weights/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const auto f = glimpse::SafetensorsFile::parse_memory(data, size, "fuzz.safetensors");
        // Touch the first and last byte of every view so ASan sees any out-of-bounds view.
        volatile uint8_t sink = 0;
        for (const glimpse::Tensor& t : f.tensors()) {
            if (t.bytes() == 0) continue;
            const auto* p = static_cast<const uint8_t*>(t.data);
            sink = sink + p[0] + p[t.bytes() - 1];
            (void)f.find_tensor(t.name);
        }
        for (const auto& [k, v] : f.metadata()) sink = sink + uint8_t(k.size() + v.size());
    } catch (const glimpse::Error&) {
    }
    return 0;
}
