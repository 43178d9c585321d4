// safetensors files (MODELS.md §2.1): `u64 LE header_len` · `header_len` bytes of JSON ·
// raw little-endian C-order tensor data. The JSON maps each tensor name to
// {"dtype", "shape" (outermost first), "data_offsets": [begin, end)} with offsets relative to
// the first byte after the header, plus an optional "__metadata__" object of strings.
//
// Tensors come back as views into the mapped file (no copy), in ggml order: the file's
// shape [out, in] becomes ne = {in, out, 1, 1}, n_dims = 2.
//
// Decisions a reader of this format has to make, and what glimpse does:
// - dtypes: F32, F16, BF16 (computable) and F64, I64, I32, I16, I8 (plain, for `info`) are
//   accepted; anything else (U8, BOOL, F8_E4M3, ...) is an error naming the tensor and dtype.
// - A scalar (shape []) becomes n_dims = 1, ne = {1, 1, 1, 1}; writing it back gives [1].
//   Empty tensors (a 0 in the shape, begin == end) are allowed.
// - More than 4 dimensions is an error (no supported model has them).
// - Views are read directly as float/half, so every non-empty tensor's data must sit at an
//   address that is a multiple of its element size. Files written by the reference library
//   always are (it pads the header to 8 bytes and orders tensors by alignment); a misaligned
//   tensor is rejected with an error rather than read with undefined behaviour.
// - Tensors may not overlap; gaps between them are tolerated. Duplicate JSON keys (two
//   tensors with the same name, two "dtype" keys) are rejected rather than silently merged.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace glimpse {

// Headers above this are refused before any JSON parsing (the reference library uses the
// same order of limit); real model headers are tens of KiB to a few MiB.
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull << 20;

class SafetensorsFile {
public:
    // Maps the file. A missing/unreadable file is Error(BadInput); a malformed one is
    // Error(Model, "<path>: <problem> (<hint>)").
    static SafetensorsFile open(const std::string& path);
    static SafetensorsFile parse(std::shared_ptr<const MappedFile> file);
    // Parses bytes owned by the caller (fuzzers, tests). The returned views point into
    // `data` and carry no storage: `data` must outlive them.
    static SafetensorsFile parse_memory(const uint8_t* data, size_t size, const std::string& name);

    const std::string& path() const { return path_; }
    uint64_t header_bytes() const { return header_bytes_; }  // the JSON length (the u64 field)
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    // Sorted by data offset (empty tensors, which share offsets, by name among equals).
    const std::vector<Tensor>& tensors() const { return tensors_; }
    const Tensor* find_tensor(std::string_view name) const;
    const Tensor& tensor(std::string_view name) const;  // throws Error(Model) naming file and tensor

private:
    static SafetensorsFile parse_bytes(const uint8_t* data, uint64_t size, const std::string& name,
                                       std::shared_ptr<const void> storage);
    std::string path_;
    uint64_t header_bytes_ = 0;
    std::map<std::string, std::string> metadata_;
    std::vector<Tensor> tensors_;
    std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
};

// Writes `tensors` (contiguous, plain dtypes only) and `metadata` to `path` as safetensors.
// The header is padded with spaces to a multiple of 8 bytes, like the reference writer, and
// the data is laid out in the given order except that tensors are stably grouped by element
// size, largest first, so that every tensor stays aligned (what the reference writer does).
// Throws Error(Model) for a type safetensors cannot hold, Error(BadInput) if writing fails.
void write_safetensors(const std::string& path, const std::vector<Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype string for a glimpse type ("F32", "BF16", ...), or "" if it has none.
std::string_view safetensors_dtype_name(DType t);

// `s` made safe for a one-line error message: control and non-ASCII bytes escaped as \xHH,
// cut to `max_chars` with "..." (names in hostile files can hold newlines).
std::string message_safe(std::string_view s, size_t max_chars = 120);

}  // namespace glimpse
