// Random-weight GGUF models (weights/random_model.h). Written in two passes so that no tensor
// is ever held in memory: GgufWriter lays the file out with every tensor's bytes taken from
// one zero-filled buffer (calloc: untouched pages, no resident memory), then each tensor's
// region is overwritten in place, a chunk of rows at a time, with its random values
// quantized by quantize_row.
#include "weights/random_model.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/quant.h"
#include "core/tensor.h"
#include "weights/gguf.h"

namespace glimpse {

namespace {

// One tensor to write: values = offset + scale · N(0, 1), stored as `type`.
struct TensorSpec {
    std::string name;
    DType type;
    std::array<int64_t, 4> ne;  // ggml order, unused dims 1
    int n_dims;
    float scale;
    float offset;
};

constexpr float kWeightStd = 0.02f;

// splitmix64: a well-mixed stream from any seed (the per-tensor seeds are consecutive).
struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Irwin–Hall: the sum of four uniforms from the four 16-bit parts of one draw, centred and
    // scaled to unit variance (var of one U(0,1) = 1/12). Close to normal, bounded at ±3.46.
    float normal() {
        const uint64_t r = next();
        const float sum = float(r & 0xFFFF) + float((r >> 16) & 0xFFFF) + float((r >> 32) & 0xFFFF) + float(r >> 48);
        return (sum / 65536.0f - 2.0f) * 1.7320508f;
    }
};

// llama.cpp's general.file_type (llama_ftype) for files whose matrices are mostly `t`.
uint32_t file_type_of(DType t) {
    switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 7;
    case DType::Q5_0: return 8;
    case DType::Q5_1: return 9;
    case DType::Q4_K: return 15;  // Q4_K_M
    case DType::Q5_K: return 17;  // Q5_K_M
    case DType::Q6_K: return 18;
    case DType::BF16: return 32;
    default: return 0;
    }
}

void check_type(DType t) {
    if (!can_quantize(t))
        throw Error(ErrorKind::Usage, "random model: weight type " + std::string(dtype_name(t)) + " cannot be written");
}

TensorSpec matrix(std::string name, DType requested, int64_t row_len, int64_t rows) {
    return {std::move(name), random_matrix_type(requested, row_len), {row_len, rows, 1, 1}, 2, kWeightStd, 0.0f};
}
TensorSpec vec(std::string name, int64_t n, float offset) {
    return {std::move(name), DType::F32, {n, 1, 1, 1}, 1, kWeightStd, offset};
}

// GPT-2's byte-to-unicode map: printable bytes stand for themselves, the others for 256 + i.
std::string byte_token(int byte) {
    auto printable = [](int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); };
    int cp = byte;
    if (!printable(byte)) {
        cp = 256;
        for (int b = 0; b < byte; ++b) cp += printable(b) ? 0 : 1;
    }
    std::string s;
    if (cp < 0x80) {
        s += char(cp);
    } else {  // cp < 0x800 here
        s += char(0xC0 | (cp >> 6));
        s += char(0x80 | (cp & 0x3F));
    }
    return s;
}

// smolvlm: SmolVLM's image-layout and end-of-turn tokens follow the bytes (ids 259..298), so a
// random SmolVLM pair runs as a VLM (describe, caption) with the family's chat template.
void set_tokenizer(GgufWriter& w, int n_vocab, bool smolvlm) {
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    tokens.reserve(size_t(n_vocab));
    for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
        tokens.emplace_back(special);
        types.push_back(3);  // control
    }
    for (int b = 0; b < 256; ++b) {
        tokens.push_back(byte_token(b));
        types.push_back(1);
    }
    if (smolvlm && n_vocab >= 259 + 40) {
        for (const char* special : {"<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"})
            tokens.emplace_back(special);
        for (int r = 1; r <= 6; ++r)
            for (int c = 1; c <= 6; ++c) tokens.push_back("<row_" + std::to_string(r) + "_col_" + std::to_string(c) + ">");
        types.resize(tokens.size(), 3);
    }
    for (int i = int(tokens.size()); i < n_vocab; ++i) {
        tokens.push_back("<r:" + std::to_string(i) + ">");
        types.push_back(1);
    }
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_str("tokenizer.ggml.pre", "smollm");
    w.set_str_array("tokenizer.ggml.tokens", std::move(tokens));
    w.set_i32_array("tokenizer.ggml.token_type", types);
    w.set_str_array("tokenizer.ggml.merges", {});
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    w.set_u32("tokenizer.ggml.padding_token_id", 0);
}

struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
};

[[noreturn]] void write_fail(const std::string& path, const std::string& what) {
    throw input_error(path, "cannot write the random model (" + what + ")");
}

// Fills tensor `spec` (the `index`-th) at file offset `offset` with its random values.
void fill_tensor(std::FILE* f, const std::string& path, const TensorSpec& spec, size_t index, uint64_t seed,
                 uint64_t offset) {
    const int64_t K = spec.ne[0];
    const int64_t rows = spec.ne[1] * spec.ne[2] * spec.ne[3];
    const uint64_t row_bytes = *dtype_row_bytes(spec.type, uint64_t(K));
    const int64_t rows_per_chunk = std::max<int64_t>(1, int64_t((uint64_t(1) << 20) / row_bytes));
    std::vector<uint8_t> chunk(size_t(row_bytes * uint64_t(std::min(rows, rows_per_chunk))));
    std::vector<float> values(static_cast<size_t>(K));
    Rng rng{seed * 0xD1B54A32D192ED03ull + index};
    if (fseeko(f, off_t(offset), SEEK_SET) != 0) write_fail(path, "seek failed");
    for (int64_t r0 = 0; r0 < rows; r0 += rows_per_chunk) {
        const int64_t n = std::min(rows_per_chunk, rows - r0);
        for (int64_t r = 0; r < n; ++r) {
            for (float& v : values) v = spec.offset + spec.scale * rng.normal();
            quantize_row(spec.type, values.data(), chunk.data() + uint64_t(r) * row_bytes, K);
        }
        const size_t bytes = size_t(uint64_t(n) * row_bytes);
        if (std::fwrite(chunk.data(), 1, bytes, f) != bytes) write_fail(path, "write failed (disk full?)");
    }
}

// Pass 1: the layout with zero data; pass 2: each tensor's values in place.
void write_model(const std::string& path, GgufWriter& w, const std::vector<TensorSpec>& specs, uint64_t seed) {
    uint64_t max_bytes = 1;
    for (const auto& s : specs) max_bytes = std::max(max_bytes, contiguous_strides(s.type, s.ne)[3] * uint64_t(s.ne[3]));
    std::shared_ptr<void> zeros(std::calloc(size_t(max_bytes), 1), std::free);
    if (!zeros) throw Error(ErrorKind::Usage, "random model: cannot allocate " + std::to_string(max_bytes) + " bytes");
    for (const auto& s : specs) {
        Tensor t;
        t.name = s.name;
        t.dtype = s.type;
        t.n_dims = s.n_dims;
        t.ne = s.ne;
        t.nb = contiguous_strides(s.type, s.ne);
        t.data = zeros.get();
        t.storage = zeros;
        w.add_tensor(t);
    }
    w.write(path);
    std::vector<uint64_t> offsets;
    {
        const GgufFile laid_out = GgufFile::open(path);
        const auto* base = static_cast<const uint8_t*>(laid_out.tensors().at(0).data);
        for (const auto& s : specs)
            offsets.push_back(laid_out.data_offset() +
                              uint64_t(static_cast<const uint8_t*>(laid_out.tensor(s.name).data) - base));
    }
    try {
        std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "r+b"));
        if (!f) write_fail(path, "cannot reopen");
        for (size_t i = 0; i < specs.size(); ++i) fill_tensor(f.get(), path, specs[i], i, seed, offsets[i]);
        if (std::fflush(f.get()) != 0) write_fail(path, "flush failed (disk full?)");
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove(path, ec);
        throw;
    }
}

void check_shape(const RandomLlamaShape& s) {
    const bool ok = s.n_layers > 0 && s.n_embd > 0 && s.n_heads > 0 && s.n_kv_heads > 0 && s.head_dim > 0 &&
                    s.n_ff > 0 && s.n_ctx > 0 && s.n_heads % s.n_kv_heads == 0 && s.n_vocab >= 259 &&
                    s.n_layers <= 4096 && s.n_embd <= (1 << 16) && s.n_ff <= (1 << 18) && s.n_vocab <= (1 << 20) &&
                    s.n_heads <= 1024;
    if (!ok)
        throw Error(ErrorKind::Usage, "random model '" + s.name +
                                          "': the shape is invalid (positive sizes, heads a multiple of KV heads, "
                                          "vocab of at least 259 tokens)");
}

}  // namespace

