// Element-wise ops, norms, softmax, RoPE and activations (core/ops.h has the shapes and
// formulas). Loops are plain and over contiguous floats so the compiler can vectorise the
// element-wise ones; reductions that set a scale (norm statistics, softmax sums) accumulate in
// double like ggml does.
#include "core/ops.h"

#include <cmath>
#include <vector>

#include "core/ops_internal.h"
#include "core/vmath.h"

namespace glimpse::ops {

using detail::parallel_rows;
using detail::require;

// ---- element-wise ---------------------------------------------------------------------------

void add(const float* a, const float* b, float* y, int64_t n) {
    require(n >= 0, "add", "negative size");
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void mul(const float* a, const float* b, float* y, int64_t n) {
    require(n >= 0, "mul", "negative size");
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

void scale(const float* x, float s, float* y, int64_t n) {
    require(n >= 0, "scale", "negative size");
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
}

void add_row_bias(float* x, const float* bias, int64_t rows, int64_t n) {
    require(rows >= 0 && n >= 0, "add_row_bias", "negative size");
    for (int64_t r = 0; r < rows; ++r) {
        float* row = x + r * n;
        for (int64_t i = 0; i < n; ++i) row[i] += bias[i];
    }
}

// ---- norms ----------------------------------------------------------------------------------

namespace {

// One row of rms_norm: ggml_rms_norm (sum of squares in double, mean and scale in float) then
// the multiplication by w, in that order: y = (x · scale) · w.
// Σ f(x[i]) in double over eight interleaved partial sums (x[i] goes to sum i mod 8), added
// pairwise at the end. One running sum made each row a chain of dependent double adds, four
// cycles apiece: at the 96-wide rows of the default model the norms cost more than the
// matrix products beside them. The order is fixed for a given n, so a row's result never
// depends on the rows around it or on the thread that computes it.
template <class F>
double sum_f64(const float* x, int64_t n, F f) {
    double s[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) s[j] += f(x[i + j]);
    for (int j = 0; i < n; ++i, ++j) s[j] += f(x[i]);
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

void rms_norm_row(const float* x, const float* w, float* y, int64_t n, float eps) {
    const double sum_sq = sum_f64(x, n, [](float v) { return double(v) * double(v); });
    const float mean = float(sum_sq / double(n));
    const float inv = 1.0f / std::sqrt(mean + eps);
    if (w) {
        for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * inv) * w[i];
    } else {
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv;
    }
}

// One row of layer_norm: ggml_norm (two passes: mean, then the biased variance of x − μ) then
// · w and + b.
void layer_norm_row(const float* x, const float* w, const float* b, float* y, int64_t n, float eps) {
    const double sum = sum_f64(x, n, [](float v) { return double(v); });
    const float mean = float(sum / double(n));
    const double sum_sq = sum_f64(x, n, [mean](float v) {
        const float d = v - mean;
        return double(d) * double(d);
    });
    const float inv = 1.0f / std::sqrt(float(sum_sq / double(n)) + eps);
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * inv;
    if (w)
        for (int64_t i = 0; i < n; ++i) y[i] *= w[i];
    if (b)
        for (int64_t i = 0; i < n; ++i) y[i] += b[i];
}

}  // namespace

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps,
              ThreadPool& pool) {
    require(rows >= 0 && n >= 0, "rms_norm", "negative size");
    require(rows == 0 || n > 0, "rms_norm", "empty rows");
    parallel_rows(pool, rows, 4 * n, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) rms_norm_row(x + r * n, weight, y + r * n, n, eps);
    });
}

void layer_norm(const float* x, const float* weight, const float* bias, float* y, int64_t rows,
                int64_t n, float eps, ThreadPool& pool) {
    require(rows >= 0 && n >= 0, "layer_norm", "negative size");
    require(rows == 0 || n > 0, "layer_norm", "empty rows");
    parallel_rows(pool, rows, 6 * n, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) layer_norm_row(x + r * n, weight, bias, y + r * n, n, eps);
    });
}

// ---- softmax --------------------------------------------------------------------------------

