// GGUF reader (layout in gguf.h and MODELS.md §2.2). Every read is checked against the bytes
// remaining, every count against what those bytes could possibly hold, and every size is
// overflow-checked, so a small hostile file can neither crash the reader nor make it allocate
// much more than its own size.
#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "core/error.h"
#include "weights/gguf.h"

namespace glimpse {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

namespace {

using gguf::Value;
using gguf::ValueType;

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kMaxInt64 = static_cast<uint64_t>(INT64_MAX);
// Smallest possible encodings, used to cap counts by the bytes left:
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;               // empty key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // 1-byte name, 1 dim
constexpr uint64_t kMinArrayBytes = 4 + 8;                // element type + count

// A name or key from the file, made safe for a one-line message: control and non-ASCII bytes
// escaped as \xNN, cut after `max` bytes.
std::string printable(std::string_view s, size_t max = 80) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < s.size() && i < max; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c >= 0x7f || c == '\'' || c == '\\') {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (s.size() > max) out += "...";
    return out;
}

// ggml type ids glimpse knows of but does not read (removed, or not implemented here).
std::string_view foreign_type_name(uint32_t id) {
    switch (id) {
        case 4: return "Q4_2, removed from ggml";
        case 5: return "Q4_3, removed from ggml";
        case 9: return "Q8_1";
        case 15: return "Q8_K";
        case 16: return "IQ2_XXS";
        case 17: return "IQ2_XS";
        case 18: return "IQ3_XXS";
        case 19: return "IQ1_S";
        case 20: return "IQ4_NL";
        case 21: return "IQ3_S";
        case 22: return "IQ2_S";
        case 23: return "IQ4_XS";
        case 29: return "IQ1_M";
        case 31: return "Q4_0_4_4, removed from ggml";
        case 32: return "Q4_0_4_8, removed from ggml";
        case 33: return "Q4_0_8_8, removed from ggml";
        case 34: return "TQ1_0";
        case 35: return "TQ2_0";
        case 36: return "IQ4_NL_4_4, removed from ggml";
        case 37: return "IQ4_NL_4_8, removed from ggml";
        case 38: return "IQ4_NL_8_8, removed from ggml";
        case 39: return "MXFP4";
        default: return {};
    }
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::F64); }

// Bounds-checked little-endian reads over [data, data + size).
class Cursor {
public:
    Cursor(const uint8_t* data, uint64_t size, const std::string& path) : data_(data), size_(size), path_(path) {}

    uint64_t pos() const { return pos_; }
    uint64_t left() const { return size_ - pos_; }

    // What is being read, for messages: "header", "metadata key 3 ('general.name')", ...
    void at(std::string what, std::string name = {}) {
        what_ = std::move(what);
        if (!name.empty()) what_ += " ('" + printable(name) + "')";
    }
    const std::string& where() const { return what_; }

    [[noreturn]] void fail(const std::string& msg) const { throw model_error(path_, msg); }

    void need(uint64_t n, const char* item) const {
        if (n > left())
            fail("truncated: " + what_ + " needs " + std::to_string(n) + " bytes for " + item +
                 " at offset " + std::to_string(pos_) + " but the file ends at " + std::to_string(size_));
    }

    template <class T>
    T read(const char* item) {
        need(sizeof(T), item);
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string read_string(const char* item) {
        const auto len = read<uint64_t>(item);
        need(len, item);
        if (len > gguf::kMaxStringBytes)
            fail(what_ + ": " + item + " is " + std::to_string(len) + " bytes long (glimpse's limit is 1 GiB)");
        std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
        pos_ += len;
        return s;
    }

private:
    const uint8_t* data_;
    uint64_t size_;
    uint64_t pos_ = 0;
    const std::string& path_;
    std::string what_ = "header";
};

uint64_t min_encoded_size(ValueType t) {
    if (t == ValueType::String) return 8;
    if (t == ValueType::Array) return kMinArrayBytes;
    return gguf::value_type_size(t);
}

}  // namespace

// Fills a GgufFile from bytes; one instance per parse.
class GgufParser {
public:
    GgufParser(const uint8_t* data, uint64_t size, GgufFile& out) : data_(data), cur_(data, size, out.path_), f_(out) {}

    void run() {
        read_header();
        read_metadata();
        read_alignment();
        read_tensor_infos();
        place_tensors();
    }

private:
    void read_header();
    void read_metadata();
    Value read_value(ValueType t, int depth);
    Value read_array(int depth);
    template <class T, class Wide>
    std::vector<Wide> read_scalars(uint64_t count);
    void read_alignment();
    void read_tensor_infos();
    Tensor read_tensor_info(uint64_t i, uint64_t& offset);
    void place_tensors();

