// Shared by the tests/test_vk_*.cpp files: one Vulkan context per configuration for the whole
// test run (validation layers on where installed, so that any validation error fails the test
// that caused it), and the skip rule: Vulkan tests are skipped only where no Vulkan device
// exists at all, and say so. Also the op tests' weight and matmul helpers.
#pragma once

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/quant.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "core/vk_buffer.h"
#include "core/vk_context.h"
#include "core/vk_ops.h"
#include "core/vk_pipeline.h"
#include "tests/helpers.h"

namespace glimpse::test {

struct VkTestSlot {
    bool tried = false;
    std::unique_ptr<vk::Context> ctx;
};
// [0]: subgroups off, [1]: on. Emptied at the end of the test run by a Catch2 listener
// (test_vk_device.cpp): destroyed by static destructors at exit instead, the contexts would
// outlive the validation layer's own globals.
inline VkTestSlot* vk_test_slots() {
    static VkTestSlot slots[2];
    return slots;
}

// nullptr when this machine has no Vulkan device (or no loader/driver).
inline vk::Context* vk_test_context(bool subgroups = true) {
    VkTestSlot& s = vk_test_slots()[subgroups ? 1 : 0];
    if (!s.tried) {
        s.tried = true;
        std::vector<vk::DeviceInfo> devices;
        try {
            vk::Instance probe;
            devices = probe.devices();
        } catch (const Error&) {
        }
        if (!devices.empty()) {
            const vk::DeviceChoice c = vk::select_device("vulkan", devices);
            vk::ContextOptions o;
            o.validation = vk::Validation::IfAvailable;
            o.allow_subgroup_ops = subgroups;
            s.ctx = std::make_unique<vk::Context>(c.vulkan_index, o);
        }
    }
    return s.ctx.get();
}

#define VK_OR_SKIP(ctx, ...)                                                    \
    ::glimpse::vk::Context* ctx = ::glimpse::test::vk_test_context(__VA_ARGS__); \
    if (!ctx) {                                                                  \
        WARN("SKIPPED: no Vulkan device on this machine");                       \
        return;                                                                  \
    }

// Every element within |got − ref| ≤ abs + rel·|ref|; reports the first mismatch.
inline void require_close(const std::vector<float>& got, const std::vector<float>& ref, float abs_tol,
                          float rel_tol) {
    REQUIRE(got.size() == ref.size());
    for (size_t i = 0; i < got.size(); ++i)
        if (!close_enough(got[i], ref[i], abs_tol, rel_tol)) {
            INFO("element " << i << ": got " << got[i] << ", reference " << ref[i]);
            REQUIRE(close_enough(got[i], ref[i], abs_tol, rel_tol));
        }
}

// The pool the op tests' CPU references run on.
inline ThreadPool& reference_pool() {
    static ThreadPool p(1);
    return p;
}

// An attention case of `batch` independent batches (vk::attention's n_batch).
struct AttentionShape {
    int64_t batch, n_q, n_kv, heads, kv_heads, dim;
    bool causal;
    int64_t q_pos0;
};

// A contiguous 2-D weight tensor {K, N} of type t holding `values` (quantized as the file
// writers do), with its own storage.
inline Tensor make_weight(DType t, int64_t K, int64_t N, const std::vector<float>& values) {
    Tensor w;
    w.name = "w." + std::string(dtype_name(t));
    w.dtype = t;
    w.n_dims = 2;
    w.ne = {K, N, 1, 1};
    w.nb = contiguous_strides(t, w.ne);
    auto bytes = std::make_shared<std::vector<uint8_t>>(w.nb[1] * uint64_t(N));
    for (int64_t r = 0; r < N; ++r) quantize_row(t, values.data() + r * K, bytes->data() + r * w.nb[1], K);
    w.data = bytes->data();
    w.storage = std::shared_ptr<const void>(bytes, bytes->data());
    return w;
}

// y = x·Wᵀ for M rows of x, W uploaded, through vk::matmul on `path` in one submission.
inline std::vector<float> run_matmul(vk::Context& ctx, const Tensor& W, const std::vector<float>& x, int64_t M,
                                     vk::MatmulPath path) {
    const vk::DeviceMatrix dw = vk::upload_matrix(ctx, W);
    vk::Buffer dx = vk::upload_floats(ctx, x);
    vk::Buffer dy(ctx, uint64_t(M * W.ne[1]) * 4);
    vk::Recorder rec(ctx);
    rec.begin();
    vk::matmul(rec, dw, dx, dy, M, path);
    rec.submit_and_wait();
    return vk::download_floats(ctx, dy, uint64_t(M * W.ne[1]));
}

}  // namespace glimpse::test
