// LlamaBatch on a Vulkan device, on the embedded tiny SmolVLM's text model: several sequences
// decoded together (LlamaVulkanRun::decode_batch, the host drawing their tokens from the logits),
// picked together on the device (LlamaVulkanRun::decode_greedy_batch through
// LlamaBatch::decode_greedy), and their prompts run together (LlamaVulkanRun::prefill_batch
// through LlamaBatch::prefill), against each sequence run alone.
#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/ops.h"
#include "core/thread_pool.h"
#include "tests/batch_steps.h"
#include "tests/helpers.h"
#include "tests/test_vk_helpers.h"
#include "tests/vk_forward_common.h"
#include "text/llama_batch.h"
#include "text/llama_forward.h"
#include "text/llama_forward_vk.h"
#include "text/llama_model.h"

using namespace glimpse;
using namespace glimpse::test;

// LlamaBatch on the device (LlamaVulkanRun::decode_batch): the sequences of a pass in one
// command stream, each weight read once for all of them, each sequence attending over its own
// caches; against each sequence stepped alone on the device (where the run cannot batch, the
// contexts step alone: the same steps either way).
TEST_CASE("vulkan batched decode: sequences stepped together on the device as each alone", "[vulkan][vk_forward]") {
    VK_OR_SKIP(shared_ctx);
    struct Case {
        const char* name;
        bool fuse_norms, fuse_rope, batched;
        const char* attention;
    };
    const Case c = GENERATE(Case{"together", false, true, true, "attention_qkv"},
                            Case{"together, norms fused", true, true, true, "attention_qkv"},
                            Case{"alone (rope apart)", false, false, false, "attention"});
    INFO(c.name);
    auto ctx = context_with(shared_ctx, [&](vk::ContextOptions& o) {
        o.fuse_norms = c.fuse_norms;
        o.fuse_rope = c.fuse_rope;
    });
    const LlamaModel cpu_model = open_llama_model(kText.string());
    LlamaModel vk_model = cpu_model;
    vk_model.vulkan = upload_llama_weights(ctx, cpu_model);
    const int V = cpu_model.config.n_vocab, layers = cpu_model.config.n_layers;
    ThreadPool pool(1);
    // Prompts of 1 to 9 tokens; greedy steps per sequence, some leaving early (0: none).
    const std::vector<std::vector<int32_t>> prompts = {
        {1, 40, 41, 42, 43, 44, 45, 46, 47}, {1}, {1, 200, 17}, {1, 5, 6, 7, 8, 9}, {1, 299, 298, 100}};
    const std::vector<int> steps = {10, 3, 10, 0, 6};
    const size_t B = prompts.size();
    std::vector<std::vector<int32_t>> want_tokens(B);
    std::vector<std::vector<std::vector<float>>> want_logits(B);
    std::vector<std::unique_ptr<LlamaContext>> ctxs;
    std::vector<std::vector<float>> last(B, std::vector<float>(static_cast<size_t>(V)));
    // On from the start: a one-token prompt records the next step ahead, timed or not.
    const bool timed = ctx->set_profiling(true);
    for (size_t s = 0; s < B; ++s) {
        LlamaContext alone(vk_model, pool, 32);
        std::vector<float> logits(static_cast<size_t>(V));
        alone.forward(prompts[s].data(), int(prompts[s].size()), 0, logits.data());
        for (int i = 0; i < steps[s]; ++i) {
            const int32_t id = argmax(logits);
            want_tokens[s].push_back(id);
            alone.forward(&id, 1, alone.n_past(), logits.data());
            want_logits[s].push_back(logits);
        }
        ctxs.push_back(std::make_unique<LlamaContext>(vk_model, pool, 32));
        ctxs[s]->forward(prompts[s].data(), int(prompts[s].size()), 0, last[s].data());
    }
    REQUIRE(ctxs[0]->on_vulkan());
    LlamaBatch batch(vk_model, pool, /*max_seqs=*/3);  // 4 sequences going: passes of 3 and 1
    (void)ctx->take_profile();
    std::vector<std::vector<int32_t>> got_tokens(B);
    std::vector<LlamaContext*> seqs;
    for (auto& q : ctxs) seqs.push_back(q.get());
    size_t prev_live = 0;
    test::greedy_batch_steps(
        batch, seqs, steps, last, got_tokens,
        [&](int i, size_t s) { require_close(last[s], want_logits[s][size_t(i)], 1e-4f, 1e-4f); },
        [&](int i, size_t n_live) {
            if (!timed) return;
            // Together: one submission a pass. Alone: one a sequence. Either way one attention
            // a sequence and layer.
            INFO("step " << i);
            const vk::DeviceProfile p = ctx->take_profile();
            const uint64_t passes = (n_live + 2) / 3;
            CHECK(p.submissions == (c.batched ? passes : n_live));
            CHECK(p.shaders.count(c.attention) == 1);
            if (p.shaders.count(c.attention))
                CHECK(p.shaders.at(c.attention).dispatches == uint64_t(layers) * n_live);
            if (c.batched) {
                // Each pass's next step is recorded while the device runs this one, and used
                // when the next step has the same sequences: every stream of a step ran from
                // such a recording but the first step's and those after a sequence stopped.
                const bool same = i > 0 && n_live == prev_live;
                CHECK(p.record_ms > 0);
                CHECK((p.record_ahead_ms == p.record_ms) == same);
            }
            prev_live = n_live;
        });
    for (size_t s = 0; s < B; ++s) {
        INFO("sequence " << s);
        CHECK(got_tokens[s] == want_tokens[s]);
        CHECK(ctxs[s]->n_past() == int(prompts[s].size()) + steps[s]);
    }
    CHECK(ctxs[0]->timings().decode_tokens == 10);
    CHECK(ctxs[0]->timings().decode_ms > 0);
    // A sequence stepped alone after the batch continues from the caches the batch wrote.
    const int32_t id = argmax(last[0]);
    LlamaContext alone(vk_model, pool, 32);
    std::vector<float> want(static_cast<size_t>(V)), got(static_cast<size_t>(V));
    std::vector<int32_t> all = prompts[0];
    all.insert(all.end(), want_tokens[0].begin(), want_tokens[0].end());
    all.push_back(id);
    alone.forward(all.data(), int(all.size()), 0, want.data());
    ctxs[0]->forward(&id, 1, ctxs[0]->n_past(), got.data());
    require_close(got, want, kAbs, kRel);
}