RandomLlamaShape random_llama_shape(const std::string& name) {
    RandomLlamaShape s;
    s.name = name;
    s.head_dim = 64;
    if (name == "smollm2-135m" || name == "smolvlm-256m") {
        s.n_layers = 30;
        s.n_embd = 576;
        s.n_heads = 9;
        s.n_kv_heads = 3;
        s.n_ff = 1536;
        s.n_vocab = name == "smollm2-135m" ? 49152 : 49280;
        s.tied = name == "smollm2-135m";
    } else if (name == "smolvlm-500m") {
        s.n_layers = 32;
        s.n_embd = 960;
        s.n_heads = 15;
        s.n_kv_heads = 5;
        s.n_ff = 2560;
        s.n_vocab = 49280;
    } else {
        throw Error(ErrorKind::Usage,
                    "unknown random model shape '" + name + "' (known: smollm2-135m, smolvlm-256m, smolvlm-500m)");
    }
    return s;
}

DType random_matrix_type(DType requested, int64_t row_len) {
    if (row_len % int64_t(dtype_info(requested).block_elems) == 0) return requested;
    switch (requested) {
    case DType::Q4_K: case DType::Q5_K: return DType::Q5_0;
    case DType::Q6_K: return DType::Q8_0;
    default: return requested;
    }
}

void write_random_llama_gguf(const std::string& path, const RandomLlamaShape& shape, DType weight_type, uint64_t seed) {
    check_type(weight_type);
    check_shape(shape);
    const int64_t D = shape.n_embd, F = shape.n_ff, V = shape.n_vocab;
    const int64_t q_dim = int64_t(shape.n_heads) * shape.head_dim, kv_dim = int64_t(shape.n_kv_heads) * shape.head_dim;
    std::vector<TensorSpec> specs;
    specs.push_back(matrix("token_embd.weight", weight_type, D, V));
    for (int l = 0; l < shape.n_layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        specs.push_back(vec(p + "attn_norm.weight", D, 1.0f));
        specs.push_back(matrix(p + "attn_q.weight", weight_type, D, q_dim));
        specs.push_back(matrix(p + "attn_k.weight", weight_type, D, kv_dim));
        specs.push_back(matrix(p + "attn_v.weight", weight_type, D, kv_dim));
        specs.push_back(matrix(p + "attn_output.weight", weight_type, q_dim, D));
        specs.push_back(vec(p + "ffn_norm.weight", D, 1.0f));
        specs.push_back(matrix(p + "ffn_gate.weight", weight_type, D, F));
        specs.push_back(matrix(p + "ffn_up.weight", weight_type, D, F));
        specs.push_back(matrix(p + "ffn_down.weight", weight_type, F, D));
    }
    specs.push_back(vec("output_norm.weight", D, 1.0f));
    if (!shape.tied) specs.push_back(matrix("output.weight", weight_type, D, V));
    for (const auto& s : specs)
        if (s.ne[0] % int64_t(dtype_info(s.type).block_elems) != 0)
            throw Error(ErrorKind::Usage, "random model '" + shape.name + "': " + s.name + " rows of " +
                                              std::to_string(s.ne[0]) + " values cannot be " +
                                              std::string(dtype_name(s.type)));

    GgufWriter w;
    w.set_str("general.architecture", "llama");
    w.set_str("general.name", "random " + shape.name);
    w.set_u32("general.file_type", file_type_of(weight_type));
    if (dtype_info(weight_type).block_elems > 1) w.set_u32("general.quantization_version", 2);
    w.set_u32("llama.block_count", uint32_t(shape.n_layers));
    w.set_u32("llama.context_length", uint32_t(shape.n_ctx));
    w.set_u32("llama.embedding_length", uint32_t(D));
    w.set_u32("llama.feed_forward_length", uint32_t(F));
    w.set_u32("llama.attention.head_count", uint32_t(shape.n_heads));
    w.set_u32("llama.attention.head_count_kv", uint32_t(shape.n_kv_heads));
    w.set_u32("llama.attention.key_length", uint32_t(shape.head_dim));
    w.set_u32("llama.attention.value_length", uint32_t(shape.head_dim));
    w.set_u32("llama.rope.dimension_count", uint32_t(shape.head_dim));
    w.set_f32("llama.rope.freq_base", shape.rope_theta);
    w.set_f32("llama.attention.layer_norm_rms_epsilon", shape.rms_eps);
    w.set_u32("llama.vocab_size", uint32_t(V));
    set_tokenizer(w, shape.n_vocab, shape.name.rfind("smolvlm", 0) == 0);
    write_model(path, w, specs, seed);
}

