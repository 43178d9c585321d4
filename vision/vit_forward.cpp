// SigLIP / CLIP encoder forward pass and the projector call (vision/vit_forward.h).
#include "vision/vit_forward.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/error.h"
#include "core/fp16.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "core/scratch.h"
#include "core/vmath.h"
#include "vision/vit_forward_vk.h"

namespace glimpse {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

const float* f32(const Tensor& t) { return t.data ? f32_data(t) : nullptr; }

// Activation scratch for one batch of N = n_tiles · T sequence rows (run.c's RunState).
// The attention of one tile and head (T = n_positions, hd = head_dim).
struct HeadScratch {
    std::vector<float> qh;      // [T][hd]  the head's queries, contiguous
    std::vector<float> scores;  // [T][T]   scores, then probabilities
    std::vector<float> vt;      // [hd][T]  the head's values, transposed
    std::vector<float> oh;      // [T][hd]  the head's output before the softmax's 1/Σ
    std::vector<float> inv_sum; // [T]      1/Σ_j exp of each score row

    explicit HeadScratch(const VisionConfig& c) {
        const auto T = size_t(c.n_positions()), hd = size_t(c.head_dim());
        for (auto* b : {&qh, &vt, &oh}) b->resize(T * hd);
        scores.resize(T * T);
        inv_sum.resize(T);
    }
};

struct VisionScratch {
    std::vector<float> x;    // [N][D] residual stream
    std::vector<float> h;    // [N][D] normed input / projection output / patch rows
    std::vector<float> q, k, v, att;  // [N][D]
    std::vector<float> ff;   // [N][n_ff]
    std::vector<HeadScratch> heads;  // one per pool thread when heads run in parallel, else one

    int64_t rows = 0, embd = 0, n_ff = 0, positions = 0, head_dim = 0;  // what it was sized for

