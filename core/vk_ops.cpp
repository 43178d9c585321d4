// Recording of the Vulkan ops (core/vk_ops.h): argument checks, push constants (each struct
// mirrors the `Push` block of its shader, field for field), group counts.
#include "core/vk_ops.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <stdexcept>
#include <vector>

#include "core/error.h"
#include "core/vk_context.h"

namespace glimpse::vk {

namespace {

// ---- push-constant mirrors (std430 scalars: 4 bytes each, no padding) -----------------------
struct MatmulPush {  // matvec.comp, matmul.comp (which declares the first four)
    uint32_t M, N, K;
    uint32_t y_offset;  // the rest of the epilogue is specialization constants
    float norm_eps;     // matvec.comp's NORM prologue
};
struct GetRowsPush {  // get_rows.comp
    uint32_t dim, n_ids, n_rows, ids_offset;
};
struct GreedyPickPush {  // greedy_pick.comp
    uint32_t n, out_slot, has_position;
};
struct NormPush {  // rms_norm.comp, layer_norm.comp
    uint32_t rows, n, has_weight, has_bias;
    float eps;
};
struct SoftmaxPush {  // softmax_rows.comp
    uint32_t rows, n, causal;
    int32_t offset;
};
struct RopePush {  // rope.comp
    uint32_t n_tokens, n_heads, head_dim, style;
    float theta_scale;
    uint32_t x_offset;
    uint32_t n_heads2, x2_offset;
};
struct RopeQkvPush {  // rope_qkv.comp
    uint32_t n_tokens, n_heads, n_kv_heads, head_dim, style;
    float theta_scale;
    uint32_t kv_offset, row0;
};
struct UnaryPush {  // unary.comp
    uint32_t n;
    float s;
};
struct BinaryPush {  // binary.comp
    uint32_t n, nb;
};
struct AttentionPush {  // attention.comp, attention_tiled.comp, attention_block.comp
    uint32_t n_q, n_kv, n_heads, n_kv_heads, head_dim, causal, q_pos0;
    float scale;
    uint32_t n_split, n_batch, row0;
};
struct AttentionQkvPush {  // attention.comp with FROM_QKV
    AttentionPush a;
    uint32_t style;
    float theta_scale;
};
struct CopyPush {  // copy.comp
    uint32_t n, src_offset, dst_offset;
};
static_assert(sizeof(MatmulPush) == 20 && sizeof(CopyPush) == 12 && sizeof(NormPush) == 20 && sizeof(RopePush) == 32);
static_assert(sizeof(AttentionPush) == 44 && sizeof(SoftmaxPush) == 16 && sizeof(RopeQkvPush) == 32);
static_assert(sizeof(AttentionQkvPush) == 52);

// A write confined to rows [row0, row0 + n) of b, rows of `row_floats` floats (vk::out_range):
// dispatches writing other rows of b need no barrier against it.
Arg out_rows(Buffer& b, int64_t row0, int64_t n, int64_t row_floats) {
    return out_range(b, uint64_t(row0 * row_floats) * 4, uint64_t(n * row_floats) * 4);
}

constexpr int64_t kMaxU32 = 0xffffffffLL;
constexpr uint32_t kMaxAttentionHeadDim = 256;

void require(bool ok, const char* op, const std::string& what) {
    if (!ok) throw std::invalid_argument(std::string("vk::") + op + ": " + what);
}

// A kernel whose workgroup stages `bytes` of shared memory: a Device error where the device has less.
void require_shared_memory(const Context& ctx, uint64_t bytes, const std::string& kernel) {
    if (bytes > ctx.info().max_shared_memory)
        throw Error(ErrorKind::Device, "vulkan: " + ctx.label() + ": " + kernel + " needs " + std::to_string(bytes) +
                                           " bytes of shared memory, the device has " +
                                           std::to_string(ctx.info().max_shared_memory));
}

// The tensor-core kernels (matmul_coop.comp, attention_coop.comp) asked for on a device
// without what they need: a Device error naming it.
void require_tensor_cores(const Context& ctx, const std::string& kernel) {
    if (!ctx.coop_matmul_supported())
        throw Error(ErrorKind::Device, "vulkan: " + ctx.label() + " cannot run the tensor-core " + kernel +
                                           " (it needs VK_NV_cooperative_matrix with " + kCoopMatmulShape + ")");
}

uint32_t u32(int64_t v, const char* op) {
    require(v >= 0 && v <= kMaxU32, op, "size " + std::to_string(v) + " outside [0, 2^32)");
    return uint32_t(v);
}

// Throws unless the buffers are all different (no two handles the same).
void require_distinct(std::initializer_list<const Buffer*> buffers, const char* op, const std::string& what) {
    for (auto a = buffers.begin(); a != buffers.end(); ++a)
        for (auto b = a + 1; b != buffers.end(); ++b) require((*a)->handle() != (*b)->handle(), op, what);
}

void require_floats(const Buffer& b, int64_t count, const char* op, const char* name) {
    require(count >= 0 && b.size() >= uint64_t(count) * 4, op,
            std::string(name) + " holds " + std::to_string(b.size() / 4) + " floats, " + std::to_string(count) +
                " needed");
}

// Workgroup size for the 1-D and per-row shaders: `want` (a power of two) or less.
uint32_t wg_size(const Context& ctx, uint32_t want) {
    uint32_t w = want;
    while (w > ctx.info().max_workgroup_invocations && w > 1) w /= 2;
    return w;
}

// `total` workgroups laid out as x·y ≥ total, x within the device limit (shaders use
// linear_group() and skip indices ≥ total).
Groups split_groups(const Context& ctx, int64_t total) {
    const int64_t max_x = ctx.info().max_workgroup_count[0];
    if (total <= max_x) return {uint32_t(total), 1, 1};
    const int64_t y = (total + max_x - 1) / max_x;
    if (y > int64_t(ctx.info().max_workgroup_count[1]))
        throw Error(ErrorKind::Device, "vulkan: a dispatch of " + std::to_string(total) +
                                           " workgroups is too large for " + ctx.label());
    return {uint32_t(max_x), uint32_t(y), 1};
}

Groups elementwise_groups(const Context& ctx, int64_t n, uint32_t wg) { return split_groups(ctx, (n + wg - 1) / wg); }

ShaderId matvec_shader(DType t, bool subgroup) {
    switch (t) {
        case DType::F32: return subgroup ? ShaderId::matvec_f32_sg : ShaderId::matvec_f32;
        case DType::F16: return subgroup ? ShaderId::matvec_f16_sg : ShaderId::matvec_f16;
        case DType::BF16: return subgroup ? ShaderId::matvec_bf16_sg : ShaderId::matvec_bf16;
        case DType::Q8_0: return subgroup ? ShaderId::matvec_q8_0_sg : ShaderId::matvec_q8_0;
        case DType::Q4_0: return subgroup ? ShaderId::matvec_q4_0_sg : ShaderId::matvec_q4_0;
        case DType::Q4_1: return subgroup ? ShaderId::matvec_q4_1_sg : ShaderId::matvec_q4_1;
        case DType::Q5_0: return subgroup ? ShaderId::matvec_q5_0_sg : ShaderId::matvec_q5_0;
        case DType::Q5_1: return subgroup ? ShaderId::matvec_q5_1_sg : ShaderId::matvec_q5_1;
        case DType::Q4_K: return subgroup ? ShaderId::matvec_q4_k_sg : ShaderId::matvec_q4_k;
        case DType::Q5_K: return subgroup ? ShaderId::matvec_q5_k_sg : ShaderId::matvec_q5_k;
        case DType::Q6_K: return subgroup ? ShaderId::matvec_q6_k_sg : ShaderId::matvec_q6_k;
        default: throw std::invalid_argument("vk::matmul: unsupported type");
    }
}

ShaderId matmul_shader(DType t) {
    switch (t) {
        case DType::F32: return ShaderId::matmul_f32;
        case DType::F16: return ShaderId::matmul_f16;
        case DType::BF16: return ShaderId::matmul_bf16;
        case DType::Q8_0: return ShaderId::matmul_q8_0;
        case DType::Q4_0: return ShaderId::matmul_q4_0;
        case DType::Q4_1: return ShaderId::matmul_q4_1;
        case DType::Q5_0: return ShaderId::matmul_q5_0;
        case DType::Q5_1: return ShaderId::matmul_q5_1;
        case DType::Q4_K: return ShaderId::matmul_q4_k;
        case DType::Q5_K: return ShaderId::matmul_q5_k;
        case DType::Q6_K: return ShaderId::matmul_q6_k;
        default: throw std::invalid_argument("vk::matmul: unsupported type");
    }
}

ShaderId get_rows_shader(DType t) {
    switch (t) {
        case DType::F32: return ShaderId::get_rows_f32;
        case DType::F16: return ShaderId::get_rows_f16;
        case DType::BF16: return ShaderId::get_rows_bf16;
        case DType::Q8_0: return ShaderId::get_rows_q8_0;
        default: throw std::invalid_argument("vk::get_rows: unsupported type");
    }
}

// The tiled matmul's K step (matmul.comp's BK) on every path.
constexpr uint32_t kTiledBK = 16;

// The tiled matmul's shared memory (matmul.comp) for TM = TN = t: kTiledBK rows of x's and W's
// tile (GLU: and the up rows') with 4 floats of padding each. 8.5 KiB at 64×64 (GLU 12.8),
// 16.5 KiB at 128×128 (GLU 24.8); Vulkan promises only 16 KiB.
uint64_t matmul_stage_bytes(uint32_t t, bool glu) { return uint64_t(kTiledBK) * 4 * (16 * t + 4) * (glu ? 3 : 2); }

// The tensor-core matmul's shared memory (matmul_coop.comp) for TF fragments a subgroup a
// side: x's and W's rows of a step (32·TF rows of 40 halves each; GLU: and the up rows') and
// four 16×16 float scratches. 14 KiB at 64×64 (GLU 19), 24 KiB at 128×128.
uint64_t coop_stage_bytes(uint32_t tf, bool glu) { return (glu ? 3ull : 2ull) * 32 * tf * 40 * 2 + 4 * 256 * 4; }

ShaderId matmul_coop_shader(DType t, bool emulate) {
    switch (t) {
        case DType::F32: return emulate ? ShaderId::matmul_coop_emu_f32 : ShaderId::matmul_coop_f32;
        case DType::F16: return emulate ? ShaderId::matmul_coop_emu_f16 : ShaderId::matmul_coop_f16;
        case DType::BF16: return emulate ? ShaderId::matmul_coop_emu_bf16 : ShaderId::matmul_coop_bf16;
        case DType::Q8_0: return emulate ? ShaderId::matmul_coop_emu_q8_0 : ShaderId::matmul_coop_q8_0;
        case DType::Q4_0: return emulate ? ShaderId::matmul_coop_emu_q4_0 : ShaderId::matmul_coop_q4_0;
        case DType::Q4_1: return emulate ? ShaderId::matmul_coop_emu_q4_1 : ShaderId::matmul_coop_q4_1;
        case DType::Q5_0: return emulate ? ShaderId::matmul_coop_emu_q5_0 : ShaderId::matmul_coop_q5_0;
        case DType::Q5_1: return emulate ? ShaderId::matmul_coop_emu_q5_1 : ShaderId::matmul_coop_q5_1;
        case DType::Q4_K: return emulate ? ShaderId::matmul_coop_emu_q4_k : ShaderId::matmul_coop_q4_k;
        case DType::Q5_K: return emulate ? ShaderId::matmul_coop_emu_q5_k : ShaderId::matmul_coop_q5_k;
        case DType::Q6_K: return emulate ? ShaderId::matmul_coop_emu_q6_k : ShaderId::matmul_coop_q6_k;
        default: throw std::invalid_argument("vk::matmul: unsupported type");
    }
}

}  // namespace

bool matmul_supports(DType t) {
    switch (t) {
        case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0: case DType::Q4_0:
        case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K:
        case DType::Q6_K:
            return true;
        default:
            return false;
    }
}

bool get_rows_supports(DType t) {
    return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0;
}

namespace {

void check_uploadable(Context& ctx, const Tensor& W) {
    if (!matmul_supports(W.dtype))
        throw model_error(W.name, "type " + std::string(dtype_name(W.dtype)) + " has no Vulkan kernel yet");
    if (W.ne[2] != 1 || W.ne[3] != 1 || !W.contiguous() || !W.data)
        throw model_error(W.name, "a Vulkan weight matrix must be 2-D and contiguous, got " + W.shape_string());
    if (W.ne[0] % dtype_info(W.dtype).block_elems != 0)
        throw model_error(W.name, "row length " + std::to_string(W.ne[0]) + " is not a whole number of " +
                                      std::string(dtype_name(W.dtype)) + " blocks");
    // The 16-bit float and the 8-bit block fields are read through 16/8-bit storage.
    if (W.dtype != DType::F32 && !(ctx.info().storage_16bit && ctx.info().storage_8bit))
        throw Error(ErrorKind::Device, "vulkan: " + W.name + ": " + std::string(dtype_name(W.dtype)) +
                                           " weights need 8- and 16-bit storage buffers, which " + ctx.label() +
                                           " lacks");
}

}  // namespace

// The row blocks of every tensor in `parts` (checked alike) one after the other in one buffer.
DeviceMatrix upload_stacked(Context& ctx, std::initializer_list<const Tensor*> parts) {
    require(parts.size() > 0, "upload_stacked", "no matrices");
    const Tensor& first = **parts.begin();
    DeviceMatrix m;
    m.name = first.name;
    m.dtype = first.dtype;
    m.K = first.ne[0];
    uint64_t bytes = 0;
    for (const Tensor* t : parts) {
        check_uploadable(ctx, *t);
        if (t->dtype != first.dtype || t->ne[0] != first.ne[0])
            throw model_error(t->name, "cannot stack it under " + first.name + ": " +
                                           std::string(dtype_name(t->dtype)) + " rows of " + std::to_string(t->ne[0]) +
                                           " against " + std::string(dtype_name(first.dtype)) + " rows of " +
                                           std::to_string(first.ne[0]));
        if (t != &first) m.name += "+" + t->name;
        m.N += t->ne[1];
        bytes += t->bytes();
    }
    m.buffer = Buffer(ctx, bytes);
    uint64_t at = 0;
    for (const Tensor* t : parts) {
        upload(ctx, m.buffer, t->data, t->bytes(), at);
        at += t->bytes();
    }
    return m;
}

DeviceMatrix upload_matrix(Context& ctx, const Tensor& W) { return upload_stacked(ctx, {&W}); }

void matmul(Recorder& rec, const DeviceMatrix& W, const Buffer& x, Buffer& y, int64_t M, const MatmulEpilogue& epi,
            MatmulPath path) {
    require(M >= 0 && epi.y_offset >= 0, "matmul", "negative M or y_offset");
    require(x.handle() != y.handle(), "matmul", "x and y must be different buffers");
    require(!(epi.activate && epi.act == UnaryOp::Scale), "matmul", "Scale is not an epilogue activation");
    require(!epi.glu || (W.N % 2 == 0 && !epi.bias && !epi.activate && !epi.accumulate), "matmul",
            "glu needs an even number of weight rows and no bias, activation or accumulate");
    const int64_t N = epi.glu ? W.N / 2 : W.N;  // output columns
    require_floats(x, M * W.K, "matmul", "x");
    require_floats(y, epi.y_offset + M * N, "matmul", "y");
    if (epi.bias) require_floats(*epi.bias, N, "matmul", "bias");
    if (epi.norm) require_floats(*epi.norm, W.K, "matmul", "norm weight");
    const MatmulPush push{u32(M, "matmul"), u32(N, "matmul"), u32(W.K, "matmul"), u32(epi.y_offset, "matmul"),
                          epi.norm_eps};
    // Specialization constants HAS_BIAS, ACT, ACCUMULATE, GLU (matmul_epilogue.glsl).
    const uint32_t has_bias = epi.bias != nullptr, act = epi.activate ? uint32_t(epi.act) + 1 : 0u,
                   accumulate = epi.accumulate, glu = epi.glu;
    u32(epi.y_offset + M * N, "matmul");
    if (M == 0 || N == 0) return;
    // The shader's bias binding needs a buffer even without a bias: x stands in, unread.
    const Arg bias = in(epi.bias ? *epi.bias : x);
    Context& ctx = rec.context();
    if (path == MatmulPath::Auto)
        path = M <= kVkMatvecMaxM                           ? MatmulPath::Matvec
               : (ctx.coop_matmul() || ctx.options().coop_matmul_emulated) && coop_matmul_fits(W.K, epi)
                   ? MatmulPath::Coop
                   : MatmulPath::Tiled;
    require(!epi.norm || path == MatmulPath::Matvec, "matmul", "a norm prologue needs the matvec path (M <= 8)");
    if (path == MatmulPath::Matvec) {
        // The shader keeps kVkMatvecMaxM partial sums per invocation: longer M goes in slices.
        require(M <= kVkMatvecMaxM, "matmul", "the matvec kernel takes at most 8 rows");
        // ROW_THREADS invocations per output column: one subgroup (its reduction is then one
        // subgroupAdd), so wg / row_threads columns per workgroup; 32 where the size is unknown.
        // Both are powers of two (Vulkan requires it of subgroup sizes). 64-wide workgroups (two
        // columns on a 32-wide subgroup) spread the few columns of decode shapes (N = 320, 960)
        // over more workgroups than 128-wide ones. On an H200 the workgroup size moved decode
        // by no more than the run-to-run noise (32 to 1024 wide: 470 to 508 tokens/s in one
        // run, 488 to 506 in another, docs/PERFORMANCE.md), and each matvec shape's GPU time
        // not at all.
        const uint32_t wg = wg_size(ctx, 64);
        const uint32_t sub = ctx.info().subgroup_size;
        const uint32_t row_threads = std::min(wg, sub != 0 && (sub & (sub - 1)) == 0 ? sub : 32u);
        const int64_t groups = (N + wg / row_threads - 1) / (wg / row_threads);
        const uint32_t norm = epi.norm != nullptr;
        rec.dispatch(matvec_shader(W.dtype, ctx.use_subgroups()),
                     {in(W.buffer), in(x), out(y), bias, in(epi.norm ? *epi.norm : x)}, push, split_groups(ctx, groups),
                     {wg, has_bias, act, accumulate, glu, row_threads, norm});
        return;
    }
    if (path == MatmulPath::Coop || path == MatmulPath::Coop64 || path == MatmulPath::Coop128 ||
        path == MatmulPath::CoopEmu64 || path == MatmulPath::CoopEmu128) {
        const bool emulate = path == MatmulPath::CoopEmu64 || path == MatmulPath::CoopEmu128 ||
                             (path == MatmulPath::Coop && ctx.options().coop_matmul_emulated && !ctx.coop_matmul());
        require(coop_matmul_fits(W.K, epi), "matmul", "the tensor-core kernel needs K % 4 == 0 and no norm");
        require(!epi.glu || (path != MatmulPath::Coop128 && path != MatmulPath::CoopEmu128), "matmul",
                "the tensor-core kernel takes GLU in 64x64 tiles only");
        if (!emulate) require_tensor_cores(ctx, "matmul");
        // GLU's second set of sums would double the accumulators of a 128×128 tile: 64×64.
        const bool large = path == MatmulPath::Coop128 || path == MatmulPath::CoopEmu128 ||
                           (path == MatmulPath::Coop && !epi.glu && matmul_large_tile(ctx, M, N, false) &&
                            ctx.info().max_shared_memory >= coop_stage_bytes(4, false));
        const uint32_t tf = large ? 4 : 2;
        require_shared_memory(ctx, coop_stage_bytes(tf, epi.glu),
                              "the " + std::to_string(32 * tf) + "-row tensor-core tile");
        const Groups g{group_count(ctx, N, 32 * tf, 0), group_count(ctx, M, 32 * tf, 1), 1};
        // Specialization constants 0 (TF) and 3..6 (HAS_BIAS, ACT, ACCUMULATE, GLU); 1 and 2 unused.
        rec.dispatch(matmul_coop_shader(W.dtype, emulate), {in(W.buffer), in(x), out(y), bias}, push, g,
                     {tf, 0, 0, has_bias, act, accumulate, glu});
        return;
    }
    const bool large = path == MatmulPath::Tiled128 ||
                       (path == MatmulPath::Tiled && matmul_large_tile(ctx, M, N, epi.glu));
    const uint32_t tm = large ? 8 : 4, tn = tm;  // matmul_stage_bytes assumes TN = TM
    const uint64_t stage_bytes = matmul_stage_bytes(tm, epi.glu);
    require_shared_memory(ctx, stage_bytes, "the " + std::to_string(16 * tm) + "-row matmul tile");
    const Groups g{group_count(ctx, N, 16 * tn, 0), group_count(ctx, M, 16 * tm, 1), 1};
    rec.dispatch(matmul_shader(W.dtype), {in(W.buffer), in(x), out(y), bias}, push, g,
                 {tm, tn, kTiledBK, has_bias, act, accumulate, glu});
}

bool coop_matmul_fits(int64_t K, const MatmulEpilogue& epi) { return K % 4 == 0 && !epi.norm; }

bool matmul_large_tile(const Context& ctx, int64_t M, int64_t N, bool glu) {
    if (ctx.options().matmul_large_tiles) return *ctx.options().matmul_large_tiles;
    if (glu || ctx.info().max_shared_memory < matmul_stage_bytes(8, false)) return false;
    // A CPU device (lavapipe) runs a few workgroups at a time, so fewer, larger ones lose nothing.
    return ctx.info().type == DeviceType::Cpu || ((M + 127) / 128) * ((N + 127) / 128) >= kVkLargeTileGroups;
}

void rms_norm(Recorder& rec, const Buffer& x, const Buffer* weight, Buffer& y, int64_t rows, int64_t n, float eps) {
    require(rows >= 0 && n >= 0, "rms_norm", "negative size");
    require_floats(x, rows * n, "rms_norm", "x");
    require_floats(y, rows * n, "rms_norm", "y");
    if (weight) require_floats(*weight, n, "rms_norm", "weight");
    const NormPush push{u32(rows, "rms_norm"), u32(n, "rms_norm"), weight != nullptr, 0, eps};
    if (rows == 0 || n == 0) return;
    const uint32_t wg = wg_size(rec.context(), 256);
    rec.dispatch(ShaderId::rms_norm, {in(x), in(weight ? *weight : x), out(y)}, push,
                 split_groups(rec.context(), rows), {wg});
}

void layer_norm(Recorder& rec, const Buffer& x, const Buffer* weight, const Buffer* bias, Buffer& y, int64_t rows,
                int64_t n, float eps) {
    require(rows >= 0 && n >= 0, "layer_norm", "negative size");
    require_floats(x, rows * n, "layer_norm", "x");
    require_floats(y, rows * n, "layer_norm", "y");
    if (weight) require_floats(*weight, n, "layer_norm", "weight");
    if (bias) require_floats(*bias, n, "layer_norm", "bias");
    const NormPush push{u32(rows, "layer_norm"), u32(n, "layer_norm"), weight != nullptr, bias != nullptr, eps};
    if (rows == 0 || n == 0) return;
    const uint32_t wg = wg_size(rec.context(), 256);
    rec.dispatch(ShaderId::layer_norm, {in(x), in(weight ? *weight : x), in(bias ? *bias : x), out(y)}, push,
                 split_groups(rec.context(), rows), {wg});
}

static void softmax_impl(Recorder& rec, Buffer& x, int64_t rows, int64_t n, bool causal, int64_t offset) {
    require(rows >= 0 && n >= 0, "softmax_rows", "negative size");
    require_floats(x, rows * n, "softmax_rows", "x");
    // Clamp the offset to a range where row + offset cannot overflow and the result is the same.
    const int64_t off = std::max<int64_t>(std::min<int64_t>(offset, int64_t(n)), -int64_t(rows) - 1);
    const SoftmaxPush push{u32(rows, "softmax_rows"), u32(n, "softmax_rows"), causal, int32_t(off)};
    if (rows == 0 || n == 0) return;
    const uint32_t wg = wg_size(rec.context(), 256);
    rec.dispatch(ShaderId::softmax_rows, {out(x)}, push, split_groups(rec.context(), rows), {wg});
}

void softmax_rows(Recorder& rec, Buffer& x, int64_t rows, int64_t n) { softmax_impl(rec, x, rows, n, false, 0); }

void softmax_rows_causal(Recorder& rec, Buffer& x, int64_t rows, int64_t n, int64_t offset) {
    softmax_impl(rec, x, rows, n, true, offset);
}

RopeTable make_rope_table(Context& ctx, int64_t head_dim, float theta_base, ops::RopeStyle style) {
    require(head_dim > 0 && head_dim % 2 == 0, "rope", "head_dim must be even and positive");
    RopeTable t;
    t.style = style;
    t.head_dim = head_dim;
    // The same float expressions as core/ops.cpp rope().
    t.theta_scale = std::pow(theta_base, -2.0f / float(head_dim));
    std::vector<float> inv(size_t(head_dim / 2));
    for (int64_t i = 0; i < head_dim / 2; ++i)
        inv[size_t(i)] = 1.0f / std::pow(theta_base, float(2 * i) / float(head_dim));
    t.inv_freq = upload_floats(ctx, inv);
    return t;
}

void rope(Recorder& rec, const RopeTarget& a, const RopeTarget* b, const Buffer& positions, const RopeTable& table,
          int64_t n_tokens) {
    require(n_tokens >= 0, "rope", "negative size");
    for (const RopeTarget* t : {&a, b}) {
        if (!t) continue;
        require(t->x && t->n_heads >= 0 && t->offset >= 0, "rope", "no tensor, or a negative size or offset");
        require_floats(*t->x, t->offset + n_tokens * t->n_heads * table.head_dim, "rope", "x");
        u32(t->offset + n_tokens * t->n_heads * table.head_dim, "rope");
    }
    require(!b || b->x->handle() != a.x->handle(), "rope", "the two tensors must be different buffers");
    require_floats(positions, n_tokens, "rope", "positions");
    const int64_t heads = a.n_heads + (b ? b->n_heads : 0);
    const int64_t pairs = n_tokens * heads * (table.head_dim / 2);
    const RopePush push{u32(n_tokens, "rope"),
                        u32(a.n_heads, "rope"),
                        u32(table.head_dim, "rope"),
                        table.style == ops::RopeStyle::HalfSplit ? 1u : 0u,
                        table.theta_scale,
                        u32(a.offset, "rope"),
                        b ? u32(b->n_heads, "rope") : 0u,
                        b ? u32(b->offset, "rope") : 0u};
    u32(pairs, "rope");
    if (pairs == 0) return;
    const uint32_t wg = wg_size(rec.context(), 256);
    // Without a second tensor the first stands in for its binding, untouched.
    rec.dispatch(ShaderId::rope, {out(*a.x), in(positions), in(table.inv_freq), out(b ? *b->x : *a.x)}, push,
                 elementwise_groups(rec.context(), pairs, wg), {wg});
}

void rope_qkv(Recorder& rec, const Buffer& qkv, const QkvSplit& to, const Buffer& positions, const RopeTable& table,
              int64_t n_tokens) {
    const int64_t hd = table.head_dim;
    require(to.q && to.k_cache && to.v_cache, "rope_qkv", "a destination is missing");
    require(n_tokens >= 0 && to.n_heads >= 0 && to.n_kv_heads >= 0 && to.cache_offset >= 0 && to.row0 >= 0,
            "rope_qkv", "negative size or offset");
    require_distinct({&qkv, to.q, to.k_cache, to.v_cache}, "rope_qkv", "the four tensors must be different buffers");
    const int64_t slots = to.n_heads + 2 * to.n_kv_heads;
    const int64_t rows = to.row0 + n_tokens;  // of qkv, positions and q
    require_floats(qkv, rows * slots * hd, "rope_qkv", "qkv");
    require_floats(*to.q, rows * to.n_heads * hd, "rope_qkv", "q");
    const int64_t cache_end = to.cache_offset + n_tokens * to.n_kv_heads * hd;
    require_floats(*to.k_cache, cache_end, "rope_qkv", "k_cache");
    require_floats(*to.v_cache, cache_end, "rope_qkv", "v_cache");
    require_floats(positions, rows, "rope_qkv", "positions");
    u32(cache_end, "rope_qkv");
    const int64_t pairs = n_tokens * slots * (hd / 2);
    u32(rows * slots * hd, "rope_qkv");
    const RopeQkvPush push{u32(n_tokens, "rope_qkv"),
                           u32(to.n_heads, "rope_qkv"),
                           u32(to.n_kv_heads, "rope_qkv"),
                           u32(hd, "rope_qkv"),
                           table.style == ops::RopeStyle::HalfSplit ? 1u : 0u,
                           table.theta_scale,
                           u32(to.cache_offset, "rope_qkv"),
                           u32(to.row0, "rope_qkv")};
    if (pairs == 0) return;
    const uint32_t wg = wg_size(rec.context(), 256);
    // Its rows of q and of the caches only: the sequences of a batched prefill (rows apart,
    // caches their own) need no barrier between them.
    const int64_t kv_row = to.n_kv_heads * hd;
    rec.dispatch(ShaderId::rope_qkv,
                 {in(qkv), in(positions), in(table.inv_freq), out_rows(*to.q, to.row0, n_tokens, to.n_heads * hd),
                  out_range(*to.k_cache, uint64_t(to.cache_offset) * 4, uint64_t(n_tokens * kv_row) * 4),
                  out_range(*to.v_cache, uint64_t(to.cache_offset) * 4, uint64_t(n_tokens * kv_row) * 4)},
                 push, elementwise_groups(rec.context(), pairs, wg), {wg});
}

void unary(Recorder& rec, UnaryOp op, const Buffer& x, Buffer& y, int64_t n, float s) {
    require_floats(x, n, "unary", "x");
    require_floats(y, n, "unary", "y");
    const UnaryPush push{u32(n, "unary"), s};
    if (n == 0) return;
    const uint32_t wg = wg_size(rec.context(), 256);
    rec.dispatch(ShaderId::unary, {in(x), out(y)}, push, elementwise_groups(rec.context(), n, wg),
                 {wg, static_cast<uint32_t>(op)});
}

void binary(Recorder& rec, BinaryOp op, const Buffer& a, const Buffer& b, Buffer& y, int64_t n, int64_t nb) {
    require(nb > 0 ? n % nb == 0 : n == 0, "binary", "n must be a multiple of nb");
    require_floats(a, n, "binary", "a");
    require_floats(b, nb, "binary", "b");
    require_floats(y, n, "binary", "y");
    const BinaryPush push{u32(n, "binary"), u32(nb, "binary")};
    if (n == 0) return;
    const uint32_t wg = wg_size(rec.context(), 256);
    rec.dispatch(ShaderId::binary, {in(a), in(b), out(y)}, push, elementwise_groups(rec.context(), n, wg),
                 {wg, static_cast<uint32_t>(op)});
}

void check_row_ids(const DeviceMatrix& table, const int32_t* ids, int64_t n_ids) {
    for (int64_t i = 0; i < n_ids; ++i)
        if (ids[i] < 0 || ids[i] >= table.N)
            throw model_error(table.name, "row id " + std::to_string(ids[i]) + " outside [0, " +
                                              std::to_string(table.N) + ")");
}

void get_rows(Recorder& rec, const DeviceMatrix& table, const Buffer& ids, Buffer& out_rows, int64_t n_ids,
              int64_t ids_offset) {
    require(get_rows_supports(table.dtype), "get_rows", "unsupported table type");
    require(n_ids >= 0 && ids_offset >= 0, "get_rows", "negative size or offset");
    require_floats(ids, ids_offset + n_ids, "get_rows", "ids");
    require_floats(out_rows, n_ids * table.K, "get_rows", "out");
    const GetRowsPush push{u32(table.K, "get_rows"), u32(n_ids, "get_rows"), u32(table.N, "get_rows"),
                           u32(ids_offset, "get_rows")};
    const int64_t total = n_ids * table.K;
    u32(total, "get_rows");
    if (total == 0 || table.N == 0) return;
    const uint32_t wg = wg_size(rec.context(), 256);
    rec.dispatch(get_rows_shader(table.dtype), {in(table.buffer), in(ids), out(out_rows)}, push,
                 elementwise_groups(rec.context(), total, wg), {wg});
}

void greedy_pick(Recorder& rec, const Buffer& x, int64_t n, Buffer& ids, int64_t out_slot, Buffer* position,
                 int64_t rows) {
    require(n >= 1 && rows >= 1 && out_slot >= 0, "greedy_pick", "empty input or negative slot");
    require_floats(x, rows * n, "greedy_pick", "x");
    require_floats(ids, out_slot + rows, "greedy_pick", "ids");
    require_distinct({&x, &ids}, "greedy_pick", "x and ids must be different buffers");
    if (position) {
        require_floats(*position, rows, "greedy_pick", "position");
        require_distinct({&x, &ids, position}, "greedy_pick", "x, ids and position must be different buffers");
    }
    u32(rows * n, "greedy_pick");
    const GreedyPickPush push{u32(n, "greedy_pick"), u32(out_slot, "greedy_pick"), position ? 1u : 0u};
    const uint32_t wg = wg_size(rec.context(), 256);
    // Without a position the ids buffer is bound twice (binding 2 is then never touched).
    rec.dispatch(ShaderId::greedy_pick, {in(x), out(ids), out(position ? *position : ids)}, push,
                 Groups{group_count(rec.context(), rows, 1), 1, 1}, {wg});
}

void copy(Recorder& rec, const Buffer& src, int64_t src_offset, Buffer& dst, int64_t dst_offset, int64_t n) {
    require(n >= 0 && src_offset >= 0 && dst_offset >= 0, "copy", "negative size or offset");
    require(&src != &dst && src.handle() != dst.handle(), "copy", "src and dst must be different buffers");
    require_floats(src, src_offset + n, "copy", "src");
    require_floats(dst, dst_offset + n, "copy", "dst");
    const CopyPush push{u32(n, "copy"), u32(src_offset, "copy"), u32(dst_offset, "copy")};
    if (n == 0) return;
    const uint32_t wg = wg_size(rec.context(), 256);
    rec.dispatch(ShaderId::copy, {in(src), out(dst)}, push, elementwise_groups(rec.context(), n, wg), {wg});
}

double measure_shader_copy_gbs(Context& ctx, uint64_t bytes, int copies, int runs) {
    return measure_copies_gbs(ctx, bytes, copies, runs, [&](Buffer& a, Buffer& b, uint64_t n) {
        Recorder rec(ctx);
        rec.begin();
        for (int i = 0; i < copies; ++i) {  // a -> b, b -> a, ...: each waits for the one before
            if (i % 2 == 0) copy(rec, a, 0, b, 0, int64_t(n / 4));
            else copy(rec, b, 0, a, 0, int64_t(n / 4));
        }
        rec.submit_and_wait();
    });
}

Buffer attention_partials(Context& ctx, int64_t n_q, int64_t n_heads, int64_t head_dim) {
    Buffer b(ctx, uint64_t(attention_partial_floats(n_q, n_heads, head_dim)) * 4);
    const std::vector<uint32_t> zeros(size_t(kVkAttentionSplitBelow), 0u);
    upload(ctx, b, zeros.data(), zeros.size() * 4);
    return b;
}

namespace {

// How many workgroups share each (row, head)'s keys in the per-row kernel (1: unsplit): decode's
// few pairs with many keys, where `partials` can hold them (kVkAttentionSplitBelow).
int64_t attention_splits(const Buffer* partials, int64_t rows, int64_t n_heads, int64_t n_kv, int64_t head_dim) {
    const int64_t splits = std::min<int64_t>(kVkAttentionMaxSplits, n_kv / kVkAttentionSplitKeys);
    const bool fits = partials && partials->size() >= uint64_t(attention_partial_floats(rows, n_heads, head_dim)) * 4;
    return fits && rows * n_heads < kVkAttentionSplitBelow && splits > 1 ? splits : 1;
}

}  // namespace

AttentionPath attention_path(const Context& ctx, int64_t n_q, int64_t head_dim, bool causal) {
    if (n_q < kVkAttentionTiledMinQ || head_dim % 4 != 0) return AttentionPath::PerRow;
    // Causal attention only on a CPU device by default: a prefill's few blocks of 32 rows
    // (a 512-token one makes 16 a head) would leave most of a large GPU idle.
    const bool coop = ctx.coop_attention() ||
                      (ctx.options().coop_matmul_emulated && ctx.options().coop_attention.value_or(true));
    if (coop && !causal && head_dim % 16 == 0 && head_dim <= kVkAttentionCoopMaxDim &&
        ctx.info().max_shared_memory >= kVkAttentionCoopShared)
        return ctx.coop_attention() ? AttentionPath::Coop : AttentionPath::CoopEmu;
    const bool by_shape = !causal || ctx.info().type == DeviceType::Cpu;
    const bool blocked = ctx.options().attention_blocked.value_or(by_shape) &&
                         head_dim <= kVkAttentionBlockedMaxDim &&
                         ctx.info().max_shared_memory >= kVkAttentionBlockedShared;
    if (blocked) return AttentionPath::Blocked;
    return !causal && head_dim <= kVkAttentionTiledMaxDim ? AttentionPath::Tiled : AttentionPath::PerRow;
}

void attention(Recorder& rec, const Buffer& q, const Buffer& k, const Buffer& v, Buffer& o, int64_t n_q,
               int64_t n_kv, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale, bool causal,
               int64_t q_pos0, AttentionPath path, Buffer* partials, int64_t n_batch, int64_t row0) {
    require(n_q >= 0 && n_kv >= 0 && head_dim >= 0 && q_pos0 >= 0 && n_batch >= 0 && row0 >= 0, "attention",
            "negative size");
    require(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "attention", "n_heads must be a multiple of n_kv_heads");
    require(head_dim <= kMaxAttentionHeadDim, "attention", "head_dim above 256");
    const int64_t rows = n_batch * n_q;  // query rows of all batches, from row0 in q and o
    require_floats(q, (row0 + rows) * n_heads * head_dim, "attention", "q");
    require_floats(k, n_batch * n_kv * n_kv_heads * head_dim, "attention", "k");
    require_floats(v, n_batch * n_kv * n_kv_heads * head_dim, "attention", "v");
    require_floats(o, (row0 + rows) * n_heads * head_dim, "attention", "out");
    AttentionPush push{u32(n_q, "attention"),
                       u32(n_kv, "attention"),
                       u32(n_heads, "attention"),
                       u32(n_kv_heads, "attention"),
                       u32(head_dim, "attention"),
                       causal ? 1u : 0u,
                       u32(std::min<int64_t>(q_pos0, n_kv), "attention"),
                       scale,
                       1,
                       u32(n_batch, "attention"),
                       u32(row0, "attention")};
    u32((row0 + rows) * n_heads * head_dim, "attention");
    u32(n_batch * n_kv * n_kv_heads * head_dim, "attention");
    if (n_batch == 0 || n_q == 0 || n_heads == 0 || head_dim == 0) return;
    Context& ctx = rec.context();
    // Its rows of o only: the sequences of a batched prefill (rows apart, caches their own) need
    // no barrier between them.
    const Arg rows_of_o = out_rows(o, row0, rows, n_heads * head_dim);
    if (path == AttentionPath::Auto) path = attention_path(ctx, n_q, head_dim, causal);
    if (path == AttentionPath::PerRow) {
        // WG ≥ 128 on every device (the Vulkan minimum), so head_dim ≤ 256 ≤ 2·WG as the shader needs.
        const uint32_t wg = wg_size(ctx, 256);
        // Few (row, head) pairs and many keys (decode): split the keys over more workgroups,
        // kVkAttentionSplitKeys each, into `partials`; the last split of each pair merges.
        // Unsplit, the partials binding still needs a buffer: o stands in, unwritten.
        const int64_t splits = attention_splits(partials, rows, n_heads, n_kv, head_dim);
        push.n_split = uint32_t(splits);
        rec.dispatch(ShaderId::attention,
                     {in(q), in(k), in(v), rows_of_o, splits > 1 ? out(*partials) : rows_of_o}, push,
                     split_groups(ctx, rows * n_heads * splits), {wg});
        return;
    }
    if (path == AttentionPath::Coop || path == AttentionPath::CoopEmu) {
        require(head_dim <= kVkAttentionCoopMaxDim && head_dim % 16 == 0, "attention",
                "the tensor-core kernel takes head_dim ≤ 64, a multiple of 16");
        if (path == AttentionPath::Coop) require_tensor_cores(ctx, "attention");
        require_shared_memory(ctx, kVkAttentionCoopShared, "the tensor-core attention kernel");
        const int64_t blocks = (n_q + 63) / 64;  // attention_coop.comp's BQ
        rec.dispatch(path == AttentionPath::Coop ? ShaderId::attention_coop : ShaderId::attention_coop_emu,
                     {in(q), in(k), in(v), rows_of_o}, push, split_groups(ctx, n_batch * blocks * n_heads),
                     {uint32_t(head_dim)});
        return;
    }
    if (path == AttentionPath::Blocked) {
        require(head_dim <= kVkAttentionBlockedMaxDim && head_dim % 4 == 0, "attention",
                "the blocked kernel takes head_dim ≤ 64, a multiple of 4");
        require_shared_memory(ctx, kVkAttentionBlockedShared, "the blocked attention kernel");
        const int64_t blocks = (n_q + 31) / 32;  // attention_block.comp's BQ
        rec.dispatch(ShaderId::attention_block, {in(q), in(k), in(v), rows_of_o}, push,
                     split_groups(ctx, n_batch * blocks * n_heads), {uint32_t(head_dim)});
        return;
    }
    require(head_dim <= kVkAttentionTiledMaxDim && head_dim % 4 == 0, "attention",
            "the tiled kernel takes head_dim ≤ 128, a multiple of 4");
    // BQ query rows a workgroup (BQ·head_dim ≤ 2048, the shader's merge buffer) and the
    // variant whose row arrays just hold head_dim; 128 / BQ key splits in the 64-dim variant,
    // none in the 128-dim one (attention_tiled.comp says why).
    const uint32_t bq = std::min<uint32_t>(32, 2048 / uint32_t(head_dim));
    const uint32_t wg = head_dim <= 64 ? bq * (128 / bq) : bq;
    const int64_t blocks = (n_q + bq - 1) / bq;
    rec.dispatch(head_dim <= 64 ? ShaderId::attention_tiled : ShaderId::attention_tiled_d128,
                 {in(q), in(k), in(v), rows_of_o}, push, split_groups(ctx, n_batch * blocks * n_heads),
                 {wg, uint32_t(head_dim), bq});
}

bool attention_qkv_fits(int64_t n_q, int64_t head_dim) {
    return n_q > 0 && n_q < kVkAttentionTiledMinQ && head_dim > 0 && head_dim % 2 == 0 &&
           head_dim <= kMaxAttentionHeadDim && n_q * ((head_dim + 3) / 4 * 4) <= kVkAttentionFreshFloats;
}

void attention_qkv(Recorder& rec, const Buffer& qkv, const Buffer& positions, const RopeTable& table, Buffer& k_cache,
                   Buffer& v_cache, Buffer& o, int64_t n_q, int64_t q_pos0, int64_t n_heads, int64_t n_kv_heads,
                   float scale, Buffer* partials, int64_t row0) {
    const int64_t hd = table.head_dim;
    require(q_pos0 >= 0, "attention_qkv", "negative position");
    require(row0 >= 0, "attention_qkv", "negative first row");
    require(attention_qkv_fits(n_q, hd), "attention_qkv",
            "takes 1 to " + std::to_string(kVkAttentionTiledMinQ - 1) + " rows of an even head_dim ≤ " +
                std::to_string(kMaxAttentionHeadDim) + ", rows · head_dim ≤ " + std::to_string(kVkAttentionFreshFloats));
    require(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "attention_qkv", "n_heads must be a multiple of n_kv_heads");
    require_distinct({&qkv, &k_cache, &v_cache, &o}, "attention_qkv", "the four tensors must be different buffers");
    const int64_t slots = n_heads + 2 * n_kv_heads, n_kv = q_pos0 + n_q;
    const int64_t rows = row0 + n_q;  // of qkv, positions and out
    require_floats(qkv, rows * slots * hd, "attention_qkv", "qkv");
    require_floats(k_cache, n_kv * n_kv_heads * hd, "attention_qkv", "k_cache");
    require_floats(v_cache, n_kv * n_kv_heads * hd, "attention_qkv", "v_cache");
    require_floats(o, rows * n_heads * hd, "attention_qkv", "out");
    require_floats(positions, rows, "attention_qkv", "positions");
    u32(rows * slots * hd, "attention_qkv");
    u32(n_kv * n_kv_heads * hd, "attention_qkv");
    const int64_t splits = attention_splits(partials, n_q, n_heads, n_kv, hd);
    const AttentionQkvPush push{{u32(n_q, "attention_qkv"), u32(n_kv, "attention_qkv"), u32(n_heads, "attention_qkv"),
                                 u32(n_kv_heads, "attention_qkv"), u32(hd, "attention_qkv"), 1u,
                                 u32(q_pos0, "attention_qkv"), scale, uint32_t(splits), 1u, uint32_t(row0)},
                                table.style == ops::RopeStyle::HalfSplit ? 1u : 0u,
                                table.theta_scale};
    Context& ctx = rec.context();
    // Its rows of o only: the sequences of a batched step (rows apart, caches and partials
    // their own) need no barrier between them. Unsplit, binding 4 is o again, never written.
    const Arg rows_of_o = out_rows(o, row0, n_q, n_heads * hd);
    // WG ≥ 128 on every device: head_dim/2 ≤ WG, so one pass rotates a row.
    rec.dispatch(ShaderId::attention_qkv,
                 {in(qkv), out(k_cache), out(v_cache), rows_of_o, splits > 1 ? out(*partials) : rows_of_o,
                  in(positions), in(table.inv_freq)},
                 push, split_groups(ctx, n_q * n_heads * splits), {wg_size(ctx, 256)});
}

}  // namespace glimpse::vk
