// w_at(row, k, K): value k of weight row `row` (rows of K values, K a multiple of W_BLOCK),
// dequantized exactly as core/quant.cpp's dequantize_block does. Needs `w` declared as
// W_TYPE w[] (see quant.glsl).
#if defined(W_F32) || defined(W_F16)
float w_at(uint row, uint k, uint K) { return float(w[row * K + k]); }

#elif defined(W_BF16)
// bfloat16 → f32 is exact: the 16 stored bits become the f32's high half (core/fp16.h).
float w_at(uint row, uint k, uint K) { return uintBitsToFloat(uint(w[row * K + k]) << 16); }

#elif defined(W_Q8_0)
float w_at(uint row, uint k, uint K) {
    const uint b = row * (K / 32u) + k / 32u;
    return float(w[b].d) * float(int(w[b].qs[k % 32u]));
}

#elif defined(W_Q4_0)
float w_at(uint row, uint k, uint K) {
    const uint b = row * (K / 32u) + k / 32u;
    const uint i = k % 32u;
    const uint byte = uint(w[b].qs[i % 16u]);
    const uint q = i < 16u ? (byte & 15u) : (byte >> 4);
    return float(w[b].d) * float(int(q) - 8);
}

#elif defined(W_Q4_1)
float w_at(uint row, uint k, uint K) {
    const uint b = row * (K / 32u) + k / 32u;
    const uint i = k % 32u;
    const uint byte = uint(w[b].qs[i % 16u]);
    const uint q = i < 16u ? (byte & 15u) : (byte >> 4);
    return float(q) * float(w[b].d) + float(w[b].m);
}

#elif defined(W_Q5_0) || defined(W_Q5_1)
// Value i of the block: its nibble (low nibbles are values 0..15, high 16..31) and, as bit 4,
// bit i of qh read as a little-endian u32.
uint q5_code(uint b, uint i) {
    const uint byte = uint(w[b].qs[i % 16u]);
    const uint nib = i < 16u ? (byte & 15u) : (byte >> 4);
    const uint h = (uint(w[b].qh[i / 8u]) >> (i % 8u)) & 1u;
    return nib | (h << 4);
}
float w_at(uint row, uint k, uint K) {
    const uint b = row * (K / 32u) + k / 32u;
#if defined(W_Q5_0)
    return float(int(q5_code(b, k % 32u)) - 16) * float(w[b].d);
#else
    return float(q5_code(b, k % 32u)) * float(w[b].d) + float(w[b].m);
#endif
}

#elif defined(W_Q4_K) || defined(W_Q5_K)
// Sub-block j (32 values) scale and min, as k_scale_min in core/quant.h.
void k_scale_min(uint b, uint j, out uint sc, out uint m) {
    if (j < 4u) {
        sc = uint(w[b].scales[j]) & 63u;
        m = uint(w[b].scales[j + 4u]) & 63u;
    } else {
        sc = (uint(w[b].scales[j + 4u]) & 15u) | ((uint(w[b].scales[j - 4u]) >> 6) << 4);
        m = (uint(w[b].scales[j + 4u]) >> 4) | ((uint(w[b].scales[j]) >> 6) << 4);
    }
}
float w_at(uint row, uint k, uint K) {
    const uint b = row * (K / 256u) + k / 256u;
    const uint i = k % 256u;           // value 64c + 32h + l: byte qs[32c + l], nibble h
    const uint c = i / 64u, r = i % 64u;
    const uint byte = uint(w[b].qs[32u * c + r % 32u]);
#if defined(W_Q4_K)
    const uint q = r < 32u ? (byte & 15u) : (byte >> 4);
#else  // Q5_K: the fifth bit of value 64c + 32h + l is bit 2c + h of qh[l]
    const uint q = (r < 32u ? (byte & 15u) : (byte >> 4)) | (((uint(w[b].qh[r % 32u]) >> (2u * c + r / 32u)) & 1u) << 4);
#endif
    uint sc, m;
    k_scale_min(b, i / 32u, sc, m);
    return float(w[b].d) * float(sc) * float(q) - float(w[b].dmin) * float(m);
}

#elif defined(W_Q6_K)
float w_at(uint row, uint k, uint K) {
    const uint b = row * (K / 256u) + k / 256u;
    const uint i = k % 256u;            // value 128h + 32quad + l
    const uint h = i / 128u, quad = (i % 128u) / 32u, l = i % 32u;
    const uint lo_byte = uint(w[b].ql[64u * h + l + 32u * (quad & 1u)]);
    const uint lo = quad < 2u ? (lo_byte & 15u) : (lo_byte >> 4);
    const uint hi = (uint(w[b].qh[32u * h + l]) >> (2u * quad)) & 3u;
    const int q = int(lo | (hi << 4)) - 32;
    const int sc = int(w[b].scales[8u * h + l / 16u + 2u * quad]);
    return float(w[b].d) * float(sc) * float(q);
}
#endif

