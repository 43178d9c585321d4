// The forward pass of the vision towers (vision/vit_model.h) plus the projector, in plain
// float32. All tiles of one call go through as one batch: every linear layer is ONE matmul
// over n_tiles × n_positions rows; attention runs per tile and head.
//
//   per tile:  x = patch_conv(tile) (+ bias)                      [n_patches][D]
//              CLIP: x = [class_embd; x]                          [n_patches + 1][D]
//              x += position_embd;  CLIP: x = pre_ln(x)
//   blocks:    x += o(attn(q(ln1 x), k(ln1 x), v(ln1 x)))         (non-causal, scale 1/√hd)
//              x += fc2(act(fc1(ln2 x)))                          act: tanh-GELU / quick-GELU
//   SigLIP:    x = post_ln(x);  CLIP: drop the class row          features [n_patches][D]
//   projector: fusion/projector.h                                 [tokens_per_tile][n_out]
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "fusion/projector.h"
#include "vision/vit_model.h"

namespace glimpse {

// Sequence rows per batch by default: 4 SmolVLM tiles (4 × 1024 rows) or 7 LLaVA-1.5 images
// (7 × 577). Larger batches do not make the matmuls faster and would only cost memory
// (about 4 KiB of scratch per row and 1000 floats of width).
constexpr int64_t kDefaultVisionBatchRows = 4096;

// Wall time of one encode, by stage (the -v report). Accumulates over calls.
struct VisionTimings {
    double embed_ms = 0;      // patch embedding, class token, positions, pre-LN
    double attention_ms = 0;  // LN1, Q/K/V, attention, output projection
    double attention_core_ms = 0;  // of which softmax(Q·Kᵀ)·V alone
    double mlp_ms = 0;        // LN2, fc1, activation, fc2
    double project_ms = 0;    // post-LN, class-row drop, projector
    // On Vulkan: the encoder's submissions as a whole (upload, every block, post-LN; one command
    // buffer per group of tiles, not split into the stages above). project_ms: the projector.
    double device_ms = 0;
    int64_t tiles = 0;
    double encode_ms() const { return embed_ms + attention_ms + mlp_ms + device_ms; }
    double total_ms() const { return encode_ms() + project_ms; }
};

// tiles [n_tiles][3][S][S]: normalised planar RGB, S = config.image_size.
// out [n_tiles · tokens_per_tile][projected_dim]. Tiles are processed in batches of at most
// max_batch_rows sequence rows (bounding the scratch memory; at least one tile per batch).
// `trace`, when set, receives named intermediates of each batch as [rows][cols] arrays whose
// rows are the batch's tiles one after another (names: patch_embd, embeddings, pre_ln,
// layer_inp_normed-N, Qcur-N, Kcur-N, Vcur-N, kqv_out-N, attn_out-N, ffn_inp-N,
// ffn_inp_normed-N, ffn_up_b-N, ffn_act-N, ffn_out-N, layer_out-N, post_ln, features,
// then the projector's).
void encode_tiles(const VisionModel& m, const float* tiles, int n_tiles, float* out, ThreadPool& pool,
                  VisionTimings* t = nullptr, const ActivationTrace* trace = nullptr,
                  int64_t max_batch_rows = kDefaultVisionBatchRows);

// The encoder alone: out [n_tiles · n_patches][n_embd], the features the projector takes
// (after post-LN for SigLIP; class row dropped for CLIP).
void encode_tiles_features(const VisionModel& m, const float* tiles, int n_tiles, float* out, ThreadPool& pool,
                           VisionTimings* t = nullptr, const ActivationTrace* trace = nullptr,
                           int64_t max_batch_rows = kDefaultVisionBatchRows);

// Fills `out` [3][S][S] from an interleaved uint8 RGB tile [S][S][3] as the HF processors do:
// (u8 / 255.0f - mean[c]) / std[c] in float32.
void normalize_tile_u8(const VisionConfig& c, const uint8_t* rgb, float* out);

// A random-weight model of the given shape (F32 weights; F16 matrices when `f16`), built in
// memory for benchmarks and tests. SigLIP + Idefics3 projector to `n_out`.
VisionModel make_random_siglip(int image_size, int patch_size, int n_embd, int n_heads, int n_ff, int n_layers,
                               int scale_factor, int n_out, bool f16, uint64_t seed);

// Encode speed of a SmolVLM-256M-shaped tower (512² tile, patch 16, width 768, 12 heads, FFN
// 3072, 12 blocks, projector to 576) with random weights, `n_tiles` tiles in one batch, on `pool`.
struct VitBenchResult {
    double wall_ms_per_tile = 0;  // median over the repeats
    // Process CPU time / pool threads, per tile (median): what the wall time would be on idle
    // cores, for a shared machine (it slightly overstates it: pool threads spin briefly).
    double cpu_ms_per_tile = 0;
    double gflop_per_tile = 0;    // multiply-adds × 2 of the matmuls and attention
    VisionTimings timings;        // stages, summed over the repeats
};
VitBenchResult bench_vit_tiles(ThreadPool& pool, int n_tiles = 1, int repeats = 1, bool f16 = false);

// GFLOP of encoding one tile: 2 × the multiply-adds of the patch convolution, the blocks'
// matmuls and attention, and the projector.
double vision_gflop_per_tile(const VisionConfig& c);

}  // namespace glimpse
