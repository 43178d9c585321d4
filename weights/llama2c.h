// llama2.c checkpoints and tokenizers (karpathy/llama2.c, the "legacy" version-0 export that
// run.c reads; golden/stories260k/README.md).
//
// Checkpoint: 7 × int32 LE header {dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len}, then float32 arrays in run.c's memory_map_weights order:
//   token_embedding_table (vocab, dim)           rms_att_weight (layer, dim)
//   wq (layer, n_heads*hs, dim)  wk, wv (layer, n_kv_heads*hs, dim)  wo (layer, dim, n_heads*hs)
//   rms_ffn_weight (layer, dim)  w1, w3 (layer, hidden, dim)  w2 (layer, dim, hidden)
//   rms_final_weight (dim)
//   [seq_len*hs/2 floats freq_cis_real + the same for freq_cis_imag: skipped, unused]
//   wcls (vocab, dim)                             only when vocab_size in the header is < 0
// (hs = dim / n_heads; shapes above outermost first, rows are output features). A negative
// vocab_size means "unshared classifier"; its absolute value is the vocabulary size.
// The file must be exactly this long: run.c does not check, glimpse does.
//
// Tokenizer: int32 max_token_length, then vocab_size × {float32 score, int32 len, len bytes};
// the vocabulary size is not stored, it comes from the checkpoint.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace glimpse {

struct Llama2cConfig {
    int dim = 0;         // transformer width
    int hidden_dim = 0;  // FFN inner width
    int n_layers = 0;
    int n_heads = 0;     // query heads; head_size = dim / n_heads
    int n_kv_heads = 0;  // key/value heads (< n_heads: grouped-query attention)
    int vocab_size = 0;  // always positive here (the header's sign is `shared_classifier`)
    int seq_len = 0;     // maximum sequence length
    bool shared_classifier = true;  // wcls is token_embedding_table
    int head_size() const { return n_heads ? dim / n_heads : 0; }
};

class Llama2cCheckpoint {
public:
    // Error(BadInput) for a missing file, Error(Model, "<path>: <problem> (<hint>)") otherwise.
    static Llama2cCheckpoint open(const std::string& path);
    // Views point into `data` (no storage): the caller keeps it alive. For fuzzers and tests.
    static Llama2cCheckpoint parse_memory(const uint8_t* data, size_t size, const std::string& name);
    // A regular file whose header is sane and whose size matches it exactly; never throws.
    static bool looks_like(const std::string& path);

    const std::string& path() const { return path_; }
    const Llama2cConfig& config() const { return config_; }
    // In file order, named like run.c's TransformerWeights fields, shapes in ggml order with
    // the layer outermost, e.g. wq ne = {dim, n_heads*head_size, n_layers}, w2 ne =
    // {hidden_dim, dim, n_layers}, token_embedding_table ne = {dim, vocab_size}. wcls is present
    // only when the classifier is not shared (otherwise use token_embedding_table).
    const std::vector<Tensor>& tensors() const { return tensors_; }
    const Tensor* find_tensor(std::string_view name) const;
    const Tensor& tensor(std::string_view name) const;  // throws Error(Model) naming file and tensor

private:
    static Llama2cCheckpoint parse_bytes(const uint8_t* data, uint64_t size, const std::string& name,
                                         std::shared_ptr<const void> storage);
    std::string path_;
    Llama2cConfig config_;
    std::vector<Tensor> tensors_;
};

// Header sanity and the exact file size it implies; nullopt-like failure reported as a
// message in `problem` (empty on success). Shared by open() and looks_like().
struct Llama2cLayout {
    Llama2cConfig config;
    uint64_t file_bytes = 0;  // header + every float the header implies
};
Llama2cLayout llama2c_layout(const uint8_t header[28], std::string& problem);

class Llama2cTokenizer {
public:
    static Llama2cTokenizer open(const std::string& path, int vocab_size);
    static Llama2cTokenizer parse_memory(const uint8_t* data, size_t size, const std::string& name, int vocab_size);

    int max_token_length() const { return max_token_length_; }
    const std::vector<std::string>& pieces() const { return pieces_; }  // raw bytes, id order
    const std::vector<float>& scores() const { return scores_; }        // merge priority, id order

private:
    int max_token_length_ = 0;
    std::vector<std::string> pieces_;
    std::vector<float> scores_;
};

}  // namespace glimpse
