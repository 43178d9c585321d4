// The cooperative-matrix operations the tensor-core kernels share (matmul_coop.comp,
// attention_coop.comp): a zero accumulator, C += A·B on 16×16×16 fragments (f16 A and B, f32
// C), storing an accumulator row-major into the kernel's `shared float scratch[]`, and which
// subgroup and lane an invocation is. Real (GL_NV_cooperative_matrix), or with -DEMULATE
// written out in plain GLSL, which any device runs. The kernel loads its own fragments (it
// knows its shared arrays), and, emulated, defines before including this file its FragA and
// FragB (a fragment is where it lies in shared memory) with
//   float frag_a_at(FragA a, uint r, uint k)  // element (r, k) of A
//   float frag_b_at(FragB b, uint c, uint k)  // element (k, c) of B
// Emulated, an accumulator is spread over 32 lanes as a real one is over a subgroup: lane l
// holds elements l + 32·i (i < 8), row-major; the lanes of "subgroup" s are invocations
// 32s .. 32s+31, whatever the device's subgroup size.
#ifndef EMULATE
#define FragA fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define FragB fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define Acc fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>
Acc acc_zero() { return Acc(0.0); }
Acc mul_add(FragA a, FragB b, Acc c) { return coopMatMulAddNV(a, b, c); }
void store_acc(Acc c, uint at, uint stride) { coopMatStoreNV(c, scratch, at, stride, false); }
uint subgroup_index() { return gl_SubgroupID; }
uint lane_index() { return gl_SubgroupInvocationID; }
#else
uint subgroup_index() { return gl_LocalInvocationIndex / 32; }
uint lane_index() { return gl_LocalInvocationIndex % 32; }
struct Acc {
    float v[8];
};
Acc acc_zero() {
    Acc c;
    for (uint i = 0; i < 8; ++i) c.v[i] = 0.0;
    return c;
}
// The loop over a lane's 8 elements stays a loop (the kernel enables
// GL_EXT_control_flow_attributes): unrolled, lavapipe took seconds to compile each pipeline.
// The k loop inside it is left to the compiler: with it kept too, lavapipe 22.3.6 summed
// wrongly in the matmul's 128×128 tiles with K ≥ 512 (2026-12-02).
Acc mul_add(FragA a, FragB b, Acc c) {
    const uint lane = lane_index();
    [[dont_unroll]] for (uint i = 0; i < 8; ++i) {
        const uint e = lane + 32 * i, r = e / 16, col = e % 16;
        float s = c.v[i];
        for (uint k = 0; k < 16; ++k) s += frag_a_at(a, r, k) * frag_b_at(b, col, k);
        c.v[i] = s;
    }
    return c;
}
void store_acc(Acc c, uint at, uint stride) {
    const uint lane = lane_index();
    for (uint i = 0; i < 8; ++i) {
        const uint e = lane + 32 * i;
        scratch[at + (e / 16) * stride + e % 16] = c.v[i];
    }
}
#endif
