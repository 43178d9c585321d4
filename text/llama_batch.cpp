// The batched decode step and prefill of text/llama_batch.h: llama_block (text/llama_forward.cpp,
// LlamaContext's layer) over rows that belong to different sequences, attention per sequence.
#include "text/llama_batch.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <string>

#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "text/llama_forward_vk.h"
#include "text/sampler.h"

namespace glimpse {

namespace {

size_t sz(int64_t a, int64_t b) { return size_t(a) * size_t(b); }

}  // namespace

LlamaBatch::LlamaBatch(const LlamaModel& model, ThreadPool& pool, int max_seqs)
    : model_(model), pool_(pool), max_seqs_(std::max(1, max_seqs)), act_(model.config, max_seqs_) {}

// Every context of this model, none twice ("batched decode" / "batched prefill" in messages).
void LlamaBatch::check_contexts(LlamaContext* const* ctxs, int n, const char* what) const {
    for (int b = 0; b < n; ++b) {
        if (&ctxs[b]->model() != &model_)
            throw Error(ErrorKind::Usage, std::string(what) + ": sequence " + std::to_string(b) + " belongs to another model");
        for (int o = 0; o < b; ++o)
            if (ctxs[o] == ctxs[b])
                throw Error(ErrorKind::Usage, std::string(what) + ": the same context is sequence " + std::to_string(o) +
                                                  " and " + std::to_string(b));
    }
}

void LlamaBatch::check(LlamaContext* const* ctxs, const int32_t* tokens, int n) const {
    const int64_t V = model_.config.n_vocab;
    check_contexts(ctxs, n, "batched decode");
    for (int b = 0; b < n; ++b) {
        const LlamaContext& c = *ctxs[b];
        if (c.n_past() + 1 > c.n_ctx())
            throw Error(ErrorKind::Usage, "batched decode: sequence " + std::to_string(b) + " fills its context of " +
                                              std::to_string(c.n_ctx()) + " tokens (raise --ctx)");
        if (tokens[b] < 0 || tokens[b] >= V)
            throw model_error(model_.path, "token id " + std::to_string(tokens[b]) + " is outside the vocabulary of " +
                                               std::to_string(V) + " tokens");
    }
}

bool LlamaBatch::steps_together(const LlamaContext& ctx) {
    return !ctx.on_vulkan() || (!ctx.capture_ && ctx.vk_->batches_sequences());
}

bool LlamaBatch::prefills_together(const LlamaContext& ctx) {
    return ctx.on_vulkan() && !ctx.capture_ && ctx.vk_->prefills_together();
}

void LlamaBatch::decode(LlamaContext* const* ctxs, const int32_t* tokens, int n, float* logits) {
    check(ctxs, tokens, n);
    const int64_t V = model_.config.n_vocab;
    // Contexts on the CPU step together (step()); so do Vulkan contexts where their run can
    // (LlamaVulkanRun::decode_batch, on the first one's scratch); the others step alone.
    struct Group {
        std::vector<LlamaContext*> ctxs;
        std::vector<int32_t> tokens;
        std::vector<int> index;
    } cpu, dev;
    for (int b = 0; b < n; ++b) {
        LlamaContext& c = *ctxs[b];
        if (!steps_together(c)) {
            c.forward(&tokens[b], 1, c.n_past(), logits + sz(b, V), LogitRows::Last);
            continue;
        }
        Group& g = c.on_vulkan() ? dev : cpu;
        g.ctxs.push_back(&c);
        g.tokens.push_back(tokens[b]);
        g.index.push_back(b);
    }
    std::vector<float> rows;
    std::vector<LlamaVulkanRun*> runs;
    for (Group* g : {&cpu, &dev}) {
        for (size_t done = 0; done < g->ctxs.size();) {
            LlamaContext** at = g->ctxs.data() + done;
            int64_t most = max_seqs_;
            if (g == &dev) most = std::min<int64_t>(most, at[0]->vk_->logits_max_rows());
            const int B = int(std::min<size_t>(size_t(most), g->ctxs.size() - done));
            rows.resize(sz(B, V));
            const auto t0 = std::chrono::steady_clock::now();
            if (g == &cpu) {
                step(at, g->tokens.data() + done, B, rows.data());
            } else {
                runs.clear();
                for (int b = 0; b < B; ++b) runs.push_back(at[b]->vk_.get());
                ops::get_rows(model_.weights.token_embd, g->tokens.data() + done, B, act_.x.data());
                at[0]->vk_->decode_batch(runs.data(), B, act_.x.data(), rows.data());
            }
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            for (int b = 0; b < B; ++b) {
                std::copy_n(rows.data() + sz(b, V), size_t(V), logits + sz(g->index[done + size_t(b)], V));
                LlamaTimings& t = at[b]->timings_;  // each sequence's share of the step
                t.decode_ms += ms / B;
                t.decode_tokens += 1;
            }
            done += size_t(B);
        }
    }
}

bool LlamaBatch::greedy_together(const std::vector<LlamaContext*>& ctxs) {
    return !ctxs.empty() && std::all_of(ctxs.begin(), ctxs.end(), [](const LlamaContext* c) {
        return c->on_vulkan() && !c->capture_ && c->vk_->greedy_on_device() && c->vk_->batches_sequences();
    });
}

void LlamaBatch::decode_greedy(LlamaContext* const* ctxs, const int32_t* first, int n,
                               const std::function<bool(int, int32_t, int)>& keep) {
    check(ctxs, first, n);
    const int64_t V = model_.config.n_vocab;
    // The sequences still going: their contexts, next tokens and indices in ctxs.
    std::vector<LlamaContext*> live(ctxs, ctxs + n);
    std::vector<int32_t> tokens(first, first + n);
    std::vector<int> index(static_cast<size_t>(n));
    for (int b = 0; b < n; ++b) index[size_t(b)] = b;
    std::vector<char> more;
    std::vector<float> logits;
    std::vector<LlamaVulkanRun*> runs;
    while (!live.empty()) {
        more.assign(live.size(), 1);
        if (greedy_together(live)) {
            // The first B go on the device until one of them ends; the rest wait their turn.
            const int B = int(std::min<int64_t>({int64_t(live.size()), max_seqs_, live[0]->vk_->logits_max_rows()}));
            runs.clear();
            int steps = std::numeric_limits<int>::max();
            std::vector<int> past0(static_cast<size_t>(B));
            for (int b = 0; b < B; ++b) {
                runs.push_back(live[size_t(b)]->vk_.get());
                past0[size_t(b)] = live[size_t(b)]->n_past();
                steps = std::min(steps, live[size_t(b)]->n_ctx() - past0[size_t(b)]);
            }
            const auto t0 = std::chrono::steady_clock::now();
            runs[0]->decode_greedy_batch(runs.data(), B, tokens.data(), steps, [&](int b, int32_t pick, int n_past) {
                tokens[size_t(b)] = pick;
                more[size_t(b)] = keep(index[size_t(b)], pick, n_past);
                return bool(more[size_t(b)]);
            });
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            for (int b = 0; b < B; ++b) {
                LlamaTimings& t = live[size_t(b)]->timings_;  // each sequence's share of the steps
                t.decode_ms += ms / B;
                t.decode_tokens += live[size_t(b)]->n_past() - past0[size_t(b)];
            }
        } else {
            logits.resize(sz(int64_t(live.size()), V));
            decode(live.data(), tokens.data(), int(live.size()), logits.data());
            for (size_t j = 0; j < live.size(); ++j) {
                tokens[j] = argmax(logits.data() + sz(int64_t(j), V), int(V));
                more[j] = keep(index[j], tokens[j], live[j]->n_past());
            }
        }
        size_t kept = 0;
        for (size_t j = 0; j < live.size(); ++j) {
            if (!more[j] || live[j]->n_past() >= live[j]->n_ctx()) continue;
            live[kept] = live[j], tokens[kept] = tokens[j], index[kept] = index[j];
            ++kept;
        }
        live.resize(kept), tokens.resize(kept), index.resize(kept);
    }
}

// LlamaContext::run_batch with T = 1 per sequence: the same block, each product row by row as a
// one-token decode computes it.
void LlamaBatch::step(LlamaContext* const* ctxs, const int32_t* tokens, int B, float* logits) {
    const LlamaConfig& c = model_.config;
    const int64_t D = c.n_embd;
    for (int b = 0; b < B; ++b) {
        act_.pos[size_t(b)] = ctxs[b]->n_past();
        ctxs[b]->kv_.truncate(act_.pos[size_t(b)]);
    }
    ops::get_rows(model_.weights.token_embd, tokens, B, act_.x.data());
    for (int l = 0; l < c.n_layers; ++l)
        llama_block(model_, l, act_, B, /*rows_as_decode=*/true, pool_, [&] { attention(ctxs, l, B); });
    ops::rms_norm(act_.x.data(), f32_data(model_.weights.output_norm), act_.xb.data(), B, D, c.rms_eps, pool_);
    matmul_rows_as_decode(model_.weights.output, act_.xb.data(), logits, B, pool_);
}

// Prompt rows per prefill pass at most (scratch: about 3 KiB a row per 100 of model width).
constexpr int64_t kMaxPrefillRows = 4096;

void LlamaBatch::prefill(LlamaContext* const* ctxs, const float* const* embd, const int* n_tokens, int n,
                         float* logits) {
    const int64_t V = model_.config.n_vocab;
    check_contexts(ctxs, n, "batched prefill");
    for (int b = 0; b < n; ++b) {
        const LlamaContext& c = *ctxs[b];
        c.check_positions(n_tokens[b], c.n_past());
        if (n_tokens[b] <= 0) throw Error(ErrorKind::Usage, "batched prefill: sequence " + std::to_string(b) + " is empty");
    }
    // Passes of whole prompts: on the CPU at most max_seqs_ of them and kMaxPrefillRows rows;
    // on a Vulkan device at most as many as the first one's run takes (its logits_max_rows()
    // sequences, its batch_rows() rows), recorded there.
    struct Pass {
        std::vector<LlamaContext*> ctxs;
        std::vector<const float*> embd;
        std::vector<int> n_tokens, index;
        int64_t rows = 0;
    } cpu, dev;
    std::vector<float> rows;
    std::vector<LlamaVulkanRun*> runs;
    auto flush = [&](Pass& p) {
        if (p.ctxs.empty()) return;
        const int B = int(p.ctxs.size());
        rows.resize(sz(B, V));
        if (&p == &cpu) {
            prefill_pass(p.ctxs.data(), p.embd.data(), p.n_tokens.data(), B, rows.data());
        } else {
            const auto t0 = std::chrono::steady_clock::now();
            runs.clear();
            for (LlamaContext* c : p.ctxs) runs.push_back(c->vk_.get());
            runs[0]->prefill_batch(runs.data(), B, p.embd.data(), p.n_tokens.data(), rows.data());
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            for (int b = 0; b < B; ++b) {
                LlamaTimings& t = p.ctxs[size_t(b)]->timings_;
                t.prefill_ms += ms * double(p.n_tokens[size_t(b)]) / double(p.rows);
                t.prefill_tokens += p.n_tokens[size_t(b)];
            }
        }
        for (int b = 0; b < B; ++b) std::copy_n(rows.data() + sz(b, V), size_t(V), logits + sz(p.index[size_t(b)], V));
        p.ctxs.clear(), p.embd.clear(), p.n_tokens.clear(), p.index.clear();
        p.rows = 0;
    };
    for (int b = 0; b < n; ++b) {
        LlamaContext& c = *ctxs[b];
        const bool on_device = prefills_together(c) && n_tokens[b] <= c.vk_->batch_rows();
        if (c.on_vulkan() ? !on_device : (n_tokens[b] < kMatvecMaxM || n_tokens[b] > c.n_batch_)) {
            c.forward_embeddings(embd[b], n_tokens[b], c.n_past(), logits + sz(b, V), LogitRows::Last);
            continue;
        }
        Pass& p = on_device ? dev : cpu;
        if (!p.ctxs.empty()) {
            int64_t most_seqs = max_seqs_, most_rows = kMaxPrefillRows;
            if (on_device) {
                most_seqs = std::min(most_seqs, p.ctxs[0]->vk_->logits_max_rows());
                most_rows = p.ctxs[0]->vk_->batch_rows();
            }
            if (int64_t(p.ctxs.size()) == most_seqs || p.rows + n_tokens[b] > most_rows) flush(p);
        }
        p.ctxs.push_back(&c), p.embd.push_back(embd[b]), p.n_tokens.push_back(n_tokens[b]), p.index.push_back(b);
        p.rows += n_tokens[b];
    }
    flush(cpu);
    flush(dev);
}

// LlamaContext::run_batch over the rows of B prompts: llama_block over all rows (RoPE at each
// row's position), each sequence's rows attending in its own context (LlamaContext::attend), and
// the output matrix on each sequence's last row alone.
void LlamaBatch::prefill_pass(LlamaContext* const* ctxs, const float* const* embd, const int* n_tokens, int B,
                              float* logits) {
    const auto t0 = std::chrono::steady_clock::now();
    const LlamaConfig& c = model_.config;
    const int64_t D = c.n_embd;
    std::vector<int64_t> first(size_t(B) + 1, 0);  // sequence b has rows [first[b], first[b+1])
    for (int b = 0; b < B; ++b) first[size_t(b) + 1] = first[size_t(b)] + n_tokens[b];
    const int64_t R = first[size_t(B)];
    if (!prefill_act_ || int64_t(prefill_act_->pos.size()) < R) prefill_act_ = std::make_unique<LlamaActivations>(c, R);
    LlamaActivations& a = *prefill_act_;
    for (int b = 0; b < B; ++b) {
        const int pos0 = ctxs[b]->n_past();
        ctxs[b]->kv_.truncate(pos0);
        std::memcpy(a.x.data() + sz(first[size_t(b)], D), embd[b], sz(n_tokens[b], D) * sizeof(float));
        for (int i = 0; i < n_tokens[b]; ++i) a.pos[size_t(first[size_t(b)] + i)] = pos0 + i;
    }
    for (int l = 0; l < c.n_layers; ++l)
        llama_block(model_, l, a, R, /*rows_as_decode=*/false, pool_, [&] {
            for (int b = 0; b < B; ++b) {
                const int64_t r0 = first[size_t(b)];
                ctxs[b]->attend(l, a.q.data() + sz(r0, c.q_dim()), a.k.data() + sz(r0, c.kv_dim()),
                                a.v.data() + sz(r0, c.kv_dim()), a.att.data() + sz(r0, c.q_dim()), n_tokens[b],
                                a.pos[size_t(r0)], pool_);
            }
        });
    // The last row of each sequence, normed, through the output matrix as a one-row matmul.
    for (int b = 0; b < B; ++b)
        std::memcpy(a.proj.data() + sz(b, D), a.x.data() + sz(first[size_t(b) + 1] - 1, D), sz(1, D) * sizeof(float));
    ops::rms_norm(a.proj.data(), f32_data(model_.weights.output_norm), a.xb.data(), B, D, c.rms_eps, pool_);
    matmul_rows_as_decode(model_.weights.output, a.xb.data(), logits, B, pool_);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    for (int b = 0; b < B; ++b) {
        LlamaTimings& t = ctxs[b]->timings_;
        t.prefill_ms += ms * double(n_tokens[b]) / double(R);
        t.prefill_tokens += n_tokens[b];
    }
}

// Each sequence writes its K/V row into its own cache and attends over it. With several
// sequences, one pool job hands them out whole (the nested attention call runs inline on the
// thread that took the sequence); a lone sequence shares its heads over the threads, as a
// one-token forward() does. Either way each head is computed by the same kernel.
void LlamaBatch::attention(LlamaContext* const* ctxs, int layer, int B) {
    const LlamaConfig& c = model_.config;
    auto one = [&](int b) {
        ctxs[b]->attend(layer, act_.q.data() + sz(b, c.q_dim()), act_.k.data() + sz(b, c.kv_dim()),
                        act_.v.data() + sz(b, c.kv_dim()), act_.att.data() + sz(b, c.q_dim()), 1,
                        act_.pos[size_t(b)], pool_);
    };
    if (B == 1) return one(0);
    pool_.run_chunks(B, [&](int b, int) { one(b); });
}

}  // namespace glimpse
