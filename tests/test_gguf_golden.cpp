// The golden GGUF files (written by llama.cpp's gguf-py) against their manifests: tensor
// tables, the metadata the model loaders will read, zero-copy mapping, and a byte-exact
// rewrite by GgufWriter (same layout rules as gguf-py / ggml).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "tests/helpers.h"
#include "weights/gguf.h"

using namespace glimpse;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct GoldenModel {
    fs::path dir;
    json manifest;
};

std::vector<GoldenModel> golden_models(const fs::path& root) {
    std::vector<GoldenModel> out;
    for (const auto& e : fs::directory_iterator(root)) {
        const fs::path m = e.path() / "manifest.json";
        if (!e.is_directory() || !fs::exists(m)) continue;
        std::ifstream in(m);
        GoldenModel g{e.path(), json::parse(in)};
        if (g.manifest.contains("gguf_files")) out.push_back(std::move(g));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.dir < b.dir; });
    return out;
}

void check_tensor_table(const GgufFile& f, const json& expected) {
    REQUIRE(f.tensors().size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
        const Tensor& t = f.tensors()[i];
        const json& e = expected[i];
        INFO("tensor " << i << " " << e.dump());
        CHECK(t.name == e["name"].get<std::string>());
        CHECK(dtype_name(t.dtype) == e["type"].get<std::string>());
        const auto shape = e["shape_ggml"].get<std::vector<int64_t>>();
        REQUIRE(t.n_dims == static_cast<int>(shape.size()));
        for (size_t d = 0; d < shape.size(); ++d) CHECK(t.ne[d] == shape[d]);
        CHECK(f.find_tensor(t.name) == &t);
    }
}

void check_text_metadata(const GgufFile& f, const json& m, const std::string& outtype) {
    const json& c = m["config"]["text"];
    const json& v = m["vocab"];
    CHECK(f.str("general.architecture") == "llama");
    CHECK(f.u32("llama.block_count") == c["n_layer"].get<uint32_t>());
    CHECK(f.u32("llama.embedding_length") == c["n_embd"].get<uint32_t>());
    CHECK(f.u32("llama.attention.head_count") == c["n_head"].get<uint32_t>());
    CHECK(f.u32("llama.attention.head_count_kv") == c["n_head_kv"].get<uint32_t>());
    CHECK(f.u32("llama.feed_forward_length") == c["n_ff"].get<uint32_t>());
    CHECK(f.u32("llama.context_length") == c["n_ctx_train"].get<uint32_t>());
    CHECK(f.f32("llama.rope.freq_base") == c["rope_theta"].get<float>());
    CHECK(f.f32("llama.attention.layer_norm_rms_epsilon") == c["rms_eps"].get<float>());
    CHECK((f.find_tensor("output.weight") == nullptr) == c["tied_embeddings"].get<bool>());
    const std::map<std::string, uint32_t> file_types{{"f32", 0}, {"f16", 1}, {"q8_0", 7}};
    CHECK(f.u32("general.file_type") == file_types.at(outtype));

    const size_t n_vocab = v["n_base_tokens"].get<size_t>() + v["added_tokens"].size();
    const auto& tokens = f.str_array_ref("tokenizer.ggml.tokens");
    CHECK(tokens.size() == n_vocab);
    CHECK(f.u32("llama.vocab_size") == n_vocab);
    CHECK(f.i32_array("tokenizer.ggml.token_type").size() == n_vocab);
    for (const auto& [text, id] : v["added_tokens"].items()) CHECK(tokens.at(id.get<size_t>()) == text);
    CHECK(f.str("tokenizer.ggml.model") == v["tokenizer_model"].get<std::string>());
    CHECK(f.str("tokenizer.ggml.pre") == v["tokenizer_pre"].get<std::string>());
    CHECK(f.u32("tokenizer.ggml.bos_token_id") == v["bos"].get<uint32_t>());
    CHECK(f.u32("tokenizer.ggml.eos_token_id") == v["eos"].get<uint32_t>());
    CHECK(f.u32("tokenizer.ggml.unknown_token_id") == v["unk"].get<uint32_t>());
    if (!v["pad"].is_null()) CHECK(f.u32("tokenizer.ggml.padding_token_id") == v["pad"].get<uint32_t>());
    CHECK(f.boolean_or("tokenizer.ggml.add_bos_token", false) == v["add_bos"].get<bool>());
    if (v.contains("chat_template")) CHECK(f.str("tokenizer.chat_template") == v["chat_template"].get<std::string>());
    if (v["tokenizer_model"] == "llama") CHECK(f.f32_array("tokenizer.ggml.scores").size() == n_vocab);
    if (v["tokenizer_model"] == "gpt2") CHECK(!f.str_array_ref("tokenizer.ggml.merges").empty());
}

