// The Llama-family decoder as data: a config (a few numbers read once from the file) and the
// weights (named tensor views into the mapped file, never copied), in the spirit of llama2.c's
// `Config` + `TransformerWeights`. One loader per file format resolves the file's names into
// these structs and checks every tensor's presence, type and shape (MODELS.md §1.5, §3.12):
//
//   GGUF  (general.architecture = "llama")  token_embd / blk.N.attn_q / ... ; q,k rows permuted
//         by the converter, so RoPE rotates adjacent pairs.
//   Hugging Face folder (LlamaForCausalLM, and the text tower of Idefics3/SmolVLM and Llava)
//         model.layers.N.self_attn.q_proj / ... ; q,k rows as trained, so RoPE is rotate_half.
//   llama2.c checkpoint: wq (layer, dim, n_heads*hs) ... ; views cut per layer; adjacent pairs.
//
// The forward pass (text/llama_forward.h) reads nothing but these structs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/ops.h"
#include "core/tensor.h"

namespace glimpse {

class GgufFile;
class HfFolder;
class Llama2cCheckpoint;
struct LlamaVulkanWeights;

struct LlamaConfig {
    int n_layers = 0;      // decoder blocks
    int n_embd = 0;        // residual stream width D
    int n_heads = 0;       // query heads H
    int n_kv_heads = 0;    // key/value heads (H / n_kv_heads query heads share one: GQA)
    int head_dim = 0;      // values per head (D / H for every model here); all of it rotates
    int n_ff = 0;          // SwiGLU inner width
    int n_vocab = 0;       // rows of the embedding table and of the output matrix
    int n_ctx_train = 0;   // context length the model was trained for (default context limit)
    float rope_theta = 10000.0f;  // RoPE base
    float rms_eps = 1e-5f;        // RMSNorm epsilon
    ops::RopeStyle rope_style = ops::RopeStyle::AdjacentPairs;  // see MODELS.md §1.4
    bool tied_output = false;     // output matrix is the token embedding table

    int q_dim() const { return n_heads * head_dim; }      // width of Q and of the attention output
    int kv_dim() const { return n_kv_heads * head_dim; }  // width of K and V per token
};

struct LlamaLayerWeights {
    Tensor attn_norm;  // [D] F32                 RMSNorm before attention
    Tensor wq;         // ne {D, H*hd}             q = x · wqᵀ
    Tensor wk;         // ne {D, KV*hd}
    Tensor wv;         // ne {D, KV*hd}
    Tensor wo;         // ne {H*hd, D}             attention output projection
    Tensor ffn_norm;   // [D] F32                 RMSNorm before the FFN
    Tensor w_gate;     // ne {D, n_ff}             silu(x · w_gateᵀ) ⊙ (x · w_upᵀ)
    Tensor w_up;       // ne {D, n_ff}
    Tensor w_down;     // ne {n_ff, D}
};

struct LlamaWeights {
    Tensor token_embd;   // ne {D, n_vocab}   row i = embedding of token i (any dequantizable type)
    std::vector<LlamaLayerWeights> layers;
    Tensor output_norm;  // [D] F32
    Tensor output;       // ne {D, n_vocab}   logits = norm(h) · outputᵀ; = token_embd when tied
};

enum class LlamaFormat { Gguf, HfFolder, Llama2c };

// A loaded decoder. The tensors hold their file mappings alive; the file object itself is kept
// too (when a loader is given a shared_ptr) so that the tokenizer and the chat template can
// be read from the same file.
struct LlamaModel {
    std::string path;  // what was opened (file or folder)
    LlamaFormat format = LlamaFormat::Gguf;
    LlamaConfig config;
    LlamaWeights weights;
    std::shared_ptr<const GgufFile> gguf;                 // set for GGUF models
    std::shared_ptr<const HfFolder> hf;                   // set for Hugging Face folders
    std::shared_ptr<const Llama2cCheckpoint> llama2c;     // set for llama2.c checkpoints
    // Set when the decoder runs on a Vulkan device (text/llama_forward_vk.h
    // upload_llama_weights): every LlamaContext made afterwards runs its forward passes there.
    std::shared_ptr<const LlamaVulkanWeights> vulkan;
};

// GGUF with general.architecture "llama". Every tensor is checked (present, a type the
// kernels take, exactly the expected shape); anything wrong is Error(Model) naming the file
// and the key or tensor. A missing output.weight means tied embeddings (llama.cpp's rule).
LlamaModel load_llama_gguf(const GgufFile& file);
LlamaModel load_llama_gguf(std::shared_ptr<const GgufFile> file);

// Where a Llama text model sits inside a Hugging Face checkpoint.
struct HfLlamaLayout {
    std::string config_key;  // "" = the top-level config.json, else its sub-object ("text_config")
    std::string body;        // prefix of embed_tokens / layers / norm: "model.", "model.text_model."
    std::string lm_head;     // name of the output matrix ("lm_head.weight"); absent = tied
};
// The layout for this folder's architecture: LlamaForCausalLM, Idefics3/SmolVLM
// (model.text_model.*), Llava (language_model.model.* or model.language_model.*).
// Error(Model) naming config.json for anything else.
HfLlamaLayout hf_llama_layout(const HfFolder& folder);

// Hugging Face folder. Sizes come from the tensors and are cross-checked with config.json;
// norm weights stored as F16/BF16 are converted to F32 once (a few KiB). RoPE is HalfSplit.
LlamaModel load_llama_hf(const HfFolder& folder, const HfLlamaLayout& layout);
LlamaModel load_llama_hf(std::shared_ptr<const HfFolder> folder);  // layout from hf_llama_layout

// llama2.c checkpoint: per-layer 2-D views into its (layer, rows, cols) arrays.
LlamaModel load_llama2c(const Llama2cCheckpoint& ckpt);
LlamaModel load_llama2c(std::shared_ptr<const Llama2cCheckpoint> ckpt);

// Opens `path` as whichever of the three it is: a folder with config.json, a GGUF file (by its
// magic), a folder holding one text-model GGUF (besides mmproj*.gguf), or a llama2.c checkpoint. Error(BadInput) if it does not exist, Error(Model) if it is
// none of them or is broken.
LlamaModel open_llama_model(const std::string& path);

// "llama2.c", "GGUF", "Hugging Face folder".
std::string_view llama_format_name(LlamaFormat f);

// Bytes of all weight tensors (what a decode step streams once), counting tied output once.
uint64_t llama_weight_bytes(const LlamaModel& model);

}  // namespace glimpse
