// The vision towers as data: a config (numbers read once from the file) and the weights (named
// tensor views into the mapped file), like text/llama_model.h for the decoder. Two encoders
// and two projectors cover SmolVLM and LLaVA-1.5:
//
//   SigLIP (SmolVLM / Idefics3, MODELS.md §3.4): patch conv with bias, learned positions, no
//     class token, no pre-LN, pre-LN blocks with tanh-GELU, post-LN.
//     Projector Idefics3 (§3.5): pixel shuffle by scale_factor, then one linear without bias.
//   CLIP (LLaVA-1.5, §4.3, golden README "ref-hf in one line"): patch conv without bias,
//     [class, patches] + positions 0..n, pre-LN, blocks with quick-GELU, no post-LN; the class
//     row is dropped. Projector Mlp: mm.0 -> erf GELU -> mm.2, both with bias.
//
// Loaders (GGUF mmproj files as llama.cpp ships them, §3.13 / §4.6; Hugging Face folders,
// §3.3 / §4.2) resolve the file's names into these structs and check every tensor's presence,
// type and shape once; the forward pass (vision/vit_forward.h) reads nothing else.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "fusion/projector.h"

namespace glimpse {

class GgufFile;
class HfFolder;
class VitVulkan;

enum class VisionKind { SigLIP, CLIP };
enum class VisionActivation { GeluTanh, GeluErf, QuickGelu };

struct VisionConfig {
    VisionKind kind = VisionKind::SigLIP;
    int image_size = 0;      // tile side S in pixels (512 SmolVLM, 336 LLaVA-1.5)
    int patch_size = 0;      // p; S % p == 0
    int n_embd = 0;          // encoder width D
    int n_heads = 0;         // attention heads (D % n_heads == 0)
    int n_ff = 0;            // MLP inner width
    int n_layers = 0;        // encoder blocks to RUN (for LLaVA: HF's layers up to vision_feature_layer)
    float layer_norm_eps = 1e-6f;
    bool has_patch_bias = false;   // SigLIP: true; CLIP: false
    bool has_class_token = false;  // CLIP: class embedding prepended (and dropped after)
    bool pre_layernorm = false;    // CLIP: LayerNorm after adding positions
    bool post_layernorm = false;   // SigLIP: LayerNorm after the last block
    VisionActivation activation = VisionActivation::GeluTanh;  // inside the blocks' MLP
    float image_mean[3] = {0.5f, 0.5f, 0.5f};  // normalisation: (u8/255 - mean[c]) / std[c]
    float image_std[3] = {0.5f, 0.5f, 0.5f};
    int preproc_image_size = 0;  // SmolVLM: longest edge before tiling (clip.vision.preproc_image_size); 0 = none
    ProjectorConfig projector;   // kind, scale factor, widths

    int patches_per_side() const { return image_size / patch_size; }
    int n_patches() const { return patches_per_side() * patches_per_side(); }
    int n_positions() const { return n_patches() + (has_class_token ? 1 : 0); }  // sequence length per tile
    int head_dim() const { return n_embd / n_heads; }
};

struct VisionLayerWeights {
    Tensor ln1_w, ln1_b;   // [D] F32        LayerNorm before attention
    Tensor q_w, q_b;       // ne {D, D} / [D]  q = x · q_wᵀ + q_b
    Tensor k_w, k_b;       // ne {D, D} / [D]
    Tensor v_w, v_b;       // ne {D, D} / [D]
    Tensor o_w, o_b;       // ne {D, D} / [D]  attention output projection
    Tensor ln2_w, ln2_b;   // [D] F32        LayerNorm before the MLP
    Tensor fc1_w, fc1_b;   // ne {D, n_ff} / [n_ff]   (GGUF ffn_up, legacy files ffn_down)
    Tensor fc2_w, fc2_b;   // ne {n_ff, D} / [D]
};

struct VisionWeights {
    Tensor patch_w;       // ne {p, p, 3, D} F32/F16/BF16 (HF conv weight [D][3][p][p])
    Tensor patch_b;       // [D] F32, absent (data == nullptr) without has_patch_bias
    Tensor class_embd;    // [D] F32, CLIP only
    Tensor position_embd; // [n_positions][D] F32 (converted to F32 at load when stored as F16)
    Tensor pre_ln_w, pre_ln_b;    // [D], CLIP only
    std::vector<VisionLayerWeights> layers;  // n_layers blocks, the ones that run
    Tensor post_ln_w, post_ln_b;  // [D], SigLIP only
    ProjectorWeights projector;
};

enum class VisionFormat { Gguf, HfFolder };

struct VisionModel {
    std::string path;  // what was opened (file or folder)
    VisionFormat format = VisionFormat::Gguf;
    VisionConfig config;
    VisionWeights weights;
    std::shared_ptr<const GgufFile> gguf;  // set for GGUF mmproj files
    std::shared_ptr<const HfFolder> hf;    // set for Hugging Face folders
    // Set when the tower runs on a Vulkan device (vision/vit_forward_vk.h): encode_tiles and
    // encode_tiles_features then run there.
    std::shared_ptr<VitVulkan> vulkan;
};

// Image tokens one tile becomes: SmolVLM (S/p)² / scale²; LLaVA (S/p)² (class row dropped).
int tokens_per_tile(const VisionConfig& c);
// Width of each image token after the projector (= the text model's n_embd).
int projected_dim(const VisionConfig& c);

// An mmproj GGUF (general.architecture "clip") with clip.projector_type "idefics3" or "mlp"
// (legacy LLaVA files without the key count as "mlp"). Legacy FFN names (ffn_down holding fc1)
// are resolved by shape. Anything unsupported, missing or mis-shaped: Error(Model) naming the
// file and the key or tensor.
VisionModel load_mmproj_gguf(std::shared_ptr<const GgufFile> file);

// The vision tower and projector of a Hugging Face folder: Idefics3ForConditionalGeneration /
// SmolVLMForConditionalGeneration (model.vision_model.*, model.connector.*) and
// LlavaForConditionalGeneration (vision_tower.* or model.vision_tower.*, multi_modal_projector.*;
// vision_feature_layer -2 runs layers 0 .. L-2). Preprocessing numbers come from
// preprocessor_config.json when present, else the processors' defaults (MODELS.md §3.8, §4.4).
VisionModel load_vision_hf(std::shared_ptr<const HfFolder> folder);

// Opens an mmproj GGUF file, a Hugging Face folder (its vision tower), or a folder holding one
// mmproj*.gguf. Error(BadInput) if the path does not exist, Error(Model) if it is none of them
// or is broken, Error(Usage) if a folder holds several mmproj files.
VisionModel open_vision_model(const std::string& path);

// Bytes of all weight tensors (what one encode streams at least once).
uint64_t vision_weight_bytes(const VisionModel& m);

namespace detail {
// Shared by both loaders: checks the config's ranges and every tensor of `w` against it
// (shapes, types, contiguous rows), converts vectors and the position table to F32 where
// stored otherwise. Error(Model) naming `file` and the tensor or key.
void check_vision_model(const std::string& file, const VisionConfig& c, VisionWeights& w);
}  // namespace detail

}  // namespace glimpse