    VisionScratch(const VisionConfig& c, int64_t n_rows, int n_heads_scratch)
        : rows(n_rows), embd(c.n_embd), n_ff(c.n_ff), positions(c.n_positions()), head_dim(c.head_dim()) {
        const auto nd = size_t(n_rows) * size_t(c.n_embd);
        for (auto* b : {&x, &h, &q, &k, &v, &att}) b->resize(nd);
        ff.resize(size_t(n_rows) * size_t(c.n_ff));
        heads.assign(size_t(std::max(1, n_heads_scratch)), HeadScratch(c));
    }
    bool fits(const VisionConfig& c, int64_t n_rows, int n_heads_scratch) const {
        return n_rows <= rows && c.n_embd == embd && c.n_ff == n_ff && c.n_positions() == positions &&
               c.head_dim() == head_dim && size_t(std::max(1, n_heads_scratch)) <= heads.size();
    }
    size_t bytes() const {
        size_t n = (x.size() + h.size() + q.size() + k.size() + v.size() + att.size() + ff.size()) * sizeof(float);
        for (const HeadScratch& hs : heads)
            n += (hs.qh.size() + hs.scores.size() + hs.vt.size() + hs.oh.size() + hs.inv_sum.size()) * sizeof(float);
        return n;
    }
};

// This thread's scratch for a call of rows/heads (every buffer is written before it is read,
// as between the batches of one call): kept between calls up to ScratchFloats::kKeptBytes
// (core/scratch.h), so a caption lane's encoder does not allocate, zero and fault in about a
// megabyte per group of tiles; a larger one (a SmolVLM batch) is freed when the call ends.
class ThreadVisionScratch {
public:
    ThreadVisionScratch(const VisionConfig& c, int64_t n_rows, int n_heads_scratch) {
        if (!kept() || !kept()->fits(c, n_rows, n_heads_scratch))
            kept() = std::make_unique<VisionScratch>(c, n_rows, n_heads_scratch);
    }
    ~ThreadVisionScratch() {
        if (kept()->bytes() > ScratchFloats::kKeptBytes) kept().reset();
    }
    ThreadVisionScratch(const ThreadVisionScratch&) = delete;
    ThreadVisionScratch& operator=(const ThreadVisionScratch&) = delete;
    VisionScratch& get() { return *kept(); }

private:
    static std::unique_ptr<VisionScratch>& kept() {
        thread_local std::unique_ptr<VisionScratch> s;
        return s;
    }
};

// An F32 matrix view of `rows` rows of `cols` floats, `stride` floats apart (a weight for matmul).
Tensor f32_view(const float* data, int64_t cols, int64_t rows, int64_t stride) {
    Tensor t;
    t.name = "attention operand";
    t.dtype = DType::F32;
    t.n_dims = 2;
    t.ne = {cols, rows, 1, 1};
    const uint64_t row = uint64_t(stride) * sizeof(float);
    t.nb = {sizeof(float), row, row * uint64_t(rows), row * uint64_t(rows)};
    t.data = data;
    return t;
}

// Non-causal attention of one tile and head h, as two matmuls (the tiled GEMM is much faster
// than row-by-row dot products at T = 1024):
//   S = Q_h · K_hᵀ [T][T];   E = exp(scale · S − row max);   O_h = (E · V_h) / (row sums of E)
// (dividing the [T][hd] result instead of the [T][T] probabilities saves a pass over E).
// q, k, v, out [T][H·hd] (head h in columns h·hd ..). ops::attention computes the same thing
// (MODELS.md §1.2); the tests compare both against a plain reference.
void head_attention(const float* q, const float* k, const float* v, float* out, int64_t T, int64_t D, int64_t hd,
                    int64_t h, float scale, HeadScratch& s, ThreadPool& pool) {
    float* qh = s.qh.data();
    float* scores = s.scores.data();
    float* vt = s.vt.data();
    float* oh = s.oh.data();
    float* inv = s.inv_sum.data();
    for (int64_t i = 0; i < T; ++i) std::memcpy(qh + i * hd, q + i * D + h * hd, size_t(hd) * sizeof(float));
    matmul(f32_view(k + h * hd, hd, T, D), qh, scores, T, pool);  // scores[i][j] = q_i · k_j
    pool.parallel_for(T, [&](int64_t r0, int64_t r1) {
        vmath::exp_scaled_rows(scores + r0 * T, r1 - r0, T, scale, inv + r0);
    });
    for (int64_t j = 0; j < T; ++j)
        for (int64_t d = 0; d < hd; ++d) vt[d * T + j] = v[j * D + h * hd + d];
    matmul(f32_view(vt, T, hd, T), scores, oh, T, pool);  // oh[i][d] = Σ_j e_ij v_j[d]
    for (int64_t i = 0; i < T; ++i) ops::scale(oh + i * hd, inv[i], out + i * D + h * hd, hd);
}

// Whether the (tile, head) units of a batch go to the threads whole, each unit on one thread
// (its matmuls then run inline: ThreadPool nesting), rather than one after another with the
// threads sharing each matmul. Whole units save a thread hand-off per step and run the
// copies and transposes in parallel too; they need enough units to go round. Measured
// (`glimpse bench --vit --vit-tiles 4 -t 2`, SmolVLM-256M): softmax(QK^T)V 362-386 ->
// 305-310 ms a tile; the default model's encoder 0.80 -> 0.65 ms a tile (32 tiles).
bool heads_in_parallel(const VisionConfig& c, int nt, const ThreadPool& pool) {
    return int64_t(nt) * c.n_heads >= 2 * int64_t(pool.size());
}

// Attention of every tile and head of the batch: s.att from s.q, s.k, s.v.
void batch_attention(const VisionConfig& c, int nt, VisionScratch& s, ThreadPool& pool) {
    const int64_t D = c.n_embd, T = c.n_positions(), H = c.n_heads, hd = c.head_dim();
    const float scale = 1.0f / std::sqrt(float(hd));
    auto unit = [&](int64_t u, HeadScratch& hs, ThreadPool& p) {
        const int64_t off = (u / H) * T * D;
        head_attention(s.q.data() + off, s.k.data() + off, s.v.data() + off, s.att.data() + off, T, D, hd, u % H,
                       scale, hs, p);
    };
    const int64_t units = int64_t(nt) * H;
    if (!heads_in_parallel(c, nt, pool)) {
        for (int64_t u = 0; u < units; ++u) unit(u, s.heads[0], pool);
        return;
    }
    pool.run([&](int ith, int nth) {
        int64_t b, e;
        ThreadPool::split(units, ith, nth, b, e);
        for (int64_t u = b; u < e; ++u) unit(u, s.heads[size_t(ith)], pool);
    });
}

class Tracer {
public:
    explicit Tracer(const ActivationTrace* trace) : trace_(trace) {}
    bool on() const { return trace_ != nullptr; }
    void operator()(const std::string& name, const float* data, int64_t rows, int64_t cols) const {
        if (trace_) (*trace_)(name.c_str(), data, rows, cols);
    }
    void layer(const char* name, int l, const float* data, int64_t rows, int64_t cols) const {
        if (trace_) (*this)(std::string(name) + "-" + std::to_string(l), data, rows, cols);
    }

private:
    const ActivationTrace* trace_;
};

// x [nt·T][D] = per tile [class_embd;] patch_conv(tile) (+ bias), + positions, (pre-LN).
void embed(const VisionModel& m, const float* tiles, int nt, VisionScratch& s, ThreadPool& pool, const Tracer& tr) {
    const VisionConfig& c = m.config;
    const VisionWeights& w = m.weights;
    const int64_t D = c.n_embd, S = c.image_size, P = c.n_patches(), T = c.n_positions();
    ops::patch_embed(tiles, 3, S, S, w.patch_w, f32(w.patch_b), c.patch_size, s.h.data(), pool, nt);
    tr("patch_embd", s.h.data(), nt * P, D);
    for (int t = 0; t < nt; ++t) {
        float* seq = s.x.data() + t * T * D;
        if (c.has_class_token) std::memcpy(seq, f32(w.class_embd), size_t(D) * sizeof(float));
        std::memcpy(seq + (T - P) * D, s.h.data() + t * P * D, size_t(P * D) * sizeof(float));
        ops::add(seq, f32(w.position_embd), seq, T * D);  // row i gets position i (class = 0)
    }
    tr("embeddings", s.x.data(), nt * T, D);
    if (c.pre_layernorm) {
        ops::layer_norm(s.x.data(), f32(w.pre_ln_w), f32(w.pre_ln_b), s.x.data(), nt * T, D, c.layer_norm_eps, pool);
        tr("pre_ln", s.x.data(), nt * T, D);
    }
}

// y [N][n] = x [N][·] · Wᵀ + b
void linear(const Tensor& W, const Tensor& b, const float* x, float* y, int64_t N, ThreadPool& pool) {
    matmul(W, x, y, N, pool);
    ops::add_row_bias(y, f32(b), N, W.ne[1]);
}

// x += o(attention(q, k, v)) with q, k, v = ln1(x) · {q,k,v}ᵀ + b; attention per tile.
void attention_block(const VisionConfig& c, const VisionLayerWeights& L, int l, int nt, VisionScratch& s,
                     ThreadPool& pool, const Tracer& tr, double& core_ms) {
    const int64_t D = c.n_embd, N = nt * int64_t(c.n_positions());
    ops::layer_norm(s.x.data(), f32(L.ln1_w), f32(L.ln1_b), s.h.data(), N, D, c.layer_norm_eps, pool);
    tr.layer("layer_inp_normed", l, s.h.data(), N, D);
    linear(L.q_w, L.q_b, s.h.data(), s.q.data(), N, pool);
    linear(L.k_w, L.k_b, s.h.data(), s.k.data(), N, pool);
    linear(L.v_w, L.v_b, s.h.data(), s.v.data(), N, pool);
    tr.layer("Qcur", l, s.q.data(), N, D);
    tr.layer("Kcur", l, s.k.data(), N, D);
    tr.layer("Vcur", l, s.v.data(), N, D);
    const auto t_core = Clock::now();
    batch_attention(c, nt, s, pool);
    core_ms += ms_since(t_core);
    tr.layer("kqv_out", l, s.att.data(), N, D);
    linear(L.o_w, L.o_b, s.att.data(), s.h.data(), N, pool);
    tr.layer("attn_out", l, s.h.data(), N, D);
    ops::add(s.x.data(), s.h.data(), s.x.data(), N * D);
    tr.layer("ffn_inp", l, s.x.data(), N, D);
}

// x += fc2(act(fc1(ln2(x)))).
void mlp_block(const VisionConfig& c, const VisionLayerWeights& L, int l, int nt, VisionScratch& s, ThreadPool& pool,
               const Tracer& tr) {
    const int64_t D = c.n_embd, N = nt * int64_t(c.n_positions()), F = c.n_ff;
    ops::layer_norm(s.x.data(), f32(L.ln2_w), f32(L.ln2_b), s.h.data(), N, D, c.layer_norm_eps, pool);
    tr.layer("ffn_inp_normed", l, s.h.data(), N, D);
    linear(L.fc1_w, L.fc1_b, s.h.data(), s.ff.data(), N, pool);
    tr.layer("ffn_up_b", l, s.ff.data(), N, F);
    float* f = s.ff.data();
    switch (c.activation) {
        case VisionActivation::GeluTanh:
            pool.parallel_for(N * F, [&](int64_t b, int64_t e) { vmath::gelu_tanh(f + b, f + b, e - b); });
            break;
        case VisionActivation::GeluErf: ops::gelu_erf(f, f, N * F, pool); break;
        case VisionActivation::QuickGelu: ops::quick_gelu(f, f, N * F, pool); break;
    }
    tr.layer("ffn_act", l, s.ff.data(), N, F);
    linear(L.fc2_w, L.fc2_b, s.ff.data(), s.h.data(), N, pool);
    tr.layer("ffn_out", l, s.h.data(), N, D);
    ops::add(s.x.data(), s.h.data(), s.x.data(), N * D);
    tr.layer("layer_out", l, s.x.data(), N, D);
}

// One batch of nt tiles: features [nt·n_patches][D] (post-LN; class rows dropped).
void encode_batch(const VisionModel& m, const float* tiles, int nt, float* features, VisionScratch& s,
                  ThreadPool& pool, VisionTimings& tm, const Tracer& tr) {
    const VisionConfig& c = m.config;
    const int64_t D = c.n_embd, T = c.n_positions(), P = c.n_patches();
    auto t0 = Clock::now();
    embed(m, tiles, nt, s, pool, tr);
    tm.embed_ms += ms_since(t0);
    for (int l = 0; l < c.n_layers; ++l) {
        const VisionLayerWeights& L = m.weights.layers[size_t(l)];
        t0 = Clock::now();
        attention_block(c, L, l, nt, s, pool, tr, tm.attention_core_ms);
        tm.attention_ms += ms_since(t0);
        t0 = Clock::now();
        mlp_block(c, L, l, nt, s, pool, tr);
        tm.mlp_ms += ms_since(t0);
    }
    t0 = Clock::now();
    if (c.post_layernorm) {
        const VisionWeights& w = m.weights;
        ops::layer_norm(s.x.data(), f32(w.post_ln_w), f32(w.post_ln_b), s.x.data(), nt * T, D, c.layer_norm_eps, pool);
        tr("post_ln", s.x.data(), nt * T, D);
    }
    for (int t = 0; t < nt; ++t)  // the class row (CLIP) is row 0 of each tile's sequence
        std::memcpy(features + t * P * D, s.x.data() + (t * T + (T - P)) * D, size_t(P * D) * sizeof(float));
    tr("features", features, nt * P, D);
    tm.project_ms += ms_since(t0);
}

int tiles_per_batch(const VisionConfig& c, int n_tiles, int64_t max_batch_rows) {
    const int64_t by_rows = std::max<int64_t>(1, max_batch_rows / c.n_positions());
    return int(std::min<int64_t>(n_tiles, by_rows));
}

void check_call(const VisionModel& m, const float* tiles, int n_tiles, const float* out) {
    if (n_tiles < 0) throw std::invalid_argument("encode_tiles: negative tile count");
    if (n_tiles > 0 && (tiles == nullptr || out == nullptr)) throw std::invalid_argument("encode_tiles: null buffer");
    if (m.weights.layers.size() != size_t(m.config.n_layers))
        throw std::invalid_argument("encode_tiles: model weights do not match its config");
}

}  // namespace

