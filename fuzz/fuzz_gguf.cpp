// libFuzzer target for the GGUF reader: any input must either parse or give one glimpse::Error
// line naming the file. Parsed files are then walked completely (every metadata value
// formatted and converted to JSON, every tensor's first and last byte read) and, when the
// writer accepts their contents, written again and re-read: a file GgufWriter produces must
// always parse.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "weights/gguf.h"

namespace {

const char* const kName = "fuzz.gguf";

// Errors must be one line that starts with the file name.
void check_message(const glimpse::Error& e) {
    const std::string m = e.what();
    if (m.rfind(std::string(kName) + ": ", 0) != 0 || m.find('\n') != std::string::npos) std::abort();
}

size_t walk(const glimpse::GgufFile& f) {
    size_t sink = 0;
    for (const auto& kv : f.metadata()) {
        sink += glimpse::gguf::format_value(kv.value).size();
        sink += glimpse::gguf::value_to_json(kv.value, 16).dump().size();
        // The typed accessors either convert or throw glimpse::Error.
        try { sink += f.u32(kv.key); } catch (const glimpse::Error& e) { check_message(e); }
        try { sink += f.str(kv.key).size(); } catch (const glimpse::Error& e) { check_message(e); }
        try { sink += f.i32_array(kv.key).size(); } catch (const glimpse::Error& e) { check_message(e); }
        try { sink += f.f32_array(kv.key).size(); } catch (const glimpse::Error& e) { check_message(e); }
    }
    for (const auto& t : f.tensors()) {
        if (f.find_tensor(t.name) != &t) std::abort();
        if (t.bytes() == 0) continue;
        const auto* p = static_cast<const volatile uint8_t*>(t.data);
        sink += p[0] + p[t.bytes() - 1];
    }
    return sink;
}

void rewrite(const glimpse::GgufFile& f) {
    std::vector<uint8_t> bytes;
    try {
        glimpse::GgufWriter w;
        for (const auto& kv : f.metadata()) w.set(kv.key, kv.value);
        for (const auto& t : f.tensors()) w.add_tensor(t);
        bytes = w.to_bytes();
    } catch (const glimpse::Error&) {
        return;  // e.g. a 100-byte tensor name: readable, but not something the writer emits
    }
    try {
        const auto g = glimpse::GgufFile::parse_memory(bytes.data(), bytes.size(), kName);
        if (g.metadata().size() != f.metadata().size() || g.tensors().size() != f.tensors().size()) std::abort();
    } catch (const glimpse::Error&) {
        std::abort();  // the writer produced a file the reader refuses
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const auto f = glimpse::GgufFile::parse_memory(data, size, kName);
        volatile size_t sink = walk(f);
        (void)sink;
        rewrite(f);
    } catch (const glimpse::Error& e) {
        check_message(e);
    }
    return 0;
}
