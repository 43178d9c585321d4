// Per-thread scratch floats for paths that run once per batch (im2col of a patch embedding,
// a caption lane's tile pixels): the caller keeps a thread_local vector, and each use takes
// it over, grown if needed. Reused between calls, the memory is neither allocated, faulted
// in nor zeroed again (a fresh multi-megabyte block per call cost more system time than the
// copy it holds); a buffer grown past kKeptBytes is freed when its use ends, so one huge
// batch does not pin memory in a long-lived thread.
#pragma once

#include <cstddef>
#include <vector>

namespace glimpse {

class ScratchFloats {
public:
    static constexpr size_t kKeptBytes = size_t(32) << 20;

    ScratchFloats(std::vector<float>& store, size_t n) : v_(store) {
        if (v_.size() < n) v_.resize(n);
    }
    ~ScratchFloats() {
        if (v_.capacity() * sizeof(float) > kKeptBytes) std::vector<float>().swap(v_);
    }
    ScratchFloats(const ScratchFloats&) = delete;
    ScratchFloats& operator=(const ScratchFloats&) = delete;

    float* data() { return v_.data(); }

private:
    std::vector<float>& v_;
};

}  // namespace glimpse
