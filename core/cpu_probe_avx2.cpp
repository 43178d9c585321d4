// AVX2 bodies of the machine probes in core/cpu_features.h (compiled with -mavx2 -mfma).
#include <immintrin.h>

#include "core/cpu_features.h"

namespace glimpse::detail {

// 12 independent accumulators: enough to cover FMA latency (4-5 cycles) × 2 FMA ports.
float fma_chains_avx2(long iters) {
    __m256 acc[12];
    for (int c = 0; c < 12; ++c) acc[c] = _mm256_set1_ps(0.01f * float(c));
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
        for (int c = 0; c < 12; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    }
    __m256 s = acc[0];
    for (int c = 1; c < 12; ++c) s = _mm256_add_ps(s, acc[c]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, s);
    float r = 0;
    for (float v : lanes) r += v;
    return r;
}

// The same 12 chains 16 wide, for CPUs where the GEMM uses its AVX-512 tile (the peak those
// kernels are measured against).
__attribute__((target("avx512f"))) float fma_chains_avx512(long iters) {
    __m512 acc[12];
    for (int c = 0; c < 12; ++c) acc[c] = _mm512_set1_ps(0.01f * float(c));
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
        for (int c = 0; c < 12; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    }
    __m512 s = acc[0];
    for (int c = 1; c < 12; ++c) s = _mm512_add_ps(s, acc[c]);
    alignas(64) float lanes[16];  // (not _mm512_reduce_add_ps: GCC 12 warns inside it)
    _mm512_store_ps(lanes, s);
    float r = 0;
    for (float v : lanes) r += v;
    return r;
}

// Streams n floats with 256-bit loads into 4 independent sums (a read-only pass, as a matvec).
float sum_floats_avx2(const float* p, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 64) {
        // The same software prefetch distance as the matvec kernels (4 KiB ahead), so the
        // probe measures what a streaming kernel can get, not what the hardware prefetchers
        // alone deliver. Prefetches past the end never fault.
        for (int l = 0; l < 4; ++l)
            _mm_prefetch(reinterpret_cast<const char*>(p + i + 1024 + 16 * l), _MM_HINT_T0);
        s0 = _mm256_add_ps(s0, _mm256_add_ps(_mm256_load_ps(p + i), _mm256_load_ps(p + i + 8)));
        s1 = _mm256_add_ps(s1, _mm256_add_ps(_mm256_load_ps(p + i + 16), _mm256_load_ps(p + i + 24)));
        s2 = _mm256_add_ps(s2, _mm256_add_ps(_mm256_load_ps(p + i + 32), _mm256_load_ps(p + i + 40)));
        s3 = _mm256_add_ps(s3, _mm256_add_ps(_mm256_load_ps(p + i + 48), _mm256_load_ps(p + i + 56)));
    }
    const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, s);
    float r = 0;
    for (float v : lanes) r += v;
    return r;
}

}  // namespace glimpse::detail
