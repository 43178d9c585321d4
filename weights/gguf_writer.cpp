// GGUF v3 writer. The layout matches what llama.cpp's gguf writer produces (and what its
// reader requires): tensor offsets contiguous in info order, each tensor padded to the
// alignment, the data section starting at the first aligned offset after the infos.
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "core/error.h"
#include "weights/gguf.h"

namespace glimpse {

namespace {

using gguf::Value;
using gguf::ValueType;

[[noreturn]] void writer_fail(const std::string& msg) { throw Error(ErrorKind::Model, "gguf writer: " + msg); }

// Which `Value::Data` alternative holds a scalar of type t (arrays: add 4).
enum Group : size_t { kUnsigned = 0, kSigned = 1, kFloat = 2, kString = 3, kArrayOf = 4 };

Group group_of(ValueType t) {
    switch (t) {
        case ValueType::U8: case ValueType::U16: case ValueType::U32: case ValueType::U64: case ValueType::Bool:
            return kUnsigned;
        case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64: return kSigned;
        case ValueType::F32: case ValueType::F64: return kFloat;
        case ValueType::String: return kString;
        case ValueType::Array: return kArrayOf;
    }
    writer_fail("value type id " + std::to_string(static_cast<uint32_t>(t)) + " is not a GGUF value type");
}

bool fits(ValueType t, uint64_t u) {
    switch (t) {
        case ValueType::U8: return u <= UINT8_MAX;
        case ValueType::U16: return u <= UINT16_MAX;
        case ValueType::U32: return u <= UINT32_MAX;
        case ValueType::Bool: return u <= 1;
        default: return true;
    }
}

bool fits(ValueType t, int64_t i) {
    switch (t) {
        case ValueType::I8: return i >= INT8_MIN && i <= INT8_MAX;
        case ValueType::I16: return i >= INT16_MIN && i <= INT16_MAX;
        case ValueType::I32: return i >= INT32_MIN && i <= INT32_MAX;
        default: return true;
    }
}

template <class T>
void check_range(const std::string& key, ValueType t, const T& x) {
    if (!fits(t, x))
        writer_fail("metadata key '" + key + "': value " + std::to_string(x) + " does not fit in " +
                    std::string(gguf::value_type_name(t)));
}

// A value must hold the variant alternative its type names, and every number must fit its width.
void check_value(const std::string& key, const Value& v, int depth) {
    const Group g = group_of(v.type);
    if (g != kArrayOf) {
        if (v.data.index() != g)
            writer_fail("metadata key '" + key + "': a " + std::string(gguf::value_type_name(v.type)) +
                        " value holds the wrong kind of data");
        if (const auto* u = std::get_if<uint64_t>(&v.data)) check_range(key, v.type, *u);
        if (const auto* i = std::get_if<int64_t>(&v.data)) check_range(key, v.type, *i);
        return;
    }
    if (depth + 1 > gguf::kMaxArrayDepth)
        writer_fail("metadata key '" + key + "': arrays nested deeper than " + std::to_string(gguf::kMaxArrayDepth) + " levels");
    const Group eg = group_of(v.elem_type);
    if (v.data.index() != kArrayOf + eg)
        writer_fail("metadata key '" + key + "': an " + gguf::type_description(v) + " value holds the wrong kind of data");
    if (const auto* us = std::get_if<std::vector<uint64_t>>(&v.data))
        for (uint64_t u : *us) check_range(key, v.elem_type, u);
    if (const auto* is = std::get_if<std::vector<int64_t>>(&v.data))
        for (int64_t i : *is) check_range(key, v.elem_type, i);
    if (const auto* as = std::get_if<std::vector<Value>>(&v.data))
        for (const Value& a : *as) {
            if (a.type != ValueType::Array) writer_fail("metadata key '" + key + "': an array[array] element is not an array");
            check_value(key, a, depth + 1);
        }
}

// Little-endian serialisation through a byte sink.
class Out {
public:
    explicit Out(const std::function<void(const void*, size_t)>& put) : put_(put) {}
    uint64_t pos() const { return pos_; }
    void bytes(const void* p, size_t n) {
        if (n) put_(p, n);
        pos_ += n;
    }
    template <class T>
    void le(T v) { bytes(&v, sizeof v); }
    void str(const std::string& s) {
        le<uint64_t>(s.size());
        bytes(s.data(), s.size());
    }
    void zeros(uint64_t n) {
        static const uint8_t z[64] = {};
        while (n) {
            const size_t k = n < sizeof z ? static_cast<size_t>(n) : sizeof z;
            bytes(z, k);
            n -= k;
        }
    }

