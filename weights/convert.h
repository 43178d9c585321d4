// `glimpse convert`: writes GGUF files that llama.cpp and glimpse load, from
//   - a GGUF file (re-quantized to another type),
//   - a Hugging Face Llama folder (LlamaForCausalLM: config.json + safetensors + tokenizer.json),
//   - a llama2.c checkpoint plus its tokenizer .bin,
//   - a Hugging Face VLM folder (Idefics3/SmolVLM, Llava): the text model to OUT and the vision
//     tower + projector to an mmproj file (MODELS.md §3.12-3.13, §4.6).
//
// Names, metadata keys and key types are those llama.cpp's converters write (MODELS.md §3.12,
// §3.13, §4.6). HF Llama q_proj/k_proj rows are permuted per head so that GGUF's adjacent-pair
// RoPE equals HF's rotate_half (MODELS.md §1.4); llama2.c checkpoints already rotate adjacent
// pairs and are not permuted.
//
// Which tensors are quantized (llama.cpp's rule): 2-D weight matrices, token_embd included;
// 1-D tensors (norms, biases) stay F32. A matrix whose row length is not a whole number of
// blocks falls back (Q4_K -> Q5_0 -> F16 as llama-quantize does, Q8_0/Q4_0 -> F16) with a note.
//
// Files are written to OUT.tmp and renamed when complete, so a failed run never leaves half a
// file under OUT; the tensor data is converted one tensor at a time (memory: about two tensors).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "weights/gguf.h"

namespace glimpse {

struct ConvertOptions {
    DType type = DType::F16;  // F32, F16, Q8_0, Q4_0 or Q4_K: the type of the text model's matrices
    bool force = false;       // overwrite existing output files
    std::string tokenizer;    // llama2.c: the tokenizer .bin (default: tok<vocab>.bin / tokenizer.bin beside it)
    std::string mmproj_out;   // VLM folders: where the mmproj goes ("" = mmproj-<OUT name> beside OUT)
    // Notes ("5 matrices have rows of 172 values ...: stored as F16 (blk.0.ffn_down.weight, ...)")
    // and progress lines; the CLI prints them on stderr. May be empty.
    std::function<void(const std::string&)> log;
};

struct ConvertResult {
    std::string input_kind;            // "GGUF", "llama2.c", "Hugging Face LlamaForCausalLM", ...
    std::vector<std::string> written;  // output files, in the order written
    int n_tensors = 0;                 // over all outputs
};

// Detects what `in` is and converts it. Errors: Error(BadInput) for a missing input or an
// existing output without force; Error(Model) for an unsupported or broken model; Error(Usage)
// for options that do not fit the input (an unsupported type, --tokenizer for a GGUF, ...).
ConvertResult convert_model(const std::string& in, const std::string& out, const ConvertOptions& opt);

// The types --type accepts: "f32" "f16" "q8_0" "q4_0" "q4_k" (any case). Error(Usage) otherwise.
DType parse_convert_type(const std::string& name);

// llama.cpp's general.file_type (llama_ftype) for a file whose matrices are mostly `t`.
uint32_t gguf_file_type(DType t);

// ---- The pieces (used by the converters and their tests) ---------------------------------------

// One tensor to write: where its values come from and what it becomes.
struct PlannedTensor {
    std::string name;     // GGUF name
    Tensor src;           // any dequantizable type; rows contiguous; shape = output shape
    DType type;           // output type (rows must be whole blocks of it: see tensor_type)
    int rope_heads = 0;   // > 0: rows permuted per head for RoPE (HF -> GGUF, MODELS.md §1.4)
};

struct GgufPlan {
    GgufWriter meta;  // metadata only (tensors are added when the plan is written)
    std::vector<PlannedTensor> tensors;
    // Type fallbacks, for one note each when the plan is written: "rows of 172 values ..." ->
    // the tensors it applies to.
    std::map<std::string, std::vector<std::string>> fallbacks;
};

// The output type of a matrix of rows of `row_len` values when `want` is asked for: `want`
// when rows are whole blocks of it, else llama-quantize's fallback (Q4_K -> Q5_0 -> F16 -> F32).
DType fallback_type(DType want, int64_t row_len);

// The row of `src` that output row `r` takes when `rows` rows of `n_heads` heads are permuted
// from HF's rotate_half layout to GGUF's adjacent pairs:
//   out[h·d + 2i + p] = src[h·d + p·(d/2) + i]   (d = rows / n_heads, p ∈ {0,1}, i < d/2)
int64_t rope_permuted_row(int64_t r, int64_t rows, int n_heads);

// Writes the plan to `path` (via path.tmp + rename). Each tensor is converted row by row:
// dequantize -> (permute) -> quantize; a tensor whose type and layout do not change is copied
// byte for byte. Error(BadInput) for I/O failures.
void write_gguf_plan(const GgufPlan& plan, const std::string& path, const ConvertOptions& opt);

// Refuses to overwrite `path` unless opt.force (Error(BadInput) "path: already exists ...").
void check_output_path(const std::string& path, const ConvertOptions& opt);

class HfFolder;

// What convert_model calls: one plan per kind of input (weights/convert_*.cpp).
namespace detail {

enum class VisionKind { None, Idefics3, Llava };
VisionKind hf_vision_kind(const HfFolder& folder);  // from config.json's architecture

// fallback_type; a change of type is recorded in plan.fallbacks.
DType matrix_type(const std::string& name, int64_t row_len, DType want, GgufPlan& plan);

GgufPlan plan_requantize(const GgufFile& f, const ConvertOptions& opt);               // convert_gguf.cpp
GgufPlan plan_hf_text(std::shared_ptr<const HfFolder> folder, const ConvertOptions& opt);  // convert_llama.cpp
GgufPlan plan_llama2c(const std::string& path, const ConvertOptions& opt);             // convert_llama.cpp
GgufPlan plan_hf_mmproj(const HfFolder& folder, VisionKind kind, const ConvertOptions& opt);  // convert_vision.cpp

}  // namespace detail

}  // namespace glimpse
