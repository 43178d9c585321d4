// Checks shared by the decoder's loaders (text/llama_load*.cpp): every tensor the forward pass
// reads is validated once here, so the kernels never see a shape they cannot handle.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "text/llama_model.h"

namespace glimpse::detail {

// A weight matrix of `rows` rows of `cols` values (ne {cols, rows}) in a type matmul takes,
// rows contiguous. `why` explains the expected shape in the error ("n_embd 64 x n_vocab 49194").
void check_matrix(const std::string& file, const Tensor& t, int64_t cols, int64_t rows, const std::string& why);

// The token embedding table: ne {n_embd, n_vocab} in any type get_rows can read.
void check_embedding(const std::string& file, const Tensor& t, int64_t n_embd, int64_t n_vocab);

// A norm weight of n values. F32 is returned as is; F16/BF16 are converted into an owned F32
// tensor (the ops read float*). Anything else is an error.
Tensor norm_weight_f32(const std::string& file, const Tensor& t, int64_t n);

// Sane ranges and divisibility (heads divide the width, KV heads divide the heads, even head
// size). Error(Model) naming `file` and `source` (the key group, e.g. "llama.*").
void check_config(const std::string& file, const LlamaConfig& c, const std::string& source);

// Validates every tensor of `w` against `c` (shapes and types), naming `file`.
void check_weights(const std::string& file, const LlamaConfig& c, LlamaWeights& w);

}  // namespace glimpse::detail