// ---- w_vec4: four consecutive values at once, for the decode matvec (matvec.comp) ----------
// w_vec4(row, k, K) == vec4(w_at(row, k + i, K) for i in 0..3), bit for bit, for k a multiple
// of 4 (then the four values share one block and one sub-block scale in every quantized type:
// sub-blocks are 16 or 32 values, nibble halves 16). The block's scales are read once per four
// values instead of once per value. The float types read one 8- or 16-byte word; that needs K a
// multiple of 4 (so that a row starts on a word) and the includer declaring the weight buffer a
// second time as `w4` (vec4 for F32, uvec2 for F16/BF16) and defining W_VEC4_ALIAS.
#if defined(W_F32) && defined(W_VEC4_ALIAS)
vec4 w_vec4(uint row, uint k, uint K) { return w4[(row * K + k) / 4u]; }

#elif defined(W_F16) && defined(W_VEC4_ALIAS)
vec4 w_vec4(uint row, uint k, uint K) {
    const uvec2 u = w4[(row * K + k) / 4u];  // little-endian: value k is the low half of u.x
    return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
}

#elif defined(W_BF16) && defined(W_VEC4_ALIAS)
// Four bfloat16 in two little-endian words (w_vec8 below reads eight through this too).
vec4 bf16x4(uvec2 u) {
    return vec4(uintBitsToFloat(u.x << 16), uintBitsToFloat(u.x & 0xffff0000u), uintBitsToFloat(u.y << 16),
                uintBitsToFloat(u.y & 0xffff0000u));
}
vec4 w_vec4(uint row, uint k, uint K) { return bf16x4(w4[(row * K + k) / 4u]); }

#elif defined(W_Q8_0)
vec4 w_vec4(uint row, uint k, uint K) {
    const uint b = row * (K / 32u) + k / 32u, i = k % 32u;
    const vec4 q = vec4(int(w[b].qs[i]), int(w[b].qs[i + 1u]), int(w[b].qs[i + 2u]), int(w[b].qs[i + 3u]));
    return float(w[b].d) * q;
}

#elif defined(W_Q4_0) || defined(W_Q4_1)
vec4 w_vec4(uint row, uint k, uint K) {
    const uint b = row * (K / 32u) + k / 32u, i = k % 32u;
    const uint j = i % 16u, shift = i < 16u ? 0u : 4u;
    const uvec4 q = (uvec4(uint(w[b].qs[j]), uint(w[b].qs[j + 1u]), uint(w[b].qs[j + 2u]), uint(w[b].qs[j + 3u])) >> shift) & 15u;
#if defined(W_Q4_0)
    return float(w[b].d) * (vec4(q) - 8.0);
#else
    return vec4(q) * float(w[b].d) + float(w[b].m);
#endif
}

#elif defined(W_Q5_0) || defined(W_Q5_1)
vec4 w_vec4(uint row, uint k, uint K) {
    const uint b = row * (K / 32u) + k / 32u, i = k % 32u;
    const vec4 q = vec4(q5_code(b, i), q5_code(b, i + 1u), q5_code(b, i + 2u), q5_code(b, i + 3u));
#if defined(W_Q5_0)
    return (q - 16.0) * float(w[b].d);
#else
    return q * float(w[b].d) + float(w[b].m);
#endif
}

#elif defined(W_Q4_K) || defined(W_Q5_K)
vec4 w_vec4(uint row, uint k, uint K) {
    const uint b = row * (K / 256u) + k / 256u;
    const uint i = k % 256u;  // as in w_at: value 64c + 32h + l
    const uint c = i / 64u, r = i % 64u, q0 = 32u * c + r % 32u, shift = r < 32u ? 0u : 4u;
    uvec4 q = (uvec4(uint(w[b].qs[q0]), uint(w[b].qs[q0 + 1u]), uint(w[b].qs[q0 + 2u]), uint(w[b].qs[q0 + 3u])) >> shift) & 15u;
#if defined(W_Q5_K)
    const uint l = r % 32u, hbit = 2u * c + r / 32u;
    q |= ((uvec4(uint(w[b].qh[l]), uint(w[b].qh[l + 1u]), uint(w[b].qh[l + 2u]), uint(w[b].qh[l + 3u])) >> hbit) & 1u) << 4;
#endif
    uint sc, m;
    k_scale_min(b, i / 32u, sc, m);
    return float(w[b].d) * float(sc) * vec4(q) - float(w[b].dmin) * float(m);
}