void write_random_mmproj_gguf(const std::string& path, const std::string& model, DType weight_type, uint64_t seed) {
    check_type(weight_type);
    if (model != "smolvlm-256m" && model != "smolvlm-500m")
        throw Error(ErrorKind::Usage, "unknown random mmproj model '" + model + "' (known: smolvlm-256m, smolvlm-500m)");
    const int64_t text_dim = random_llama_shape(model).n_embd;
    constexpr int64_t kWidth = 768, kFfn = 3072, kLayers = 12, kPatch = 16, kImage = 512, kMerge = 4;
    constexpr int64_t kPatches = (kImage / kPatch) * (kImage / kPatch);
    std::vector<TensorSpec> specs;
    specs.push_back({"v.patch_embd.weight", DType::F32, {kPatch, kPatch, 3, kWidth}, 4, kWeightStd, 0.0f});
    specs.push_back(vec("v.patch_embd.bias", kWidth, 0.0f));
    specs.push_back({"v.position_embd.weight", DType::F32, {kWidth, kPatches, 1, 1}, 2, kWeightStd, 0.0f});
    for (int64_t l = 0; l < kLayers; ++l) {
        const std::string p = "v.blk." + std::to_string(l) + ".";
        specs.push_back(vec(p + "ln1.weight", kWidth, 1.0f));
        specs.push_back(vec(p + "ln1.bias", kWidth, 0.0f));
        for (const char* proj : {"attn_q", "attn_k", "attn_v", "attn_out"}) {
            specs.push_back(matrix(p + proj + ".weight", weight_type, kWidth, kWidth));
            specs.push_back(vec(p + proj + ".bias", kWidth, 0.0f));
        }
        specs.push_back(vec(p + "ln2.weight", kWidth, 1.0f));
        specs.push_back(vec(p + "ln2.bias", kWidth, 0.0f));
        specs.push_back(matrix(p + "ffn_up.weight", weight_type, kWidth, kFfn));
        specs.push_back(vec(p + "ffn_up.bias", kFfn, 0.0f));
        specs.push_back(matrix(p + "ffn_down.weight", weight_type, kFfn, kWidth));
        specs.push_back(vec(p + "ffn_down.bias", kWidth, 0.0f));
    }
    specs.push_back(vec("v.post_ln.weight", kWidth, 1.0f));
    specs.push_back(vec("v.post_ln.bias", kWidth, 0.0f));
    specs.push_back(matrix("mm.model.fc.weight", weight_type, kWidth * kMerge * kMerge, text_dim));

    GgufWriter w;
    w.set_str("general.architecture", "clip");
    w.set_str("general.name", "random " + model + " mmproj");
    w.set_u32("general.file_type", file_type_of(weight_type));
    w.set_bool("clip.has_vision_encoder", true);
    w.set_str("clip.projector_type", "idefics3");
    w.set_u32("clip.vision.image_size", uint32_t(kImage));
    w.set_u32("clip.vision.patch_size", uint32_t(kPatch));
    w.set_u32("clip.vision.embedding_length", uint32_t(kWidth));
    w.set_u32("clip.vision.feed_forward_length", uint32_t(kFfn));
    w.set_u32("clip.vision.block_count", uint32_t(kLayers));
    w.set_u32("clip.vision.attention.head_count", 12);
    w.set_f32("clip.vision.attention.layer_norm_epsilon", 1e-6f);
    w.set_u32("clip.vision.projection_dim", uint32_t(text_dim));
    w.set_f32_array("clip.vision.image_mean", {0.5f, 0.5f, 0.5f});
    w.set_f32_array("clip.vision.image_std", {0.5f, 0.5f, 0.5f});
    w.set_bool("clip.use_gelu", true);
    w.set_u32("clip.vision.projector.scale_factor", uint32_t(kMerge));
    w.set_u32("clip.vision.preproc_image_size", 2048);
    write_model(path, w, specs, seed);
}

}  // namespace glimpse
