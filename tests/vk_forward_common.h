// Shared by the Vulkan forward-pass tests (test_vk_forward.cpp, test_vk_batch.cpp): the
// embedded tiny SmolVLM's files, contexts on the test's device with other options, and the
// tolerance of logits computed on the device against the CPU's.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "core/vk_context.h"

namespace glimpse::test {

inline const std::filesystem::path kSource = GLIMPSE_SOURCE_DIR;
inline const std::filesystem::path kText = kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf";
inline const std::filesystem::path kMmproj = kSource / "weights" / "tiny" / "mmproj-tiny-smolvlm-f32.gguf";

// The test Context, shared without ownership (the test slots own it).
inline std::shared_ptr<vk::Context> borrow(vk::Context* ctx) {
    return std::shared_ptr<vk::Context>(std::shared_ptr<void>(), ctx);
}

// Another context on the test's device, with its options as `ctx` has them, changed by `change`.
inline std::shared_ptr<vk::Context> context_with(vk::Context* ctx,
                                                 const std::function<void(vk::ContextOptions&)>& change) {
    vk::ContextOptions o = ctx->options();
    change(o);
    return std::make_shared<vk::Context>(ctx->info().index, o);
}

inline int32_t argmax(const std::vector<float>& v) {
    return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

// Logits are O(10); float sums in another order differ by ~1e-5 relative per layer.
constexpr float kAbs = 2e-3f, kRel = 1e-3f;

}  // namespace glimpse::test
