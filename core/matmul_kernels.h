// Internal to the matmul engine: what core/matmul.cpp (dispatch, threads, portable kernels)
// and core/matmul_avx2.cpp / core/matmul_qdot_avx2.cpp (AVX2+FMA+F16C kernels) share.
// Nothing outside those files includes this; the public API is core/matmul.h.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/quant.h"

namespace glimpse::mm {

// A validated weight matrix: N rows of K values of `type`, row n at data + n * row_stride.
// Rows may sit at any byte address (blocks in files are only 2-byte aligned, or worse in a
// hostile file), so kernels read through memcpy or unaligned loads only.
struct WeightView {
    DType type;
    const uint8_t* data;
    uint64_t row_stride;
    int64_t K, N;
    uint32_t block_elems, block_bytes;
    const uint8_t* row(int64_t n) const { return data + uint64_t(n) * row_stride; }
};

// One 32-value activation block of the legacy types' integer dots: the Q8_0 codes that
// quantize_row_q8_0_activations makes, with the f16 scale widened to f32 once and
// ds = d·Σqs precomputed for the types with an offset (Q4_1/Q5_1: Σ (d_w·u + m)·d·q =
// d_w·d·Σu·q + m·ds).
struct ActQ8x32 {
    float d;
    float ds;
    int8_t qs[kQK];
};
static_assert(sizeof(ActQ8x32) == 40);

inline bool is_float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
inline bool is_k_quant(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

// Quantized activations for M rows: row m starts at data + m * row_bytes and holds
// ActQ8x32 blocks (legacy weight types) or BlockQ8_K blocks (K types).
struct QuantActs {
    const uint8_t* data;
    size_t row_bytes;
    const void* row(int64_t m) const { return data + size_t(m) * row_bytes; }
};

// Register blocking of the f32 GEMM kernels: an MR × NR tile of y per micro-kernel call,
// K consumed in slices of KC (a multiple of every block size, so slices start on blocks).
constexpr int kGemmMR = 6;
constexpr int kGemmNR = 16;
constexpr int64_t kGemmKC = 768;

// The kernel set of one path. All write y[m * N + n] (N = W.N) for the given ranges and
// compute each element by a sequence of operations that does not depend on the ranges.
struct KernelSet {
    // Activation rows for the quantized matvec: K values → K/32 ActQ8x32 blocks, exactly as
    // quantize_row_q8_0_activations (scale widened, ds added), or → K/256 BlockQ8_K blocks,
    // exactly as quantize_row_q8_K. Bit-identical on every input, NaN and inf included.
    void (*quantize_q8x32)(const float* x, int64_t K, ActQ8x32* out);
    void (*quantize_q8k)(const float* x, int64_t K, BlockQ8_K* out);
    // Float weights, M < kMatvecMaxM rows: y[m][n] for m < M, n in [n0, n1).
    void (*matvec_float)(const WeightView& W, const float* x, int64_t M, float* y, int64_t n0,
                         int64_t n1);
    // Float weights, any M: each row y[m][n0..n1) exactly as matvec_float computes it with M = 1
    // (matmul_rows_as_decode), the weight row read once for all of them.
    void (*matvec_float_rows)(const WeightView& W, const float* x, int64_t M, float* y, int64_t n0,
                              int64_t n1);
    // Quantized weights with quantized activations, M < kMatvecMaxM rows.
    void (*matvec_quant)(const WeightView& W, const QuantActs& acts, int64_t M, float* y,
                         int64_t n0, int64_t n1);
    // Any weight type, f32 activations: y[m][n] for m in [m0, m1), n in [n0, n1).
    void (*gemm)(const WeightView& W, const float* x, float* y, int64_t m0, int64_t m1,
                 int64_t n0, int64_t n1);
};

const KernelSet& scalar_kernels();
const KernelSet& avx2_kernels();  // only where has_avx2_kernels() (x86-64 builds)
// The AVX2 set with an AVX-512F GEMM tile (identical results); only where has_avx512_kernels().
const KernelSet& avx512_kernels();

// Integer dot of one weight row (K values, K/32 or K/256 blocks) with one quantized
// activation row, portable: the specification the AVX2 dots are tested against.
float qdot_scalar(DType t, const uint8_t* w_row, const void* act_row, int64_t K);

// AVX2 integer dots, same contract (core/matmul_qdot_avx2.cpp), chosen once per matrix:
// qdot_avx2_for(t)(w_row, act_row, K).
using QDotFn = float (*)(const uint8_t* w_row, const void* act_row, int64_t K);
QDotFn qdot_avx2_for(DType t);

}  // namespace glimpse::mm
