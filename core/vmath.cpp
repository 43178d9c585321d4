// Portable bodies of core/vmath.h and the choice of path.
#include "core/vmath.h"

#include <cstring>

#include "core/cpu_features.h"

namespace glimpse::vmath {

namespace {

// Four floats as one vector (GCC/Clang vector extension: one SSE/NEON register, the width every
// x86-64 CPU has); arithmetic is per lane.
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));

inline f32x4 splat(float v) { return f32x4{v, v, v, v}; }

// e^x per lane (core/vmath.h): n by round-to-nearest through the 1.5·2^23 trick, ln2 split in
// two for an exact n·ln2.
inline f32x4 exp4(f32x4 x) {
    x = x < splat(-87.0f) ? splat(-87.0f) : x;
    x = x > splat(88.0f) ? splat(88.0f) : x;
    const f32x4 magic = splat(12582912.0f);
    const f32x4 n = (x * splat(1.44269504f) + magic) - magic;
    const f32x4 r = (x - n * splat(0.693359375f)) - n * splat(-2.12194440e-4f);
    f32x4 p = splat(1.0f / 5040.0f);
    p = p * r + splat(1.0f / 720.0f);
    p = p * r + splat(1.0f / 120.0f);
    p = p * r + splat(1.0f / 24.0f);
    p = p * r + splat(1.0f / 6.0f);
    p = p * r + splat(0.5f);
    p = p * r + splat(1.0f);
    p = p * r + splat(1.0f);
    const i32x4 bits = (__builtin_convertvector(n, i32x4) + 127) << 23;
    f32x4 two_n;
    std::memcpy(&two_n, &bits, sizeof(two_n));
    return p * two_n;
}

inline f32x4 load4(const float* p) {
    f32x4 v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

inline void store4(float* p, f32x4 v) { std::memcpy(p, &v, sizeof(v)); }

float exp_scaled_row_portable(float* x, int64_t n, float scale) {
    float max = x[0];
    for (int64_t i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
    // scale > 0, so the largest scaled value is scale · max; every exponent is <= 0.
    const f32x4 m = splat(scale * max), sc = splat(scale);
    f32x4 acc = splat(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const f32x4 e = exp4(load4(x + i) * sc - m);
        acc += e;
        store4(x + i, e);
    }
    double sum = 0.0;
    for (int l = 0; l < 4; ++l) sum += acc[l];
    for (; i < n; ++i) {
        float tail[4] = {x[i]};
        x[i] = exp4(load4(tail) * sc - m)[0];
        sum += x[i];
    }
    return float(1.0 / sum);
}

inline f32x4 gelu4(f32x4 v) {
    const f32x4 u2 = splat(-2.0f * 0.7978845608f) * (v + splat(0.044715f) * v * v * v);
    return v / (splat(1.0f) + exp4(u2));
}

void gelu_tanh_portable(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) store4(y + i, gelu4(load4(x + i)));
    if (i < n) {
        float buf[4] = {};
        std::memcpy(buf, x + i, size_t(n - i) * sizeof(float));
        store4(buf, gelu4(load4(buf)));
        std::memcpy(y + i, buf, size_t(n - i) * sizeof(float));
    }
}

void swiglu_portable(const float* gate, const float* up, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const f32x4 g = load4(gate + i);
        store4(y + i, g * load4(up + i) / (splat(1.0f) + exp4(-g)));
    }
    for (; i < n; ++i) {
        float buf[4] = {-gate[i]};
        y[i] = gate[i] * up[i] / (1.0f + exp4(load4(buf))[0]);
    }
}

enum class Isa { Portable, Avx2, Avx512 };

Isa choose(Path path) {
    if (path == Path::Portable) return Isa::Portable;
    static const Isa best = has_avx512_kernels() ? Isa::Avx512 : has_avx2_kernels() ? Isa::Avx2 : Isa::Portable;
    return best;
}

}  // namespace

float exp_scaled_row(float* x, int64_t n, float scale, Path path) {
    if (n <= 0) return 0.0f;
    switch (choose(path)) {
        case Isa::Avx512: return detail::exp_scaled_row_avx512(x, n, scale);
        case Isa::Avx2: return detail::exp_scaled_row_avx2(x, n, scale);
        case Isa::Portable: break;
    }
    return exp_scaled_row_portable(x, n, scale);
}

void exp_scaled_rows(float* x, int64_t rows, int64_t n, float scale, float* inv_sum, Path path) {
    if (n <= 0) return;
    for (int64_t r = 0; r < rows; ++r) inv_sum[r] = exp_scaled_row(x + r * n, n, scale, path);
}

void gelu_tanh(const float* x, float* y, int64_t n, Path path) {
    if (n <= 0) return;
    switch (choose(path)) {
        case Isa::Avx512: detail::gelu_tanh_avx512(x, y, n); return;
        case Isa::Avx2: detail::gelu_tanh_avx2(x, y, n); return;
        case Isa::Portable: break;
    }
    gelu_tanh_portable(x, y, n);
}

void swiglu(const float* gate, const float* up, float* y, int64_t n, Path path) {
    if (n <= 0) return;
    switch (choose(path)) {
        case Isa::Avx512: detail::swiglu_avx512(gate, up, y, n); return;
        case Isa::Avx2: detail::swiglu_avx2(gate, up, y, n); return;
        case Isa::Portable: break;
    }
    swiglu_portable(gate, up, y, n);
}

#if !defined(__x86_64__)
// No *_avx2.cpp is built for other targets (core/CMakeLists.txt) and choose() never picks
// these there; the symbols must exist.
namespace detail {
float exp_scaled_row_avx2(float* x, int64_t n, float scale) { return exp_scaled_row_portable(x, n, scale); }
float exp_scaled_row_avx512(float* x, int64_t n, float scale) { return exp_scaled_row_portable(x, n, scale); }
void gelu_tanh_avx2(const float* x, float* y, int64_t n) { gelu_tanh_portable(x, y, n); }
void gelu_tanh_avx512(const float* x, float* y, int64_t n) { gelu_tanh_portable(x, y, n); }
void swiglu_avx2(const float* g, const float* u, float* y, int64_t n) { swiglu_portable(g, u, y, n); }
void swiglu_avx512(const float* g, const float* u, float* y, int64_t n) { swiglu_portable(g, u, y, n); }
}  // namespace detail
#endif

}  // namespace glimpse::vmath
