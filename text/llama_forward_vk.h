// The Llama decoder's forward pass (text/llama_forward.h) on a Vulkan device: the same layer
// sequence recorded as core/vk_ops.h dispatches.
//
//   LlamaVulkanWeights  every weight uploaded once (matrices in their file block format), the
//                       RoPE table; shared by all contexts of one model (LlamaModel::vulkan).
//   LlamaVulkanRun      one sequence's device state: KV cache [n_ctx][KV·hd] per layer and
//                       the activations of one batch of n_batch rows, allocated once; a
//                       LlamaContext whose model has Vulkan weights creates one and hands
//                       each batch to it.
//
// Per batch: the input embeddings [T][D] (get_rows on the host: a row copy) and the positions
// are written into a host-visible buffer, the whole batch (the copy of those inputs into device
// memory, all layers, the KV-cache writes, the logits and their copy into a host-visible
// buffer) is recorded into one command buffer and submitted once, and the logits are read from
// host memory: one round trip to the device a decode step. (Logits of every row, beyond what
// one buffer holds, are read back in chunks after it.)
//
// A decode step's stream depends only on its position: the token's embedding reaches the
// device through the host-visible buffer, which the stream copies in. So while the device runs
// step p, the host records step p + 1 into a second Recorder (ContextOptions::record_ahead),
// and the next call, if it is that step, submits it at once: the device no longer waits for
// the host's recording between tokens. Any other call drops the stream recorded ahead.
//
// Greedy decoding (decode_greedy) goes one further: each step picks its token on the device
// and the next step reads it there, so that step is submitted before the host has read the
// pick, and the device does not wait for the host's pick either.
//
// Several sequences (a caption batch, through LlamaBatch) share one stream: decode_batch steps
// them together, decode_greedy_batch also picks their tokens there, and prefill_batch runs
// their prompts together; each weight product covers every sequence's rows, and each sequence
// attends over its own caches.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/vk_buffer.h"
#include "core/vk_context.h"
#include "core/vk_ops.h"
#include "core/vk_pipeline.h"
#include "text/llama_forward.h"
#include "text/llama_model.h"

namespace glimpse {

struct LlamaVulkanWeights {
    struct Layer {
        vk::Buffer attn_norm, ffn_norm;  // [D]
        // Q, K and V stacked (wq's rows, wk's, wv's) in wq where qkv_stacked (Context::fuse_qkv,
        // the three of one type and fitting one buffer together); wk and wv then hold nothing.
        vk::DeviceMatrix wq, wk, wv, wo, w_down;
        bool qkv_stacked = false;
        // Gate and up stacked (gate rows, then up rows) for the GLU matmul; gate and up of
        // different types, or too large for one buffer together, stay apart (w_gate_up then
        // holds the gate alone).
        vk::DeviceMatrix w_gate_up, w_up;
        bool stacked = true;
    };
    // Declared first: destroyed last, after every buffer made from it.
    std::shared_ptr<vk::Context> ctx;
    LlamaConfig config;
    std::vector<Layer> layers;
    vk::Buffer output_norm;  // [D]
    vk::DeviceMatrix output;
    // The token embedding table, for greedy decoding on the device (Context::greedy_pick), where
    // vk::get_rows takes its type: the output matrix itself when tied, else uploaded here.
    vk::DeviceMatrix token_embd;
    vk::RopeTable rope;
    uint64_t bytes = 0;  // device bytes of the weights

    // The table get_rows reads a token's embedding from, or null where there is none.
    const vk::DeviceMatrix* embedding_table() const {
        if (token_embd.buffer.size() > 0) return &token_embd;
        return config.tied_output && vk::get_rows_supports(output.dtype) ? &output : nullptr;
    }
};

// Uploads `model`'s weights to `ctx`. Error(Model) naming the tensor for a weight type without
// a Vulkan kernel (e.g. BF16), Error(Device) when the device lacks memory or a feature.
std::shared_ptr<LlamaVulkanWeights> upload_llama_weights(std::shared_ptr<vk::Context> ctx, const LlamaModel& model);

class LlamaVulkanRun {
public:
    // n_ctx positions of KV cache, batches of at most n_batch rows.
    LlamaVulkanRun(std::shared_ptr<const LlamaVulkanWeights> w, int n_ctx, int n_batch);
    LlamaVulkanRun(const LlamaVulkanRun&) = delete;
    LlamaVulkanRun& operator=(const LlamaVulkanRun&) = delete;

