// The Llama decoder against the golden runs (../shared/golden/README.md "How to compare"):
// llama.cpp's logits at every prompt position and its greedy continuations, for the F32, F16
// and Q8_0 text models of smolvlm-tiny and llava-tiny, and the float32 `ref-hf` values.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/thread_pool.h"
#include "tests/helpers.h"
#include "text/llama_forward.h"
#include "text/llama_model.h"
#include "text/sampler.h"
#include "weights/gguf.h"

using namespace glimpse;
namespace fs = std::filesystem;

namespace {


std::vector<int32_t> ids_of(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

float max_abs_diff(const float* a, const float* b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

// The text prompt t0 of a run: its token ids and the 16-step greedy continuation.
struct TextRun {
    std::vector<int32_t> prompt;
    std::vector<int32_t> greedy;
};

TextRun text_run(const fs::path& result_json) {
    const auto r = glimpse::test::read_json(result_json);
    const auto& t = r["text_prompts"][0];
    return {ids_of(t["tokens"]), ids_of(t["greedy"]["tokens"])};
}

// Greedy continuation of `n` tokens after the prompt. token_by_token: feed the prompt one
// token per forward call (every matmul then takes the M = 1 path).
std::vector<int32_t> greedy(LlamaContext& ctx, const std::vector<int32_t>& prompt, int n, bool token_by_token) {
    ctx.reset();
    if (token_by_token) {
        for (size_t i = 0; i + 1 < prompt.size(); ++i) ctx.forward(&prompt[i], 1, int(i), nullptr, LogitRows::None);
        Sampler s(SamplerParams{});
        GenerateOptions opts;
        opts.max_tokens = n;
        return generate(ctx, {prompt.back()}, s, opts, nullptr).tokens;
    }
    Sampler s(SamplerParams{});
    GenerateOptions opts;
    opts.max_tokens = n;
    return generate(ctx, prompt, s, opts, nullptr).tokens;
}

// Last-position logits, the prompt fed as one batch or one token at a time.
std::vector<float> last_logits(LlamaContext& ctx, const std::vector<int32_t>& prompt, bool token_by_token) {
    ctx.reset();
    std::vector<float> logits(size_t(ctx.config().n_vocab));
    if (token_by_token)
        for (size_t i = 0; i < prompt.size(); ++i)
            ctx.forward(&prompt[i], 1, int(i), logits.data(), LogitRows::Last);
    else
        ctx.forward(prompt.data(), int(prompt.size()), 0, logits.data(), LogitRows::Last);
    return logits;
}

}  // namespace

TEST_CASE("decoder smolvlm-tiny F32: logits at every position and greedy continuation", "[decoder][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const auto model = load_llama_gguf(GgufFile::open((dir / "smolvlm-tiny-text-f32.gguf").string()));
    CHECK(model.config.tied_output);
    CHECK(model.config.n_vocab == 49194);
    const TextRun run = text_run(dir / "ref/result.json");
    const auto ref = glimpse::test::read_floats(dir / "ref/text_t0_logits.bin");
    const size_t T = run.prompt.size(), V = size_t(model.config.n_vocab);
    REQUIRE(ref.size() == T * V);

    ThreadPool pool(2);
    LlamaContext ctx(model, pool, 256);
    std::vector<float> logits(T * V);
    ctx.forward(run.prompt.data(), int(T), 0, logits.data(), LogitRows::All);
    float worst = 0;
    for (size_t t = 0; t < T; ++t) {
        const float d = max_abs_diff(&logits[t * V], &ref[t * V], V);
        worst = std::max(worst, d);
        CHECK(argmax(&logits[t * V], int(V)) == argmax(&ref[t * V], int(V)));
    }
    INFO("max |diff| over all positions " << worst);
    CHECK(worst <= 1e-4f);

    CHECK(greedy(ctx, run.prompt, 16, false) == run.greedy);
}

TEST_CASE("decoder smolvlm-tiny F16 and Q8_0 against their llama.cpp runs", "[decoder][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    ThreadPool pool(2);

    SECTION("F16: plain float32 activations, within the README's ~5e-3 for F16 rounding") {
        const auto model = load_llama_gguf(GgufFile::open((dir / "smolvlm-tiny-text-f16.gguf").string()));
        const TextRun run = text_run(dir / "f16/result.json");
        const auto ref = glimpse::test::read_floats(dir / "f16/text_t0_logits_last.bin");
        LlamaContext ctx(model, pool, 256);
        const auto logits = last_logits(ctx, run.prompt, false);
        const float d = max_abs_diff(logits.data(), ref.data(), ref.size());
        INFO("F16 last logits max |diff| " << d);
        CHECK(d <= 5e-3f);
        CHECK(greedy(ctx, run.prompt, 16, false) == run.greedy);
    }
    SECTION("Q8_0: one token at a time quantizes the activations like llama.cpp") {
        const auto model = load_llama_gguf(GgufFile::open((dir / "smolvlm-tiny-text-q8_0.gguf").string()));
        const TextRun run = text_run(dir / "q8_0/result.json");
        const auto ref = glimpse::test::read_floats(dir / "q8_0/text_t0_logits_last.bin");
        LlamaContext ctx(model, pool, 256);
        const auto exact = last_logits(ctx, run.prompt, true);
        const float d = max_abs_diff(exact.data(), ref.data(), ref.size());
        INFO("Q8_0 token-by-token last logits max |diff| " << d);
        CHECK(d <= 2e-5f);
        CHECK(greedy(ctx, run.prompt, 16, true) == run.greedy);
        // A batched prefill multiplies dequantized weights with float32 activations (core/matmul.h,
        // M >= kMatvecMaxM): the README puts that ~0.1 away from llama.cpp's numbers.
        const auto batched = last_logits(ctx, run.prompt, false);
        const float db = max_abs_diff(batched.data(), ref.data(), ref.size());
        INFO("Q8_0 batched prefill last logits max |diff| " << db);
        CHECK(db <= 0.3f);
    }
}

TEST_CASE("decoder llava-tiny text (F16, Q8_0) against ref, ref-hf and q8_0", "[decoder][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "llava-tiny";
    ThreadPool pool(2);

    SECTION("F16: float32 math matches ref-hf tightly and llama.cpp's F16 numerics loosely") {
        const auto model = load_llama_gguf(GgufFile::open((dir / "llava-tiny-text-f16.gguf").string()));
        CHECK_FALSE(model.config.tied_output);
        const TextRun run = text_run(dir / "ref/result.json");
        const size_t T = run.prompt.size(), V = size_t(model.config.n_vocab);
        LlamaContext ctx(model, pool, 256);
        std::vector<float> logits(T * V);
        ctx.forward(run.prompt.data(), int(T), 0, logits.data(), LogitRows::All);

        const auto hf_last = glimpse::test::read_floats(dir / "ref-hf/text_t0_logits_last.bin");
        const float d_hf = max_abs_diff(&logits[(T - 1) * V], hf_last.data(), V);
        INFO("vs ref-hf last logits max |diff| " << d_hf);
        CHECK(d_hf <= 1e-4f);

        const auto ref = glimpse::test::read_floats(dir / "ref/text_t0_logits.bin");
        REQUIRE(ref.size() == T * V);
        const float d_ref = max_abs_diff(logits.data(), ref.data(), T * V);
        INFO("vs llama.cpp ref (F16 activations) all positions max |diff| " << d_ref);
        CHECK(d_ref <= 5e-3f);
        for (size_t t = 0; t < T; ++t) CHECK(argmax(&logits[t * V], int(V)) == argmax(&ref[t * V], int(V)));

        CHECK(greedy(ctx, run.prompt, 16, false) == run.greedy);
        CHECK(greedy(ctx, run.prompt, 16, false) == text_run(dir / "ref-hf/result.json").greedy);
    }
    SECTION("Q8_0") {
        const auto model = load_llama_gguf(GgufFile::open((dir / "llava-tiny-text-q8_0.gguf").string()));
        const TextRun run = text_run(dir / "q8_0/result.json");
        const auto ref = glimpse::test::read_floats(dir / "q8_0/text_t0_logits_last.bin");
        LlamaContext ctx(model, pool, 256);
        const auto exact = last_logits(ctx, run.prompt, true);
        const float d = max_abs_diff(exact.data(), ref.data(), ref.size());
        INFO("Q8_0 token-by-token last logits max |diff| " << d);
        CHECK(d <= 2e-5f);
        CHECK(greedy(ctx, run.prompt, 16, true) == run.greedy);
    }
}

TEST_CASE("decoder invariant: batched prefill == token-by-token decode through the KV cache", "[decoder][golden]") {
    GOLDEN_OR_SKIP(golden);
    const std::string file = GENERATE(as<std::string>{}, "smolvlm-tiny/smolvlm-tiny-text-f32.gguf",
                                      "llava-tiny/llava-tiny-text-f16.gguf");
    const auto model = load_llama_gguf(GgufFile::open((golden / file).string()));
    const int V = model.config.n_vocab;
    // An awkward length, with batches of 5 so that the prefill crosses batch boundaries.
    std::vector<int32_t> prompt;
    for (int i = 0; i < 23; ++i) prompt.push_back(int32_t((i * 7919 + 13) % V));
    ThreadPool pool(2);
    LlamaContext batched(model, pool, 64, 5), single(model, pool, 64);
    std::vector<float> all(prompt.size() * static_cast<size_t>(V)), one(static_cast<size_t>(V));
    batched.forward(prompt.data(), int(prompt.size()), 0, all.data(), LogitRows::All);
    float worst = 0;
    for (size_t i = 0; i < prompt.size(); ++i) {
        single.forward(&prompt[i], 1, int(i), one.data(), LogitRows::Last);
        worst = std::max(worst, max_abs_diff(one.data(), &all[i * size_t(V)], size_t(V)));
    }
    INFO(file << ": max |diff| " << worst);
    CHECK(worst <= 1e-5f);
    CHECK(batched.n_past() == int(prompt.size()));
    CHECK(single.n_past() == int(prompt.size()));

    // Rewinding: recompute the last 4 positions from position 19 gives the same logits.
    batched.forward(&prompt[19], 4, 19, one.data(), LogitRows::Last);
    CHECK(max_abs_diff(one.data(), &all[22 * size_t(V)], size_t(V)) <= 1e-5f);
}
