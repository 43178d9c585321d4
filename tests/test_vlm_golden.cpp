// The whole multimodal path against the golden references (../shared/golden/README.md, "Which
// reference to compare with"):
//   ref-hf-e2e  image file → Hugging Face preprocessing → encoder → projector → prompt →
//               logits and a 16-step greedy continuation (plain float32): glimpse's own path
//               from the file on must match it (embeddings and logits <= 1e-4, same ids).
//   ref-hf      llama.cpp's tiles and prompt ids with float32 Hugging Face semantics: checks
//               the prompt evaluation (image embeddings placed at their positions) apart from
//               preprocessing, against full logit vectors.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "fusion/vlm.h"
#include "tests/helpers.h"
#include "text/generation.h"
#include "text/sampler.h"
#include "vision/vit_forward.h"

using namespace glimpse;
namespace fs = std::filesystem;

namespace {


float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    float m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

// The system message of a reference prompt's `messages` ("" if none).
std::string system_of(const nlohmann::json& p) {
    for (const auto& msg : p["messages"])
        if (msg["role"] == "system") return msg["content"][0]["text"].get<std::string>();
    return "";
}

// Greedy ids for n steps after the prompt, never stopping early (as the references ran).
std::vector<int32_t> greedy_after(LlamaContext& ctx, std::vector<float>& logits, int n) {
    Sampler sampler(SamplerParams{});
    GenerateOptions opt;
    opt.max_tokens = n;
    return continue_generation(ctx, logits, sampler, opt, nullptr).tokens;
}

struct Model {
    const char* dir;
    const char* text;
    const char* mmproj;
};

void check_e2e(const fs::path& golden, const Model& mf) {
    const fs::path dir = golden / mf.dir;
    const VlmModel m = open_vlm((dir / mf.text).string(), (dir / mf.mmproj).string());
    const auto r = glimpse::test::read_json(dir / "ref-hf-e2e" / "result.json");
    ThreadPool pool(2);
    LlamaContext ctx(m.text, pool);
    for (const auto& p : r["image_prompts"]) {
        const std::string id = p["id"].get<std::string>();
        INFO(mf.dir << " " << id << " (" << p["image"].get<std::string>() << ")");
        const EncodedImage img = encode_image_file(m, (dir / "images" / p["image"].get<std::string>()).string(), {}, pool);
        CHECK(img.grid.n_tiles() == p["n_tiles"].get<int>());

        // Embeddings from the file on: preprocessing + encoder + projector.
        const auto ref_embd = glimpse::test::read_floats(dir / "ref-hf-e2e" / p["embd_file"].get<std::string>());
        const float d_embd = max_abs_diff(img.embd, ref_embd);
        INFO("image embeddings max |diff| " << d_embd);
        CHECK(d_embd <= 1e-4f);

        // The prompt as the chat template and the image layout make it.
        const MmPrompt prompt = build_prompt(m, p["user"].get<std::string>(), {&img}, system_of(p));
        REQUIRE(prompt.sequence() == p["sequence"].get<std::vector<int32_t>>());

        ctx.reset();
        std::vector<float> logits;
        eval_prompt(ctx, prompt, {&img}, logits);
        const auto& top = p["logits_last_top64"];
        const auto ids = top["ids"].get<std::vector<int32_t>>();
        const auto vals = top["logits"].get<std::vector<float>>();
        float d_logits = 0;
        for (size_t i = 0; i < ids.size(); ++i) d_logits = std::max(d_logits, std::fabs(logits[size_t(ids[i])] - vals[i]));
        INFO("last logits (top 64) max |diff| " << d_logits);
        CHECK(d_logits <= 1e-4f);
        CHECK(argmax(logits.data(), int(logits.size())) == ids[0]);
        CHECK(greedy_after(ctx, logits, 16) == p["greedy"]["tokens"].get<std::vector<int32_t>>());
    }
}

// The ref-hf run's prompt (llama.cpp's ids, -1 at image positions) as an MmPrompt with one
// image run per maximal stretch of -1.
MmPrompt prompt_from_sequence(const std::vector<int32_t>& seq) {
    MmPrompt mp;
    int row = 0;
    for (size_t i = 0; i < seq.size();) {
        PromptPiece piece;
        if (seq[i] < 0) {
            piece.image = 0;
            piece.embd_row = row;
            while (i < seq.size() && seq[i] < 0) ++piece.n_rows, ++i;
            row += piece.n_rows;
        } else {
            while (i < seq.size() && seq[i] >= 0) piece.tokens.push_back(seq[i++]);
        }
        mp.pieces.push_back(std::move(piece));
    }
    return mp;
}

}  // namespace