    int n_past() const { return n_past_; }
    void truncate(int n) { n_past_ = std::min(n_past_, n); }
    void reset() { n_past_ = 0; }

    // x [T][D]: the input embeddings of positions pos0 .. pos0+T-1 (T ≤ n_batch, pos0 ≤
    // n_past, pos0 + T ≤ n_ctx: LlamaContext checks). Writes `rows` logits to logits_out.
    void run_batch(const float* x, int T, int pos0, float* logits_out, LogitRows rows);

    // Whether decode_greedy can run: the Context picks on the device (greedy_pick) and the
    // embedding table is there.
    bool greedy_on_device() const { return ctx_.greedy_pick() && w_->embedding_table() != nullptr; }
    // Greedy decoding on the device: feeds `first` at position pos0 (≤ n_past), then each token
    // it picks, at most n steps (pos0 + n ≤ n_ctx), writing the picks to out and asking
    // keep(pick) after each. Each step is one submission, recorded while the step before runs
    // and submitted before the host reads that step's pick: the step's embedding row comes from
    // the pick on the device (vk::greedy_pick, vk::get_rows), so the device does not wait for
    // the host between tokens, and no logits come back. When keep says no, the step in flight
    // finishes and is forgotten. Returns the picks made, m: the m tokens fed are `first` and
    // out[0 .. m-2], and n_past becomes pos0 + m. The same picks as argmax() of run_batch's
    // logits, step by step.
    int decode_greedy(int32_t first, int pos0, int n, int32_t* out, const std::function<bool(int32_t)>& keep);
    // decode_greedy for B sequences together, each step decode_batch's (on this run's scratch
    // buffers; seqs as decode_batch takes them, this run may be one of them) ending in B picks on
    // the device: feeds first[b] to seqs[b] at its n_past, then each token picked for it, at most
    // n steps (each n_past + n ≤ its n_ctx). After each step, keep(b, pick, n_past) is asked
    // for every b (n_past: the positions sequence b has fed then); no ends sequence b, and the
    // step in which any says no is the last for all: m steps, returned, each n_past grown by m.
    // The step already in flight then (with record_ahead) has run for all of them: the
    // sequences that said yes take its picks too (keep asked again; their n_past grows by
    // m + 1), the others' part of it is forgotten. Only B token ids come back a step, no
    // logits, and the device does not wait for the host between steps. The same picks as
    // argmax() of decode_batch's logits, step by step. Where greedy_on_device() and
    // batches_sequences().
    int decode_greedy_batch(LlamaVulkanRun* const* seqs, int B, const int32_t* first, int n,
                            const std::function<bool(int, int32_t, int)>& keep);

    // Whether decode_batch can run: the Context batches (batch_decode), and batchable().
    bool batches_sequences() const { return ctx_.batch_decode() && batchable(); }
    // Whether prefill_batch can run: the Context batches prompts (batch_prefill), and batchable().
    bool prefills_together() const { return ctx_.batch_prefill() && batchable(); }
    // The most sequences one decode_batch takes: n_batch, or the rows of logits one buffer holds.
    int64_t logits_max_rows() const { return std::min<int64_t>(n_batch_, logits_fit()); }
    // One decode step for B sequences at once, on this run's scratch buffers: x [B][D] holds
    // sequence b's input row, run at position seqs[b]->n_past() in seqs[b]'s caches (this run
    // may be one of them). Every weight product reads its matrix once for all B rows, and each
    // sequence attends over its own caches (vk::attention_qkv from row b: one dispatch a
    // sequence). Writes logits [B][V]; each n_past grows by one. The sequences: distinct, of
    // these weights, none full, B ≤ logits_max_rows(); where batches_sequences().
    // With record_ahead (ContextOptions), the next step of the same sequences is recorded
    // while the device runs this one, and used if the next call is that step (the same
    // sequences, in the same order, each one position on): a batch's captions step without
    // the device waiting for the host to record.
    void decode_batch(LlamaVulkanRun* const* seqs, int B, const float* x, float* logits_out);
    // The prompts of B sequences in one submission, on this run's scratch buffers: x[b]
    // [n_tokens[b]][D] run at positions seqs[b]->n_past() .. in seqs[b]'s caches (this run may
    // be one of them), and the logits of each prompt's last row written to logits_out [B][V];
    // each n_past grows by its n_tokens. Every weight product reads its matrix once for all the
    // rows, while RoPE, the cache writes and the causal attention are per sequence (rope_qkv
    // and attention from each sequence's first row, or attention_qkv for a prompt as short as
    // a decode step's). Each sequence's logits are those of run_batch on its prompt alone,
    // within float rounding: a product's kernel depends on its rows. The sequences: distinct,
    // of these weights, B ≤ logits_max_rows(), each prompt fitting its context, all rows
    // together ≤ batch_rows(); where prefills_together().
    void prefill_batch(LlamaVulkanRun* const* seqs, int B, const float* const* x, const int* n_tokens,
                       float* logits_out);
    // The most rows one batch takes (run_batch's T, prefill_batch's prompts together): n_batch.
    int batch_rows() const { return n_batch_; }

