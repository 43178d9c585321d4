// Vulkan versions of the CPU ops (core/ops.h, core/matmul.h): each records one or a few
// dispatches into a Recorder and returns; nothing runs until Recorder::submit_and_wait().
// Shapes, formulas and argument meanings are those of the CPU function of the same name, which
// is the specification (tests/test_vk_ops.cpp checks each against it). All tensors are float32
// device buffers holding exactly the CPU layout, except weight matrices and embedding tables,
// which stay in their file block format (DeviceMatrix).
//
// Size errors (a buffer smaller than the shape needs, a size beyond 2^32 elements) are
// programming errors and throw std::invalid_argument, as core/ops.h does.
#pragma once

#include <cstdint>
#include <string>

#include "core/ops.h"
#include "core/tensor.h"
#include "core/vk_buffer.h"
#include "core/vk_pipeline.h"

namespace glimpse::vk {

// A weight matrix (ne = {K, N}: N rows of K values) uploaded once in its own dtype.
struct DeviceMatrix {
    std::string name;
    DType dtype = DType::F32;
    int64_t K = 0, N = 0;
    Buffer buffer;
};

// Types the Vulkan matmul and get_rows take: F32, F16, Q8_0, Q4_0, Q4_K, Q6_K (matmul);
// F32, F16, Q8_0 (get_rows).
bool matmul_supports(DType t);
bool get_rows_supports(DType t);

// Uploads W (2-D, contiguous rows). Throws Error(Model) naming the tensor for a type Vulkan
// cannot use or a layout it cannot read, Error(Device) if it does not fit the device.
DeviceMatrix upload_matrix(Context& ctx, const Tensor& W);
// Matrices of one type and row length as one: the first's rows, then the next's, ... (a GLU's
// gate and up projections, for MatmulEpilogue::glu; a layer's wq, wk, wv, for rope_qkv).
DeviceMatrix upload_stacked(Context& ctx, std::initializer_list<const Tensor*> parts);

// Tiled: the tiled kernel with its tile chosen by the shape (matmul_large_tile);
// Tiled64 / Tiled128 force 64×64 or 128×128 tiles of y (tests, comparisons).
// Coop: the tensor-core kernel (matmul_coop.comp: x and W rounded to f16, products summed in
// f32), tile by the same rule; Coop64 / Coop128 force the tile. It needs
// Context::coop_matmul_supported(), K a multiple of 4 and no norm; GLU takes 64×64. CoopEmu64 /
// CoopEmu128: the same kernel with the tensor-core operations written out, which any device
// runs (tests check the kernel around those operations with it; slow).
// Auto: Matvec for M ≤ kVkMatvecMaxM, else Coop where Context::coop_matmul() and the
// product allows it, else Tiled. (ContextOptions::coop_matmul_emulated: Coop, emulated, where
// the device has no tensor cores or they are off.)
enum class MatmulPath { Auto, Matvec, Tiled, Tiled64, Tiled128, Coop, Coop64, Coop128, CoopEmu64, CoopEmu128 };
constexpr int64_t kVkMatvecMaxM = 8;  // Auto: M ≤ this takes the matvec kernel
// Whether the tensor-core kernel can compute this product (K % 4 == 0, no norm), on a device
// that has it or emulated.
bool coop_matmul_fits(int64_t K, const struct MatmulEpilogue& epi);
// The tiled kernel's choice for y [M][N]: 128×128 tiles (8×8 outputs an invocation) where
// they still make at least kVkLargeTileGroups workgroups (any number on a CPU device) and
// there is no GLU (whose second set of sums would double the registers) and the device has
// the shared memory, else 64×64 (4×4). ContextOptions::matmul_large_tiles overrides it.
constexpr int64_t kVkLargeTileGroups = 256;
bool matmul_large_tile(const Context& ctx, int64_t M, int64_t N, bool glu);

enum class UnaryOp : uint32_t { GeluTanh = 0, GeluErf = 1, QuickGelu = 2, Silu = 3, Scale = 4 };

// What a matmul does with each sum s = Σ_k x[m][k]·W[n][k] as it stores it, fused into the
// kernel so that no further pass over y is recorded:
//   y[y_offset + m·N + n] = act(s + bias[n])   (+ the value y held there, when accumulate)
// in that order, with the same float operations as matmul, add_row_bias, unary and add one
// after the other, so the result is theirs (up to a driver fusing a multiply and an add). A
// residual connection is `accumulate`; a KV-cache write is `y_offset` (the cache row of the
// first token times N).
struct MatmulEpilogue {
    const Buffer* bias = nullptr;  // [N] floats, added to every row
    bool activate = false;         // apply `act` (not Scale) after the bias
    UnaryOp act = UnaryOp::GeluTanh;
    bool accumulate = false;       // add to y's old values (y must not be x)
    int64_t y_offset = 0;          // in floats: where row 0 of the result starts in y
    // SwiGLU instead of the above: W holds 2N rows, the gate rows then the up rows
    // (upload_stacked), and y [M][N] = silu(x·gate) ⊙ x·up, as two matmuls and swiglu give it.
    bool glu = false;
    // A prologue: each x row RMS-normalized and times `norm` [K] before the product (what
    // rms_norm into a scratch buffer, then the matmul, computes), with `norm_eps`. Matvec path
    // only (M ≤ kVkMatvecMaxM): a decode step's norms ride on the matvecs that read them.
    const Buffer* norm = nullptr;
    float norm_eps = 0;
};

// y [M][N] = x [M][K] · Wᵀ, through `epi`.
void matmul(Recorder& rec, const DeviceMatrix& W, const Buffer& x, Buffer& y, int64_t M,
            const MatmulEpilogue& epi, MatmulPath path = MatmulPath::Auto);
inline void matmul(Recorder& rec, const DeviceMatrix& W, const Buffer& x, Buffer& y, int64_t M,
                   MatmulPath path = MatmulPath::Auto) {
    matmul(rec, W, x, y, M, MatmulEpilogue{}, path);
}

// weight/bias may be nullptr (= 1 / 0).
void rms_norm(Recorder& rec, const Buffer& x, const Buffer* weight, Buffer& y, int64_t rows, int64_t n, float eps);
void layer_norm(Recorder& rec, const Buffer& x, const Buffer* weight, const Buffer* bias, Buffer& y, int64_t rows,
                int64_t n, float eps);

void softmax_rows(Recorder& rec, Buffer& x, int64_t rows, int64_t n);
void softmax_rows_causal(Recorder& rec, Buffer& x, int64_t rows, int64_t n, int64_t offset);

// The per-model RoPE constants, computed on the host exactly as core/ops.cpp does and
// uploaded once.
struct RopeTable {
    ops::RopeStyle style = ops::RopeStyle::AdjacentPairs;
    int64_t head_dim = 0;
    float theta_scale = 0;  // powf(base, −2/d), AdjacentPairs
    Buffer inv_freq;        // [head_dim/2] 1 / powf(base, 2i/d), HalfSplit
};
RopeTable make_rope_table(Context& ctx, int64_t head_dim, float theta_base, ops::RopeStyle style);
// x [n_tokens][n_heads][head_dim] in place, starting `x_offset` floats into the buffer (a
// KV-cache row); positions: int32 [n_tokens] on the device.
// Tensors rotated together (the same tokens and positions): `a`, and `b` if given (a decode
// step's Q and its new K rows: one dispatch).
struct RopeTarget {
    Buffer* x = nullptr;
    int64_t n_heads = 0;
    int64_t offset = 0;  // floats into x where token 0 starts
};
void rope(Recorder& rec, const RopeTarget& a, const RopeTarget* b, const Buffer& positions, const RopeTable& table,
          int64_t n_tokens);
inline void rope(Recorder& rec, Buffer& x, const Buffer& positions, const RopeTable& table, int64_t n_tokens,
                 int64_t n_heads, int64_t x_offset = 0) {
    rope(rec, RopeTarget{&x, n_heads, x_offset}, nullptr, positions, table, n_tokens);
}
// A fused Q·K·V product split and rotated in one dispatch (rope_qkv.comp): qkv [n_tokens][(n_heads
// + 2·n_kv_heads)·head_dim], each row Q's heads, K's, V's; q [n_tokens][n_heads·head_dim] gets
// Q rotated, the caches' rows from `cache_offset` floats ([n_tokens][n_kv_heads·head_dim]) get
// K rotated and V as it is. The same values as rope on q and the K rows after separate products.
// row0: the tokens are rows row0 .. row0 + n_tokens − 1 of qkv, positions and q (one sequence
// of a batched prefill; only those rows of q are written).
struct QkvSplit {
    Buffer* q = nullptr;
    Buffer* k_cache = nullptr;
    Buffer* v_cache = nullptr;
    int64_t n_heads = 0, n_kv_heads = 0;
    int64_t cache_offset = 0;
    int64_t row0 = 0;
};
void rope_qkv(Recorder& rec, const Buffer& qkv, const QkvSplit& to, const Buffer& positions, const RopeTable& table,
              int64_t n_tokens);

// y [n] = f(x); in place allowed (pass the same buffer). `s` is the factor of Scale.
void unary(Recorder& rec, UnaryOp op, const Buffer& x, Buffer& y, int64_t n, float s = 1.0f);

enum class BinaryOp : uint32_t { Add = 0, Mul = 1, Swiglu = 2 };
// y[i] = a[i] ∘ b[i % nb], i < n (n a multiple of nb); in place allowed (y = a).
void binary(Recorder& rec, BinaryOp op, const Buffer& a, const Buffer& b, Buffer& y, int64_t n, int64_t nb);
inline void add(Recorder& r, const Buffer& a, const Buffer& b, Buffer& y, int64_t n) { binary(r, BinaryOp::Add, a, b, y, n, n); }
inline void mul(Recorder& r, const Buffer& a, const Buffer& b, Buffer& y, int64_t n) { binary(r, BinaryOp::Mul, a, b, y, n, n); }
inline void swiglu(Recorder& r, const Buffer& gate, const Buffer& up, Buffer& y, int64_t n) {
    binary(r, BinaryOp::Swiglu, gate, up, y, n, n);
}
// x [rows][n] += bias [n]
inline void add_row_bias(Recorder& r, Buffer& x, const Buffer& bias, int64_t rows, int64_t n) {
    binary(r, BinaryOp::Add, x, bias, x, rows * n, n);
}

// Throws Error(Model) naming the table if an id is outside [0, N) (the shader only clamps).
void check_row_ids(const DeviceMatrix& table, const int32_t* ids, int64_t n_ids);
// out [n_ids][K] = rows ids[ids_offset ..] of table; ids: int32 on the device, checked
// beforehand (or written by greedy_pick, whose ids are always rows of a table of n rows).
void get_rows(Recorder& rec, const DeviceMatrix& table, const Buffer& ids, Buffer& out, int64_t n_ids,
              int64_t ids_offset = 0);

// Greedy decoding's picks on the device: ids[out_slot + r] = argmax(x [r][n]) (int32) for each
// of `rows` rows, the lowest index among equals and NaN as the host's argmax() in
// text/sampler.h treats it; with `position` (int32 [rows]), also position[r] += 1, row r's next
// position. One workgroup a row. What lets a greedy step be submitted before the host has read
// the picks of the step before: its get_rows reads the ids from `ids`
// (LlamaVulkanRun::decode_greedy and decode_greedy_batch).
void greedy_pick(Recorder& rec, const Buffer& x, int64_t n, Buffer& ids, int64_t out_slot, Buffer* position = nullptr,
                 int64_t rows = 1);

// dst[dst_offset + i] = src[src_offset + i], i < n (offsets and n in 32-bit words, copied as
// bits; src and dst different buffers): row picking, and moving a step's inputs and outputs
// between host-visible and device buffers inside its command stream.
void copy(Recorder& rec, const Buffer& src, int64_t src_offset, Buffer& dst, int64_t dst_offset, int64_t n);

// Which attention kernel runs: PerRow (attention.comp: one workgroup per query row and head,
// for decode), Tiled (attention_tiled.comp: one invocation per query row, each K/V load
// shared by the workgroup's rows, keys split 4 ways; head_dim ≤ kVkAttentionTiledMaxDim and a
// multiple of 4) or Blocked (attention_block.comp: 32 query rows a workgroup, q and each tile
// of 32 keys staged in shared memory, scores and outputs register-blocked like the tiled
// matmul; head_dim ≤ kVkAttentionBlockedMaxDim and a multiple of 4, and
// kVkAttentionBlockedShared bytes of shared memory).
// Auto, for kVkAttentionTiledMinQ query rows or more: Blocked where it applies to non-causal
// attention (the ViT), and to causal attention (prefill) on a CPU device, else Tiled for
// non-causal, else PerRow. ContextOptions::attention_blocked turns Blocked off, or on for
// causal attention on any device. On an H200 Tiled's first version (no key
// split) beat PerRow on a SigLIP tile (27.7 against 46.6 ms) but lost on a causal 512-token
// prefill (37 against 21 ms); with the split a tile takes 7.2 ms, and that prefill 9.7 ms
// against PerRow's 8.4 (its rows see different key counts, so a block waits for its last row).
// Coop (attention_coop.comp: the blocked kernel's two products on tensor cores, 64 query rows
// a workgroup, f16 q, K, V and P summed in f32; head_dim a multiple of 16, ≤ 64) is Auto's
// choice for non-causal attention where the tensor-core matmul runs (Context::coop_matmul, the
// same switch; Context::coop_attention), and CoopEmu its emulated twin (tests; Auto's choice
// where ContextOptions::coop_matmul_emulated asks).
// Every kernel computes any case asked of it that its head_dim bound allows.
enum class AttentionPath { Auto, PerRow, Tiled, Blocked, Coop, CoopEmu };
constexpr int64_t kVkAttentionTiledMinQ = 16;
constexpr int64_t kVkAttentionTiledMaxDim = 128;
constexpr int64_t kVkAttentionBlockedMaxDim = 64;
constexpr uint32_t kVkAttentionBlockedShared = 26624;
constexpr int64_t kVkAttentionCoopMaxDim = 64;
constexpr uint32_t kVkAttentionCoopShared = 27648;
// The kernel Auto takes for these sizes on this device.
AttentionPath attention_path(const Context& ctx, int64_t n_q, int64_t head_dim, bool causal);

// The device's memory bandwidth as its compute shaders see it: `copies` copies (the copy op
// above) of `bytes` (capped at what one buffer may hold) between two device buffers, back and
// forth, in one submission; GB/s of bytes read plus written, best of `runs` after a warm-up.
// The shader-side twin of measure_copy_bandwidth_gbs (core/vk_buffer.h), whose transfer
// copies some drivers run well below what the memory can do.
double measure_shader_copy_gbs(Context& ctx, uint64_t bytes, int copies = 8, int runs = 3);

// PerRow with fewer than kVkAttentionSplitBelow (row, head) pairs (decode) and a `partials`
// buffer from attention_partials(): the keys are split over up to kVkAttentionMaxSplits
// workgroups per pair, kVkAttentionSplitKeys keys or more each, and the last of a pair's
// splits to finish merges them (attention.comp), counting on kVkAttentionSplitBelow counters
// at the buffer's start that are zero between dispatches.
constexpr int64_t kVkAttentionSplitBelow = 128;
constexpr int64_t kVkAttentionSplitKeys = 64;
constexpr int64_t kVkAttentionMaxSplits = 32;
constexpr int64_t attention_partial_floats(int64_t n_q, int64_t n_heads, int64_t head_dim) {
    return kVkAttentionSplitBelow + n_q * n_heads * kVkAttentionMaxSplits * (head_dim + 2);
}
// The split decode's scratch for n_q rows of n_heads heads, its counters zeroed. One buffer
// serves any number of attention dispatches, one after the other.
Buffer attention_partials(Context& ctx, int64_t n_q, int64_t n_heads, int64_t head_dim);

// As ops::attention, n_batch times over: q and out [n_batch][n_q][n_heads][head_dim], k and v
// [n_batch][n_kv][n_kv_heads][head_dim], batch b's rows attending to batch b's keys (the
// ViT's tiles, in one dispatch); head_dim ≤ 256. `partials`: scratch for the split decode
// (above), or none. row0: q's and out's rows start at row row0 (one sequence of a batched
// prefill, whose rows sit side by side there while its keys are its own caches); only those
// rows of out are written.
void attention(Recorder& rec, const Buffer& q, const Buffer& k, const Buffer& v, Buffer& out, int64_t n_q,
               int64_t n_kv, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale, bool causal,
               int64_t q_pos0, AttentionPath path = AttentionPath::Auto, Buffer* partials = nullptr,
               int64_t n_batch = 1, int64_t row0 = 0);

// Decode's attention straight from the stacked Q·K·V product, with rope_qkv's work inside it
// (attention.comp built with FROM_QKV): n_q query rows whose Q, K and V heads are qkv's rows as
// rope_qkv takes them, at `positions` (q_pos0 + i), attend causally to the caches' rows
// 0 .. q_pos0 − 1 and to the step's own keys, which come rotated from qkv; and the step's K
// (rotated) and V rows are written into the caches' rows q_pos0 .. q_pos0 + n_q − 1, as
// rope_qkv writes them. The same result as rope_qkv then attention (the per-row kernel, its
// keys split as there with `partials`) in one dispatch instead of two. Takes what
// attention_qkv_fits says: fewer than kVkAttentionTiledMinQ rows (the per-row kernel's), an
// even head_dim ≤ 256, and the fresh keys' rows (head_dim rounded up to 4) within
// kVkAttentionFreshFloats, the shader's shared array for them. row0: the step's rows are rows
// row0 .. row0 + n_q − 1 of qkv, positions and out (one sequence of a batched decode step,
// whose sequences each have their own caches: one dispatch a sequence).
constexpr int64_t kVkAttentionFreshFloats = 1024;
bool attention_qkv_fits(int64_t n_q, int64_t head_dim);
void attention_qkv(Recorder& rec, const Buffer& qkv, const Buffer& positions, const RopeTable& table, Buffer& k_cache,
                   Buffer& v_cache, Buffer& out, int64_t n_q, int64_t q_pos0, int64_t n_heads, int64_t n_kv_heads,
                   float scale, Buffer* partials = nullptr, int64_t row0 = 0);

}  // namespace glimpse::vk
