// ops::attention's kernels on 8-lane vectors with fused multiply-adds (compiled with -mavx2
// -mfma; core/ops_attention_kernels.h has the code, core/ops_attention.cpp chooses the path).
#include <immintrin.h>

#include <cmath>

#include "core/ops_attention_kernels.h"

namespace glimpse::ops::attn {

namespace {

typedef float f32x8 __attribute__((vector_size(32)));

struct FmaOps {
    static f32x8 madd(f32x8 a, f32x8 b, f32x8 acc) { return _mm256_fmadd_ps(a, b, acc); }
    static float madd1(float a, float b, float acc) { return std::fma(a, b, acc); }
};

}  // namespace

void attend_avx2(const float* q, const float* kt, int64_t ld_kt, const float* v, float* out, const Shape& s, int64_t h,
                 int64_t g, int64_t i0, int64_t i1, float* scores) {
    Kernels<f32x8, FmaOps>::attend(q, kt, ld_kt, v, out, s, h, g, i0, i1, scores);
}

}  // namespace glimpse::ops::attn
