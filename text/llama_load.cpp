// Loaders of the Llama decoder: the shared checks, GGUF, llama2.c, and opening a path of any
// of the three formats. The Hugging Face loader is in llama_load_hf.cpp.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/matmul.h"
#include "core/quant.h"
#include "text/llama_load_internal.h"
#include "text/llama_model.h"
#include "weights/gguf.h"
#include "weights/hf_folder.h"
#include "weights/llama2c.h"
#include "weights/safetensors.h"  // message_safe

namespace glimpse {

namespace detail {

namespace {

std::string quoted(const Tensor& t) { return "tensor '" + message_safe(t.name) + "'"; }

std::string ne_string(int64_t a, int64_t b) { return "[" + std::to_string(a) + ", " + std::to_string(b) + "]"; }

bool shape_is(const Tensor& t, int64_t n0, int64_t n1) {
    return t.ne[0] == n0 && t.ne[1] == n1 && t.ne[2] == 1 && t.ne[3] == 1;
}

// Rows must be whole and contiguous in memory for the kernels (they read nb[1] apart).
void check_row_layout(const std::string& file, const Tensor& t) {
    const auto& info = dtype_info(t.dtype);
    const auto row = dtype_row_bytes(t.dtype, uint64_t(t.ne[0]));
    if (!row || t.nb[0] != info.block_bytes || (t.ne[1] > 1 && t.nb[1] < *row) || t.data == nullptr)
        throw model_error(file, quoted(t) + " has a row layout the kernels cannot read (rows must be contiguous)");
}

}  // namespace

void check_matrix(const std::string& file, const Tensor& t, int64_t cols, int64_t rows, const std::string& why) {
    if (!shape_is(t, cols, rows))
        throw model_error(file, quoted(t) + " has shape " + t.shape_string() + ", expected " + ne_string(cols, rows) +
                                    " (" + why + ")");
    if (!matmul_supports(t.dtype))
        throw model_error(file, quoted(t) + " has type " + std::string(dtype_name(t.dtype)) +
                                    ", which the matrix kernels do not support");
    check_row_layout(file, t);
}

void check_embedding(const std::string& file, const Tensor& t, int64_t n_embd, int64_t n_vocab) {
    if (!shape_is(t, n_embd, n_vocab))
        throw model_error(file, quoted(t) + " has shape " + t.shape_string() + ", expected " +
                                    ne_string(n_embd, n_vocab) + " (n_embd x n_vocab)");
    if (!dtype_info(t.dtype).computable)
        throw model_error(file, quoted(t) + " has type " + std::string(dtype_name(t.dtype)) + ", which cannot be read");
    check_row_layout(file, t);
}

Tensor norm_weight_f32(const std::string& file, const Tensor& t, int64_t n) {
    if (!shape_is(t, n, 1))
        throw model_error(file, quoted(t) + " has shape " + t.shape_string() + ", expected [" + std::to_string(n) +
                                    "] (a norm weight of n_embd values)");
    if (t.dtype == DType::F32) {
        if (t.nb[0] != sizeof(float) || t.data == nullptr)
            throw model_error(file, quoted(t) + " is not a contiguous float32 vector");
        if (reinterpret_cast<uintptr_t>(t.data) % alignof(float) != 0) {
            // A hostile GGUF can misalign a tensor; copy rather than read floats unaligned.
            Tensor copy = make_f32(t.name, {n, 1, 1, 1}, 1);
            std::memcpy(f32_data(copy), t.data, size_t(n) * sizeof(float));
            return copy;
        }
        return t;
    }
    if (t.dtype != DType::F16 && t.dtype != DType::BF16)
        throw model_error(file, quoted(t) + " has type " + std::string(dtype_name(t.dtype)) +
                                    ", expected F32, F16 or BF16 for a norm weight");
    Tensor out = make_f32(t.name, {n, 1, 1, 1}, 1);
    dequantize_row(t.dtype, t.data, f32_data(out), n);
    return out;
}

void check_config(const std::string& file, const LlamaConfig& c, const std::string& source) {
    auto range = [&](const char* what, int64_t v, int64_t lo, int64_t hi) {
        if (v < lo || v > hi)
            throw model_error(file, std::string(what) + " = " + std::to_string(v) + " is outside " + std::to_string(lo) +
                                        ".." + std::to_string(hi) + " (" + source + ")");
    };
    range("n_layers", c.n_layers, 1, 4096);
    range("n_embd", c.n_embd, 1, 1 << 17);
    range("n_heads", c.n_heads, 1, 1 << 12);
    range("n_kv_heads", c.n_kv_heads, 1, c.n_heads);
    range("head_dim", c.head_dim, 2, 1 << 12);
    range("n_ff", c.n_ff, 1, 1 << 20);
    range("n_vocab", c.n_vocab, 1, 1 << 23);
    range("n_ctx_train", c.n_ctx_train, 1, 1 << 24);
    if (c.head_dim % 2 != 0)
        throw model_error(file, "head_dim " + std::to_string(c.head_dim) + " is odd (RoPE rotates pairs; " + source + ")");
    if (c.n_heads % c.n_kv_heads != 0)
        throw model_error(file, "n_kv_heads " + std::to_string(c.n_kv_heads) + " does not divide n_heads " +
                                    std::to_string(c.n_heads) + " (" + source + ")");
    if (!(c.rms_eps > 0.0f && c.rms_eps < 1.0f))
        throw model_error(file, "RMS norm epsilon " + std::to_string(c.rms_eps) + " is not in (0, 1) (" + source + ")");
    if (!(c.rope_theta > 1.0f && c.rope_theta < 1e12f))
        throw model_error(file, "RoPE base " + std::to_string(c.rope_theta) + " is not in (1, 1e12) (" + source + ")");
}

void check_weights(const std::string& file, const LlamaConfig& c, LlamaWeights& w) {
    const int64_t D = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, V = c.n_vocab;
    const std::string d = "n_embd " + std::to_string(D);
    check_embedding(file, w.token_embd, D, V);
    if (int64_t(w.layers.size()) != c.n_layers)
        throw model_error(file, "found " + std::to_string(w.layers.size()) + " layers, expected " +
                                    std::to_string(c.n_layers));
    for (auto& L : w.layers) {
        L.attn_norm = norm_weight_f32(file, L.attn_norm, D);
        L.ffn_norm = norm_weight_f32(file, L.ffn_norm, D);
        const std::string q = "n_heads " + std::to_string(c.n_heads) + " x head_dim " + std::to_string(c.head_dim);
        const std::string kv = "n_kv_heads " + std::to_string(c.n_kv_heads) + " x head_dim " + std::to_string(c.head_dim);
        check_matrix(file, L.wq, D, Q, d + " x " + q);
        check_matrix(file, L.wk, D, KV, d + " x " + kv);
        check_matrix(file, L.wv, D, KV, d + " x " + kv);
        check_matrix(file, L.wo, Q, D, q + " x " + d);
        check_matrix(file, L.w_gate, D, F, d + " x n_ff " + std::to_string(F));
        check_matrix(file, L.w_up, D, F, d + " x n_ff " + std::to_string(F));
        check_matrix(file, L.w_down, F, D, "n_ff " + std::to_string(F) + " x " + d);
    }
    w.output_norm = norm_weight_f32(file, w.output_norm, D);
    check_matrix(file, w.output, D, V, d + " x n_vocab " + std::to_string(V));
}

}  // namespace detail

using detail::check_config;
using detail::check_weights;

// ---- GGUF -----------------------------------------------------------------------------------

namespace {

int gguf_int(const GgufFile& f, const std::string& key) {
    const uint32_t v = f.u32(key);
    if (v > (1u << 30)) throw model_error(f.path(), "metadata key '" + key + "' = " + std::to_string(v) + " is too large");
    return int(v);
}

LlamaConfig gguf_llama_config(const GgufFile& f) {
    const std::string arch = f.str_or("general.architecture", "");
    if (arch.empty())
        throw model_error(f.path(), "general.architecture is missing (not a model GGUF?)");
    if (arch != "llama")
        throw model_error(f.path(), "unsupported architecture '" + message_safe(arch) +
                                        "' (general.architecture); the text decoder runs 'llama'");
    const std::string p = "llama.";
    LlamaConfig c;
    c.n_layers = gguf_int(f, p + "block_count");
    c.n_embd = gguf_int(f, p + "embedding_length");
    c.n_ff = gguf_int(f, p + "feed_forward_length");
    c.n_heads = gguf_int(f, p + "attention.head_count");
    c.n_kv_heads = f.has(p + "attention.head_count_kv") ? gguf_int(f, p + "attention.head_count_kv") : c.n_heads;
    c.n_ctx_train = gguf_int(f, p + "context_length");
    if (c.n_heads <= 0) throw model_error(f.path(), "llama.attention.head_count is 0");
    c.head_dim = f.has(p + "attention.key_length") ? gguf_int(f, p + "attention.key_length") : c.n_embd / c.n_heads;
    if (f.has(p + "attention.value_length") && gguf_int(f, p + "attention.value_length") != c.head_dim)
        throw model_error(f.path(), "llama.attention.value_length differs from key_length (unsupported)");
    if (f.has(p + "rope.dimension_count") && gguf_int(f, p + "rope.dimension_count") != c.head_dim)
        throw model_error(f.path(), "llama.rope.dimension_count " + std::to_string(f.u32(p + "rope.dimension_count")) +
                                        " differs from the head size " + std::to_string(c.head_dim) +
                                        " (partial rotary is not supported)");
    const std::string scaling = f.str_or(p + "rope.scaling.type", "none");
    if (scaling != "none")
        throw model_error(f.path(), "llama.rope.scaling.type '" + message_safe(scaling) + "' is not supported");
    c.rope_theta = f.f32_or(p + "rope.freq_base", 10000.0f);
    c.rms_eps = f.f32_or(p + "attention.layer_norm_rms_epsilon", 1e-5f);
    c.rope_style = ops::RopeStyle::AdjacentPairs;  // the converter permuted q/k (MODELS.md §1.4)
    return c;
}

}  // namespace

LlamaModel load_llama_gguf(const GgufFile& f) {
    const std::string& path = f.path();
    LlamaModel m;
    m.path = path;
    m.format = LlamaFormat::Gguf;
    LlamaConfig c = gguf_llama_config(f);
    LlamaWeights& w = m.weights;
    w.token_embd = f.tensor("token_embd.weight");
    c.n_vocab = int(std::clamp<int64_t>(w.token_embd.ne[1], 0, int64_t(1) << 30));
    if (f.has("llama.vocab_size") && int64_t(f.u32("llama.vocab_size")) != w.token_embd.ne[1])
        throw model_error(path, "llama.vocab_size " + std::to_string(f.u32("llama.vocab_size")) +
                                    " differs from the rows of token_embd.weight " + std::to_string(w.token_embd.ne[1]));
    check_config(path, c, "llama.* metadata");
    for (int l = 0; l < c.n_layers; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        LlamaLayerWeights L;
        L.attn_norm = f.tensor(b + "attn_norm.weight");
        L.wq = f.tensor(b + "attn_q.weight");
        L.wk = f.tensor(b + "attn_k.weight");
        L.wv = f.tensor(b + "attn_v.weight");
        L.wo = f.tensor(b + "attn_output.weight");
        L.ffn_norm = f.tensor(b + "ffn_norm.weight");
        L.w_gate = f.tensor(b + "ffn_gate.weight");
        L.w_up = f.tensor(b + "ffn_up.weight");
        L.w_down = f.tensor(b + "ffn_down.weight");
        w.layers.push_back(std::move(L));
    }
    if (f.find_tensor("blk." + std::to_string(c.n_layers) + ".attn_norm.weight"))
        throw model_error(path, "has a block " + std::to_string(c.n_layers) + " beyond llama.block_count " +
                                    std::to_string(c.n_layers));
    w.output_norm = f.tensor("output_norm.weight");
    const Tensor* out = f.find_tensor("output.weight");
    c.tied_output = out == nullptr;
    w.output = c.tied_output ? w.token_embd : *out;
    check_weights(path, c, w);
    m.config = c;
    return m;
}

LlamaModel load_llama_gguf(std::shared_ptr<const GgufFile> file) {
    LlamaModel m = load_llama_gguf(*file);
    m.gguf = std::move(file);
    return m;
}

// ---- llama2.c -------------------------------------------------------------------------------

namespace {

// Layer `l` of a (layer, rows, cols) array, ne {cols, rows, L}: a 2-D view, no copy.
Tensor layer_matrix(const Tensor& t, int l) {
    Tensor v = t;
    v.name = t.name + "[layer " + std::to_string(l) + "]";
    v.n_dims = 2;
    v.ne = {t.ne[0], t.ne[1], 1, 1};
    v.nb = {t.nb[0], t.nb[1], t.nb[1] * uint64_t(t.ne[1]), t.nb[1] * uint64_t(t.ne[1])};
    v.data = static_cast<const uint8_t*>(t.data) + uint64_t(l) * t.nb[2];
    return v;
}

// Row `l` of a (layer, dim) array, ne {dim, L}: a 1-D view.
Tensor layer_vector(const Tensor& t, int l) {
    Tensor v = t;
    v.name = t.name + "[layer " + std::to_string(l) + "]";
    v.n_dims = 1;
    v.ne = {t.ne[0], 1, 1, 1};
    v.nb = {t.nb[0], t.nb[1], t.nb[1], t.nb[1]};
    v.data = t.row(l);
    return v;
}

}  // namespace

LlamaModel load_llama2c(const Llama2cCheckpoint& ck) {
    const Llama2cConfig& k = ck.config();
    LlamaModel m;
    m.path = ck.path();
    m.format = LlamaFormat::Llama2c;
    LlamaConfig c;
    c.n_layers = k.n_layers;
    c.n_embd = k.dim;
    c.n_heads = k.n_heads;
    c.n_kv_heads = k.n_kv_heads;
    c.head_dim = k.head_size();
    c.n_ff = k.hidden_dim;
    c.n_vocab = k.vocab_size;
    c.n_ctx_train = k.seq_len;
    c.rope_theta = 10000.0f;  // run.c's constant
    c.rms_eps = 1e-5f;        // run.c's constant
    c.rope_style = ops::RopeStyle::AdjacentPairs;  // model.py rotates (x[2i], x[2i+1])
    c.tied_output = k.shared_classifier;
    check_config(m.path, c, "llama2.c header");

    LlamaWeights& w = m.weights;
    w.token_embd = ck.tensor("token_embedding_table");
    for (int l = 0; l < c.n_layers; ++l) {
        LlamaLayerWeights L;
        L.attn_norm = layer_vector(ck.tensor("rms_att_weight"), l);
        L.wq = layer_matrix(ck.tensor("wq"), l);
        L.wk = layer_matrix(ck.tensor("wk"), l);
        L.wv = layer_matrix(ck.tensor("wv"), l);
        L.wo = layer_matrix(ck.tensor("wo"), l);
        L.ffn_norm = layer_vector(ck.tensor("rms_ffn_weight"), l);
        L.w_gate = layer_matrix(ck.tensor("w1"), l);  // run.c: silu(w1·x) * (w3·x), then w2
        L.w_up = layer_matrix(ck.tensor("w3"), l);
        L.w_down = layer_matrix(ck.tensor("w2"), l);
        w.layers.push_back(std::move(L));
    }
    w.output_norm = ck.tensor("rms_final_weight");
    w.output = c.tied_output ? w.token_embd : ck.tensor("wcls");
    check_weights(m.path, c, w);
    m.config = c;
    return m;
}

LlamaModel load_llama2c(std::shared_ptr<const Llama2cCheckpoint> ck) {
    LlamaModel m = load_llama2c(*ck);
    m.llama2c = std::move(ck);
    return m;
}

// ---- any format -----------------------------------------------------------------------------

LlamaModel open_llama_model(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::exists(path, ec)) throw input_error(path, "no such file or folder");
    if (fs::is_directory(path, ec)) {
        if (HfFolder::looks_like(path)) return load_llama_hf(std::make_shared<const HfFolder>(HfFolder::open(path)));
        // A folder holding a text GGUF (and perhaps its mmproj): the one GGUF not named mmproj*.
        std::string found;
        for (const auto& e : fs::directory_iterator(path, ec)) {
            const std::string name = e.path().filename().string();
            if (e.path().extension() != ".gguf" || name.rfind("mmproj", 0) == 0) continue;
            if (!found.empty()) throw Error(ErrorKind::Usage, path + ": holds several text-model GGUF files; pass one with -m");
            found = e.path().string();
        }
        if (found.empty())
            throw model_error(path, "is a folder with neither config.json nor a text-model GGUF file");
        return load_llama_gguf(std::make_shared<const GgufFile>(GgufFile::open(found)));
    }
    char magic[4] = {};
    {
        std::ifstream in(path, std::ios::binary);
        if (!in) throw input_error(path, "cannot open for reading");
        in.read(magic, 4);
    }
    if (std::memcmp(magic, "GGUF", 4) == 0) return load_llama_gguf(std::make_shared<const GgufFile>(GgufFile::open(path)));
    if (Llama2cCheckpoint::looks_like(path))
        return load_llama2c(std::make_shared<const Llama2cCheckpoint>(Llama2cCheckpoint::open(path)));
    throw model_error(path, "is not a GGUF file, a llama2.c checkpoint or a Hugging Face folder");
}

std::string_view llama_format_name(LlamaFormat f) {
    switch (f) {
        case LlamaFormat::Gguf: return "GGUF";
        case LlamaFormat::HfFolder: return "Hugging Face folder";
        case LlamaFormat::Llama2c: return "llama2.c";
    }
    return "?";
}

uint64_t llama_weight_bytes(const LlamaModel& m) {
    auto bytes = [](const Tensor& t) { return uint64_t(t.ne[1]) * t.nb[1]; };
    const LlamaWeights& w = m.weights;
    uint64_t total = bytes(w.token_embd) + bytes(w.output_norm);
    if (!m.config.tied_output) total += bytes(w.output);
    for (const auto& L : w.layers)
        for (const Tensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_norm, &L.w_gate, &L.w_up, &L.w_down})
            total += bytes(*t);
    return total;
}

}  // namespace glimpse
