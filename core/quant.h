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

}  // namespace glimpse
