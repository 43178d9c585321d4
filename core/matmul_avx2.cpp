// AVX2+FMA+F16C kernels of the matmul engine (compiled with -mavx2 -mfma -mf16c; called only
// when has_avx2_kernels()). The integer dots of the quantized matvec are in
// core/matmul_qdot_avx2.cpp.
//
// GEMM (M ≥ kMatvecMaxM), BLIS's loop order with x read in place:
//   for each block of NC weight rows, for each K-slice of KC values:
//     convert/dequantize the NC×KC weights to f32 once, transposed into panels
//     packed[panel][k][16] (NC·KC·4 B in L2);
//     for each block of MC x rows (MC·KC·4 B, stays in L2 across the panels):
//       for each panel (16 KiB, stays in L1), for each 6 rows of the block:
//         y[m][n] += Σ_{k in slice} x[m][k] · packed[k][n]   (a 6×16 register tile)
// The tile kernel keeps 12 ymm accumulators and does 2 weight loads and 6 broadcasts per k
// (with AVX-512F: 24 zmm accumulators over two panels, 12 rows; same results, below).
// Slices are applied in order of k, so each y element sees the same FMA sequence whatever
// the thread split.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>

#include "core/fp16.h"
#include "core/matmul_kernels.h"

namespace glimpse::mm {

namespace {

constexpr int MR = kGemmMR;
constexpr int NR = kGemmNR;
constexpr int64_t KC = kGemmKC;
constexpr int64_t kNC = 16 * NR;  // weight rows packed per slice: 256 × KC × 4 B = 768 KiB (L2)
constexpr int64_t kMC = 28 * MR;  // x rows per block: 168 × KC × 4 B ≈ 504 KiB (L2)

// ---- Loading 8 weights of a float row as f32 ----

inline __m256 load8(DType t, const uint8_t* row, int64_t k) {
    switch (t) {
    case DType::F16:
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
    case DType::BF16: {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    default:
        return _mm256_loadu_ps(reinterpret_cast<const float*>(row + 4 * k));
    }
}

inline float load1(DType t, const uint8_t* row, int64_t k) {
    uint16_t h;
    float f;
    switch (t) {
    case DType::F16:
        std::memcpy(&h, row + 2 * k, 2);
        return fp16_to_f32(h);
    case DType::BF16:
        std::memcpy(&h, row + 2 * k, 2);
        return bf16_to_f32(h);
    default:
        std::memcpy(&f, row + 4 * k, 4);
        return f;
    }
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// ---- Activation quantization, bit-identical to quantize_row_q8_0_activations and
// quantize_row_q8_K (core/quant.cpp): the same float operations in the same order,
// round-half-even (the FP default, as nearbyint), NaN codes 0. ----

inline __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// max(acc, |v|) lane-wise, ignoring NaN in v (as fmax): maxps returns its second operand
// when either is NaN.
inline __m256 max_abs(__m256 v, __m256 acc) { return _mm256_max_ps(abs8(v), acc); }

inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

inline int hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

// round-half-even(v) clamped to [lo, hi], NaN → 0, as int32 lanes.
inline __m256i round_clamp(__m256 v, float lo, float hi) {
    const __m256 r = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 c = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
    return _mm256_cvtps_epi32(_mm256_and_ps(c, _mm256_cmp_ps(v, v, _CMP_ORD_Q)));
}

// 32 int32 codes (4 vectors, each in [-128, 127]) → 32 int8 in order.
inline void store_codes(int8_t* dst, __m256i q0, __m256i q1, __m256i q2, __m256i q3) {
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    // packs work per 128-bit lane: the 4-byte groups come out as 0 2 4 6 | 1 3 5 7 of 8.
    const __m256i ordered = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), ordered);
}

void quantize_q8x32_avx2(const float* x, int64_t K, ActQ8x32* out) {
    for (int64_t i = 0; i < K / kQK; ++i) {
        const float* xb = x + i * kQK;
        __m256 v[4], amax8 = _mm256_setzero_ps();
        for (int j = 0; j < 4; ++j) {
            v[j] = _mm256_loadu_ps(xb + 8 * j);
            amax8 = max_abs(v[j], amax8);
        }
        const float amax = hmax8(amax8);
        const float d = fp16_to_f32(f32_to_fp16(amax / 127.0f));
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        __m256i q[4];
        for (int j = 0; j < 4; ++j) q[j] = round_clamp(_mm256_mul_ps(v[j], id), -127.0f, 127.0f);
        store_codes(out[i].qs, q[0], q[1], q[2], q[3]);
        out[i].d = d;
        const int sum = hsum8i(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        out[i].ds = d * float(sum);
    }
}

void quantize_q8k_avx2(const float* x, int64_t K, BlockQ8_K* out) {
    for (int64_t i = 0; i < K / kQKK; ++i) {
        const float* xb = x + i * kQKK;
        BlockQ8_K& b = out[i];
        __m256 amax8 = _mm256_setzero_ps();
        for (int j = 0; j < kQKK; j += 8) amax8 = max_abs(_mm256_loadu_ps(xb + j), amax8);
        const float amax = hmax8(amax8);
        if (amax == 0.0f) {  // all zeros (or NaN): as the reference, an all-zero block
            std::memset(&b, 0, sizeof b);
            continue;
        }
        float max = 0;  // the first value of largest magnitude, with its sign
        for (int j = 0; j < kQKK; ++j)
            if (std::fabs(xb[j]) == amax) {
                max = xb[j];
                break;
            }
        const float iscale = -127.0f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        for (int j = 0; j < kQKK; j += 32) {
            __m256i q[4];
            for (int u = 0; u < 4; ++u)
                q[u] = round_clamp(_mm256_mul_ps(_mm256_loadu_ps(xb + j + 8 * u), is), -128.0f, 127.0f);
            store_codes(b.qs + j, q[0], q[1], q[2], q[3]);
            b.bsums[j / 16] = int16_t(hsum8i(_mm256_add_epi32(q[0], q[1])));
            b.bsums[j / 16 + 1] = int16_t(hsum8i(_mm256_add_epi32(q[2], q[3])));
        }
        b.d = 1 / iscale;
    }
}

// ---- Matvec: each weight row read once, dotted with the M (< 4) x rows ----

// Decode streams the weights from DRAM once per token; the hardware prefetchers alone keep
// too few lines in flight for one core to reach the memory bandwidth, so each row asks for
// the bytes kPrefetchAhead beyond it while it is being computed. (Prefetches never fault, so
// running past the end of the matrix is harmless.)
constexpr uint64_t kPrefetchAhead = 4096;  // measured best of 0, 2, 4, 8, 16 KiB (docs/PERFORMANCE.md)

inline void prefetch_ahead(const uint8_t* row, uint64_t bytes) {
    for (uint64_t off = 0; off < bytes; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(row + kPrefetchAhead + off), _MM_HINT_T0);
}


// NW weight rows dotted with one x row, every dot in exactly the order the one-row decode
// uses: four 8-wide chains over 32 columns, an 8-wide step on chain 0, the chains added
// 0+1+2+3, a horizontal sum, the scalar tail. With K as small as the default model's 96 a
// lone dot is bound by the latency of its chains, so two weight rows at once run twice as
// many (2x on K = 96 to 256; two x rows per weight load instead measured no better).
template <int NW, DType T>
void dot_rows_as_one(const uint8_t* const* rows, const float* x, int64_t K, float* out) {
    constexpr int U = 4;
    __m256 acc[NW][U];
    for (int i = 0; i < NW; ++i)
        for (int u = 0; u < U; ++u) acc[i][u] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 * U <= K; k += 8 * U)
        for (int i = 0; i < NW; ++i)
            for (int u = 0; u < U; ++u)
                acc[i][u] = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8 * u), load8(T, rows[i], k + 8 * u), acc[i][u]);
    for (; k + 8 <= K; k += 8)
        for (int i = 0; i < NW; ++i) acc[i][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8(T, rows[i], k), acc[i][0]);
    for (int i = 0; i < NW; ++i) {
        __m256 s = acc[i][0];
        for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, acc[i][u]);
        float v = hsum(s);
        for (int64_t j = k; j < K; ++j) v += x[j] * load1(T, rows[i], j);
        out[i] = v;
    }
}

