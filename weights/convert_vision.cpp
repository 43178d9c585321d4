// Vision towers of Hugging Face VLM folders to mmproj GGUF files, in the two layouts clip.cpp
// reads:
//   Idefics3 / SmolVLM -> projector "idefics3" exactly as convert_hf_to_gguf writes it
//     (MODELS.md §3.13): SigLIP blocks, post-LN, mm.model.fc; patch and position embeddings
//     forced to F32, other matrices F16 (or F32 with --type f32), 1-D tensors F32.
//   Llava (LLaVA-1.5)  -> the legacy "mlp" layout of llava_surgery + convert_image_encoder_to_gguf
//     (MODELS.md §4.6): the last CLIP block is not stored (LLaVA reads the features of the
//     second-to-last layer) and clip.vision.block_count counts the stored blocks (HF layers - 1);
//     fc1 is stored as ffn_down and fc2 as ffn_up (the legacy names, which clip.cpp swaps back
//     by shape); no post-LN; linear_1/linear_2 -> mm.0/mm.2; matrices, the patch convolution and
//     the position embeddings F16 (or F32), 1-D tensors F32.
// Sizes come from the tensors (MODELS.md §3.2: config.json may omit them) and are cross-checked
// with config.json where it has them.
#include <array>
#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "weights/convert.h"
#include "weights/hf_folder.h"

namespace glimpse {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::vector<float> kClipMean = {0.48145466f, 0.4578275f, 0.40821073f};
const std::vector<float> kClipStd = {0.26862954f, 0.26130258f, 0.27577711f};

std::string config_path(const HfFolder& f) { return f.dir() + "/config.json"; }

const json& sub_config(const HfFolder& f, const char* key) {
    static const json empty = json::object();
    const json& top = f.config();
    if (!top.contains(key) || top[key].is_null()) return empty;
    if (!top[key].is_object()) throw model_error(config_path(f), std::string(key) + " is not an object");
    return top[key];
}

double number(const HfFolder& f, const json& cfg, const std::string& where, const char* key, double def) {
    if (!cfg.contains(key) || cfg[key].is_null()) return def;
    if (!cfg[key].is_number()) throw model_error(config_path(f), where + key + " is not a number");
    return cfg[key].get<double>();
}

std::string text(const json& cfg, const char* key, const std::string& def) {
    return cfg.contains(key) && cfg[key].is_string() ? cfg[key].get<std::string>() : def;
}

// preprocessor_config.json (optional): image_mean / image_std, size.longest_edge.
json preprocessor_config(const HfFolder& f) {
    const fs::path p = fs::path(f.dir()) / "preprocessor_config.json";
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) return json::object();
    json j = read_json_file(p.string());
    if (!j.is_object()) throw model_error(p.string(), "is not a JSON object");
    return j;
}

std::vector<float> three_floats(const json& pre, const char* key, const std::vector<float>& def, const HfFolder& f) {
    if (!pre.contains(key)) return def;
    const json& v = pre[key];
    if (!v.is_array() || v.size() != 3 || !v[0].is_number() || !v[1].is_number() || !v[2].is_number())
        throw model_error(f.dir() + "/preprocessor_config.json", std::string(key) + " is not three numbers");
    return {v[0].get<float>(), v[1].get<float>(), v[2].get<float>()};
}

// A tensor with an exact ggml shape (trailing 1s implied), or Error(Model) naming the folder.
const Tensor& shaped(const HfFolder& f, const std::string& name, const std::vector<int64_t>& ne) {
    const Tensor& t = f.tensor(name);
    std::array<int64_t, 4> want{1, 1, 1, 1};
    std::string want_text = "[";
    for (size_t d = 0; d < ne.size() && d < 4; ++d) {
        want[d] = ne[d];
        want_text += (d ? ", " : "") + std::to_string(ne[d]);
    }
    if (t.ne != want)
        throw model_error(f.dir(), "tensor '" + name + "' has shape " + t.shape_string() + ", expected " + want_text + "]");
    if (!dtype_info(t.dtype).computable)
        throw model_error(f.dir(), "tensor '" + name + "' has type " + std::string(dtype_name(t.dtype)) +
                                       ", which cannot be converted");
    return t;
}