TEST_CASE("vulkan batched greedy decoding: sequences picked together on the device as each alone, ended by "
          "keep or a full context",
          "[vulkan][vk_forward]") {
    VK_OR_SKIP(shared_ctx);
    const bool ahead = GENERATE(true, false);
    INFO("record_ahead " << ahead);
    auto ctx = context_with(shared_ctx, [&](vk::ContextOptions& o) {
        o.greedy_pick = true;
        o.record_ahead = ahead;
    });
    const LlamaModel cpu_model = open_llama_model(kText.string());
    LlamaModel vk_model = cpu_model;
    vk_model.vulkan = upload_llama_weights(ctx, cpu_model);
    ThreadPool pool(1);
    // Prompts of 1 to 9 tokens; picks each sequence keeps (keep says no at the last), and
    // sequence 2's context of 14 positions, which it fills after 11 picks (keep never says no).
    const std::vector<std::vector<int32_t>> prompts = {
        {1, 40, 41, 42, 43, 44, 45, 46, 47}, {1}, {1, 200, 17}, {1, 5, 6, 7, 8, 9}, {1, 299, 298, 100}};
    const std::vector<int> picks = {10, 3, 11, 1, 6};
    const std::vector<int> n_ctx = {32, 32, 14, 32, 32};
    const size_t B = prompts.size();
    std::vector<std::unique_ptr<LlamaContext>> ctxs, cpu_ctxs;
    std::vector<int32_t> first;
    for (size_t s = 0; s < B; ++s) {
        ctxs.push_back(std::make_unique<LlamaContext>(vk_model, pool, n_ctx[s]));
        cpu_ctxs.push_back(std::make_unique<LlamaContext>(cpu_model, pool, n_ctx[s]));
        std::vector<float> logits(static_cast<size_t>(cpu_model.config.n_vocab));
        cpu_ctxs[s]->forward(prompts[s].data(), int(prompts[s].size()), 0, logits.data());
        ctxs[s]->forward(prompts[s].data(), int(prompts[s].size()), 0, logits.data());
        first.push_back(argmax(logits));
    }
    REQUIRE(ctxs[0]->greedy_on_device());
    // Each alone on the device (LlamaContext::decode_greedy), the reference.
    std::vector<std::vector<int32_t>> want(B);
    for (size_t s = 0; s < B; ++s) {
        LlamaContext alone(vk_model, pool, n_ctx[s]);
        std::vector<float> logits(static_cast<size_t>(cpu_model.config.n_vocab));
        alone.forward(prompts[s].data(), int(prompts[s].size()), 0, logits.data());
        want[s].resize(size_t(n_ctx[s]));
        int seen = 0;
        want[s].resize(size_t(alone.decode_greedy(first[s], n_ctx[s] - alone.n_past(), want[s].data(),
                                                  [&](int32_t) { return ++seen < picks[s]; })));
        REQUIRE(int(want[s].size()) == picks[s]);
    }
    // Together: on the device (passes of at most 3), and through the host's argmax on the CPU.
    for (auto* set : {&ctxs, &cpu_ctxs}) {
        const bool device = set == &ctxs;
        INFO((device ? "vulkan" : "cpu"));
        LlamaBatch batch(device ? vk_model : cpu_model, pool, /*max_seqs=*/3);
        std::vector<LlamaContext*> seqs;
        for (auto& c : *set) seqs.push_back(c.get());
        CHECK(LlamaBatch::greedy_together(seqs) == device);
        std::vector<std::vector<int32_t>> got(B);
        bool n_past_right = true;
        const bool timed = device && ctx->set_profiling(true);
        (void)ctx->take_profile();
        batch.decode_greedy(seqs.data(), first.data(), int(B), [&](int b, int32_t pick, int n_past) {
            auto& g = got[size_t(b)];
            g.push_back(pick);
            n_past_right = n_past_right && n_past == int(prompts[size_t(b)].size() + g.size());
            return b == 2 || int(g.size()) < picks[size_t(b)];
        });
        CHECK(n_past_right);
        for (size_t s = 0; s < B; ++s) {
            INFO("sequence " << s);
            CHECK(got[s] == want[s]);
            CHECK(seqs[s]->n_past() == int(prompts[s].size()) + picks[s]);
        }
        if (timed) {
            // Picks made on the device a row at a time, no logits coming back, and each
            // stream after a pass's first recorded while the one before ran.
            const vk::DeviceProfile p = ctx->take_profile();
            CHECK(p.shaders.count("greedy_pick") == 1);
            CHECK(p.shaders.count("get_rows_f32") == 1);
            CHECK((p.record_ahead_ms > 0) == ahead);
            // One submission a step that ran. Recording ahead: passes {0,1,2} of 4 steps (1
            // ends at step 2; 0 and 2 take step 3, in flight then), {0,2,3} of 2 (3 ends at
            // once), {0,2,4} of 5 (0 ends at step 3; 2, full after step 4, and 4 take it), {4}
            // of 2 (it ends at step 0, step 1 forgotten). In turn: {0,1,2} 3, {0,2,3} 1,
            // {0,2,4} 6, {2} 1. Without the step in flight taken, the first would be 14.
            CHECK(p.submissions == (ahead ? 13u : 11u));
        }
        CHECK(seqs[0]->timings().decode_tokens == 10);
    }
    // A sequence goes on after the batch from the caches it wrote: sequence 0 fed one more token
    // gives the CPU's logits.
    const int32_t id = want[0].back();
    std::vector<float> lw(static_cast<size_t>(cpu_model.config.n_vocab)), lg(lw.size());
    cpu_ctxs[0]->forward(&id, 1, cpu_ctxs[0]->n_past(), lw.data());
    ctxs[0]->forward(&id, 1, ctxs[0]->n_past(), lg.data());
    require_close(lg, lw, kAbs, kRel);
    // Errors as decode()'s, before anything runs.
    LlamaBatch batch(vk_model, pool, 3);
    std::vector<LlamaContext*> twice = {ctxs[0].get(), ctxs[0].get()};
    CHECK_THROWS_WITH(batch.decode_greedy(twice.data(), first.data(), 2, [](int, int32_t, int) { return true; }),
                      Catch::Contains("the same context"));
    std::vector<LlamaContext*> full = {ctxs[2].get()};
    CHECK_THROWS_WITH(batch.decode_greedy(full.data(), first.data(), 1, [](int, int32_t, int) { return true; }),
                      Catch::Contains("fills its context"));
}

