// GGUF reader/writer: round trips of every value and tensor type, and hostile files (each must
// give one Error(Model) line naming the file, never a crash or a huge allocation).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tests/helpers.h"
#include "weights/gguf.h"

using namespace glimpse;
using gguf::Value;
using gguf::ValueType;

namespace {

// Raw little-endian bytes, for files the writer would refuse to produce.
struct Bytes {
    std::vector<uint8_t> b;
    template <class T>
    Bytes& le(T v) {
        const size_t at = b.size();
        b.resize(at + sizeof v);
        std::memcpy(b.data() + at, &v, sizeof v);
        return *this;
    }
    Bytes& u32(uint32_t v) { return le(v); }
    Bytes& u64(uint64_t v) { return le(v); }
    Bytes& str(std::string_view s) {
        u64(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    Bytes& zeros(size_t n) {
        b.insert(b.end(), n, 0);
        return *this;
    }
    Bytes& pad(size_t align) { return zeros((align - b.size() % align) % align); }
    // name, n_dims, ne..., type, offset
    Bytes& info(std::string_view name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
        str(name).u32(static_cast<uint32_t>(ne.size()));
        for (uint64_t n : ne) u64(n);
        return u32(type).u64(offset);
    }
};

Bytes header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    Bytes x;
    x.b = {'G', 'G', 'U', 'F'};
    x.u32(version).u64(n_tensors).u64(n_kv);
    return x;
}

// A file whose only tensor is `w` with the given shape/type/offset and `data_bytes` of data.
std::vector<uint8_t> one_tensor(const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset, size_t data_bytes) {
    Bytes x = header(1, 0);
    x.info("w", ne, type, offset).pad(32).zeros(data_bytes);
    return x.b;
}

// Parses from an exact-size heap copy, so AddressSanitizer sees any read past the end.
GgufFile parse_copy(const std::vector<uint8_t>& bytes, const std::string& name = "hostile.gguf") {
    std::unique_ptr<uint8_t[]> copy(bytes.empty() ? nullptr : new uint8_t[bytes.size()]);
    if (!bytes.empty()) std::memcpy(copy.get(), bytes.data(), bytes.size());
    GgufFile f = GgufFile::parse_memory(copy.get(), bytes.size(), name);
    return f;  // tensors dangle now; callers only look at metadata and shapes
}

void expect_model_error(const std::vector<uint8_t>& bytes, const std::string& needle) {
    INFO("expected an error containing: " << needle);
    try {
        parse_copy(bytes);
        FAIL("parsed without an error");
    } catch (const Error& e) {
        const std::string m = e.what();
        INFO("message: " << m);
        CHECK(e.kind() == ErrorKind::Model);
        CHECK(m.rfind("hostile.gguf: ", 0) == 0);
        CHECK(m.find('\n') == std::string::npos);
        CHECK_THAT(m, Catch::Contains(needle));
    }
}

template <class F>
void expect_error(F&& f, ErrorKind kind, const std::string& needle) {
    INFO("expected an error containing: " << needle);
    try {
        f();
        FAIL("no error");
    } catch (const Error& e) {
        INFO("message: " << e.what());
        CHECK(e.kind() == kind);
        CHECK_THAT(std::string(e.what()), Catch::Contains(needle));
    }
}

bool same_double(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

bool same_value(const Value& a, const Value& b) {
    if (a.type != b.type || a.data.index() != b.data.index()) return false;
    if (a.is_array() && a.elem_type != b.elem_type) return false;
    if (const auto* x = std::get_if<double>(&a.data)) return same_double(*x, std::get<double>(b.data));
    if (const auto* x = std::get_if<std::vector<double>>(&a.data)) {
        const auto& y = std::get<std::vector<double>>(b.data);
        if (x->size() != y.size()) return false;
        for (size_t i = 0; i < x->size(); ++i)
            if (!same_double((*x)[i], y[i])) return false;
        return true;
    }
    if (const auto* x = std::get_if<std::vector<Value>>(&a.data)) {
        const auto& y = std::get<std::vector<Value>>(b.data);
        if (x->size() != y.size()) return false;
        for (size_t i = 0; i < x->size(); ++i)
            if (!same_value((*x)[i], y[i])) return false;
        return true;
    }
    if (const auto* x = std::get_if<uint64_t>(&a.data)) return *x == std::get<uint64_t>(b.data);
    if (const auto* x = std::get_if<int64_t>(&a.data)) return *x == std::get<int64_t>(b.data);
    if (const auto* x = std::get_if<std::string>(&a.data)) return *x == std::get<std::string>(b.data);
    if (const auto* x = std::get_if<std::vector<uint64_t>>(&a.data)) return *x == std::get<std::vector<uint64_t>>(b.data);
    if (const auto* x = std::get_if<std::vector<int64_t>>(&a.data)) return *x == std::get<std::vector<int64_t>>(b.data);
    return std::get<std::vector<std::string>>(a.data) == std::get<std::vector<std::string>>(b.data);
}

std::vector<gguf::KeyValue> every_value_kind() {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    return {
        {"t.u8", Value::of_u8(255)},
        {"t.i8", Value::of_i8(-128)},
        {"t.u16", Value::of_u16(65535)},
        {"t.i16", Value::of_i16(-32768)},
        {"t.u32", Value::of_u32(UINT32_MAX)},
        {"t.i32", Value::of_i32(INT32_MIN)},
        {"t.u64", Value::of_u64(UINT64_MAX)},
        {"t.i64", Value::of_i64(INT64_MIN)},
        {"t.i64max", Value::of_i64(INT64_MAX)},
        {"t.f32", Value::of_f32(1e-5f)},
        {"t.f32nan", Value::of_f32(nan)},
        {"t.f32inf", Value::of_f32(-std::numeric_limits<float>::infinity())},
        {"t.f64", Value::of_f64(0.1)},
        {"t.true", Value::of_bool(true)},
        {"t.false", Value::of_bool(false)},
        {"t.str", Value::of_str("h\xc3\xa9llo \"x\"\n\t")},
        {"t.empty_str", Value::of_str("")},
        {"t.str_arr", Value::of_str_array({"a", "", "\xc4\xa0t", std::string("n\0ul", 4)})},
        {"t.empty_arr", Value::of_unsigned_array(ValueType::U8, {})},
        {"t.u8_arr", Value::of_unsigned_array(ValueType::U8, {0, 1, 255})},
        {"t.u16_arr", Value::of_unsigned_array(ValueType::U16, {0, 65535})},
        {"t.u32_arr", Value::of_u32_array({7, UINT32_MAX})},
        {"t.u64_arr", Value::of_unsigned_array(ValueType::U64, {UINT64_MAX, 3})},
        {"t.i8_arr", Value::of_signed_array(ValueType::I8, {-128, 127})},
        {"t.i16_arr", Value::of_signed_array(ValueType::I16, {-32768, 32767})},
        {"t.i32_arr", Value::of_i32_array({1, -1, INT32_MAX, INT32_MIN})},
        {"t.i64_arr", Value::of_signed_array(ValueType::I64, {INT64_MIN, INT64_MAX})},
        {"t.f32_arr", Value::of_f32_array({0.5f, nan, -0.0f, 3.4e38f})},
        {"t.f64_arr", Value::of_float_array(ValueType::F64, {1e300, -2.5})},
        {"t.bool_arr", Value::of_unsigned_array(ValueType::Bool, {1, 0, 1})},
        {"t.nested",
         Value::of_arrays({Value::of_i32_array({1, 2}), Value::of_str_array({"x"}),
                           Value::of_arrays({Value::of_arrays({Value::of_f32_array({1.5f})})}),
                           Value::of_unsigned_array(ValueType::U8, {})})},
        {"t.empty_nested", Value::of_arrays({})},
    };
}

}  // namespace

TEST_CASE("gguf: every value type survives a writer -> reader round trip", "[gguf]") {
    const auto kvs = every_value_kind();
    GgufWriter w;
    for (const auto& kv : kvs) w.set(kv.key, kv.value);
    const auto bytes = w.to_bytes();
    const GgufFile f = GgufFile::parse_memory(bytes.data(), bytes.size(), "rt.gguf");
    CHECK(f.version() == 3);
    CHECK(f.alignment() == 32);
    CHECK(f.tensors().empty());
    REQUIRE(f.metadata().size() == kvs.size());
    for (size_t i = 0; i < kvs.size(); ++i) {
        INFO(kvs[i].key << " = " << gguf::format_value(kvs[i].value));
        CHECK(f.metadata()[i].key == kvs[i].key);  // file order = insertion order
        CHECK(same_value(f.metadata()[i].value, kvs[i].value));
        REQUIRE(f.find(kvs[i].key) != nullptr);
    }
    CHECK(f.find("t.absent") == nullptr);
    CHECK_FALSE(f.has("t.absent"));
    // Writing what was read gives the same bytes.
    GgufWriter w2;
    for (const auto& kv : f.metadata()) w2.set(kv.key, kv.value);
    CHECK(w2.to_bytes() == bytes);
}

TEST_CASE("gguf: typed accessors convert integer widths and refuse what does not fit", "[gguf]") {
    GgufWriter w;
    for (const auto& kv : every_value_kind()) w.set(kv.key, kv.value);
    const auto bytes = w.to_bytes();
    const GgufFile f = GgufFile::parse_memory(bytes.data(), bytes.size(), "acc.gguf");

    CHECK(f.u32("t.u8") == 255);
    CHECK(f.u32("t.u32") == UINT32_MAX);
    CHECK(f.u64("t.u64") == UINT64_MAX);
    CHECK(f.i32("t.i8") == -128);
    CHECK(f.i32("t.u16") == 65535);
    CHECK(f.i64("t.i64") == INT64_MIN);
    CHECK(f.f32("t.f32") == 1e-5f);
    CHECK(std::isnan(f.f32("t.f32nan")));
    CHECK(f.f32("t.f64") == 0.1f);
    CHECK(f.boolean("t.true"));
    CHECK_FALSE(f.boolean("t.false"));
    CHECK(f.str("t.empty_str").empty());
    CHECK(f.str_array("t.str_arr") == std::vector<std::string>{"a", "", "\xc4\xa0t", std::string("n\0ul", 4)});
    CHECK(&f.str_array_ref("t.str_arr") == &f.str_array_ref("t.str_arr"));
    CHECK(f.i32_array("t.i32_arr") == std::vector<int32_t>{1, -1, INT32_MAX, INT32_MIN});
    CHECK(f.i32_array("t.u8_arr") == std::vector<int32_t>{0, 1, 255});
    CHECK(f.i32_array("t.empty_arr").empty());
    const auto fa = f.f32_array("t.f32_arr");
    REQUIRE(fa.size() == 4);
    CHECK(fa[0] == 0.5f);
    CHECK(std::isnan(fa[1]));
    CHECK(f.f32_array("t.f64_arr") == std::vector<float>{static_cast<float>(1e300), -2.5f});

    CHECK(f.u32_or("t.absent", 7) == 7);
    CHECK(f.u32_or("t.u8", 7) == 255);
    CHECK(f.i32_or("t.absent", -3) == -3);
    CHECK(f.u64_or("t.absent", 9) == 9);
    CHECK(f.f32_or("t.absent", 2.5f) == 2.5f);
    CHECK(f.str_or("t.absent", "d") == "d");
    CHECK(f.boolean_or("t.absent", true));

    const auto model = ErrorKind::Model;
    expect_error([&] { f.u32("t.absent"); }, model, "acc.gguf: metadata key 't.absent' is missing");
    expect_error([&] { f.u32("t.i8"); }, model, "acc.gguf: metadata key 't.i8' value -128 out of range for u32");
    expect_error([&] { f.u32("t.u64"); }, model, "value 18446744073709551615 out of range for u32");
    expect_error([&] { f.i32("t.u32"); }, model, "value 4294967295 out of range for i32");
    expect_error([&] { f.u64("t.i64"); }, model, "out of range for u64");
    expect_error([&] { f.u32("t.str"); }, model, "metadata key 't.str' has type string, expected an integer");
    expect_error([&] { f.u32("t.true"); }, model, "has type bool, expected an integer");
    expect_error([&] { f.u32_or("t.f32", 1); }, model, "has type f32, expected an integer");
    expect_error([&] { f.f32("t.u32"); }, model, "has type u32, expected f32 or f64");
    expect_error([&] { f.boolean("t.u8"); }, model, "has type u8, expected bool");
    expect_error([&] { f.str("t.str_arr"); }, model, "has type array[string], expected string");
    expect_error([&] { f.str_array("t.i32_arr"); }, model, "has type array[i32], expected array[string]");
    expect_error([&] { f.f32_array("t.i32_arr"); }, model, "expected array[f32]");
    expect_error([&] { f.i32_array("t.u64_arr"); }, model, "metadata key 't.u64_arr' element 0 value 18446744073709551615 out of range for i32");
    expect_error([&] { f.i32_array("t.f32_arr"); }, model, "expected array[i32]");
    expect_error([&] { f.tensor("nope"); }, model, "acc.gguf: tensor 'nope' is missing");
    CHECK(f.find_tensor("nope") == nullptr);
}

TEST_CASE("gguf: every tensor type round-trips at alignments 1, 32 and 64", "[gguf]") {
    const uint32_t align = GENERATE(1u, 32u, 64u);
    INFO("alignment " << align);
    struct Expect {
        std::string name;
        DType type;
        std::array<int64_t, 4> ne;
        int n_dims;
        std::vector<uint8_t> data;
    };
    std::vector<Expect> expect;
    uint64_t seed = 1;
    for (uint32_t id = 0; id < 64; ++id) {
        const auto info = dtype_info(id);
        if (!info) continue;
        const int64_t ne0 = 2 * info->block_elems;
        const uint64_t bytes = *dtype_row_bytes(info->type, ne0) * 3;
        std::vector<uint8_t> data(bytes);
        for (auto& b : data) b = static_cast<uint8_t>((seed = seed * 6364136223846793005ull + 1442695040888963407ull) >> 56);
        expect.push_back({"t." + std::string(info->name), info->type, {ne0, 3, 1, 1}, 2, std::move(data)});
    }
    // Other ranks, an odd byte count (F16 [3]) and an empty tensor.
    expect.push_back({"one_d", DType::F16, {3, 1, 1, 1}, 1, {1, 2, 3, 4, 5, 6}});
    expect.push_back({"four_d", DType::F32, {1, 2, 1, 2, }, 4, std::vector<uint8_t>(16, 7)});
    expect.push_back({"empty", DType::F32, {4, 0, 1, 1}, 2, {}});
    expect.push_back({"last", DType::Q8_0, {32, 1, 1, 1}, 1, std::vector<uint8_t>(34, 9)});

    GgufWriter w;
    if (align != 32) w.set_alignment(align);
    w.set_str("general.architecture", "test");
    for (const auto& e : expect) w.add_tensor(e.name, e.type, e.ne, e.n_dims, e.data.data(), e.data.size());
    CHECK(w.tensor_count() == expect.size());
    const auto bytes = w.to_bytes();
    const GgufFile f = GgufFile::parse_memory(bytes.data(), bytes.size(), "types.gguf");
    CHECK(f.alignment() == align);
    CHECK(f.data_offset() % align == 0);
    CHECK(f.file_size() == bytes.size());
    REQUIRE(f.tensors().size() == expect.size());
    for (size_t i = 0; i < expect.size(); ++i) {
        const Tensor& t = f.tensors()[i];
        const Expect& e = expect[i];
        INFO(e.name);
        CHECK(t.name == e.name);
        CHECK(t.dtype == e.type);
        CHECK(t.n_dims == e.n_dims);
        CHECK(t.ne == e.ne);
        CHECK(t.nb == contiguous_strides(e.type, e.ne));
        REQUIRE(t.bytes() == e.data.size());
        const auto off = static_cast<uint64_t>(static_cast<const uint8_t*>(t.data) - bytes.data());
        CHECK(off >= f.data_offset());
        CHECK((off - f.data_offset()) % align == 0);
        CHECK(off + t.bytes() <= bytes.size());
        CHECK((e.data.empty() || std::memcmp(t.data, e.data.data(), e.data.size()) == 0));
        CHECK(f.find_tensor(e.name) == &t);
        CHECK(&f.tensor(e.name) == &t);
        CHECK_FALSE(t.storage);  // parse_memory: the caller owns the bytes
    }
}

TEST_CASE("gguf: a file written to disk opens mapped, without copying the tensor data", "[gguf]") {
    test::TempDir dir;
    const std::string path = (dir / "m.gguf").string();
    std::vector<float> values(100);
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.5f;
    {
        GgufWriter w;
        w.set_u32("llama.block_count", 2);
        w.add_tensor("w", DType::F32, {10, 10, 1, 1}, 2, values.data(), values.size() * 4);
        w.write(path);
        CHECK(test::read_file(path) == w.to_bytes());
        CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
    }
    auto file = MappedFile::open(path);
    const uint8_t* lo = file->data();
    const uint8_t* hi = lo + file->size();
    Tensor t;
    {
        const GgufFile f = GgufFile::parse(file);
        CHECK(f.path() == path);
        CHECK(f.u32("llama.block_count") == 2);
        t = f.tensor("w");
    }
    file.reset();  // the tensor alone keeps the mapping alive
    const auto* p = static_cast<const uint8_t*>(t.data);
    CHECK(p >= lo);
    CHECK(p + t.bytes() <= hi);
    CHECK(t.storage.get() == t.data);
    CHECK(std::memcmp(t.data, values.data(), values.size() * 4) == 0);

    const GgufFile g = GgufFile::open(path);
    CHECK(g.tensor("w").storage);
    expect_error([&] { GgufFile::open((dir / "missing.gguf").string()); }, ErrorKind::BadInput, "missing.gguf");
    expect_error([&] { GgufWriter().write((dir / "no" / "such" / "dir.gguf").string()); }, ErrorKind::BadInput,
                 "dir.gguf: cannot write");
}

TEST_CASE("gguf: version 2 files are read, versions 1 and 4 and big-endian files are not", "[gguf]") {
    GgufWriter w;
    w.set_u32("k", 5);
    auto bytes = w.to_bytes();
    bytes[4] = 2;
    const GgufFile f = GgufFile::parse_memory(bytes.data(), bytes.size(), "v2.gguf");
    CHECK(f.version() == 2);
    CHECK(f.u32("k") == 5);
    bytes[4] = 1;
    expect_model_error(bytes, "unsupported GGUF version 1 (glimpse reads versions 2 and 3");
    bytes[4] = 4;
    expect_model_error(bytes, "unsupported GGUF version 4 (glimpse reads versions 2 and 3)");
    bytes[4] = 0;
    bytes[7] = 3;
    expect_model_error(bytes, "big-endian GGUF files are not supported");
}

TEST_CASE("gguf: truncation at every byte gives an error naming the file", "[gguf]") {
    GgufWriter w;
    w.set_u32("a.count", 3);
    w.set_str("a.name", "tiny");
    w.set_str_array("a.tokens", {"x", "yy", ""});
    w.set("a.nested", Value::of_arrays({Value::of_i32_array({1, 2}), Value::of_f32_array({})}));
    w.set_f32("a.eps", 1e-6f);
    const std::vector<float> v5(5, 1.0f);
    std::vector<uint8_t> q(68, 3);
    w.add_tensor("a", DType::F32, {5, 1, 1, 1}, 1, v5.data(), 20);
    w.add_tensor("b", DType::Q8_0, {32, 2, 1, 1}, 2, q.data(), q.size());
    w.add_tensor("c", DType::F16, {3, 1, 1, 1}, 1, v5.data(), 6);
    const auto bytes = w.to_bytes();
    const GgufFile full = GgufFile::parse_memory(bytes.data(), bytes.size(), "full.gguf");
    // The last tensor's padding is optional (llama.cpp's mmap loader does not need it either).
    const auto& c = full.tensor("c");
    const size_t data_end = static_cast<size_t>(static_cast<const uint8_t*>(c.data) - bytes.data()) + 6;
    REQUIRE(data_end < bytes.size());
    for (size_t n = 0; n <= bytes.size(); ++n) {
        const std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
        INFO("prefix of " << n << " bytes");
        if (n >= data_end) {
            CHECK_NOTHROW(parse_copy(prefix));
            continue;
        }
        try {
            parse_copy(prefix);
            FAIL("a truncated file parsed");
        } catch (const Error& e) {
            const std::string m = e.what();
            CHECK(e.kind() == ErrorKind::Model);
            CHECK(m.rfind("hostile.gguf: ", 0) == 0);
            CHECK(m.find('\n') == std::string::npos);
        }
    }
    expect_model_error(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(data_end - 1)),
                       "truncated: tensor 'c' needs 6 bytes at data offset");
}

TEST_CASE("gguf: hostile headers and metadata", "[gguf]") {
    expect_model_error({}, "not a GGUF file (the file is empty)");
    expect_model_error({'G', 'G'}, "not a GGUF file (only 2 bytes)");
    Bytes zip;
    zip.b = {'P', 'K', 3, 4};
    zip.zeros(40);
    expect_model_error(zip.b, "not a GGUF file (magic is 'PK\\x03\\x04', expected 'GGUF')");
    expect_model_error(header(0, uint64_t{1} << 63).zeros(64).b, "declares 9223372036854775808 metadata entries");
    expect_model_error(header(uint64_t{1} << 40, 0).zeros(64).b, "declares 1099511627776 tensors");
    expect_model_error(header(0, 1).u64(uint64_t{1} << 62).zeros(16).b,
                       "truncated: metadata entry 0 needs 4611686018427387904 bytes for the key");
    expect_model_error(header(0, 1).str("k").u32(8).u64(uint64_t{1} << 62).zeros(16).b,
                       "truncated: metadata key 0 ('k') needs 4611686018427387904 bytes for a string value");
    expect_model_error(header(0, 1).str("k").u32(9).u32(4).u64(uint64_t{1} << 60).zeros(64).b,
                       "metadata key 0 ('k') has an array of 1152921504606846976 u32 values");
    expect_model_error(header(0, 1).str("k").u32(9).u32(8).u64(uint64_t{1} << 61).zeros(64).b,
                       "has an array of 2305843009213693952 string values");
    expect_model_error(header(0, 1).str("k").u32(9).u32(9).u64(uint64_t{1} << 59).zeros(64).b,
                       "has an array of 576460752303423488 array values");
    expect_model_error(header(0, 1).str("k").u32(13).u32(0).b, "metadata key 0 ('k') has unknown value type 13");
    expect_model_error(header(0, 1).str("k").u32(9).u32(13).u64(0).b, "array of unknown element type 13");
    expect_model_error(header(0, 1).str("k").u32(7).le<uint8_t>(2).b, "metadata key 0 ('k') has bool value 2");
    expect_model_error(header(0, 1).str("k").u32(9).u32(7).u64(2).le<uint8_t>(1).le<uint8_t>(5).b,
                       "bool array element 5");
    expect_model_error(header(0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2).b,
                       "duplicate metadata key 'k' (entries 0 and 1)");
    // Keys from the file cannot break the one-line message.
    expect_model_error(header(0, 2).str("a\nb").u32(4).u32(1).str("a\nb").u32(4).u32(2).b,
                       "duplicate metadata key 'a\\x0ab'");

    const GgufFile nl = parse_copy(header(0, 1).str("a\nb").u32(4).u32(1).b);
    expect_error([&] { nl.str("a\nb"); }, ErrorKind::Model, "metadata key 'a\\x0ab' has type u32, expected string");

    // Four levels of arrays are fine, five are refused.
    Bytes ok = header(0, 1).str("k").u32(9);
    for (int i = 0; i < 3; ++i) ok.u32(9).u64(1);
    ok.u32(4).u64(1).u32(42);
    const GgufFile f = parse_copy(ok.b);
    CHECK(gguf::format_value(*f.find("k")) == "[[[[42]]]]");
    Bytes deep = header(0, 1).str("k").u32(9);
    for (int i = 0; i < 4; ++i) deep.u32(9).u64(1);
    deep.zeros(64);
    expect_model_error(deep.b, "nests arrays deeper than 4 levels");
}

TEST_CASE("gguf: hostile alignment values", "[gguf]") {
    auto with_alignment = [](uint32_t type, uint64_t value) {
        Bytes x = header(0, 1).str("general.alignment").u32(type);
        if (type == 8) x.str("32");
        else if (type == 10) x.u64(value);
        else x.u32(static_cast<uint32_t>(value));
        return x.b;
    };
    expect_model_error(with_alignment(4, 0), "metadata key 'general.alignment' is 0 (expected a power of two)");
    expect_model_error(with_alignment(4, 3), "metadata key 'general.alignment' is 3 (expected a power of two)");
    expect_model_error(with_alignment(8, 0), "metadata key 'general.alignment' has type string, expected u32");
    expect_model_error(with_alignment(10, 32), "metadata key 'general.alignment' has type u64, expected u32");
    CHECK(parse_copy(with_alignment(4, 64)).alignment() == 64);
}

TEST_CASE("gguf: hostile tensor infos", "[gguf]") {
    const uint64_t big = uint64_t{1} << 62;
    expect_model_error(one_tensor({}, 0, 0, 0), "tensor 'w' has n_dims 0 (expected 1 to 4)");
    expect_model_error(one_tensor({1, 1, 1, 1, 1}, 0, 0, 4), "tensor 'w' has n_dims 5 (expected 1 to 4)");
    expect_model_error(one_tensor({big, big}, 0, 0, 0), "tensor 'w' shape [4611686018427387904, 4611686018427387904] has more than 2^63-1 elements");
    expect_model_error(one_tensor({big}, 0, 0, 0), "tensor 'w' shape [4611686018427387904] is more than 2^64 bytes");
    expect_model_error(one_tensor({UINT64_MAX}, 0, 0, 0), "tensor 'w' has ne[0] = 18446744073709551615 (negative as int64)");
    expect_model_error(one_tensor({33}, 8, 0, 64), "tensor 'w' (Q8_0) has ne[0] = 33, not a multiple of the block size 32");
    expect_model_error(one_tensor({256}, 19, 0, 256), "tensor 'w' has unsupported tensor type id 19 (IQ1_S)");
    expect_model_error(one_tensor({256}, 1000, 0, 256), "tensor 'w' has unsupported tensor type id 1000");
    expect_model_error(one_tensor({16}, 0, 1024, 64), "truncated: tensor 'w' needs 64 bytes at data offset 1024");
    expect_model_error(one_tensor({16}, 0, 0, 63), "truncated: tensor 'w' needs 64 bytes at data offset 0 but the data section holds only 63 bytes");
    expect_model_error(one_tensor({16}, 0, UINT64_MAX - 31, 64), "truncated: tensor 'w' needs 64 bytes at data offset 18446744073709551584");
    expect_model_error(one_tensor({16}, 0, 4, 128), "tensor 'w' data offset 4 is not a multiple of the alignment 32");
    // A declared data section that starts past the end of the file.
    expect_model_error(header(1, 0).info("w", {16}, 0, 0).b, "truncated: the data section starts at offset 64");

    expect_model_error(header(2, 0).info("a", {16}, 0, 0).info("b", {16}, 0, 32).pad(32).zeros(128).b,
                       "tensors 'a' and 'b' overlap (data offsets 0..64 and 32..)");
    // Overlap is found whatever the info order; empty tensors overlap nothing.
    expect_model_error(header(2, 0).info("b", {16}, 0, 32).info("a", {16}, 0, 0).pad(32).zeros(128).b, "overlap");
    CHECK(parse_copy(header(2, 0).info("a", {16}, 0, 0).info("e", {0}, 0, 32).pad(32).zeros(64).b).tensors().size() == 2);
    expect_model_error(header(2, 0).info("w", {16}, 0, 0).info("w", {16}, 0, 64).pad(32).zeros(128).b,
                       "duplicate tensor name 'w' (tensor infos 0 and 1)");
    expect_model_error(header(1, 0).info("", {16}, 0, 0).pad(32).zeros(64).b, "tensor info 0 has an empty name");
    expect_model_error(header(1, 0).info(std::string(256, 'n'), {16}, 0, 0).pad(32).zeros(64).b,
                       "has a name of 256 bytes");
    CHECK(parse_copy(header(1, 0).info(std::string(255, 'n'), {16}, 0, 0).pad(32).zeros(64).b).tensors().size() == 1);
    expect_model_error(header(1, 0).str("weight.tensor.x").u32(2).u64(4).b,
                       "truncated: tensor info 0 ('weight.tensor.x') needs 8 bytes for a dimension at offset 59 but the file ends at 59");
}

TEST_CASE("gguf: the writer refuses what llama.cpp would not read", "[gguf]") {
    GgufWriter w;
    const std::vector<uint8_t> buf(1024);
    const auto model = ErrorKind::Model;
    expect_error([&] { w.add_tensor("w", DType::F32, {4, 1, 1, 1}, 1, buf.data(), 15); }, model, "15 bytes given, the shape needs 16");
    expect_error([&] { w.add_tensor(std::string(64, 'n'), DType::F32, {4, 1, 1, 1}, 1, buf.data(), 16); }, model, "at most 63");
    expect_error([&] { w.add_tensor("", DType::F32, {4, 1, 1, 1}, 1, buf.data(), 16); }, model, "empty tensor name");
    expect_error([&] { w.add_tensor("w", DType::Q8_0, {33, 1, 1, 1}, 1, buf.data(), 34); }, model, "not a whole number of blocks");
    expect_error([&] { w.add_tensor("w", DType::F32, {4, 2, 1, 1}, 1, buf.data(), 32); }, model, "must be 1 beyond n_dims");
    expect_error([&] { w.add_tensor("w", DType::F32, {4, 1, 1, 1}, 5, buf.data(), 16); }, model, "n_dims 5");
    w.add_tensor("w", DType::F32, {4, 1, 1, 1}, 1, buf.data(), 16);
    expect_error([&] { w.add_tensor("w", DType::F32, {4, 1, 1, 1}, 1, buf.data(), 16); }, model, "tensor 'w' added twice");
    expect_error([&] { w.set_alignment(3); }, model, "alignment 3 is not a power of two");
    expect_error([&] { w.set("general.alignment", Value::of_u64(32)); }, model, "general.alignment must be a u32");
    Value bad = Value::of_u8(1);
    bad.data = uint64_t{300};
    expect_error([&] { w.set("k", bad); }, model, "metadata key 'k': value 300 does not fit in u8");
    bad = Value::of_u32(1);
    bad.data = std::string("x");
    expect_error([&] { w.set("k", bad); }, model, "wrong kind of data");
    expect_error([&] { w.set("k", Value::of_signed_array(ValueType::I8, {200})); }, model, "value 200 does not fit in i8");
    expect_error([&] { w.set("k", Value::of_signed_array(ValueType::U8, {1})); }, model, "wrong kind of data");
    expect_error([&] { w.set("k", Value::of_arrays({Value::of_u8(1)})); }, model, "element is not an array");
    expect_error([&] { w.set("", Value::of_u8(1)); }, model, "empty metadata key");
    Value deep = Value::of_u32_array({1});
    for (int i = 0; i < 4; ++i) deep = Value::of_arrays({deep});
    expect_error([&] { w.set("k", deep); }, model, "nested deeper than 4");

    // Setting a key again replaces its value in place; a Tensor is added by reference.
    GgufWriter v;
    v.set_u32("a", 1);
    v.set_u32("b", 2);
    v.set_str("a", "again");
    REQUIRE(v.metadata().size() == 2);
    CHECK(v.metadata()[0].key == "a");
    CHECK(gguf::format_value(v.metadata()[0].value) == "\"again\"");
    Tensor t = make_f32("t", {3, 2, 1, 1}, 2);
    f32_data(t)[5] = 4.0f;
    v.add_tensor(t);
    f32_data(t)[0] = 2.0f;  // after add_tensor, before to_bytes: the writer sees it
    const auto bytes = v.to_bytes();
    const GgufFile f = GgufFile::parse_memory(bytes.data(), bytes.size(), "ref.gguf");
    CHECK(f32_data(f.tensor("t"))[0] == 2.0f);
    CHECK(f32_data(f.tensor("t"))[5] == 4.0f);
}

TEST_CASE("gguf: format_value and value_to_json", "[gguf]") {
    CHECK(gguf::format_value(Value::of_u32(7)) == "7");
    CHECK(gguf::format_value(Value::of_i8(-3)) == "-3");
    CHECK(gguf::format_value(Value::of_f32(1e-5f)) == "1e-05");
    CHECK(gguf::format_value(Value::of_f32(std::nanf(""))) == "nan");
    CHECK(gguf::format_value(Value::of_f64(0.1)) == "0.1");
    CHECK(gguf::format_value(Value::of_bool(true)) == "true");
    CHECK(gguf::format_value(Value::of_str("a\"b\\\n\x01")) == "\"a\\\"b\\\\\\n\\x01\"");
    CHECK(gguf::format_value(Value::of_str("\xc4\xa0t\xff")) == "\"\xc4\xa0t\\xff\"");
    CHECK(gguf::format_value(Value::of_str(std::string(200, 'x')), 8, 10) == "\"xxxxxxxxxx\"... (200 bytes)");
    std::vector<int32_t> many(20);
    for (int i = 0; i < 20; ++i) many[i] = i;
    CHECK(gguf::format_value(Value::of_i32_array(many), 3) == "[0, 1, 2, ... 20 items]");
    CHECK(gguf::format_value(Value::of_i32_array(many), 0) == "[... 20 items]");
    CHECK(gguf::format_value(Value::of_str_array({"a", "b"})) == "[\"a\", \"b\"]");
    CHECK(gguf::format_value(Value::of_unsigned_array(ValueType::Bool, {1, 0})) == "[true, false]");
    CHECK(gguf::format_value(Value::of_arrays({Value::of_i32_array({1, 2}), Value::of_f32_array({})})) == "[[1, 2], []]");
    CHECK(gguf::type_description(Value::of_str_array({})) == "array[string]");
    CHECK(gguf::value_type_name(ValueType::U32) == "u32");
    CHECK(gguf::value_type_name(static_cast<ValueType>(99)) == "unknown");

    CHECK(gguf::value_to_json(Value::of_f32(1e-5f)).dump() == "1e-05");
    CHECK(gguf::value_to_json(Value::of_f64(0.1)).dump() == "0.1");
    CHECK(gguf::value_to_json(Value::of_u64(UINT64_MAX)).dump() == "18446744073709551615");
    CHECK(gguf::value_to_json(Value::of_bool(false)).dump() == "false");
    CHECK(gguf::value_to_json(Value::of_unsigned_array(ValueType::Bool, {1, 0})).dump() == "[true,false]");
    CHECK(gguf::value_to_json(Value::of_str("bad \xff\xc3")).dump() == "\"bad \xef\xbf\xbd\xef\xbf\xbd\"");
    CHECK(gguf::value_to_json(Value::of_i32_array(many), 2).dump() == R"({"count":20,"head":[0,1],"type":"array[i32]"})");
    CHECK(gguf::value_to_json(Value::of_arrays({Value::of_str_array({"x"})})).dump() == R"([["x"]])");
}