// y[m][n] for m < M, n in [n0, n1), every dot as the one-row decode computes it (so for any
// M, and however [n0, n1) is cut): weight rows two at a time, each pair dotted with every x row.
template <DType T>
void matvec_rows_as_one(const WeightView& W, const float* x, int64_t M, float* y, int64_t n0, int64_t n1) {
    const uint64_t row_bytes = uint64_t(W.K) * (T == DType::F32 ? 4 : 2);
    float out[2];
    int64_t n = n0;
    for (; n + 2 <= n1; n += 2) {
        const uint8_t* rows[2] = {W.row(n), W.row(n + 1)};
        prefetch_ahead(rows[0], 2 * row_bytes);
        for (int64_t m = 0; m < M; ++m) {
            dot_rows_as_one<2, T>(rows, x + m * W.K, W.K, out);
            y[m * W.N + n] = out[0];
            y[m * W.N + n + 1] = out[1];
        }
    }
    if (n < n1) {
        const uint8_t* rows[1] = {W.row(n)};
        prefetch_ahead(rows[0], row_bytes);
        for (int64_t m = 0; m < M; ++m) {
            dot_rows_as_one<1, T>(rows, x + m * W.K, W.K, out);
            y[m * W.N + n] = out[0];
        }
    }
}

// Two or three x rows sharing each weight load (their own order, not the one-row one).
template <int M, DType T>
void dot_rows(const uint8_t* row, const float* x, int64_t K, float* out) {
    constexpr int U = 2;
    __m256 acc[M][U];
    for (int m = 0; m < M; ++m)
        for (int u = 0; u < U; ++u) acc[m][u] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 * U <= K; k += 8 * U) {
        __m256 w[U];
        for (int u = 0; u < U; ++u) w[u] = load8(T, row, k + 8 * u);
        for (int m = 0; m < M; ++m)
            for (int u = 0; u < U; ++u)
                acc[m][u] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * K + k + 8 * u), w[u], acc[m][u]);
    }
    for (; k + 8 <= K; k += 8) {
        const __m256 w = load8(T, row, k);
        for (int m = 0; m < M; ++m)
            acc[m][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * K + k), w, acc[m][0]);
    }
    for (int m = 0; m < M; ++m) {
        __m256 s = acc[m][0];
        for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, acc[m][u]);
        float r = hsum(s);
        for (int64_t j = k; j < K; ++j) r += x[m * K + j] * load1(T, row, j);
        out[m] = r;
    }
}