    const uint8_t* data_;
    Cursor cur_;
    GgufFile& f_;
    uint64_t n_tensors_ = 0, n_kv_ = 0;
    std::vector<uint64_t> offsets_;  // per tensor, relative to the data section
};

void GgufParser::read_header() {
    if (f_.size_ < 4) {
        cur_.fail(f_.size_ == 0 ? "not a GGUF file (the file is empty)"
                                : "not a GGUF file (only " + std::to_string(f_.size_) + " bytes)");
    }
    const auto magic = cur_.read<uint32_t>("the magic");
    if (magic != kMagic) {
        const std::string_view m(reinterpret_cast<const char*>(data_), 4);
        cur_.fail("not a GGUF file (magic is '" + printable(m) + "', expected 'GGUF')");
    }
    f_.version_ = cur_.read<uint32_t>("the version");
    if (f_.version_ == 0x02000000 || f_.version_ == 0x03000000)
        cur_.fail("big-endian GGUF files are not supported (version field reads " + std::to_string(f_.version_) + ")");
    if (f_.version_ == 1)
        cur_.fail("unsupported GGUF version 1 (glimpse reads versions 2 and 3; re-convert the model with a current llama.cpp)");
    if (f_.version_ != 2 && f_.version_ != 3)
        cur_.fail("unsupported GGUF version " + std::to_string(f_.version_) + " (glimpse reads versions 2 and 3)");
    n_tensors_ = cur_.read<uint64_t>("the tensor count");
    n_kv_ = cur_.read<uint64_t>("the metadata count");
    if (n_kv_ > cur_.left() / kMinKvBytes)
        cur_.fail("truncated: the header declares " + std::to_string(n_kv_) + " metadata entries but the " +
                  std::to_string(cur_.left()) + " bytes left can hold at most " + std::to_string(cur_.left() / kMinKvBytes));
    if (n_tensors_ > cur_.left() / kMinTensorInfoBytes)
        cur_.fail("truncated: the header declares " + std::to_string(n_tensors_) + " tensors but the " +
                  std::to_string(cur_.left()) + " bytes left can hold at most " +
                  std::to_string(cur_.left() / kMinTensorInfoBytes));
}

void GgufParser::read_metadata() {
    f_.metadata_.reserve(n_kv_);
    for (uint64_t i = 0; i < n_kv_; ++i) {
        cur_.at("metadata entry " + std::to_string(i));
        std::string key = cur_.read_string("the key");
        cur_.at("metadata key " + std::to_string(i), key);
        if (const auto it = f_.key_index_.find(key); it != f_.key_index_.end())
            cur_.fail("duplicate metadata key '" + printable(key) + "' (entries " + std::to_string(it->second) +
                      " and " + std::to_string(i) + ")");
        const auto type = cur_.read<uint32_t>("the value type");
        if (!valid_value_type(type))
            cur_.fail(cur_.where() + " has unknown value type " + std::to_string(type) + " (known: 0 to 12)");
        Value v = read_value(static_cast<ValueType>(type), 0);
        f_.key_index_.emplace(key, f_.metadata_.size());
        f_.metadata_.push_back({std::move(key), std::move(v)});
    }
}

Value GgufParser::read_value(ValueType t, int depth) {
    switch (t) {
        case ValueType::U8: return Value::of_u8(cur_.read<uint8_t>("a u8 value"));
        case ValueType::I8: return Value::of_i8(cur_.read<int8_t>("an i8 value"));
        case ValueType::U16: return Value::of_u16(cur_.read<uint16_t>("a u16 value"));
        case ValueType::I16: return Value::of_i16(cur_.read<int16_t>("an i16 value"));
        case ValueType::U32: return Value::of_u32(cur_.read<uint32_t>("a u32 value"));
        case ValueType::I32: return Value::of_i32(cur_.read<int32_t>("an i32 value"));
        case ValueType::U64: return Value::of_u64(cur_.read<uint64_t>("a u64 value"));
        case ValueType::I64: return Value::of_i64(cur_.read<int64_t>("an i64 value"));
        case ValueType::F32: return Value::of_f32(cur_.read<float>("an f32 value"));
        case ValueType::F64: return Value::of_f64(cur_.read<double>("an f64 value"));
        case ValueType::Bool: {
            const auto b = cur_.read<uint8_t>("a bool value");
            if (b > 1) cur_.fail(cur_.where() + " has bool value " + std::to_string(b) + " (expected 0 or 1)");
            return Value::of_bool(b != 0);
        }
        case ValueType::String: return Value::of_str(cur_.read_string("a string value"));
        case ValueType::Array: return read_array(depth + 1);
    }
    cur_.fail(cur_.where() + " has unknown value type " + std::to_string(static_cast<uint32_t>(t)));
}

