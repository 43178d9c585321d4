// Random-weight GGUF files with the exact shapes, names and metadata of real models, for
// benchmarks: random weights give gibberish text but the real amount of work (BASELINE.md's
// llama.cpp figures were taken on such files).
//
// Text model (general.architecture "llama", MODELS.md §3.12): every matrix in the requested
// type, norms F32. Weights ~ N(0, 0.02) (an Irwin–Hall sum of four uniforms), norm weights
// 1 + N(0, 0.02), so activations stay finite through every layer. The tokenizer is a minimal
// valid byte-level BPE ("gpt2", pre "smollm"): ids 0..2 are <|endoftext|> <|im_start|>
// <|im_end|>, ids 3..258 the 256 bytes (so any text encodes, one token per byte), the rest
// filler tokens "<r:N>"; no merges. `glimpse generate` therefore runs on the file. The
// smolvlm-* shapes also have SmolVLM's image tokens (<fake_token_around_image>, <image>,
// <global-img>, <row_R_col_C> up to 6 x 6) and <end_of_utterance> at ids 259..298, so that
// with write_random_mmproj_gguf's file beside it the pair runs as a VLM.
//
// Rows whose length is not a multiple of a K-quant's 256 (576 and 960 wide models) cannot be
// Q4_K/Q5_K/Q6_K: such tensors fall back as llama-quantize does (Q4_K, Q5_K -> Q5_0;
// Q6_K -> Q8_0).
//
// The data is written tensor by tensor, row by row: memory stays at one row buffer plus the
// metadata, whatever the model size.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace glimpse {

struct RandomLlamaShape {
    std::string name;      // written as general.name
    int n_layers = 0;
    int n_embd = 0;        // D
    int n_heads = 0;
    int n_kv_heads = 0;
    int head_dim = 0;      // D / n_heads for every shape here
    int n_ff = 0;
    int n_vocab = 0;
    int n_ctx = 8192;      // llama.context_length
    float rope_theta = 100000.0f;
    float rms_eps = 1e-5f;
    bool tied = false;     // no output.weight: logits use token_embd
};

// "smollm2-135m" (30 layers, 576 wide, 9/3 heads, FFN 1536, vocab 49152, tied),
// "smolvlm-256m" (its text tower: the same with vocab 49280, untied; MODELS.md §3.1),
// "smolvlm-500m" (32 layers, 960 wide, 15/5 heads, FFN 2560, vocab 49280, untied).
// Error(Usage) naming the known shapes for anything else.
RandomLlamaShape random_llama_shape(const std::string& name);

// The type a matrix of rows of `row_len` values gets when `requested` is asked for (see above).
DType random_matrix_type(DType requested, int64_t row_len);

// Writes the text model to `path` (replaced if present). weight_type: F32, F16, BF16, Q8_0,
// Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K. Same shape, type and seed give the same bytes.
// Error(Usage) for a bad shape or type, Error(BadInput) when the file cannot be written.
void write_random_llama_gguf(const std::string& path, const RandomLlamaShape& shape, DType weight_type,
                             uint64_t seed);

// The SmolVLM vision tower + projector as an mmproj file (projector type "idefics3", exactly
// the keys and 198 tensors of MODELS.md §3.13): SigLIP-B/16 at 512×512, 12 layers of 768,
// pixel shuffle 4, mm.model.fc [12288 -> text width]. `model`: "smolvlm-256m" (text width
// 576) or "smolvlm-500m" (960). Matrices in weight_type; patch/position embeddings, biases
// and LayerNorms F32, as the converter writes them.
void write_random_mmproj_gguf(const std::string& path, const std::string& model, DType weight_type, uint64_t seed);

}  // namespace glimpse
