// Rotary position embedding's arithmetic, shared by rope.comp (in place), rope_qkv.comp (from a
// fused Q·K·V product) and attention.comp's FROM_QKV variant (the same, inside the attention):
// the angle of pair i at a position, an accurate sin/cos of it, and the rotation.
// Needs the push constants p.style and p.theta_scale and the binding inv_freq[] declared first.

// sin and cos of a to a few ulp. Vulkan only promises 2^-11 absolute error for the built-in
// sin/cos (and lavapipe is that coarse), too little for positions in the thousands: reduce by
// π/2 in three parts (Cody–Waite: q·C1 is exact for |q| < 2^16) and use Cephes' single-precision
// minimax polynomials on [−π/4, π/4].
void sincos_accurate(float a, out float s, out float c) {
    const float q = round(a * 0.63661977236758134);
    float r = a - q * 1.5703125;
    r = r - q * 4.837512969970703125e-4;
    r = r - q * 7.54978995489188216e-8;
    const float z = r * r;
    const float sr = r + r * z * ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1);
    const float cr = 1.0 - 0.5 * z + z * z * ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z +
                                              4.166664568298827e-2);
    const int quadrant = int(q) & 3;  // two's complement: −1 & 3 = 3, as wanted
    if (quadrant == 0) { s = sr; c = cr; }
    else if (quadrant == 1) { s = cr; c = -sr; }
    else if (quadrant == 2) { s = -sr; c = -cr; }
    else { s = -cr; c = sr; }
}

// (u, v) turned by the angle a: a pair's rotation.
vec2 rotated(float u, float v, float a) {
    float s, c;
    sincos_accurate(a, s, c);
    return vec2(u * c - v * s, u * s + v * c);
}

// The offsets iu, iv of pair i's two values from its head's first (style 0: 2i, 2i+1; style 1:
// i, i + d/2).
void rope_dims(uint i, uint head_dim, out uint iu, out uint iv) {
    iu = p.style == 0 ? 2 * i : i;
    iv = p.style == 0 ? iu + 1 : i + head_dim / 2;
}

// Pair i of a head of head_dim values at `pos`: its angle a (style 0: pos·s^i multiplied one
// factor at a time; style 1: pos·inv_freq[i]) and its dims iu, iv (rope_dims).
void rope_pair(float pos, uint i, uint head_dim, out float a, out uint iu, out uint iv) {
    rope_dims(i, head_dim, iu, iv);
    if (p.style == 0) {
        a = pos;
        for (uint j = 0; j < i; ++j) a *= p.theta_scale;
    } else {
        a = pos * inv_freq[i];
    }
}