namespace {

// Both entry points: batches of tiles through the encoder, then (with_projector) the projector.
void run_tiles(const VisionModel& m, const float* tiles, int n_tiles, float* out, ThreadPool& pool, VisionTimings* t,
               const ActivationTrace* trace, int64_t max_batch_rows, bool with_projector) {
    check_call(m, tiles, n_tiles, out);
    if (n_tiles == 0) return;
    if (m.vulkan) {  // the whole encode on the device (vision/vit_forward_vk.h)
        if (trace)
            throw Error(ErrorKind::Usage, "activation traces of the vision tower run on the CPU only: use --device cpu");
        m.vulkan->encode(tiles, n_tiles, out, with_projector, t);
        return;
    }
    const VisionConfig& c = m.config;
    const int per_batch = tiles_per_batch(c, n_tiles, max_batch_rows);
    const int P = c.n_patches(), D = c.n_embd;
    // A [T][T] score buffer per thread only where heads run in parallel (4 MiB each at T = 1024;
    // a batch of fewer tiles than per_batch never needs more).
    ThreadVisionScratch scratch_owner(c, int64_t(per_batch) * c.n_positions(),
                                      heads_in_parallel(c, per_batch, pool) ? pool.size() : 1);
    VisionScratch& s = scratch_owner.get();
    thread_local std::vector<float> features_store, projector_store;
    ScratchFloats features(features_store, with_projector ? size_t(per_batch) * size_t(P) * size_t(D) : 0);
    ScratchFloats scratch(projector_store,
                          with_projector ? size_t(projector_scratch_floats(c.projector, per_batch, P, D)) : 0);
    const int64_t tile_in = 3 * int64_t(c.image_size) * c.image_size;
    const int64_t tile_out = with_projector ? int64_t(tokens_per_tile(c)) * projected_dim(c) : int64_t(P) * D;
    VisionTimings local;
    const Tracer tr(trace);
    for (int t0 = 0; t0 < n_tiles; t0 += per_batch) {
        const int nt = std::min(per_batch, n_tiles - t0);
        float* dst = out + t0 * tile_out;
        encode_batch(m, tiles + t0 * tile_in, nt, with_projector ? features.data() : dst, s, pool, local, tr);
        if (!with_projector) continue;
        const auto start = Clock::now();
        project(c.projector, m.weights.projector, features.data(), nt, P, D, dst, scratch.data(), pool, trace);
        local.project_ms += ms_since(start);
        tr("embd", dst, int64_t(nt) * tokens_per_tile(c), projected_dim(c));
    }
    if (t) {
        t->embed_ms += local.embed_ms;
        t->attention_ms += local.attention_ms;
        t->attention_core_ms += local.attention_core_ms;
        t->mlp_ms += local.mlp_ms;
        t->project_ms += local.project_ms;
        t->tiles += n_tiles;
    }
}

}  // namespace

