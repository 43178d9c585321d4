#include "text/llama_forward.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "text/generation.h"
#include "text/llama_forward_vk.h"
#include "text/sampler.h"

namespace glimpse {

namespace {

// The context the KV cache is made for; checked before anything is allocated.
int default_context(const LlamaConfig& c, int n_ctx) {
    if (n_ctx > (1 << 24))
        throw Error(ErrorKind::Usage, "context of " + std::to_string(n_ctx) + " tokens is too large (at most 16777216)");
    if (n_ctx > 0) return n_ctx;
    return std::min(c.n_ctx_train, 4096);
}

size_t sz(int64_t a, int64_t b) { return size_t(a) * size_t(b); }

}  // namespace

LlamaActivations::LlamaActivations(const LlamaConfig& c, int64_t rows)
    : x(sz(rows, c.n_embd)),
      xb(sz(rows, c.n_embd)),
      q(sz(rows, c.q_dim())),
      k(sz(rows, c.kv_dim())),
      v(sz(rows, c.kv_dim())),
      att(sz(rows, c.q_dim())),
      proj(sz(rows, c.n_embd)),
      gate(sz(rows, c.n_ff)),
      up(sz(rows, c.n_ff)),
      pos(size_t(rows)) {}

LlamaContext::LlamaContext(const LlamaModel& model, ThreadPool& pool, int n_ctx, int n_batch)
    : model_(model),
      pool_(pool),
      n_ctx_(default_context(model.config, n_ctx)),
      n_batch_(std::clamp(n_batch, 1, n_ctx_)),  // no batch needs more rows than the context
      kv_(model.config.n_layers, n_ctx_, model.config.n_kv_heads, model.config.head_dim),
      act_(model.config, n_batch_) {
    if (model.vulkan) vk_ = std::make_shared<LlamaVulkanRun>(model.vulkan, n_ctx_, n_batch_);
}

int LlamaContext::n_past() const { return vk_ ? vk_->n_past() : int(kv_.used()); }

void LlamaContext::reset() {
    kv_.clear();
    if (vk_) vk_->reset();
}

void LlamaContext::check_positions(int n_tokens, int pos0) const {
    if (n_tokens < 0) throw Error(ErrorKind::Usage, "forward: negative token count");
    if (pos0 < 0 || pos0 > n_past())
        throw Error(ErrorKind::Usage, "forward: position " + std::to_string(pos0) + " is past the " +
                                          std::to_string(n_past()) + " cached positions");
    if (int64_t(pos0) + n_tokens > n_ctx_)
        throw Error(ErrorKind::Usage, std::to_string(int64_t(pos0) + n_tokens) + " tokens (" + std::to_string(pos0) +
                                          " cached + " + std::to_string(n_tokens) + " new) do not fit in the context of " +
                                          std::to_string(n_ctx_) + " tokens (raise --ctx)");
}

void LlamaContext::check_tokens(const int32_t* tokens, int n_tokens) const {
    const int64_t V = config().n_vocab;
    for (int i = 0; i < n_tokens; ++i)
        if (tokens[i] < 0 || tokens[i] >= V)
            throw model_error(model_.path, "token id " + std::to_string(tokens[i]) + " is outside the vocabulary of " +
                                               std::to_string(V) + " tokens");
}

void LlamaContext::forward(const int32_t* tokens, int n_tokens, int pos0, float* logits_out, LogitRows rows) {
    check_positions(n_tokens, pos0);
    check_tokens(tokens, n_tokens);
    // Token path = get_rows, then exactly the embeddings path.
    run(n_tokens, pos0, logits_out, rows, n_tokens > 1, [&](int done, int T) {
        ops::get_rows(model_.weights.token_embd, tokens + done, T, act_.x.data());
    });
}

void LlamaContext::forward_embeddings(const float* embd, int n_tokens, int pos0, float* logits_out, LogitRows rows) {
    check_positions(n_tokens, pos0);
    const int64_t D = config().n_embd;
    run(n_tokens, pos0, logits_out, rows, n_tokens > 1, [&](int done, int T) {
        std::memcpy(act_.x.data(), embd + sz(done, D), sz(T, D) * sizeof(float));
    });
}

bool LlamaContext::greedy_on_device() const { return vk_ && vk_->greedy_on_device(); }

int LlamaContext::decode_greedy(int32_t first, int n, int32_t* out, const std::function<bool(int32_t)>& keep) {
    const int pos0 = n_past();
    check_positions(n, pos0);
    check_tokens(&first, 1);
    if (!greedy_on_device()) {
        std::vector<float> logits(size_t(config().n_vocab));
        int32_t token = first;
        for (int i = 0; i < n; ++i) {
            forward(&token, 1, n_past(), logits.data());
            out[i] = token = argmax(logits.data(), config().n_vocab);
            if (!keep(token)) return i + 1;
        }
        return n;
    }
    if (capture_)
        throw Error(ErrorKind::Usage, "attention capture (glimpse inspect) runs on the CPU only: use --device cpu");
    const auto t0 = std::chrono::steady_clock::now();
    const int made = vk_->decode_greedy(first, pos0, n, out, keep);
    timings_.decode_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    timings_.decode_tokens += made;
    return made;
}

// Cuts the tokens into batches of at most n_batch_ rows; fill(done, T) puts the input
// embeddings of tokens [done, done + T) into act_.x.
void LlamaContext::run(int n_tokens, int pos0, float* logits_out, LogitRows rows, bool prefill,
                       const std::function<void(int, int)>& fill) {
    const int64_t V = config().n_vocab;
    const auto t0 = std::chrono::steady_clock::now();
    kv_.truncate(pos0);
    if (vk_) {
        if (capture_)
            throw Error(ErrorKind::Usage, "attention capture (glimpse inspect) runs on the CPU only: use --device cpu");
        vk_->truncate(pos0);
    }
    for (int done = 0; done < n_tokens;) {
        const int T = std::min(n_batch_, n_tokens - done);
        fill(done, T);
        float* out = nullptr;
        LogitRows r = LogitRows::None;
        if (rows == LogitRows::All) {
            out = logits_out + sz(done, V);
            r = LogitRows::All;
        } else if (rows == LogitRows::Last && done + T == n_tokens) {
            out = logits_out;
            r = LogitRows::Last;
        }
        if (vk_)
            vk_->run_batch(act_.x.data(), T, pos0 + done, out, r);
        else
            run_batch(T, pos0 + done, out, r);
        done += T;
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    (prefill ? timings_.prefill_ms : timings_.decode_ms) += ms;
    (prefill ? timings_.prefill_tokens : timings_.decode_tokens) += n_tokens;
}

void llama_block(const LlamaModel& model, int layer, LlamaActivations& a, int64_t rows, bool rows_as_decode,
                 ThreadPool& pool, const std::function<void()>& attend) {
    const LlamaConfig& c = model.config;
    const LlamaLayerWeights& L = model.weights.layers[size_t(layer)];
    const int64_t D = c.n_embd;
    auto product = [&](const Tensor& W, const float* x, float* y) {
        if (rows_as_decode) matmul_rows_as_decode(W, x, y, rows, pool);
        else matmul(W, x, y, rows, pool);
    };
    ops::rms_norm(a.x.data(), f32_data(L.attn_norm), a.xb.data(), rows, D, c.rms_eps, pool);
    if (rows_as_decode) {
        for (auto [W, y] : {std::pair{&L.wq, a.q.data()}, {&L.wk, a.k.data()}, {&L.wv, a.v.data()}})
            product(*W, a.xb.data(), y);
    } else {
        matmul_same_x({{&L.wq, a.q.data()}, {&L.wk, a.k.data()}, {&L.wv, a.v.data()}}, a.xb.data(), rows, pool);
    }
    ops::rope(a.q.data(), a.pos.data(), rows, c.n_heads, c.head_dim, c.rope_theta, c.rope_style);
    ops::rope(a.k.data(), a.pos.data(), rows, c.n_kv_heads, c.head_dim, c.rope_theta, c.rope_style);
    attend();
    product(L.wo, a.att.data(), a.proj.data());
    ops::add(a.x.data(), a.proj.data(), a.x.data(), sz(rows, D));
    ops::rms_norm(a.x.data(), f32_data(L.ffn_norm), a.xb.data(), rows, D, c.rms_eps, pool);
    if (rows_as_decode) {
        product(L.w_gate, a.xb.data(), a.gate.data());
        product(L.w_up, a.xb.data(), a.up.data());
    } else {
        matmul_same_x({{&L.w_gate, a.gate.data()}, {&L.w_up, a.up.data()}}, a.xb.data(), rows, pool);
    }
    ops::swiglu(a.gate.data(), a.up.data(), a.gate.data(), sz(rows, c.n_ff), pool);
    product(L.w_down, a.gate.data(), a.proj.data());
    ops::add(a.x.data(), a.proj.data(), a.x.data(), sz(rows, D));
}

void LlamaContext::run_batch(int T, int pos0, float* logits_out, LogitRows rows) {
    const LlamaConfig& c = config();
    for (int i = 0; i < T; ++i) act_.pos[size_t(i)] = pos0 + i;
    for (int l = 0; l < c.n_layers; ++l) {
        llama_block(model_, l, act_, T, /*rows_as_decode=*/false, pool_, [&] {
            attend(l, act_.q.data(), act_.k.data(), act_.v.data(), act_.att.data(), T, pos0, pool_);
            if (capture_) capture_attention(l, T, pos0);
        });
    }
    if (rows == LogitRows::All) {
        output_logits(act_.x.data(), T, logits_out);
    } else if (rows == LogitRows::Last) {
        output_logits(act_.x.data() + sz(T - 1, c.n_embd), 1, logits_out);
    }
}

void LlamaContext::attend(int layer, const float* q, const float* k, const float* v, float* att, int T, int pos0,
                          ThreadPool& pool) {
    const LlamaConfig& c = config();
    kv_.write(layer, pos0, k, v, T);
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    ops::attention_kt(q, kv_.kt(layer), kv_.kt_stride(), kv_.v(layer), att, T, int64_t(pos0) + T, c.n_heads,
                      c.n_kv_heads, c.head_dim, scale, /*causal=*/true, pos0, pool);
}

// The attention hook for `glimpse inspect` (AttentionCapture), kept out of ops::attention so
// that the fast path stays as it is: the last query row's weights are recomputed here from act_.q
// and the cache, p_j = softmax_j(scale · q_h · k_{j,g}) over every cached position j (the last
// row sees them all). Runs only when a capture is set; costs O(n_heads · n_kv · head_dim).
void LlamaContext::capture_attention(int layer, int T, int pos0) {
    const LlamaConfig& c = config();
    const int n_kv = pos0 + T;
    AttentionCapture& cap = *capture_;
    if (layer == 0) {
        cap.n_layers = c.n_layers;
        cap.n_heads = c.n_heads;
        cap.n_kv = n_kv;
        cap.probs.assign(sz(int64_t(c.n_layers) * c.n_heads, n_kv), 0.0f);
    }
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    const int group = c.n_heads / c.n_kv_heads;
    const float* q_last = act_.q.data() + sz(T - 1, c.q_dim());
    for (int h = 0; h < c.n_heads; ++h) {
        const float* q = q_last + sz(h, c.head_dim);
        const int g = h / group;
        float* p = cap.probs.data() + (sz(layer, c.n_heads) + size_t(h)) * size_t(n_kv);
        for (int j = 0; j < n_kv; ++j) {
            float dot = 0.0f;
            for (int d = 0; d < c.head_dim; ++d) dot += q[d] * kv_.key(layer, j, g, d);
            p[j] = scale * dot;
        }
        ops::softmax_rows(p, 1, n_kv);
    }
}

// logits [n_rows][n_vocab] = rms_norm(x_rows) · outputᵀ. Normed into act_.xb (free by now).
void LlamaContext::output_logits(const float* x_rows, int n_rows, float* logits_out) {
    const LlamaConfig& c = config();
    ops::rms_norm(x_rows, f32_data(model_.weights.output_norm), act_.xb.data(), n_rows, c.n_embd, c.rms_eps, pool_);
    matmul(model_.weights.output, act_.xb.data(), logits_out, n_rows, pool_);
}

// ---- generation -------------------------------------------------------------------------------

GenerateResult generate(LlamaContext& ctx, const std::vector<int32_t>& prompt, Sampler& sampler,
                        const GenerateOptions& opts, const std::function<bool(int32_t)>& on_token) {
    if (prompt.empty()) throw Error(ErrorKind::Usage, "generate: the prompt has no tokens");
    std::vector<float> logits(static_cast<size_t>(ctx.config().n_vocab));
    ctx.forward(prompt.data(), int(prompt.size()), ctx.n_past(), logits.data(), LogitRows::Last);
    for (int32_t id : prompt) sampler.accept(id);
    return continue_generation(ctx, logits, sampler, opts, on_token);
}

}  // namespace glimpse
