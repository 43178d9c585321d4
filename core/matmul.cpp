// Dispatch, threading and the portable kernels of the matmul engine (core/matmul.h), plus the
// reference that defines it. The AVX2 kernels are in core/matmul_avx2.cpp and
// core/matmul_qdot_avx2.cpp.
#include "core/matmul.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/matmul_kernels.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace glimpse {

namespace {

using mm::ActQ8x32;
using mm::QuantActs;
using mm::WeightView;

[[noreturn]] void fail(const Tensor& W, const std::string& msg) {
    throw model_error(W.name.empty() ? std::string("matmul") : W.name, "matmul: " + msg);
}

// Checks everything matmul relies on and returns the view the kernels use.
WeightView validate(const Tensor& W, const float* x, const float* y, int64_t M) {
    if (!matmul_supports(W.dtype))
        fail(W, "weight type " + std::string(dtype_name(W.dtype)) + " is not supported");
    if (W.ne[2] != 1 || W.ne[3] != 1)
        fail(W, "expects a 2-D weight, got shape " + W.shape_string());
    const auto& info = dtype_info(W.dtype);
    const int64_t K = W.ne[0], N = W.ne[1];
    if (K < 0 || N < 0 || M < 0) fail(W, "negative dimension");
    if (K % info.block_elems != 0)
        fail(W, "row length " + std::to_string(K) + " is not a multiple of the " +
                    std::string(info.name) + " block size " + std::to_string(info.block_elems));
    const uint64_t row_bytes = uint64_t(K / info.block_elems) * info.block_bytes;
    if (K > 0 && W.nb[0] != info.block_bytes) fail(W, "rows are not contiguous (nb[0])");
    if (N > 1 && W.nb[1] < row_bytes) fail(W, "row stride nb[1] is smaller than a row");
    if (K > 0 && N > 0 && W.data == nullptr) fail(W, "weight has no data");
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    if (M > 0 && (K > kMax / M || N > kMax / M)) fail(W, "M x K or M x N overflows");
    if (M > 0 && N > 0 && (x == nullptr && K > 0)) fail(W, "activation pointer is null");
    if (M > 0 && N > 0 && y == nullptr) fail(W, "output pointer is null");
    if (M > 0 && N > 0 && K > 0) {
        const auto xb = reinterpret_cast<uintptr_t>(x), yb = reinterpret_cast<uintptr_t>(y);
        const uintptr_t xe = xb + uintptr_t(M * K) * sizeof(float);
        const uintptr_t ye = yb + uintptr_t(M * N) * sizeof(float);
        if (xb < ye && yb < xe) fail(W, "output overlaps the activations");
    }
    return WeightView{W.dtype, static_cast<const uint8_t*>(W.data),
                      N > 1 ? W.nb[1] : row_bytes, K, N, info.block_elems, info.block_bytes};
}

// Activations of the quantized matvec: M rows of ActQ8x32 (legacy types) or BlockQ8_K
// (K types), made once by the calling thread in a buffer it keeps between calls. Rows of the
// legacy types use llama.cpp's own activation quantizer so the integer dots reproduce its
// numbers.
QuantActs quantize_acts(const mm::KernelSet& ks, const WeightView& W, const float* x, int64_t M) {
    thread_local std::vector<ActQ8x32> q8;
    thread_local std::vector<BlockQ8_K> q8k;
    const int64_t K = W.K;
    if (mm::is_k_quant(W.type)) {
        const int64_t nb = K / kQKK;
        if (q8k.size() < size_t(M * nb)) q8k.resize(size_t(M * nb));
        for (int64_t m = 0; m < M; ++m) ks.quantize_q8k(x + m * K, K, q8k.data() + m * nb);
        return {reinterpret_cast<const uint8_t*>(q8k.data()), size_t(nb) * sizeof(BlockQ8_K)};
    }
    const int64_t nb = K / kQK;
    if (q8.size() < size_t(M * nb)) q8.resize(size_t(M * nb));
    for (int64_t m = 0; m < M; ++m) ks.quantize_q8x32(x + m * K, K, q8.data() + m * nb);
    return {reinterpret_cast<const uint8_t*>(q8.data()), size_t(nb) * sizeof(ActQ8x32)};
}

// ---- Portable kernels ----

void quantize_q8x32_scalar(const float* x, int64_t K, ActQ8x32* out) {
    BlockQ8_0 b;
    for (int64_t i = 0; i < K / kQK; ++i) {
        quantize_row_q8_0_activations(x + i * kQK, &b, kQK);
        out[i].d = fp16_to_f32(b.d);
        int sum = 0;
        for (int j = 0; j < kQK; ++j) sum += b.qs[j];
        std::memcpy(out[i].qs, b.qs, kQK);
        out[i].ds = out[i].d * float(sum);
    }
}

void quantize_q8k_scalar(const float* x, int64_t K, BlockQ8_K* out) { quantize_row_q8_K(x, out, K); }

// Σ a[k]·b[k] in float with 8 interleaved partial sums (so compilers vectorise it without
// reassociating), combined pairwise at the end.
float dot_f32(const float* a, const float* b, int64_t n) {
    float acc[8] = {};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; ++l) acc[l] += a[k + l] * b[k + l];
    for (int l = 0; k < n; ++k, ++l) acc[l] += a[k] * b[k];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void matvec_float_scalar(const WeightView& W, const float* x, int64_t M, float* y, int64_t n0,
                         int64_t n1) {
    std::vector<float> w(size_t(W.K));
    for (int64_t n = n0; n < n1; ++n) {
        dequantize_row(W.type, W.row(n), w.data(), W.K);
        for (int64_t m = 0; m < M; ++m) y[m * W.N + n] = dot_f32(x + m * W.K, w.data(), W.K);
    }
}

void matvec_quant_scalar(const WeightView& W, const QuantActs& acts, int64_t M, float* y,
                         int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
        for (int64_t m = 0; m < M; ++m)
            y[m * W.N + n] = mm::qdot_scalar(W.type, W.row(n), acts.row(m), W.K);
}

// Panels of kPanel weight rows are dequantized to f32 once, then dotted with every x row of
// the range; the same dot_f32 as the matvec, so an element's value does not depend on M.
void gemm_scalar(const WeightView& W, const float* x, float* y, int64_t m0, int64_t m1,
                 int64_t n0, int64_t n1) {
    constexpr int64_t kPanel = 8;
    std::vector<float> w(size_t(kPanel * W.K));
    for (int64_t nb = n0; nb < n1; nb += kPanel) {
        const int64_t np = std::min(kPanel, n1 - nb);
        for (int64_t j = 0; j < np; ++j) dequantize_row(W.type, W.row(nb + j), w.data() + j * W.K, W.K);
        for (int64_t m = m0; m < m1; ++m)
            for (int64_t j = 0; j < np; ++j)
                y[m * W.N + nb + j] = dot_f32(x + m * W.K, w.data() + j * W.K, W.K);
    }
}

// ---- Portable integer dots: one weight row · one quantized activation row ----
// Each block is copied out of the row first (rows are not aligned). Per block the integer
// sum is exact; it is scaled by (d_w·d_x) as ggml does, and blocks are summed in float.

template <class Block>
Block load_block(const uint8_t* row, int64_t i) {
    Block b;
    std::memcpy(&b, row + size_t(i) * sizeof(Block), sizeof(Block));
    return b;
}

uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// Legacy types: the 32 weight codes of a block as integers (offset already removed for the
// symmetric types), plus the block's scale d and min m (m = 0 for the symmetric types).
void legacy_codes(DType t, const uint8_t* row, int64_t i, int* q, float& d, float& m) {
    m = 0;
    switch (t) {
    case DType::Q8_0: {
        const auto b = load_block<BlockQ8_0>(row, i);
        d = fp16_to_f32(b.d);
        for (int j = 0; j < kQK; ++j) q[j] = b.qs[j];
        return;
    }
    case DType::Q4_0: case DType::Q4_1: {
        uint8_t qs[kQK / 2];
        if (t == DType::Q4_0) {
            const auto b = load_block<BlockQ4_0>(row, i);
            d = fp16_to_f32(b.d);
            std::memcpy(qs, b.qs, sizeof qs);
        } else {
            const auto b = load_block<BlockQ4_1>(row, i);
            d = fp16_to_f32(b.d);
            m = fp16_to_f32(b.m);
            std::memcpy(qs, b.qs, sizeof qs);
        }
        const int off = t == DType::Q4_0 ? 8 : 0;
        for (int j = 0; j < kQK / 2; ++j) {
            q[j] = (qs[j] & 0xF) - off;
            q[j + 16] = (qs[j] >> 4) - off;
        }
        return;
    }
    default: {  // Q5_0, Q5_1
        uint8_t qs[kQK / 2];
        uint32_t qh;
        if (t == DType::Q5_0) {
            const auto b = load_block<BlockQ5_0>(row, i);
            d = fp16_to_f32(b.d);
            qh = load_u32(b.qh);
            std::memcpy(qs, b.qs, sizeof qs);
        } else {
            const auto b = load_block<BlockQ5_1>(row, i);
            d = fp16_to_f32(b.d);
            m = fp16_to_f32(b.m);
            qh = load_u32(b.qh);
            std::memcpy(qs, b.qs, sizeof qs);
        }
        const int off = t == DType::Q5_0 ? 16 : 0;
        for (int j = 0; j < kQK / 2; ++j) {
            q[j] = ((qs[j] & 0xF) | int((qh >> j) & 1) << 4) - off;
            q[j + 16] = ((qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4) - off;
        }
        return;
    }
    }
}

// Σ_blocks (d_w·d_x)·Σ q_w·q_x  +  m_w·(d_x·Σ q_x)
float qdot_legacy(DType t, const uint8_t* row, const ActQ8x32* a, int64_t nblocks) {
    float sum = 0;
    int q[kQK];
    for (int64_t i = 0; i < nblocks; ++i) {
        float d, m;
        legacy_codes(t, row, i, q, d, m);
        int s = 0;
        for (int j = 0; j < kQK; ++j) s += q[j] * a[i].qs[j];
        sum += (d * a[i].d) * float(s) + m * a[i].ds;
    }
    return sum;
}

// Q4_K / Q5_K: Σ_j d·sc_j·Σ q·q_x − dmin·m_j·Σ q_x over the 8 sub-blocks of 32 (the
// sums of q_x come from the activation's bsums), scaled by the activation's d.
template <class Block>
float qdot_q45k(const uint8_t* row, const BlockQ8_K* a, int64_t nblocks) {
    constexpr bool kFive = std::is_same_v<Block, BlockQ5_K>;
    float sum = 0;
    for (int64_t i = 0; i < nblocks; ++i) {
        const auto b = load_block<Block>(row, i);
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, mn;
            k_scale_min(b.scales, j, sc, mn);
            const int c = j / 2, shift = (j % 2) * 4;
            int s = 0;
            for (int l = 0; l < 32; ++l) {
                int q = (b.qs[32 * c + l] >> shift) & 0xF;
                if constexpr (kFive) q |= ((b.qh[l] >> j) & 1) << 4;
                s += q * a[i].qs[32 * j + l];
            }
            sumi += sc * s;
            summ += mn * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        sum += fp16_to_f32(b.d) * a[i].d * float(sumi) - fp16_to_f32(b.dmin) * a[i].d * float(summ);
    }
    return sum;
}

// Q6_K: d·Σ_g sc_g·Σ (q − 32)·q_x over the 16 groups of 16 (layout in MODELS.md §2.3).
float qdot_q6k(const uint8_t* row, const BlockQ8_K* a, int64_t nblocks) {
    float sum = 0;
    for (int64_t i = 0; i < nblocks; ++i) {
        const auto b = load_block<BlockQ6_K>(row, i);
        int q[kQKK];
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = b.ql + 64 * h;
            const uint8_t* qh = b.qh + 32 * h;
            int* y = q + 128 * h;
            for (int l = 0; l < 32; ++l) {
                y[l] = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
                y[l + 32] = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
                y[l + 64] = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                y[l + 96] = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            }
        }
        int sumi = 0;
        for (int g = 0; g < 16; ++g) {
            int s = 0;
            for (int l = 0; l < 16; ++l) s += q[16 * g + l] * a[i].qs[16 * g + l];
            sumi += b.scales[g] * s;
        }
        sum += fp16_to_f32(b.d) * a[i].d * float(sumi);
    }
    return sum;
}

// ---- Threading ----
// Work is cut into more chunks than threads (kChunksPerThread each) and claimed dynamically
// (ThreadPool::run_chunks): when another process takes a core mid-call, the thread still
// running picks up the chunks the descheduled one has not started, instead of waiting for it.
// Chunk boundaries never change what an element computes, so results do not depend on them.

constexpr int kChunksPerThread = 4;
constexpr int64_t kMinMatvecRows = 32;  // below this a chunk costs more to hand out than to run

int chunk_count(int64_t units, int64_t min_units, int nth) {
    const int64_t by_size = std::max<int64_t>(1, units / std::max<int64_t>(min_units, 1));
    return int(std::min<int64_t>(by_size, int64_t(kChunksPerThread) * nth));
}

// The decode-sized products of one x with n weights of the same K (n = 1: one matmul) as one
// job over all their rows: a thread hand-off for all of them, and quantized activations made
// once per format (quantize_acts keeps one buffer per format). n ≤ kMaxSameX.
constexpr size_t kMaxSameX = 4;
void run_matvec(const mm::KernelSet& ks, const WeightView* W, float* const* Y, size_t n, const float* x, int64_t M,
                ThreadPool& pool) {
    QuantActs acts[kMaxSameX] = {};
    QuantActs legacy{}, kquant{};
    int64_t first[kMaxSameX + 1] = {0};  // weight i has rows [first[i], first[i+1]) of the job
    for (size_t i = 0; i < n; ++i) {
        first[i + 1] = first[i] + W[i].N;
        if (mm::is_float_type(W[i].type)) continue;
        QuantActs& a = mm::is_k_quant(W[i].type) ? kquant : legacy;
        if (a.data == nullptr) a = quantize_acts(ks, W[i], x, M);
        acts[i] = a;
    }
    pool.run_chunks(chunk_count(first[n], kMinMatvecRows, pool.size()), [&](int c, int nc) {
        int64_t b, e;
        ThreadPool::split(first[n], c, nc, b, e);
        for (size_t i = 0; i < n; ++i) {
            const int64_t n0 = std::max(b, first[i]) - first[i], n1 = std::min(e, first[i + 1]) - first[i];
            if (n0 >= n1) continue;
            if (acts[i].data) ks.matvec_quant(W[i], acts[i], M, Y[i], n0, n1);
            else ks.matvec_float(W[i], x, M, Y[i], n0, n1);
        }
    });
}

// matmul_rows_as_decode: run_matvec's chunks. Float weights: matvec_float_rows, each weight row
// dotted with every x row as the M = 1 kernel does. Quantized: a block of weight rows (about
// 16 KiB, L1-resident) dotted with one quantized x row after another by the M = 1 kernel.
void run_matvec_rows(const mm::KernelSet& ks, const WeightView& W, const float* x, float* y,
                     int64_t M, ThreadPool& pool) {
    const bool quant = !mm::is_float_type(W.type);
    const QuantActs acts = quant ? quantize_acts(ks, W, x, M) : QuantActs{};
    const uint64_t row_bytes = uint64_t(W.K / W.block_elems) * W.block_bytes;
    const int64_t block = std::clamp<int64_t>(int64_t(16384 / std::max<uint64_t>(row_bytes, 1)), 1, 64);
    pool.run_chunks(chunk_count(W.N, kMinMatvecRows, pool.size()), [&](int c, int nc) {
        int64_t n0, n1;
        ThreadPool::split(W.N, c, nc, n0, n1);
        if (!quant) return ks.matvec_float_rows(W, x, M, y, n0, n1);
        for (int64_t b0 = n0; b0 < n1; b0 += block) {
            const int64_t b1 = std::min(n1, b0 + block);
            for (int64_t m = 0; m < M; ++m)
                ks.matvec_quant(W, QuantActs{static_cast<const uint8_t*>(acts.row(m)), acts.row_bytes}, 1,
                                y + m * W.N, b0, b1);
        }
    });
}

// Packing one weight element into a panel costs about as much as using it in this many rows
// of the register tiles. Measured on one thread with a 1024x1024 F32 weight: 6 rows took
// 489 us, each further row 15 us, so the packing was worth about 26 rows.
constexpr int64_t kPackRows = 24;

// How a GEMM is cut. Every chunk packs the weight columns it uses, once per KC slice:
// - by columns, in whole pairs of NR-wide panels (a pair is what one AVX-512 tile spans, so no
//   chunk leaves a lone panel to the narrower tile): no weight is packed twice, but the last
//   thread may get a pair more than the others (3 pairs on 2 threads: 2 + 1);
// - by rows, in whole MR-row tiles: the columns are shared evenly, but every chunk packs the
//   whole weight, which costs kPackRows rows' worth each time; a prompt of 30 rows cut into 5
//   chunks of 6 rows spent several times longer packing than multiplying.
// The cheaper cut is taken (the costs below are in row-times-pair units), and a row cut gets
// more chunks than threads only while each chunk still has 16 · kPackRows rows.
void run_gemm(const mm::KernelSet& ks, const WeightView& W, const float* x, float* y,
              int64_t M, ThreadPool& pool) {
    const int nth = pool.size();
    constexpr int64_t kPair = 2 * mm::kGemmNR;
    const int64_t pairs = (W.N + kPair - 1) / kPair;
    const int64_t tiles = (M + mm::kGemmMR - 1) / mm::kGemmMR;
    const int64_t tiles_per_thread = (tiles + nth - 1) / nth;
    const int64_t cost_cols = (pairs + nth - 1) / nth * (M + kPackRows);
    const int64_t cost_rows = pairs * (tiles_per_thread * mm::kGemmMR + kPackRows);
    const bool split_n = cost_cols <= cost_rows;
    // A column chunk of at least 4 pairs (128 weight rows) keeps re-reading x per chunk cheap,
    // but every thread gets a chunk while there are pairs to give (the K/V projections of a
    // small decoder have only 6).
    const int64_t row_chunks_per_thread =
        std::clamp<int64_t>(tiles_per_thread * mm::kGemmMR / (16 * kPackRows), 1, kChunksPerThread);
    const int chunks = split_n ? int(std::min<int64_t>(pairs, std::max(chunk_count(pairs, 4, nth), nth)))
                               : int(std::min<int64_t>(tiles, row_chunks_per_thread * nth));
    pool.run_chunks(chunks, [&](int c, int nc) {
        int64_t b, e;
        if (split_n) {
            ThreadPool::split(pairs, c, nc, b, e);
            const int64_t n0 = b * kPair, n1 = std::min(W.N, e * kPair);
            if (n0 < n1) ks.gemm(W, x, y, 0, M, n0, n1);
        } else {
            ThreadPool::split(tiles, c, nc, b, e);
            const int64_t m0 = b * mm::kGemmMR, m1 = std::min(M, e * mm::kGemmMR);
            if (m0 < m1) ks.gemm(W, x, y, m0, m1, 0, W.N);
        }
    });
}

}  // namespace

