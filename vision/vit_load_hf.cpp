// The vision tower and projector from a Hugging Face folder (config.json + safetensors), as
// transformers names them (MODELS.md §3.2-3.3 for Idefics3/SmolVLM, §4.1-4.3 for LLaVA-1.5).
// The bytes of every tensor are what the GGUF converter would write (HF [out, in] is GGUF
// ne {in, out}; conv [D, 3, p, p] is ne {p, p, 3, D}), so no tensor is transposed or copied.
//
// Sizes come from the tensors and are cross-checked with config.json; the head count, norm
// epsilon, activation and LLaVA's vision_feature_layer must come from config (transformers'
// class defaults when absent). Preprocessing numbers come from preprocessor_config.json.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "vision/vit_model.h"
#include "weights/hf_folder.h"
#include "weights/safetensors.h"  // message_safe

namespace glimpse {

namespace {

using json = nlohmann::json;

struct HfVisionLayout {
    bool llava = false;
    std::string body;       // "model.vision_model." / "vision_tower.vision_model." / ...
    std::string projector;  // "model.connector.modality_projection." / "multi_modal_projector." / ...
};

std::string config_path(const HfFolder& f) { return f.dir() + "/config.json"; }

HfVisionLayout hf_vision_layout(const HfFolder& f) {
    const std::string arch = f.architecture();
    if (arch == "Idefics3ForConditionalGeneration" || arch == "SmolVLMForConditionalGeneration")
        return {false, "model.vision_model.", "model.connector.modality_projection."};
    if (arch == "LlavaForConditionalGeneration") {
        // transformers < 4.52 saved vision_tower.* / multi_modal_projector.*; newer ones model.*
        if (f.find_tensor("vision_tower.vision_model.embeddings.patch_embedding.weight"))
            return {true, "vision_tower.vision_model.", "multi_modal_projector."};
        return {true, "model.vision_tower.vision_model.", "model.multi_modal_projector."};
    }
    throw model_error(config_path(f), "architecture '" + message_safe(arch.empty() ? f.model_type() : arch) +
                                          "' has no vision tower glimpse can run (supported: Idefics3/SmolVLM, Llava)");
}

// A number from `cfg`: `def` when absent or null; an error naming the key when it is not a
// number or outside [lo, hi].
double number(const HfFolder& f, const json& cfg, const std::string& where, const char* key, double def, double lo,
              double hi) {
    if (!cfg.is_object() || !cfg.contains(key) || cfg[key].is_null()) return def;
    const json& v = cfg[key];
    if (!v.is_number()) throw model_error(config_path(f), where + key + " is " + v.type_name() + ", expected a number");
    const double d = v.get<double>();
    if (!(d >= lo && d <= hi)) throw model_error(config_path(f), where + key + " = " + v.dump() + " is out of range");
    return d;
}

std::string text(const HfFolder& f, const json& cfg, const std::string& where, const char* key, const char* def) {
    if (!cfg.is_object() || !cfg.contains(key) || cfg[key].is_null()) return def;
    if (!cfg[key].is_string()) throw model_error(config_path(f), where + key + " is not a string");
    return cfg[key].get<std::string>();
}

void cross_check(const HfFolder& f, const json& cfg, const std::string& where, const char* key, int64_t from_tensors) {
    const double v = number(f, cfg, where, key, double(from_tensors), 0, 1e9);
    if (int64_t(v) != from_tensors)
        throw model_error(config_path(f), where + key + " = " + cfg[key].dump() + " but the tensors give " +
                                              std::to_string(from_tensors));
}

VisionActivation activation(const HfFolder& f, const std::string& act) {
    if (act == "gelu_pytorch_tanh" || act == "gelu_new") return VisionActivation::GeluTanh;
    if (act == "gelu") return VisionActivation::GeluErf;
    if (act == "quick_gelu") return VisionActivation::QuickGelu;
    throw model_error(config_path(f), "vision_config.hidden_act '" + message_safe(act) + "' is not supported");
}

int count_layers(const HfFolder& f, const std::string& body) {
    int n = 0;
    while (n < 1024 && f.find_tensor(body + "encoder.layers." + std::to_string(n) + ".layer_norm1.weight")) ++n;
    return n;
}

VisionLayerWeights hf_layer(const HfFolder& f, const std::string& body, int l) {
    const std::string b = body + "encoder.layers." + std::to_string(l) + ".";
    VisionLayerWeights L;
    L.ln1_w = f.tensor(b + "layer_norm1.weight");
    L.ln1_b = f.tensor(b + "layer_norm1.bias");
    L.q_w = f.tensor(b + "self_attn.q_proj.weight");
    L.q_b = f.tensor(b + "self_attn.q_proj.bias");
    L.k_w = f.tensor(b + "self_attn.k_proj.weight");
    L.k_b = f.tensor(b + "self_attn.k_proj.bias");
    L.v_w = f.tensor(b + "self_attn.v_proj.weight");
    L.v_b = f.tensor(b + "self_attn.v_proj.bias");
    L.o_w = f.tensor(b + "self_attn.out_proj.weight");
    L.o_b = f.tensor(b + "self_attn.out_proj.bias");
    L.ln2_w = f.tensor(b + "layer_norm2.weight");
    L.ln2_b = f.tensor(b + "layer_norm2.bias");
    L.fc1_w = f.tensor(b + "mlp.fc1.weight");
    L.fc1_b = f.tensor(b + "mlp.fc1.bias");
    L.fc2_w = f.tensor(b + "mlp.fc2.weight");
    L.fc2_b = f.tensor(b + "mlp.fc2.bias");
    return L;
}

// Blocks LLaVA runs: hidden_states[k] is the output of k blocks (hidden_states[0] = the
// embeddings), so k >= 0 runs k blocks and k < 0 runs L + 1 + k (-2: all but the last).
int llava_layers_to_run(const HfFolder& f, const json& top, int stored) {
    if (top.contains("vision_feature_layer") && top["vision_feature_layer"].is_array())
        throw model_error(config_path(f), "vision_feature_layer is a list (multi-layer features are not supported)");
    const auto k = int(number(f, top, "", "vision_feature_layer", -2, -stored - 1, stored));
    const int run = k >= 0 ? k : stored + 1 + k;
    if (run < 1) throw model_error(config_path(f), "vision_feature_layer " + std::to_string(k) + " runs no encoder block");
    const std::string select = text(f, top, "", "vision_feature_select_strategy", "default");
    if (select != "default")
        throw model_error(config_path(f), "vision_feature_select_strategy '" + message_safe(select) +
                                              "' is not supported (only 'default', which drops the class token)");
    const std::string act = text(f, top, "", "projector_hidden_act", "gelu");
    if (act != "gelu") throw model_error(config_path(f), "projector_hidden_act '" + message_safe(act) + "' is not supported");
    return run;
}

// preprocessor_config.json: image_mean / image_std, SmolVLM's size.longest_edge.
void read_preprocessor(const HfFolder& f, VisionConfig& c) {
    const std::string path = f.dir() + "/preprocessor_config.json";
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return;
    const json p = read_json_file(path);
    if (!p.is_object()) throw model_error(path, "is not a JSON object");
    for (const char* key : {"image_mean", "image_std"}) {
        if (!p.contains(key)) continue;
        const json& v = p[key];
        if (!v.is_array() || v.size() != 3 || !v[0].is_number() || !v[1].is_number() || !v[2].is_number())
            throw model_error(path, std::string(key) + " is not a list of 3 numbers");
        float* dst = std::string(key) == "image_mean" ? c.image_mean : c.image_std;
        for (int i = 0; i < 3; ++i) dst[i] = v[size_t(i)].get<float>();
    }
    if (c.kind == VisionKind::SigLIP && p.contains("size") && p["size"].is_object() && p["size"].contains("longest_edge")) {
        const json& e = p["size"]["longest_edge"];
        if (!e.is_number_integer() || e.get<int64_t>() < 1 || e.get<int64_t>() > (1 << 16))
            throw model_error(path, "size.longest_edge is not a positive integer");
        c.preproc_image_size = int(e.get<int64_t>());
    }
}

}  // namespace

VisionModel load_vision_hf(std::shared_ptr<const HfFolder> folder) {
    const HfFolder& f = *folder;
    const HfVisionLayout lay = hf_vision_layout(f);
    const json& top = f.config();
    const json empty = json::object();
    const json& vc = top.contains("vision_config") && top["vision_config"].is_object() ? top["vision_config"] : empty;
    const std::string where = "vision_config.";
    const std::string& b = lay.body;

    VisionModel m;
    m.path = f.dir();
    m.format = VisionFormat::HfFolder;
    VisionConfig c;
    VisionWeights& w = m.weights;
    c.kind = lay.llava ? VisionKind::CLIP : VisionKind::SigLIP;
    w.patch_w = f.tensor(b + "embeddings.patch_embedding.weight");
    w.position_embd = f.tensor(b + "embeddings.position_embedding.weight");
    if (!lay.llava) w.patch_b = f.tensor(b + "embeddings.patch_embedding.bias");
    c.has_patch_bias = !lay.llava;
    c.has_class_token = lay.llava;
    c.pre_layernorm = lay.llava;
    c.post_layernorm = !lay.llava;  // LLaVA takes hidden states before CLIP's post_layernorm
    if (lay.llava) {
        w.class_embd = f.tensor(b + "embeddings.class_embedding");
        w.pre_ln_w = f.tensor(b + "pre_layrnorm.weight");
        w.pre_ln_b = f.tensor(b + "pre_layrnorm.bias");
    } else {
        w.post_ln_w = f.tensor(b + "post_layernorm.weight");
        w.post_ln_b = f.tensor(b + "post_layernorm.bias");
    }
    // Sizes from the tensors: width and patch from the conv, grid from the position table.
    c.n_embd = int(std::min<int64_t>(w.patch_w.ne[3], 1 << 20));
    c.patch_size = int(std::min<int64_t>(w.patch_w.ne[0], 1 << 20));
    const int64_t n_pos = w.position_embd.ne[1] - (lay.llava ? 1 : 0);
    const auto side = int64_t(std::llround(std::sqrt(double(std::max<int64_t>(n_pos, 0)))));
    if (side * side != n_pos || side < 1 || side > 4096)
        throw model_error(f.dir(), "tensor '" + w.position_embd.name + "' has " + std::to_string(w.position_embd.ne[1]) +
                                       " rows, not a square patch grid" + (lay.llava ? " plus a class row" : ""));
    c.image_size = int(side) * c.patch_size;
    const int stored = count_layers(f, b);
    if (stored == 0) throw model_error(f.dir(), "no tensor named '" + b + "encoder.layers.0.layer_norm1.weight'");
    c.n_layers = lay.llava ? llava_layers_to_run(f, top, stored) : stored;
    for (int l = 0; l < c.n_layers; ++l) w.layers.push_back(hf_layer(f, b, l));
    c.n_ff = int(std::min<int64_t>(w.layers[0].fc1_w.ne[1], 1 << 20));
    c.n_heads = int(number(f, vc, where, "num_attention_heads", lay.llava ? 12 : 16, 1, 1 << 12));
    c.layer_norm_eps = float(number(f, vc, where, "layer_norm_eps", lay.llava ? 1e-5 : 1e-6, 1e-12, 0.5));
    c.activation = activation(f, text(f, vc, where, "hidden_act", lay.llava ? "quick_gelu" : "gelu_pytorch_tanh"));
    cross_check(f, vc, where, "hidden_size", c.n_embd);
    cross_check(f, vc, where, "intermediate_size", c.n_ff);
    cross_check(f, vc, where, "image_size", c.image_size);
    cross_check(f, vc, where, "patch_size", c.patch_size);
    cross_check(f, vc, where, "num_hidden_layers", stored);

    ProjectorConfig& p = c.projector;
    ProjectorWeights& pw = w.projector;
    if (lay.llava) {
        static constexpr float kClipMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};  // CLIPImageProcessor
        static constexpr float kClipStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
        std::copy(kClipMean, kClipMean + 3, c.image_mean);
        std::copy(kClipStd, kClipStd + 3, c.image_std);
        p.kind = ProjectorKind::Mlp;
        pw.mm0_w = f.tensor(lay.projector + "linear_1.weight");
        pw.mm0_b = f.tensor(lay.projector + "linear_1.bias");
        pw.mm2_w = f.tensor(lay.projector + "linear_2.weight");
        pw.mm2_b = f.tensor(lay.projector + "linear_2.bias");
        p.n_hidden = int(std::min<int64_t>(pw.mm0_w.ne[1], 1 << 30));
        p.n_out = int(std::min<int64_t>(pw.mm2_w.ne[1], 1 << 30));
    } else {
        p.kind = ProjectorKind::Idefics3;
        pw.fc = f.tensor(lay.projector + "proj.weight");
        p.scale_factor = int(number(f, top, "", "scale_factor", 2, 1, 64));
        p.n_out = int(std::min<int64_t>(pw.fc.ne[1], 1 << 30));
        c.preproc_image_size = 4 * c.image_size;  // SmolVLM's processor: longest edge 2048 for 512 tiles
    }
    read_preprocessor(f, c);
    detail::check_vision_model(f.dir(), c, w);
    m.config = c;
    m.hf = std::move(folder);
    return m;
}

}  // namespace glimpse