TEST_CASE("vlm golden: SmolVLM from the image file, against ref-hf-e2e", "[vlm][golden]") {
    GOLDEN_OR_SKIP(golden);
    check_e2e(golden, {"smolvlm-tiny", "smolvlm-tiny-text-f32.gguf", "mmproj-smolvlm-tiny-f32.gguf"});
}

TEST_CASE("vlm golden: LLaVA-1.5 from the image file, against ref-hf-e2e", "[vlm][golden]") {
    GOLDEN_OR_SKIP(golden);
    check_e2e(golden, {"llava-tiny", "llava-tiny-text-f16.gguf", "mmproj-llava-tiny-f16.gguf"});
}

TEST_CASE("vlm golden: logits after llama.cpp's tiles and prompt, against ref-hf", "[vlm][golden]") {
    GOLDEN_OR_SKIP(golden);
    const Model models[] = {{"smolvlm-tiny", "smolvlm-tiny-text-f32.gguf", "mmproj-smolvlm-tiny-f32.gguf"},
                            {"llava-tiny", "llava-tiny-text-f16.gguf", "mmproj-llava-tiny-f16.gguf"}};
    ThreadPool pool(2);
    for (const Model& mf : models) {
        const fs::path dir = golden / mf.dir;
        const VlmModel m = open_vlm((dir / mf.text).string(), (dir / mf.mmproj).string());
        const auto hf = glimpse::test::read_json(dir / "ref-hf" / "result.json");
        LlamaContext ctx(m.text, pool);
        const int S = m.vision.config.image_size;
        const size_t tile_bytes = size_t(S) * size_t(S) * 3;
        for (size_t k = 0; k < hf["image_prompts"].size(); ++k) {
            const auto& p = hf["image_prompts"][k];
            const std::string id = p["id"].get<std::string>();
            INFO(mf.dir << " " << id);
            // llama.cpp's own tiles, normalised and encoded.
            const auto u8 = test::read_file(dir / "ref" / ("img_" + id + "_tiles_u8.bin"));
            REQUIRE(u8.size() % tile_bytes == 0);
            const int n_tiles = int(u8.size() / tile_bytes);
            std::vector<float> pixels(size_t(n_tiles) * 3 * size_t(S) * size_t(S));
            for (int t = 0; t < n_tiles; ++t)
                normalize_tile_u8(m.vision.config, u8.data() + size_t(t) * tile_bytes, pixels.data() + size_t(t) * 3 * S * S);
            EncodedImage img;
            img.grid = {0, 0, tokens_per_tile(m.vision.config)};
            img.embd.resize(size_t(n_tiles) * size_t(img.grid.tokens_per_tile) * size_t(m.text.config.n_embd));
            encode_tiles(m.vision, pixels.data(), n_tiles, img.embd.data(), pool);
            // Only the number of embedding rows matters here: the prompt comes from `sequence`.
            if (n_tiles > 1) img.grid.rows = 1, img.grid.cols = n_tiles - 1;

            const MmPrompt prompt = prompt_from_sequence(p["sequence"].get<std::vector<int32_t>>());
            REQUIRE(prompt.n_image_positions() == int(img.embd.size()) / m.text.config.n_embd);
            ctx.reset();
            std::vector<float> logits;
            eval_prompt(ctx, prompt, {&img}, logits);
            const float d = max_abs_diff(logits, glimpse::test::read_floats(dir / "ref-hf" / ("img_" + id + "_logits_last.bin")));
            INFO("last logits max |diff| " << d);
            CHECK(d <= 1e-4f);
            CHECK(greedy_after(ctx, logits, 16) == p["greedy"]["tokens"].get<std::vector<int32_t>>());
        }
    }
}