namespace mm {
#if !defined(__x86_64__)
// No AVX2 kernels are built for other targets (core/CMakeLists.txt); has_avx2_kernels() is
// false there, so this is never chosen, but the symbol must exist.
const KernelSet& avx2_kernels() { return scalar_kernels(); }
const KernelSet& avx512_kernels() { return scalar_kernels(); }
#endif

float qdot_scalar(DType t, const uint8_t* w_row, const void* act_row, int64_t K) {
    switch (t) {
    case DType::Q4_K:
        return qdot_q45k<BlockQ4_K>(w_row, static_cast<const BlockQ8_K*>(act_row), K / kQKK);
    case DType::Q5_K:
        return qdot_q45k<BlockQ5_K>(w_row, static_cast<const BlockQ8_K*>(act_row), K / kQKK);
    case DType::Q6_K:
        return qdot_q6k(w_row, static_cast<const BlockQ8_K*>(act_row), K / kQKK);
    default:
        return qdot_legacy(t, w_row, static_cast<const ActQ8x32*>(act_row), K / kQK);
    }
}

const KernelSet& scalar_kernels() {
    // matvec_float_scalar dots every row alone already: it is its own rows-as-one kernel.
    static const KernelSet ks{quantize_q8x32_scalar, quantize_q8k_scalar, matvec_float_scalar,
                              matvec_float_scalar, matvec_quant_scalar, gemm_scalar};
    return ks;
}
}  // namespace mm

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

