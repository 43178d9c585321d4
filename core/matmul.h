// The CPU matrix multiplication of a weight matrix with float32 activations: every linear
// layer of both towers (ViT patches, projector, decoder prefill and decode) goes through here.
//
//   y[m][n] = Σ_k x[m][k] · W[n][k]      (y = x · Wᵀ, ggml_mul_mat(W, x))
//
//   W: ne = {K, N} in ggml order (N rows of K values, row stride W.nb[1]); dtype F32, F16, BF16,
//      Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or Q6_K (K a multiple of the block size).
//   x: [M][K] float32, contiguous.   y: [M][N] float32, contiguous, must not overlap x.
//
// How it computes (matmul_reference is the specification; docs/PERFORMANCE.md has figures):
// - M < kMatvecMaxM (decode): each weight row is streamed once and dotted with the M
//   activation rows. Float weights (F32/F16/BF16) are converted to f32 and multiplied in f32.
//   Quantized weights are multiplied with integers, as ggml does: each activation row is first
//   quantized to 8 bits per 32-block (Q8_0, for the legacy types) or per 256-block (Q8_K, for
//   the K types), so the result differs from the reference by that rounding (≤ about
//   Σ_k |x_k·w_k| / 127 in the worst case, far less in practice).
// - M ≥ kMatvecMaxM (ViT, prefill): panels of W are converted/dequantized to f32 once and a
//   register-blocked FMA kernel runs over all M rows, in f32 throughout.
// Threads split the output columns N (or the rows M when N is too small to share). Each y
// element is computed by the same sequence of operations whatever the thread count, so the
// result does not depend on it.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "core/tensor.h"

namespace glimpse {

class ThreadPool;

// Auto: the fastest kernels this CPU has (AVX2+FMA+F16C where present, with an AVX-512F GEMM
// tile where that is present too). Avx2: never the AVX-512 tile (it gives the same bits; tests
// and benchmarks compare the two). Scalar: the portable C++ kernels, which are what runs on
// other CPUs; tests force it to check them.
enum class KernelPath { Auto, Avx2, Scalar };

// Activation rows below this count take the streaming (matvec) path.
constexpr int64_t kMatvecMaxM = 4;

// True if matmul accepts weights of this type.
bool matmul_supports(DType t);

// y = x · Wᵀ as above. Throws glimpse::Error (Model kind, naming W) if W's type, shape or
// strides are unusable, or if y overlaps x.
void matmul(const Tensor& W, const float* x, float* y, int64_t M, ThreadPool& pool,
            KernelPath path = KernelPath::Auto);

// Several products of the same x, y_i = x · W_iᵀ (the Q, K and V projections; gate and up):
// the same bits as one matmul per weight. For decode-sized M (< kMatvecMaxM) the rows of all
// the weights are shared out as one job, one thread hand-off instead of one per weight, and
// quantized activations are made once. The weights must have the same K.
struct MatmulTarget {
    const Tensor* W;
    float* y;
};
void matmul_same_x(std::initializer_list<MatmulTarget> targets, const float* x, int64_t M, ThreadPool& pool,
                   KernelPath path = KernelPath::Auto);

// The same product where every row of y is, bit for bit, what matmul(W, x_m, y_m, 1) gives
// (the decode kernel above: quantized activations for quantized weights), while each weight
// row is read from memory once for all M rows (it is dotted with every x row while it sits
// in L1). The batched decode of several sequences (text/llama_batch.h) runs on this, so a
// sequence decoded in a batch gets exactly the logits it gets decoded alone. Any M >= 0.
void matmul_rows_as_decode(const Tensor& W, const float* x, float* y, int64_t M, ThreadPool& pool,
                           KernelPath path = KernelPath::Auto);

// The specification: each row of W dequantized with dequantize_row, each dot product summed
// in double and rounded to float once. Single-threaded and slow; for tests.
void matmul_reference(const Tensor& W, const float* x, float* y, int64_t M);

}  // namespace glimpse