    const std::string& device_label() const { return w_->ctx->label(); }
    uint32_t dispatches_last_batch() const { return dispatches_; }

private:
    // Whether these weights and Context let sequences share a stream: every layer's Q, K and V
    // stacked, and the Context rotating inside the attention (fuse_rope), which takes one row of
    // this head_dim.
    bool batchable() const;
    // Records the whole batch into rec; returns the rows of logits it leaves in logits_.
    int64_t record_batch(vk::Recorder& rec, int T, int pos0, LogitRows rows);
    // The logits of the batch's last row into logits_.
    void record_last_logits(vk::Recorder& rec, int T);
    // The logits of x's first `rows` rows into logits_ (the norm fused where fuse_norms says).
    void record_logits(vk::Recorder& rec, const vk::Buffer& x, int rows);
    // A batch's inputs: staged into in_host_ by the host, copied into x_ and pos_ by the stream.
    void stage_inputs(const float* x, const std::vector<int32_t>& pos);
    void record_inputs(vk::Recorder& rec, int T);
    // Greedy decoding's step i for B sequences (seqs, at positions pos[b] + i; null: this run
    // alone at pos[0] + i) into rec.
    void record_greedy_step(vk::Recorder& rec, int i, int B, LlamaVulkanRun* const* seqs, const int32_t* pos);
    // At most n of those steps, each submitted before the host reads the picks of the one before
    // (with record_ahead); pick(i) reads step i's picks, false ends. Returns the steps made,
    // m; *ran, if given: the steps that ran on the device (m + 1 when one was in flight at
    // the end, finished by then).
    int run_greedy(int B, LlamaVulkanRun* const* seqs, const int32_t* pos, int n, const std::function<bool(int)>& pick,
                   int* ran = nullptr);
    // ids_ and ids_host_ for greedy steps of B sequences; grown, never shrunk.
    void grow_ids(int B);
    // std::invalid_argument naming `what` unless seqs are B ≤ logits_max_rows() distinct
    // sequences of these weights, none full.
    void check_batch(LlamaVulkanRun* const* seqs, int B, const char* what) const;
    // The rows of several sequences in one batch (decode_batch: one row each; prefill_batch: a
    // prompt each): sequence b's rows are rows first[b] .. first[b + 1] − 1, at positions
    // pos[b] .., attending over seqs[b]'s caches.
    struct SeqRows {
        LlamaVulkanRun* const* seqs = nullptr;
        int B = 0;
        const int32_t* pos = nullptr;  // [B]
        std::vector<int32_t> first;    // [B + 1]
    };
    // One row each: rows 0 .. B − 1.
    static SeqRows one_row_each(LlamaVulkanRun* const* seqs, int B, const int32_t* pos);
    // seqs: the batch's T rows are those sequences' rows (pos0 unused).
    void record_layer(vk::Recorder& rec, const LlamaVulkanWeights::Layer& L, int layer, int T, int pos0,
                      const SeqRows* seqs = nullptr);
    // Each sequence's attention of record_layer's seqs mode.
    void record_seq_attention(vk::Recorder& rec, int layer, const SeqRows& s);
    // decode_batch's step of B sequences at these positions into rec, its logits to logits_host_.
    void record_batch_step(vk::Recorder& rec, LlamaVulkanRun* const* seqs, int B, const int32_t* pos);
    // Nothing recorded ahead is what runs next (another kind of call, or other sequences).
    void drop_ahead() {
        ahead_pos_ = -1;
        ahead_batch_.clear();
    }
    // Nor anything recorded ahead by these sequences' runs: their caches change under it.
    void drop_ahead(LlamaVulkanRun* const* seqs, int B) {
        for (int b = 0; b < B; ++b) seqs[b]->drop_ahead();
        drop_ahead();
    }
    void grow_logits(int64_t rows);
    // logits_host_ for `rows` rows of logits; grown, never shrunk.
    void grow_logits_host(int64_t rows);
    // Rows of logits one buffer can hold (maxStorageBufferRange).
    int64_t logits_fit() const {
        return int64_t(ctx_.info().max_storage_buffer_range / uint64_t(w_->config.n_vocab * 4));
    }
    // rms_norm(x) · weight as the input of the matmuls that follow, for `rows` rows. Fused (the
    // batch fits the matvec kernel and the Context fuses norms): x itself, and normed() puts the
    // norm in each matmul's prologue. Otherwise the norm is recorded into xb_, which is returned,
    // and normed() leaves the epilogue as it is.
    bool fuse_norms(int rows) const { return rows <= vk::kVkMatvecMaxM && ctx_.fuse_norms(); }
    const vk::Buffer& norm_input(vk::Recorder& rec, const vk::Buffer& x, const vk::Buffer& weight, int rows,
                                 bool fuse);
    vk::MatmulEpilogue normed(const vk::Buffer& weight, bool fuse, vk::MatmulEpilogue e = {}) const;

