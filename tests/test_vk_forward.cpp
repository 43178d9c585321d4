// The forward passes on Vulkan (text/llama_forward_vk.h) against the CPU forward, on the
// embedded tiny SmolVLM (weights/tiny) and whatever Vulkan device exists (lavapipe in CI):
// logits of a prefill and of decode steps within a tolerance, a rewind, the vision tower's
// features and image embeddings, and the same greedy answer about an example scene; greedy
// picks made on the device (decode steps, generate(), a conversation) against the host's.
// Several sequences decoded together: test_vk_batch.cpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/quant.h"
#include "core/thread_pool.h"
#include "fusion/session.h"
#include "fusion/vlm.h"
#include "tests/test_vk_helpers.h"
#include "tests/vk_forward_common.h"
#include "text/generation.h"
#include "text/llama_forward.h"
#include "text/llama_forward_vk.h"
#include "text/sampler.h"
#include "vision/image.h"
#include "vision/vit_forward.h"
#include "vision/vit_forward_vk.h"
#include "tests/helpers.h"

using namespace glimpse;
using namespace glimpse::test;
namespace fs = std::filesystem;

namespace {

// `steps` greedy decode steps on both contexts from the logits in lw, each step's logits (lw
// on the CPU, lg on the device) within tolerance; after_step(step), if given, after each.
void decode_steps(LlamaContext& cpu, LlamaContext& gpu, int steps, std::vector<float>& lw, std::vector<float>& lg,
                  const std::function<void(int)>& after_step = {}) {
    for (int step = 0; step < steps; ++step) {
        INFO("decode step " << step);
        int32_t next = argmax(lw);
        cpu.forward(&next, 1, cpu.n_past(), lw.data());
        gpu.forward(&next, 1, gpu.n_past(), lg.data());
        require_close(lg, lw, kAbs, kRel);
        REQUIRE(argmax(lg) == argmax(lw));
        if (after_step) after_step(step);
    }
}

}  // namespace

TEST_CASE("vulkan text forward: prefill, decode steps and a rewind match the CPU", "[vulkan][vk_forward]") {
    VK_OR_SKIP(ctx);
    const LlamaModel cpu_model = open_llama_model(kText.string());
    LlamaModel vk_model = cpu_model;
    vk_model.vulkan = upload_llama_weights(borrow(ctx), cpu_model);
    ThreadPool pool(1);
    // n_batch 8 < the prompt: the prefill goes through in several batches on both sides.
    LlamaContext cpu(cpu_model, pool, 64, 8);
    LlamaContext gpu(vk_model, pool, 64, 8);
    REQUIRE(gpu.on_vulkan());
    REQUIRE_FALSE(cpu.on_vulkan());
    const int64_t V = cpu_model.config.n_vocab;
    std::vector<int32_t> prompt;
    for (int i = 0; i < 13; ++i) prompt.push_back(int32_t((i * 37 + 5) % V));

    std::vector<float> want(size_t(13 * V)), got(size_t(13 * V));
    cpu.forward(prompt.data(), 13, 0, want.data(), LogitRows::All);
    gpu.forward(prompt.data(), 13, 0, got.data(), LogitRows::All);
    require_close(got, want, kAbs, kRel);
    CHECK(gpu.n_past() == 13);

    std::vector<float> lw(static_cast<size_t>(V)), lg(static_cast<size_t>(V));
    int32_t next = argmax(std::vector<float>(want.end() - V, want.end()));
    for (int step = 0; step < 5; ++step) {
        INFO("decode step " << step);
        cpu.forward(&next, 1, cpu.n_past(), lw.data());
        gpu.forward(&next, 1, gpu.n_past(), lg.data());
        require_close(lg, lw, kAbs, kRel);
        REQUIRE(argmax(lg) == argmax(lw));
        next = argmax(lw);
    }
    CHECK(gpu.n_past() == 18);

    // A rewind to position 10 forgets the rest, on the device too.
    cpu.forward(prompt.data() + 3, 4, 10, lw.data());
    gpu.forward(prompt.data() + 3, 4, 10, lg.data());
    require_close(lg, lw, kAbs, kRel);
    CHECK(gpu.n_past() == 14);
    gpu.reset();
    CHECK(gpu.n_past() == 0);

    // Attention capture (glimpse inspect) is CPU-only and says so.
    AttentionCapture cap;
    gpu.set_attention_capture(&cap);
    CHECK_THROWS_WITH(gpu.forward(prompt.data(), 2, 0, lg.data()), Catch::Contains("CPU only"));
}