template <DType T>
void matvec_float_t(const WeightView& W, const float* x, int64_t M, float* y, int64_t n0, int64_t n1) {
    if (M == 1) return matvec_rows_as_one<T>(W, x, 1, y, n0, n1);
    float out[3];
    const uint64_t row_bytes = uint64_t(W.K) * (T == DType::F32 ? 4 : 2);
    for (int64_t n = n0; n < n1; ++n) {
        const uint8_t* row = W.row(n);
        prefetch_ahead(row, row_bytes);
        if (M == 2) dot_rows<2, T>(row, x, W.K, out);
        else dot_rows<3, T>(row, x, W.K, out);
        for (int64_t m = 0; m < M; ++m) y[m * W.N + n] = out[m];
    }
}

// Any number of x rows, each with the bits of the one-row decode (matmul_rows_as_decode).
void matvec_float_rows_avx2(const WeightView& W, const float* x, int64_t M, float* y, int64_t n0, int64_t n1) {
    switch (W.type) {
    case DType::F16: return matvec_rows_as_one<DType::F16>(W, x, M, y, n0, n1);
    case DType::BF16: return matvec_rows_as_one<DType::BF16>(W, x, M, y, n0, n1);
    default: return matvec_rows_as_one<DType::F32>(W, x, M, y, n0, n1);
    }
}

void matvec_float_avx2(const WeightView& W, const float* x, int64_t M, float* y, int64_t n0, int64_t n1) {
    switch (W.type) {
    case DType::F16: return matvec_float_t<DType::F16>(W, x, M, y, n0, n1);
    case DType::BF16: return matvec_float_t<DType::BF16>(W, x, M, y, n0, n1);
    default: return matvec_float_t<DType::F32>(W, x, M, y, n0, n1);
    }
}