template <class T, class Wide>
std::vector<Wide> GgufParser::read_scalars(uint64_t count) {
    std::vector<Wide> v(count);
    for (auto& x : v) x = static_cast<Wide>(cur_.read<T>("an array element"));
    return v;
}

// `depth` counts array levels, 1 for a top-level array.
Value GgufParser::read_array(int depth) {
    if (depth > gguf::kMaxArrayDepth)
        cur_.fail(cur_.where() + " nests arrays deeper than " + std::to_string(gguf::kMaxArrayDepth) + " levels");
    const auto elem_id = cur_.read<uint32_t>("the array element type");
    if (!valid_value_type(elem_id))
        cur_.fail(cur_.where() + " has an array of unknown element type " + std::to_string(elem_id) + " (known: 0 to 12)");
    const auto elem = static_cast<ValueType>(elem_id);
    const auto count = cur_.read<uint64_t>("the array length");
    if (count > cur_.left() / min_encoded_size(elem))
        cur_.fail("truncated: " + cur_.where() + " has an array of " + std::to_string(count) + " " +
                  std::string(gguf::value_type_name(elem)) + " values at offset " + std::to_string(cur_.pos()) +
                  " but only " + std::to_string(cur_.left()) + " bytes are left");
    switch (elem) {
        case ValueType::U8: return Value::of_unsigned_array(elem, read_scalars<uint8_t, uint64_t>(count));
        case ValueType::U16: return Value::of_unsigned_array(elem, read_scalars<uint16_t, uint64_t>(count));
        case ValueType::U32: return Value::of_unsigned_array(elem, read_scalars<uint32_t, uint64_t>(count));
        case ValueType::U64: return Value::of_unsigned_array(elem, read_scalars<uint64_t, uint64_t>(count));
        case ValueType::I8: return Value::of_signed_array(elem, read_scalars<int8_t, int64_t>(count));
        case ValueType::I16: return Value::of_signed_array(elem, read_scalars<int16_t, int64_t>(count));
        case ValueType::I32: return Value::of_signed_array(elem, read_scalars<int32_t, int64_t>(count));
        case ValueType::I64: return Value::of_signed_array(elem, read_scalars<int64_t, int64_t>(count));
        case ValueType::F32: return Value::of_float_array(elem, read_scalars<float, double>(count));
        case ValueType::F64: return Value::of_float_array(elem, read_scalars<double, double>(count));
        case ValueType::Bool: {
            auto v = read_scalars<uint8_t, uint64_t>(count);
            for (uint64_t b : v)
                if (b > 1) cur_.fail(cur_.where() + " has a bool array element " + std::to_string(b) + " (expected 0 or 1)");
            return Value::of_unsigned_array(elem, std::move(v));
        }
        case ValueType::String: {
            std::vector<std::string> v(count);
            for (auto& s : v) s = cur_.read_string("an array string");
            return Value::of_str_array(std::move(v));
        }
        case ValueType::Array: {
            std::vector<Value> v;
            v.reserve(count);
            for (uint64_t i = 0; i < count; ++i) v.push_back(read_value(ValueType::Array, depth));
            return Value::of_arrays(std::move(v));
        }
    }
    cur_.fail(cur_.where() + " has an array of unknown element type " + std::to_string(elem_id));
}

void GgufParser::read_alignment() {
    const Value* a = f_.find("general.alignment");
    if (!a) return;
    if (a->type != ValueType::U32)
        cur_.fail("metadata key 'general.alignment' has type " + gguf::type_description(*a) + ", expected u32");
    const uint64_t v = std::get<uint64_t>(a->data);
    if (!std::has_single_bit(v))
        cur_.fail("metadata key 'general.alignment' is " + std::to_string(v) + " (expected a power of two)");
    f_.alignment_ = v;
}