// LlamaBatch::prefill on the device (LlamaVulkanRun::prefill_batch): the prompts of a pass in
// one submission, every weight product over all their rows, each prompt rotated, cached and
// attending in its own context; against each prompt run alone on the device (and the CPU).
// With batch_prefill off, LlamaBatch runs each prompt alone: the same figures, a submission each.
TEST_CASE("vulkan batched prefill: prompts run together on the device as each alone, then decoded on",
          "[vulkan][vk_forward]") {
    VK_OR_SKIP(shared_ctx);
    const bool on = GENERATE(true, false);
    INFO("batch_prefill " << on);
    auto ctx = context_with(shared_ctx, [&](vk::ContextOptions& o) { o.batch_prefill = on; });
    const LlamaModel cpu_model = open_llama_model(kText.string());
    LlamaModel vk_model = cpu_model;
    vk_model.vulkan = upload_llama_weights(ctx, cpu_model);
    const int V = cpu_model.config.n_vocab, D = cpu_model.config.n_embd, layers = cpu_model.config.n_layers;
    ThreadPool pool(1);
    // Prompts of 20, 3, 45, 1, 17 and 30 rows (the short ones rotated inside attention_qkv, the
    // long ones by rope_qkv), sequences 1 and 4 after a prefix already cached. Passes of 64 rows
    // (n_batch) and 3 sequences at most, in order: {20, 3} (45 more would pass 64), {45, 1, 17}
    // and {30}.
    struct Seq {
        int prefix, rows;
    };
    const std::vector<Seq> seqs = {{0, 20}, {5, 3}, {0, 45}, {0, 1}, {2, 17}, {0, 30}};
    const int n_batch = 64;
    const size_t B = seqs.size();
    std::vector<std::vector<int32_t>> ids(B);
    std::vector<std::vector<float>> embd(B);
    for (size_t s = 0; s < B; ++s) {
        for (int i = 0; i < seqs[s].prefix + seqs[s].rows; ++i)
            ids[s].push_back(int32_t((s * 37 + size_t(i) * 11) % size_t(V)));
        embd[s].resize(size_t(seqs[s].rows) * size_t(D));
        ops::get_rows(cpu_model.weights.token_embd, ids[s].data() + seqs[s].prefix, seqs[s].rows, embd[s].data());
    }
    auto contexts = [&](const LlamaModel& m) {
        std::vector<std::unique_ptr<LlamaContext>> out;
        std::vector<float> scratch(static_cast<size_t>(V));
        for (size_t s = 0; s < B; ++s) {
            out.push_back(std::make_unique<LlamaContext>(m, pool, 96, n_batch));
            if (seqs[s].prefix > 0) out.back()->forward(ids[s].data(), seqs[s].prefix, 0, scratch.data());
        }
        return out;
    };
    auto alone = contexts(vk_model), cpu = contexts(cpu_model), together = contexts(vk_model);
    REQUIRE(together[0]->on_vulkan());
    REQUIRE(LlamaBatch::prefills_together(*together[0]) == on);
    REQUIRE(LlamaBatch::steps_together(*together[0]));  // decode batches either way
    std::vector<std::vector<float>> want(B, std::vector<float>(static_cast<size_t>(V)));
    std::vector<std::vector<float>> want_cpu = want;
    for (size_t s = 0; s < B; ++s) {
        alone[s]->forward_embeddings(embd[s].data(), seqs[s].rows, seqs[s].prefix, want[s].data(), LogitRows::Last);
        cpu[s]->forward_embeddings(embd[s].data(), seqs[s].rows, seqs[s].prefix, want_cpu[s].data(), LogitRows::Last);
    }
    LlamaBatch batch(vk_model, pool, /*max_seqs=*/3);
    std::vector<LlamaContext*> ptrs;
    std::vector<const float*> rows;
    std::vector<int> n_tokens;
    for (size_t s = 0; s < B; ++s) {
        ptrs.push_back(together[s].get());
        rows.push_back(embd[s].data());
        n_tokens.push_back(seqs[s].rows);
    }
    const bool timed = ctx->set_profiling(true);
    (void)ctx->take_profile();
    std::vector<float> logits(B * size_t(V));
    batch.prefill(ptrs.data(), rows.data(), n_tokens.data(), int(B), logits.data());
    if (timed) {
        const vk::DeviceProfile p = ctx->take_profile();
        CHECK(p.submissions == (on ? 3u : 6u));  // one a pass, or a prompt
        // Per layer, each sequence's attention, together as alone: attention_qkv for the 3 and
        // the 1 rows; rope_qkv and the causal attention for the others.
        CHECK(p.shaders.at("attention_qkv").dispatches == uint64_t(layers) * 2);
        CHECK(p.shaders.at("rope_qkv").dispatches == uint64_t(layers) * 4);
    }
    for (size_t s = 0; s < B; ++s) {
        INFO("sequence " << s << ": " << seqs[s].rows << " rows after " << seqs[s].prefix);
        const std::vector<float> got(logits.begin() + std::ptrdiff_t(s * size_t(V)),
                                     logits.begin() + std::ptrdiff_t((s + 1) * size_t(V)));
        require_close(got, want[s], 1e-4f, 1e-4f);
        require_close(got, want_cpu[s], kAbs, kRel);
        CHECK(together[s]->n_past() == seqs[s].prefix + seqs[s].rows);
        const LlamaTimings& tm = together[s]->timings();  // (a one-row prompt alone counts as decode)
        CHECK(tm.prefill_tokens + tm.decode_tokens == seqs[s].prefix + seqs[s].rows);
        // The caches the batch wrote: a step decoded on gives what it gives after the prompt alone.
        const int32_t next = argmax(got);
        std::vector<float> a(static_cast<size_t>(V)), t(static_cast<size_t>(V));
        alone[s]->forward(&next, 1, alone[s]->n_past(), a.data());
        together[s]->forward(&next, 1, together[s]->n_past(), t.data());
        require_close(t, a, 1e-4f, 1e-4f);
    }
    // A prompt that does not fit its context is refused before anything runs.
    std::vector<float> big(size_t(90) * size_t(D));
    const float* big_rows[] = {embd[0].data(), big.data()};
    const int big_n[] = {20, 90};
    LlamaContext* two[] = {together[0].get(), together[1].get()};
    const int past0 = together[0]->n_past();
    CHECK_THROWS_AS(batch.prefill(two, big_rows, big_n, 2, logits.data()), Error);
    CHECK(together[0]->n_past() == past0);
}
