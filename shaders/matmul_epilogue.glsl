// The store of the matmul kernels (matvec.comp, matmul.comp), with what core/vk_ops.h
// MatmulEpilogue fuses into it: y[y_offset + m·N + n] = act(s + bias[n]) (+ its old value).
// The including shader declares y, bias, the Push block (MatmulPush in core/vk_ops.cpp: y_offset)
// and the specialization constants HAS_BIAS, ACT (0 none, else UnaryOp + 1), ACCUMULATE and GLU,
// so each pipeline holds only the steps it uses.
#include "activation.glsl"

void store_output(uint m, uint n, float s) {
    float r = s;
    if (HAS_BIAS != 0) r += bias[n];
    if (ACT != 0) r = activation(ACT - 1, r, 1.0);
    const uint i = p.y_offset + m * p.N + n;
    if (ACCUMULATE != 0) r = y[i] + r;
    y[i] = r;
}

// GLU: y[y_offset + m·N + n] = silu(g) · u for the gate sum g (weight row n) and the up sum u
// (row n + N), through binary.comp's swiglu, so it equals the two matmuls and swiglu.
void store_glu(uint m, uint n, float g, float u) { y[p.y_offset + m * p.N + n] = swiglu(g, u); }
