// Vectorised exp-based element-wise functions for the hot loops of both towers: the softmax
// exponentials of attention (151M per SmolVLM ViT tile), the tanh-GELU of the ViT MLP and the
// SwiGLU of the decoder FFN.
//
// e^x is a polynomial (x = n·ln2 + r, |r| ≤ ln2/2, Taylor to r^7, 2^n from the exponent bits;
// x clamped to [-87, 88]): relative error about 2e-7, as accurate as float32 libm for these
// uses. ops::softmax_rows, ops::gelu_tanh and the single-threaded ops::swiglu are the
// specification (tests/test_vmath.cpp).
//
// Widest path this CPU has: AVX-512F (16 lanes) where has_avx512_kernels(), AVX2+FMA (8 lanes)
// where has_avx2_kernels(), else portable 4-lane vector-extension code. Results differ between
// paths in the last bits (FMA rounding), never between threads or calls on one path.
#pragma once

#include <cstdint>

namespace glimpse::vmath {

enum class Path { Auto, Portable };

// x[0..n) in place becomes exp(scale · x − scale · max(x)) (scale > 0, n ≥ 1); returns
// 1 / Σ of the results, so x · (return value) = softmax(scale · x).
float exp_scaled_row(float* x, int64_t n, float scale, Path path = Path::Auto);

// The same for `rows` rows of n floats; inv_sum[r] gets row r's 1 / Σ.
void exp_scaled_rows(float* x, int64_t rows, int64_t n, float scale, float* inv_sum, Path path = Path::Auto);

// y = 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))), computed as x / (1 + e^(−2·√(2/π)(x + 0.044715x³))).
// In place allowed.
void gelu_tanh(const float* x, float* y, int64_t n, Path path = Path::Auto);

// y = silu(gate) · up = gate · up / (1 + e^(−gate)) (the SwiGLU of Llama FFNs). In place
// (y == gate or y == up) allowed.
void swiglu(const float* gate, const float* up, float* y, int64_t n, Path path = Path::Auto);

namespace detail {
// The SIMD bodies (core/vmath_avx2.cpp); call only where the CPU has them.
float exp_scaled_row_avx2(float* x, int64_t n, float scale);
float exp_scaled_row_avx512(float* x, int64_t n, float scale);
void gelu_tanh_avx2(const float* x, float* y, int64_t n);
void gelu_tanh_avx512(const float* x, float* y, int64_t n);
void swiglu_avx2(const float* gate, const float* up, float* y, int64_t n);
void swiglu_avx512(const float* gate, const float* up, float* y, int64_t n);
}  // namespace detail

}  // namespace glimpse::vmath