void GgufParser::read_tensor_infos() {
    f_.tensors_.reserve(n_tensors_);
    offsets_.reserve(n_tensors_);
    for (uint64_t i = 0; i < n_tensors_; ++i) {
        uint64_t offset = 0;
        Tensor t = read_tensor_info(i, offset);
        if (const auto it = f_.tensor_index_.find(t.name); it != f_.tensor_index_.end())
            cur_.fail("duplicate tensor name '" + printable(t.name) + "' (tensor infos " + std::to_string(it->second) +
                      " and " + std::to_string(i) + ")");
        f_.tensor_index_.emplace(t.name, f_.tensors_.size());
        f_.tensors_.push_back(std::move(t));
        offsets_.push_back(offset);
    }
    // The data section starts at the next multiple of the alignment after the infos.
    const uint64_t pad = (f_.alignment_ - cur_.pos() % f_.alignment_) % f_.alignment_;
    f_.data_offset_ = cur_.pos() + pad;  // pos <= file size, pad < 2^32: no overflow
}

// One tensor info: name, n_dims, ne[n_dims], type, offset. Checks the shape and type and
// computes the strides; the data position is checked later in place_tensors().
Tensor GgufParser::read_tensor_info(uint64_t i, uint64_t& offset) {
    cur_.at("tensor info " + std::to_string(i));
    Tensor t;
    t.name = cur_.read_string("the tensor name");
    if (t.name.empty()) cur_.fail(cur_.where() + " has an empty name");
    if (t.name.size() > gguf::kMaxTensorName)
        cur_.fail(cur_.where() + " has a name of " + std::to_string(t.name.size()) + " bytes ('" +
                  printable(t.name, 40) + "'; at most " + std::to_string(gguf::kMaxTensorName) + ")");
    cur_.at("tensor info " + std::to_string(i), t.name);
    const std::string tn = "tensor '" + printable(t.name) + "'";
    const auto n_dims = cur_.read<uint32_t>("n_dims");
    if (n_dims < 1 || n_dims > kMaxDims)
        cur_.fail(tn + " has n_dims " + std::to_string(n_dims) + " (expected 1 to 4)");
    t.n_dims = static_cast<int>(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
        const auto ne = cur_.read<uint64_t>("a dimension");
        if (ne > kMaxInt64)
            cur_.fail(tn + " has ne[" + std::to_string(d) + "] = " + std::to_string(ne) + " (negative as int64)");
        t.ne[d] = static_cast<int64_t>(ne);
    }
    const auto type_id = cur_.read<uint32_t>("the tensor type");
    offset = cur_.read<uint64_t>("the data offset");

    const auto info = dtype_info(type_id);
    if (!info) {
        const auto known = foreign_type_name(type_id);
        cur_.fail(tn + " has unsupported tensor type id " + std::to_string(type_id) +
                  (known.empty() ? " (not a ggml type glimpse knows)" : " (" + std::string(known) + ")"));
    }
    t.dtype = info->type;
    uint64_t numel = 1;
    for (int d = 0; d < kMaxDims; ++d)
        if (__builtin_mul_overflow(numel, static_cast<uint64_t>(t.ne[d]), &numel) || numel > kMaxInt64)
            cur_.fail(tn + " shape " + t.shape_string() + " has more than 2^63-1 elements");
    if (t.ne[0] % info->block_elems != 0)
        cur_.fail(tn + " (" + std::string(info->name) + ") has ne[0] = " + std::to_string(t.ne[0]) +
                  ", not a multiple of the block size " + std::to_string(info->block_elems));
    // numel < 2^63 and at most 8 bytes per element could still overflow u64 bytes.
    const auto row = dtype_row_bytes(t.dtype, static_cast<uint64_t>(t.ne[0]));  // nullopt: overflow
    uint64_t bytes = row.value_or(0);
    bool overflow = !row;
    for (int d = 1; d < kMaxDims; ++d)
        overflow = overflow || __builtin_mul_overflow(bytes, static_cast<uint64_t>(t.ne[d]), &bytes);
    if (overflow) cur_.fail(tn + " shape " + t.shape_string() + " is more than 2^64 bytes");
    try {
        t.nb = contiguous_strides(t.dtype, t.ne);  // cannot fail after the checks above
    } catch (const std::invalid_argument& e) {
        cur_.fail(tn + " shape " + t.shape_string() + ": " + e.what());
    }
    if (offset % f_.alignment_ != 0)
        cur_.fail(tn + " data offset " + std::to_string(offset) + " is not a multiple of the alignment " +
                  std::to_string(f_.alignment_));
    return t;
}

