// Multimodal prompt assembly (fusion/mm_prompt.h) against the golden image prompts: the
// token layout of every image prompt must equal the reference's `sequence` (ids, -1 at image
// positions) exactly.
#include <catch2/catch.hpp>

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "fusion/mm_prompt.h"
#include "tests/helpers.h"
#include "text/tokenizer.h"
#include "weights/gguf.h"

using namespace glimpse;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<Tokenizer> golden_tokenizer(const fs::path& gguf) {
    return load_tokenizer_gguf(GgufFile::open(gguf.string()));
}

}  // namespace

TEST_CASE("mm prompt: SmolVLM layout equals the Hugging Face processor's ids", "[mm_prompt]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const auto tok = golden_tokenizer(dir / "smolvlm-tiny-text-f32.gguf");
    const auto r = glimpse::test::read_json(dir / "ref-hf-e2e" / "result.json");
    const int tokens_per_tile = r["hf_processor_params"]["image_seq_len"].get<int>();
    for (const auto& p : r["image_prompts"]) {
        INFO(p["id"].get<std::string>());
        const ImageGrid g{p["grid"]["rows"].get<int>(), p["grid"]["cols"].get<int>(), tokens_per_tile};
        const MmPrompt mm = assemble_prompt(p["prompt"].get<std::string>(), "<image>", {g}, ImageLayout::Idefics3, *tok);
        CHECK(mm.sequence() == p["sequence"].get<std::vector<int32_t>>());
        CHECK(mm.n_image_positions() == p["n_image_tokens"].get<int>());
        CHECK(mm.n_positions() == p["n_tokens"].get<int>());
        // The image runs cover the embedding rows in order, tile after tile.
        int next_row = 0;
        for (const auto& piece : mm.pieces)
            if (piece.is_image()) {
                CHECK(piece.embd_row == next_row);
                next_row += piece.n_rows;
            }
        CHECK(next_row == g.n_embeddings());
        // The expanded text is Hugging Face's prompt_expanded.
        std::string expanded = p["prompt"].get<std::string>();
        expanded.replace(expanded.find("<image>"), 7, expanded_image_text(g, ImageLayout::Idefics3, "<image>"));
        CHECK(expanded == p["prompt_expanded"].get<std::string>());
    }
}

TEST_CASE("mm prompt: LLaVA layout equals the reference ids (HF processor and llama.cpp)", "[mm_prompt]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "llava-tiny";
    const auto tok = golden_tokenizer(dir / "llava-tiny-text-f16.gguf");
    for (const char* run : {"ref-hf-e2e", "ref"}) {
        const auto r = glimpse::test::read_json(dir / run / "result.json");
        for (const auto& p : r["image_prompts"]) {
            INFO(run << " " << p["id"].get<std::string>());
            const auto seq = p["sequence"].get<std::vector<int32_t>>();
            const int n_img = int(std::count(seq.begin(), seq.end(), -1));
            const std::string marker = std::string(run) == "ref" ? "<__media__>" : "<image>";
            const MmPrompt mm =
                assemble_prompt(p["prompt"].get<std::string>(), marker, {ImageGrid{0, 0, n_img}}, ImageLayout::Llava, *tok);
            CHECK(mm.sequence() == seq);
        }
    }
}

TEST_CASE("mm prompt: marker count, several images, missing layout tokens", "[mm_prompt]") {
    GOLDEN_OR_SKIP(golden);
    const auto smol = golden_tokenizer(golden / "smolvlm-tiny" / "smolvlm-tiny-text-f32.gguf");
    const ImageGrid g22{2, 2, 4}, g00{0, 0, 4};
    // Two images: rows of the second start again at 0 and refer to image 1.
    const MmPrompt mm = assemble_prompt("<|im_start|>User:<image>and<image>?", "<image>", {g22, g00}, ImageLayout::Idefics3, *smol);
    CHECK(mm.n_image_positions() == g22.n_embeddings() + g00.n_embeddings());
    int image1_rows = 0;
    for (const auto& p : mm.pieces)
        if (p.image == 1) {
            CHECK(p.embd_row == 0);
            image1_rows += p.n_rows;
        }
    CHECK(image1_rows == 4);
    CHECK(g00.n_tiles() == 1);
    CHECK(g22.n_tiles() == 5);
    CHECK(expanded_image_text(g00, ImageLayout::Idefics3, "#") == "<fake_token_around_image><global-img>####<fake_token_around_image>");

    // Counts must agree.
    try {
        assemble_prompt("<image><image>", "<image>", {g00}, ImageLayout::Idefics3, *smol);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Usage);
        CHECK(std::string(e.what()).find("2 image marker") != std::string::npos);
    }
    // A vocabulary without <row_r_col_c> tokens cannot take the SmolVLM layout.
    const auto llama = golden_tokenizer(golden / "llava-tiny" / "llava-tiny-text-f16.gguf");
    try {
        assemble_prompt("<image>", "<image>", {g22}, ImageLayout::Idefics3, *llama);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Model);
        CHECK(std::string(e.what()).find("<fake_token_around_image>") != std::string::npos);
    }
    // The same check without a prompt, as open_vlm runs it before any image is encoded.
    CHECK_NOTHROW(check_image_vocab(ImageLayout::Idefics3, *smol));
    CHECK_NOTHROW(check_image_vocab(ImageLayout::Llava, *llama));
    try {
        check_image_vocab(ImageLayout::Idefics3, *llama);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Model);
        CHECK(std::string(e.what()).find("<fake_token_around_image>") != std::string::npos);
    }
    // A prompt that starts with an image still gets the vocabulary's BOS first.
    const MmPrompt lv = assemble_prompt("<image>hi", "<image>", {ImageGrid{0, 0, 3}}, ImageLayout::Llava, *llama);
    REQUIRE(lv.pieces.size() == 3);
    CHECK(lv.pieces[0].tokens == std::vector<int32_t>{llama->bos_id()});
    CHECK(lv.pieces[1].is_image());
}
