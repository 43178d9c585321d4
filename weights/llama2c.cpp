#include "weights/llama2c.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "weights/safetensors.h"  // message_safe

namespace glimpse {

namespace {

constexpr uint64_t kHeaderBytes = 7 * 4;

// Bounds well above any llama2.c-family model, low enough that every size below is a few
// products of 64-bit values that cannot overflow (largest: layers·dim·hidden < 2^46).
constexpr int kMaxDim = 65536;
constexpr int kMaxHidden = 1 << 20;
constexpr int kMaxLayers = 1024;
constexpr int kMaxVocab = 1 << 22;
constexpr int kMaxSeqLen = 1 << 20;
constexpr int kMaxTokenLength = 1 << 16;

int32_t read_i32(const uint8_t* p) {
    uint32_t v = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
    int32_t r;
    std::memcpy(&r, &v, 4);
    return r;
}

float read_f32(const uint8_t* p) {
    const int32_t i = read_i32(p);
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

// One tensor of the checkpoint: its name and ggml-order shape.
struct Slot {
    const char* name;
    std::array<int64_t, kMaxDims> ne;
    int n_dims;
};

// run.c memory_map_weights order. The RoPE tables between rms_final_weight and wcls are not
// tensors; build_tensors skips them.
std::vector<Slot> slots_for(const Llama2cConfig& c) {
    const int64_t d = c.dim, h = c.hidden_dim, L = c.n_layers, v = c.vocab_size;
    const int64_t q = int64_t(c.n_heads) * c.head_size(), kv = int64_t(c.n_kv_heads) * c.head_size();
    std::vector<Slot> s = {
        {"token_embedding_table", {d, v, 1, 1}, 2},
        {"rms_att_weight", {d, L, 1, 1}, 2},
        {"wq", {d, q, L, 1}, 3},
        {"wk", {d, kv, L, 1}, 3},
        {"wv", {d, kv, L, 1}, 3},
        {"wo", {q, d, L, 1}, 3},
        {"rms_ffn_weight", {d, L, 1, 1}, 2},
        {"w1", {d, h, L, 1}, 3},
        {"w2", {h, d, L, 1}, 3},
        {"w3", {d, h, L, 1}, 3},
        {"rms_final_weight", {d, 1, 1, 1}, 1},
    };
    if (!c.shared_classifier) s.push_back({"wcls", {d, v, 1, 1}, 2});
    return s;
}

uint64_t numel(const Slot& s) { return uint64_t(s.ne[0]) * uint64_t(s.ne[1]) * uint64_t(s.ne[2]); }

// freq_cis_real + freq_cis_imag, each seq_len × head_size/2 floats (head_size is even).
uint64_t rope_table_floats(const Llama2cConfig& c) { return 2 * uint64_t(c.seq_len) * uint64_t(c.head_size() / 2); }

std::string range_problem(const char* what, int64_t v, int64_t lo, int64_t hi) {
    if (v >= lo && v <= hi) return "";
    return std::string(what) + " = " + std::to_string(v) + " is outside " + std::to_string(lo) + ".." +
           std::to_string(hi);
}

std::string header_problem(const Llama2cConfig& c, int64_t raw_vocab) {
    for (const std::string& p :
         {range_problem("dim", c.dim, 1, kMaxDim), range_problem("hidden_dim", c.hidden_dim, 1, kMaxHidden),
          range_problem("n_layers", c.n_layers, 1, kMaxLayers), range_problem("n_heads", c.n_heads, 1, c.dim),
          range_problem("n_kv_heads", c.n_kv_heads, 1, c.n_heads), range_problem("|vocab_size|", raw_vocab < 0 ? -raw_vocab : raw_vocab, 1, kMaxVocab),
          range_problem("seq_len", c.seq_len, 1, kMaxSeqLen)})
        if (!p.empty()) return p;
    if (c.dim % c.n_heads != 0)
        return "n_heads " + std::to_string(c.n_heads) + " does not divide dim " + std::to_string(c.dim);
    if (c.head_size() % 2 != 0)
        return "head size " + std::to_string(c.head_size()) + " is odd (RoPE rotates pairs)";
    if (c.n_heads % c.n_kv_heads != 0)
        return "n_kv_heads " + std::to_string(c.n_kv_heads) + " does not divide n_heads " + std::to_string(c.n_heads);
    return "";
}

}  // namespace

Llama2cLayout llama2c_layout(const uint8_t header[28], std::string& problem) {
    Llama2cLayout out;
    Llama2cConfig& c = out.config;
    c.dim = read_i32(header);
    c.hidden_dim = read_i32(header + 4);
    c.n_layers = read_i32(header + 8);
    c.n_heads = read_i32(header + 12);
    c.n_kv_heads = read_i32(header + 16);
    const int64_t raw_vocab = read_i32(header + 20);
    c.seq_len = read_i32(header + 24);
    // export.py's version 1/2 files start with the magic "ak42" (0x616b3432) and are not
    // read by run.c either.
    if (read_i32(header) == 0x616b3432) {
        problem = "a llama2.c version-1/2 export, not the legacy format (export with --version 0)";
        return out;
    }
    problem = header_problem(c, raw_vocab);
    if (!problem.empty()) return out;
    c.shared_classifier = raw_vocab > 0;
    c.vocab_size = static_cast<int>(raw_vocab < 0 ? -raw_vocab : raw_vocab);
    uint64_t floats = rope_table_floats(c);
    for (const Slot& s : slots_for(c)) floats += numel(s);
    out.file_bytes = kHeaderBytes + 4 * floats;
    return out;
}

Llama2cCheckpoint Llama2cCheckpoint::open(const std::string& path) {
    const auto file = MappedFile::open(path);
    return parse_bytes(file->data(), file->size(), path, std::shared_ptr<const void>(file, file->data()));
}

Llama2cCheckpoint Llama2cCheckpoint::parse_memory(const uint8_t* data, size_t size, const std::string& name) {
    return parse_bytes(data, size, name, nullptr);
}

Llama2cCheckpoint Llama2cCheckpoint::parse_bytes(const uint8_t* data, uint64_t size, const std::string& path,
                                                 std::shared_ptr<const void> storage) {
    if (size < kHeaderBytes)
        throw model_error(path, "file is " + std::to_string(size) +
                                    " bytes, too short for a llama2.c header (7 int32s; truncated or not llama2.c)");
    std::string problem;
    const Llama2cLayout layout = llama2c_layout(data, problem);
    if (!problem.empty()) throw model_error(path, "header: " + problem + " (corrupt or not a llama2.c checkpoint)");
    if (size != layout.file_bytes)
        throw model_error(path, "file is " + std::to_string(size) + " bytes but its header implies " +
                                    std::to_string(layout.file_bytes) +
                                    " (truncated, or a header that does not match the weights)");
    if (reinterpret_cast<uintptr_t>(data) % 4 != 0)
        throw model_error(path, "data is not 4-byte aligned in memory (cannot read floats in place)");

    Llama2cCheckpoint ck;
    ck.path_ = path;
    ck.config_ = layout.config;
    uint64_t offset = kHeaderBytes;
    for (const Slot& s : slots_for(layout.config)) {
        if (std::string_view(s.name) == "wcls") offset += 4 * rope_table_floats(layout.config);
        Tensor t;
        t.name = s.name;
        t.dtype = DType::F32;
        t.n_dims = s.n_dims;
        t.ne = s.ne;
        t.nb = contiguous_strides(DType::F32, t.ne);
        t.data = data + offset;
        t.storage = storage;
        offset += t.bytes();
        ck.tensors_.push_back(std::move(t));
    }
    return ck;
}

bool Llama2cCheckpoint::looks_like(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || uint64_t(st.st_size) < kHeaderBytes) return false;
    std::ifstream in(path, std::ios::binary);
    uint8_t header[kHeaderBytes];
    if (!in.read(reinterpret_cast<char*>(header), kHeaderBytes)) return false;
    std::string problem;
    const Llama2cLayout layout = llama2c_layout(header, problem);
    return problem.empty() && layout.file_bytes == uint64_t(st.st_size);
}

const Tensor* Llama2cCheckpoint::find_tensor(std::string_view name) const {
    for (const Tensor& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

const Tensor& Llama2cCheckpoint::tensor(std::string_view name) const {
    if (const Tensor* t = find_tensor(name)) return *t;
    std::string hint = name == "wcls" ? " (the classifier is shared: use token_embedding_table)" : "";
    throw model_error(path_, "no tensor named \"" + message_safe(name) + "\"" + hint);
}

// ---- tokenizer ----

Llama2cTokenizer Llama2cTokenizer::open(const std::string& path, int vocab_size) {
    const auto file = MappedFile::open(path);
    return parse_memory(file->data(), file->size(), path, vocab_size);
}

Llama2cTokenizer Llama2cTokenizer::parse_memory(const uint8_t* data, size_t size, const std::string& path,
                                                int vocab_size) {
    if (vocab_size < 1 || vocab_size > kMaxVocab)
        throw model_error(path, "vocabulary size " + std::to_string(vocab_size) + " from the checkpoint is outside 1.." +
                                    std::to_string(kMaxVocab));
    if (size < 4) throw model_error(path, "file is too short for a llama2.c tokenizer (truncated or wrong file)");
    Llama2cTokenizer tok;
    tok.max_token_length_ = read_i32(data);
    if (tok.max_token_length_ < 1 || tok.max_token_length_ > kMaxTokenLength)
        throw model_error(path, "max_token_length " + std::to_string(tok.max_token_length_) + " is outside 1.." +
                                    std::to_string(kMaxTokenLength) + " (corrupt or not a llama2.c tokenizer)");
    uint64_t pos = 4;
    // Each entry takes at least 8 bytes: refuse before reserving for a vocabulary that cannot fit.
    if (uint64_t(vocab_size) * 8 > size - pos)
        throw model_error(path, "file is " + std::to_string(size) + " bytes, too short for " +
                                    std::to_string(vocab_size) +
                                    " tokens (a tokenizer for a different checkpoint, or truncated)");
    tok.pieces_.reserve(size_t(vocab_size));
    tok.scores_.reserve(size_t(vocab_size));
    for (int id = 0; id < vocab_size; ++id) {
        if (size - pos < 8)
            throw model_error(path, "ends inside token " + std::to_string(id) + " of " + std::to_string(vocab_size) +
                                        " (truncated, or a tokenizer for a different checkpoint)");
        const float score = read_f32(data + pos);
        const int32_t len = read_i32(data + pos + 4);
        pos += 8;
        if (std::isnan(score)) throw model_error(path, "token " + std::to_string(id) + " has a NaN score (corrupt file)");
        if (len < 0 || len > tok.max_token_length_ || uint64_t(len) > size - pos)
            throw model_error(path, "token " + std::to_string(id) + " has length " + std::to_string(len) +
                                        " (max_token_length " + std::to_string(tok.max_token_length_) + ", " +
                                        std::to_string(size - pos) + " bytes left; corrupt or truncated)");
        tok.pieces_.emplace_back(reinterpret_cast<const char*>(data + pos), size_t(len));
        tok.scores_.push_back(score);
        pos += uint64_t(len);
    }
    if (pos != size)
        throw model_error(path, std::to_string(size - pos) + " bytes follow the " + std::to_string(vocab_size) +
                                    " tokens (a tokenizer for a larger vocabulary than the checkpoint's?)");
    return tok;
}

}  // namespace glimpse
