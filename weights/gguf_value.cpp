// GGUF metadata values: type names, factories, and the two printable forms (text for
// `glimpse info`, JSON for `--json`).
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "weights/gguf.h"

namespace glimpse::gguf {

std::string_view value_type_name(ValueType t) {
    switch (t) {
        case ValueType::U8: return "u8";
        case ValueType::I8: return "i8";
        case ValueType::U16: return "u16";
        case ValueType::I16: return "i16";
        case ValueType::U32: return "u32";
        case ValueType::I32: return "i32";
        case ValueType::F32: return "f32";
        case ValueType::Bool: return "bool";
        case ValueType::String: return "string";
        case ValueType::Array: return "array";
        case ValueType::U64: return "u64";
        case ValueType::I64: return "i64";
        case ValueType::F64: return "f64";
    }
    return "unknown";
}

size_t value_type_size(ValueType t) {
    switch (t) {
        case ValueType::U8: case ValueType::I8: case ValueType::Bool: return 1;
        case ValueType::U16: case ValueType::I16: return 2;
        case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
        case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
        case ValueType::String: case ValueType::Array: return 0;
    }
    return 0;
}

bool is_integer_type(ValueType t) {
    switch (t) {
        case ValueType::U8: case ValueType::I8: case ValueType::U16: case ValueType::I16:
        case ValueType::U32: case ValueType::I32: case ValueType::U64: case ValueType::I64:
            return true;
        default: return false;
    }
}

bool is_float_type(ValueType t) { return t == ValueType::F32 || t == ValueType::F64; }

namespace {

Value scalar(ValueType t, Value::Data d) {
    Value v;
    v.type = t;
    v.data = std::move(d);
    return v;
}

Value array(ValueType elem, Value::Data d) {
    Value v;
    v.type = ValueType::Array;
    v.elem_type = elem;
    v.data = std::move(d);
    return v;
}

}  // namespace

Value Value::of_u8(uint8_t v) { return scalar(ValueType::U8, uint64_t{v}); }
Value Value::of_i8(int8_t v) { return scalar(ValueType::I8, int64_t{v}); }
Value Value::of_u16(uint16_t v) { return scalar(ValueType::U16, uint64_t{v}); }
Value Value::of_i16(int16_t v) { return scalar(ValueType::I16, int64_t{v}); }
Value Value::of_u32(uint32_t v) { return scalar(ValueType::U32, uint64_t{v}); }
Value Value::of_i32(int32_t v) { return scalar(ValueType::I32, int64_t{v}); }
Value Value::of_u64(uint64_t v) { return scalar(ValueType::U64, v); }
Value Value::of_i64(int64_t v) { return scalar(ValueType::I64, v); }
Value Value::of_f32(float v) { return scalar(ValueType::F32, double{v}); }
Value Value::of_f64(double v) { return scalar(ValueType::F64, v); }
Value Value::of_bool(bool v) { return scalar(ValueType::Bool, uint64_t{v ? 1u : 0u}); }
Value Value::of_str(std::string v) { return scalar(ValueType::String, std::move(v)); }

Value Value::of_unsigned_array(ValueType elem, std::vector<uint64_t> v) { return array(elem, std::move(v)); }
Value Value::of_signed_array(ValueType elem, std::vector<int64_t> v) { return array(elem, std::move(v)); }
Value Value::of_float_array(ValueType elem, std::vector<double> v) { return array(elem, std::move(v)); }
Value Value::of_str_array(std::vector<std::string> v) { return array(ValueType::String, std::move(v)); }
Value Value::of_arrays(std::vector<Value> arrays) { return array(ValueType::Array, std::move(arrays)); }

Value Value::of_f32_array(const std::vector<float>& v) {
    return of_float_array(ValueType::F32, std::vector<double>(v.begin(), v.end()));
}
Value Value::of_i32_array(const std::vector<int32_t>& v) {
    return of_signed_array(ValueType::I32, std::vector<int64_t>(v.begin(), v.end()));
}
Value Value::of_u32_array(const std::vector<uint32_t>& v) {
    return of_unsigned_array(ValueType::U32, std::vector<uint64_t>(v.begin(), v.end()));
}

size_t Value::array_size() const {
    if (type != ValueType::Array) return 0;
    return std::visit(
        [](const auto& d) -> size_t {
            using T = std::decay_t<decltype(d)>;
            if constexpr (std::is_same_v<T, uint64_t> || std::is_same_v<T, int64_t> ||
                          std::is_same_v<T, double> || std::is_same_v<T, std::string>)
                return 0;
            else
                return d.size();
        },
        data);
}

std::string type_description(const Value& v) {
    std::string s(value_type_name(v.type));
    if (v.type == ValueType::Array) {
        s += '[';
        s += value_type_name(v.elem_type);
        s += ']';
    }
    return s;
}

namespace {

// Shortest decimal text that reads back as the same float / double.
std::string float_text(double x, bool is_f32) {
    if (std::isnan(x)) return "nan";
    if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
    char buf[64];
    const auto r = is_f32 ? std::to_chars(buf, buf + sizeof buf, static_cast<float>(x))
                          : std::to_chars(buf, buf + sizeof buf, x);
    return std::string(buf, r.ptr);
}

// Length of a valid UTF-8 sequence starting at s[i], or 0 if the bytes there are not one.
size_t utf8_sequence_length(std::string_view s, size_t i) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return 0;
    for (size_t k = 1; k < n; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
    if (n == 2 && b < 0xC2) return 0;  // overlong
    if (n >= 3) {
        const auto b1 = static_cast<unsigned char>(s[i + 1]);
        if (n == 3 && b == 0xE0 && b1 < 0xA0) return 0;   // overlong
        if (n == 3 && b == 0xED && b1 >= 0xA0) return 0;  // surrogate
        if (n == 4 && b == 0xF0 && b1 < 0x90) return 0;   // overlong
        if (n == 4 && (b > 0xF4 || (b == 0xF4 && b1 >= 0x90))) return 0;  // > U+10FFFF
    }
    return n;
}

std::string valid_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const size_t n = utf8_sequence_length(s, i);
        if (n == 0) {
            out += "\xEF\xBF\xBD";  // U+FFFD
            ++i;
        } else {
            out.append(s.substr(i, n));
            i += n;
        }
    }
    return out;
}