void matvec_quant_avx2(const WeightView& W, const QuantActs& acts, int64_t M, float* y, int64_t n0,
                       int64_t n1) {
    const QDotFn dot = qdot_avx2_for(W.type);
    const uint64_t row_bytes = uint64_t(W.K / W.block_elems) * W.block_bytes;
    for (int64_t n = n0; n < n1; ++n) {
        prefetch_ahead(W.row(n), row_bytes);
        for (int64_t m = 0; m < M; ++m) y[m * W.N + n] = dot(W.row(n), acts.row(m), W.K);
    }
}

// ---- GEMM: packing ----

inline void transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// packed[k][16] (k < kc) = the f32 values k0 + k of rows[0..rows) (zeros for the missing
// rows up to 16). rows[j] points at a row stored in type t (F32/F16/BF16).
void pack_panel(DType t, const uint8_t* const* rows, int nrows, int64_t k0, int64_t kc, float* packed) {
    for (int half = 0; half < 2; ++half) {
        const int r0 = 8 * half;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 v[8];
            for (int j = 0; j < 8; ++j)
                v[j] = r0 + j < nrows ? load8(t, rows[r0 + j], k0 + k) : _mm256_setzero_ps();
            transpose8(v);
            for (int i = 0; i < 8; ++i) _mm256_store_ps(packed + (k + i) * NR + r0, v[i]);
        }
        for (; k < kc; ++k)
            for (int j = 0; j < 8; ++j)
                packed[k * NR + r0 + j] = r0 + j < nrows ? load1(t, rows[r0 + j], k0 + k) : 0.0f;
    }
}

// Thread-local scratch: the packed panels of one NC×KC block and, for quantized weights,
// one panel's dequantized rows.
struct Scratch {
    struct Free {
        void operator()(float* p) const { ::operator delete[](p, std::align_val_t(64)); }
    };
    std::unique_ptr<float[], Free> packed{new (std::align_val_t(64)) float[kNC * KC]};
    std::unique_ptr<float[], Free> rows{new (std::align_val_t(64)) float[NR * KC]};
};

// Packs slice [k0, k0+kc) of weight rows [n, n+nrows) (nrows ≤ 16) into `packed` [kc][16].
void pack_weights(const WeightView& W, int64_t n, int nrows, int64_t k0, int64_t kc, float* rowbuf,
                  float* packed) {
    const uint8_t* rows[NR];
    if (is_float_type(W.type)) {
        for (int j = 0; j < nrows; ++j) rows[j] = W.row(n + j);
        pack_panel(W.type, rows, nrows, k0, kc, packed);
        return;
    }
    // k0 and kc are whole blocks (KC is a multiple of 256).
    const uint64_t off = uint64_t(k0 / W.block_elems) * W.block_bytes;
    for (int j = 0; j < nrows; ++j) {
        float* dst = rowbuf + j * KC;
        dequantize_row(W.type, W.row(n + j) + off, dst, kc);
        rows[j] = reinterpret_cast<const uint8_t*>(dst);
    }
    pack_panel(DType::F32, rows, nrows, 0, kc, packed);
}

// ---- GEMM: the register tile ----

