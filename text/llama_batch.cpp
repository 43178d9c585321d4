// The batched decode step of text/llama_batch.h: LlamaContext's layer code with B rows that
// belong to B different sequences (text/llama_forward.cpp is the one-sequence original).
#include "text/llama_batch.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"

namespace glimpse {

namespace {

size_t sz(int64_t a, int64_t b) { return size_t(a) * size_t(b); }

}  // namespace

LlamaBatch::LlamaBatch(const LlamaModel& model, ThreadPool& pool, int max_seqs)
    : model_(model), pool_(pool), max_seqs_(std::max(1, max_seqs)), act_(model.config, max_seqs_) {}

void LlamaBatch::check(LlamaContext* const* ctxs, const int32_t* tokens, int n) const {
    const int64_t V = model_.config.n_vocab;
    for (int b = 0; b < n; ++b) {
        const LlamaContext& c = *ctxs[b];
        if (&c.model() != &model_)
            throw Error(ErrorKind::Usage, "batched decode: sequence " + std::to_string(b) + " belongs to another model");
        for (int o = 0; o < b; ++o)
            if (ctxs[o] == ctxs[b])
                throw Error(ErrorKind::Usage, "batched decode: the same context is sequence " + std::to_string(o) +
                                                  " and " + std::to_string(b));
        if (c.n_past() + 1 > c.n_ctx())
            throw Error(ErrorKind::Usage, "batched decode: sequence " + std::to_string(b) + " fills its context of " +
                                              std::to_string(c.n_ctx()) + " tokens (raise --ctx)");
        if (tokens[b] < 0 || tokens[b] >= V)
            throw model_error(model_.path, "token id " + std::to_string(tokens[b]) + " is outside the vocabulary of " +
                                               std::to_string(V) + " tokens");
    }
}

void LlamaBatch::decode(LlamaContext* const* ctxs, const int32_t* tokens, int n, float* logits) {
    check(ctxs, tokens, n);
    const int64_t V = model_.config.n_vocab;
    // Vulkan contexts keep their cache on the device: they step alone.
    std::vector<LlamaContext*> cpu;
    std::vector<int32_t> cpu_tokens;
    std::vector<int> cpu_index;
    for (int b = 0; b < n; ++b) {
        if (ctxs[b]->on_vulkan()) {
            ctxs[b]->forward(&tokens[b], 1, ctxs[b]->n_past(), logits + sz(b, V), LogitRows::Last);
        } else {
            cpu.push_back(ctxs[b]);
            cpu_tokens.push_back(tokens[b]);
            cpu_index.push_back(b);
        }
    }
    std::vector<float> rows;
    for (size_t done = 0; done < cpu.size();) {
        const int B = int(std::min<size_t>(size_t(max_seqs_), cpu.size() - done));
        rows.resize(sz(B, V));
        const auto t0 = std::chrono::steady_clock::now();
        step(cpu.data() + done, cpu_tokens.data() + done, B, rows.data());
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        for (int b = 0; b < B; ++b) {
            std::copy_n(rows.data() + sz(b, V), size_t(V), logits + sz(cpu_index[done + size_t(b)], V));
            LlamaTimings& t = cpu[done + size_t(b)]->timings_;  // each sequence's share of the step
            t.decode_ms += ms / B;
            t.decode_tokens += 1;
        }
        done += size_t(B);
    }
}

// LlamaContext::run_batch with T = 1 per sequence: the same ops in the same order.
void LlamaBatch::step(LlamaContext* const* ctxs, const int32_t* tokens, int B, float* logits) {
    const LlamaConfig& c = model_.config;
    const int64_t D = c.n_embd;
    for (int b = 0; b < B; ++b) {
        act_.pos[size_t(b)] = ctxs[b]->n_past();
        ctxs[b]->kv_.truncate(act_.pos[size_t(b)]);
    }
    ops::get_rows(model_.weights.token_embd, tokens, B, act_.x.data());
    for (int l = 0; l < c.n_layers; ++l) {
        const LlamaLayerWeights& L = model_.weights.layers[size_t(l)];
        // x += wo · attention(rope(wq·n), rope(wk·n), wv·n), n = rms_norm(x)
        ops::rms_norm(act_.x.data(), f32_data(L.attn_norm), act_.xb.data(), B, D, c.rms_eps, pool_);
        matmul_rows_as_decode(L.wq, act_.xb.data(), act_.q.data(), B, pool_);
        matmul_rows_as_decode(L.wk, act_.xb.data(), act_.k.data(), B, pool_);
        matmul_rows_as_decode(L.wv, act_.xb.data(), act_.v.data(), B, pool_);
        ops::rope(act_.q.data(), act_.pos.data(), B, c.n_heads, c.head_dim, c.rope_theta, c.rope_style);
        ops::rope(act_.k.data(), act_.pos.data(), B, c.n_kv_heads, c.head_dim, c.rope_theta, c.rope_style);
        attention(ctxs, l, B);
        matmul_rows_as_decode(L.wo, act_.att.data(), act_.proj.data(), B, pool_);
        ops::add(act_.x.data(), act_.proj.data(), act_.x.data(), sz(B, D));
        // x += w_down · (silu(w_gate·n) ⊙ w_up·n), n = rms_norm(x)
        ops::rms_norm(act_.x.data(), f32_data(L.ffn_norm), act_.xb.data(), B, D, c.rms_eps, pool_);
        matmul_rows_as_decode(L.w_gate, act_.xb.data(), act_.gate.data(), B, pool_);
        matmul_rows_as_decode(L.w_up, act_.xb.data(), act_.up.data(), B, pool_);
        ops::swiglu(act_.gate.data(), act_.up.data(), act_.gate.data(), sz(B, c.n_ff), pool_);
        matmul_rows_as_decode(L.w_down, act_.gate.data(), act_.proj.data(), B, pool_);
        ops::add(act_.x.data(), act_.proj.data(), act_.x.data(), sz(B, D));
    }
    ops::rms_norm(act_.x.data(), f32_data(model_.weights.output_norm), act_.xb.data(), B, D, c.rms_eps, pool_);
    matmul_rows_as_decode(model_.weights.output, act_.xb.data(), logits, B, pool_);
}

// Each sequence writes its K/V row into its own cache and attends over it. With several
// sequences, one pool job hands them out whole (the nested attention call runs inline on the
// thread that took the sequence); a lone sequence shares its heads over the threads, as a
// one-token forward() does. Either way each head is computed by the same kernel.
void LlamaBatch::attention(LlamaContext* const* ctxs, int layer, int B) {
    const LlamaConfig& c = model_.config;
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    auto one = [&](int b) {
        KvCache& kv = ctxs[b]->kv_;
        const int pos = act_.pos[size_t(b)];
        kv.write(layer, pos, act_.k.data() + sz(b, c.kv_dim()), act_.v.data() + sz(b, c.kv_dim()), 1);
        ops::attention_kt(act_.q.data() + sz(b, c.q_dim()), kv.kt(layer), kv.kt_stride(), kv.v(layer),
                          act_.att.data() + sz(b, c.q_dim()), 1, int64_t(pos) + 1, c.n_heads, c.n_kv_heads, c.head_dim,
                          scale, /*causal=*/true, pos, pool_);
    };
    if (B == 1) return one(0);
    pool_.run_chunks(B, [&](int b, int) { one(b); });
}

}  // namespace glimpse
