// The vision towers against the golden references (../shared/golden/README.md):
// - image embeddings from the reference's own tiles (ref/img_iK_tiles_u8.bin) vs ref-hf, the
//   plain-float32 Hugging Face semantics: max |diff| <= 1e-4 (F32 and F16 mmproj weights are
//   both dequantized to float32 there; the F16 file has other weights, so it is compared with
//   the F32 file's reference loosely);
// - LLaVA layer by layer vs ref-hf/vision_trace, SmolVLM loosely vs llama.cpp's
//   ref/vision_trace (F16 numerics), so a failure names the first stage that diverges;
// - Hugging Face folders holding the same numbers as the golden mmproj files give the same
//   embeddings.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/thread_pool.h"
#include "helpers.h"
#include "vision/vit_forward.h"
#include "vision/vit_model.h"
#include "weights/gguf.h"
#include "weights/hf_folder.h"
#include "weights/safetensors.h"

namespace fs = std::filesystem;
using namespace glimpse;
using glimpse::test::TempDir;
using json = nlohmann::json;

namespace {

std::vector<float> read_f32(const fs::path& p) {
    const std::vector<uint8_t> bytes = glimpse::test::read_file(p);
    std::vector<float> v(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
    return v;
}

float max_abs_diff(const float* a, const float* b, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

// The reference's tiles for image prompt `img`, normalised with the model's mean/std: [n][3][S][S].
std::vector<float> golden_tiles(const fs::path& model_dir, const std::string& img, const VisionConfig& c, int& n_tiles) {
    const std::string file = "img_" + img + "_tiles_u8.bin";
    const json shapes = glimpse::test::read_json(model_dir / "manifest.json")["runs"]["ref"]["files"][file]["shapes"];
    const int S = c.image_size;
    for (const auto& s : shapes) REQUIRE(s == json::array({S, S, 3}));
    const std::vector<uint8_t> u8 = glimpse::test::read_file(model_dir / "ref" / file);
    n_tiles = int(shapes.size());
    REQUIRE(u8.size() == size_t(n_tiles) * S * S * 3);
    std::vector<float> tiles(size_t(n_tiles) * 3 * S * S);
    for (int t = 0; t < n_tiles; ++t)
        normalize_tile_u8(c, u8.data() + size_t(t) * S * S * 3, tiles.data() + size_t(t) * 3 * S * S);
    return tiles;
}

// Encodes image `img` with `m`, returns the worst |diff| against `ref_dir`/img_<img>_embd.bin.
float embd_diff(const VisionModel& m, const fs::path& model_dir, const std::string& ref_dir, const std::string& img,
                ThreadPool& pool) {
    int n_tiles = 0;
    const std::vector<float> tiles = golden_tiles(model_dir, img, m.config, n_tiles);
    std::vector<float> out(size_t(n_tiles) * tokens_per_tile(m.config) * projected_dim(m.config));
    encode_tiles(m, tiles.data(), n_tiles, out.data(), pool);
    const std::vector<float> ref = read_f32(model_dir / ref_dir / ("img_" + img + "_embd.bin"));
    REQUIRE(ref.size() == out.size());
    return max_abs_diff(out.data(), ref.data(), out.size());
}

// Named intermediates of one encode (the trace's arrays, copied).
using Captured = std::map<std::string, std::vector<float>>;

Captured trace_first_tile(const VisionModel& m, const fs::path& model_dir) {
    int n_tiles = 0;
    const std::vector<float> tiles = golden_tiles(model_dir, "i0", m.config, n_tiles);
    Captured got;
    const ActivationTrace trace = [&](const char* name, const float* data, int64_t rows, int64_t cols) {
        got[name].assign(data, data + rows * cols);
    };
    std::vector<float> out(size_t(tokens_per_tile(m.config)) * projected_dim(m.config));
    ThreadPool pool(2);
    encode_tiles(m, tiles.data(), 1, out.data(), pool, nullptr, &trace);
    return got;
}

// Compares each traced stage of `index.json` (in execution order) with ours under `names`
// (reference name -> our name); fails at the first stage whose worst |diff| exceeds tol.
void compare_trace(const Captured& got, const fs::path& trace_dir, const std::map<std::string, std::string>& names,
                   float tol) {
    const json index = glimpse::test::read_json(trace_dir / "index.json");
    int compared = 0;
    for (const auto& t : index["tensors"]) {
        const std::string ref_name = t["name"];
        const auto it = names.find(ref_name);
        const std::string ours = it == names.end() ? ref_name : it->second;
        if (ours.empty()) continue;  // a stage we do not form (e.g. llama.cpp's norm before its bias)
        INFO("stage " << ref_name << " (ours: " << ours << ")");
        REQUIRE(got.count(ours) == 1);
        const std::vector<float> ref = read_f32(trace_dir / t["file"].get<std::string>());
        const std::vector<float>& mine = got.at(ours);
        REQUIRE(mine.size() == ref.size());
        const float d = max_abs_diff(mine.data(), ref.data(), ref.size());
        INFO("max |diff| " << d);
        REQUIRE(d <= tol);
        ++compared;
    }
    CHECK(compared >= 10);
}

}  // namespace

TEST_CASE("vit golden: SmolVLM F32 mmproj embeddings match ref-hf for every image", "[vit-golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const VisionModel m = open_vision_model((dir / "mmproj-smolvlm-tiny-f32.gguf").string());
    const VisionConfig& c = m.config;
    CHECK(c.kind == VisionKind::SigLIP);
    CHECK(c.projector.kind == ProjectorKind::Idefics3);
    CHECK(c.projector.scale_factor == 4);
    CHECK(c.n_layers == 2);
    CHECK(c.preproc_image_size == 384);
    CHECK(tokens_per_tile(c) == 4);
    CHECK(projected_dim(c) == 64);
    ThreadPool pool(2);
    for (const char* img : {"i0", "i1", "i2"}) {
        const float d = embd_diff(m, dir, "ref-hf", img, pool);
        INFO("image " << img << ": max |diff| vs ref-hf = " << d);
        CHECK(d <= 1e-4f);
        WARN("vit golden smolvlm f32 " << img << ": max |diff| vs ref-hf " << d);
    }
}

TEST_CASE("vit golden: SmolVLM F16 mmproj is close to the F32 reference", "[vit-golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const VisionModel m = open_vision_model((dir / "mmproj-smolvlm-tiny-f16.gguf").string());
    ThreadPool pool(2);
    for (const char* img : {"i0", "i1", "i2"}) {
        const float d = embd_diff(m, dir, "ref-hf", img, pool);
        INFO("image " << img << ": max |diff| vs ref-hf (F32 weights) = " << d);
        CHECK(d <= 1e-2f);
        WARN("vit golden smolvlm f16 " << img << ": max |diff| vs ref-hf " << d);
    }
}

TEST_CASE("vit golden: SmolVLM stages follow llama.cpp's vision trace (F16 numerics, loosely)", "[vit-golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const VisionModel m = open_vision_model((dir / "mmproj-smolvlm-tiny-f32.gguf").string());
    const Captured got = trace_first_tile(m, dir);
    std::map<std::string, std::string> names = {
        {"patch_bias", "patch_embd"}, {"pos_embed", "embeddings"}, {"norm_w", ""}, {"norm_b", "post_ln"}};
    for (int l = 0; l < m.config.n_layers; ++l) {
        const std::string n = "-" + std::to_string(l);
        names["norm_w" + n] = "";
        names["ffn_up" + n] = "";
        names["ffn_down" + n] = "";
        names["ffn_gelu" + n] = "ffn_act" + n;
    }
    compare_trace(got, dir / "ref" / "vision_trace", names, 5e-3f);
}

TEST_CASE("vit golden: LLaVA embeddings and every stage match ref-hf (HF semantics)", "[vit-golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "llava-tiny";
    const VisionModel m = open_vision_model((dir / "mmproj-llava-tiny-f16.gguf").string());
    const VisionConfig& c = m.config;
    CHECK(c.kind == VisionKind::CLIP);
    CHECK(c.projector.kind == ProjectorKind::Mlp);
    CHECK(c.has_class_token);
    CHECK(c.pre_layernorm);
    CHECK_FALSE(c.post_layernorm);
    CHECK(c.activation == VisionActivation::QuickGelu);
    CHECK(c.n_layers == 2);  // every stored block runs (HF layers - 1)
    CHECK(tokens_per_tile(c) == 36);
    CHECK(c.preproc_image_size == 0);
    compare_trace(trace_first_tile(m, dir), dir / "ref-hf" / "vision_trace", {}, 1e-4f);
    ThreadPool pool(2);
    for (const char* img : {"i0", "i1", "i2"}) {
        const float d = embd_diff(m, dir, "ref-hf", img, pool);
        INFO("image " << img << ": max |diff| vs ref-hf = " << d);
        CHECK(d <= 1e-4f);
        WARN("vit golden llava " << img << ": max |diff| vs ref-hf " << d);
    }
}

// ---- Hugging Face folders with the golden numbers ---------------------------------------------

namespace {

// The mmproj's tensors under HF names (`rename` maps GGUF -> HF; unmapped tensors are dropped).
std::vector<Tensor> renamed(const GgufFile& g, const std::map<std::string, std::string>& rename) {
    std::vector<Tensor> out;
    for (const Tensor& t : g.tensors()) {
        const auto it = rename.find(t.name);
        if (it == rename.end()) continue;
        Tensor r = t;
        r.name = it->second;
        out.push_back(r);
    }
    return out;
}

std::map<std::string, std::string> block_names(int n_blocks, const std::string& hf_prefix, bool legacy_ffn) {
    std::map<std::string, std::string> r;
    const std::pair<const char*, const char*> per_block[] = {
        {"ln1", "layer_norm1"},         {"ln2", "layer_norm2"},         {"attn_q", "self_attn.q_proj"},
        {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"}, {"attn_out", "self_attn.out_proj"},
        {"ffn_up", legacy_ffn ? "mlp.fc2" : "mlp.fc1"}, {"ffn_down", legacy_ffn ? "mlp.fc1" : "mlp.fc2"}};
    for (int l = 0; l < n_blocks; ++l)
        for (const auto& [g, h] : per_block)
            for (const char* wb : {"weight", "bias"})
                r["v.blk." + std::to_string(l) + "." + g + "." + wb] =
                    hf_prefix + "encoder.layers." + std::to_string(l) + "." + h + "." + wb;
    return r;
}

}  // namespace

TEST_CASE("vit golden: a SmolVLM Hugging Face folder with the golden weights gives the same embeddings", "[vit-golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const auto gguf = std::make_shared<const GgufFile>(GgufFile::open((dir / "mmproj-smolvlm-tiny-f32.gguf").string()));
    const std::string v = "model.vision_model.";
    auto names = block_names(2, v, false);
    names["v.patch_embd.weight"] = v + "embeddings.patch_embedding.weight";
    names["v.patch_embd.bias"] = v + "embeddings.patch_embedding.bias";
    names["v.position_embd.weight"] = v + "embeddings.position_embedding.weight";
    names["v.post_ln.weight"] = v + "post_layernorm.weight";
    names["v.post_ln.bias"] = v + "post_layernorm.bias";
    names["mm.model.fc.weight"] = "model.connector.modality_projection.proj.weight";
    TempDir tmp;
    write_safetensors((tmp / "model.safetensors").string(), renamed(*gguf, names));
    glimpse::test::write_file(tmp / "config.json", json{{"architectures", {"Idefics3ForConditionalGeneration"}},
                                                        {"model_type", "idefics3"},
                                                        {"scale_factor", 4},
                                                        {"vision_config",
                                                         {{"hidden_size", 64},
                                                          {"intermediate_size", 256},
                                                          {"num_attention_heads", 4},
                                                          {"num_hidden_layers", 2},
                                                          {"image_size", 128},
                                                          {"patch_size", 16},
                                                          {"layer_norm_eps", 1e-6}}}}
                                                       .dump());
    glimpse::test::write_file(tmp / "preprocessor_config.json",
                              json{{"image_mean", {0.5, 0.5, 0.5}},
                                   {"image_std", {0.5, 0.5, 0.5}},
                                   {"size", {{"longest_edge", 384}}},
                                   {"max_image_size", {{"longest_edge", 128}}}}
                                  .dump());
    const VisionModel hf = open_vision_model(tmp.path().string());
    CHECK(hf.format == VisionFormat::HfFolder);
    CHECK(hf.config.preproc_image_size == 384);
    CHECK(tokens_per_tile(hf.config) == 4);
    ThreadPool pool(2);
    for (const char* img : {"i0", "i1"}) {
        const float d = embd_diff(hf, dir, "ref-hf", img, pool);
        INFO("image " << img << ": max |diff| vs ref-hf = " << d);
        CHECK(d <= 1e-4f);
    }
}

TEST_CASE("vit golden: a LLaVA Hugging Face folder runs layers up to vision_feature_layer -2", "[vit-golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "llava-tiny";
    const auto gguf = std::make_shared<const GgufFile>(GgufFile::open((dir / "mmproj-llava-tiny-f16.gguf").string()));
    const std::string v = "vision_tower.vision_model.";
    auto names = block_names(2, v, true);  // legacy file: ffn_down holds fc1
    names["v.class_embd"] = v + "embeddings.class_embedding";
    names["v.patch_embd.weight"] = v + "embeddings.patch_embedding.weight";
    names["v.position_embd.weight"] = v + "embeddings.position_embedding.weight";
    names["v.pre_ln.weight"] = v + "pre_layrnorm.weight";
    names["v.pre_ln.bias"] = v + "pre_layrnorm.bias";
    names["mm.0.weight"] = "multi_modal_projector.linear_1.weight";
    names["mm.0.bias"] = "multi_modal_projector.linear_1.bias";
    names["mm.2.weight"] = "multi_modal_projector.linear_2.weight";
    names["mm.2.bias"] = "multi_modal_projector.linear_2.bias";
    std::vector<Tensor> tensors = renamed(*gguf, names);
    // HF's third layer (which the legacy converter dropped) and post_layernorm: present in the
    // folder but unused; block 1's numbers, so running it would change the output.
    for (auto [g, h] : block_names(2, v, true)) {
        if (g.rfind("v.blk.1.", 0) != 0) continue;
        Tensor t = gguf->tensor(g);
        t.name = h.replace(h.find("layers.1."), 9, "layers.2.");
        tensors.push_back(t);
    }
    for (const char* wb : {"weight", "bias"}) {
        Tensor t = gguf->tensor(std::string("v.pre_ln.") + wb);
        t.name = v + "post_layernorm." + wb;
        tensors.push_back(t);
    }
    TempDir tmp;
    write_safetensors((tmp / "model.safetensors").string(), tensors);
    glimpse::test::write_file(tmp / "config.json", json{{"architectures", {"LlavaForConditionalGeneration"}},
                                                        {"model_type", "llava"},
                                                        {"vision_feature_layer", -2},
                                                        {"vision_feature_select_strategy", "default"},
                                                        {"projector_hidden_act", "gelu"},
                                                        {"vision_config",
                                                         {{"hidden_size", 64},
                                                          {"intermediate_size", 256},
                                                          {"num_attention_heads", 4},
                                                          {"num_hidden_layers", 3},
                                                          {"image_size", 84},
                                                          {"patch_size", 14},
                                                          {"hidden_act", "quick_gelu"},
                                                          {"layer_norm_eps", 1e-5}}}}
                                                       .dump());
    const VisionModel hf = open_vision_model(tmp.path().string());
    CHECK(hf.config.n_layers == 2);
    CHECK(hf.config.image_mean[0] == 0.48145466f);
    ThreadPool pool(2);
    for (const char* img : {"i0", "i2"}) {
        const float d = embd_diff(hf, dir, "ref-hf", img, pool);
        INFO("image " << img << ": max |diff| vs ref-hf = " << d);
        CHECK(d <= 1e-4f);
    }
}
