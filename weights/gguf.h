// GGUF: the llama.cpp ecosystem's weight file, glimpse's main weight format (MODELS.md §2.2).
//
//   "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
//   n_kv × (gguf string key, u32 value type, value)
//   n_tensors × (gguf string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
//   zero padding to `general.alignment` (default 32) | data section (tensor bytes, each padded)
//
// A gguf string is a u64 byte length followed by that many bytes (no NUL). All little-endian.
//
// GgufFile reads a file that is mmapped, never copies tensor data (every Tensor points into
// the mapping and holds it alive), and checks every read against the bytes remaining: a
// hostile or truncated file gives one Error(Model) line "<path>: <what> (<hint>)", never a
// crash or a huge allocation. GgufWriter writes version 3 files that llama.cpp reads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace glimpse {

namespace gguf {

enum class ValueType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
    String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};

// "u8", "i32", "f32", "bool", "string", "array", ...; "unknown" for an id outside the enum.
std::string_view value_type_name(ValueType t);
// Byte size of a fixed-size scalar (1 for u8/i8/bool ... 8 for u64/i64/f64); 0 for string/array.
size_t value_type_size(ValueType t);
bool is_integer_type(ValueType t);  // u8..i64 (not bool)
bool is_float_type(ValueType t);    // f32, f64

// One metadata value: a scalar, a string, or an array of one element type (arrays may nest).
//
// `data` holds the payload, chosen by `type` (and for arrays by `elem_type`):
//   U8, U16, U32, U64, Bool (0/1)  -> uint64_t          (widened; `type` keeps the width)
//   I8, I16, I32, I64              -> int64_t
//   F32, F64                       -> double            (an F32 is stored exactly)
//   String                         -> std::string       (raw bytes, usually UTF-8)
//   Array of the groups above      -> std::vector<uint64_t> / <int64_t> / <double> / <std::string>
//   Array of arrays                -> std::vector<Value> (each element itself an Array value)
// Build values with the of_* factories; GgufWriter::set checks that a value is consistent.
struct Value {
    using Data = std::variant<uint64_t, int64_t, double, std::string, std::vector<uint64_t>,
                              std::vector<int64_t>, std::vector<double>, std::vector<std::string>,
                              std::vector<Value>>;

    ValueType type = ValueType::U8;
    ValueType elem_type = ValueType::U8;  // arrays only
    Data data = uint64_t{0};

    static Value of_u8(uint8_t v);
    static Value of_i8(int8_t v);
    static Value of_u16(uint16_t v);
    static Value of_i16(int16_t v);
    static Value of_u32(uint32_t v);
    static Value of_i32(int32_t v);
    static Value of_u64(uint64_t v);
    static Value of_i64(int64_t v);
    static Value of_f32(float v);
    static Value of_f64(double v);
    static Value of_bool(bool v);
    static Value of_str(std::string v);
    // Arrays. `elem` must belong to the group of the vector (e.g. U8..U64 for unsigned).
    static Value of_unsigned_array(ValueType elem, std::vector<uint64_t> v);
    static Value of_signed_array(ValueType elem, std::vector<int64_t> v);
    static Value of_float_array(ValueType elem, std::vector<double> v);
    static Value of_str_array(std::vector<std::string> v);
    static Value of_arrays(std::vector<Value> arrays);  // each element an Array value
    static Value of_f32_array(const std::vector<float>& v);
    static Value of_i32_array(const std::vector<int32_t>& v);
    static Value of_u32_array(const std::vector<uint32_t>& v);

    bool is_array() const { return type == ValueType::Array; }
    size_t array_size() const;  // 0 for a non-array
};

// "u32", "string", "array[string]", "array[array]": the type as error messages name it.
std::string type_description(const Value& v);

struct KeyValue {
    std::string key;
    Value value;
};