void check_mmproj_metadata(const GgufFile& f, const json& m) {
    const json& c = m["config"]["vision"];
    const bool llava = m["kind"] == "llava";
    CHECK(f.str("general.architecture") == "clip");
    CHECK(f.boolean("clip.has_vision_encoder"));
    CHECK(f.str("clip.projector_type") == (llava ? "mlp" : "idefics3"));
    CHECK(f.u32("clip.vision.image_size") == c["image_size"].get<uint32_t>());
    CHECK(f.u32("clip.vision.patch_size") == c["patch_size"].get<uint32_t>());
    CHECK(f.u32("clip.vision.embedding_length") == c["n_embd"].get<uint32_t>());
    CHECK(f.u32("clip.vision.feed_forward_length") == c["n_ff"].get<uint32_t>());
    CHECK(f.u32("clip.vision.attention.head_count") == c["n_head"].get<uint32_t>());
    CHECK(f.f32("clip.vision.attention.layer_norm_epsilon") == c["eps"].get<float>());
    // The legacy LLaVA converter stores one block fewer than the HF model has (README).
    const uint32_t blocks = llava ? c["n_layer_hf"].get<uint32_t>() - 1 : c["n_layer"].get<uint32_t>();
    CHECK(f.u32("clip.vision.block_count") == blocks);
    CHECK(f.f32_array("clip.vision.image_mean") == c["image_mean"].get<std::vector<float>>());
    CHECK(f.f32_array("clip.vision.image_std") == c["image_std"].get<std::vector<float>>());
    CHECK(f.boolean("clip.use_gelu") == !llava);
    if (llava) {
        CHECK(f.u32("clip.vision.projection_dim") == c["clip_projection_dim"].get<uint32_t>());
        CHECK(f.boolean("clip.has_llava_projector"));
    } else {
        CHECK(f.u32("clip.vision.projector.scale_factor") == c["scale_factor"].get<uint32_t>());
        CHECK(f.u32("clip.vision.preproc_image_size") == c["longest_edge"].get<uint32_t>());
        CHECK(f.u32("clip.vision.projection_dim") == m["config"]["text"]["n_embd"].get<uint32_t>());
    }
}

}  // namespace

TEST_CASE("gguf golden: every file opens and matches its manifest", "[gguf][golden]") {
    GOLDEN_OR_SKIP(root);
    const auto models = golden_models(root);
    REQUIRE(models.size() >= 2);
    size_t files = 0;
    for (const auto& g : models) {
        const json& listed = g.manifest["gguf_files"];
        // Every .gguf in the folder is described by the manifest, and the other way round.
        for (const auto& e : fs::directory_iterator(g.dir))
            if (e.path().extension() == ".gguf") CHECK(listed.contains(e.path().filename().string()));
        for (const auto& [name, info] : listed.items()) {
            INFO(g.dir.filename().string() << "/" << name);
            const fs::path path = g.dir / name;
            const GgufFile f = GgufFile::open(path.string());
            ++files;
            CHECK(f.version() == 3);
            CHECK(f.file_size() == fs::file_size(path));
            check_tensor_table(f, info["tensors"]);
            if (info["role"] == "text") check_text_metadata(f, g.manifest, info["outtype"].get<std::string>());
            else check_mmproj_metadata(f, g.manifest);
        }
    }
    CHECK(files >= 8);
}

TEST_CASE("gguf golden: tensors point into the mapping, and the writer reproduces the file", "[gguf][golden]") {
    GOLDEN_OR_SKIP(root);
    for (const auto& g : golden_models(root)) {
        for (const auto& [name, info] : g.manifest["gguf_files"].items()) {
            INFO(g.dir.filename().string() << "/" << name);
            const auto file = MappedFile::open((g.dir / name).string());
            const GgufFile f = GgufFile::parse(file);
            const uint8_t* lo = file->data();
            const uint8_t* hi = lo + file->size();
            GgufWriter w;
            for (const auto& kv : f.metadata()) w.set(kv.key, kv.value);
            for (const Tensor& t : f.tensors()) {
                const auto* p = static_cast<const uint8_t*>(t.data);
                CHECK(p >= lo + f.data_offset());
                CHECK(p + t.bytes() <= hi);
                CHECK(t.storage.get() == t.data);  // shares ownership of the mapping
                w.add_tensor(t);
            }
            const auto bytes = w.to_bytes();
            REQUIRE(bytes.size() == file->size());
            CHECK(std::memcmp(bytes.data(), lo, bytes.size()) == 0);
        }
    }
}