void encode_tiles_features(const VisionModel& m, const float* tiles, int n_tiles, float* out, ThreadPool& pool,
                           VisionTimings* t, const ActivationTrace* trace, int64_t max_batch_rows) {
    run_tiles(m, tiles, n_tiles, out, pool, t, trace, max_batch_rows, false);
}

void encode_tiles(const VisionModel& m, const float* tiles, int n_tiles, float* out, ThreadPool& pool,
                  VisionTimings* t, const ActivationTrace* trace, int64_t max_batch_rows) {
    run_tiles(m, tiles, n_tiles, out, pool, t, trace, max_batch_rows, true);
}

void normalize_tile_u8(const VisionConfig& c, const uint8_t* rgb, float* out) {
    const int64_t n = int64_t(c.image_size) * c.image_size;
    // (v / 255 − mean) / std for each of the 256 byte values, by the same float operations
    // as per pixel, so a table lookup gives the same bits without two divisions a sample.
    float table[3][256];
    for (int ch = 0; ch < 3; ++ch)
        for (int v = 0; v < 256; ++v) table[ch][v] = (float(v) / 255.0f - c.image_mean[ch]) / c.image_std[ch];
    float* r = out;
    float* g = out + n;
    float* b = out + 2 * n;
    for (int64_t i = 0; i < n; ++i, rgb += 3) {
        r[i] = table[0][rgb[0]];
        g[i] = table[1][rgb[1]];
        b[i] = table[2][rgb[2]];
    }
}