// y[r][0..16) (+)= Σ_k x[r][k] · w[k][0..16) for r < R; ldx, ldy in floats. The 2·R
// accumulators are named variables (GCC keeps arrays of vectors on the stack, not in
// registers); rows r ≥ R compile away.
template <int R>
void tile(const float* x, int64_t ldx, const float* w, int64_t kc, float* y, int64_t ldy, bool accumulate) {
    static_assert(R >= 1 && R <= 6);
    __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0,
           a4 = a0, b4 = a0, a5 = a0, b5 = a0;
#define GLIMPSE_ROWS(OP) OP(0, a0, b0) OP(1, a1, b1) OP(2, a2, b2) OP(3, a3, b3) OP(4, a4, b4) OP(5, a5, b5)
#define GLIMPSE_LOAD(r, a, b)                      \
    if constexpr (R > r) {                          \
        a = _mm256_loadu_ps(y + r * ldy);           \
        b = _mm256_loadu_ps(y + r * ldy + 8);       \
    }
#define GLIMPSE_FMA(r, a, b)                                        \
    if constexpr (R > r) {                                          \
        const __m256 xb = _mm256_broadcast_ss(x + r * ldx + k);     \
        a = _mm256_fmadd_ps(xb, w0, a);                             \
        b = _mm256_fmadd_ps(xb, w1, b);                             \
    }
#define GLIMPSE_STORE(r, a, b)                     \
    if constexpr (R > r) {                          \
        _mm256_storeu_ps(y + r * ldy, a);           \
        _mm256_storeu_ps(y + r * ldy + 8, b);       \
    }
    if (accumulate) {
        GLIMPSE_ROWS(GLIMPSE_LOAD)
    }
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; ++k) {
        const __m256 w0 = _mm256_load_ps(w + k * NR), w1 = _mm256_load_ps(w + k * NR + 8);
        GLIMPSE_ROWS(GLIMPSE_FMA)
    }
    GLIMPSE_ROWS(GLIMPSE_STORE)
#undef GLIMPSE_STORE
#undef GLIMPSE_FMA
#undef GLIMPSE_LOAD
#undef GLIMPSE_ROWS
}

using TileFn = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, bool);
constexpr TileFn kTiles[MR + 1] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>};

// A tile narrower than 16 columns goes through a 16-wide buffer, with the same arithmetic.
void edge_tile(int rows, int cols, const float* x, int64_t ldx, const float* w, int64_t kc, float* y,
               int64_t ldy, bool accumulate) {
    alignas(32) float buf[MR * NR] = {};
    if (accumulate)
        for (int r = 0; r < rows; ++r) std::memcpy(buf + r * NR, y + r * ldy, sizeof(float) * cols);
    kTiles[rows](x, ldx, w, kc, buf, NR, accumulate);
    for (int r = 0; r < rows; ++r) std::memcpy(y + r * ldy, buf + r * NR, sizeof(float) * cols);
}

// ---- GEMM: the AVX-512 register tile ----
//
// On CPUs with AVX-512F the same loops run a 12×32 tile over two adjacent 16-wide panels: 24
// zmm accumulators, 2 weight loads and 12 broadcasts per k, twice the flops per instruction of
// the ymm tile. Each lane does exactly the FMA the ymm tile does for that element, in the same
// order of k, so both paths give identical bits (the tests compare them). Compiled for
// AVX-512F by a target attribute; called only when has_avx512_kernels().
#define GLIMPSE_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

constexpr int kMR512 = 12;
static_assert(kMC % kMR512 == 0, "an x block holds whole AVX-512 tiles");

template <int R>
GLIMPSE_AVX512 void tile512(const float* x, int64_t ldx, const float* w0p, const float* w1p, int64_t kc, float* y,
                            int64_t ldy, bool accumulate) {
    static_assert(R >= 1 && R <= kMR512);
    __m512 a0 = _mm512_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0, a4 = a0,
           b4 = a0, a5 = a0, b5 = a0, a6 = a0, b6 = a0, a7 = a0, b7 = a0, a8 = a0, b8 = a0, a9 = a0, b9 = a0,
           a10 = a0, b10 = a0, a11 = a0, b11 = a0;
#define GLIMPSE_ROWS(OP)                                                                                       \
    OP(0, a0, b0) OP(1, a1, b1) OP(2, a2, b2) OP(3, a3, b3) OP(4, a4, b4) OP(5, a5, b5) OP(6, a6, b6) OP(7, a7, b7) \
        OP(8, a8, b8) OP(9, a9, b9) OP(10, a10, b10) OP(11, a11, b11)
#define GLIMPSE_LOAD(r, a, b)                       \
    if constexpr (R > r) {                          \
        a = _mm512_loadu_ps(y + r * ldy);           \
        b = _mm512_loadu_ps(y + r * ldy + 16);      \
    }
#define GLIMPSE_FMA(r, a, b)                                   \
    if constexpr (R > r) {                                     \
        const __m512 xb = _mm512_set1_ps(x[r * ldx + k]);      \
        a = _mm512_fmadd_ps(xb, w0, a);                        \
        b = _mm512_fmadd_ps(xb, w1, b);                        \
    }
#define GLIMPSE_STORE(r, a, b)                      \
    if constexpr (R > r) {                          \
        _mm512_storeu_ps(y + r * ldy, a);           \
        _mm512_storeu_ps(y + r * ldy + 16, b);      \
    }
    if (accumulate) {
        GLIMPSE_ROWS(GLIMPSE_LOAD)
    }
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; ++k) {
        const __m512 w0 = _mm512_load_ps(w0p + k * NR), w1 = _mm512_load_ps(w1p + k * NR);
        GLIMPSE_ROWS(GLIMPSE_FMA)
    }
    GLIMPSE_ROWS(GLIMPSE_STORE)
