// Loading the vision tower: the checks both loaders share, the mmproj GGUF loader (MODELS.md
// §3.13 for "idefics3", §4.6 for the legacy LLaVA "mlp" layout), and opening a path. The
// Hugging Face loader is in vit_load_hf.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/matmul.h"
#include "core/quant.h"
#include "vision/vit_model.h"
#include "weights/gguf.h"
#include "weights/hf_folder.h"
#include "weights/safetensors.h"  // message_safe

namespace glimpse {

int tokens_per_tile(const VisionConfig& c) { return projector_tokens(c.projector, c.n_patches()); }

int projected_dim(const VisionConfig& c) { return c.projector.n_out; }

namespace detail {

namespace {

std::string quoted(const Tensor& t) { return "tensor '" + message_safe(t.name) + "'"; }

std::string ne_string(std::initializer_list<int64_t> ne) {
    std::string s = "[";
    for (int64_t v : ne) s += (s.size() > 1 ? ", " : "") + std::to_string(v);
    return s + "]";
}

bool shape_is(const Tensor& t, int64_t n0, int64_t n1 = 1, int64_t n2 = 1, int64_t n3 = 1) {
    return t.ne[0] == n0 && t.ne[1] == n1 && t.ne[2] == n2 && t.ne[3] == n3;
}

// A weight matrix of `rows` rows of `cols` values (ne {cols, rows}) in a type matmul takes,
// with whole contiguous rows.
void check_matrix(const std::string& file, const Tensor& t, int64_t cols, int64_t rows, const std::string& why) {
    if (!shape_is(t, cols, rows))
        throw model_error(file, quoted(t) + " has shape " + t.shape_string() + ", expected " + ne_string({cols, rows}) +
                                    " (" + why + ")");
    if (!matmul_supports(t.dtype))
        throw model_error(file, quoted(t) + " has type " + std::string(dtype_name(t.dtype)) +
                                    ", which the matrix kernels do not support");
    const auto row = dtype_row_bytes(t.dtype, uint64_t(t.ne[0]));
    if (!row || t.data == nullptr || t.nb[0] != dtype_info(t.dtype).block_bytes || (rows > 1 && t.nb[1] < *row))
        throw model_error(file, quoted(t) + " has a row layout the kernels cannot read (rows must be contiguous)");
}

// `t` with shape ne {n0, n1} as an owned or viewed contiguous F32 array (F16/BF16 converted;
// a misaligned F32 view, possible in a hostile GGUF, copied).
Tensor f32_array(const std::string& file, const Tensor& t, int64_t n0, int64_t n1, const std::string& why) {
    if (!shape_is(t, n0, n1))
        throw model_error(file, quoted(t) + " has shape " + t.shape_string() + ", expected " +
                                    (n1 == 1 ? ne_string({n0}) : ne_string({n0, n1})) + " (" + why + ")");
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
        throw model_error(file, quoted(t) + " has type " + std::string(dtype_name(t.dtype)) +
                                    ", expected F32, F16 or BF16");
    const uint64_t esize = dtype_info(t.dtype).block_bytes;
    if (t.data == nullptr || t.nb[0] != esize || (n1 > 1 && t.nb[1] != esize * uint64_t(n0)))
        throw model_error(file, quoted(t) + " is not contiguous");
    if (t.dtype == DType::F32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0) return t;
    Tensor out = make_f32(t.name, {n0, n1, 1, 1}, n1 == 1 ? 1 : 2);
    if (t.dtype == DType::F32) std::memcpy(f32_data(out), t.data, size_t(n0 * n1) * sizeof(float));
    else dequantize_row(t.dtype, t.data, f32_data(out), n0 * n1);
    return out;
}

Tensor f32_vector(const std::string& file, const Tensor& t, int64_t n, const std::string& why) {
    return f32_array(file, t, n, 1, why);
}

void range(const std::string& file, const char* what, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        throw model_error(file, std::string(what) + " = " + std::to_string(v) + " is outside " + std::to_string(lo) +
                                    ".." + std::to_string(hi));
}

void check_config(const std::string& file, const VisionConfig& c) {
    range(file, "vision image_size", c.image_size, 1, 4096);
    range(file, "vision patch_size", c.patch_size, 1, c.image_size);
    if (c.image_size % c.patch_size != 0)
        throw model_error(file, "vision image_size " + std::to_string(c.image_size) + " is not a multiple of patch_size " +
                                    std::to_string(c.patch_size));
    // Limits well above every real tower (SigLIP 1024 patches, width 1152; CLIP 577 positions,
    // width 1024) that bound the activations a hostile file can make us allocate: the attention
    // scores of one tile are n_positions² floats, the MLP n_ff floats per sequence row.
    range(file, "vision patches per tile", c.n_patches(), 1, 4096);
    range(file, "vision n_embd", c.n_embd, 1, 8192);
    range(file, "vision n_heads", c.n_heads, 1, c.n_embd);
    if (c.n_embd % c.n_heads != 0)
        throw model_error(file, "vision head count " + std::to_string(c.n_heads) + " does not divide the width " +
                                    std::to_string(c.n_embd));
    range(file, "vision n_ff", c.n_ff, 1, 16 * int64_t(c.n_embd));
    range(file, "vision n_layers", c.n_layers, 1, 256);
    if (!(c.layer_norm_eps > 0.0f && c.layer_norm_eps < 1.0f))
        throw model_error(file, "vision layer norm epsilon " + std::to_string(c.layer_norm_eps) + " is not in (0, 1)");
    for (int i = 0; i < 3; ++i)
        if (!std::isfinite(c.image_mean[i]) || !std::isfinite(c.image_std[i]) || !(c.image_std[i] > 0.0f))
            throw model_error(file, "image mean/std " + std::to_string(c.image_mean[i]) + "/" +
                                        std::to_string(c.image_std[i]) + " is not usable (std must be > 0)");
    range(file, "preprocessing image size", c.preproc_image_size, 0, 1 << 16);
    const ProjectorConfig& p = c.projector;
    range(file, "projector output width", p.n_out, 1, 1 << 17);
    if (p.kind == ProjectorKind::Idefics3) {
        range(file, "projector scale factor", p.scale_factor, 1, c.patches_per_side());
        if (c.patches_per_side() % p.scale_factor != 0)
            throw model_error(file, "projector scale factor " + std::to_string(p.scale_factor) +
                                        " does not divide the patch grid side " + std::to_string(c.patches_per_side()));
    } else {
        range(file, "projector hidden width", p.n_hidden, 1, 32 * int64_t(c.n_embd));
    }
}

void check_projector(const std::string& file, const VisionConfig& c, ProjectorWeights& w) {
    const ProjectorConfig& p = c.projector;
    const std::string out = "text n_embd " + std::to_string(p.n_out);
    if (p.kind == ProjectorKind::Idefics3) {
        const int64_t in = int64_t(c.n_embd) * p.scale_factor * p.scale_factor;
        check_matrix(file, w.fc, in, p.n_out, "n_embd x scale² " + std::to_string(in) + " x " + out);
        return;
    }
    const std::string hidden = "projector hidden " + std::to_string(p.n_hidden);
    check_matrix(file, w.mm0_w, c.n_embd, p.n_hidden, "vision n_embd " + std::to_string(c.n_embd) + " x " + hidden);
    w.mm0_b = f32_vector(file, w.mm0_b, p.n_hidden, hidden);
    check_matrix(file, w.mm2_w, p.n_hidden, p.n_out, hidden + " x " + out);
    w.mm2_b = f32_vector(file, w.mm2_b, p.n_out, out);
}

}  // namespace

void check_vision_model(const std::string& file, const VisionConfig& c, VisionWeights& w) {
    check_config(file, c);
    const int64_t D = c.n_embd, F = c.n_ff, p = c.patch_size;
    const std::string d = "n_embd " + std::to_string(D), f = "n_ff " + std::to_string(F);
    const Tensor& k = w.patch_w;
    if (!shape_is(k, p, p, 3, D))
        throw model_error(file, quoted(k) + " has shape " + k.shape_string() + ", expected " + ne_string({p, p, 3, D}) +
                                    " (patch x patch x RGB x " + d + ")");
    if ((k.dtype != DType::F32 && k.dtype != DType::F16 && k.dtype != DType::BF16) || k.data == nullptr ||
        !k.contiguous())
        throw model_error(file, quoted(k) + " must be a contiguous F32, F16 or BF16 tensor (it is " +
                                    std::string(dtype_name(k.dtype)) + ")");
    if (c.has_patch_bias) w.patch_b = f32_vector(file, w.patch_b, D, d);
    if (c.has_class_token) w.class_embd = f32_vector(file, w.class_embd, D, d);
    w.position_embd = f32_array(file, w.position_embd, D, c.n_positions(),
                                d + " x " + std::to_string(c.n_positions()) + " positions");
    if (c.pre_layernorm) {
        w.pre_ln_w = f32_vector(file, w.pre_ln_w, D, d);
        w.pre_ln_b = f32_vector(file, w.pre_ln_b, D, d);
    }
    if (int64_t(w.layers.size()) != c.n_layers)
        throw model_error(file, "found " + std::to_string(w.layers.size()) + " encoder blocks, expected " +
                                    std::to_string(c.n_layers));
    for (auto& L : w.layers) {
        for (Tensor* v : {&L.ln1_w, &L.ln1_b, &L.q_b, &L.k_b, &L.v_b, &L.o_b, &L.ln2_w, &L.ln2_b, &L.fc2_b})
            *v = f32_vector(file, *v, D, d);
        L.fc1_b = f32_vector(file, L.fc1_b, F, f);
        for (const Tensor* m : {&L.q_w, &L.k_w, &L.v_w, &L.o_w}) check_matrix(file, *m, D, D, d + " x " + d);
        check_matrix(file, L.fc1_w, D, F, d + " x " + f);
        check_matrix(file, L.fc2_w, F, D, f + " x " + d);
    }
    if (c.post_layernorm) {
        w.post_ln_w = f32_vector(file, w.post_ln_w, D, d);
        w.post_ln_b = f32_vector(file, w.post_ln_b, D, d);
    }
    check_projector(file, c, w.projector);
}

}  // namespace detail

// ---- GGUF -----------------------------------------------------------------------------------

namespace {

int gguf_int(const GgufFile& f, const std::string& key) {
    const uint32_t v = f.u32(key);
    if (v > (1u << 24)) throw model_error(f.path(), "metadata key '" + key + "' = " + std::to_string(v) + " is too large");
    return int(v);
}

// clip.projector_type (or clip.vision.projector_type); 2023 LLaVA files have neither and mean "mlp".
ProjectorKind gguf_projector_kind(const GgufFile& f) {
    std::string key = "clip.projector_type";
    if (!f.has(key) && f.has("clip.vision.projector_type")) key = "clip.vision.projector_type";
    if (!f.has(key)) {
        if (f.boolean_or("clip.has_llava_projector", false)) return ProjectorKind::Mlp;
        throw model_error(f.path(), "metadata key 'clip.projector_type' is missing");
    }
    const std::string type = f.str(key);
    if (type == "idefics3") return ProjectorKind::Idefics3;
    if (type == "mlp") return ProjectorKind::Mlp;
    throw model_error(f.path(), key + " '" + message_safe(type) +
                                    "' is not supported (glimpse runs 'idefics3' and 'mlp' projectors)");
}

void gguf_mean_std(const GgufFile& f, VisionConfig& c) {
    for (const char* key : {"clip.vision.image_mean", "clip.vision.image_std"}) {
        const std::vector<float> v = f.f32_array(key);
        if (v.size() != 3)
            throw model_error(f.path(), std::string("metadata key '") + key + "' has " + std::to_string(v.size()) +
                                            " values, expected 3 (R, G, B)");
        float* dst = std::strcmp(key, "clip.vision.image_mean") == 0 ? c.image_mean : c.image_std;
        for (int i = 0; i < 3; ++i) dst[i] = v[size_t(i)];
    }
}

VisionConfig gguf_vision_config(const GgufFile& f) {
    const std::string arch = f.str_or("general.architecture", "");
    if (arch != "clip")
        throw model_error(f.path(), "general.architecture is '" + message_safe(arch) +
                                        "', expected 'clip' (this is not an mmproj file)");
    if (!f.boolean_or("clip.has_vision_encoder", true))
        throw model_error(f.path(), "clip.has_vision_encoder is false (no vision encoder in this file)");
    VisionConfig c;
    c.projector.kind = gguf_projector_kind(f);
    const bool clip = c.projector.kind == ProjectorKind::Mlp;
    c.kind = clip ? VisionKind::CLIP : VisionKind::SigLIP;
    c.image_size = gguf_int(f, "clip.vision.image_size");
    c.patch_size = gguf_int(f, "clip.vision.patch_size");
    c.n_embd = gguf_int(f, "clip.vision.embedding_length");
    c.n_ff = gguf_int(f, "clip.vision.feed_forward_length");
    c.n_layers = gguf_int(f, "clip.vision.block_count");
    c.n_heads = gguf_int(f, "clip.vision.attention.head_count");
    c.layer_norm_eps = f.f32("clip.vision.attention.layer_norm_epsilon");
    if (f.has("clip.vision.preproc_image_size")) c.preproc_image_size = gguf_int(f, "clip.vision.preproc_image_size");
    gguf_mean_std(f, c);
    if (f.boolean_or("clip.use_silu", false))
        throw model_error(f.path(), "clip.use_silu is set (SiLU vision MLPs are not supported)");
    // llama.cpp's rule: use_gelu selects the tanh GELU, otherwise quick-GELU (CLIP).
    c.activation = f.boolean_or("clip.use_gelu", false) ? VisionActivation::GeluTanh : VisionActivation::QuickGelu;
    if (clip && f.has("clip.vision.feature_layer"))
        throw model_error(f.path(), "clip.vision.feature_layer is set (multi-layer LLaVA features are not supported)");
    c.has_patch_bias = f.find_tensor("v.patch_embd.bias") != nullptr;
    c.has_class_token = f.find_tensor("v.class_embd") != nullptr;
    c.pre_layernorm = f.find_tensor("v.pre_ln.weight") != nullptr;
    // HF LLaVA takes hidden states before CLIP's post_layernorm, so a stored one is unused.
    c.post_layernorm = !clip && f.find_tensor("v.post_ln.weight") != nullptr;
    if (clip && !c.has_class_token) throw model_error(f.path(), "tensor 'v.class_embd' is missing (CLIP encoder)");
    return c;
}

VisionLayerWeights gguf_layer(const GgufFile& f, int l, int n_embd, int n_ff) {
    const std::string b = "v.blk." + std::to_string(l) + ".";
    VisionLayerWeights L;
    L.ln1_w = f.tensor(b + "ln1.weight");
    L.ln1_b = f.tensor(b + "ln1.bias");
    L.q_w = f.tensor(b + "attn_q.weight");
    L.q_b = f.tensor(b + "attn_q.bias");
    L.k_w = f.tensor(b + "attn_k.weight");
    L.k_b = f.tensor(b + "attn_k.bias");
    L.v_w = f.tensor(b + "attn_v.weight");
    L.v_b = f.tensor(b + "attn_v.bias");
    L.o_w = f.tensor(b + "attn_out.weight");
    L.o_b = f.tensor(b + "attn_out.bias");
    L.ln2_w = f.tensor(b + "ln2.weight");
    L.ln2_b = f.tensor(b + "ln2.bias");
    const Tensor& up = f.tensor(b + "ffn_up.weight");
    const Tensor& down = f.tensor(b + "ffn_down.weight");
    // Legacy converters stored fc1 as ffn_down: fc1 reads n_embd values per row (clip.cpp's
    // is_ffn_swapped test). With n_ff == n_embd both readings have the same shapes.
    const bool swapped = down.ne[0] == n_embd && up.ne[0] == n_ff && n_ff != n_embd;
    L.fc1_w = swapped ? down : up;
    L.fc1_b = f.tensor(b + (swapped ? "ffn_down.bias" : "ffn_up.bias"));
    L.fc2_w = swapped ? up : down;
    L.fc2_b = f.tensor(b + (swapped ? "ffn_up.bias" : "ffn_down.bias"));
    return L;
}

}  // namespace

VisionModel load_mmproj_gguf(std::shared_ptr<const GgufFile> file) {
    const GgufFile& f = *file;
    VisionModel m;
    m.path = f.path();
    m.format = VisionFormat::Gguf;
    VisionConfig c = gguf_vision_config(f);
    VisionWeights& w = m.weights;
    w.patch_w = f.tensor("v.patch_embd.weight");
    if (c.has_patch_bias) w.patch_b = f.tensor("v.patch_embd.bias");
    if (c.has_class_token) w.class_embd = f.tensor("v.class_embd");
    w.position_embd = f.tensor("v.position_embd.weight");
    if (c.pre_layernorm) {
        w.pre_ln_w = f.tensor("v.pre_ln.weight");
        w.pre_ln_b = f.tensor("v.pre_ln.bias");
    }
    for (int l = 0; l < c.n_layers; ++l) w.layers.push_back(gguf_layer(f, l, c.n_embd, c.n_ff));
    if (f.find_tensor("v.blk." + std::to_string(c.n_layers) + ".ln1.weight"))
        throw model_error(m.path, "has a block " + std::to_string(c.n_layers) + " beyond clip.vision.block_count " +
                                      std::to_string(c.n_layers));
    if (c.post_layernorm) {
        w.post_ln_w = f.tensor("v.post_ln.weight");
        w.post_ln_b = f.tensor("v.post_ln.bias");
    }
    ProjectorConfig& p = c.projector;
    ProjectorWeights& pw = w.projector;
    if (p.kind == ProjectorKind::Idefics3) {
        pw.fc = f.tensor("mm.model.fc.weight");
        // The scale factor follows from the shape (D·s² inputs); the key, when present, must agree.
        const int64_t ratio = c.n_embd > 0 ? pw.fc.ne[0] / c.n_embd : 0;
        const auto s = int64_t(std::llround(std::sqrt(double(ratio))));
        if (ratio <= 0 || pw.fc.ne[0] != ratio * c.n_embd || s * s != ratio)
            throw model_error(m.path, "tensor 'mm.model.fc.weight' has shape " + pw.fc.shape_string() +
                                          ": its input width is not n_embd " + std::to_string(c.n_embd) +
                                          " times a square (pixel-shuffle factor²)");
        p.scale_factor = int(s);
        const std::string key = "clip.vision.projector.scale_factor";
        if (f.has(key) && int64_t(f.u32(key)) != s)
            throw model_error(m.path, key + " = " + std::to_string(f.u32(key)) + " but tensor 'mm.model.fc.weight' " +
                                          "implies " + std::to_string(s));
        p.n_out = int(std::min<int64_t>(pw.fc.ne[1], 1 << 30));
    } else {
        pw.mm0_w = f.tensor("mm.0.weight");
        pw.mm0_b = f.tensor("mm.0.bias");
        pw.mm2_w = f.tensor("mm.2.weight");
        pw.mm2_b = f.tensor("mm.2.bias");
        p.scale_factor = 1;
        p.n_hidden = int(std::min<int64_t>(pw.mm0_w.ne[1], 1 << 30));
        p.n_out = int(std::min<int64_t>(pw.mm2_w.ne[1], 1 << 30));
    }
    detail::check_vision_model(m.path, c, w);
    m.config = c;
    m.gguf = std::move(file);
    return m;
}

// ---- any format -----------------------------------------------------------------------------

VisionModel open_vision_model(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::exists(path, ec)) throw input_error(path, "no such file or folder");
    if (fs::is_directory(path, ec)) {
        if (HfFolder::looks_like(path)) return load_vision_hf(std::make_shared<const HfFolder>(HfFolder::open(path)));
        // A folder holding a text GGUF and its mmproj*.gguf (what `-m FOLDER` may point at).
        std::string found;
        for (const auto& e : fs::directory_iterator(path, ec)) {
            const std::string name = e.path().filename().string();
            if (e.path().extension() != ".gguf" || name.rfind("mmproj", 0) != 0) continue;
            if (!found.empty()) throw Error(ErrorKind::Usage, path + ": holds several mmproj*.gguf files; pass one with --mmproj");
            found = e.path().string();
        }
        if (found.empty()) throw model_error(path, "is a folder with neither config.json nor an mmproj*.gguf file");
        return load_mmproj_gguf(std::make_shared<const GgufFile>(GgufFile::open(found)));
    }
    char magic[4] = {};
    {
        std::ifstream in(path, std::ios::binary);
        if (!in) throw input_error(path, "cannot open for reading");
        in.read(magic, 4);
    }
    if (std::memcmp(magic, "GGUF", 4) != 0) throw model_error(path, "is not a GGUF file (no GGUF magic)");
    return load_mmproj_gguf(std::make_shared<const GgufFile>(GgufFile::open(path)));
}

uint64_t vision_weight_bytes(const VisionModel& m) {
    auto bytes = [](const Tensor& t) { return t.data ? t.nb[3] * uint64_t(t.ne[3]) : 0; };
    const VisionWeights& w = m.weights;
    uint64_t total = 0;
    for (const Tensor* t : {&w.patch_w, &w.patch_b, &w.class_embd, &w.position_embd, &w.pre_ln_w, &w.pre_ln_b,
                            &w.post_ln_w, &w.post_ln_b, &w.projector.fc, &w.projector.mm0_w, &w.projector.mm0_b,
                            &w.projector.mm2_w, &w.projector.mm2_b})
        total += bytes(*t);
    for (const auto& L : w.layers)
        for (const Tensor* t : {&L.ln1_w, &L.ln1_b, &L.q_w, &L.q_b, &L.k_w, &L.k_b, &L.v_w, &L.v_b, &L.o_w, &L.o_b,
                                &L.ln2_w, &L.ln2_b, &L.fc1_w, &L.fc1_b, &L.fc2_w, &L.fc2_b})
            total += bytes(*t);
    return total;
}

}  // namespace glimpse