TEST_CASE("vulkan text forward as on a discrete GPU: unmappable memory, norms fused; one submission a decode step",
          "[vulkan][vk_forward]") {
    VK_OR_SKIP(shared_ctx);
    vk::ContextOptions o;
    o.map_device_memory = false;  // weights, activations and the KV cache as on a discrete GPU
    o.fuse_norms = true;          // what a GPU gets by default (the other tests: lavapipe's unfused)
    auto ctx = std::make_shared<vk::Context>(shared_ctx->info().index, o);
    const LlamaModel cpu_model = open_llama_model(kText.string());
    LlamaModel vk_model = cpu_model;
    vk_model.vulkan = upload_llama_weights(ctx, cpu_model);
    ThreadPool pool(1);
    LlamaContext cpu(cpu_model, pool, 32, 8);
    LlamaContext gpu(vk_model, pool, 32, 8);
    REQUIRE(gpu.on_vulkan());
    const int64_t V = cpu_model.config.n_vocab;
    std::vector<int32_t> prompt = {1, 7, 300, 42, 5};
    std::vector<float> lw(static_cast<size_t>(V)), lg(static_cast<size_t>(V));
    cpu.forward(prompt.data(), 5, 0, lw.data());
    gpu.forward(prompt.data(), 5, 0, lg.data());
    require_close(lg, lw, kAbs, kRel);
    const bool timed = ctx->set_profiling(true);
    decode_steps(cpu, gpu, 3, lw, lg, [&](int step) {
        // The input row and position go in, and the logits come out, inside the step's own
        // command stream: no staged copy before or after it.
        // Every norm rides on a matvec.
        // From the second step on, the step was recorded while the device ran the one before.
        if (timed) {
            const vk::DeviceProfile p = ctx->take_profile();
            CHECK(p.submissions == 1);
            CHECK(p.shaders.count("rms_norm") == 0);
            CHECK(p.shaders.count("matvec_f32_sg") + p.shaders.count("matvec_f32") == 1);
            // Q, K and V are one matvec a layer, rotated and split by the attention.
            CHECK(p.shaders.count("rope") == 0);
            CHECK(p.shaders.count("rope_qkv") == 0);
            CHECK(p.shaders.count("attention") == 0);
            CHECK(p.shaders.count("attention_qkv") == 1);
            CHECK(p.record_ms > 0);
            if (step == 0) CHECK(p.record_ahead_ms == 0);
            else CHECK(p.record_ahead_ms == p.record_ms);
        }
    });
    // A step at another position than the one recorded ahead (a rewind) is recorded anew.
    int32_t next = argmax(lw);
    cpu.forward(&next, 1, 3, lw.data());
    gpu.forward(&next, 1, 3, lg.data());
    require_close(lg, lw, kAbs, kRel);
    if (timed) CHECK(ctx->take_profile().record_ahead_ms == 0);
    next = argmax(lw);
    cpu.forward(&next, 1, 4, lw.data());
    gpu.forward(&next, 1, 4, lg.data());
    require_close(lg, lw, kAbs, kRel);
    if (timed) CHECK(ctx->take_profile().record_ahead_ms > 0);
}

namespace {

// The same tensor in type `type` (rounded by quantize_row), owning its storage.
Tensor converted(const Tensor& t, DType type) {
    Tensor out = t;
    out.dtype = type;
    out.nb = contiguous_strides(type, t.ne);
    auto buf = std::shared_ptr<uint8_t[]>(new uint8_t[out.bytes()]);
    std::vector<float> row(static_cast<size_t>(t.ne[0]));
    for (int64_t r = 0; r < t.rows(); ++r) {
        dequantize_row(t.dtype, t.row(r), row.data(), t.ne[0]);
        quantize_row(type, row.data(), buf.get() + uint64_t(r) * out.nb[1], t.ne[0]);
    }
    out.data = buf.get();
    out.storage = std::shared_ptr<const void>(buf, buf.get());
    return out;
}

}  // namespace

