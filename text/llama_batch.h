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
//
// prefill() is the same idea for prompts: the rows of several sequences' prompts go through
// each weight matmul together (one GEMM, its weight packed once for all of them instead of once
// per prompt), while RoPE, the cache writes and causal attention stay per sequence. The GEMM
// computes every row the same way whatever rows it is given, so each sequence's logits are
// bit for bit those of forward_embeddings() on its prompt alone. Contexts on a Vulkan device
// do the same there (LlamaVulkanRun::decode_batch and prefill_batch, one submission a pass),
// their logits each alone's within float rounding (the device's product kernel depends on the
// rows).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
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
    // a token outside the vocabulary is Error(Model). Contexts that run on Vulkan step together
    // on the device where their run can (LlamaVulkanRun::decode_batch: each weight read once
    // for all of them, the attention per sequence), else one by one with their own forward().
    void decode(LlamaContext* const* ctxs, const int32_t* tokens, int n, float* logits);
    void decode(const std::vector<LlamaContext*>& ctxs, const std::vector<int32_t>& tokens, std::vector<float>& logits) {
        logits.resize(ctxs.size() * size_t(model_.config.n_vocab));
        decode(ctxs.data(), tokens.data(), int(ctxs.size()), logits.data());
    }

    // Greedy decoding of n sequences together: feeds first[b] to ctxs[b] at its n_past(), then
    // each token picked for it (the argmax of its logits, ties to the lowest id), asking
    // keep(b, pick, n_past) after each pick, n_past being the positions sequence b has fed by
    // then. Sequence b ends when keep says no (that pick is its last) or its context is full;
    // returns when all have ended. Where every context picks on the device and their run
    // batches (greedy_together), a step is LlamaVulkanRun::decode_greedy_batch's: B token ids
    // come back instead of B rows of logits, and the device runs the next step while the host
    // looks at these picks (when a sequence ends, the others take their picks of the step in
    // flight, and go on without it).
    // Otherwise each step is decode() and the host's argmax(). Checks as decode().
    void decode_greedy(LlamaContext* const* ctxs, const int32_t* first, int n,
                       const std::function<bool(int, int32_t, int)>& keep);
    // Whether decode_greedy's steps of these contexts pick on the device.
    static bool greedy_together(const std::vector<LlamaContext*>& ctxs);

    // Runs embd[b] [n_tokens[b]][n_embd] at positions ctxs[b]->n_past() .. in ctxs[b] for every
    // b < n, and writes the logits of each sequence's last position to logits [n][n_vocab]: what
    // ctxs[b]->forward_embeddings(embd[b], n_tokens[b], n_past, row b, LogitRows::Last) gives.
    // On the CPU, prompts longer than a context's n_batch and shorter than 4 rows (those take
    // the matvec path alone) are run alone with exactly that call. Vulkan contexts whose run
    // batches prompts (prefills_together) go to the device together, a pass in one submission
    // (LlamaVulkanRun::prefill_batch: what that call gives, within float rounding); prompts
    // longer than their n_batch, and the other Vulkan contexts, are run alone. The contexts must
    // belong to this model and be distinct; a prompt that does not fit is Error(Usage) before
    // anything runs. Timings go to each context's prefill figures (its share of each pass).
    void prefill(LlamaContext* const* ctxs, const float* const* embd, const int* n_tokens, int n, float* logits);

    int max_seqs() const { return max_seqs_; }
    // Whether decode() steps `ctx` together with other contexts (one pass for all of them), or
    // alone: a Vulkan context whose run cannot batch (LlamaVulkanRun::batches_sequences).
    static bool steps_together(const LlamaContext& ctx);
    // Whether prefill() runs `ctx`'s prompt on its Vulkan device together with others
    // (LlamaVulkanRun::prefills_together).
    static bool prefills_together(const LlamaContext& ctx);

private:
    void prefill_pass(LlamaContext* const* ctxs, const float* const* embd, const int* n_tokens, int B, float* logits);
    void check_contexts(LlamaContext* const* ctxs, int n, const char* what) const;
    void check(LlamaContext* const* ctxs, const int32_t* tokens, int n) const;
    void step(LlamaContext* const* ctxs, const int32_t* tokens, int B, float* logits);
    void attention(LlamaContext* const* ctxs, int layer, int B);

    const LlamaModel& model_;
    ThreadPool& pool_;
    int max_seqs_;
    LlamaActivations act_;  // for max_seqs_ rows
    std::unique_ptr<LlamaActivations> prefill_act_;  // grown to the largest prefill pass
};

}  // namespace glimpse
