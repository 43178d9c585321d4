// CPU float32 kernels shared by the vision and text towers (everything except matmul and the
// quantized formats). Each op is one plain function and is the specification that the SIMD and
// Vulkan paths are tested against (STYLE.md "the CPU reference is the specification").
//
// Conventions:
// - Activations are float32 in contiguous row-major buffers; a "row" is the innermost axis.
//   Shapes are written outermost first, e.g. x [rows][n] means x[r * n + i].
// - Sizes are int64_t; a negative size or a shape that does not fit is a programming error and
//   throws std::invalid_argument. Problems with model data (a token id outside the embedding
//   table, a kernel tensor of the wrong shape or type) throw glimpse::Error(ErrorKind::Model)
//   naming the tensor.
// - "In place allowed" means y may be the same pointer as the input; otherwise inputs and
//   outputs must not overlap.
// - Ops that take a ThreadPool split independent rows/heads across its threads; every row is
//   computed the same way whatever the split, so results do not depend on the thread count.
//
// Formulas follow MODELS.md §1 (norms, attention, activations, RoPE), §3.4-3.5 (SigLIP patch
// embedding, Idefics3 pixel shuffle) and §4.3 (CLIP).
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace glimpse::ops {

// ---- element-wise (in place allowed) -------------------------------------------------------

void add(const float* a, const float* b, float* y, int64_t n);  // y = a + b        [n]
void mul(const float* a, const float* b, float* y, int64_t n);  // y = a * b        [n]
void scale(const float* x, float s, float* y, int64_t n);       // y = x * s        [n]
void add_row_bias(float* x, const float* bias, int64_t rows, int64_t n);  // x [rows][n] += bias [n]

// ---- norms (in place allowed; sums in double like ggml) -------------------------------------

// x, y [rows][n]; weight [n] or nullptr (= 1).  y = x / sqrt(mean(x²) + eps) * w
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps,
              ThreadPool& pool);

// x, y [rows][n]; weight, bias [n], either may be nullptr.
// μ = mean(x), σ² = mean((x − μ)²) (biased), y = (x − μ) / sqrt(σ² + eps) * w + b
void layer_norm(const float* x, const float* weight, const float* bias, float* y, int64_t rows,
                int64_t n, float eps, ThreadPool& pool);

// ---- softmax (in place) ---------------------------------------------------------------------

// x [rows][n]: each row becomes exp(x − max) / Σ exp(x − max).
void softmax_rows(float* x, int64_t rows, int64_t n);

// Causal variant: row r is a softmax over columns [0, r + offset] only (clamped to n); the
// other columns become 0. A row that sees no column (r + offset < 0) becomes all 0.
void softmax_rows_causal(float* x, int64_t rows, int64_t n, int64_t offset);

// ---- rotary position embedding (MODELS.md §1.4) ---------------------------------------------

enum class RopeStyle {
    // ggml GGML_ROPE_TYPE_NORMAL: rotates (x[2i], x[2i+1]). Used for GGUF `llama` files, whose
    // Q/K rows the converter permuted. θ_i as ggml computes it: θ_0 = pos, θ_{i+1} = θ_i · s
    // with s = powf(base, −2/d), all in float: the same angles llama.cpp computes (cosf/sinf
    // of them from the C library).
    AdjacentPairs,
    // HF rotate_half (ggml NEOX): rotates (x[i], x[i + d/2]). Used for HF safetensors Llama.
    // θ_i as HF computes it in float32: inv_freq_i = 1 / powf(base, (2i)/d), angle =
    // float(pos) · inv_freq_i.
    HalfSplit,
};

// x [n_tokens][n_heads][head_dim] in place; positions [n_tokens]. Full rotary (all head_dim
// values rotate; head_dim must be even). For pair i: a = pos · θ_i,
// (u, v) -> (u cos a − v sin a, u sin a + v cos a), where (u, v) is the style's pair.
void rope(float* x, const int32_t* positions, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
          float theta_base, RopeStyle style);

// ---- activations (in place allowed; computed in float32 from the formula) --------------------

void gelu_tanh(const float* x, float* y, int64_t n);   // 0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))
void gelu_erf(const float* x, float* y, int64_t n);    // 0.5x(1 + erf(x/√2))
void quick_gelu(const float* x, float* y, int64_t n);  // x · sigmoid(1.702x)
void silu(const float* x, float* y, int64_t n);        // x · sigmoid(x)
void swiglu(const float* gate, const float* up, float* y, int64_t n);  // silu(gate) · up

// The same, with [0, n) cut into chunks across the pool's threads (the ViT MLP runs these over
// 1024 × 3072 values per layer).
void gelu_tanh(const float* x, float* y, int64_t n, ThreadPool& pool);
void gelu_erf(const float* x, float* y, int64_t n, ThreadPool& pool);
void quick_gelu(const float* x, float* y, int64_t n, ThreadPool& pool);
void silu(const float* x, float* y, int64_t n, ThreadPool& pool);
void swiglu(const float* gate, const float* up, float* y, int64_t n, ThreadPool& pool);