    std::shared_ptr<const LlamaVulkanWeights> w_;
    vk::Context& ctx_;
    int n_ctx_, n_batch_;
    int n_past_ = 0;
    std::vector<vk::Buffer> k_cache_, v_cache_;  // per layer [n_ctx][KV·hd]
    vk::Buffer x_, xb_, q_, att_, ff_, up_, pos_, last_, logits_;
    vk::Buffer qkv_;  // [n_batch][q_dim + 2·kv_dim]: the stacked Q·K·V product (qkv_stacked layers)
    vk::Buffer att_partials_;  // a decode step's split attention (vk::attention_partials)
    // Host-visible: a batch's input rows [n_batch][D] then its positions (int32 [n_batch]),
    // and one row of logits [V] coming back (B rows after a decode_batch of B sequences).
    vk::Buffer in_host_, logits_host_;
    // Greedy decoding's token ids for B sequences: on the device, a ring of two slots of B
    // (step i reads slot i % 2 and its picks go to the other); host-visible, the B first
    // tokens, then the ring's copies.
    vk::Buffer ids_, ids_host_;
    // Where in_host_ keeps the positions, in words: after n_batch rows of D.
    int64_t positions_at() const { return int64_t(n_batch_) * w_->config.n_embd; }
    // Rows logits_ (and last_, the rows fed to the output matrix) hold: 1, grown for LogitRows::All
    // to n_batch or what one buffer can hold (maxStorageBufferRange), whichever is less.
    int64_t logits_rows_ = 0;
    // Two Recorders: the one a step is submitted from, and the one the next step is recorded
    // into meanwhile. ahead_pos_ >= 0: rec_[ahead_] holds the decode step at that position,
    // recorded and not submitted.
    // ahead_batch_ non-empty: rec_[ahead_] holds decode_batch's step of the sequences whose
    // serials and positions it lists (serial, position, serial, position, ...).
    vk::Recorder rec_[2];
    int ahead_ = 0, ahead_pos_ = -1;
    std::vector<int64_t> ahead_batch_;
    // This run's number among all runs of the process, never reused: what ahead_batch_ knows a
    // sequence by (a run made where a freed one lived would have its address).
    const int64_t serial_;
    uint32_t dispatches_ = 0;
};

}  // namespace glimpse
