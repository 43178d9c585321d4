// Block-quantized weight formats, bit-compatible with ggml (`ggml-common.h`); MODELS.md §2.3
// gives the layouts and the dequantization formulas. Each struct is defined here once; the
// Vulkan shaders mirror them in one GLSL file. `d`/`m`/`dmin` are IEEE binary16 bit patterns.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace glimpse {

constexpr int kQK = 32;    // values per block of the legacy formats (Q4_0 .. Q8_0)
constexpr int kQKK = 256;  // values per super-block of the K formats

struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kQK / 2];  // low nibbles: values 0..15, high nibbles: values 16..31
};
struct BlockQ4_1 {
    uint16_t d, m;
    uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];  // fifth bits, read as one little-endian u32
    uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQK];
};
struct BlockQ4_K {
    uint16_t d, dmin;
    uint8_t scales[12];  // 8 six-bit scales and 8 six-bit mins, packed
    uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[kQKK / 8];
    uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {
    uint8_t ql[kQKK / 2];
    uint8_t qh[kQKK / 4];
    int8_t scales[kQKK / 16];
    uint16_t d;
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

// y[0..n) = the n values stored at `src` (n a multiple of the type's block size).
// Works for every type with DTypeInfo::computable (F32, F16, BF16 included).
void dequantize_row(DType t, const void* src, float* y, int64_t n);

// Writes x[0..n) to `dst` in type t (n a multiple of the block size). Supported: F32, F16,
// BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K where can_quantize() says so.
bool can_quantize(DType t);
void quantize_row(DType t, const float* x, void* dst, int64_t n);

// Both row functions throw std::invalid_argument for n < 0, n not a multiple of the block
// size, or a type they do not handle (callers validate first). `src`/`dst` need no alignment:
// blocks inside files are only 2-byte (hostile files: 1-byte) aligned, so every block is
// copied through memcpy. quantize_row reproduces ggml's reference quantizers
// (`quantize_row_*_ref`, what llama-quantize and gguf-py write without an imatrix).
// Non-finite inputs give unspecified codes, never undefined behaviour.

// ---- Single blocks (aligned structs): the formulas of MODELS.md §2.3, one block each. ----
// y receives 32 (legacy) or 256 (K) values. These are the specification that SIMD and
// Vulkan dequantizers are tested against.
void dequantize_block(const BlockQ4_0& b, float* y);
void dequantize_block(const BlockQ4_1& b, float* y);
void dequantize_block(const BlockQ5_0& b, float* y);
void dequantize_block(const BlockQ5_1& b, float* y);
void dequantize_block(const BlockQ8_0& b, float* y);
void dequantize_block(const BlockQ4_K& b, float* y);
void dequantize_block(const BlockQ5_K& b, float* y);
void dequantize_block(const BlockQ6_K& b, float* y);
// x holds 32 / 256 values; the block is overwritten completely.
void quantize_block(const float* x, BlockQ4_0& b);
void quantize_block(const float* x, BlockQ4_1& b);
void quantize_block(const float* x, BlockQ5_0& b);
void quantize_block(const float* x, BlockQ5_1& b);
void quantize_block(const float* x, BlockQ8_0& b);
void quantize_block(const float* x, BlockQ4_K& b);
void quantize_block(const float* x, BlockQ5_K& b);
void quantize_block(const float* x, BlockQ6_K& b);

// Q4_K / Q5_K: the 6-bit scale and min of sub-block j (0..7) from the packed scales[12]:
// j < 4: sc = s[j] & 63, m = s[j+4] & 63;
// j >= 4: sc = (s[j+4] & 0xF) | (s[j-4] >> 6) << 4, m = (s[j+4] >> 4) | (s[j] >> 6) << 4.
inline void k_scale_min(const uint8_t* s, int j, uint8_t& sc, uint8_t& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = uint8_t((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        m = uint8_t((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

// ---- Activation quantization for the integer dot products of the CPU matmul. ----

// Q8_0 activations exactly as llama.cpp's x86 CPU backend makes them (AVX/AVX2
// `quantize_row_q8_0` in ggml-cpu): d = amax/127 stored as f16, q = round-half-even(x * 127/amax).
// This differs from quantize_row(Q8_0) (the file quantizer: x * (1/d), round half away from
// zero) in the last bit of rare values; use this one to reproduce llama.cpp's q8_0 numerics.
// n must be a multiple of 32 (std::invalid_argument otherwise).
void quantize_row_q8_0_activations(const float* x, BlockQ8_0* y, int64_t n);

// ggml's block_q8_K: the activation side of the K-quant dot products. Not a file format.
struct BlockQ8_K {
    float d;                   // y = d * qs
    int8_t qs[kQKK];
    int16_t bsums[kQKK / 16];  // bsums[i] = sum of qs[16i .. 16i+15]
};
static_assert(sizeof(BlockQ8_K) == 292);

// ggml's quantize_row_q8_K_ref (also what its x86 backend uses): per 256 values, `max` is the
// value of largest magnitude, iscale = -127/max, q = min(127, round-half-even(iscale * x)),
// d = 1/iscale; an all-zero block gives d = 0, q = 0, bsums = 0. n a multiple of 256.
void quantize_row_q8_K(const float* x, BlockQ8_K* y, int64_t n);

}  // namespace glimpse