#elif defined(W_Q6_K)
vec4 w_vec4(uint row, uint k, uint K) {
    const uint b = row * (K / 256u) + k / 256u;
    const uint i = k % 256u;  // as in w_at: value 128h + 32quad + l
    const uint h = i / 128u, quad = (i % 128u) / 32u, l = i % 32u;
    const uint lo0 = 64u * h + l + 32u * (quad & 1u), shift = quad < 2u ? 0u : 4u, h0 = 32u * h + l;
    const uvec4 lo = (uvec4(uint(w[b].ql[lo0]), uint(w[b].ql[lo0 + 1u]), uint(w[b].ql[lo0 + 2u]), uint(w[b].ql[lo0 + 3u])) >> shift) & 15u;
    const uvec4 hi = (uvec4(uint(w[b].qh[h0]), uint(w[b].qh[h0 + 1u]), uint(w[b].qh[h0 + 2u]), uint(w[b].qh[h0 + 3u])) >> (2u * quad)) & 3u;
    const vec4 q = vec4(ivec4(lo | (hi << 4)) - 32);
    const int sc = int(w[b].scales[8u * h + l / 16u + 2u * quad]);
    return float(w[b].d) * float(sc) * q;
}
#endif

// ---- w_vec8: eight consecutive values, for the decode matvec's wide loads (matvec.comp) ----
// w_vec8(row, k, K, lo, hi): lo = w_vec4(row, k, K), hi = w_vec4(row, k + 4, K), for k and K
// multiples of 8 (the eight values then share one block and one sub-block scale in every
// quantized type). The types people run read the eight with as few, as wide loads as their
// layout allows, through aliases of the weight buffer that the includer declares before
// defining W_VEC8_ALIAS:
// - F16/BF16: one 16-byte word, `uvec4 w8[]` (K % 8 == 0 puts every row start on a word);
// - F32: two 16-byte words through w4 (W_VEC4_ALIAS);
// - Q8_0: four 2-byte words, `uint16_t wh[]` (the 34-byte blocks are only 2-byte aligned, so a
//   wider word would straddle blocks at every other block);
// - Q4_K: one 8-byte word, `uvec2 w8[]` (qs sits 16 bytes into the 144-byte block, and the
//   bytes of eight values 64c + 32h + l.. are qs[32c + l ..+8), l a multiple of 8).
// The rest take two w_vec4.
#ifdef W_VEC8_ALIAS
#if defined(W_F32)
void w_vec8(uint row, uint k, uint K, out vec4 lo, out vec4 hi) {
    const uint i = (row * K + k) / 4u;
    lo = w4[i];
    hi = w4[i + 1u];
}

#elif defined(W_F16)
void w_vec8(uint row, uint k, uint K, out vec4 lo, out vec4 hi) {
    const uvec4 u = w8[(row * K + k) / 8u];  // little-endian: value k is the low half of u.x
    lo = vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
    hi = vec4(unpackHalf2x16(u.z), unpackHalf2x16(u.w));
}

#elif defined(W_BF16)
void w_vec8(uint row, uint k, uint K, out vec4 lo, out vec4 hi) {
    const uvec4 u = w8[(row * K + k) / 8u];
    lo = bf16x4(u.xy);
    hi = bf16x4(u.zw);
}

#elif defined(W_Q8_0)
// The four int8 of a little-endian word, sign-extended (bitfieldExtract of an int does that).
vec4 i8x4(uint u) {
    const int s = int(u);
    return vec4(bitfieldExtract(s, 0, 8), bitfieldExtract(s, 8, 8), bitfieldExtract(s, 16, 8),
                bitfieldExtract(s, 24, 8));
}
void w_vec8(uint row, uint k, uint K, out vec4 lo, out vec4 hi) {
    const uint b = row * (K / 32u) + k / 32u;
    const uint h = 17u * b + 1u + (k % 32u) / 2u;  // the halfword holding qs[k % 32] (d is halfword 17b)
    const uint u0 = uint(wh[h]) | (uint(wh[h + 1u]) << 16), u1 = uint(wh[h + 2u]) | (uint(wh[h + 3u]) << 16);
    const float d = float(w[b].d);
    lo = d * i8x4(u0);
    hi = d * i8x4(u1);
}

#elif defined(W_Q4_K)
vec4 u8x4(uint u) { return vec4(u & 255u, (u >> 8) & 255u, (u >> 16) & 255u, u >> 24); }
void w_vec8(uint row, uint k, uint K, out vec4 lo, out vec4 hi) {
    const uint b = row * (K / 256u) + k / 256u;
    const uint i = k % 256u;  // as in w_at: value 64c + 32h + l
    const uint c = i / 64u, r = i % 64u, shift = r < 32u ? 0u : 4u;
    const uvec2 q = (w8[18u * b + 2u + 4u * c + (r % 32u) / 8u] >> shift) & 0x0f0f0f0fu;
    uint sc, m;
    k_scale_min(b, i / 32u, sc, m);
    lo = float(w[b].d) * float(sc) * u8x4(q.x) - float(w[b].dmin) * float(m);
    hi = float(w[b].d) * float(sc) * u8x4(q.y) - float(w[b].dmin) * float(m);
}

#else
void w_vec8(uint row, uint k, uint K, out vec4 lo, out vec4 hi) {
    lo = w_vec4(row, k, K);
    hi = w_vec4(row, k + 4u, K);
}
#endif
#endif  // W_VEC8_ALIAS