// ---- random-weight models for benchmarks and tests ----------------------------------------

namespace {

// xorshift64*: uniform floats in [-a, a), the same sequence for the same seed.
struct Rng {
    uint64_t state;
    float next(float a) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        const uint64_t r = state * 0x2545F4914F6CDD1DULL;
        return (float(r >> 40) / float(1 << 24) * 2.0f - 1.0f) * a;
    }
};

Tensor random_f32(const std::string& name, std::array<int64_t, 4> ne, int n_dims, float a, Rng& rng) {
    Tensor t = make_f32(name, ne, n_dims);
    float* d = f32_data(t);
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = rng.next(a);
    return t;
}

Tensor constant_f32(const std::string& name, int64_t n, float value) {
    Tensor t = make_f32(name, {n, 1, 1, 1}, 1);
    std::fill(f32_data(t), f32_data(t) + n, value);
    return t;
}

// A weight matrix ne {cols, rows}, values uniform in ±1/√cols, stored as F32 or F16.
Tensor random_matrix(const std::string& name, int64_t cols, int64_t rows, bool f16, Rng& rng) {
    Tensor t = random_f32(name, {cols, rows, 1, 1}, 2, 1.0f / std::sqrt(float(cols)), rng);
    if (!f16) return t;
    auto buf = std::make_shared<std::vector<uint16_t>>(size_t(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i) (*buf)[size_t(i)] = f32_to_fp16(f32_data(t)[i]);
    Tensor h;
    h.name = name;
    h.dtype = DType::F16;
    h.n_dims = 2;
    h.ne = t.ne;
    h.nb = contiguous_strides(DType::F16, t.ne);
    h.data = buf->data();
    h.storage = std::shared_ptr<const void>(buf, buf->data());
    return h;
}

}  // namespace