int count_layers(const HfFolder& f, const std::string& prefix) {
    int n = 0;
    while (n < 1024 && f.find_tensor(prefix + "encoder.layers." + std::to_string(n) + ".layer_norm1.weight")) ++n;
    return n;
}

// The prefix (of several spellings) under which `probe` exists.
std::string find_prefix(const HfFolder& f, std::initializer_list<const char*> prefixes, const std::string& probe) {
    for (const char* p : prefixes)
        if (f.find_tensor(std::string(p) + probe)) return p;
    throw model_error(f.dir(), "no tensor named '" + std::string(*prefixes.begin()) + probe + "' (nor under the other " +
                                   "known prefixes)");
}

// The sizes of a ViT read from its tensors, with config cross-checks.
struct VitShape {
    int64_t patch = 0, channels = 0, width = 0, n_pos = 0, n_ff = 0;
    int n_layers = 0, n_heads = 0, image_size = 0;
    float eps = 1e-6f;
};

VitShape vit_shape(const HfFolder& f, const std::string& vp, bool class_token, double default_eps) {
    const json& vc = sub_config(f, "vision_config");
    const std::string w = "vision_config.";
    VitShape s;
    const Tensor& patch = f.tensor(vp + "embeddings.patch_embedding.weight");
    if (patch.n_dims != 4 || patch.ne[0] != patch.ne[1])
        throw model_error(f.dir(), "tensor '" + vp + "embeddings.patch_embedding.weight' has shape " + patch.shape_string() +
                                       ", expected [p, p, channels, width]");
    s.patch = patch.ne[0];
    s.channels = patch.ne[2];
    s.width = patch.ne[3];
    const Tensor& pos = f.tensor(vp + "embeddings.position_embedding.weight");
    s.n_pos = pos.ne[1];
    s.n_layers = count_layers(f, vp);
    if (s.n_layers == 0) throw model_error(f.dir(), "no tensor named '" + vp + "encoder.layers.0.layer_norm1.weight'");
    s.n_ff = f.tensor(vp + "encoder.layers.0.mlp.fc1.weight").ne[1];
    const int64_t grid = std::llround(std::sqrt(double(s.n_pos - (class_token ? 1 : 0))));
    s.image_size = int(number(f, vc, w, "image_size", double(grid * s.patch)));
    const int64_t side = s.image_size / s.patch;
    if (s.image_size % s.patch != 0 || side * side + (class_token ? 1 : 0) != s.n_pos)
        throw model_error(config_path(f), "vision_config.image_size " + std::to_string(s.image_size) + " with patch " +
                                              std::to_string(s.patch) + " does not match the " + std::to_string(s.n_pos) +
                                              " position embeddings");
    s.n_heads = int(number(f, vc, w, "num_attention_heads", 16));
    if (s.n_heads <= 0 || s.width % s.n_heads != 0)
        throw model_error(config_path(f), "vision_config.num_attention_heads " + std::to_string(s.n_heads) +
                                              " does not divide the width " + std::to_string(s.width));
    s.eps = float(number(f, vc, w, "layer_norm_eps", default_eps));
    for (auto [key, v] : {std::pair{"hidden_size", s.width}, {"intermediate_size", s.n_ff}, {"patch_size", s.patch}})
        if (vc.contains(key) && vc[key].is_number() && int64_t(vc[key].get<double>()) != v)
            throw model_error(config_path(f), w + key + " = " + vc[key].dump() + " but the tensors give " + std::to_string(v));
    return s;
}

struct MmprojBuilder {
    const HfFolder& f;
    DType matrix_type;  // F16 or F32
    GgufPlan plan;