#undef GLIMPSE_STORE
#undef GLIMPSE_FMA
#undef GLIMPSE_LOAD
#undef GLIMPSE_ROWS
}

using Tile512Fn = void (*)(const float*, int64_t, const float*, const float*, int64_t, float*, int64_t, bool);
constexpr Tile512Fn kTiles512[kMR512 + 1] = {nullptr,       tile512<1>,  tile512<2>,  tile512<3>, tile512<4>,
                                             tile512<5>,    tile512<6>,  tile512<7>,  tile512<8>, tile512<9>,
                                             tile512<10>,   tile512<11>, tile512<12>};

// The x block [mc0, mc1) against the packed panels of columns [n_begin, nc1) with the ymm
// tiles (the panel of column n starts at packed + (n − nc0) · KC).
void block_avx2(const float* x, int64_t K, int64_t k0, int64_t kc, const float* packed, int64_t nc0, int64_t n_begin,
                int64_t nc1, int64_t mc0, int64_t mc1, float* y, int64_t N) {
    for (int64_t n = n_begin; n < nc1; n += NR) {
        const int cols = int(std::min<int64_t>(NR, nc1 - n));
        const float* panel = packed + (n - nc0) * KC;
        for (int64_t m = mc0; m < mc1; m += MR) {
            const int rows = int(std::min<int64_t>(MR, mc1 - m));
            const float* xm = x + m * K + k0;
            float* ym = y + m * N + n;
            // y (M×N) is larger than L2 in the ViT MLP; fetch the next tile's rows now so its
            // loads and stores do not stall on L3/DRAM.
            if (m + MR < mc1)
                for (int r = 0; r < MR; ++r)
                    _mm_prefetch(reinterpret_cast<const char*>(ym + (MR + r) * N), _MM_HINT_T0);
            if (cols == NR) kTiles[rows](xm, K, panel, kc, ym, N, k0 > 0);
            else edge_tile(rows, cols, xm, K, panel, kc, ym, N, k0 > 0);
        }
    }
}

// The same with 32-wide AVX-512 tiles over pairs of full panels; a last single or partial
// panel goes to the ymm tiles.
GLIMPSE_AVX512 void block_avx512(const float* x, int64_t K, int64_t k0, int64_t kc, const float* packed, int64_t nc0,
                                 int64_t n_begin, int64_t nc1, int64_t mc0, int64_t mc1, float* y, int64_t N) {
    int64_t n = n_begin;
    for (; n + 2 * NR <= nc1; n += 2 * NR) {
        const float* p0 = packed + (n - nc0) * KC;
        const float* p1 = p0 + NR * KC;
        for (int64_t m = mc0; m < mc1; m += kMR512) {
            const int rows = int(std::min<int64_t>(kMR512, mc1 - m));
            float* ym = y + m * N + n;
            if (m + kMR512 < mc1)
                for (int r = 0; r < kMR512; ++r)
                    _mm_prefetch(reinterpret_cast<const char*>(ym + (kMR512 + r) * N), _MM_HINT_T0);
            kTiles512[rows](x + m * K + k0, K, p0, p1, kc, ym, N, k0 > 0);
        }
    }
    block_avx2(x, K, k0, kc, packed, nc0, n, nc1, mc0, mc1, y, N);
}

