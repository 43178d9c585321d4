// Dequantization and quantization of the weight types glimpse reads, bit-compatible with
// ggml: the legacy 32-value blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), the plain types
// (F32, F16, BF16) and the row dispatch. The K-quants live in quant_k.cpp.
//
// Quantizers follow ggml's `quantize_row_*_ref` (ggml/src/ggml-quants.c) operation by
// operation, so that the same float32 input gives the same bytes as llama-quantize and
// gguf-py. Float expressions are kept in ggml's evaluation order, without FMA contraction.
#include "core/quant.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/fp16.h"

// Bit-compatibility needs every product rounded before it is added: no FMA contraction.
// (x86-64 without -mfma cannot contract anyway; aarch64 compilers would by default.)
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace glimpse {

namespace {

// C's (int)v (truncation toward zero) clamped to [lo, hi]; NaN gives lo. Identical to the
// plain cast whenever v is inside the range, but defined for any float.
int trunc_clamp(float v, int lo, int hi) {
    if (!(v > float(lo))) return lo;
    if (!(v < float(hi))) return hi;
    return int(v);
}

// v rounded by `round` (ties away from zero, as C's roundf) or `nearbyint` (ties to even,
// the default FP mode), clamped to [lo, hi]; NaN gives 0.
int round_away_clamp(float v, int lo, int hi) {
    if (std::isnan(v)) return 0;
    const float r = std::round(v);
    return r <= float(lo) ? lo : r >= float(hi) ? hi : int(r);
}
int round_even_clamp(float v, int lo, int hi) {
    if (std::isnan(v)) return 0;
    const float r = std::nearbyint(v);
    return r <= float(lo) ? lo : r >= float(hi) ? hi : int(r);
}

// The value of largest magnitude, keeping its sign (first one on ties); 0 for all zeros.
float signed_absmax(const float* x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    return max;
}

void min_max(const float* x, int n, float& min, float& max) {
    min = 3.402823466e38f;
    max = -3.402823466e38f;
    for (int j = 0; j < n; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
}

// The 5th bits of 32 five-bit codes, bit j = code j (u32 stored little-endian).
void store_qh(uint8_t qh[4], const int* codes) {
    uint32_t bits = 0;
    for (int j = 0; j < kQK; ++j) bits |= uint32_t((codes[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; ++k) qh[k] = uint8_t(bits >> (8 * k));
}
uint32_t load_qh(const uint8_t qh[4]) {
    uint32_t bits;
    std::memcpy(&bits, qh, 4);  // little-endian host (x86-64, aarch64)
    return bits;
}

// Packs 32 codes (0..15 after masking): low nibble of byte j = code j, high = code j+16.
void pack_nibbles(uint8_t qs[kQK / 2], const int* codes) {
    for (int j = 0; j < kQK / 2; ++j) qs[j] = uint8_t((codes[j] & 0xF) | ((codes[j + 16] & 0xF) << 4));
}

void check_row(DType t, int64_t n, const char* what) {
    const uint32_t blk = dtype_info(t).block_elems;
    if (n < 0 || n % blk != 0)
        throw std::invalid_argument(std::string(what) + ": " + std::to_string(n) +
                                    " values is not a whole number of " +
                                    std::string(dtype_name(t)) + " blocks");
}

[[noreturn]] void unsupported(uint32_t t, const char* what) {
    const auto info = dtype_info(t);
    std::string msg = what;
    msg += ": type ";
    if (info)
        msg += info->name;
    else
        msg.append("#").append(std::to_string(t));
    msg += " is not supported";
    throw std::invalid_argument(msg);
}

// Row of whole blocks at an arbitrary address -> floats, one aligned copy per block.
template <class Block, int N>
void dequantize_blocks(const void* src, float* y, int64_t n) {
    const auto* p = static_cast<const uint8_t*>(src);
    Block b;
    for (int64_t i = 0; i < n / N; ++i) {
        std::memcpy(&b, p + i * int64_t(sizeof(Block)), sizeof(Block));
        dequantize_block(b, y + i * N);
    }
}

template <class Block, int N>
void quantize_blocks(const float* x, void* dst, int64_t n) {
    auto* p = static_cast<uint8_t*>(dst);
    Block b;
    for (int64_t i = 0; i < n / N; ++i) {
        quantize_block(x + i * N, b);
        std::memcpy(p + i * int64_t(sizeof(Block)), &b, sizeof(Block));
    }
}

}  // namespace

// ---- Dequantization: MODELS.md §2.3, in ggml's operation order. ----

// y[j] = (q_j - 8)·d; q_j = low nibble of qs[j] for j < 16, high nibble of qs[j-16] after.
void dequantize_block(const BlockQ4_0& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int j = 0; j < kQK / 2; ++j) {
        y[j] = float((b.qs[j] & 0xF) - 8) * d;
        y[j + 16] = float((b.qs[j] >> 4) - 8) * d;
    }
}

// y[j] = q_j·d + m
void dequantize_block(const BlockQ4_1& b, float* y) {
    const float d = fp16_to_f32(b.d), m = fp16_to_f32(b.m);
    for (int j = 0; j < kQK / 2; ++j) {
        y[j] = float(b.qs[j] & 0xF) * d + m;
        y[j + 16] = float(b.qs[j] >> 4) * d + m;
    }
}

// y[j] = (q_j | h_j << 4) - 16)·d, h_j = bit j of the little-endian u32 qh.
void dequantize_block(const BlockQ5_0& b, float* y) {
    const float d = fp16_to_f32(b.d);
    const uint32_t qh = load_qh(b.qh);
    for (int j = 0; j < kQK / 2; ++j) {
        const int lo = (b.qs[j] & 0xF) | int(((qh >> j) & 1) << 4);
        const int hi = (b.qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
        y[j] = float(lo - 16) * d;
        y[j + 16] = float(hi - 16) * d;
    }
}

// y[j] = (q_j | h_j << 4)·d + m
void dequantize_block(const BlockQ5_1& b, float* y) {
    const float d = fp16_to_f32(b.d), m = fp16_to_f32(b.m);
    const uint32_t qh = load_qh(b.qh);
    for (int j = 0; j < kQK / 2; ++j) {
        const int lo = (b.qs[j] & 0xF) | int(((qh >> j) & 1) << 4);
        const int hi = (b.qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
        y[j] = float(lo) * d + m;
        y[j + 16] = float(hi) * d + m;
    }
}

// y[j] = qs[j]·d
void dequantize_block(const BlockQ8_0& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int j = 0; j < kQK; ++j) y[j] = float(b.qs[j]) * d;
}

// ---- Quantization: ggml's reference quantizers. ----

// Q4_0: d = max/-8 where max is the signed value of largest magnitude (so max itself maps to
// code 0 = -8·d exactly); q = min(15, trunc(x/d + 8.5)).
void quantize_block(const float* x, BlockQ4_0& b) {
    const float d = signed_absmax(x, kQK) / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = f32_to_fp16(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = trunc_clamp(x[j] * id + 8.5f, 0, 15);
    pack_nibbles(b.qs, q);
}

// Q4_1: d = (max - min)/15, m = min, q = min(15, trunc((x - min)/d + 0.5)).
void quantize_block(const float* x, BlockQ4_1& b) {
    float min, max;
    min_max(x, kQK, min, max);
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = f32_to_fp16(d);
    b.m = f32_to_fp16(min);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = trunc_clamp((x[j] - min) * id + 0.5f, 0, 15);
    pack_nibbles(b.qs, q);
}

// Q5_0: d = max/-16 (signed max as Q4_0), q = min(31, trunc(x/d + 16.5)).
void quantize_block(const float* x, BlockQ5_0& b) {
    const float d = signed_absmax(x, kQK) / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = f32_to_fp16(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = trunc_clamp(x[j] * id + 16.5f, 0, 31);
    pack_nibbles(b.qs, q);
    store_qh(b.qh, q);
}

// Q5_1: d = (max - min)/31, m = min, q = trunc((x - min)/d + 0.5) (ggml has no clamp here:
// the largest value maps to 31 up to rounding; the clamp only guards non-finite input).
void quantize_block(const float* x, BlockQ5_1& b) {
    float min, max;
    min_max(x, kQK, min, max);
    const float d = (max - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = f32_to_fp16(d);
    b.m = f32_to_fp16(min);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = trunc_clamp((x[j] - min) * id + 0.5f, 0, 31);
    pack_nibbles(b.qs, q);
    store_qh(b.qh, q);
}

// Q8_0: d = amax/127, q = roundf(x · (1/d)) (ties away from zero).
void quantize_block(const float* x, BlockQ8_0& b) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = f32_to_fp16(d);
    for (int j = 0; j < kQK; ++j) b.qs[j] = int8_t(round_away_clamp(x[j] * id, -127, 127));
}

void quantize_row_q8_0_activations(const float* x, BlockQ8_0* y, int64_t n) {
    check_row(DType::Q8_0, n, "quantize_row_q8_0_activations");
    for (int64_t i = 0; i < n / kQK; ++i) {
        const float* xb = x + i * kQK;
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
        y[i].d = f32_to_fp16(amax / 127.0f);
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (int j = 0; j < kQK; ++j) y[i].qs[j] = int8_t(round_even_clamp(xb[j] * id, -127, 127));
    }
}

// ---- Row dispatch ----

void dequantize_row(DType t, const void* src, float* y, int64_t n) {
    const auto id = static_cast<uint32_t>(t);
    if (!dtype_info(id)) unsupported(id, "dequantize_row");
    check_row(t, n, "dequantize_row");
    const auto* p = static_cast<const uint8_t*>(src);
    switch (t) {
    case DType::F32:
        if (n > 0) std::memcpy(y, src, size_t(n) * 4);
        return;
    case DType::F16:
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            y[i] = fp16_to_f32(h);
        }
        return;
    case DType::BF16:
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            y[i] = bf16_to_f32(h);
        }
        return;
    case DType::Q4_0: return dequantize_blocks<BlockQ4_0, kQK>(src, y, n);
    case DType::Q4_1: return dequantize_blocks<BlockQ4_1, kQK>(src, y, n);
    case DType::Q5_0: return dequantize_blocks<BlockQ5_0, kQK>(src, y, n);
    case DType::Q5_1: return dequantize_blocks<BlockQ5_1, kQK>(src, y, n);
    case DType::Q8_0: return dequantize_blocks<BlockQ8_0, kQK>(src, y, n);
    case DType::Q4_K: return dequantize_blocks<BlockQ4_K, kQKK>(src, y, n);
    case DType::Q5_K: return dequantize_blocks<BlockQ5_K, kQKK>(src, y, n);
    case DType::Q6_K: return dequantize_blocks<BlockQ6_K, kQKK>(src, y, n);
    default: unsupported(id, "dequantize_row");
    }
}

bool can_quantize(DType t) {
    switch (t) {
    case DType::F32: case DType::F16: case DType::BF16:
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
        return true;
    default:
        return false;
    }
}

void quantize_row(DType t, const float* x, void* dst, int64_t n) {
    const auto id = static_cast<uint32_t>(t);
    if (!can_quantize(t)) unsupported(id, "quantize_row");
    check_row(t, n, "quantize_row");
    auto* p = static_cast<uint8_t*>(dst);
    switch (t) {
    case DType::F32:
        if (n > 0) std::memcpy(dst, x, size_t(n) * 4);
        return;
    case DType::F16:
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = f32_to_fp16(x[i]);
            std::memcpy(p + 2 * i, &h, 2);
        }
        return;
    case DType::BF16:
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = f32_to_bf16(x[i]);
            std::memcpy(p + 2 * i, &h, 2);
        }
        return;
    case DType::Q4_0: return quantize_blocks<BlockQ4_0, kQK>(x, dst, n);
    case DType::Q4_1: return quantize_blocks<BlockQ4_1, kQK>(x, dst, n);
    case DType::Q5_0: return quantize_blocks<BlockQ5_0, kQK>(x, dst, n);
    case DType::Q5_1: return quantize_blocks<BlockQ5_1, kQK>(x, dst, n);
    case DType::Q8_0: return quantize_blocks<BlockQ8_0, kQK>(x, dst, n);
    case DType::Q4_K: return quantize_blocks<BlockQ4_K, kQKK>(x, dst, n);
    case DType::Q5_K: return quantize_blocks<BlockQ5_K, kQKK>(x, dst, n);
    case DType::Q6_K: return quantize_blocks<BlockQ6_K, kQKK>(x, dst, n);
    default: unsupported(id, "quantize_row");
    }
}

}  // namespace glimpse