// Checks every tensor's bytes lie inside the file and no two overlap, then points the views
// into the mapping.
void GgufParser::place_tensors() {
    if (f_.tensors_.empty()) return;
    if (f_.data_offset_ > f_.size_)
        cur_.fail("truncated: the data section starts at offset " + std::to_string(f_.data_offset_) +
                  " but the file ends at " + std::to_string(f_.size_));
    const uint64_t avail = f_.size_ - f_.data_offset_;
    for (size_t i = 0; i < f_.tensors_.size(); ++i) {
        const Tensor& t = f_.tensors_[i];
        const uint64_t bytes = t.bytes();
        if (offsets_[i] > avail || bytes > avail - offsets_[i])
            cur_.fail("truncated: tensor '" + printable(t.name) + "' needs " + std::to_string(bytes) +
                      " bytes at data offset " + std::to_string(offsets_[i]) + " but the data section holds only " +
                      std::to_string(avail) + " bytes (file offset " + std::to_string(f_.data_offset_) + ")");
    }
    std::vector<size_t> order(f_.tensors_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return offsets_[a] < offsets_[b]; });
    size_t prev = SIZE_MAX;  // last non-empty tensor in offset order
    for (size_t i : order) {
        if (f_.tensors_[i].bytes() == 0) continue;
        if (prev != SIZE_MAX) {
            const uint64_t prev_end = offsets_[prev] + f_.tensors_[prev].bytes();  // <= avail
            if (offsets_[i] < prev_end)
                cur_.fail("tensors '" + printable(f_.tensors_[prev].name) + "' and '" + printable(f_.tensors_[i].name) +
                          "' overlap (data offsets " + std::to_string(offsets_[prev]) + ".." + std::to_string(prev_end) +
                          " and " + std::to_string(offsets_[i]) + "..)");
        }
        prev = i;
    }
    for (size_t i = 0; i < f_.tensors_.size(); ++i) {
        Tensor& t = f_.tensors_[i];
        t.data = data_ + f_.data_offset_ + offsets_[i];
        if (f_.file_) t.storage = std::shared_ptr<const void>(f_.file_, t.data);
    }
}

// ---- GgufFile ---------------------------------------------------------------------------

GgufFile GgufFile::open(const std::string& path) { return parse(MappedFile::open(path)); }

GgufFile GgufFile::parse(std::shared_ptr<const MappedFile> file) {
    if (!file) throw std::invalid_argument("GgufFile::parse: null file");
    const uint8_t* data = file->data();
    const uint64_t size = file->size();
    std::string path = file->path();
    return parse_bytes(data, size, std::move(path), std::move(file));
}

GgufFile GgufFile::parse_memory(const uint8_t* data, size_t size, const std::string& name) {
    return parse_bytes(data, size, name, nullptr);
}

GgufFile GgufFile::parse_bytes(const uint8_t* data, uint64_t size, std::string path,
                               std::shared_ptr<const MappedFile> keep) {
    GgufFile f;
    f.path_ = std::move(path);
    f.file_ = std::move(keep);
    f.size_ = size;
    GgufParser(data, size, f).run();
    return f;
}

const gguf::Value* GgufFile::find(std::string_view key) const {
    const auto it = key_index_.find(key);
    return it == key_index_.end() ? nullptr : &metadata_[it->second].value;
}

const gguf::Value& GgufFile::require(std::string_view key) const {
    const gguf::Value* v = find(key);
    if (!v) throw model_error(path_, "metadata key '" + printable(key) + "' is missing");
    return *v;
}

void GgufFile::fail_type(std::string_view key, const gguf::Value& v, const char* expected) const {
    throw model_error(path_, "metadata key '" + printable(key) + "' has type " + gguf::type_description(v) +
                                 ", expected " + expected);
}

namespace {

// An integer stored as uint64_t or int64_t, converted to T if it fits; `what` is the
// error-message prefix ("metadata key 'k'" or "metadata key 'k' element 3").
template <class T>
T integer_as(const std::string& path, const std::string& what, const Value::Data& d, const char* tname) {
    if (const auto* u = std::get_if<uint64_t>(&d)) {
        if (std::in_range<T>(*u)) return static_cast<T>(*u);
        throw model_error(path, what + " value " + std::to_string(*u) + " out of range for " + tname);
    }
    const int64_t i = std::get<int64_t>(d);
    if (std::in_range<T>(i)) return static_cast<T>(i);
    throw model_error(path, what + " value " + std::to_string(i) + " out of range for " + tname);
}

template <class T>
T scalar_integer(const GgufFile& f, std::string_view key, const Value& v, const char* tname) {
    return integer_as<T>(f.path(), "metadata key '" + printable(key) + "'", v.data, tname);
}

}  // namespace

