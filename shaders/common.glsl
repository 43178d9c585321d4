// Helpers shared by every compute shader. Buffers and bindings are declared in each .comp
// (the build counts them there); this file only holds functions.

// Dispatches larger than 65535 workgroups in x are split over y (core/vk_ops.cpp
// split_groups); this is the linear workgroup index.
uint linear_group() { return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x; }

// The linear index of this invocation for 1-D element-wise dispatches of `wg`-wide groups.
uint linear_invocation(uint wg) { return linear_group() * wg + gl_LocalInvocationID.x; }
