// AVX2+FMA and AVX-512F bodies of core/vmath.h (this file is compiled with -mavx2 -mfma
// -mf16c; the AVX-512 functions add avx512f by a target attribute). The same polynomial as the
// portable code, with fused multiply-adds.
#include <immintrin.h>

// GCC 12's AVX-512 intrinsics (max, min, roundscale, cvtps, slli) start from
// _mm512_undefined_*(), which its -Wmaybe-uninitialized flags wherever they are inlined: a
// false positive (GCC bug 105593, fixed in GCC 13). Silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "core/vmath.h"

namespace glimpse::vmath::detail {

namespace {

constexpr float kLog2e = 1.44269504f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kGeluC = -2.0f * 0.7978845608f, kGeluA = 0.044715f;

inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// Lanes [0, n) of a tail (n < 8) as a mask for maskload / maskstore.
inline __m256i tail_mask8(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline float hsum8(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

inline float hmax8(__m256 v) {
    const __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(t, _mm_shuffle_ps(t, t, 1)));
}

inline __m256 gelu8(__m256 v) {
    const __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
    const __m256 u2 = _mm256_mul_ps(_mm256_set1_ps(kGeluC), _mm256_fmadd_ps(_mm256_set1_ps(kGeluA), v3, v));
    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(u2)));
}

#define GLIMPSE_AVX512 __attribute__((target("avx512f,avx2,fma")))

GLIMPSE_AVX512 inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

GLIMPSE_AVX512 inline __mmask16 tail_mask16(int64_t n) { return __mmask16((1u << n) - 1u); }

GLIMPSE_AVX512 inline float hsum16(__m512 v) {
    alignas(64) float lanes[16];  // (not _mm512_reduce_add_ps: GCC 12 warns inside it)
    _mm512_store_ps(lanes, v);
    float s = 0;
    for (float l : lanes) s += l;
    return s;
}

GLIMPSE_AVX512 inline float hmax16(__m512 v) {
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, v);
    float m = lanes[0];
    for (float l : lanes) m = l > m ? l : m;
    return m;
}

GLIMPSE_AVX512 inline __m512 gelu16(__m512 v) {
    const __m512 v3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
    const __m512 u2 = _mm512_mul_ps(_mm512_set1_ps(kGeluC), _mm512_fmadd_ps(_mm512_set1_ps(kGeluA), v3, v));
    return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(u2)));
}

}  // namespace

float exp_scaled_row_avx2(float* x, int64_t n, float scale) {
    __m256 vmax = _mm256_set1_ps(x[0]);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    float max = hmax8(vmax);
    for (; i < n; ++i) max = x[i] > max ? x[i] : max;
    // scale > 0, so the largest scaled value is scale · max; every exponent is <= 0.
    const __m256 m = _mm256_set1_ps(scale * max), sc = _mm256_set1_ps(scale);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 e0 = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(x + i), sc, m));
        const __m256 e1 = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(x + i + 8), sc, m));
        acc0 = _mm256_add_ps(acc0, e0);
        acc1 = _mm256_add_ps(acc1, e1);
        _mm256_storeu_ps(x + i, e0);
        _mm256_storeu_ps(x + i + 8, e1);
    }
    for (; i < n; i += 8) {
        const __m256i mask = tail_mask8(n - i);
        const __m256 e = exp8(_mm256_fmsub_ps(_mm256_maskload_ps(x + i, mask), sc, m));
        acc0 = _mm256_add_ps(acc0, _mm256_and_ps(e, _mm256_castsi256_ps(mask)));
        _mm256_maskstore_ps(x + i, mask, e);
    }
    return float(1.0 / double(hsum8(_mm256_add_ps(acc0, acc1))));
}

GLIMPSE_AVX512 float exp_scaled_row_avx512(float* x, int64_t n, float scale) {
    __m512 vmax = _mm512_set1_ps(x[0]);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
    if (i < n) vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(vmax, tail_mask16(n - i), x + i));
    const float max = hmax16(vmax);
    const __m512 m = _mm512_set1_ps(scale * max), sc = _mm512_set1_ps(scale);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 e0 = exp16(_mm512_fmsub_ps(_mm512_loadu_ps(x + i), sc, m));
        const __m512 e1 = exp16(_mm512_fmsub_ps(_mm512_loadu_ps(x + i + 16), sc, m));
        acc0 = _mm512_add_ps(acc0, e0);
        acc1 = _mm512_add_ps(acc1, e1);
        _mm512_storeu_ps(x + i, e0);
        _mm512_storeu_ps(x + i + 16, e1);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : tail_mask16(n - i);
        const __m512 e = exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, x + i), sc, m));
        acc0 = _mm512_mask_add_ps(acc0, k, acc0, e);
        _mm512_mask_storeu_ps(x + i, k, e);
    }
    return float(1.0 / double(hsum16(_mm512_add_ps(acc0, acc1))));
}

void gelu_tanh_avx2(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        const __m256i mask = tail_mask8(n - i);
        _mm256_maskstore_ps(y + i, mask, gelu8(_mm256_maskload_ps(x + i, mask)));
    }
}

GLIMPSE_AVX512 void gelu_tanh_avx512(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, k, gelu16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

void swiglu_avx2(const float* gate, const float* up, float* y, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    auto f = [&](__m256 g, __m256 u) { return _mm256_div_ps(_mm256_mul_ps(g, u), _mm256_add_ps(one, exp8(_mm256_xor_ps(g, neg)))); };
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < n) {
        const __m256i mask = tail_mask8(n - i);
        _mm256_maskstore_ps(y + i, mask, f(_mm256_maskload_ps(gate + i, mask), _mm256_maskload_ps(up + i, mask)));
    }
}

GLIMPSE_AVX512 void swiglu_avx512(const float* gate, const float* up, float* y, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : tail_mask16(n - i);
        const __m512 g = _mm512_maskz_loadu_ps(k, gate + i), u = _mm512_maskz_loadu_ps(k, up + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
        _mm512_mask_storeu_ps(y + i, k, _mm512_div_ps(_mm512_mul_ps(g, u), _mm512_add_ps(one, e)));
    }
}

}  // namespace glimpse::vmath::detail