    void add(const std::string& gguf, const Tensor& t, DType type) { plan.tensors.push_back({gguf, t, type, 0}); }
    void vec(const std::string& gguf, const std::string& hf, int64_t n) { add(gguf, shaped(f, hf, {n}), DType::F32); }
    void mat(const std::string& gguf, const std::string& hf, int64_t cols, int64_t rows) {
        add(gguf, shaped(f, hf, {cols, rows}), matrix_type);
    }
    // One pre-LN encoder block; `fc1_name` / `fc2_name` are the GGUF names of HF fc1 / fc2.
    void block(const std::string& hf, int i, const VitShape& s, const char* fc1_name, const char* fc2_name) {
        const std::string b = "v.blk." + std::to_string(i) + ".";
        const std::string a = hf + "self_attn.";
        for (auto [g, h] : {std::pair{"attn_k", "k_proj"}, {"attn_v", "v_proj"}, {"attn_q", "q_proj"}, {"attn_out", "out_proj"}}) {
            mat(b + g + ".weight", a + h + ".weight", s.width, s.width);
            vec(b + g + ".bias", a + h + ".bias", s.width);
        }
        vec(b + "ln1.weight", hf + "layer_norm1.weight", s.width);
        vec(b + "ln1.bias", hf + "layer_norm1.bias", s.width);
        mat(b + fc1_name + ".weight", hf + "mlp.fc1.weight", s.width, s.n_ff);
        vec(b + fc1_name + ".bias", hf + "mlp.fc1.bias", s.n_ff);
        mat(b + fc2_name + ".weight", hf + "mlp.fc2.weight", s.n_ff, s.width);
        vec(b + fc2_name + ".bias", hf + "mlp.fc2.bias", s.width);
        vec(b + "ln2.weight", hf + "layer_norm2.weight", s.width);
        vec(b + "ln2.bias", hf + "layer_norm2.bias", s.width);
    }
};

std::string mmproj_name(const HfFolder& f) {
    fs::path p = fs::path(f.dir()).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    return p.filename().string() + "-mmproj";
}

bool tanh_gelu(const HfFolder& f) {
    const std::string act = text(sub_config(f, "vision_config"), "hidden_act", "gelu_pytorch_tanh");
    return act != "quick_gelu";
}