// The kernels `path` asks for, as far as this CPU has them.
static const mm::KernelSet& kernel_set(KernelPath path) {
    if (path == KernelPath::Scalar || !has_avx2_kernels()) return mm::scalar_kernels();
    return path == KernelPath::Auto && has_avx512_kernels() ? mm::avx512_kernels() : mm::avx2_kernels();
}

// False when y is complete without a product: M or N is zero, or K is (y is then zeros).
static bool needs_product(const WeightView& W, int64_t M, float* y) {
    if (M == 0 || W.N == 0) return false;
    if (W.K == 0) {
        std::fill(y, y + M * W.N, 0.0f);
        return false;
    }
    return true;
}

void matmul(const Tensor& Wt, const float* x, float* y, int64_t M, ThreadPool& pool,
            KernelPath path) {
    const WeightView W = validate(Wt, x, y, M);
    if (!needs_product(W, M, y)) return;
    const mm::KernelSet& ks = kernel_set(path);
    if (M < kMatvecMaxM) run_matvec(ks, &W, &y, 1, x, M, pool);
    else run_gemm(ks, W, x, y, M, pool);
}

void matmul_same_x(std::initializer_list<MatmulTarget> targets, const float* x, int64_t M, ThreadPool& pool,
                   KernelPath path) {
    bool separate = M >= kMatvecMaxM || M == 0 || targets.size() > kMaxSameX;
    WeightView W[kMaxSameX];
    float* Y[kMaxSameX] = {};
    size_t n = 0;
    for (const MatmulTarget& t : targets) {
        if (separate) break;
        W[n] = validate(*t.W, x, t.y, M);
        Y[n] = t.y;
        if (W[n].K != W[0].K) fail(*t.W, "matmul_same_x: K differs from " + targets.begin()->W->name + "'s");
        if (W[n].K == 0) separate = true;
        ++n;
    }
    if (separate) {
        for (const MatmulTarget& t : targets) matmul(*t.W, x, t.y, M, pool, path);
        return;
    }
    run_matvec(kernel_set(path), W, Y, n, x, M, pool);
}

void matmul_rows_as_decode(const Tensor& Wt, const float* x, float* y, int64_t M, ThreadPool& pool,
                           KernelPath path) {
    const WeightView W = validate(Wt, x, y, M);
    if (!needs_product(W, M, y)) return;
    run_matvec_rows(kernel_set(path), W, x, y, M, pool);
}

void matmul_reference(const Tensor& Wt, const float* x, float* y, int64_t M) {
    const WeightView W = validate(Wt, x, y, M);
    std::vector<float> w(size_t(std::max<int64_t>(W.K, 1)));
    for (int64_t n = 0; n < W.N; ++n) {
        if (W.K > 0) dequantize_row(W.type, W.row(n), w.data(), W.K);
        for (int64_t m = 0; m < M; ++m) {
            double s = 0;
            for (int64_t k = 0; k < W.K; ++k) s += double(x[m * W.K + k]) * double(w[size_t(k)]);
            y[m * W.N + n] = float(s);
        }
    }
}

}  // namespace glimpse
