// The element-wise activations (core/vk_ops.h UnaryOp) and SwiGLU, shared by unary.comp,
// binary.comp and the epilogue of the matmul kernels, so a fused activation is bit for bit the
// separate one.

// erf(x) with |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit, in float).
float erf_approx(float v) {
    const float z = abs(v);
    const float t = 1.0 / (1.0 + 0.5 * z);
    const float r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                    t * (-0.82215223 + t * 0.17087277)))))))));
    return v >= 0.0 ? 1.0 - r : r - 1.0;
}

float sigmoid(float v) { return 1.0 / (1.0 + exp(-v)); }

// SwiGLU of a gate value g and an up value u: silu(g) · u (binary.comp's swiglu, the GLU epilogue).
float swiglu(float g, float u) { return g / (1.0 + exp(-g)) * u; }

// op: 0 gelu_tanh, 1 gelu_erf, 2 quick_gelu, 3 silu, 4 scale (v · s).
float activation(uint op, float v, float s) {
    if (op == 0) {
        // tanh's argument clamped: tanh(±10) is ±1 in float, and some drivers compute tanh
        // through exp(2a), which overflows for large a.
        const float a = clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -10.0, 10.0);
        return 0.5 * v * (1.0 + tanh(a));
    }
    if (op == 1) return 0.5 * v * (1.0 + erf_approx(v * 0.7071067811865476));
    if (op == 2) return v * sigmoid(1.702 * v);
    if (op == 3) return v * sigmoid(v);
    return v * s;
}