TEST_CASE("vulkan text forward: Q, K and V stacked or apart (by the option, by mixed types), rotated in the "
          "attention or before it, match the CPU",
          "[vulkan][vk_forward]") {
    VK_OR_SKIP(shared_ctx);
    const LlamaModel cpu_model = open_llama_model(kText.string());
    // The same model with wv in F16: its three projections cannot share one matrix.
    LlamaModel mixed = cpu_model;
    for (LlamaLayerWeights& L : mixed.weights.layers) L.wv = converted(L.wv, DType::F16);
    struct Case {
        const char* name;
        bool fuse, fuse_rope;
        const LlamaModel* model;
        bool stacked;
        const char* rotation;  // the decode step's shader that rotates Q and K
    };
    for (const Case c : {Case{"fused", true, true, &cpu_model, true, "attention_qkv"},
                         Case{"rope apart", true, false, &cpu_model, true, "rope_qkv"},
                         Case{"option off", false, true, &cpu_model, false, "rope"},
                         Case{"mixed types", true, true, &mixed, false, "rope"}}) {
        INFO(c.name);
        auto ctx = context_with(shared_ctx, [&](vk::ContextOptions& o) {
            o.fuse_qkv = c.fuse;
            o.fuse_rope = c.fuse_rope;
            o.fuse_norms = true;  // decode takes the matvec with its norm prologue, prefill the tiled matmul
        });
        LlamaModel vk_model = *c.model;
        vk_model.vulkan = upload_llama_weights(ctx, *c.model);
        for (const auto& L : vk_model.vulkan->layers) CHECK(L.qkv_stacked == c.stacked);
        ThreadPool pool(1);
        LlamaContext cpu(*c.model, pool, 64, 16);
        LlamaContext gpu(vk_model, pool, 64, 16);
        const int64_t V = c.model->config.n_vocab;
        std::vector<int32_t> prompt;
        for (int i = 0; i < 27; ++i) prompt.push_back(int32_t((i * 53 + 2) % V));
        std::vector<float> lw(static_cast<size_t>(V)), lg(static_cast<size_t>(V));
        // 11 tokens (attention_qkv takes them where it is on), then 16 more (rope_qkv: too many rows).
        cpu.forward(prompt.data(), 11, 0, lw.data());
        gpu.forward(prompt.data(), 11, 0, lg.data());
        require_close(lg, lw, kAbs, kRel);
        cpu.forward(prompt.data() + 11, 16, 11, lw.data());
        gpu.forward(prompt.data() + 11, 16, 11, lg.data());
        require_close(lg, lw, kAbs, kRel);
        const bool timed = ctx->set_profiling(true);
        decode_steps(cpu, gpu, 3, lw, lg);
        if (timed) {
            const vk::DeviceProfile p = ctx->take_profile();
            for (const char* shader : {"attention_qkv", "rope_qkv", "rope"}) {
                INFO(shader);
                CHECK(p.shaders.count(shader) == (std::string(shader) == c.rotation ? 1u : 0u));
            }
        }
    }
}

