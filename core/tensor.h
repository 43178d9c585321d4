// A tensor view: type, shape, strides and a pointer to the data, which lives either in a
// mapped weight file or in an owned buffer; `storage` keeps whichever it is alive.
//
// Shapes are in ggml order everywhere in glimpse: ne[0] is the innermost, contiguous axis
// (MODELS.md §0). A Hugging Face / safetensors shape [out, in] is ne = {in, out, 1, 1}.
// For block-quantized types ne[0] counts values (a multiple of the block size) and nb[1] is
// the byte size of one row.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace glimpse {

constexpr int kMaxDims = 4;

struct Tensor {
    std::string name;
    DType dtype = DType::F32;
    int n_dims = 1;                           // dimensions as stored in the file (1..4)
    std::array<int64_t, kMaxDims> ne{1, 1, 1, 1};  // elements per axis, ggml order
    std::array<uint64_t, kMaxDims> nb{};      // byte stride per axis
    const void* data = nullptr;
    std::shared_ptr<const void> storage;      // keeps `data` alive (mapping or buffer)

    int64_t numel() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t rows() const { return ne[1] * ne[2] * ne[3]; }  // rows of ne[0] values
    uint64_t row_bytes() const { return nb[1]; }
    uint64_t bytes() const { return nb[3] * static_cast<uint64_t>(ne[3]); }  // contiguous size
    bool contiguous() const;
    const uint8_t* row(int64_t i) const { return static_cast<const uint8_t*>(data) + uint64_t(i) * nb[1]; }
    std::string shape_string() const;  // "[64, 49194]" (ggml order, n_dims entries)
};

// Contiguous strides for `ne` in type t; throws std::invalid_argument when ne[0] is not a
// whole number of blocks or the size overflows (loaders check this first and report it).
std::array<uint64_t, kMaxDims> contiguous_strides(DType t, const std::array<int64_t, kMaxDims>& ne);

// A new zero-filled contiguous float32 tensor that owns its storage.
Tensor make_f32(const std::string& name, std::array<int64_t, kMaxDims> ne, int n_dims);
inline float* f32_data(Tensor& t) { return static_cast<float*>(const_cast<void*>(t.data)); }
inline const float* f32_data(const Tensor& t) { return static_cast<const float*>(t.data); }

}  // namespace glimpse
