// The Llama decoder from a Hugging Face folder (config.json + safetensors), as transformers'
// LlamaForCausalLM names it, or as the text tower inside Idefics3/SmolVLM and Llava
// checkpoints (MODELS.md §3.2-3.3, §4.2). HF keeps q_proj/k_proj rows as trained, so RoPE is
// rotate_half (HalfSplit); the GGUF converter's permutation never happened (§1.4).
//
// Sizes come from the tensors (MODELS.md §3.2: "derive layer counts and dims from tensor
// names/shapes and only cross-check with config"); only the head count, RoPE base and norm
// epsilon must come from config.json, with transformers' LlamaConfig defaults when absent.
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/llama_load_internal.h"
#include "text/llama_model.h"
#include "weights/hf_folder.h"
#include "weights/safetensors.h"  // message_safe

namespace glimpse {

namespace {

using json = nlohmann::json;

std::string config_path(const HfFolder& f) { return f.dir() + "/config.json"; }

// A number from the (sub-)config: `def` when absent or null; an error naming the key when it
// is not a number or out of [lo, hi].
double config_number(const HfFolder& f, const json& cfg, const std::string& where, const char* key, double def,
                     double lo, double hi) {
    if (!cfg.contains(key) || cfg[key].is_null()) return def;
    const json& v = cfg[key];
    if (!v.is_number())
        throw model_error(config_path(f), where + key + " is " + v.type_name() + ", expected a number");
    const double d = v.get<double>();
    if (!(d >= lo && d <= hi))
        throw model_error(config_path(f), where + key + " = " + v.dump() + " is out of range");
    return d;
}

bool config_true(const json& cfg, const char* key) {
    return cfg.is_object() && cfg.contains(key) && cfg[key].is_boolean() && cfg[key].get<bool>();
}

// Layers are body + "layers.N."; count them from 0 until one is missing.
int count_layers(const HfFolder& f, const std::string& body) {
    int n = 0;
    while (n < 4096 && f.find_tensor(body + "layers." + std::to_string(n) + ".input_layernorm.weight")) ++n;
    return n;
}

// Cross-check a size taken from the tensors with config.json, when the key is present.
void cross_check(const HfFolder& f, const json& cfg, const std::string& where, const char* key, int64_t from_tensors,
                 const char* what) {
    if (!cfg.contains(key) || cfg[key].is_null()) return;
    const double v = config_number(f, cfg, where, key, 0, 0, 1e12);
    if (int64_t(v) != from_tensors)
        throw model_error(config_path(f), where + key + " = " + cfg[key].dump() + " but the tensors give " + what + " " +
                                              std::to_string(from_tensors));
}

}  // namespace

HfLlamaLayout hf_llama_layout(const HfFolder& f) {
    const std::string arch = f.architecture();
    if (arch == "LlamaForCausalLM" || (arch.empty() && f.model_type() == "llama"))
        return {"", "model.", "lm_head.weight"};
    if (arch == "Idefics3ForConditionalGeneration" || arch == "SmolVLMForConditionalGeneration")
        return {"text_config", "model.text_model.", "lm_head.weight"};
    if (arch == "LlavaForConditionalGeneration") {
        // transformers < 4.52 saved language_model.model.*; newer versions model.language_model.*
        if (f.find_tensor("language_model.model.embed_tokens.weight"))
            return {"text_config", "language_model.model.", "language_model.lm_head.weight"};
        return {"text_config", "model.language_model.", "lm_head.weight"};
    }
    throw model_error(config_path(f), "architecture '" + message_safe(arch.empty() ? f.model_type() : arch) +
                                          "' has no Llama text model glimpse can run (supported: LlamaForCausalLM, "
                                          "Idefics3/SmolVLM, Llava)");
}

LlamaModel load_llama_hf(const HfFolder& f, const HfLlamaLayout& layout) {
    const std::string cfg_file = config_path(f);
    const json& top = f.config();
    const json* cfg = &top;
    std::string where;  // "text_config." prefix for messages
    if (!layout.config_key.empty()) {
        if (top.contains(layout.config_key) && top[layout.config_key].is_object()) cfg = &top[layout.config_key];
        else if (top.contains(layout.config_key) && !top[layout.config_key].is_null())
            throw model_error(cfg_file, layout.config_key + " is not an object");
        where = layout.config_key + ".";
    }
    if (cfg->contains("rope_scaling") && !(*cfg)["rope_scaling"].is_null())
        throw model_error(cfg_file, where + "rope_scaling is set (RoPE scaling is not supported)");

    LlamaModel m;
    m.path = f.dir();
    m.format = LlamaFormat::HfFolder;
    LlamaWeights& w = m.weights;
    const std::string& b = layout.body;
    w.token_embd = f.tensor(b + "embed_tokens.weight");
    const int n_layers = count_layers(f, b);
    if (n_layers == 0) throw model_error(f.dir(), "no tensor named '" + b + "layers.0.input_layernorm.weight'");
    for (int l = 0; l < n_layers; ++l) {
        const std::string p = b + "layers." + std::to_string(l) + ".";
        LlamaLayerWeights L;
        L.attn_norm = f.tensor(p + "input_layernorm.weight");
        L.wq = f.tensor(p + "self_attn.q_proj.weight");
        L.wk = f.tensor(p + "self_attn.k_proj.weight");
        L.wv = f.tensor(p + "self_attn.v_proj.weight");
        L.wo = f.tensor(p + "self_attn.o_proj.weight");
        L.ffn_norm = f.tensor(p + "post_attention_layernorm.weight");
        L.w_gate = f.tensor(p + "mlp.gate_proj.weight");
        L.w_up = f.tensor(p + "mlp.up_proj.weight");
        L.w_down = f.tensor(p + "mlp.down_proj.weight");
        w.layers.push_back(std::move(L));
    }
    w.output_norm = f.tensor(b + "norm.weight");

    LlamaConfig c;
    c.n_layers = n_layers;
    c.n_embd = int(w.token_embd.ne[0]);
    c.n_vocab = int(w.token_embd.ne[1]);
    c.n_ff = int(w.layers[0].w_gate.ne[1]);
    c.n_heads = int(config_number(f, *cfg, where, "num_attention_heads", 32, 1, 1 << 12));
    c.n_kv_heads = int(config_number(f, *cfg, where, "num_key_value_heads", c.n_heads, 1, 1 << 12));
    c.head_dim = int(config_number(f, *cfg, where, "head_dim", c.n_embd / c.n_heads, 1, 1 << 12));
    c.n_ctx_train = int(config_number(f, *cfg, where, "max_position_embeddings", 2048, 1, 1 << 24));
    c.rope_theta = float(config_number(f, *cfg, where, "rope_theta", 10000.0, 1.0, 1e12));
    c.rms_eps = float(config_number(f, *cfg, where, "rms_norm_eps", 1e-6, 1e-12, 1.0));
    c.rope_style = ops::RopeStyle::HalfSplit;
    cross_check(f, *cfg, where, "hidden_size", c.n_embd, "n_embd");
    cross_check(f, *cfg, where, "intermediate_size", c.n_ff, "n_ff");
    cross_check(f, *cfg, where, "num_hidden_layers", c.n_layers, "layer count");
    cross_check(f, *cfg, where, "vocab_size", c.n_vocab, "vocabulary size");
    detail::check_config(cfg_file, c, "config.json");

    // The output matrix: lm_head when stored; otherwise tied, which config must say.
    if (const Tensor* head = f.find_tensor(layout.lm_head)) {
        w.output = *head;
    } else if (config_true(top, "tie_word_embeddings") || config_true(*cfg, "tie_word_embeddings")) {
        c.tied_output = true;
        w.output = w.token_embd;
    } else {
        throw model_error(f.dir(), "tensor '" + layout.lm_head +
                                       "' is missing and config.json does not set tie_word_embeddings");
    }
    detail::check_weights(f.dir(), c, w);
    m.config = c;
    return m;
}

LlamaModel load_llama_hf(std::shared_ptr<const HfFolder> folder) {
    LlamaModel m = load_llama_hf(*folder, hf_llama_layout(*folder));
    m.hf = std::move(folder);
    return m;
}

}  // namespace glimpse
