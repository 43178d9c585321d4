// K-quants (256-value super-blocks): Q4_K, Q5_K, Q6_K dequantization and ggml's reference
// quantizers (`quantize_row_q{4,5,6}_K_ref` with their searches `make_qkx2_quants` and
// `make_qx_quants`, ggml/src/ggml-quants.c), plus the Q8_K activation blocks.
//
// The searches are floating-point heuristics, so bit-compatibility with ggml needs the same
// operations in the same order: every sum below runs sequentially in ggml's order, products
// are grouped as ggml writes them, and nothing is contracted into FMAs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/fp16.h"
#include "core/quant.h"

// Bit-compatibility needs every product rounded before it is added: no FMA contraction.
// (x86-64 without -mfma cannot contract anyway; aarch64 compilers would by default.)
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace glimpse {

namespace {

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: below this a group is zero

// ggml's nearest_int: round half to even (the default FP mode), valid there for
// |v| < 2^22. Clamped here to that range, and NaN gives 0, so any input is defined.
int nearest(float v) {
    if (std::isnan(v)) return 0;
    if (v >= 4194303.0f) return 4194303;
    if (v <= -4194303.0f) return -4194303;
    return int(std::nearbyint(v));
}

int clamp_int(int v, int lo, int hi) { return std::min(hi, std::max(lo, v)); }

// ggml's make_qkx2_quants (use_mad = false) for one 32-value sub-block: fits
//   x[i] ≈ scale · L[i] - min_out,   L[i] in [0, nmax],   min_out >= 0,
// minimising Σ w[i]·err². Starts from the min/max grid, then for k = 0..nstep tries
// iscale = (nmax + rmin + rdelta·k) / (max - min), rounds, solves the weighted 2x2 least
// squares for (scale, min) with those L, and keeps the best. Returns scale.
float fit_scale_min(const float* x, const float* w, int nmax, float rmin, float rdelta, int nstep,
                    uint8_t* L, float& min_out) {
    constexpr int n = 32;
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        std::fill(L, L + n, uint8_t(0));
        min_out = -min;
        return 0.0f;
    }
    float iscale = float(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = uint8_t(clamp_int(nearest(iscale * (x[i] - min)), 0, nmax));
        const float diff = scale * float(L[i]) + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    uint8_t Laux[n];
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(nearest(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = uint8_t(l);
            sum_l += w[i] * float(l);
            sum_l2 += w[i] * float(l) * float(l);
            sum_xl += w[i] * float(l) * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float cur_error = 0;
        for (int i = 0; i < n; ++i) {
            const float diff = this_scale * float(Laux[i]) + this_min - x[i];
            cur_error += w[i] * (diff * diff);
        }
        if (cur_error < best_error) {
            std::copy(Laux, Laux + n, L);
            best_error = cur_error;
            scale = this_scale;
            min = this_min;
        }
    }
    min_out = -min;
    return scale;
}

// ggml's make_qx_quants with rmse_type = 1 and no importance weights, for one 16-value
// sub-block of Q6_K: a symmetric grid x[i] ≈ scale · l, l in [-nmax, nmax-1], L[i] = l + nmax.
// Tries iscale = -(nmax + 0.1·k)/max for k = -9..9 (max = the signed largest value) and keeps
// the one maximising (Σ w·x·l)² / Σ w·l² with w = x², i.e. the least weighted squared error.
float fit_symmetric_scale(const float* x, int nmax, int8_t* L) {
    constexpr int n = 16;
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        std::fill(L, L + n, int8_t(0));
        return 0.0f;
    }
    // Σ w·x·l and Σ w·l² for the grid 1/iscale; writes the codes to `codes`.
    auto sums = [&](float iscale, int8_t* codes, float& sumlx, float& suml2) {
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(nearest(iscale * x[i]), -nmax, nmax - 1);
            codes[i] = int8_t(l + nmax);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * float(l);
            suml2 += w * float(l) * float(l);
        }
    };
    float sumlx, suml2;
    sums(float(-nmax) / max, L, sumlx, suml2);
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    int8_t cand[n];
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        sums(-(float(nmax) + 0.1f * float(is)) / max, cand, sumlx, suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            std::copy(cand, cand + n, L);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// The common part of Q4_K and Q5_K: fit each 32-value sub-block j (weights av_x + |x|, av_x
// the sub-block's RMS), quantize the 8 scales and 8 mins to 6 bits against the largest
// (d = max_scale/63, dmin = max_min/63), then requantize every value with the rounded scales:
// L = clamp(round((x + dmin·m_j) / (d·sc_j)), 0, nmax). Outputs d, dmin, scales[12], L[256].
void quantize_k_scales(const float* x, int nmax, float rmin, int nstep, uint16_t& d_out,
                       uint16_t& dmin_out, uint8_t packed[12], uint8_t* L) {
    float scales[8], mins[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        const float* xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
        const float av_x = std::sqrt(sum_x2 / 32);
        float w[32];
        for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xs[l]);
        scales[j] = fit_scale_min(xs, w, nmax, rmin, 0.1f, nstep, L + 32 * j, mins[j]);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; ++j) {
        // uint8 wrap-around then min(63, ·), as ggml does.
        const uint8_t ls = std::min<uint8_t>(63, uint8_t(nearest(inv_scale * scales[j])));
        const uint8_t lm = std::min<uint8_t>(63, uint8_t(nearest(inv_min * mins[j])));
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {  // low 4 bits in bytes 8..11, high 2 bits in the top of bytes 0..7
            packed[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
            packed[j - 4] = uint8_t(packed[j - 4] | ((ls >> 4) << 6));
            packed[j] = uint8_t(packed[j] | ((lm >> 4) << 6));
        }
    }
    d_out = f32_to_fp16(max_scale / 63.0f);
    dmin_out = f32_to_fp16(max_min / 63.0f);
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        k_scale_min(packed, j, sc, m);
        const float d = fp16_to_f32(d_out) * float(sc);
        if (d == 0) continue;  // keeps the codes of the fit, as ggml does
        const float dm = fp16_to_f32(dmin_out) * float(m);
        for (int i = 0; i < 32; ++i)
            L[32 * j + i] = uint8_t(clamp_int(nearest((x[32 * j + i] + dm) / d), 0, nmax));
    }
}

}  // namespace

// ---- Dequantization (MODELS.md §2.3) ----

// Chunk c = 0..3 covers y[64c .. 64c+63]: qs[32c + l] holds value 64c+l (low nibble, sub-block
// 2c) and 64c+32+l (high nibble, sub-block 2c+1); y = d·sc·q - dmin·m.
void dequantize_block(const BlockQ4_K& b, float* y) {
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    for (int c = 0; c < 4; ++c) {
        const uint8_t* q = b.qs + 32 * c;
        uint8_t sc, m;
        k_scale_min(b.scales, 2 * c, sc, m);
        const float d1 = d * float(sc), m1 = dmin * float(m);
        k_scale_min(b.scales, 2 * c + 1, sc, m);
        const float d2 = d * float(sc), m2 = dmin * float(m);
        for (int l = 0; l < 32; ++l) y[64 * c + l] = d1 * float(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) y[64 * c + 32 + l] = d2 * float(q[l] >> 4) - m2;
    }
}

// As Q4_K, plus a fifth bit: value 64c+l has it in qh[l] bit 2c, value 64c+32+l in bit 2c+1.
void dequantize_block(const BlockQ5_K& b, float* y) {
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    for (int c = 0; c < 4; ++c) {
        const uint8_t* ql = b.qs + 32 * c;
        const uint8_t lo_bit = uint8_t(1u << (2 * c)), hi_bit = uint8_t(2u << (2 * c));
        uint8_t sc, m;
        k_scale_min(b.scales, 2 * c, sc, m);
        const float d1 = d * float(sc), m1 = dmin * float(m);
        k_scale_min(b.scales, 2 * c + 1, sc, m);
        const float d2 = d * float(sc), m2 = dmin * float(m);
        for (int l = 0; l < 32; ++l)
            y[64 * c + l] = d1 * float((ql[l] & 0xF) + (b.qh[l] & lo_bit ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l)
            y[64 * c + 32 + l] = d2 * float((ql[l] >> 4) + (b.qh[l] & hi_bit ? 16 : 0)) - m2;
    }
}

// Two halves of 128 (ql += 64, qh += 32, scales += 8 per half). For l < 32 in half h, with
// s = scales + 8h + l/16, the four values at 128h + l + {0, 32, 64, 96} take their low 4 bits
// from ql[l] lo, ql[l+32] lo, ql[l] hi, ql[l+32] hi, their high 2 bits from qh[l] bits
// {0-1, 2-3, 4-5, 6-7}, and scales s[0], s[2], s[4], s[6]: y = d · s · (q - 32).
void dequantize_block(const BlockQ6_K& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = b.ql + 64 * h;
        const uint8_t* qh = b.qh + 32 * h;
        const int8_t* sc = b.scales + 8 * h;
        float* yh = y + 128 * h;
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            yh[l] = d * float(sc[is]) * float(q1);
            yh[l + 32] = d * float(sc[is + 2]) * float(q2);
            yh[l + 64] = d * float(sc[is + 4]) * float(q3);
            yh[l + 96] = d * float(sc[is + 6]) * float(q4);
        }
    }
}