// C-style escapes for quotes, backslashes and control bytes; valid UTF-8 stays as is, other
// bytes >= 0x80 become \xNN. Cut after max_chars input bytes (on a character boundary).
std::string quoted(std::string_view s, size_t max_chars) {
    static const char* hex = "0123456789abcdef";
    std::string out = "\"";
    size_t i = 0;
    while (i < s.size() && i < max_chars) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c < 0x20 || c == 0x7f) {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else if (c >= 0x80) {
            const size_t n = utf8_sequence_length(s, i);
            if (n == 0) {
                out += "\\x";
                out += hex[c >> 4];
                out += hex[c & 15];
            } else {
                out.append(s.substr(i, n));
                i += n;
                continue;
            }
        } else {
            out += static_cast<char>(c);
        }
        ++i;
    }
    out += '"';
    if (i < s.size()) out += "... (" + std::to_string(s.size()) + " bytes)";
    return out;
}

template <class T, class F>
std::string join_head(const std::vector<T>& v, size_t max_elems, F&& fmt) {
    std::string s = "[";
    const size_t n = std::min(v.size(), max_elems);
    for (size_t i = 0; i < n; ++i) {
        if (i) s += ", ";
        s += fmt(v[i]);
    }
    if (n < v.size()) s += std::string(n ? ", " : "") + "... " + std::to_string(v.size()) + " items";
    return s + "]";
}

}  // namespace

