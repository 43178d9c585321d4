// Llama text models to GGUF (general.architecture "llama", MODELS.md §3.12 / §4.6): from a
// Hugging Face folder (LlamaForCausalLM, or the text tower of Idefics3/SmolVLM and Llava) or a
// llama2.c checkpoint. The decoder's own loaders (text/llama_model.h) resolve and check the
// source tensors, so whatever converts here is exactly what glimpse runs from the source.
//
// Vocabulary keys (what text/tokenizer.cpp's load_tokenizer_gguf and llama.cpp read):
//   byte-level BPE tokenizer.json -> tokenizer.ggml.model "gpt2", .pre from the pre-tokenizer
//     (Digits+ByteLevel "smollm", ByteLevel "gpt-2", Llama-3 regex "llama-bpe", Qwen2 "qwen2"),
//     tokens, token_type, merges ("a b");
//   SentencePiece-like tokenizer.json (Metaspace / Prepend "▁") -> "llama" with scores: the
//     score of a token is minus the rank of the first merge that makes it, so merging the
//     best-scored pair (llama.cpp's SPM rule) repeats the BPE merges; tokens no merge makes get
//     -1e9 (the single characters and bytes they start from never need a score);
//   llama2.c tok.bin -> "llama" with the file's own scores, spaces written as "▁".
// A vocabulary smaller than the embedding table is padded with "[PAD<i>]" tokens of type unused
// (5), as llama.cpp's converter does.
#include <filesystem>
#include <limits>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/chat_template.h"
#include "text/llama_model.h"
#include "text/tokenizer.h"
#include "weights/convert.h"
#include "weights/hf_folder.h"
#include "weights/llama2c.h"
#include "weights/safetensors.h"  // message_safe

