// Element types of weights and activations. The numeric ids are ggml's (`ggml_type`), so a
// GGUF tensor's type field maps to a DType directly. Block-quantized types store `block_elems`
// values in `block_bytes` bytes (layouts in core/quant.h, MODELS.md §2.3).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace glimpse {

enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    BF16 = 30,
};

struct DTypeInfo {
    DType type;
    std::string_view name;  // as ggml/gguf-py print it: "F32", "Q8_0", "Q4_K", ...
    uint32_t block_elems;   // values per block (1 for plain types)
    uint32_t block_bytes;   // bytes per block
    bool computable;        // glimpse can dequantize / multiply with it
};

// Info for a known type; nullopt for an id glimpse does not know (e.g. IQ* types).
std::optional<DTypeInfo> dtype_info(uint32_t ggml_id);
const DTypeInfo& dtype_info(DType t);
std::optional<DType> dtype_from_name(std::string_view name);  // "F16", "q8_0", "bf16" ...
inline std::string_view dtype_name(DType t) { return dtype_info(t).name; }

// Bytes taken by `n` consecutive values of type `t`; nullopt if n is not a whole number of
// blocks or the size overflows.
std::optional<uint64_t> dtype_row_bytes(DType t, uint64_t n);

}  // namespace glimpse