    // One element of type t, held as the widened value x (uint64_t, int64_t or double).
    void scalar(ValueType t, uint64_t x) {
        switch (t) {
            case ValueType::U8: case ValueType::Bool: le<uint8_t>(static_cast<uint8_t>(x)); break;
            case ValueType::U16: le<uint16_t>(static_cast<uint16_t>(x)); break;
            case ValueType::U32: le<uint32_t>(static_cast<uint32_t>(x)); break;
            default: le<uint64_t>(x); break;
        }
    }
    void scalar(ValueType t, int64_t x) {
        switch (t) {
            case ValueType::I8: le<int8_t>(static_cast<int8_t>(x)); break;
            case ValueType::I16: le<int16_t>(static_cast<int16_t>(x)); break;
            case ValueType::I32: le<int32_t>(static_cast<int32_t>(x)); break;
            default: le<int64_t>(x); break;
        }
    }
    void scalar(ValueType t, double x) {
        if (t == ValueType::F32) le<float>(static_cast<float>(x));
        else le<double>(x);
    }
    void scalar(ValueType, const std::string& s) { str(s); }
    void scalar(ValueType, const Value& a) { array_body(a); }

    // Value without its type tag (the caller wrote that).
    void value(const Value& v) {
        if (v.type == ValueType::Array) return array_body(v);
        std::visit(
            [&](const auto& d) {
                using T = std::decay_t<decltype(d)>;
                if constexpr (std::is_same_v<T, uint64_t> || std::is_same_v<T, int64_t> ||
                              std::is_same_v<T, double> || std::is_same_v<T, std::string>)
                    scalar(v.type, d);
            },
            v.data);
    }
    // elem type, count, elements
    void array_body(const Value& v) {
        le<uint32_t>(static_cast<uint32_t>(v.elem_type));
        le<uint64_t>(v.array_size());
        std::visit(
            [&](const auto& d) {
                using T = std::decay_t<decltype(d)>;
                if constexpr (!std::is_same_v<T, uint64_t> && !std::is_same_v<T, int64_t> &&
                              !std::is_same_v<T, double> && !std::is_same_v<T, std::string>)
                    for (const auto& x : d) scalar(v.elem_type, x);
            },
            v.data);
    }

private:
    const std::function<void(const void*, size_t)>& put_;
    uint64_t pos_ = 0;
};

uint64_t padded(uint64_t n, uint64_t align) { return (n + align - 1) / align * align; }

}  // namespace

void GgufWriter::set(std::string key, gguf::Value v) {
    if (key.empty()) writer_fail("empty metadata key");
    check_value(key, v, 0);
    if (key == "general.alignment") {
        if (v.type != ValueType::U32 || !std::has_single_bit(std::get<uint64_t>(v.data)))
            writer_fail("general.alignment must be a u32 power of two");
        alignment_ = static_cast<uint32_t>(std::get<uint64_t>(v.data));
    }
    if (const auto it = key_index_.find(key); it != key_index_.end()) {
        metadata_[it->second].value = std::move(v);
        return;
    }
    key_index_.emplace(key, metadata_.size());
    metadata_.push_back({std::move(key), std::move(v)});
}

void GgufWriter::set_str_array(std::string key, std::vector<std::string> v) {
    set(std::move(key), Value::of_str_array(std::move(v)));
}
void GgufWriter::set_f32_array(std::string key, const std::vector<float>& v) { set(std::move(key), Value::of_f32_array(v)); }
void GgufWriter::set_i32_array(std::string key, const std::vector<int32_t>& v) { set(std::move(key), Value::of_i32_array(v)); }

void GgufWriter::set_alignment(uint32_t a) {
    if (!std::has_single_bit(a)) writer_fail("alignment " + std::to_string(a) + " is not a power of two");
    set("general.alignment", Value::of_u32(a));
}

void GgufWriter::check_new_tensor(const std::string& name, DType type, const std::array<int64_t, 4>& ne,
                                  int n_dims, uint64_t bytes) const {
    const std::string tn = "tensor '" + name + "'";
    if (name.empty()) writer_fail("empty tensor name");
    if (name.size() > gguf::kMaxWriterTensorName)
        writer_fail(tn + ": name is " + std::to_string(name.size()) + " bytes (llama.cpp allows at most 63)");
    if (tensor_index_.count(name)) writer_fail(tn + " added twice");
    if (n_dims < 1 || n_dims > kMaxDims) writer_fail(tn + ": n_dims " + std::to_string(n_dims) + " (expected 1 to 4)");
    for (int d = 0; d < kMaxDims; ++d) {
        if (ne[d] < 0) writer_fail(tn + ": negative dimension");
        if (d >= n_dims && ne[d] != 1) writer_fail(tn + ": ne[" + std::to_string(d) + "] must be 1 beyond n_dims");
    }
    std::array<uint64_t, kMaxDims> nb{};
    try {
        nb = contiguous_strides(type, ne);
    } catch (const std::invalid_argument& e) {
        writer_fail(tn + " (" + std::string(dtype_name(type)) + "): " + e.what());
    }
    const uint64_t expect = nb[3] * static_cast<uint64_t>(ne[3]);
    if (bytes != expect)
        writer_fail(tn + ": " + std::to_string(bytes) + " bytes given, the shape needs " + std::to_string(expect));
}

void GgufWriter::add_tensor(std::string name, DType type, std::array<int64_t, 4> ne, int n_dims,
                            const void* data, size_t bytes) {
    check_new_tensor(name, type, ne, n_dims, bytes);
    if (bytes && !data) writer_fail("tensor '" + name + "': no data");
    std::shared_ptr<uint8_t[]> copy(new uint8_t[bytes ? bytes : 1]);
    if (bytes) std::memcpy(copy.get(), data, bytes);
    const uint8_t* p = copy.get();
    tensor_index_.emplace(name, tensors_.size());
    tensors_.push_back({std::move(name), type, ne, n_dims, p, bytes, std::shared_ptr<const void>(copy, p)});
}

void GgufWriter::add_tensor(const Tensor& t) {
    if (!t.contiguous()) writer_fail("tensor '" + t.name + "' is not contiguous");
    check_new_tensor(t.name, t.dtype, t.ne, t.n_dims, t.bytes());
    if (t.bytes() && !t.data) writer_fail("tensor '" + t.name + "': no data");
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back({t.name, t.dtype, t.ne, t.n_dims, static_cast<const uint8_t*>(t.data), t.bytes(), t.storage});
}

void GgufWriter::emit(const Sink& put) const {
    Out out(put);
    out.le<uint32_t>(0x46554747);  // "GGUF"
    out.le<uint32_t>(3);
    out.le<uint64_t>(tensors_.size());
    out.le<uint64_t>(metadata_.size());
    for (const auto& kv : metadata_) {
        out.str(kv.key);
        out.le<uint32_t>(static_cast<uint32_t>(kv.value.type));
        out.value(kv.value);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        out.str(t.name);
        out.le<uint32_t>(static_cast<uint32_t>(t.n_dims));
        for (int d = 0; d < t.n_dims; ++d) out.le<uint64_t>(static_cast<uint64_t>(t.ne[d]));
        out.le<uint32_t>(static_cast<uint32_t>(t.type));
        out.le<uint64_t>(offset);
        offset += padded(t.bytes, alignment_);
    }
    out.zeros(padded(out.pos(), alignment_) - out.pos());
    for (const auto& t : tensors_) {
        out.bytes(t.data, t.bytes);
        out.zeros(padded(t.bytes, alignment_) - t.bytes);
    }
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
    std::vector<uint8_t> buf;
    emit([&](const void* p, size_t n) {
        const auto* b = static_cast<const uint8_t*>(p);
        buf.insert(buf.end(), b, b + n);
    });
    return buf;
}

void GgufWriter::write(const std::string& path) const {
    const std::string tmp = path + ".tmp";
    auto fail = [&](const std::string& what, int err) {
        std::error_code ec;
        std::filesystem::remove(tmp, ec);
        throw input_error(path, "cannot write: " + what + (err ? std::string(" (") + std::strerror(err) + ")" : ""));
    };
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) fail("cannot create " + tmp, errno);
        emit([&](const void* p, size_t n) {
            if (f) f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
        });
        f.close();
        if (!f) fail("writing " + tmp + " failed", errno);
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) fail("cannot rename " + tmp + ": " + ec.message(), 0);
}

}  // namespace glimpse