// ---- Batched decode on AVX-512: two x rows per zmm ----
//
// matvec_rows_as_one's dots for M >= 2 x rows, four x rows and two weight rows at a time. A
// zmm holds the ymm accumulator of x row 2p (lanes 0-7) and of x row 2p + 1 (lanes 8-15), so
// each lane does exactly the FMA that dot_rows_as_one does for its dot, in the same order;
// the four partial sums of a dot are added in the same order, and hsum4 reduces four dots
// with hsum's own tree: the same bits as the one-row decode, with half the loads per FMA and
// a quarter of the horizontal shuffles. K must be a multiple of 8 (no scalar tail).

// [hsum(a), hsum(c), _, _, hsum(b), hsum(d), _, _]: hsum's pairs (i, i+4), then (i, i+2),
// then (0, 1), done for four vectors at once.
GLIMPSE_AVX512 inline __m256 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    const __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    const __m256 u = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm256_add_ps(_mm256_shuffle_ps(u, u, _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(u, u, _MM_SHUFFLE(3, 1, 3, 1)));
}

// (Masked forms with a zero source throughout: GCC 12's unmasked insert, extract and 512→256
// casts read an undefined vector and warn.)
GLIMPSE_AVX512 inline __m512 load_row_pair(const float* x0, const float* x1) {
    // lanes 8-15 from x1[0..8): the load of x1 − 8 is masked to those lanes, so it reads
    // only x1[0..8)
    return _mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(0x00FF, x0), 0xFF00, x1 - 8);
}

GLIMPSE_AVX512 inline __m512 both_halves(__m256 w) {
    return _mm512_castpd_ps(_mm512_mask_broadcast_f64x4(_mm512_setzero_pd(), 0xFF, _mm256_castps_pd(w)));
}

GLIMPSE_AVX512 inline __m256 half(__m512 v, int which) {
    return which == 0 ? _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xF, _mm512_castps_pd(v), 0))
                      : _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xF, _mm512_castps_pd(v), 1));
}

// out[2·j + i] = x row j · weight row i, for x rows j < 2P (row stride K) and i < 2.
template <int P, DType T>
GLIMPSE_AVX512 void dot_row_pairs_as_one(const uint8_t* const* rows, const float* x, int64_t K, float* out) {
    constexpr int U = 4;  // dot_rows_as_one's partial sums
    __m512 acc[P][2][U];
    for (int p = 0; p < P; ++p)
        for (int i = 0; i < 2; ++i)
            for (int u = 0; u < U; ++u) acc[p][i][u] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 8 * U <= K; k += 8 * U)
        for (int u = 0; u < U; ++u) {
            const __m512 w0 = both_halves(load8(T, rows[0], k + 8 * u)), w1 = both_halves(load8(T, rows[1], k + 8 * u));
            for (int p = 0; p < P; ++p) {
                const __m512 xp = load_row_pair(x + 2 * p * K + k + 8 * u, x + (2 * p + 1) * K + k + 8 * u);
                acc[p][0][u] = _mm512_fmadd_ps(xp, w0, acc[p][0][u]);
                acc[p][1][u] = _mm512_fmadd_ps(xp, w1, acc[p][1][u]);
            }
        }
    for (; k + 8 <= K; k += 8) {
        const __m512 w0 = both_halves(load8(T, rows[0], k)), w1 = both_halves(load8(T, rows[1], k));
        for (int p = 0; p < P; ++p) {
            const __m512 xp = load_row_pair(x + 2 * p * K + k, x + (2 * p + 1) * K + k);
            acc[p][0][0] = _mm512_fmadd_ps(xp, w0, acc[p][0][0]);
            acc[p][1][0] = _mm512_fmadd_ps(xp, w1, acc[p][1][0]);
        }
    }
    for (int p = 0; p < P; ++p) {
        __m512 s[2];
        for (int i = 0; i < 2; ++i) {
            s[i] = acc[p][i][0];
            for (int u = 1; u < U; ++u) s[i] = _mm512_add_ps(s[i], acc[p][i][u]);
        }
        const __m256 r = hsum4(half(s[0], 0), half(s[0], 1), half(s[1], 0), half(s[1], 1));
        float v[8];
        _mm256_storeu_ps(v, r);
        out[4 * p + 0] = v[0];  // x row 2p, weight row 0
        out[4 * p + 1] = v[1];  // x row 2p, weight row 1
        out[4 * p + 2] = v[4];  // x row 2p + 1, weight row 0
        out[4 * p + 3] = v[5];  // x row 2p + 1, weight row 1
    }
}

