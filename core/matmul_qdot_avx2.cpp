// AVX2 integer dot products of one quantized weight row with one quantized activation row
// (the decode matvec). Compiled with -mavx2 -mfma -mf16c; qdot_scalar in core/matmul.cpp is
// the specification of each one.
//
// Per 32 values: the weight codes become 32 bytes, _mm256_maddubs_epi16 multiplies them
// (unsigned, or made unsigned with the sign trick |w|·sign(w)·x) with the int8 activation
// codes and adds pairs into int16 (|sum| ≤ 2·128·127, no saturation for codes ≤ 127 in
// magnitude), _mm256_madd_epi16 widens to 8 int32 lanes (times a sub-block scale for the
// K types), and the block's float scale is applied with one FMA into 8 float lanes.
#include <immintrin.h>

#include <cstddef>
#include <cstring>

#include "core/matmul_kernels.h"

namespace glimpse::mm {

namespace {

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

inline float half_at(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Σ of 4 adjacent products per int32 lane: unsigned u (0..255) × signed s.
inline __m256i dot_u8_i8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
// The same for signed w × signed s: |w| × (s with w's sign).
inline __m256i dot_i8_i8(__m256i w, __m256i s) {
    return dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(s, w));
}

// 16 packed bytes → 32 codes 0..15: low nibbles are values 0..15, high nibbles 16..31.
inline __m256i nibbles32(const uint8_t* qs) {
    const __m128i q = load16(qs), m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

// The 32 fifth bits (LE u32 at qh) → byte j = 0x10 where bit j is set, else 0.
inline __m256i fifth_bits(const uint8_t* qh) {
    uint32_t bits;
    std::memcpy(&bits, qh, 4);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(int(bits)),
        _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202,
                           0x0303030303030303));
    // Byte j keeps every bit but bit (j mod 8) set; all ones iff that bit was set.
    const __m256i probe = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    const __m256i set = _mm256_cmpeq_epi8(probe, _mm256_set1_epi64x(-1));
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

// ---- Legacy 32-value types ----
// Codes(b) gives the 32 weight codes of the block at b; Signed says whether they are signed
// (offset removed) or unsigned with a min m at byte kMinAt (added as m·d_x·Σq_x).

template <class Block, bool kSigned, class Codes>
float qdot_legacy(const uint8_t* row, const void* act, int64_t K, Codes codes) {
    const auto* a = static_cast<const ActQ8x32*>(act);
    const int64_t nb = K / kQK;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float summ = 0;
    auto block = [&](int64_t i, __m256& acc) {
        const uint8_t* b = row + size_t(i) * sizeof(Block);
        const __m256i w = codes(b), x = load32(a[i].qs);
        const __m256i p = kSigned ? dot_i8_i8(w, x) : dot_u8_i8(w, x);
        const __m256 d = _mm256_set1_ps(half_at(b + offsetof(Block, d)) * a[i].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        if constexpr (!kSigned) summ += half_at(b + offsetof(Block, m)) * a[i].ds;
    };
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        block(i, acc0);
        block(i + 1, acc1);
    }
    if (i < nb) block(i, acc0);
    return hsum(_mm256_add_ps(acc0, acc1)) + summ;
}

float qdot_q8_0(const uint8_t* row, const void* act, int64_t K) {
    return qdot_legacy<BlockQ8_0, true>(row, act, K, [](const uint8_t* b) {
        return load32(b + offsetof(BlockQ8_0, qs));
    });
}
float qdot_q4_0(const uint8_t* row, const void* act, int64_t K) {
    return qdot_legacy<BlockQ4_0, true>(row, act, K, [](const uint8_t* b) {
        return _mm256_sub_epi8(nibbles32(b + offsetof(BlockQ4_0, qs)), _mm256_set1_epi8(8));
    });
}
float qdot_q4_1(const uint8_t* row, const void* act, int64_t K) {
    return qdot_legacy<BlockQ4_1, false>(row, act, K, [](const uint8_t* b) {
        return nibbles32(b + offsetof(BlockQ4_1, qs));
    });
}
float qdot_q5_0(const uint8_t* row, const void* act, int64_t K) {
    return qdot_legacy<BlockQ5_0, true>(row, act, K, [](const uint8_t* b) {
        const __m256i q = _mm256_or_si256(nibbles32(b + offsetof(BlockQ5_0, qs)),
                                          fifth_bits(b + offsetof(BlockQ5_0, qh)));
        return _mm256_sub_epi8(q, _mm256_set1_epi8(16));
    });
}
float qdot_q5_1(const uint8_t* row, const void* act, int64_t K) {
    return qdot_legacy<BlockQ5_1, false>(row, act, K, [](const uint8_t* b) {
        return _mm256_or_si256(nibbles32(b + offsetof(BlockQ5_1, qs)),
                               fifth_bits(b + offsetof(BlockQ5_1, qh)));
    });
}

// ---- K types (256 values, activations in BlockQ8_K) ----

// Q4_K / Q5_K: sub-block j (32 values) has a 6-bit scale sc_j and min m_j;
// Σ = d·Σ_j sc_j·Σ q·q_x − dmin·Σ_j m_j·(bsum_2j + bsum_2j+1), both times d_x.
template <class Block>
float qdot_q45k(const uint8_t* row, const void* act, int64_t K) {
    constexpr bool kFive = sizeof(Block) == sizeof(BlockQ5_K);
    const auto* a = static_cast<const BlockQ8_K*>(act);
    const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i < K / kQKK; ++i) {
        const uint8_t* b = row + size_t(i) * sizeof(Block);
        uint8_t scales[12], sc[8], mn[8];
        std::memcpy(scales, b + offsetof(Block, scales), 12);
        int mins = 0;
        for (int j = 0; j < 8; ++j) {
            k_scale_min(scales, j, sc[j], mn[j]);
            mins += mn[j] * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        summ += half_at(b + offsetof(Block, dmin)) * a[i].d * float(mins);
        const uint8_t* qs = b + offsetof(Block, qs);
        __m256i qh = _mm256_setzero_si256();
        if constexpr (kFive) qh = load32(b + offsetof(BlockQ5_K, qh));
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
            const __m256i q4 = load32(qs + 32 * c);
            __m256i lo = _mm256_and_si256(q4, low4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low4);
            if constexpr (kFive) {
                // bit 2c of qh[l] is the fifth bit of value 64c + l, bit 2c+1 of 64c + 32 + l
                const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one);
                const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(h0, 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(h1, 4));
            }
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(a[i].qs + 64 * c)),
                                                 _mm256_set1_epi16(sc[2 * c]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32(a[i].qs + 64 * c + 32)),
                                                 _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        const float d = half_at(b + offsetof(Block, d)) * a[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc) - summ;
}

// Q6_K: codes q ∈ [0, 64) with value q − 32, one int8 scale per 16 values;
// Σ = d·d_x·(Σ_g sc_g·Σ q·q_x − 32·Σ_g sc_g·bsum_g).
float qdot_q6_k(const uint8_t* row, const void* act, int64_t K) {
    const auto* a = static_cast<const BlockQ8_K*>(act);
    const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
    __m256 acc = _mm256_setzero_ps();
    float sumo = 0;
    for (int64_t i = 0; i < K / kQKK; ++i) {
        const uint8_t* b = row + size_t(i) * sizeof(BlockQ6_K);
        int8_t sc[16];
        std::memcpy(sc, b + offsetof(BlockQ6_K, scales), 16);
        int offset = 0;
        for (int g = 0; g < 16; ++g) offset += sc[g] * a[i].bsums[g];
        const float d = half_at(b + offsetof(BlockQ6_K, d)) * a[i].d;
        sumo += d * float(32 * offset);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = load32(b + offsetof(BlockQ6_K, ql) + 64 * h);
            const __m256i ql1 = load32(b + offsetof(BlockQ6_K, ql) + 64 * h + 32);
            const __m256i qh = load32(b + offsetof(BlockQ6_K, qh) + 32 * h);
            auto high2 = [&](int shift) {
                return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, shift), low2), 4);
            };
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, low4), high2(0)),
                _mm256_or_si256(_mm256_and_si256(ql1, low4), high2(2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), high2(4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), high2(6)),
            };
            for (int j = 0; j < 4; ++j) {
                const int g = 8 * h + 2 * j;  // groups g (values 0..15) and g+1 (16..31)
                const __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[g + 1]), _mm_set1_epi16(sc[g]));
                const __m256i p = _mm256_maddubs_epi16(q[j], load32(a[i].qs + 128 * h + 32 * j));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc) - sumo;
}

}  // namespace

QDotFn qdot_avx2_for(DType t) {
    switch (t) {
    case DType::Q8_0: return qdot_q8_0;
    case DType::Q4_0: return qdot_q4_0;
    case DType::Q4_1: return qdot_q4_1;
    case DType::Q5_0: return qdot_q5_0;
    case DType::Q5_1: return qdot_q5_1;
    case DType::Q4_K: return qdot_q45k<BlockQ4_K>;
    case DType::Q5_K: return qdot_q45k<BlockQ5_K>;
    case DType::Q6_K: return qdot_q6_k;
    default: return nullptr;  // matmul validated the type; float types never get here
    }
}

}  // namespace glimpse::mm