// ---- gather, concat, permute ----------------------------------------------------------------

// out [n_ids][dim] = rows ids[] of `table` (ne = {dim, n_rows, 1, 1}, any dtype that
// dequantize_row supports; rows addressed through nb[1]). An id outside [0, n_rows) throws
// glimpse::Error(Model) naming the table.
void get_rows(const Tensor& table, const int32_t* ids, int64_t n_ids, float* out);

// y [rows][na + nb]: each row is a's row followed by b's row (the inner axis).
void concat_inner(const float* a, const float* b, float* y, int64_t rows, int64_t na, int64_t nb);
// y [rows_a + rows_b][n]: a's rows then b's rows (the outer axis).
void concat_outer(const float* a, int64_t rows_a, const float* b, int64_t rows_b, float* y, int64_t n);

// General permutation of a contiguous 4-D float32 array, axes numbered in ggml order (axis 0 is
// innermost). Output axis k is input axis order[k]: y has ne_y[k] = ne[order[k]] and
// y[i0, i1, i2, i3] = x[j] where j[order[k]] = i_k. Example: order {0, 2, 1, 3} swaps axes 1
// and 2, turning [n_tokens][n_heads][head_dim] (ne {d, H, T}) into [n_heads][n_tokens][head_dim].
// (This is numpy's transpose(axes) read in ggml order; ggml_permute's arguments are the inverse.)
void permute(const float* x, const int64_t ne[4], const int order[4], float* y);

// x [rows][cols] -> y [cols][rows].
void transpose_2d(const float* x, float* y, int64_t rows, int64_t cols);

// ---- vision ---------------------------------------------------------------------------------

// Conv2d with kernel p, stride p, no padding (SigLIP §3.4 step 1, CLIP §4.3 step 1), computed
// as im2col + matmul (core/matmul.h), so it runs at matmul speed.
// image [C][H][W] planar; kernel ne = {p, p, C, D} (HF weight [D][C][p][p]) in F32, F16 or
// BF16; bias [D] or nullptr. out [(H/p)·(W/p)][D], patches in row-major order: patch
// (r, c) is row r·(W/p) + c; pixels beyond the last whole patch are ignored (floor, like a
// "valid" convolution).  out[r·(W/p)+c][o] = b[o] + Σ_{ch,kh,kw} K[o][ch][kh][kw] ·
// image[ch][r·p + kh][c·p + kw]. n_images images one after another (image i at
// image + i·C·H·W, its patches at out + i·(H/p)·(W/p)·D) share one matmul, so the kernel is
// prepared for the GEMM once for all of them; each row is the same as for its image alone.
void patch_embed(const float* image, int64_t C, int64_t H, int64_t W, const Tensor& kernel,
                 const float* bias, int64_t p, float* out, ThreadPool& pool, int64_t n_images = 1);

// Idefics3 / SmolVLM pixel shuffle (space-to-depth, MODELS.md §3.5).
// x [seq][dim] with seq = side², side % s == 0; y [seq/s²][dim·s²]. With G = side/s:
//   y[R·G + C][dh·(s·dim) + dw·dim + e] = x[(s·R + dh)·side + (s·C + dw)][e]
// for R, C ∈ [0, G), dh, dw ∈ [0, s), e ∈ [0, dim): each output token is the s×s block of
// patches, row-major within the block, channels concatenated.
void pixel_shuffle(const float* x, int64_t seq, int64_t dim, int64_t s, float* y);

// ---- attention (MODELS.md §1.2) -------------------------------------------------------------

// q [n_q][n_heads][head_dim], k and v [n_kv][n_kv_heads][head_dim] (v: the KvCache layout),
// out [n_q][n_heads][head_dim].  Per query head h (KV head g = h / (n_heads / n_kv_heads)):
//   s_j = scale · q_h · k_{j,g};  p = softmax_j(s) over visible keys;  out_h = Σ_j p_j v_{j,g}
// causal: query row i sits at absolute position q_pos0 + i and sees keys 0 .. q_pos0 + i
// (clamped to n_kv); otherwise it sees all n_kv keys. Softmax in float32 with max subtraction.
// Scores are computed per query row with a per-thread scratch of n_kv floats, never the whole
// [n_heads][n_q][n_kv] matrix. n_heads must be a multiple of n_kv_heads.
void attention(const float* q, const float* k, const float* v, float* out, int64_t n_q, int64_t n_kv,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale, bool causal,
               int64_t q_pos0, ThreadPool& pool);

// The same with the keys already transposed, as KvCache keeps them: key j of KV head g,
// dimension d at kt[(g · head_dim + d) · kt_ld + j] (kt_ld ≥ n_kv). No step copies the keys.
void attention_kt(const float* q, const float* kt, int64_t kt_ld, const float* v, float* out, int64_t n_q,
                  int64_t n_kv, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale, bool causal,
                  int64_t q_pos0, ThreadPool& pool);

}  // namespace glimpse::ops