// Human-readable value for `glimpse info`: arrays shortened to max_elems elements
// ("[1, 2, 3, ... 49194 items]"), strings quoted with C escapes and cut after max_chars
// bytes ("\"{% for m in ...\"... (1312 bytes)"), floats in their shortest exact form.
std::string format_value(const Value& v, size_t max_elems = 8, size_t max_chars = 120);

// The value as JSON: numbers, bools, strings (invalid UTF-8 replaced by U+FFFD so dump() never
// throws), arrays. An array longer than max_elems becomes
// {"type": "array[string]", "count": 49194, "head": [first max_elems elements]}.
nlohmann::json value_to_json(const Value& v, size_t max_elems = std::numeric_limits<size_t>::max());

// Limits the reader enforces on top of "fits in the bytes remaining".
constexpr uint64_t kMaxStringBytes = uint64_t{1} << 30;  // 1 GiB per string
constexpr int kMaxArrayDepth = 4;                        // array of array of array of array
constexpr size_t kMaxTensorName = 255;                   // reader; ggml itself allows 63
constexpr size_t kMaxWriterTensorName = 63;              // writer: what llama.cpp accepts
constexpr uint32_t kDefaultAlignment = 32;

// Transparent hashing so maps keyed by std::string can be searched with a string_view.
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using NameIndex = std::unordered_map<std::string, size_t, StringHash, std::equal_to<>>;

}  // namespace gguf

class GgufFile {
public:
    // mmap the file (MappedFile) and parse it; Error(BadInput) if it cannot be opened,
    // Error(Model, "path: ...") if it is not a valid GGUF file.
    static GgufFile open(const std::string& path);
    static GgufFile parse(std::shared_ptr<const MappedFile> file);
    // For fuzzers and tests: the caller keeps `data` alive as long as the GgufFile and its
    // tensors are used (tensors' `storage` is empty).
    static GgufFile parse_memory(const uint8_t* data, size_t size, const std::string& name);

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // file offset of the data section
    uint64_t file_size() const { return size_; }

    const std::vector<gguf::KeyValue>& metadata() const { return metadata_; }  // file order
    const gguf::Value* find(std::string_view key) const;  // nullptr if absent
    bool has(std::string_view key) const { return find(key) != nullptr; }

    // Typed accessors. Missing key, wrong type or a value that does not fit throw
    // Error(Model, "<path>: metadata key 'k' is missing" / "... has type string, expected an
    // integer" / "... value -1 out of range for u32"). Integer accessors take any integer
    // width whose value fits (gguf-py writes u32 where the docs say u64).
    uint32_t u32(std::string_view key) const;
    int32_t i32(std::string_view key) const;
    uint64_t u64(std::string_view key) const;
    int64_t i64(std::string_view key) const;
    float f32(std::string_view key) const;  // f32 or f64
    bool boolean(std::string_view key) const;
    std::string str(std::string_view key) const;
    // The *_or variants return `def` only when the key is absent; a wrong type still throws.
    uint32_t u32_or(std::string_view key, uint32_t def) const;
    int32_t i32_or(std::string_view key, int32_t def) const;
    uint64_t u64_or(std::string_view key, uint64_t def) const;
    float f32_or(std::string_view key, float def) const;
    bool boolean_or(std::string_view key, bool def) const;
    std::string str_or(std::string_view key, std::string def) const;
    // Arrays: str_array needs array[string]; f32_array array[f32|f64]; i32_array any integer
    // element type whose values fit in i32.
    std::vector<std::string> str_array(std::string_view key) const;
    const std::vector<std::string>& str_array_ref(std::string_view key) const;  // no copy
    std::vector<float> f32_array(std::string_view key) const;
    std::vector<int32_t> i32_array(std::string_view key) const;

