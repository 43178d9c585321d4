// Projectors: the bridge from the vision encoder's output to the text model's embedding space.
//
//   Idefics3 (SmolVLM, MODELS.md §3.5; HF SmolVLMConnector): per tile, pixel shuffle by s
//     (each output token = an s×s block of patches, row-major in the block, channels
//     concatenated: [G²][D·s²] with G = patches_per_side / s), then y = x · fcᵀ (no bias).
//   Mlp (LLaVA-1.5, §4.1; HF LlavaMultiModalProjector): y = gelu_erf(x · mm0ᵀ + b0) · mm2ᵀ + b2.
//
// This header depends on core only, so the vision tower (which owns the weights) and fusion
// code can both include it.
#pragma once

#include <cstdint>
#include <functional>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace glimpse {

// Receives named intermediate activations [rows][cols] for debugging and layer-by-layer tests
// (the data is only valid during the call).
using ActivationTrace = std::function<void(const char* name, const float* data, int64_t rows, int64_t cols)>;

enum class ProjectorKind { Idefics3, Mlp };

struct ProjectorConfig {
    ProjectorKind kind = ProjectorKind::Idefics3;
    int scale_factor = 1;  // Idefics3: pixel-shuffle factor s (4 for SmolVLM); Mlp: 1
    int n_hidden = 0;      // Mlp: width after mm.0 (4096 for LLaVA-1.5); Idefics3: 0
    int n_out = 0;         // output width = the text model's n_embd
};

struct ProjectorWeights {
    Tensor fc;              // Idefics3: ne {D·s², n_out}, no bias
    Tensor mm0_w, mm0_b;    // Mlp: ne {D, n_hidden} / [n_hidden] F32
    Tensor mm2_w, mm2_b;    // Mlp: ne {n_hidden, n_out} / [n_out] F32
};

// Rows one tile of `n_patches` encoder rows (a square grid) becomes.
int projector_tokens(const ProjectorConfig& c, int n_patches);

// Scratch floats project() needs for `n_tiles` tiles of `n_patches` rows of width `n_embd`.
int64_t projector_scratch_floats(const ProjectorConfig& c, int n_tiles, int n_patches, int n_embd);

// features [n_tiles][n_patches][n_embd] (the encoder's output without any class row) ->
// out [n_tiles · projector_tokens][n_out]. One matmul per layer over all tiles' rows.
// `scratch` must hold projector_scratch_floats(...) floats. `trace`, when set, gets the named
// intermediates ("pixel_shuffle" / "mm0", "mm0_gelu") as [rows][cols] arrays.
void project(const ProjectorConfig& c, const ProjectorWeights& w, const float* features, int n_tiles,
             int n_patches, int n_embd, float* out, float* scratch, ThreadPool& pool,
             const ActivationTrace* trace = nullptr);

}  // namespace glimpse