VisionModel make_random_siglip(int image_size, int patch_size, int n_embd, int n_heads, int n_ff, int n_layers,
                               int scale_factor, int n_out, bool f16, uint64_t seed) {
    VisionModel m;
    m.path = "random-siglip";
    VisionConfig& c = m.config;
    c.kind = VisionKind::SigLIP;
    c.image_size = image_size;
    c.patch_size = patch_size;
    c.n_embd = n_embd;
    c.n_heads = n_heads;
    c.n_ff = n_ff;
    c.n_layers = n_layers;
    c.has_patch_bias = true;
    c.post_layernorm = true;
    c.activation = VisionActivation::GeluTanh;
    c.projector = {ProjectorKind::Idefics3, scale_factor, 0, n_out};
    Rng rng{seed * 0x9E3779B97F4A7C15ULL + 1};
    const int64_t D = n_embd, p = patch_size;
    VisionWeights& w = m.weights;
    w.patch_w = random_f32("v.patch_embd.weight", {p, p, 3, D}, 4, 1.0f / std::sqrt(float(3 * p * p)), rng);
    w.patch_b = random_f32("v.patch_embd.bias", {D, 1, 1, 1}, 1, 0.1f, rng);
    w.position_embd = random_f32("v.position_embd.weight", {D, c.n_positions(), 1, 1}, 2, 0.1f, rng);
    for (int l = 0; l < n_layers; ++l) {
        const std::string b = "v.blk." + std::to_string(l) + ".";
        VisionLayerWeights L;
        L.ln1_w = constant_f32(b + "ln1.weight", D, 1.0f);
        L.ln1_b = random_f32(b + "ln1.bias", {D, 1, 1, 1}, 1, 0.1f, rng);
        L.q_w = random_matrix(b + "attn_q.weight", D, D, f16, rng);
        L.q_b = random_f32(b + "attn_q.bias", {D, 1, 1, 1}, 1, 0.1f, rng);
        L.k_w = random_matrix(b + "attn_k.weight", D, D, f16, rng);
        L.k_b = random_f32(b + "attn_k.bias", {D, 1, 1, 1}, 1, 0.1f, rng);
        L.v_w = random_matrix(b + "attn_v.weight", D, D, f16, rng);
        L.v_b = random_f32(b + "attn_v.bias", {D, 1, 1, 1}, 1, 0.1f, rng);
        L.o_w = random_matrix(b + "attn_out.weight", D, D, f16, rng);
        L.o_b = random_f32(b + "attn_out.bias", {D, 1, 1, 1}, 1, 0.1f, rng);
        L.ln2_w = constant_f32(b + "ln2.weight", D, 1.0f);
        L.ln2_b = random_f32(b + "ln2.bias", {D, 1, 1, 1}, 1, 0.1f, rng);
        L.fc1_w = random_matrix(b + "ffn_up.weight", D, n_ff, f16, rng);
        L.fc1_b = random_f32(b + "ffn_up.bias", {n_ff, 1, 1, 1}, 1, 0.1f, rng);
        L.fc2_w = random_matrix(b + "ffn_down.weight", n_ff, D, f16, rng);
        L.fc2_b = random_f32(b + "ffn_down.bias", {D, 1, 1, 1}, 1, 0.1f, rng);
        w.layers.push_back(std::move(L));
    }
    w.post_ln_w = constant_f32("v.post_ln.weight", D, 1.0f);
    w.post_ln_b = constant_f32("v.post_ln.bias", D, 0.0f);
    w.projector.fc = random_matrix("mm.model.fc.weight", D * scale_factor * scale_factor, n_out, f16, rng);
    detail::check_vision_model(m.path, c, w);
    return m;
}

