#include "weights/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace glimpse {

namespace {

using json = nlohmann::json;

// The dtypes glimpse reads from safetensors, by their names in the format.
struct StDType {
    std::string_view name;
    DType type;
};
constexpr StDType kStDTypes[] = {
    {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F64", DType::F64},
    {"I64", DType::I64}, {"I32", DType::I32}, {"I16", DType::I16},   {"I8", DType::I8},
};

// A shape whose product (zeros counted as ones) exceeds this is refused even for an empty
// tensor, so that numel(), strides and byte sizes computed by anyone later cannot overflow.
constexpr uint64_t kMaxNominalElems = 1ull << 48;

// Valid headers nest at most {name: {"shape": [..]}}: an object/array opening deeper than
// this is hostile (and would make the DOM arbitrarily deep).
constexpr int kMaxJsonDepth = 2;

uint64_t read_u64_le(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// Parses the header JSON, rejecting duplicate keys in any object and nesting deeper than a
// real header has. nlohmann's own parse errors become one-line Model errors.
json parse_header_json(const char* begin, const char* end, const std::string& path) {
    std::vector<std::set<std::string>> open_objects;
    std::string problem;
    auto callback = [&](int depth, json::parse_event_t ev, json& parsed) {
        switch (ev) {
        case json::parse_event_t::object_start:
        case json::parse_event_t::array_start:
            if (depth > kMaxJsonDepth) {
                problem = "header JSON is nested deeper than a safetensors header can be";
                throw std::runtime_error(problem);
            }
            if (ev == json::parse_event_t::object_start) open_objects.emplace_back();
            break;
        case json::parse_event_t::object_end:
            if (!open_objects.empty()) open_objects.pop_back();
            break;
        case json::parse_event_t::key:
            if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second) {
                problem = "header JSON repeats the key \"" + message_safe(parsed.get<std::string>()) +
                          "\" in one object";
                throw std::runtime_error(problem);
            }
            break;
        default:
            break;
        }
        return true;
    };
    try {
        return json::parse(begin, end, callback);
    } catch (const json::parse_error& e) {
        throw model_error(path, "header is not valid JSON (error at byte " + std::to_string(e.byte) +
                                    " of the header; the file is corrupt or not safetensors)");
    } catch (const json::exception& e) {
        throw model_error(path, "header JSON cannot be read: " + message_safe(e.what()));
    } catch (const std::runtime_error&) {
        if (problem.empty()) throw;
        throw model_error(path, problem + " (the file is corrupt or not safetensors)");
    }
}

DType parse_dtype(const json& v, const std::string& path, const std::string& tname) {
    if (!v.is_string()) throw model_error(path, "tensor \"" + tname + "\": dtype is not a string");
    const auto& s = v.get_ref<const std::string&>();
    for (const auto& d : kStDTypes)
        if (d.name == s) return d.type;
    throw model_error(path, "tensor \"" + tname + "\" has dtype \"" + message_safe(s) +
                                "\", which glimpse does not support (supported: F32, F16, BF16, "
                                "F64, I64, I32, I16, I8)");
}

// shape (outermost first) -> ggml ne (innermost first); returns n_dims.
int parse_shape(const json& v, const std::string& path, const std::string& tname,
                std::array<int64_t, kMaxDims>& ne) {
    if (!v.is_array()) throw model_error(path, "tensor \"" + tname + "\": shape is not an array");
    if (v.size() > size_t(kMaxDims))
        throw model_error(path, "tensor \"" + tname + "\" has " + std::to_string(v.size()) +
                                    " dimensions (glimpse supports at most 4)");
    ne = {1, 1, 1, 1};
    uint64_t nominal = 1;
    const size_t n = v.size();
    for (size_t i = 0; i < n; ++i) {
        const json& d = v[i];
        if (!d.is_number_unsigned())
            throw model_error(path, "tensor \"" + tname + "\": shape entry " + std::to_string(i) +
                                        " is not a non-negative integer");
        const uint64_t dim = d.get<uint64_t>();
        const uint64_t counted = dim ? dim : 1;
        if (counted > kMaxNominalElems / nominal)
            throw model_error(path, "tensor \"" + tname + "\": shape " + message_safe(v.dump()) +
                                        " is impossibly large (the header is corrupt)");
        nominal *= counted;
        ne[n - 1 - i] = static_cast<int64_t>(dim);
    }
    return n == 0 ? 1 : static_cast<int>(n);
}

struct Offsets {
    uint64_t begin, end;
};

Offsets parse_offsets(const json& v, const std::string& path, const std::string& tname) {
    if (!v.is_array() || v.size() != 2 || !v[0].is_number_unsigned() || !v[1].is_number_unsigned())
        throw model_error(path, "tensor \"" + tname +
                                    "\": data_offsets must be [begin, end], two non-negative integers");
    return {v[0].get<uint64_t>(), v[1].get<uint64_t>()};
}

std::map<std::string, std::string> parse_metadata(const json& v, const std::string& path) {
    if (!v.is_object()) throw model_error(path, "__metadata__ is not an object of strings");
    std::map<std::string, std::string> out;
    for (const auto& [k, val] : v.items()) {
        if (!val.is_string())
            throw model_error(path, "__metadata__ key \"" + message_safe(k) +
                                        "\" is not a string (metadata must map strings to strings)");
        out.emplace(k, val.get<std::string>());
    }
    return out;
}

// One header entry -> a view at data_base + begin, after checking it against the data size.
Tensor parse_entry(const std::string& key, const json& e, const uint8_t* data_base, uint64_t data_size,
                   uint64_t data_file_offset, const std::string& path) {
    const std::string tname = message_safe(key);
    if (!e.is_object())
        throw model_error(path, "tensor \"" + tname + "\": entry is not an object");
    if (e.size() != 3 || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
        throw model_error(path, "tensor \"" + tname +
                                    "\": entry must have exactly the keys dtype, shape, data_offsets");
    Tensor t;
    t.name = key;
    t.dtype = parse_dtype(e.at("dtype"), path, tname);
    t.n_dims = parse_shape(e.at("shape"), path, tname, t.ne);
    const Offsets off = parse_offsets(e.at("data_offsets"), path, tname);
    if (off.begin > off.end || off.end > data_size)
        throw model_error(path, "tensor \"" + tname + "\": data_offsets [" + std::to_string(off.begin) +
                                    ", " + std::to_string(off.end) + "] lie outside the " +
                                    std::to_string(data_size) + " data bytes (truncated or corrupt file)");
    // parse_shape bounded the nominal element count by 2^48, so this cannot overflow.
    t.nb = contiguous_strides(t.dtype, t.ne);
    const uint64_t want = t.bytes();
    if (off.end - off.begin != want)
        throw model_error(path, "tensor \"" + tname + "\": shape " + e.at("shape").dump() + " of " +
                                    std::string(dtype_name(t.dtype)) + " needs " + std::to_string(want) +
                                    " bytes but data_offsets span " + std::to_string(off.end - off.begin) +
                                    " (the header is corrupt)");
    t.data = data_base + off.begin;
    const uint64_t elem = dtype_info(t.dtype).block_bytes;
    if (want > 0 && reinterpret_cast<uintptr_t>(t.data) % elem != 0)
        throw model_error(path, "tensor \"" + tname + "\" starts at file offset " +
                                    std::to_string(data_file_offset + off.begin) +
                                    ", not a multiple of its " + std::to_string(elem) +
                                    "-byte elements (re-save the file with the safetensors library)");
    return t;
}

uint64_t data_offset_of(const Tensor& t, const uint8_t* data_base) {
    return static_cast<uint64_t>(static_cast<const uint8_t*>(t.data) - data_base);
}

}  // namespace

std::string message_safe(std::string_view s, size_t max_chars) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        if (out.size() >= max_chars) return out + "...";
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

std::string_view safetensors_dtype_name(DType t) {
    for (const auto& d : kStDTypes)
        if (d.type == t) return d.name;
    return {};
}

SafetensorsFile SafetensorsFile::open(const std::string& path) { return parse(MappedFile::open(path)); }

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<const MappedFile> file) {
    const uint8_t* data = file->data();
    const uint64_t size = file->size();
    const std::string path = file->path();
    return parse_bytes(data, size, path, std::shared_ptr<const void>(file, data));
}

SafetensorsFile SafetensorsFile::parse_memory(const uint8_t* data, size_t size, const std::string& name) {
    return parse_bytes(data, size, name, nullptr);
}

SafetensorsFile SafetensorsFile::parse_bytes(const uint8_t* data, uint64_t size, const std::string& path,
                                             std::shared_ptr<const void> storage) {
    if (size < 8)
        throw model_error(path, "file is " + std::to_string(size) +
                                    " bytes, too short for a safetensors header (truncated or not safetensors)");
    const uint64_t header_len = read_u64_le(data);
    if (header_len > size - 8)
        throw model_error(path, "header length " + std::to_string(header_len) + " exceeds the file's " +
                                    std::to_string(size - 8) + " remaining bytes (truncated or not safetensors)");
    if (header_len > kSafetensorsMaxHeaderBytes)
        throw model_error(path, "header length " + std::to_string(header_len) + " is over the " +
                                    std::to_string(kSafetensorsMaxHeaderBytes >> 20) +
                                    " MiB limit (corrupt or not safetensors)");
    const char* hb = reinterpret_cast<const char*>(data + 8);
    const json header = parse_header_json(hb, hb + header_len, path);
    if (!header.is_object()) throw model_error(path, "header JSON is not an object (corrupt or not safetensors)");

    SafetensorsFile f;
    f.path_ = path;
    f.header_bytes_ = header_len;
    const uint8_t* data_base = data + 8 + header_len;
    const uint64_t data_size = size - 8 - header_len;
    for (const auto& [key, entry] : header.items()) {
        if (key == "__metadata__") {
            f.metadata_ = parse_metadata(entry, path);
            continue;
        }
        Tensor t = parse_entry(key, entry, data_base, data_size, 8 + header_len, path);
        t.storage = storage;
        f.tensors_.push_back(std::move(t));
    }
    std::sort(f.tensors_.begin(), f.tensors_.end(), [&](const Tensor& a, const Tensor& b) {
        const uint64_t oa = data_offset_of(a, data_base), ob = data_offset_of(b, data_base);
        return oa != ob ? oa < ob : a.name < b.name;
    });
    // Sorted by begin, non-empty tensors must not reach into the next one.
    uint64_t prev_end = 0;
    const Tensor* prev = nullptr;
    for (const Tensor& t : f.tensors_) {
        if (t.bytes() == 0) continue;
        const uint64_t begin = data_offset_of(t, data_base);
        if (prev && begin < prev_end)
            throw model_error(path, "tensors \"" + message_safe(prev->name) + "\" and \"" + message_safe(t.name) +
                                        "\" overlap in the data section (the header is corrupt)");
        prev_end = begin + t.bytes();
        prev = &t;
    }
    for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
    return f;
}

const Tensor* SafetensorsFile::find_tensor(std::string_view name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

const Tensor& SafetensorsFile::tensor(std::string_view name) const {
    if (const Tensor* t = find_tensor(name)) return *t;
    throw model_error(path_, "no tensor named \"" + message_safe(name) + "\"");
}

// ---- writer ----

namespace {

// The JSON header text, padded with spaces to a multiple of 8 so the data starts aligned.
std::string header_text(const std::string& path, const std::vector<const Tensor*>& order,
                        const std::map<std::string, std::string>& metadata) {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        auto& m = h["__metadata__"];
        m = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) m[k] = v;
    }
    uint64_t offset = 0;
    std::set<std::string_view> names;
    for (const Tensor* t : order) {
        if (t->name == "__metadata__" || !names.insert(t->name).second)
            throw model_error(path, "cannot write two tensors named \"" + message_safe(t->name) + "\"");
        nlohmann::ordered_json shape = nlohmann::ordered_json::array();
        for (int i = t->n_dims - 1; i >= 0; --i) shape.push_back(t->ne[i]);
        auto& e = h[t->name];
        e["dtype"] = std::string(safetensors_dtype_name(t->dtype));
        e["shape"] = shape;
        e["data_offsets"] = {offset, offset + t->bytes()};
        offset += t->bytes();
    }
    std::string text = h.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
}

void check_writable(const std::string& path, const Tensor& t) {
    const std::string n = message_safe(t.name);
    if (safetensors_dtype_name(t.dtype).empty())
        throw model_error(path, "tensor \"" + n + "\" has type " + std::string(dtype_name(t.dtype)) +
                                    ", which safetensors cannot store (dequantize it first)");
    if (t.n_dims < 1 || t.n_dims > kMaxDims)
        throw model_error(path, "tensor \"" + n + "\" has n_dims " + std::to_string(t.n_dims));
    for (int i = t.n_dims; i < kMaxDims; ++i)
        if (t.ne[i] != 1)
            throw model_error(path, "tensor \"" + n + "\" has ne[" + std::to_string(i) + "] = " +
                                        std::to_string(t.ne[i]) + " beyond its n_dims");
    bool contiguous = false;
    try {
        contiguous = t.contiguous();
    } catch (const std::invalid_argument&) {
    }
    if (!contiguous) throw model_error(path, "tensor \"" + n + "\" is not contiguous");
    if (t.bytes() > 0 && !t.data) throw model_error(path, "tensor \"" + n + "\" has no data");
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    std::vector<const Tensor*> order;
    for (const Tensor& t : tensors) {
        check_writable(path, t);
        order.push_back(&t);
    }
    std::stable_sort(order.begin(), order.end(), [](const Tensor* a, const Tensor* b) {
        return dtype_info(a->dtype).block_bytes > dtype_info(b->dtype).block_bytes;
    });
    const std::string header = header_text(path, order, metadata);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw input_error(path, "cannot create the file");
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t(header.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const Tensor* t : order)
        if (t->bytes() > 0)
            out.write(static_cast<const char*>(t->data), static_cast<std::streamsize>(t->bytes()));
    out.close();
    if (!out) throw input_error(path, "writing failed (disk full?)");
}

}  // namespace glimpse