uint32_t GgufFile::u32(std::string_view key) const {
    const gguf::Value& v = require(key);
    if (!gguf::is_integer_type(v.type)) fail_type(key, v, "an integer");
    return scalar_integer<uint32_t>(*this, key, v, "u32");
}
int32_t GgufFile::i32(std::string_view key) const {
    const gguf::Value& v = require(key);
    if (!gguf::is_integer_type(v.type)) fail_type(key, v, "an integer");
    return scalar_integer<int32_t>(*this, key, v, "i32");
}
uint64_t GgufFile::u64(std::string_view key) const {
    const gguf::Value& v = require(key);
    if (!gguf::is_integer_type(v.type)) fail_type(key, v, "an integer");
    return scalar_integer<uint64_t>(*this, key, v, "u64");
}
int64_t GgufFile::i64(std::string_view key) const {
    const gguf::Value& v = require(key);
    if (!gguf::is_integer_type(v.type)) fail_type(key, v, "an integer");
    return scalar_integer<int64_t>(*this, key, v, "i64");
}
uint32_t GgufFile::u32_or(std::string_view key, uint32_t def) const { return has(key) ? u32(key) : def; }
int32_t GgufFile::i32_or(std::string_view key, int32_t def) const { return has(key) ? i32(key) : def; }
uint64_t GgufFile::u64_or(std::string_view key, uint64_t def) const { return has(key) ? u64(key) : def; }

float GgufFile::f32(std::string_view key) const {
    const gguf::Value& v = require(key);
    if (!gguf::is_float_type(v.type)) fail_type(key, v, "f32 or f64");
    return static_cast<float>(std::get<double>(v.data));
}
float GgufFile::f32_or(std::string_view key, float def) const { return has(key) ? f32(key) : def; }

bool GgufFile::boolean(std::string_view key) const {
    const gguf::Value& v = require(key);
    if (v.type != ValueType::Bool) fail_type(key, v, "bool");
    return std::get<uint64_t>(v.data) != 0;
}
bool GgufFile::boolean_or(std::string_view key, bool def) const { return has(key) ? boolean(key) : def; }

std::string GgufFile::str(std::string_view key) const {
    const gguf::Value& v = require(key);
    if (v.type != ValueType::String) fail_type(key, v, "string");
    return std::get<std::string>(v.data);
}
std::string GgufFile::str_or(std::string_view key, std::string def) const {
    return has(key) ? str(key) : std::move(def);
}

const std::vector<std::string>& GgufFile::str_array_ref(std::string_view key) const {
    const gguf::Value& v = require(key);
    if (v.type != ValueType::Array || v.elem_type != ValueType::String) fail_type(key, v, "array[string]");
    return std::get<std::vector<std::string>>(v.data);
}
std::vector<std::string> GgufFile::str_array(std::string_view key) const { return str_array_ref(key); }

std::vector<float> GgufFile::f32_array(std::string_view key) const {
    const gguf::Value& v = require(key);
    if (v.type != ValueType::Array || !gguf::is_float_type(v.elem_type)) fail_type(key, v, "array[f32]");
    const auto& d = std::get<std::vector<double>>(v.data);
    std::vector<float> out(d.size());
    for (size_t i = 0; i < d.size(); ++i) out[i] = static_cast<float>(d[i]);
    return out;
}

std::vector<int32_t> GgufFile::i32_array(std::string_view key) const {
    const gguf::Value& v = require(key);
    if (v.type != ValueType::Array || !gguf::is_integer_type(v.elem_type)) fail_type(key, v, "array[i32]");
    const std::string what = "metadata key '" + printable(key) + "' element ";
    std::vector<int32_t> out(v.array_size());
    for (size_t i = 0; i < out.size(); ++i) {
        const Value::Data elem = std::holds_alternative<std::vector<uint64_t>>(v.data)
                                     ? Value::Data(std::get<std::vector<uint64_t>>(v.data)[i])
                                     : Value::Data(std::get<std::vector<int64_t>>(v.data)[i]);
        out[i] = integer_as<int32_t>(path_, what + std::to_string(i), elem, "i32");
    }
    return out;
}

const Tensor* GgufFile::find_tensor(std::string_view name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const Tensor& GgufFile::tensor(std::string_view name) const {
    const Tensor* t = find_tensor(name);
    if (!t) throw model_error(path_, "tensor '" + printable(name) + "' is missing");
    return *t;
}

}  // namespace glimpse
