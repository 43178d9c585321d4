// GLSL mirror of core/quant.h's block structs (std430 with 8/16-bit storage gives the same
// byte layout: 2-byte alignment, no padding) and the weight-type selection for shaders
// compiled with -DW_<TYPE>. Include, declare `layout(binding = B) readonly buffer ... { W_TYPE w[]; }`,
// then include weights.glsl for the accessor w_at().
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_8bit_storage : require

struct BlockQ8_0 {   // 34 bytes: y = d * qs[i]
    float16_t d;
    int8_t qs[32];
};
struct BlockQ4_0 {   // 18 bytes: y = d * (nibble - 8); low nibbles values 0..15, high 16..31
    float16_t d;
    uint8_t qs[16];
};
struct BlockQ4_1 {   // 20 bytes: y = d * nibble + m
    float16_t d;
    float16_t m;
    uint8_t qs[16];
};
struct BlockQ5_0 {   // 22 bytes: y = d * ((nibble | fifth bit << 4) - 16); bit j of qh (LE u32) for value j
    float16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
};
struct BlockQ5_1 {   // 24 bytes: y = d * (nibble | fifth bit << 4) + m
    float16_t d;
    float16_t m;
    uint8_t qh[4];
    uint8_t qs[16];
};
struct BlockQ4_K {   // 144 bytes per 256 values: y = d*sc_j*q - dmin*m_j (k_scale_min)
    float16_t d;
    float16_t dmin;
    uint8_t scales[12];
    uint8_t qs[128];
};
struct BlockQ5_K {   // 176 bytes per 256 values: y = d*sc_j*(q | fifth bit << 4) - dmin*m_j
    float16_t d;
    float16_t dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
};
struct BlockQ6_K {   // 210 bytes per 256 values: y = d * scales[s] * (q6 - 32)
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    float16_t d;
};

#if defined(W_F32)
#define W_TYPE float
#define W_BLOCK 1u
#elif defined(W_F16)
#define W_TYPE float16_t
#define W_BLOCK 1u
#elif defined(W_BF16)
#define W_TYPE uint16_t  // the high half of an f32's bits (bfloat16)
#define W_BLOCK 1u
#elif defined(W_Q8_0)
#define W_TYPE BlockQ8_0
#define W_BLOCK 32u
#elif defined(W_Q4_0)
#define W_TYPE BlockQ4_0
#define W_BLOCK 32u
#elif defined(W_Q4_1)
#define W_TYPE BlockQ4_1
#define W_BLOCK 32u
#elif defined(W_Q5_0)
#define W_TYPE BlockQ5_0
#define W_BLOCK 32u
#elif defined(W_Q5_1)
#define W_TYPE BlockQ5_1
#define W_BLOCK 32u
#elif defined(W_Q4_K)
#define W_TYPE BlockQ4_K
#define W_BLOCK 256u
#elif defined(W_Q5_K)
#define W_TYPE BlockQ5_K
#define W_BLOCK 256u
#elif defined(W_Q6_K)
#define W_TYPE BlockQ6_K
#define W_BLOCK 256u
#endif