TEST_CASE("vulkan text forward: a BF16 model (matrices and embeddings) matches the CPU", "[vulkan][vk_forward]") {
    VK_OR_SKIP(ctx);
    LlamaModel cpu_model = open_llama_model(kText.string());
    const bool tied = cpu_model.weights.output.data == cpu_model.weights.token_embd.data;
    cpu_model.weights.token_embd = converted(cpu_model.weights.token_embd, DType::BF16);
    cpu_model.weights.output = tied ? cpu_model.weights.token_embd : converted(cpu_model.weights.output, DType::BF16);
    for (LlamaLayerWeights& L : cpu_model.weights.layers)
        for (Tensor* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
            if (&L != &cpu_model.weights.layers[0] || w != &L.w_up) *w = converted(*w, DType::BF16);
    LlamaModel vk_model = cpu_model;
    vk_model.vulkan = upload_llama_weights(borrow(ctx), cpu_model);
    // Layer 0's gate (BF16) and up (left F32) cannot share the GLU matmul: two matmuls and
    // swiglu there, the GLU matmul in the other layers.
    REQUIRE(cpu_model.weights.layers.size() > 1);
    CHECK_FALSE(vk_model.vulkan->layers[0].stacked);
    CHECK(vk_model.vulkan->layers[1].stacked);
    ThreadPool pool(1);
    LlamaContext cpu(cpu_model, pool, 64);
    LlamaContext gpu(vk_model, pool, 64);
    REQUIRE(gpu.on_vulkan());
    const int64_t V = cpu_model.config.n_vocab;
    std::vector<int32_t> prompt;
    for (int i = 0; i < 9; ++i) prompt.push_back(int32_t((i * 53 + 11) % V));
    std::vector<float> want(size_t(9 * V)), got(size_t(9 * V));  // 9 rows: the tiled kernel
    cpu.forward(prompt.data(), 9, 0, want.data(), LogitRows::All);
    gpu.forward(prompt.data(), 9, 0, got.data(), LogitRows::All);
    require_close(got, want, kAbs, kRel);
    std::vector<float> lw(static_cast<size_t>(V)), lg(static_cast<size_t>(V));
    const int32_t next = argmax(std::vector<float>(want.end() - V, want.end()));
    cpu.forward(&next, 1, cpu.n_past(), lw.data());  // one row: the matvec kernel
    gpu.forward(&next, 1, gpu.n_past(), lg.data());
    require_close(lg, lw, kAbs, kRel);
}

namespace {

// A context on the test's device that picks greedy tokens on the device, or on the host.
std::shared_ptr<vk::Context> greedy_context(vk::Context* ctx, bool on_device) {
    return context_with(ctx, [&](vk::ContextOptions& o) { o.greedy_pick = on_device; });
}

}  // namespace

TEST_CASE("vulkan greedy decoding on the device: the host's picks, each step submitted before the host sees "
          "the last, stopped early",
          "[vulkan][vk_forward]") {
    VK_OR_SKIP(shared_ctx);
    const LlamaModel cpu_model = open_llama_model(kText.string());
    const auto on = greedy_context(shared_ctx, true), off = greedy_context(shared_ctx, false);
    LlamaModel on_model = cpu_model, off_model = cpu_model;
    on_model.vulkan = upload_llama_weights(on, cpu_model);
    off_model.vulkan = upload_llama_weights(off, cpu_model);
    ThreadPool pool(1);
    LlamaContext cpu(cpu_model, pool, 32, 8), gpu(on_model, pool, 32, 8), host(off_model, pool, 32, 8);
    REQUIRE(gpu.greedy_on_device());
    REQUIRE_FALSE(host.greedy_on_device());
    REQUIRE_FALSE(cpu.greedy_on_device());
    const int V = cpu_model.config.n_vocab;
    const std::vector<int32_t> prompt = {1, 7, 300, 42, 5, 9, 77};
    std::vector<float> logits(static_cast<size_t>(V));
    auto restart = [&](LlamaContext& c) {
        c.forward(prompt.data(), 7, 0, logits.data());
        return argmax(logits);
    };
    const int32_t first = restart(cpu);
    auto all = [](int32_t) { return true; };

    // 12 steps: the same picks as the host makes from the device's logits, and as the CPU's.
    std::vector<int32_t> want(12), got(12), picked_by_host(12);
    REQUIRE(restart(gpu) == first);
    restart(host);
    const bool timed = on->set_profiling(true);
    CHECK(gpu.decode_greedy(first, 12, got.data(), all) == 12);
    CHECK(gpu.n_past() == 19);
    if (timed) {
        // One submission a step, each but the first recorded while the one before ran; every
        // step picks on the device and reads its embedding row there.
        const vk::DeviceProfile p = on->take_profile();
        CHECK(p.submissions == 12);
        CHECK(p.shaders.at("greedy_pick").dispatches == 12);
        CHECK(p.shaders.at("get_rows_f32").dispatches == 12);
        CHECK(p.record_ahead_ms > 0);
    }
    CHECK(host.decode_greedy(first, 12, picked_by_host.data(), all) == 12);
    CHECK(cpu.decode_greedy(first, 12, want.data(), all) == 12);
    CHECK(got == picked_by_host);
    CHECK(got == want);
    CHECK(gpu.timings().decode_tokens == 12);

    // Stopped at the fifth pick: the step in flight is forgotten, and the next token fed (not the
    // pick) at position 12 gives the CPU's logits.
    for (LlamaContext* c : {&gpu, &cpu}) {
        INFO((c->on_vulkan() ? "vulkan" : "cpu"));
        restart(*c);
        int seen = 0;
        std::vector<int32_t> five(12, -1);
        CHECK(c->decode_greedy(first, 12, five.data(), [&](int32_t) { return ++seen < 5; }) == 5);
        CHECK(seen == 5);
        CHECK(std::vector<int32_t>(five.begin(), five.begin() + 5) == std::vector<int32_t>(want.begin(), want.begin() + 5));
        CHECK(c->n_past() == 12);
    }
    const int32_t other = (want[4] + 1) % V;
    std::vector<float> lw(static_cast<size_t>(V)), lg(static_cast<size_t>(V));
    cpu.forward(&other, 1, cpu.n_past(), lw.data());
    gpu.forward(&other, 1, gpu.n_past(), lg.data());
    require_close(lg, lw, kAbs, kRel);
    // And a greedy run goes on from there as the CPU's does; one step alone, and none.
    int32_t a = -1, b = -1;
    CHECK(gpu.decode_greedy(other, 1, &a, all) == 1);
    CHECK(cpu.decode_greedy(other, 1, &b, all) == 1);
    CHECK(a == b);
    CHECK(gpu.decode_greedy(a, 0, &a, all) == 0);
    CHECK(gpu.n_past() == 14);

    // What does not fit is refused before anything runs.
    CHECK_THROWS_WITH(gpu.decode_greedy(a, 19, got.data(), all), Catch::Contains("do not fit in the context of 32"));
    CHECK_THROWS_WITH(gpu.decode_greedy(V, 1, got.data(), all), Catch::Contains("outside the vocabulary"));
    CHECK(gpu.n_past() == 14);
}

TEST_CASE("vulkan generation with greedy picks on the device: the host loop's tokens, stops and n_past",
          "[vulkan][vk_forward]") {
    VK_OR_SKIP(shared_ctx);
    const LlamaModel cpu_model = open_llama_model(kText.string());
    const auto on = greedy_context(shared_ctx, true);
    LlamaModel on_model = cpu_model;
    on_model.vulkan = upload_llama_weights(on, cpu_model);
    ThreadPool pool(1);
    const std::vector<int32_t> prompt = {1, 7, 300, 42, 5, 9, 77};
    struct Case {
        const char* name;
        int max_tokens = 16, n_ctx = 64;
        int stop_at = -1;      // the reference's token at this index is a stop token
        int callback_at = -1;  // on_token says stop at this token
        float penalty = 1.0f;  // not 1: the host draws
    };
    const Case c = GENERATE(Case{"max_tokens"}, Case{"stop token", 16, 64, 4}, Case{"on_token", 16, 64, -1, 3},
                            Case{"full context", 30, 15}, Case{"one token", 1}, Case{"penalty", 16, 64, -1, -1, 1.3f});
    INFO(c.name);
    auto run = [&](const LlamaModel& m, const std::vector<int32_t>& stops) {
        LlamaContext ctx(m, pool, c.n_ctx, 8);
        SamplerParams sp;
        sp.repeat_penalty = c.penalty;
        Sampler sampler(sp);
        GenerateOptions opts;
        opts.max_tokens = c.max_tokens;
        opts.stop_tokens = stops;
        int n = 0;
        const GenerateResult r = generate(ctx, prompt, sampler, opts, [&](int32_t) { return n++ != c.callback_at; });
        return std::make_tuple(r.tokens, r.stopped_by_token, r.stopped_by_callback, ctx.n_past());
    };
    std::vector<int32_t> stops;
    if (c.stop_at >= 0) {
        const std::vector<int32_t> ref = std::get<0>(run(cpu_model, {}));
        REQUIRE(int(ref.size()) > c.stop_at);
        // The first token from stop_at on that did not come before.
        for (int i = c.stop_at; i < int(ref.size()) && stops.empty(); ++i)
            if (std::find(ref.begin(), ref.begin() + i, ref[size_t(i)]) == ref.begin() + i) stops = {ref[size_t(i)]};
        INFO(::Catch::Detail::stringify(ref));
        REQUIRE(stops.size() == 1);
    }
    const bool timed = on->set_profiling(true);
    const auto got = run(on_model, stops);
    const auto want = run(cpu_model, stops);
    CHECK(std::get<0>(got) == std::get<0>(want));
    CHECK(std::get<1>(got) == std::get<1>(want));
    CHECK(std::get<2>(got) == std::get<2>(want));
    CHECK(std::get<3>(got) == std::get<3>(want));
    if (c.stop_at >= 0) CHECK(std::get<1>(got));
    if (c.callback_at >= 0) CHECK(std::get<2>(got));
    if (timed) {
        // Picked on the device unless the penalty (or a single token) leaves nothing to pick there.
        const vk::DeviceProfile p = on->take_profile();
        CHECK(p.shaders.count("greedy_pick") == (c.penalty == 1.0f && c.max_tokens > 1 ? 1u : 0u));
    }
}

TEST_CASE("vulkan ask: a conversation whose greedy answers are picked on the device answers as on the CPU",
          "[vulkan][vk_forward]") {
    VK_OR_SKIP(shared_ctx);
    const VlmModel cpu_model = open_vlm(kText.string(), kMmproj.string());
    VlmModel gpu_model = open_vlm(kText.string(), kMmproj.string());
    const auto on = greedy_context(shared_ctx, true);
    gpu_model.text.vulkan = upload_llama_weights(on, cpu_model.text);
    ThreadPool pool(1);
    struct Turn {
        std::string text, stop;
        std::vector<int32_t> tokens;
        int n_past = 0, new_positions = 0;
    };
    // Three turns about a scene; the second cut short by max_tokens, the third by the context
    // when n_ctx is small.
    auto converse = [&](const VlmModel& m, int n_ctx) {
        LlamaContext lc(m.text, pool, n_ctx);
        ChatSession s(m, lc, pool, SessionOptions{});
        s.add_image((kSource / "examples" / "scene_1.png").string());
        std::vector<Turn> turns;
        for (const auto& [q, max_tokens] : {std::pair{"Describe this image.", 24}, std::pair{"What is in it?", 2},
                                            std::pair{"Say more.", 24}}) {
            const TurnResult r = s.ask(q, SamplerParams{}, max_tokens, {}, nullptr);
            turns.push_back({r.text, r.stop, r.tokens, s.n_past(), r.new_positions});
        }
        // What the KV cache holds, as the session knows it: a saved conversation lists every
        // call that fed it and the answer's token not fed yet.
        const test::TempDir dir;
        s.save((dir / "chat").string());
        const std::vector<uint8_t> saved = test::read_file(dir / "chat");
        turns.push_back({std::string(saved.begin(), saved.end()), "", {}, 0, 0});
        return turns;
    };
    const std::vector<Turn> want = converse(cpu_model, 512);
    const bool timed = on->set_profiling(true);
    const std::vector<Turn> got = converse(gpu_model, 512);
    if (timed) CHECK(on->take_profile().shaders.count("greedy_pick") == 1);
    CHECK(want[0].tokens.size() >= 3);
    CHECK(want[1].stop == "length");
    // The third turn has room for two answer tokens.
    const int small = want[1].n_past + want[2].new_positions + 2;
    const std::vector<Turn> want_full = converse(cpu_model, small), got_full = converse(gpu_model, small);
    CHECK(want_full[2].stop == "context_full");
    for (const auto& [w, g] : {std::pair{&want, &got}, std::pair{&want_full, &got_full}}) {
        for (size_t t = 0; t < 3; ++t) {
            INFO("n_ctx " << (w == &want ? 512 : small) << ", turn " << t);
            CHECK(g->at(t).tokens == w->at(t).tokens);
            CHECK(g->at(t).text == w->at(t).text);
            CHECK(g->at(t).stop == w->at(t).stop);
            CHECK(g->at(t).n_past == w->at(t).n_past);
        }
        CHECK(g->at(3).text == w->at(3).text);  // the saved conversations, byte for byte
    }
}

namespace {

// The tiny VLM's greedy answer (24 tokens at most) to `prompt` about `img`, on whatever device
// m's towers are; the logits after the prompt into first_logits.
std::vector<int32_t> greedy_answer(const VlmModel& m, const MmPrompt& prompt, const EncodedImage& img,
                                   ThreadPool& pool, std::vector<float>& first_logits) {
    LlamaContext lc(m.text, pool, 512);
    eval_prompt(lc, prompt, {&img}, first_logits);
    std::vector<float> logits = first_logits;
    Sampler sampler(SamplerParams{});
    GenerateOptions opts;
    opts.max_tokens = 24;
    opts.stop_tokens = m.tokenizer->eog_ids();
    return continue_generation(lc, logits, sampler, opts, [](int32_t) { return true; }).tokens;
}

}  // namespace

TEST_CASE("vulkan text forward: the tiny VLM gives the same greedy answer as on the CPU", "[vulkan][vk_forward]") {
    VK_OR_SKIP(ctx);
    VlmModel m = open_vlm(kText.string(), kMmproj.string());
    ThreadPool pool(1);
    const RgbImage scene = load_image((kSource / "examples" / "scene_1.png").string());
    const EncodedImage img = encode_image(m, scene, ImageOptions{}, pool);
    const MmPrompt prompt = build_prompt(m, "Describe this image.", {&img}, std::string());
    std::vector<float> want_logits, got_logits;
    const std::vector<int32_t> want = greedy_answer(m, prompt, img, pool, want_logits);
    // Both towers on the device: the image is encoded there too.
    m.text.vulkan = upload_llama_weights(borrow(ctx), m.text);
    m.vision.vulkan = std::make_shared<VitVulkan>(borrow(ctx), m.vision);
    const EncodedImage img_vk = encode_image(m, scene, ImageOptions{}, pool);
    require_close(img_vk.embd, img.embd, 1e-3f, 1e-3f);
    const std::vector<int32_t> got = greedy_answer(m, prompt, img, pool, got_logits);
    require_close(got_logits, want_logits, kAbs, kRel);
    CHECK(want.size() >= 3);
    CHECK(got == want);
}

TEST_CASE("vulkan: the tiny VLM with its many-row products and its ViT attention on tensor cores (f16 inputs) "
          "answers as on the CPU",
          "[vulkan][vk_forward]") {
    VK_OR_SKIP(ctx);
    // The real kernels where the device has them, else the same kernels emulated: either way
    // both towers' products of more than 8 rows take f16-rounded x and W (the ViT, the
    // projector, prefill), and the ViT's attention f16-rounded q, K, V and P, which is what
    // turning GLIMPSE_VK_COOP_MATMUL on would change.
    const auto cx = context_with(ctx, [](vk::ContextOptions& o) {
        o.coop_matmul = true;
        o.coop_matmul_emulated = true;
    });
    VlmModel m = open_vlm(kText.string(), kMmproj.string());
    ThreadPool pool(1);
    const RgbImage scene = load_image((kSource / "examples" / "scene_1.png").string());
    const EncodedImage img = encode_image(m, scene, ImageOptions{}, pool);
    const MmPrompt prompt = build_prompt(m, "Describe this image.", {&img}, std::string());
    std::vector<float> want_logits, got_logits;
    const std::vector<int32_t> want = greedy_answer(m, prompt, img, pool, want_logits);
    m.text.vulkan = upload_llama_weights(cx, m.text);
    m.vision.vulkan = std::make_shared<VitVulkan>(cx, m.vision);
    cx->set_profiling(true);
    const EncodedImage img_vk = encode_image(m, scene, ImageOptions{}, pool);
    const std::vector<int32_t> got = greedy_answer(m, prompt, img_vk, pool, got_logits);
    const vk::DeviceProfile prof = cx->take_profile();
    bool coop = false, tiled = false, coop_attention = false;
    for (const auto& [name, t] : prof.shaders) {
        coop = coop || name.rfind("matmul_coop_", 0) == 0;
        tiled = tiled || name.rfind("matmul_f", 0) == 0 || name.rfind("matmul_q", 0) == 0;
        coop_attention = coop_attention || name.rfind("attention_coop", 0) == 0;
    }
    if (cx->timestamp_bits() != 0) {
        CHECK(coop);
        CHECK_FALSE(tiled);  // every many-row product of this model fits the kernel
        // The ViT's attention (64 rows of head_dim 32) too, where the device has the shared memory.
        CHECK(coop_attention == (cx->info().max_shared_memory >= vk::kVkAttentionCoopShared));
    }
    // f16 inputs: each product's terms carry a relative error of ~2^-11. On lavapipe (emulated,
    // 2026-12-02) the embeddings moved by at most 0.0050 (largest 13.1) and the first logits by
    // 0.0045 (largest 22.8) with the products alone, 0.0059 and 0.0054 with the attention too;
    // 1.5e-2 is allowed.
    require_close(img_vk.embd, img.embd, 1.5e-2f, 1e-3f);
    require_close(got_logits, want_logits, 1.5e-2f, 1e-3f);
    CHECK(want.size() >= 3);
    CHECK(got == want);
}

namespace {

// A context on the test's device whose vision tower takes a group's tiles all at once, or one
// by one (its device type decides by default).
std::shared_ptr<vk::Context> vit_context(vk::Context* ctx, bool at_once) {
    return context_with(ctx, [&](vk::ContextOptions& o) { o.vit_tiles_at_once = at_once; });
}

}  // namespace

TEST_CASE("vulkan vision tower: features and projected embeddings match the CPU", "[vulkan][vk_forward]") {
    VK_OR_SKIP(ctx);
    const bool at_once = GENERATE(false, true);
    INFO("tiles at once: " << at_once);
    const VisionModel cpu_model = open_vision_model(kMmproj.string());
    VisionModel vk_model = cpu_model;
    const auto cx = vit_context(ctx, at_once);
    REQUIRE(tiles_at_once(*cx) == at_once);
    vk_model.vulkan = std::make_shared<VitVulkan>(cx, cpu_model);
    const VisionConfig& c = cpu_model.config;
    ThreadPool pool(1);
    // One tile more than a submission group holds: two groups, the second of one tile. The
    // tiles differ, so a tile written to the wrong place shows.
    const int n_tiles = kVitVulkanGroup + 1;
    const size_t tile_floats = 3 * size_t(c.image_size) * size_t(c.image_size);
    const std::vector<float> tiles = glimpse::test::random_floats(size_t(n_tiles) * tile_floats, 17);
    const size_t n_out = size_t(n_tiles) * size_t(tokens_per_tile(c)) * size_t(projected_dim(c));
    std::vector<float> want(n_out), got(n_out);
    encode_tiles(cpu_model, tiles.data(), n_tiles, want.data(), pool);
    VisionTimings t;
    encode_tiles(vk_model, tiles.data(), n_tiles, got.data(), pool, &t);
    require_close(got, want, 1e-3f, 1e-3f);
    CHECK(t.tiles == n_tiles);
    CHECK(t.device_ms > 0);

    const size_t n_feat = size_t(n_tiles) * size_t(c.n_patches()) * size_t(c.n_embd);
    std::vector<float> fw(n_feat), fg(n_feat);
    encode_tiles_features(cpu_model, tiles.data(), n_tiles, fw.data(), pool);
    encode_tiles_features(vk_model, tiles.data(), n_tiles, fg.data(), pool);
    require_close(fg, fw, 1e-3f, 1e-3f);

    // Traces are CPU-only and say so.
    const ActivationTrace trace = [](const char*, const float*, int64_t, int64_t) {};
    CHECK_THROWS_WITH(encode_tiles(vk_model, tiles.data(), 1, got.data(), pool, nullptr, &trace),
                      Catch::Contains("CPU only"));
}

TEST_CASE("vulkan vision tower: a group of CLIP tiles (class rows, pre-LN, F16) matches the CPU", "[vulkan][vk_forward]") {
    VK_OR_SKIP(ctx);
    GOLDEN_OR_SKIP(golden);
    const VisionModel cpu_model = open_vision_model((golden / "llava-tiny" / "mmproj-llava-tiny-f16.gguf").string());
    const VisionConfig& c = cpu_model.config;
    REQUIRE(c.has_class_token);
    VisionModel vk_model = cpu_model;
    vk_model.vulkan = std::make_shared<VitVulkan>(vit_context(ctx, true), cpu_model);
    ThreadPool pool(1);
    // Three different tiles in one group: each tile's class row and positions go to its own rows.
    const int n_tiles = 3;
    const size_t tile_floats = 3 * size_t(c.image_size) * size_t(c.image_size);
    const std::vector<float> tiles = glimpse::test::random_floats(size_t(n_tiles) * tile_floats, 19);
    const size_t n_feat = size_t(n_tiles) * size_t(c.n_patches()) * size_t(c.n_embd);
    std::vector<float> want(n_feat), got(n_feat);
    encode_tiles_features(cpu_model, tiles.data(), n_tiles, want.data(), pool);
    encode_tiles_features(vk_model, tiles.data(), n_tiles, got.data(), pool);
    require_close(got, want, 1e-3f, 1e-3f);
}
