#version 450
// out[i][k] = table[ids[ids_offset + i]][k]: embedding lookup, dequantized to float32.
// table: W_TYPE w[n_rows rows of dim]; ids [n_ids] int32 (checked on the host; clamped here
// so that a bad id can never read outside the table); out [n_ids][dim].
#include "quant.glsl"
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(binding = 0) readonly buffer WBuf { W_TYPE w[]; };
layout(binding = 1) readonly buffer Ids { int ids[]; };
layout(binding = 2) writeonly buffer Out { float o[]; };

layout(push_constant) uniform Push {  // mirrors GetRowsPush in core/vk_ops.cpp
    uint dim, n_ids, n_rows, ids_offset;
} p;

#include "weights.glsl"

void main() {
    const uint idx = linear_invocation(WG);
    if (idx >= p.dim * p.n_ids) return;
    const uint i = idx / p.dim, k = idx % p.dim;
    const uint row = uint(clamp(ids[p.ids_offset + i], 0, int(p.n_rows) - 1));
    o[idx] = w_at(row, k, p.dim);
}