GgufPlan plan_idefics3(const HfFolder& f, const ConvertOptions& opt) {
    const std::string vp = find_prefix(f, {"model.vision_model.", "vision_model."}, "embeddings.patch_embedding.weight");
    const std::string cp = find_prefix(f, {"model.connector.", "connector."}, "modality_projection.proj.weight");
    const VitShape s = vit_shape(f, vp, false, 1e-6);
    const Tensor& proj = f.tensor(cp + "modality_projection.proj.weight");
    const int64_t n_text = proj.ne[1];
    const int64_t sf = std::llround(std::sqrt(double(proj.ne[0]) / double(s.width)));
    if (sf < 1 || sf * sf * s.width != proj.ne[0])
        throw model_error(f.dir(), "tensor '" + cp + "modality_projection.proj.weight' has shape " + proj.shape_string() +
                                       ": its input is not width " + std::to_string(s.width) + " x scale_factor^2");
    const int64_t cfg_sf = int64_t(number(f, f.config(), "", "scale_factor", double(sf)));
    if (cfg_sf != sf)
        throw model_error(config_path(f), "scale_factor " + std::to_string(cfg_sf) + " but the connector gives " +
                                              std::to_string(sf));
    const json pre = preprocessor_config(f);

    MmprojBuilder b{f, opt.type == DType::F32 ? DType::F32 : DType::F16, {}};
    GgufWriter& w = b.plan.meta;
    w.set_str("general.architecture", "clip");
    w.set_str("general.type", "mmproj");
    w.set_str("general.name", mmproj_name(f));
    w.set_u32("general.file_type", gguf_file_type(b.matrix_type));
    w.set_bool("clip.has_vision_encoder", true);
    w.set_u32("clip.vision.projection_dim", uint32_t(n_text));
    w.set_u32("clip.vision.image_size", uint32_t(s.image_size));
    w.set_u32("clip.vision.patch_size", uint32_t(s.patch));
    w.set_u32("clip.vision.embedding_length", uint32_t(s.width));
    w.set_u32("clip.vision.feed_forward_length", uint32_t(s.n_ff));
    w.set_u32("clip.vision.block_count", uint32_t(s.n_layers));
    w.set_u32("clip.vision.attention.head_count", uint32_t(s.n_heads));
    w.set_f32_array("clip.vision.image_mean", three_floats(pre, "image_mean", {0.5f, 0.5f, 0.5f}, f));
    w.set_f32_array("clip.vision.image_std", three_floats(pre, "image_std", {0.5f, 0.5f, 0.5f}, f));
    w.set_str("clip.projector_type", "idefics3");
    w.set_f32("clip.vision.attention.layer_norm_epsilon", s.eps);
    w.set_u32("clip.vision.projector.scale_factor", uint32_t(sf));
    w.set_bool("clip.use_gelu", tanh_gelu(f));
    if (pre.contains("size") && pre["size"].is_object() && pre["size"].contains("longest_edge") &&
        pre["size"]["longest_edge"].is_number_unsigned())
        w.set_u32("clip.vision.preproc_image_size", pre["size"]["longest_edge"].get<uint32_t>());
    w.set_u32("general.quantization_version", 2);

    const std::string e = vp + "embeddings.";
    b.add("v.patch_embd.weight", shaped(f, e + "patch_embedding.weight", {s.patch, s.patch, s.channels, s.width}), DType::F32);
    b.vec("v.patch_embd.bias", e + "patch_embedding.bias", s.width);
    b.add("v.position_embd.weight", shaped(f, e + "position_embedding.weight", {s.width, s.n_pos}), DType::F32);
    for (int i = 0; i < s.n_layers; ++i)
        b.block(vp + "encoder.layers." + std::to_string(i) + ".", i, s, "ffn_up", "ffn_down");
    b.vec("v.post_ln.weight", vp + "post_layernorm.weight", s.width);
    b.vec("v.post_ln.bias", vp + "post_layernorm.bias", s.width);
    b.mat("mm.model.fc.weight", cp + "modality_projection.proj.weight", s.width * sf * sf, n_text);
    return std::move(b.plan);
}

