// One decode step for several independent sequences at once: B LlamaContexts of the same
// model, each with its own KV cache and position, each given one new token. Every weight
// matmul is one pass over the weights for all B rows (what makes it pay: a decode step is
// bound by reading the weights, and B tokens now share one read); RoPE uses each row's own
// position, and attention runs per sequence over that sequence's cache.
//
//   x [B][D] = token_embd rows of tokens[b]
//   per layer: q,k,v = rms_norm(x) · {wq,wk,wv}ᵀ (B rows); rope at pos[b] = ctxs[b]->n_past()
//              cache k[b], v[b] in ctxs[b]; attend row b over ctxs[b]'s positions 0 .. pos[b]
//              x += attn · woᵀ;  x += swiglu FFN (B rows)
//   logits [B][n_vocab] = rms_norm(x) · outputᵀ
//
// The matmuls run on matmul_rows_as_decode (core/matmul.h), which computes each row exactly
// as a one-token decode does, and every other op is per row (norms, RoPE, SwiGLU, the
// residual adds) or per sequence (attention), so each sequence's logits are bit for bit those
// of LlamaContext::forward on that token alone, whatever else is in the batch.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "text/llama_forward.h"
#include "text/llama_model.h"

namespace glimpse {

class LlamaBatch {
public:
    // Scratch for up to max_seqs sequences per step (more are run in several passes).
    LlamaBatch(const LlamaModel& model, ThreadPool& pool, int max_seqs = 16);

    // Runs tokens[b] at position ctxs[b]->n_past() in ctxs[b] for every b < n, and writes
    // logits [n][n_vocab]. Every context must belong to this batch's model; the same context
    // twice is Error(Usage), as is a context that is full (the message gives its size), and
    // a token outside the vocabulary is Error(Model). Contexts that run on Vulkan are stepped
    // one by one with their own forward() (same results, no batching).
    void decode(LlamaContext* const* ctxs, const int32_t* tokens, int n, float* logits);
    void decode(const std::vector<LlamaContext*>& ctxs, const std::vector<int32_t>& tokens, std::vector<float>& logits) {
        logits.resize(ctxs.size() * size_t(model_.config.n_vocab));
        decode(ctxs.data(), tokens.data(), int(ctxs.size()), logits.data());
    }

    int max_seqs() const { return max_seqs_; }

private:
    void check(LlamaContext* const* ctxs, const int32_t* tokens, int n) const;
    void step(LlamaContext* const* ctxs, const int32_t* tokens, int B, float* logits);
    void attention(LlamaContext* const* ctxs, int layer, int B);

    const LlamaModel& model_;
    ThreadPool& pool_;
    int max_seqs_;
    LlamaActivations act_;  // for max_seqs_ rows
};

}  // namespace glimpse
