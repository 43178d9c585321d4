// Helpers shared by every compute shader. Buffers and bindings are declared in each .comp
// (the build counts them there); this file only holds functions.

// Dispatches larger than 65535 workgroups in x are split over y (core/vk_ops.cpp
// split_groups); this is the linear workgroup index.
uint linear_group() { return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x; }

// The linear index of this invocation for 1-D element-wise dispatches of `wg`-wide groups.
uint linear_invocation(uint wg) { return linear_group() * wg + gl_LocalInvocationID.x; }

// Four values rounded to f16 and packed in a uvec2, as the tensor-core kernels stage them, and
// half j (0..3) of such a word (packHalf2x16 puts its x in the low 16 bits): their emulated
// builds read fragments this way.
uvec2 pack4(vec4 x) { return uvec2(packHalf2x16(x.xy), packHalf2x16(x.zw)); }
float half_of(uvec2 u, uint j) { return unpackHalf2x16(j < 2 ? u.x : u.y)[j % 2]; }