template <DType T>
GLIMPSE_AVX512 void matvec_row_pairs_as_one(const WeightView& W, const float* x, int64_t M, float* y, int64_t n0,
                                            int64_t n1) {
    const int64_t K = W.K, N = W.N;
    const uint64_t row_bytes = uint64_t(K) * (T == DType::F32 ? 4 : 2);
    float out[8];
    int64_t n = n0;
    for (; n + 2 <= n1; n += 2) {
        const uint8_t* rows[2] = {W.row(n), W.row(n + 1)};
        prefetch_ahead(rows[0], 2 * row_bytes);
        int64_t m = 0;
        for (; m + 4 <= M; m += 4) {
            dot_row_pairs_as_one<2, T>(rows, x + m * K, K, out);
            for (int j = 0; j < 4; ++j) y[(m + j) * N + n] = out[2 * j], y[(m + j) * N + n + 1] = out[2 * j + 1];
        }
        for (; m + 2 <= M; m += 2) {
            dot_row_pairs_as_one<1, T>(rows, x + m * K, K, out);
            for (int j = 0; j < 2; ++j) y[(m + j) * N + n] = out[2 * j], y[(m + j) * N + n + 1] = out[2 * j + 1];
        }
        for (; m < M; ++m) {
            dot_rows_as_one<2, T>(rows, x + m * K, K, out);
            y[m * N + n] = out[0];
            y[m * N + n + 1] = out[1];
        }
    }
    if (n < n1) matvec_rows_as_one<T>(W, x, M, y, n, n1);
}

GLIMPSE_AVX512 void matvec_float_rows_avx512(const WeightView& W, const float* x, int64_t M, float* y, int64_t n0,
                                             int64_t n1) {
    if (M < 2 || W.K % 8 != 0) return matvec_float_rows_avx2(W, x, M, y, n0, n1);
    switch (W.type) {
    case DType::F16: return matvec_row_pairs_as_one<DType::F16>(W, x, M, y, n0, n1);
    case DType::BF16: return matvec_row_pairs_as_one<DType::BF16>(W, x, M, y, n0, n1);
    default: return matvec_row_pairs_as_one<DType::F32>(W, x, M, y, n0, n1);
    }
}

using BlockFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, int64_t,
                         int64_t, float*, int64_t);

// The GEMM loops (file comment) around one block kernel.
template <BlockFn Block>
void gemm_blocked(const WeightView& W, const float* x, float* y, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    thread_local Scratch scratch;
    const int64_t K = W.K, N = W.N;
    for (int64_t nc0 = n0; nc0 < n1; nc0 += kNC) {
        const int64_t nc1 = std::min(n1, nc0 + kNC);
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t kc = std::min(KC, K - k0);
            for (int64_t n = nc0; n < nc1; n += NR)
                pack_weights(W, n, int(std::min<int64_t>(NR, nc1 - n)), k0, kc, scratch.rows.get(),
                             scratch.packed.get() + (n - nc0) * KC);
            for (int64_t mc0 = m0; mc0 < m1; mc0 += kMC)
                Block(x, K, k0, kc, scratch.packed.get(), nc0, nc0, nc1, mc0, std::min(m1, mc0 + kMC), y, N);
        }
    }
}

}  // namespace

const KernelSet& avx2_kernels() {
    static const KernelSet ks{quantize_q8x32_avx2, quantize_q8k_avx2, matvec_float_avx2,
                              matvec_float_rows_avx2, matvec_quant_avx2, gemm_blocked<block_avx2>};
    return ks;
}

const KernelSet& avx512_kernels() {
    static const KernelSet ks{quantize_q8x32_avx2, quantize_q8k_avx2, matvec_float_avx2,
                              matvec_float_rows_avx512, matvec_quant_avx2, gemm_blocked<block_avx512>};
    return ks;
}

}  // namespace glimpse::mm