namespace glimpse {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// general.*, llama.* and the tensors of a loaded decoder. RoPE: a model that rotates with
// HalfSplit (HF) has its q/k rows permuted so that the GGUF file rotates adjacent pairs.
GgufPlan plan_llama(const LlamaModel& m, const std::string& name, const ConvertOptions& opt) {
    const LlamaConfig& c = m.config;
    GgufPlan plan;
    GgufWriter& w = plan.meta;
    w.set_str("general.architecture", "llama");
    w.set_str("general.type", "model");
    w.set_str("general.name", name);
    w.set_u32("llama.block_count", uint32_t(c.n_layers));
    w.set_u32("llama.context_length", uint32_t(c.n_ctx_train));
    w.set_u32("llama.embedding_length", uint32_t(c.n_embd));
    w.set_u32("llama.feed_forward_length", uint32_t(c.n_ff));
    w.set_u32("llama.attention.head_count", uint32_t(c.n_heads));
    w.set_u32("llama.attention.head_count_kv", uint32_t(c.n_kv_heads));
    w.set_f32("llama.rope.freq_base", c.rope_theta);
    w.set_f32("llama.attention.layer_norm_rms_epsilon", c.rms_eps);
    if (c.head_dim * c.n_heads != c.n_embd) {
        w.set_u32("llama.attention.key_length", uint32_t(c.head_dim));
        w.set_u32("llama.attention.value_length", uint32_t(c.head_dim));
    }
    w.set_u32("general.file_type", gguf_file_type(opt.type));
    w.set_u32("llama.vocab_size", uint32_t(c.n_vocab));
    w.set_u32("llama.rope.dimension_count", uint32_t(c.head_dim));

    const bool permute = c.rope_style == ops::RopeStyle::HalfSplit;
    auto matrix = [&](const std::string& n, const Tensor& t, int rope_heads = 0) {
        const DType type = detail::matrix_type(n, t.ne[0], opt.type, plan);
        plan.tensors.push_back({n, t, type, permute ? rope_heads : 0});
    };
    auto vector = [&](const std::string& n, const Tensor& t) { plan.tensors.push_back({n, t, DType::F32, 0}); };
    const LlamaWeights& W = m.weights;
    matrix("token_embd.weight", W.token_embd);
    for (int l = 0; l < c.n_layers; ++l) {
        const LlamaLayerWeights& L = W.layers[size_t(l)];
        const std::string b = "blk." + std::to_string(l) + ".";
        vector(b + "attn_norm.weight", L.attn_norm);
        matrix(b + "attn_q.weight", L.wq, c.n_heads);
        matrix(b + "attn_k.weight", L.wk, c.n_kv_heads);
        matrix(b + "attn_v.weight", L.wv);
        matrix(b + "attn_output.weight", L.wo);
        vector(b + "ffn_norm.weight", L.ffn_norm);
        matrix(b + "ffn_gate.weight", L.w_gate);
        matrix(b + "ffn_up.weight", L.w_up);
        matrix(b + "ffn_down.weight", L.w_down);
    }
    vector("output_norm.weight", W.output_norm);
    if (!c.tied_output) matrix("output.weight", W.output);
    return plan;
}

// tokens and token_type from a loaded tokenizer, padded to the model's vocabulary.
void set_tokens(GgufWriter& w, const Tokenizer& tok, int n_vocab, const std::string& model_path) {
    if (tok.n_vocab() > n_vocab)
        throw model_error(tok.source(), "has " + std::to_string(tok.n_vocab()) + " tokens but the model " + model_path +
                                            " only " + std::to_string(n_vocab) + " embedding rows");
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    tokens.reserve(size_t(n_vocab));
    types.reserve(size_t(n_vocab));
    for (int32_t i = 0; i < tok.n_vocab(); ++i) {
        tokens.push_back(tok.token_text(i));
        types.push_back(int32_t(tok.token_type(i)));
    }
    for (int32_t i = tok.n_vocab(); i < n_vocab; ++i) {
        tokens.push_back("[PAD" + std::to_string(i) + "]");
        types.push_back(int32_t(TokenType::Unused));
    }
    w.set_str_array("tokenizer.ggml.tokens", std::move(tokens));
    w.set_i32_array("tokenizer.ggml.token_type", types);
}

void set_special_ids(GgufWriter& w, const Tokenizer& tok) {
    auto id = [&](const char* key, int32_t v) {
        if (v >= 0) w.set_u32(key, uint32_t(v));
    };
    id("tokenizer.ggml.bos_token_id", tok.bos_id());
    id("tokenizer.ggml.eos_token_id", tok.eos_id());
    id("tokenizer.ggml.unknown_token_id", tok.unk_id());
    id("tokenizer.ggml.padding_token_id", tok.pad_id());
    w.set_bool("tokenizer.ggml.add_bos_token", tok.add_bos());
    if (tok.add_eos()) w.set_bool("tokenizer.ggml.add_eos_token", true);
}

// The pre-tokenizer entries of tokenizer.json (a Sequence unrolled); load_tokenizer_hf_json
// has already checked that they form a supported combination.
std::vector<json> pre_tokenizers(const json& root) {
    const json pre = root.value("pre_tokenizer", json());
    if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers"))
        return pre["pretokenizers"].get<std::vector<json>>();
    if (pre.is_object()) return {pre};
    return {};
}

std::string pre_name(const std::vector<json>& pres) {
    for (const json& p : pres) {
        const std::string type = p.value("type", "");
        if (type == "Digits") return "smollm";
        if (type == "Split") {
            const json& pat = p.value("pattern", json());
            const std::string regex = pat.is_object() ? pat.value("Regex", "") : "";
            return regex.find("\\p{N}{1,3}") != std::string::npos ? "llama-bpe" : "qwen2";
        }
    }
    return "gpt-2";
}

// model.merges as "a b" strings (tokenizer.json holds "a b" or ["a", "b"]).
std::vector<std::string> merge_strings(const json& model) {
    std::vector<std::string> out;
    const json& merges = model.at("merges");
    out.reserve(merges.size());
    for (const json& m : merges)
        out.push_back(m.is_string() ? m.get<std::string>() : m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
    return out;
}

// SentencePiece scores from BPE merge ranks (see the top of this file).
std::vector<float> scores_from_merges(const Tokenizer& tok, const std::vector<std::string>& merges, int n_vocab) {
    std::vector<float> scores(size_t(n_vocab), -1e9f);
    for (size_t r = merges.size(); r-- > 0;) {
        const std::string& m = merges[r];
        const size_t sp = m.find(' ', 1);
        if (sp == std::string::npos) continue;
        if (auto id = tok.id_of(m.substr(0, sp) + m.substr(sp + 1))) scores[size_t(*id)] = -float(r);
    }
    for (int32_t i = 0; i < tok.n_vocab(); ++i)
        if (tok.token_type(i) != TokenType::Normal) scores[size_t(i)] = 0.0f;
    return scores;
}

bool spm_space_prefix(const json& root) {
    const json norm = root.value("normalizer", json());
    if (norm.dump().find("Prepend") != std::string::npos) return true;
    for (const json& p : pre_tokenizers(root))
        if (p.value("type", "") == "Metaspace")
            return p.value("prepend_scheme", p.value("add_prefix_space", true) ? "always" : "never") != "never";
    return false;
}

void add_hf_tokenizer(GgufWriter& w, const HfFolder& folder, int n_vocab) {
    if (!folder.has_tokenizer_json())
        throw model_error(folder.dir(), "has no tokenizer.json (the GGUF file needs the vocabulary)");
    const std::string path = folder.tokenizer_json_path();
    const auto tok = load_tokenizer_hf_json(path);  // validates everything read below
    const json root = read_json_file(path, 1ull << 30);
    const std::vector<json> pres = pre_tokenizers(root);
    const bool byte_level = !pres.empty() && pres.back().value("type", "") == "ByteLevel";
    std::vector<std::string> merges = merge_strings(root.at("model"));
    w.set_str("tokenizer.ggml.model", byte_level ? "gpt2" : "llama");
    if (byte_level) w.set_str("tokenizer.ggml.pre", pre_name(pres));
    set_tokens(w, *tok, n_vocab, folder.dir());
    if (byte_level) {
        w.set_str_array("tokenizer.ggml.merges", std::move(merges));
    } else {
        w.set_f32_array("tokenizer.ggml.scores", scores_from_merges(*tok, merges, n_vocab));
        w.set_bool("tokenizer.ggml.add_space_prefix", spm_space_prefix(root));
    }
    set_special_ids(w, *tok);
    const std::string tmpl = hf_chat_template_text(folder.dir());
    if (!tmpl.empty()) w.set_str("tokenizer.chat_template", tmpl);
}

std::string folder_name(const std::string& path) {
    fs::path p = fs::path(path).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    return p.filename().string();
}

}  // namespace

namespace detail {

GgufPlan plan_hf_text(std::shared_ptr<const HfFolder> folder, const ConvertOptions& opt) {
    const LlamaModel m = load_llama_hf(folder);
    GgufPlan plan = plan_llama(m, folder_name(folder->dir()), opt);
    try {
        add_hf_tokenizer(plan.meta, *folder, m.config.n_vocab);
    } catch (const json::exception& e) {
        throw model_error(folder->tokenizer_json_path(), "unexpected JSON structure: " + message_safe(e.what()));
    }
    plan.meta.set_u32("general.quantization_version", 2);
    return plan;
}

GgufPlan plan_llama2c(const std::string& path, const ConvertOptions& opt) {
    const auto ckpt = std::make_shared<const Llama2cCheckpoint>(Llama2cCheckpoint::open(path));
    const LlamaModel m = load_llama2c(ckpt);
    const int n_vocab = m.config.n_vocab;
    std::string tok_path = opt.tokenizer;
    if (tok_path.empty()) {
        const fs::path dir = fs::path(path).parent_path();
        for (const std::string& name : {"tok" + std::to_string(n_vocab) + ".bin", std::string("tokenizer.bin")}) {
            std::error_code ec;
            if (fs::is_regular_file(dir / name, ec)) {
                tok_path = (dir / name).string();
                break;
            }
        }
        if (tok_path.empty())
            throw Error(ErrorKind::Usage, path + ": a llama2.c checkpoint has no vocabulary; pass its tokenizer with "
                                                 "--tokenizer tok.bin");
    }
    GgufPlan plan = plan_llama(m, fs::path(path).stem().string(), opt);
    GgufWriter& w = plan.meta;
    const auto tok = load_tokenizer_llama2c(tok_path, n_vocab);
    w.set_str("tokenizer.ggml.model", "llama");
    set_tokens(w, *tok, n_vocab, path);
    w.set_f32_array("tokenizer.ggml.scores", Llama2cTokenizer::open(tok_path, n_vocab).scores());
    w.set_bool("tokenizer.ggml.add_space_prefix", true);  // run.c's dummy prefix
    set_special_ids(w, *tok);
    w.set_u32("general.quantization_version", 2);
    return plan;
}

}  // namespace detail

}  // namespace glimpse