std::string format_value(const Value& v, size_t max_elems, size_t max_chars) {
    const ValueType t = v.is_array() ? v.elem_type : v.type;
    const bool f32 = t == ValueType::F32;
    const bool boolean = t == ValueType::Bool;
    auto unsigned_text = [&](uint64_t x) { return boolean ? std::string(x ? "true" : "false") : std::to_string(x); };
    auto signed_text = [](int64_t x) { return std::to_string(x); };
    auto float_fmt = [&](double x) { return float_text(x, f32); };
    auto string_fmt = [&](const std::string& x) { return quoted(x, max_chars); };
    auto array_fmt = [&](const Value& x) { return format_value(x, max_elems, max_chars); };
    return std::visit(
        [&](const auto& d) -> std::string {
            using T = std::decay_t<decltype(d)>;
            if constexpr (std::is_same_v<T, uint64_t>) return unsigned_text(d);
            else if constexpr (std::is_same_v<T, int64_t>) return signed_text(d);
            else if constexpr (std::is_same_v<T, double>) return float_fmt(d);
            else if constexpr (std::is_same_v<T, std::string>) return string_fmt(d);
            else if constexpr (std::is_same_v<T, std::vector<uint64_t>>) return join_head(d, max_elems, unsigned_text);
            else if constexpr (std::is_same_v<T, std::vector<int64_t>>) return join_head(d, max_elems, signed_text);
            else if constexpr (std::is_same_v<T, std::vector<double>>) return join_head(d, max_elems, float_fmt);
            else if constexpr (std::is_same_v<T, std::vector<std::string>>) return join_head(d, max_elems, string_fmt);
            else return join_head(d, max_elems, array_fmt);
        },
        v.data);
}

namespace {

nlohmann::json float_json(double x, bool is_f32) {
    // An f32 goes out as the double nearest its shortest decimal form (1e-05, not
    // 9.999999747378752e-06), so JSON readers see the number the file's writer meant.
    if (!is_f32 || !std::isfinite(x)) return x;
    return std::strtod(float_text(x, true).c_str(), nullptr);
}

template <class T, class F>
nlohmann::json json_array(const Value& v, const std::vector<T>& items, size_t max_elems, F&& conv) {
    nlohmann::json head = nlohmann::json::array();
    const size_t n = std::min(items.size(), max_elems);
    for (size_t i = 0; i < n; ++i) head.push_back(conv(items[i]));
    if (n == items.size()) return head;
    return nlohmann::json{{"type", type_description(v)}, {"count", items.size()}, {"head", std::move(head)}};
}

}  // namespace

nlohmann::json value_to_json(const Value& v, size_t max_elems) {
    const ValueType t = v.is_array() ? v.elem_type : v.type;
    const bool f32 = t == ValueType::F32;
    const bool boolean = t == ValueType::Bool;
    auto unsigned_json = [&](uint64_t x) { return boolean ? nlohmann::json(x != 0) : nlohmann::json(x); };
    auto signed_json = [](int64_t x) { return nlohmann::json(x); };
    auto float_conv = [&](double x) { return float_json(x, f32); };
    auto string_json = [](const std::string& x) { return nlohmann::json(valid_utf8(x)); };
    auto array_json = [&](const Value& x) { return value_to_json(x, max_elems); };
    return std::visit(
        [&](const auto& d) -> nlohmann::json {
            using T = std::decay_t<decltype(d)>;
            if constexpr (std::is_same_v<T, uint64_t>) return unsigned_json(d);
            else if constexpr (std::is_same_v<T, int64_t>) return signed_json(d);
            else if constexpr (std::is_same_v<T, double>) return float_conv(d);
            else if constexpr (std::is_same_v<T, std::string>) return string_json(d);
            else if constexpr (std::is_same_v<T, std::vector<uint64_t>>) return json_array(v, d, max_elems, unsigned_json);
            else if constexpr (std::is_same_v<T, std::vector<int64_t>>) return json_array(v, d, max_elems, signed_json);
            else if constexpr (std::is_same_v<T, std::vector<double>>) return json_array(v, d, max_elems, float_conv);
            else if constexpr (std::is_same_v<T, std::vector<std::string>>) return json_array(v, d, max_elems, string_json);
            else return json_array(v, d, max_elems, array_json);
        },
        v.data);
}

}  // namespace glimpse::gguf