namespace {

// x[0..n) <- softmax(x[0..n)), n >= 1.
void softmax_row(float* x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - max);
        sum += x[i];
    }
    const float inv = float(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace

void softmax_rows(float* x, int64_t rows, int64_t n) {
    require(rows >= 0 && n >= 0, "softmax_rows", "negative size");
    if (n == 0) return;
    for (int64_t r = 0; r < rows; ++r) softmax_row(x + r * n, n);
}

void softmax_rows_causal(float* x, int64_t rows, int64_t n, int64_t offset) {
    require(rows >= 0 && n >= 0, "softmax_rows_causal", "negative size");
    for (int64_t r = 0; r < rows; ++r) {
        float* row = x + r * n;
        // Columns 0 .. r + offset are visible; computed without overflow for any offset.
        const int64_t last = r + offset;
        const int64_t visible = last < 0 ? 0 : (last >= n ? n : last + 1);
        if (visible > 0) softmax_row(row, visible);
        for (int64_t i = visible; i < n; ++i) row[i] = 0.0f;
    }
}

// ---- RoPE -----------------------------------------------------------------------------------

void rope(float* x, const int32_t* positions, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
          float theta_base, RopeStyle style) {
    require(n_tokens >= 0 && n_heads >= 0 && head_dim >= 0, "rope", "negative size");
    require(head_dim % 2 == 0, "rope", "head_dim must be even");
    const int64_t half = head_dim / 2;
    std::vector<float> cos_a(static_cast<size_t>(half)), sin_a(static_cast<size_t>(half));
    // HalfSplit frequencies do not depend on the position: HF's inv_freq buffer.
    std::vector<float> inv_freq(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i)
        inv_freq[size_t(i)] = 1.0f / std::pow(theta_base, float(2 * i) / float(head_dim));
    const float theta_scale = std::pow(theta_base, -2.0f / float(head_dim));

    for (int64_t t = 0; t < n_tokens; ++t) {
        const float pos = float(positions[t]);
        if (style == RopeStyle::AdjacentPairs) {
            float theta = pos;  // ggml_rope_cache_init: θ ← θ · theta_scale per pair
            for (int64_t i = 0; i < half; ++i) {
                cos_a[size_t(i)] = std::cos(theta);
                sin_a[size_t(i)] = std::sin(theta);
                theta *= theta_scale;
            }
        } else {
            for (int64_t i = 0; i < half; ++i) {
                const float a = pos * inv_freq[size_t(i)];
                cos_a[size_t(i)] = std::cos(a);
                sin_a[size_t(i)] = std::sin(a);
            }
        }
        // Pair i is (x[2i], x[2i+1]) or (x[i], x[i + d/2]).
        const int64_t stride = style == RopeStyle::AdjacentPairs ? 2 : 1;
        const int64_t offset = style == RopeStyle::AdjacentPairs ? 1 : half;
        for (int64_t h = 0; h < n_heads; ++h) {
            float* head = x + (t * n_heads + h) * head_dim;
            for (int64_t i = 0; i < half; ++i) {
                float* u = head + i * stride;
                const float x0 = u[0], x1 = u[offset];
                u[0] = x0 * cos_a[size_t(i)] - x1 * sin_a[size_t(i)];
                u[offset] = x0 * sin_a[size_t(i)] + x1 * cos_a[size_t(i)];
            }
        }
    }
}

// ---- activations ----------------------------------------------------------------------------

namespace {

constexpr float kSqrt2OverPi = 0.79788456080286535588f;  // √(2/π)
constexpr float kGeluCoefA = 0.044715f;
constexpr float kInvSqrt2 = 0.70710678118654752440f;  // 1/√2
constexpr float kQuickGeluCoef = 1.702f;

// x · sigmoid(k·x) written as x / (1 + e^(−k·x)): for very negative x the exponential
// overflows to +inf and the result is −0, as it should be.
inline float x_sigmoid(float x, float k) { return x / (1.0f + std::exp(-k * x)); }

// Runs body(begin, end) over [0, n), in chunks across the pool when n is large.
template <class F>
void chunked(ThreadPool& pool, int64_t n, F&& body) {
    constexpr int64_t kChunk = 4096;
    const int64_t n_chunks = (n + kChunk - 1) / kChunk;
    parallel_rows(pool, n_chunks, kChunk * 16, [&](int64_t c0, int64_t c1) {
        const int64_t e = c1 * kChunk < n ? c1 * kChunk : n;
        body(c0 * kChunk, e);
    });
}

}  // namespace

void gelu_tanh(const float* x, float* y, int64_t n) {
    require(n >= 0, "gelu_tanh", "negative size");
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + kGeluCoefA * v * v * v)));
    }
}

void gelu_erf(const float* x, float* y, int64_t n) {
    require(n >= 0, "gelu_erf", "negative size");
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + std::erf(v * kInvSqrt2));
    }
}

void quick_gelu(const float* x, float* y, int64_t n) {
    require(n >= 0, "quick_gelu", "negative size");
    for (int64_t i = 0; i < n; ++i) y[i] = x_sigmoid(x[i], kQuickGeluCoef);
}

void silu(const float* x, float* y, int64_t n) {
    require(n >= 0, "silu", "negative size");
    for (int64_t i = 0; i < n; ++i) y[i] = x_sigmoid(x[i], 1.0f);
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
    require(n >= 0, "swiglu", "negative size");
    for (int64_t i = 0; i < n; ++i) y[i] = x_sigmoid(gate[i], 1.0f) * up[i];
}

void gelu_tanh(const float* x, float* y, int64_t n, ThreadPool& pool) {
    require(n >= 0, "gelu_tanh", "negative size");
    chunked(pool, n, [&](int64_t b, int64_t e) { gelu_tanh(x + b, y + b, e - b); });
}

void gelu_erf(const float* x, float* y, int64_t n, ThreadPool& pool) {
    require(n >= 0, "gelu_erf", "negative size");
    chunked(pool, n, [&](int64_t b, int64_t e) { gelu_erf(x + b, y + b, e - b); });
}

void quick_gelu(const float* x, float* y, int64_t n, ThreadPool& pool) {
    require(n >= 0, "quick_gelu", "negative size");
    chunked(pool, n, [&](int64_t b, int64_t e) { quick_gelu(x + b, y + b, e - b); });
}

void silu(const float* x, float* y, int64_t n, ThreadPool& pool) {
    require(n >= 0, "silu", "negative size");
    chunked(pool, n, [&](int64_t b, int64_t e) { silu(x + b, y + b, e - b); });
}

// The threaded form is the decoder's hot path: core/vmath's polynomial exp (relative error
// about 2e-7 against the single-threaded form above, its specification).
void swiglu(const float* gate, const float* up, float* y, int64_t n, ThreadPool& pool) {
    require(n >= 0, "swiglu", "negative size");
    chunked(pool, n, [&](int64_t b, int64_t e) { vmath::swiglu(gate + b, up + b, y + b, e - b); });
}

}  // namespace glimpse::ops
