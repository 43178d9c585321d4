// ops::attention's kernels on 16-lane vectors with fused multiply-adds (compiled with
// -mavx512f; core/ops_attention_kernels.h has the code, core/ops_attention.cpp chooses the
// path). Each score and output is the same chain of fused multiply-adds as on the AVX2 path,
// only twice as many lanes run at once, so both paths give identical bits.
#include <immintrin.h>

#include <cmath>

#include "core/ops_attention_kernels.h"

namespace glimpse::ops::attn {

namespace {

typedef float f32x16 __attribute__((vector_size(64)));

struct Fma512Ops {
    static f32x16 madd(f32x16 a, f32x16 b, f32x16 acc) { return _mm512_fmadd_ps(a, b, acc); }
    static float madd1(float a, float b, float acc) { return std::fma(a, b, acc); }
};

}  // namespace

void attend_avx512(const float* q, const float* kt, int64_t ld_kt, const float* v, float* out, const Shape& s,
                   int64_t h, int64_t g, int64_t i0, int64_t i1, float* scores) {
    Kernels<f32x16, Fma512Ops>::attend(q, kt, ld_kt, v, out, s, h, g, i0, i1, scores);
}

}  // namespace glimpse::ops::attn