    const std::vector<Tensor>& tensors() const { return tensors_; }  // file order
    const Tensor* find_tensor(std::string_view name) const;          // nullptr if absent
    const Tensor& tensor(std::string_view name) const;  // throws "<path>: tensor 'x' is missing"

private:
    GgufFile() = default;
    static GgufFile parse_bytes(const uint8_t* data, uint64_t size, std::string path,
                                std::shared_ptr<const MappedFile> keep);
    const gguf::Value& require(std::string_view key) const;
    [[noreturn]] void fail_type(std::string_view key, const gguf::Value& v, const char* expected) const;

    std::string path_;
    std::shared_ptr<const MappedFile> file_;  // empty for parse_memory
    uint64_t size_ = 0;
    uint32_t version_ = 0;
    uint64_t alignment_ = gguf::kDefaultAlignment;
    uint64_t data_offset_ = 0;
    std::vector<gguf::KeyValue> metadata_;
    gguf::NameIndex key_index_;
    std::vector<Tensor> tensors_;
    gguf::NameIndex tensor_index_;

    friend class GgufParser;
};

// Builds a GGUF v3 file: metadata in insertion order (setting a key again replaces its value in
// place), tensors in add order, each tensor's offset the padded end of the one before (the
// layout llama.cpp requires), every tensor padded to the alignment.
// Errors in what is added (bad name, shape, size or value) throw Error(Model, "gguf writer: ...").
class GgufWriter {
public:
    void set(std::string key, gguf::Value v);
    void set_u32(std::string key, uint32_t v) { set(std::move(key), gguf::Value::of_u32(v)); }
    void set_i32(std::string key, int32_t v) { set(std::move(key), gguf::Value::of_i32(v)); }
    void set_u64(std::string key, uint64_t v) { set(std::move(key), gguf::Value::of_u64(v)); }
    void set_f32(std::string key, float v) { set(std::move(key), gguf::Value::of_f32(v)); }
    void set_bool(std::string key, bool v) { set(std::move(key), gguf::Value::of_bool(v)); }
    void set_str(std::string key, std::string v) { set(std::move(key), gguf::Value::of_str(std::move(v))); }
    void set_str_array(std::string key, std::vector<std::string> v);
    void set_f32_array(std::string key, const std::vector<float>& v);
    void set_i32_array(std::string key, const std::vector<int32_t>& v);
    // Writes general.alignment (u32). Must be a power of two; without a call the alignment is 32
    // and the key is not written.
    void set_alignment(uint32_t a);
    uint32_t alignment() const { return alignment_; }

    // Copies `bytes` bytes from `data` (which must equal the contiguous size of the shape);
    // ne[i] for i >= n_dims must be 1.
    void add_tensor(std::string name, DType type, std::array<int64_t, 4> ne, int n_dims,
                    const void* data, size_t bytes);
    // References t's data without copying; t.storage keeps it alive until the writer dies.
    // t must be contiguous.
    void add_tensor(const Tensor& t);

    size_t tensor_count() const { return tensors_.size(); }
    const std::vector<gguf::KeyValue>& metadata() const { return metadata_; }

    // Writes path + ".tmp" and renames it over `path`; Error(BadInput, "path: cannot write ...")
    // on I/O failure (the .tmp file is removed).
    void write(const std::string& path) const;
    std::vector<uint8_t> to_bytes() const;  // the same bytes, in memory

private:
    struct PendingTensor {
        std::string name;
        DType type;
        std::array<int64_t, 4> ne;
        int n_dims;
        const uint8_t* data;
        uint64_t bytes;
        std::shared_ptr<const void> keep;  // owns `data` (a copy, or the source's storage)
    };
    using Sink = std::function<void(const void*, size_t)>;
    void emit(const Sink& put) const;
    void check_new_tensor(const std::string& name, DType type, const std::array<int64_t, 4>& ne,
                          int n_dims, uint64_t bytes) const;

    std::vector<gguf::KeyValue> metadata_;
    gguf::NameIndex key_index_;
    std::vector<PendingTensor> tensors_;
    gguf::NameIndex tensor_index_;
    uint32_t alignment_ = gguf::kDefaultAlignment;
};

}  // namespace glimpse
