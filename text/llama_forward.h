// The forward pass of the Llama decoder (MODELS.md §1.5), llama2.c's `forward()` grown to
// batches: a prefill of T tokens and a one-token decode step run through the same code.
//
//   x = embeddings [T][D]                          (token path: get_rows of token_embd)
//   for each layer:
//     q,k,v = rms_norm(x) · {wq,wk,wv}ᵀ            [T][H*hd], [T][KV*hd], [T][KV*hd]
//     rope(q, k) at positions pos0 .. pos0+T-1
//     cache k,v at those positions; attend causally over positions 0 .. pos0+T-1 (GQA)
//     x += attn · woᵀ
//     x += (silu(n·w_gateᵀ) ⊙ (n·w_upᵀ)) · w_downᵀ,  n = rms_norm(x)
//   logits = rms_norm(x) · outputᵀ                  [n_out][n_vocab]
//
// LlamaContext holds the run state (activation scratch + KV cache) for one sequence.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/kv_cache.h"
#include "core/thread_pool.h"
#include "text/llama_model.h"

namespace glimpse {

class Sampler;
class TokenConstraint;
class LlamaVulkanRun;

// Which logits forward() writes.
enum class LogitRows {
    Last,  // [n_vocab]: the last token's row only (prefill before sampling, decode)
    All,   // [n_tokens][n_vocab]: every position (scoring, tests)
    None,  // nothing (feeding context whose predictions are not needed)
};

// Wall time spent in forward(), split the way -v reports it: calls with more than one token
// are prompt processing (prefill), single-token calls are generation (decode).
struct LlamaTimings {
    double prefill_ms = 0;
    int64_t prefill_tokens = 0;
    double decode_ms = 0;
    int64_t decode_tokens = 0;
};

// What `glimpse inspect` reads: where the last position of a forward() call looked. When a
// context has one set (set_attention_capture), every forward() overwrites it with the softmax
// weights that the last query row of each layer and head gave each cached position.
struct AttentionCapture {
    int n_layers = 0, n_heads = 0;
    int n_kv = 0;              // positions attended: 0 .. n_kv-1 (all cached positions)
    std::vector<float> probs;  // [n_layers][n_heads][n_kv]; each [n_kv] row sums to 1

    const float* row(int layer, int head) const { return probs.data() + (size_t(layer) * n_heads + head) * n_kv; }
};

// The activations of one forward pass over `rows` rows (run.c's RunState): LlamaContext's
// for a batch of n_batch tokens, LlamaBatch's for one token of each of its sequences.
struct LlamaActivations {
    std::vector<float> x;        // [rows][D] residual stream
    std::vector<float> xb;       // [rows][D] normed input
    std::vector<float> q;        // [rows][H*hd]
    std::vector<float> k, v;     // [rows][KV*hd]
    std::vector<float> att;      // [rows][H*hd] attention output
    std::vector<float> proj;     // [rows][D]    projection output
    std::vector<float> gate, up; // [rows][n_ff]
    std::vector<int32_t> pos;    // [rows]

    LlamaActivations(const LlamaConfig& c, int64_t rows);
};

// One decoder block over the first `rows` rows of `a`, RoPE at a.pos (the layer loop of
// LlamaContext's batch, LlamaBatch's decode step and its prefill pass):
//   x += wo · attend(rope(wq·n), rope(wk·n), wv·n),  n = rms_norm(x)
//   x += w_down · (silu(w_gate·n) ⊙ w_up·n),         n = rms_norm(x)
// attend() caches a.k / a.v and writes a.att from a.q; the caller knows which rows belong to
// which sequence. rows_as_decode: every weight product computes each row exactly as a
// one-token decode does (matmul_rows_as_decode), else as one matmul over all rows.
void llama_block(const LlamaModel& model, int layer, LlamaActivations& a, int64_t rows, bool rows_as_decode,
                 ThreadPool& pool, const std::function<void()>& attend);

class LlamaContext {
public:
    // n_ctx: positions the KV cache holds (<= 0: the model's trained context, at most 4096).
    // n_batch: tokens processed per pass of a long prefill (bounds the scratch memory).
    LlamaContext(const LlamaModel& model, ThreadPool& pool, int n_ctx = 0, int n_batch = 256);

    const LlamaModel& model() const { return model_; }
    const LlamaConfig& config() const { return model_.config; }
    int n_ctx() const { return n_ctx_; }
    int n_past() const;  // positions cached so far
    // True when the forward passes run on a Vulkan device (the model has LlamaModel::vulkan).
    bool on_vulkan() const { return vk_ != nullptr; }
    ThreadPool& pool() { return pool_; }

