// libFuzzer target for llama2.c checkpoints and tokenizers. Byte 0 picks the parser:
//   even: the rest is a checkpoint;
//   odd:  bytes 1-2 are a little-endian vocabulary size, the rest is a tokenizer file.
// The payload is copied into its own allocation, which is aligned like a mapped file
// (the checkpoint parser requires 4-byte aligned floats) and exactly as long as the payload,
// so ASan catches any over-read.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "weights/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const bool tokenizer = data[0] & 1;
    const size_t skip = tokenizer ? 3 : 1;
    if (size < skip) return 0;
    const int vocab = tokenizer ? int(data[1]) | int(data[2]) << 8 : 0;
    std::vector<uint8_t> payload(data + skip, data + size);
    volatile uint8_t sink = 0;
    try {
        if (tokenizer) {
            const auto tok = glimpse::Llama2cTokenizer::parse_memory(payload.data(), payload.size(), "fuzz-tok.bin", vocab);
            for (const auto& p : tok.pieces()) sink = sink + uint8_t(p.size());
        } else {
            const auto ck = glimpse::Llama2cCheckpoint::parse_memory(payload.data(), payload.size(), "fuzz.bin");
            for (const glimpse::Tensor& t : ck.tensors()) {
                const auto* p = static_cast<const uint8_t*>(t.data);
                sink = sink + p[0] + p[t.bytes() - 1];
            }
        }
    } catch (const glimpse::Error&) {
    }
    return 0;
}