GgufPlan plan_llava(const HfFolder& f, const ConvertOptions& opt) {
    const json& top = f.config();
    const std::string vp = find_prefix(f, {"vision_tower.vision_model.", "model.vision_tower.vision_model."},
                                       "embeddings.patch_embedding.weight");
    const std::string pp = find_prefix(f, {"multi_modal_projector.", "model.multi_modal_projector."}, "linear_1.weight");
    const VitShape s = vit_shape(f, vp, true, 1e-5);
    const double feature_layer = number(f, top, "", "vision_feature_layer", -2);
    if (feature_layer != -2)
        throw model_error(config_path(f), "vision_feature_layer " + top["vision_feature_layer"].dump() +
                                              " is not supported (the legacy mmproj layout stores LLaVA-1.5's -2)");
    if (text(top, "vision_feature_select_strategy", "default") != "default")
        throw model_error(config_path(f), "vision_feature_select_strategy '" + text(top, "vision_feature_select_strategy", "") +
                                              "' is not supported (LLaVA-1.5 uses 'default')");
    if (s.n_layers < 2) throw model_error(f.dir(), "the vision tower has " + std::to_string(s.n_layers) + " layer(s); LLaVA needs at least 2");
    const int stored = s.n_layers - 1;  // the features come from the second-to-last layer
    const int64_t mm_hidden = f.tensor(pp + "linear_1.weight").ne[1];
    const int64_t n_text = f.tensor(pp + "linear_2.weight").ne[1];
    const json pre = preprocessor_config(f);
    const json& vc = sub_config(f, "vision_config");

    MmprojBuilder b{f, opt.type == DType::F32 ? DType::F32 : DType::F16, {}};
    GgufWriter& w = b.plan.meta;
    w.set_str("general.architecture", "clip");
    w.set_bool("clip.has_text_encoder", false);
    w.set_bool("clip.has_vision_encoder", true);
    w.set_bool("clip.has_llava_projector", true);
    w.set_u32("general.file_type", gguf_file_type(b.matrix_type));
    w.set_str("general.name", mmproj_name(f));
    w.set_str("general.description", "image encoder for LLaVA");
    w.set_str("clip.projector_type", "mlp");
    w.set_u32("clip.vision.image_size", uint32_t(s.image_size));
    w.set_u32("clip.vision.patch_size", uint32_t(s.patch));
    w.set_u32("clip.vision.embedding_length", uint32_t(s.width));
    w.set_u32("clip.vision.feed_forward_length", uint32_t(s.n_ff));
    w.set_u32("clip.vision.projection_dim", uint32_t(number(f, vc, "vision_config.", "projection_dim", 512)));
    w.set_u32("clip.vision.attention.head_count", uint32_t(s.n_heads));
    w.set_f32("clip.vision.attention.layer_norm_epsilon", s.eps);
    w.set_u32("clip.vision.block_count", uint32_t(stored));
    w.set_f32_array("clip.vision.image_mean", three_floats(pre, "image_mean", kClipMean, f));
    w.set_f32_array("clip.vision.image_std", three_floats(pre, "image_std", kClipStd, f));
    w.set_bool("clip.use_gelu", text(vc, "hidden_act", "quick_gelu") != "quick_gelu");

    b.mat("mm.0.weight", pp + "linear_1.weight", s.width, mm_hidden);
    b.vec("mm.0.bias", pp + "linear_1.bias", mm_hidden);
    b.mat("mm.2.weight", pp + "linear_2.weight", mm_hidden, n_text);
    b.vec("mm.2.bias", pp + "linear_2.bias", n_text);
    const std::string e = vp + "embeddings.";
    b.vec("v.class_embd", e + "class_embedding", s.width);
    b.add("v.patch_embd.weight", shaped(f, e + "patch_embedding.weight", {s.patch, s.patch, s.channels, s.width}),
          b.matrix_type);
    b.mat("v.position_embd.weight", e + "position_embedding.weight", s.width, s.n_pos);
    b.vec("v.pre_ln.weight", vp + "pre_layrnorm.weight", s.width);
    b.vec("v.pre_ln.bias", vp + "pre_layrnorm.bias", s.width);
    for (int i = 0; i < stored; ++i)
        b.block(vp + "encoder.layers." + std::to_string(i) + ".", i, s, "ffn_down", "ffn_up");
    return std::move(b.plan);
}

}  // namespace

namespace detail {

VisionKind hf_vision_kind(const HfFolder& f) {
    const std::string arch = f.architecture();
    if (arch == "Idefics3ForConditionalGeneration" || arch == "SmolVLMForConditionalGeneration") return VisionKind::Idefics3;
    if (arch == "LlavaForConditionalGeneration") return VisionKind::Llava;
    return VisionKind::None;
}

GgufPlan plan_hf_mmproj(const HfFolder& f, VisionKind kind, const ConvertOptions& opt) {
    try {
        if (kind == VisionKind::Idefics3) return plan_idefics3(f, opt);
        if (kind == VisionKind::Llava) return plan_llava(f, opt);
    } catch (const json::exception& e) {
        throw model_error(config_path(f), std::string("unexpected JSON structure: ") + e.what());
    }
    throw model_error(f.dir(), "has no vision tower to convert");
}

}  // namespace detail

}  // namespace glimpse