VitBenchResult bench_vit_tiles(ThreadPool& pool, int n_tiles, int repeats, bool f16) {
    if (n_tiles < 1 || repeats < 1) throw std::invalid_argument("bench_vit_tiles: need at least one tile and run");
    const VisionModel m = make_random_siglip(512, 16, 768, 12, 3072, 12, 4, 576, f16, 7);
    const VisionConfig& c = m.config;
    Rng rng{12345};
    std::vector<float> tiles(size_t(n_tiles) * 3 * size_t(c.image_size) * size_t(c.image_size));
    for (float& v : tiles) v = rng.next(1.0f);
    std::vector<float> out(size_t(n_tiles) * size_t(tokens_per_tile(c)) * size_t(projected_dim(c)));
    VitBenchResult r;
    std::vector<double> wall, cpu;
    for (int i = 0; i < repeats; ++i) {
        const auto t0 = Clock::now();
        const std::clock_t c0 = std::clock();
        encode_tiles(m, tiles.data(), n_tiles, out.data(), pool, &r.timings);
        cpu.push_back(double(std::clock() - c0) * 1000.0 / CLOCKS_PER_SEC / pool.size() / n_tiles);
        wall.push_back(ms_since(t0) / n_tiles);
    }
    std::sort(wall.begin(), wall.end());
    std::sort(cpu.begin(), cpu.end());
    r.wall_ms_per_tile = wall[wall.size() / 2];
    r.cpu_ms_per_tile = cpu[cpu.size() / 2];
    r.gflop_per_tile = vision_gflop_per_tile(c);
    return r;
}

double vision_gflop_per_tile(const VisionConfig& c) {
    const double D = c.n_embd, F = c.n_ff, T = c.n_positions(), L = c.n_layers, p = c.patch_size;
    const double per_row = 3 * p * p * D + L * (4 * D * D + 2 * D * F + 2 * T * D);  // conv, blocks, attention
    return 2 * (T * per_row + T * D * projected_dim(c)) / 1e9;  // + projector (D·s² per T/s² rows)
}

}  // namespace glimpse
