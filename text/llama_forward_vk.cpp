// The Vulkan Llama forward pass (text/llama_forward_vk.h): uploads, the per-batch recording.
// Each step mirrors LlamaContext::run_batch / attention_block / ffn_block line for line.
#include "text/llama_forward_vk.h"

#include <atomic>
#include <cmath>
#include <initializer_list>
#include <string>

#include "core/error.h"
#include "core/matmul.h"

namespace glimpse {

namespace {

vk::Buffer upload_norm(vk::Context& ctx, const Tensor& t) {
    const float* p = f32_data(t);
    return vk::upload_floats(ctx, std::vector<float>(p, p + t.ne[0]));
}

uint64_t fbytes(int64_t rows, int64_t cols) { return uint64_t(rows) * uint64_t(cols) * 4; }

int64_t next_serial() {
    static std::atomic<int64_t> n{0};
    return n++;
}

// Whether `parts` may be one stacked matrix (vk::upload_stacked): one type, one row length, and
// one buffer may hold them all (maxStorageBufferRange: 128 MiB on lavapipe).
bool stackable(const vk::Context& c, std::initializer_list<const Tensor*> parts) {
    const Tensor& first = **parts.begin();
    uint64_t bytes = 0;
    for (const Tensor* t : parts) {
        if (t->dtype != first.dtype || t->ne[0] != first.ne[0]) return false;
        bytes += t->bytes();
    }
    return bytes <= c.info().max_storage_buffer_range;
}

}  // namespace

std::shared_ptr<LlamaVulkanWeights> upload_llama_weights(std::shared_ptr<vk::Context> ctx, const LlamaModel& model) {
    auto w = std::make_shared<LlamaVulkanWeights>();
    w->ctx = std::move(ctx);
    vk::Context& c = *w->ctx;
    const LlamaConfig& cfg = model.config;
    w->config = cfg;
    auto matrix = [&](const Tensor& t) {
        vk::DeviceMatrix m = vk::upload_matrix(c, t);
        w->bytes += m.buffer.size();
        return m;
    };
    for (const LlamaLayerWeights& L : model.weights.layers) {
        LlamaVulkanWeights::Layer d;
        d.attn_norm = upload_norm(c, L.attn_norm);
        d.ffn_norm = upload_norm(c, L.ffn_norm);
        d.qkv_stacked = c.fuse_qkv() && stackable(c, {&L.wq, &L.wk, &L.wv});
        if (d.qkv_stacked) {
            d.wq = vk::upload_stacked(c, {&L.wq, &L.wk, &L.wv});
            w->bytes += d.wq.buffer.size();
        } else {
            d.wq = matrix(L.wq);
            d.wk = matrix(L.wk);
            d.wv = matrix(L.wv);
        }
        d.wo = matrix(L.wo);
        d.stacked = stackable(c, {&L.w_gate, &L.w_up});
        if (d.stacked) {
            d.w_gate_up = vk::upload_stacked(c, {&L.w_gate, &L.w_up});
            w->bytes += d.w_gate_up.buffer.size();
        } else {
            d.w_gate_up = matrix(L.w_gate);
            d.w_up = matrix(L.w_up);
        }
        d.w_down = matrix(L.w_down);
        w->bytes += 2 * fbytes(1, cfg.n_embd);
        w->layers.push_back(std::move(d));
    }
    w->output_norm = upload_norm(c, model.weights.output_norm);
    w->output = matrix(model.weights.output);
    if (c.greedy_pick() && !cfg.tied_output && vk::get_rows_supports(model.weights.token_embd.dtype))
        w->token_embd = matrix(model.weights.token_embd);
    w->rope = vk::make_rope_table(c, cfg.head_dim, cfg.rope_theta, cfg.rope_style);
    return w;
}

LlamaVulkanRun::LlamaVulkanRun(std::shared_ptr<const LlamaVulkanWeights> w, int n_ctx, int n_batch)
    : w_(std::move(w)), ctx_(*w_->ctx), n_ctx_(n_ctx), n_batch_(n_batch), rec_{vk::Recorder(ctx_), vk::Recorder(ctx_)},
      serial_(next_serial()) {
    const LlamaConfig& c = w_->config;
    const int64_t B = n_batch_;
    for (int l = 0; l < c.n_layers; ++l) {
        k_cache_.emplace_back(ctx_, fbytes(n_ctx_, c.kv_dim()));
        v_cache_.emplace_back(ctx_, fbytes(n_ctx_, c.kv_dim()));
    }
    x_ = vk::Buffer(ctx_, fbytes(B, c.n_embd));
    xb_ = vk::Buffer(ctx_, fbytes(B, c.n_embd));
    q_ = vk::Buffer(ctx_, fbytes(B, c.q_dim()));
    const bool any_stacked = std::any_of(w_->layers.begin(), w_->layers.end(),
                                         [](const LlamaVulkanWeights::Layer& L) { return L.qkv_stacked; });
    if (any_stacked) qkv_ = vk::Buffer(ctx_, fbytes(B, c.q_dim() + 2 * c.kv_dim()));
    att_ = vk::Buffer(ctx_, fbytes(B, c.q_dim()));
    att_partials_ = vk::attention_partials(ctx_, 1, c.n_heads, c.head_dim);
    ff_ = vk::Buffer(ctx_, fbytes(B, c.n_ff));
    up_ = vk::Buffer(ctx_, fbytes(B, c.n_ff));
    pos_ = vk::Buffer(ctx_, fbytes(B, 1));
    last_ = vk::Buffer(ctx_, fbytes(1, c.n_embd));
    logits_ = vk::Buffer(ctx_, fbytes(1, c.n_vocab));
    logits_rows_ = 1;
    in_host_ = vk::Buffer(ctx_, fbytes(B, c.n_embd + 1), vk::MemoryKind::Staging);
    logits_host_ = vk::Buffer(ctx_, fbytes(1, c.n_vocab), vk::MemoryKind::Staging);
    if (greedy_on_device()) grow_ids(1);
}

void LlamaVulkanRun::grow_ids(int B) {
    if (ids_.size() >= fbytes(B, 2)) return;
    ids_ = vk::Buffer(ctx_, fbytes(B, 2));
    ids_host_ = vk::Buffer(ctx_, fbytes(B, 3), vk::MemoryKind::Staging);
}

const vk::Buffer& LlamaVulkanRun::norm_input(vk::Recorder& rec, const vk::Buffer& x, const vk::Buffer& weight, int rows,
                                             bool fuse) {
    if (fuse) return x;
    vk::rms_norm(rec, x, &weight, xb_, rows, w_->config.n_embd, w_->config.rms_eps);
    return xb_;
}

vk::MatmulEpilogue LlamaVulkanRun::normed(const vk::Buffer& weight, bool fuse, vk::MatmulEpilogue e) const {
    if (fuse) {
        e.norm = &weight;
        e.norm_eps = w_->config.rms_eps;
    }
    return e;
}

// x += wo · attention(rope(wq·n), rope(wk·n), wv·n), n = rms_norm(x). The K and V rows go to
// cache rows pos0 .. pos0+T-1 (the cache layout is [pos][KV·hd], which vk::attention reads
// directly), K rotated; the output and down products add themselves to x, and gate, up and
// SwiGLU are one matmul (the matmul epilogue; two matmuls and swiglu where gate and up differ
// in type). Q, K and V: with the three stacked (qkv_stacked), one matmul into qkv_, then for a
// batch of fewer than 16 rows (decode) the attention takes its rows from qkv_, rotating them
// itself and writing K and V to the cache (vk::attention_qkv; Context::fuse_rope): 7
// dispatches a layer; for a prompt one rope_qkv dispatch rotates Q into q_ and K into the
// cache and copies V there first: 8. Otherwise the K and V products are stored straight into
// the cache and Q and K rotated in one rope dispatch: 10. Batches of at most 8 rows, which the
// matvec kernel takes, fuse each norm into the matvecs that read it where the device is a GPU
// (vk::Context::fuse_norms): 5 a layer (6 with rope_qkv, 8 apart).
void LlamaVulkanRun::record_layer(vk::Recorder& rec, const LlamaVulkanWeights::Layer& L, int layer, int T, int pos0,
                                  const SeqRows* seqs) {
    const LlamaConfig& c = w_->config;
    const int64_t row0 = int64_t(pos0) * c.kv_dim();
    vk::Buffer& kc = k_cache_[size_t(layer)];
    vk::Buffer& vc = v_cache_[size_t(layer)];
    vk::MatmulEpilogue to_cache;
    to_cache.y_offset = row0;
    vk::MatmulEpilogue residual;
    residual.accumulate = true;
    const bool fuse = fuse_norms(T);
    const vk::Buffer& n = norm_input(rec, x_, L.attn_norm, T, fuse);
    // Stacked, a decode step rotates Q and K inside its attention (vk::attention_qkv); the
    // sequences of a batch rotate their own (record_seq_attention: decode_batch and
    // prefill_batch take only stacked layers).
    const bool rope_in_attention = L.qkv_stacked && ctx_.fuse_rope() && vk::attention_qkv_fits(T, c.head_dim);
    if (L.qkv_stacked) {
        vk::matmul(rec, L.wq, n, qkv_, T, normed(L.attn_norm, fuse));
        if (!seqs && !rope_in_attention)
            vk::rope_qkv(rec, qkv_, vk::QkvSplit{&q_, &kc, &vc, c.n_heads, c.n_kv_heads, row0}, pos_, w_->rope, T);
    } else {
        vk::matmul(rec, L.wq, n, q_, T, normed(L.attn_norm, fuse));
        vk::matmul(rec, L.wk, n, kc, T, normed(L.attn_norm, fuse, to_cache));
        vk::matmul(rec, L.wv, n, vc, T, normed(L.attn_norm, fuse, to_cache));
        const vk::RopeTarget k_rows{&kc, c.n_kv_heads, row0};
        vk::rope(rec, vk::RopeTarget{&q_, c.n_heads, 0}, &k_rows, pos_, w_->rope, T);
    }
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    if (seqs)
        record_seq_attention(rec, layer, *seqs);
    else if (rope_in_attention)
        vk::attention_qkv(rec, qkv_, pos_, w_->rope, kc, vc, att_, T, pos0, c.n_heads, c.n_kv_heads, scale,
                          &att_partials_);
    else
        vk::attention(rec, q_, kc, vc, att_, T, int64_t(pos0) + T, c.n_heads, c.n_kv_heads, c.head_dim, scale,
                      /*causal=*/true, pos0, vk::AttentionPath::Auto, &att_partials_);
    vk::matmul(rec, L.wo, att_, x_, T, residual);
    // x += w_down · (silu(w_gate·n) ⊙ w_up·n), n = rms_norm(x)
    const vk::Buffer& n2 = norm_input(rec, x_, L.ffn_norm, T, fuse);
    if (L.stacked) {
        vk::MatmulEpilogue glu;
        glu.glu = true;
        vk::matmul(rec, L.w_gate_up, n2, ff_, T, normed(L.ffn_norm, fuse, glu));
    } else {
        vk::matmul(rec, L.w_gate_up, n2, ff_, T, normed(L.ffn_norm, fuse));
        vk::matmul(rec, L.w_up, n2, up_, T, normed(L.ffn_norm, fuse));
        vk::swiglu(rec, ff_, up_, ff_, int64_t(T) * c.n_ff);
    }
    vk::matmul(rec, L.w_down, ff_, x_, T, residual);
}

LlamaVulkanRun::SeqRows LlamaVulkanRun::one_row_each(LlamaVulkanRun* const* seqs, int B, const int32_t* pos) {
    SeqRows s{seqs, B, pos, std::vector<int32_t>(size_t(B) + 1)};
    for (int b = 0; b <= B; ++b) s.first[size_t(b)] = b;
    return s;
}

// Each sequence's rows attend over its own caches, at its positions: as record_layer does for
// those rows alone (with this Context's fuse_rope, which batchable() asks for). Rows as
// few as attention_qkv takes are rotated inside the attention; the others by one rope_qkv
// each, all of them first, then their attention (rows of q_ and att_ apart, caches their own:
// one barrier between the ropes and the attentions, none among them).
void LlamaVulkanRun::record_seq_attention(vk::Recorder& rec, int layer, const SeqRows& s) {
    const LlamaConfig& c = w_->config;
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    auto rows = [&](int b) { return s.first[size_t(b) + 1] - s.first[size_t(b)]; };
    for (int b = 0; b < s.B; ++b)
        if (!vk::attention_qkv_fits(rows(b), c.head_dim)) {
            LlamaVulkanRun& q = *s.seqs[b];
            vk::rope_qkv(rec, qkv_,
                         vk::QkvSplit{&q_, &q.k_cache_[size_t(layer)], &q.v_cache_[size_t(layer)], c.n_heads,
                                      c.n_kv_heads, int64_t(s.pos[b]) * c.kv_dim(), s.first[size_t(b)]},
                         pos_, w_->rope, rows(b));
        }
    for (int b = 0; b < s.B; ++b) {
        LlamaVulkanRun& q = *s.seqs[b];
        vk::Buffer& kc = q.k_cache_[size_t(layer)];
        vk::Buffer& vc = q.v_cache_[size_t(layer)];
        const int n = rows(b), pos = s.pos[b], row0 = s.first[size_t(b)];
        if (vk::attention_qkv_fits(n, c.head_dim))
            vk::attention_qkv(rec, qkv_, pos_, w_->rope, kc, vc, att_, n, pos, c.n_heads, c.n_kv_heads, scale,
                              &q.att_partials_, row0);
        else
            vk::attention(rec, q_, kc, vc, att_, n, int64_t(pos) + n, c.n_heads, c.n_kv_heads, c.head_dim, scale,
                          /*causal=*/true, pos, vk::AttentionPath::Auto, &q.att_partials_, 1, row0);
    }
}

int64_t LlamaVulkanRun::record_batch(vk::Recorder& rec, int T, int pos0, LogitRows rows) {
    const LlamaConfig& c = w_->config;
    const int64_t D = c.n_embd, V = c.n_vocab;
    rec.begin();
    record_inputs(rec, T);
    for (int l = 0; l < c.n_layers; ++l) record_layer(rec, w_->layers[size_t(l)], l, T, pos0);
    int64_t n_out = 0;
    if (rows == LogitRows::All) {
        vk::rms_norm(rec, x_, &w_->output_norm, xb_, T, D, c.rms_eps);
        if (T <= logits_rows_) {
            vk::matmul(rec, w_->output, xb_, logits_, T);
            n_out = T;
        }
    } else if (rows == LogitRows::Last) {
        record_last_logits(rec, T);
        vk::copy(rec, logits_, 0, logits_host_, 0, V);
        n_out = 1;
    }
    rec.end();
    return n_out;
}

// Uploads (mapped: plain memcpys, no submission) a batch's input rows x [pos.size()][D] and
// positions into in_host_, where record_inputs() takes them from.
void LlamaVulkanRun::stage_inputs(const float* x, const std::vector<int32_t>& pos) {
    vk::upload(ctx_, in_host_, x, fbytes(int64_t(pos.size()), w_->config.n_embd));
    vk::upload(ctx_, in_host_, pos.data(), fbytes(int64_t(pos.size()), 1), uint64_t(positions_at()) * 4);
}

void LlamaVulkanRun::record_inputs(vk::Recorder& rec, int T) {
    vk::copy(rec, in_host_, 0, x_, 0, int64_t(T) * w_->config.n_embd);
    vk::copy(rec, in_host_, positions_at(), pos_, 0, T);
}

void LlamaVulkanRun::record_logits(vk::Recorder& rec, const vk::Buffer& x, int rows) {
    const bool fuse = fuse_norms(rows);
    const vk::Buffer& n = norm_input(rec, x, w_->output_norm, rows, fuse);
    vk::matmul(rec, w_->output, n, logits_, rows, normed(w_->output_norm, fuse));
}

void LlamaVulkanRun::record_last_logits(vk::Recorder& rec, int T) {
    const int64_t D = w_->config.n_embd;
    if (T > 1) vk::copy(rec, x_, int64_t(T - 1) * D, last_, 0, D);  // a decode step's row is x_ itself
    record_logits(rec, T > 1 ? last_ : x_, 1);
}

// Step i of greedy decoding for B sequences: row b feeds the token in ids_ [(i % 2)·B + b] at
// position pos[b] + i (pos_ [b], which the step before's pick advanced), and its pick goes to
// ids_ [((i + 1) % 2)·B + b], and pos_ [b] one on, and to ids_host_ [B + ((i + 1) % 2)·B + b].
// Step 0 takes the first tokens (ids_host_ [0, B)) and the positions from the host. seqs null:
// this run alone (B = 1, pos[0] + i its position); else the sequences of decode_batch's step.
void LlamaVulkanRun::record_greedy_step(vk::Recorder& rec, int i, int B, LlamaVulkanRun* const* seqs,
                                        const int32_t* pos) {
    const LlamaConfig& c = w_->config;
    const int in = i % 2, picked = (i + 1) % 2;
    rec.begin();
    if (i == 0) {
        vk::copy(rec, ids_host_, 0, ids_, 0, B);
        vk::copy(rec, in_host_, positions_at(), pos_, 0, B);
    }
    vk::get_rows(rec, *w_->embedding_table(), ids_, x_, B, int64_t(in) * B);
    std::vector<int32_t> at(static_cast<size_t>(B));
    for (int b = 0; b < B; ++b) at[size_t(b)] = pos[b] + i;
    const SeqRows rows = one_row_each(seqs, B, at.data());
    for (int l = 0; l < c.n_layers; ++l)
        record_layer(rec, w_->layers[size_t(l)], l, B, seqs ? 0 : at[0], seqs ? &rows : nullptr);
    record_logits(rec, x_, B);
    vk::greedy_pick(rec, logits_, c.n_vocab, ids_, int64_t(picked) * B, &pos_, B);
    vk::copy(rec, ids_, int64_t(picked) * B, ids_host_, B + int64_t(picked) * B, B);
    rec.end();
}

// The loop of decode_greedy and decode_greedy_batch: step i + 1 goes in behind step i before the
// host looks at step i's picks; without record_ahead (to measure what that saves) only after
// them. pick(i) reads step i's picks and says whether to go on.
int LlamaVulkanRun::run_greedy(int B, LlamaVulkanRun* const* seqs, const int32_t* pos, int n,
                               const std::function<bool(int)>& pick, int* ran) {
    const bool ahead = ctx_.options().record_ahead;
    int started = 0;  // steps submitted
    auto start = [&](int i) {
        record_greedy_step(rec_[i % 2], i, B, seqs, pos);
        rec_[i % 2].submit();
        started = i + 1;
    };
    int made = 0;
    try {
        start(0);
        for (int i = 0; i < n; ++i) {
            const bool next = i + 1 < n;
            if (next && ahead) start(i + 1);
            rec_[i % 2].wait();
            dispatches_ = rec_[i % 2].dispatch_count();
            made = i + 1;
            if (!pick(i)) break;
            if (next && !ahead) start(i + 1);
        }
    } catch (...) {
        try {
            if (started > made) rec_[(started - 1) % 2].wait();  // nothing left running on our buffers
        } catch (...) {  // the first error is the one to report
        }
        throw;
    }
    if (started > made) rec_[(started - 1) % 2].wait();  // the step in flight: see `ran`
    if (ran) *ran = started;
    return made;
}

int LlamaVulkanRun::decode_greedy(int32_t first, int pos0, int n, int32_t* out,
                                  const std::function<bool(int32_t)>& keep) {
    if (!greedy_on_device()) throw std::logic_error("LlamaVulkanRun::decode_greedy: not available on this model");
    if (n < 0 || pos0 < 0 || pos0 > n_past_ || int64_t(pos0) + n > n_ctx_)
        throw std::invalid_argument("LlamaVulkanRun::decode_greedy: steps outside the context");
    drop_ahead();  // a decode step recorded ahead is not what runs now
    n_past_ = pos0;
    if (n == 0) return 0;
    vk::upload(ctx_, ids_host_, &first, 4);
    vk::upload(ctx_, in_host_, &pos0, 4, uint64_t(positions_at()) * 4);
    const int made = run_greedy(1, nullptr, &pos0, n, [&](int i) {
        vk::download(ctx_, ids_host_, &out[i], 4, uint64_t(1 + (i + 1) % 2) * 4);
        return keep(out[i]);
    });
    n_past_ = pos0 + made;
    return made;
}

int LlamaVulkanRun::decode_greedy_batch(LlamaVulkanRun* const* seqs, int B, const int32_t* first, int n,
                                        const std::function<bool(int, int32_t, int)>& keep) {
    if (!greedy_on_device() || !batches_sequences())
        throw std::logic_error("LlamaVulkanRun::decode_greedy_batch: not available on this model");
    if (B <= 0) return 0;
    check_batch(seqs, B, "decode_greedy_batch");
    std::vector<int32_t> pos(static_cast<size_t>(B));
    for (int b = 0; b < B; ++b) {
        pos[size_t(b)] = seqs[b]->n_past_;
        if (n < 0 || int64_t(pos[size_t(b)]) + n > seqs[b]->n_ctx_)
            throw std::invalid_argument("LlamaVulkanRun::decode_greedy_batch: steps outside a sequence's context");
    }
    drop_ahead(seqs, B);
    if (n == 0) return 0;
    grow_logits(B);
    grow_ids(B);
    vk::upload(ctx_, ids_host_, first, fbytes(B, 1));
    vk::upload(ctx_, in_host_, pos.data(), fbytes(B, 1), uint64_t(positions_at()) * 4);
    std::vector<int32_t> picks(static_cast<size_t>(B));
    std::vector<char> going(static_cast<size_t>(B));
    auto read_picks = [&](int i) {
        vk::download(ctx_, ids_host_, picks.data(), fbytes(B, 1), uint64_t(B + ((i + 1) % 2) * B) * 4);
    };
    int ran = 0;
    const int made = run_greedy(
        B, seqs, pos.data(), n,
        [&](int i) {
            read_picks(i);
            bool all = true;
            for (int b = 0; b < B; ++b) {
                going[size_t(b)] = keep(b, picks[size_t(b)], pos[size_t(b)] + i + 1);
                all = all && going[size_t(b)];
            }
            return all;
        },
        &ran);
    for (int b = 0; b < B; ++b) seqs[b]->n_past_ += made;
    if (ran > made) {
        // The step in flight when a sequence ended ran for all of them: the sequences that go
        // on take its picks (one step further on); the ended ones' part of it is forgotten.
        read_picks(made);
        for (int b = 0; b < B; ++b)
            if (going[size_t(b)]) {
                ++seqs[b]->n_past_;
                keep(b, picks[size_t(b)], pos[size_t(b)] + made + 1);
            }
    }
    return made;
}

// logits_ and last_ for `rows` rows, or as many as one buffer can hold; grown, never shrunk.
void LlamaVulkanRun::grow_logits(int64_t rows) {
    const LlamaConfig& c = w_->config;
    const int64_t want = std::max<int64_t>(1, std::min<int64_t>(rows, logits_fit()));
    if (want <= logits_rows_) return;
    logits_ = vk::Buffer(ctx_, fbytes(want, c.n_vocab));
    last_ = vk::Buffer(ctx_, fbytes(want, c.n_embd));
    logits_rows_ = want;
}

void LlamaVulkanRun::grow_logits_host(int64_t rows) {
    const uint64_t bytes = fbytes(rows, w_->config.n_vocab);
    if (logits_host_.size() < bytes) logits_host_ = vk::Buffer(ctx_, bytes, vk::MemoryKind::Staging);
}

void LlamaVulkanRun::check_batch(LlamaVulkanRun* const* seqs, int B, const char* what) const {
    const std::string at = std::string("LlamaVulkanRun::") + what + ": ";
    if (B > logits_max_rows()) throw std::invalid_argument(at + "more sequences than the batch holds");
    for (int b = 0; b < B; ++b) {
        if (seqs[b]->w_ != w_) throw std::invalid_argument(at + "a sequence of other weights");
        if (seqs[b]->n_past_ >= seqs[b]->n_ctx_) throw std::invalid_argument(at + "a sequence's context is full");
        for (int o = 0; o < b; ++o)
            if (seqs[o] == seqs[b]) throw std::invalid_argument(at + "a sequence twice");
    }
}

bool LlamaVulkanRun::batchable() const {
    return ctx_.fuse_rope() && vk::attention_qkv_fits(1, w_->config.head_dim) &&
           std::all_of(w_->layers.begin(), w_->layers.end(),
                       [](const LlamaVulkanWeights::Layer& L) { return L.qkv_stacked; });
}

void LlamaVulkanRun::decode_batch(LlamaVulkanRun* const* seqs, int B, const float* x, float* logits_out) {
    const LlamaConfig& c = w_->config;
    const int64_t V = c.n_vocab;
    if (B <= 0) return;
    if (!batches_sequences()) throw std::logic_error("LlamaVulkanRun::decode_batch: not available on this model");
    check_batch(seqs, B, "decode_batch");
    std::vector<int32_t> pos(static_cast<size_t>(B));
    std::vector<int64_t> key;  // what ahead_batch_ holds when rec_[ahead_] is this step
    for (int b = 0; b < B; ++b) {
        pos[size_t(b)] = seqs[b]->n_past_;
        key.push_back(seqs[b]->serial_);
        key.push_back(pos[size_t(b)]);
    }
    const bool ahead = !ahead_batch_.empty() && ahead_batch_ == key;
    drop_ahead(seqs, B);
    if (!ahead) {
        // (Grown only here: the buffers a step recorded ahead refers to stay as they are.)
        grow_logits(B);
        grow_logits_host(B);
    }
    stage_inputs(x, pos);

    vk::Recorder& rec = rec_[ahead_];
    if (!ahead) record_batch_step(rec, seqs, B, pos.data());
    dispatches_ = rec.dispatch_count();
    rec.submit();
    bool room = true;  // every sequence has a position left after this step's
    for (int b = 0; b < B; ++b) room = room && pos[size_t(b)] + 2 <= seqs[b]->n_ctx_;
    if (ctx_.options().record_ahead && room) {
        // The same sequences' next step, recorded while the device runs this one.
        ahead_ = 1 - ahead_;
        for (int b = 0; b < B; ++b) ++pos[size_t(b)];
        record_batch_step(rec_[ahead_], seqs, B, pos.data());
        for (size_t i = 1; i < key.size(); i += 2) ++key[i];
        ahead_batch_ = std::move(key);
    }
    rec.wait();
    for (int b = 0; b < B; ++b) ++seqs[b]->n_past_;
    vk::download(ctx_, logits_host_, logits_out, fbytes(B, V));
}

void LlamaVulkanRun::record_batch_step(vk::Recorder& rec, LlamaVulkanRun* const* seqs, int B, const int32_t* pos) {
    const LlamaConfig& c = w_->config;
    rec.begin();
    record_inputs(rec, B);
    const SeqRows rows = one_row_each(seqs, B, pos);
    for (int l = 0; l < c.n_layers; ++l) record_layer(rec, w_->layers[size_t(l)], l, B, 0, &rows);
    record_logits(rec, x_, B);
    vk::copy(rec, logits_, 0, logits_host_, 0, int64_t(B) * c.n_vocab);
    rec.end();
}

void LlamaVulkanRun::prefill_batch(LlamaVulkanRun* const* seqs, int B, const float* const* x, const int* n_tokens,
                                   float* logits_out) {
    const LlamaConfig& c = w_->config;
    const int64_t D = c.n_embd, V = c.n_vocab;
    if (B <= 0) return;
    if (!prefills_together()) throw std::logic_error("LlamaVulkanRun::prefill_batch: not available on this model");
    check_batch(seqs, B, "prefill_batch");
    SeqRows rows{seqs, B, nullptr, std::vector<int32_t>(size_t(B) + 1, 0)};
    std::vector<int32_t> pos0(static_cast<size_t>(B)), pos;  // each sequence's first position; every row's
    for (int b = 0; b < B; ++b) {
        const int n = n_tokens[b];
        pos0[size_t(b)] = seqs[b]->n_past_;
        if (n <= 0 || int64_t(pos0[size_t(b)]) + n > seqs[b]->n_ctx_)
            throw std::invalid_argument(
                "LlamaVulkanRun::prefill_batch: a prompt empty or outside its sequence's context");
        rows.first[size_t(b) + 1] = rows.first[size_t(b)] + n;
        if (rows.first[size_t(b) + 1] > n_batch_)
            throw std::invalid_argument("LlamaVulkanRun::prefill_batch: more rows than the batch holds");
        for (int i = 0; i < n; ++i) pos.push_back(pos0[size_t(b)] + i);
    }
    rows.pos = pos0.data();
    const int R = rows.first[size_t(B)];
    drop_ahead(seqs, B);
    grow_logits(B);
    grow_logits_host(B);
    for (int b = 0; b < B; ++b)
        vk::upload(ctx_, in_host_, x[b], fbytes(n_tokens[b], D), fbytes(rows.first[size_t(b)], D));
    vk::upload(ctx_, in_host_, pos.data(), fbytes(R, 1), uint64_t(positions_at()) * 4);

    vk::Recorder& rec = rec_[ahead_];
    rec.begin();
    record_inputs(rec, R);
    for (int l = 0; l < c.n_layers; ++l) record_layer(rec, w_->layers[size_t(l)], l, R, 0, &rows);
    for (int b = 0; b < B; ++b)  // each prompt's last row
        vk::copy(rec, x_, int64_t(rows.first[size_t(b) + 1] - 1) * D, last_, int64_t(b) * D, D);
    record_logits(rec, last_, B);
    vk::copy(rec, logits_, 0, logits_host_, 0, int64_t(B) * V);
    rec.end();
    dispatches_ = rec.dispatch_count();
    rec.submit();
    rec.wait();
    for (int b = 0; b < B; ++b) seqs[b]->n_past_ = pos0[size_t(b)] + n_tokens[b];
    vk::download(ctx_, logits_host_, logits_out, fbytes(B, V));
}

void LlamaVulkanRun::run_batch(const float* x, int T, int pos0, float* logits_out, LogitRows rows) {
    const LlamaConfig& c = w_->config;
    if (T <= 0) return;
    if (T > n_batch_ || pos0 < 0 || pos0 > n_past_ || int64_t(pos0) + T > n_ctx_)
        throw std::invalid_argument("LlamaVulkanRun::run_batch: batch outside the context");
    const int64_t D = c.n_embd, V = c.n_vocab;
    const bool step = T == 1 && rows == LogitRows::Last;  // what a stream recorded ahead holds
    const bool ahead = step && ahead_pos_ == pos0;
    drop_ahead();  // used now, or dropped: nothing below may leave it stale
    if (rows == LogitRows::All) grow_logits(n_batch_);
    std::vector<int32_t> pos(static_cast<size_t>(T));
    for (int i = 0; i < T; ++i) pos[size_t(i)] = pos0 + i;
    stage_inputs(x, pos);

    vk::Recorder& rec = rec_[ahead_];
    const int64_t n_out = ahead ? 1 : record_batch(rec, T, pos0, rows);
    dispatches_ = rec.dispatch_count();
    rec.submit();
    if (step && ctx_.options().record_ahead && pos0 + 2 <= n_ctx_) {
        // The next decode step, recorded while the device runs this one.
        ahead_ = 1 - ahead_;
        record_batch(rec_[ahead_], 1, pos0 + 1, LogitRows::Last);
        ahead_pos_ = pos0 + 1;
    }
    rec.wait();
    n_past_ = pos0 + T;
    if (rows == LogitRows::Last) {
        vk::download(ctx_, logits_host_, logits_out, fbytes(1, V));  // mapped: a memcpy
    } else if (n_out > 0) {
        vk::download(ctx_, logits_, logits_out, fbytes(n_out, V));
    } else if (rows == LogitRows::All) {
        // More rows of logits than one buffer holds: the normed rows go through the output
        // matrix in chunks, one submission each.
        for (int64_t r0 = 0; r0 < T; r0 += logits_rows_) {
            const int64_t n = std::min<int64_t>(logits_rows_, T - r0);
            rec.begin();
            vk::copy(rec, xb_, r0 * D, last_, 0, n * D);
            vk::matmul(rec, w_->output, last_, logits_, n);
            rec.submit_and_wait();
            vk::download(ctx_, logits_, logits_out + r0 * V, fbytes(n, V));
        }
    }
}

}  // namespace glimpse