    // Runs tokens [n_tokens] at positions pos0 .. pos0+n_tokens-1 and writes `rows` logits to
    // logits_out ([n_vocab] for Last, [n_tokens][n_vocab] for All; may be null for None).
    // pos0 must be <= n_past(): positions >= pos0 are forgotten first (a rewind). Throws
    // Error(Usage) when the tokens do not fit in the context (message gives both numbers),
    // Error(Model) for a token id outside the vocabulary.
    void forward(const int32_t* tokens, int n_tokens, int pos0, float* logits_out,
                 LogitRows rows = LogitRows::Last);
    // The same from input embeddings embd [n_tokens][n_embd] (projected image features, or
    // token embeddings the caller mixed with them).
    void forward_embeddings(const float* embd, int n_tokens, int pos0, float* logits_out,
                            LogitRows rows = LogitRows::Last);

    // Greedy decoding from n_past(): feeds `first`, then each token it picks (argmax() of the
    // logits, ties to the lowest id: Sampler's pick at temperature 0 without a penalty), at
    // most n steps, writing the picks to out and asking keep(pick) after each; keep returning
    // false ends it. Returns the picks made, m; n_past() grows by m (the tokens fed: `first`
    // and out[0 .. m-2]). Where greedy_on_device(), the picks are made on the Vulkan device
    // and the device runs each next step without waiting for the host
    // (LlamaVulkanRun::decode_greedy); elsewhere it is forward() and argmax() a step. Errors
    // as forward(): n steps that do not fit, a first token outside the vocabulary.
    int decode_greedy(int32_t first, int n, int32_t* out, const std::function<bool(int32_t)>& keep);
    bool greedy_on_device() const;

    void reset();  // forget every position (n_past() becomes 0); timings are kept
    const LlamaTimings& timings() const { return timings_; }
    void reset_timings() { timings_ = {}; }
    // Optional (null = off, the default, and then it costs nothing): filled by every forward().
    void set_attention_capture(AttentionCapture* c) { capture_ = c; }

private:
    void check_positions(int n_tokens, int pos0) const;
    void check_tokens(const int32_t* tokens, int n_tokens) const;  // ids inside the vocabulary
    void run(int n_tokens, int pos0, float* logits_out, LogitRows rows, bool prefill,
             const std::function<void(int done, int T)>& fill);
    // One pass over at most n_batch_ tokens: x [T][D] in place, logits for `rows`.
    void run_batch(int T, int pos0, float* logits_out, LogitRows rows);
    // llama_block's attention for T rows of this sequence at positions pos0 ..: caches their
    // k / v rows in `layer` and attends their q rows causally over positions 0 .. pos0+T-1
    // into att. LlamaContext's own batch and LlamaBatch's decode step and prefill pass (whose
    // rows of several sequences sit side by side) all attend through it.
    void attend(int layer, const float* q, const float* k, const float* v, float* att, int T, int pos0,
                ThreadPool& pool);
    void capture_attention(int layer, int T, int pos0);  // only when capture_ is set
    void output_logits(const float* x_rows, int n_rows, float* logits_out);

    const LlamaModel& model_;
    ThreadPool& pool_;
    int n_ctx_;
    int n_batch_;
    KvCache kv_;
    LlamaActivations act_;  // for one batch of n_batch_ tokens
    LlamaTimings timings_;
    AttentionCapture* capture_ = nullptr;  // not owned
    friend class LlamaBatch;  // text/llama_batch.h: one decode step for several contexts at once
    // The Vulkan run state (text/llama_forward_vk.h), made at construction when the model has
    // Vulkan weights: then run() hands every batch to it and kv_ stays unused.
    std::shared_ptr<LlamaVulkanRun> vk_;
};

// ---- the generation loop ---------------------------------------------------------------------

struct GenerateOptions {
    int max_tokens = 256;               // generated tokens at most
    std::vector<int32_t> stop_tokens;   // end-of-generation ids (not passed to on_token)
    // Called for every sampled id (a stop token too) with the logits [n_vocab] it was drawn
    // from, before on_token: what --show-probs prints.
    std::function<void(const float* logits, int n_vocab, int32_t chosen)> on_step;
    // Optional, not owned: masks the logits before each draw (on_step sees them masked) and
    // ends generation once its document is complete (text/token_constraint.h, structured
    // output: text/json_schema.h).
    TokenConstraint* constraint = nullptr;
};

struct GenerateResult {
    std::vector<int32_t> tokens;  // generated ids, without a final stop token
    bool stopped_by_token = false;
    bool stopped_by_callback = false;
    bool stopped_by_constraint = false;  // the constraint's document is complete
};

// Prefills `prompt` after the context's current position, then samples one token at a time
// with `sampler` (which also sees the prompt for its repetition penalty) until a stop token,
// max_tokens, or on_token returning false (stop strings are the caller's). on_token gets each
// accepted id. A prompt that does not fit in the context is Error(Usage) (from forward);
// generation ends quietly when the context is full.
GenerateResult generate(LlamaContext& ctx, const std::vector<int32_t>& prompt, Sampler& sampler,
                        const GenerateOptions& opts, const std::function<bool(int32_t)>& on_token);

}  // namespace glimpse
