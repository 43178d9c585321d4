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
