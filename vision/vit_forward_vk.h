// The vision towers and the projector (vision/vit_forward.h, fusion/projector.h) on a Vulkan
// device: the same steps as core/vk_ops.h + core/vk_ops_vision.h dispatches.
//
//   per tile:  cols = im2col(tile); x = cols · patch_wᵀ (+ bias)      [P][3p²] -> [P][D]
//              CLIP: x = [class_embd; x] (copies); x += position_embd; CLIP: pre-LN
//   blocks:    as the CPU (LayerNorm, Q/K/V + bias, non-causal attention, output, MLP)
//   SigLIP:    post-LN; the tile's P feature rows are copied into the batch's features
// On a GPU every step is recorded once for all tiles of a group (matmuls of g·T rows,
// attention of g batches), not once per tile, so that each dispatch has enough workgroups to
// fill a large GPU. A CPU device (lavapipe) takes the tiles one at a time: its few threads are
// busy with one tile's dispatches, and a tile's activations stay closer in its caches (SigLIP,
// 2 tiles a call on lavapipe: 21.0 s a tile at once, 19.5 one by one). tiles_at_once() decides;
// vk::ContextOptions::vit_tiles_at_once overrides it.
//   projector: Idefics3: pixel_shuffle of all tiles at once, one matmul;
//              Mlp: matmul + bias, erf-GELU, matmul + bias
//
// VitVulkan uploads every weight once (matrices in their file types) and keeps the activation
// buffers of one group of tiles; encode_tiles() hands its work here when the model has one
// (VisionModel::vulkan). Per group of up to kVitVulkanGroup tiles: one upload of the tiles,
// one command buffer for the encoder (every tile, every layer), one for the projector, one
// download.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/vk_buffer.h"
#include "core/vk_context.h"
#include "core/vk_ops.h"
#include "core/vk_pipeline.h"
#include "vision/vit_forward.h"
#include "vision/vit_model.h"

namespace glimpse {

constexpr int kVitVulkanGroup = 8;  // tiles per submission at most (bounds the device memory of a batch)

// Whether VitVulkan records a group's tiles through each step at once (else one by one).
bool tiles_at_once(const vk::Context& ctx);

class VitVulkan {
public:
    // Uploads `m`'s weights. Error(Model) naming a tensor whose type has no Vulkan kernel,
    // Error(Device) when the device lacks memory or a feature.
    VitVulkan(std::shared_ptr<vk::Context> ctx, const VisionModel& m);
    ~VitVulkan();
    VitVulkan(const VitVulkan&) = delete;
    VitVulkan& operator=(const VitVulkan&) = delete;

    // As encode_tiles (with_projector) / encode_tiles_features. Serialised by a mutex.
    void encode(const float* tiles, int n_tiles, float* out, bool with_projector, VisionTimings* t);

    uint64_t weight_bytes() const { return bytes_; }
    const std::string& device_label() const { return ctx_->label(); }

private:
    struct Layer {
        vk::Buffer ln1_w, ln1_b, q_b, k_b, v_b, o_b, ln2_w, ln2_b, fc1_b, fc2_b;
        vk::DeviceMatrix q, k, v, o, fc1, fc2;
    };
    int max_group() const;
    void reserve(int group);
    void record_group(int g);
    void record_pass(int first, int g);
    void record_projector(int n_tiles);

    std::shared_ptr<vk::Context> ctx_;  // first: destroyed after every buffer below
    VisionConfig c_;
    uint64_t bytes_ = 0;
    vk::DeviceMatrix patch_, proj_fc_, mm0_, mm2_;
    vk::Buffer patch_b_, class_embd_, position_, pre_ln_w_, pre_ln_b_, post_ln_w_, post_ln_b_, mm0_b_, mm2_b_;
    std::vector<Layer> layers_;
    // Activations of a group of tiles (T = n_positions rows a tile).
    int group_ = 0, pass_ = 0;  // tiles of a group, of one pass through the layers
    vk::Buffer tiles_, cols_, x_, h_, q_, k_, v_, att_, ff_, features_, shuffled_, hidden_, out_;
    std::unique_ptr<vk::Recorder> rec_;
    std::mutex mutex_;
};

}  // namespace glimpse