// ---- Quantization ----

void quantize_block(const float* x, BlockQ4_K& b) {
    uint8_t L[kQKK];
    quantize_k_scales(x, 15, -1.0f, 20, b.d, b.dmin, b.scales, L);
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) b.qs[32 * c + l] = uint8_t(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
}

void quantize_block(const float* x, BlockQ5_K& b) {
    uint8_t L[kQKK];
    quantize_k_scales(x, 31, -0.5f, 15, b.d, b.dmin, b.scales, L);
    std::memset(b.qh, 0, sizeof b.qh);
    for (int c = 0; c < 4; ++c) {
        for (int l = 0; l < 32; ++l) {
            const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
            if (lo > 15) b.qh[l] = uint8_t(b.qh[l] | (1u << (2 * c)));
            if (hi > 15) b.qh[l] = uint8_t(b.qh[l] | (2u << (2 * c)));
            b.qs[32 * c + l] = uint8_t((lo & 0xF) | ((hi & 0xF) << 4));
        }
    }
}

// Q6_K: 16 sub-blocks of 16 values, each with a symmetric 6-bit grid; the 16 scales are
// stored as int8 relative to the one of largest magnitude (d = max_scale/-128), then every
// value is requantized with its rounded scale: q = clamp(round(x / (d·sc)), -32, 31) + 32.
void quantize_block(const float* x, BlockQ6_K& b) {
    int8_t L[kQKK];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        scales[ib] = fit_symmetric_scale(x + 16 * ib, 32, L + 16 * ib);
        if (std::fabs(scales[ib]) > max_abs_scale) {
            max_abs_scale = std::fabs(scales[ib]);
            max_scale = scales[ib];
        }
    }
    if (max_abs_scale < kGroupMaxEps) {
        std::memset(&b, 0, sizeof b);
        return;
    }
    const float iscale = -128.0f / max_scale;
    b.d = f32_to_fp16(1 / iscale);
    for (int ib = 0; ib < 16; ++ib) b.scales[ib] = int8_t(std::min(127, nearest(iscale * scales[ib])));
    for (int j = 0; j < 16; ++j) {
        const float d = fp16_to_f32(b.d) * float(b.scales[j]);
        if (d == 0) continue;  // keeps the codes of the fit, as ggml does
        for (int i = 0; i < 16; ++i)
            L[16 * j + i] = int8_t(clamp_int(nearest(x[16 * j + i] / d), -32, 31) + 32);
    }
    for (int h = 0; h < 2; ++h) {
        const int8_t* Lh = L + 128 * h;
        uint8_t* ql = b.ql + 64 * h;
        uint8_t* qh = b.qh + 32 * h;
        for (int l = 0; l < 32; ++l) {
            ql[l] = uint8_t((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
            ql[l + 32] = uint8_t((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
            qh[l] = uint8_t((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                            ((Lh[l + 96] >> 4) << 6));
        }
    }
}

void quantize_row_q8_K(const float* x, BlockQ8_K* y, int64_t n) {
    if (n < 0 || n % kQKK != 0)
        throw std::invalid_argument("quantize_row_q8_K: " + std::to_string(n) +
                                    " values is not a whole number of 256-value blocks");
    for (int64_t i = 0; i < n / kQKK; ++i) {
        const float* xb = x + i * kQKK;
        BlockQ8_K& b = y[i];
        float max = 0, amax = 0;
        for (int j = 0; j < kQKK; ++j) {
            if (std::fabs(xb[j]) > amax) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
        }
        if (amax == 0) {
            std::memset(&b, 0, sizeof b);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < kQKK; ++j) b.qs[j] = int8_t(clamp_int(nearest(iscale * xb[j]), -128, 127));
        for (int g = 0; g < kQKK / 16; ++g) {
            int sum = 0;
            for (int k = 0; k < 16; ++k) sum += b.qs[16 * g + k];
            b.bsums[g] = int16_t(sum);
        }
        b.d = 1 / iscale;
    }
}

}  // namespace glimpse
