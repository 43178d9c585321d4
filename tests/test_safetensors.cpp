#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "tests/helpers.h"
#include "weights/safetensors.h"

using namespace glimpse;
using glimpse::test::TempDir;

namespace {

// A safetensors file from a header text and data bytes; the header is padded with spaces to
// a multiple of 8 unless `pad` is false.
std::vector<uint8_t> st_bytes(std::string header, const std::vector<uint8_t>& data, bool pad = true) {
    if (pad) header.append((8 - header.size() % 8) % 8, ' ');
    const uint64_t n = header.size();
    std::vector<uint8_t> out(8 + n + data.size());
    for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(n >> (8 * i));
    if (n) std::memcpy(out.data() + 8, header.data(), n);
    if (!data.empty()) std::memcpy(out.data() + 8 + n, data.data(), data.size());
    return out;
}

std::vector<uint8_t> st_bytes_len(uint64_t header_len, const std::string& rest) {
    std::vector<uint8_t> out(8 + rest.size());
    for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(header_len >> (8 * i));
    if (!rest.empty()) std::memcpy(out.data() + 8, rest.data(), rest.size());
    return out;
}

// Parsing `bytes` must fail with a one-line Model error that names the file and contains `what`.
void require_model_error(const std::vector<uint8_t>& bytes, const std::string& what) {
    INFO("expecting an error containing: " << what);
    try {
        SafetensorsFile::parse_memory(bytes.data(), bytes.size(), "bad.safetensors");
        FAIL("parse succeeded");
    } catch (const Error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(e.kind() == ErrorKind::Model);
        CHECK(msg.rfind("bad.safetensors: ", 0) == 0);
        CHECK(msg.find('\n') == std::string::npos);
        CHECK(msg.find(what) != std::string::npos);
    }
}

Tensor owned_tensor(const std::string& name, DType type, std::array<int64_t, 4> ne, int n_dims,
                    std::vector<uint8_t>& bytes, uint8_t seed) {
    Tensor t;
    t.name = name;
    t.dtype = type;
    t.n_dims = n_dims;
    t.ne = ne;
    t.nb = contiguous_strides(type, ne);
    bytes.resize(t.bytes());
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = uint8_t(seed + i * 7);
    t.data = bytes.data();
    return t;
}

const std::string kOneF32 = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";

}  // namespace

TEST_CASE("safetensors write/read round trip keeps types, shapes, bytes and metadata", "[safetensors]") {
    TempDir dir;
    std::vector<std::vector<uint8_t>> buffers(8);
    std::vector<Tensor> ts = {
        owned_tensor("half.odd", DType::F16, {3, 1, 1, 1}, 1, buffers[0], 1),  // 6 bytes: would misalign F32
        owned_tensor("f32.2d", DType::F32, {5, 3, 1, 1}, 2, buffers[1], 2),
        owned_tensor("bf16.3d", DType::BF16, {4, 3, 2, 1}, 3, buffers[2], 3),
        owned_tensor("f32.4d", DType::F32, {2, 3, 1, 5}, 4, buffers[3], 4),
        owned_tensor("scalar", DType::F32, {1, 1, 1, 1}, 1, buffers[4], 5),
        owned_tensor("empty", DType::F16, {0, 4, 1, 1}, 2, buffers[5], 6),
        owned_tensor("ids", DType::I64, {3, 1, 1, 1}, 1, buffers[6], 7),
        owned_tensor("i8", DType::I8, {5, 1, 1, 1}, 1, buffers[7], 8),
    };
    const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "a \"quoted\" value"}};
    const std::string path = (dir / "rt.safetensors").string();
    write_safetensors(path, ts, meta);

    const auto f = SafetensorsFile::open(path);
    CHECK(f.path() == path);
    CHECK(f.metadata() == meta);
    CHECK((8 + f.header_bytes()) % 8 == 0);
    REQUIRE(f.tensors().size() == ts.size());
    for (const Tensor& want : ts) {
        INFO(want.name);
        const Tensor& got = f.tensor(want.name);
        CHECK(got.dtype == want.dtype);
        CHECK(got.n_dims == want.n_dims);
        CHECK(got.ne == want.ne);
        CHECK(got.nb == want.nb);
        CHECK(got.contiguous());
        CHECK(reinterpret_cast<uintptr_t>(got.data) % dtype_info(got.dtype).block_bytes == 0);
        if (want.bytes()) CHECK(std::memcmp(got.data, want.data, want.bytes()) == 0);
        CHECK(got.storage != nullptr);
    }
    // tensors() is sorted by data offset
    for (size_t i = 1; i < f.tensors().size(); ++i)
        CHECK(f.tensors()[i - 1].data <= f.tensors()[i].data);
    CHECK(f.find_tensor("missing") == nullptr);
}

TEST_CASE("safetensors values survive as F16/BF16 bit patterns", "[safetensors]") {
    TempDir dir;
    const float values[4] = {1.0f, -2.5f, 0.375f, -1024.0f};  // exact in both types
    std::vector<uint16_t> h(4), b(4);
    for (int i = 0; i < 4; ++i) h[i] = f32_to_fp16(values[i]), b[i] = f32_to_bf16(values[i]);
    Tensor th, tb;
    th.name = "h", th.dtype = DType::F16, th.ne = {2, 2, 1, 1}, th.n_dims = 2;
    th.nb = contiguous_strides(DType::F16, th.ne), th.data = h.data();
    tb = th, tb.name = "b", tb.dtype = DType::BF16, tb.data = b.data();
    const std::string path = (dir / "v.safetensors").string();
    write_safetensors(path, {th, tb});
    const auto f = SafetensorsFile::open(path);
    const auto* gh = static_cast<const uint16_t*>(f.tensor("h").data);
    const auto* gb = static_cast<const uint16_t*>(f.tensor("b").data);
    for (int i = 0; i < 4; ++i) {
        CHECK(fp16_to_f32(gh[i]) == values[i]);
        CHECK(bf16_to_f32(gb[i]) == values[i]);
    }
}

TEST_CASE("safetensors shapes are reversed into ggml order", "[safetensors]") {
    // [out=2, in=3] in the file is ne = {3, 2}; a scalar [] is ne = {1}, n_dims 1.
    const std::string header =
        R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"s":{"dtype":"F32","shape":[],"data_offsets":[24,28]}})";
    std::vector<uint8_t> data(28);
    const float v = 42.0f;
    std::memcpy(data.data() + 24, &v, 4);
    const auto bytes = st_bytes(header, data);
    const auto f = SafetensorsFile::parse_memory(bytes.data(), bytes.size(), "mem");
    const Tensor& w = f.tensor("w");
    CHECK(w.n_dims == 2);
    CHECK(w.ne == std::array<int64_t, 4>{3, 2, 1, 1});
    CHECK(w.shape_string() == "[3, 2]");
    const Tensor& s = f.tensor("s");
    CHECK(s.n_dims == 1);
    CHECK(s.numel() == 1);
    CHECK(*f32_data(s) == 42.0f);
    CHECK(s.storage == nullptr);  // parse_memory views do not own
}

TEST_CASE("safetensors accepts plain integer and F64 types", "[safetensors]") {
    for (const char* dt : {"F64", "I64", "I32", "I16", "I8"}) {
        const int sz = dt[1] == '8' ? 1 : dt[1] == '1' ? 2 : dt[1] == '3' ? 4 : 8;
        const std::string h = std::string(R"({"t":{"dtype":")") + dt + R"(","shape":[4],"data_offsets":[0,)" +
                              std::to_string(4 * sz) + "]}}";
        const auto bytes = st_bytes(h, std::vector<uint8_t>(4 * sz));
        const auto f = SafetensorsFile::parse_memory(bytes.data(), bytes.size(), "mem");
        CHECK(dtype_name(f.tensor("t").dtype) == dt);
    }
}

TEST_CASE("safetensors missing files and tensors give clear errors", "[safetensors]") {
    TempDir dir;
    try {
        SafetensorsFile::open((dir / "nope.safetensors").string());
        FAIL("opened a missing file");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::BadInput);
        CHECK(std::string(e.what()).find("nope.safetensors") != std::string::npos);
    }
    const auto bytes = st_bytes(kOneF32, std::vector<uint8_t>(24));
    const auto f = SafetensorsFile::parse_memory(bytes.data(), bytes.size(), "m.safetensors");
    try {
        f.tensor("lm_head.weight");
        FAIL("found a missing tensor");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Model);
        CHECK(std::string(e.what()) == "m.safetensors: no tensor named \"lm_head.weight\"");
    }
}

TEST_CASE("safetensors truncated at every prefix is refused cleanly", "[safetensors][hostile]") {
    std::vector<uint8_t> data(24, 0);
    const auto full = st_bytes(kOneF32, data);
    SafetensorsFile::parse_memory(full.data(), full.size(), "bad.safetensors");  // the whole file is fine
    for (size_t n = 0; n < full.size(); ++n) {
        INFO("prefix " << n);
        std::vector<uint8_t> cut(full.begin(), full.begin() + long(n));
        require_model_error(cut, n < 8 ? "too short" : n < 8 + 64 ? "header length" : "outside");
    }
}

TEST_CASE("safetensors header length must fit the file and the cap", "[safetensors][hostile]") {
    require_model_error(st_bytes_len(1000, "{}"), "exceeds the file");
    require_model_error(st_bytes_len(uint64_t(1) << 63, "{}"), "exceeds the file");
    require_model_error(st_bytes_len(UINT64_MAX, "{}"), "exceeds the file");
    // A header over the 100 MiB cap, inside a file that is big enough to hold it.
    const uint64_t big = kSafetensorsMaxHeaderBytes + 8;
    std::vector<uint8_t> huge = st_bytes_len(big, std::string(size_t(big), ' '));
    require_model_error(huge, "MiB limit");
}

TEST_CASE("safetensors header JSON must be a well-formed object", "[safetensors][hostile]") {
    require_model_error(st_bytes("not json at all", {}), "not valid JSON");
    require_model_error(st_bytes(R"({"w":)", {}), "not valid JSON");
    require_model_error(st_bytes("{}\x01", {}, false), "not valid JSON");
    require_model_error(st_bytes("{\"\xff\":1}", {}), "not valid JSON");  // invalid UTF-8
    require_model_error(st_bytes("[1,2]", {}), "not an object");
    require_model_error(st_bytes("\"text\"", {}), "not an object");
    require_model_error(st_bytes(std::string(100, '[') + std::string(100, ']'), {}), "nested deeper");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}})", {0, 0, 0, 0}),
                        "nested deeper");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                 R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                 std::vector<uint8_t>(8)),
                        "repeats the key \"w\"");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})",
                                 std::vector<uint8_t>(4)),
                        "repeats the key \"dtype\"");
    // An empty object is a valid (empty) file.
    const auto empty = st_bytes("{}", {});
    CHECK(SafetensorsFile::parse_memory(empty.data(), empty.size(), "e").tensors().empty());
}

TEST_CASE("safetensors entries must have exactly dtype, shape and data_offsets", "[safetensors][hostile]") {
    const std::vector<uint8_t> d(24);
    require_model_error(st_bytes(R"({"w":{"shape":[2,3],"data_offsets":[0,24]}})", d), "exactly the keys");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","data_offsets":[0,24]}})", d), "exactly the keys");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3]}})", d), "exactly the keys");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24],"x":1}})", d),
                        "exactly the keys");
    require_model_error(st_bytes(R"({"w":[1,2,3]})", d), "not an object");
    require_model_error(st_bytes(R"({"w":{"dtype":7,"shape":[2,3],"data_offsets":[0,24]}})", d), "dtype is not a string");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":"2,3","data_offsets":[0,24]}})", d), "not an array");
}

TEST_CASE("safetensors shapes must be small non-negative integer lists", "[safetensors][hostile]") {
    const std::vector<uint8_t> d(24);
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[-2,3],"data_offsets":[0,24]}})", d),
                        "not a non-negative integer");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[2.0,3],"data_offsets":[0,24]}})", d),
                        "not a non-negative integer");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[2,"3"],"data_offsets":[0,24]}})", d),
                        "not a non-negative integer");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[1,1,1,2,3],"data_offsets":[0,24]}})", d),
                        "5 dimensions");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,24]}})", d),
                        "impossibly large");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", d),
                        "impossibly large");
    // Even an empty tensor may not have absurd other dimensions (numel() would overflow).
    require_model_error(
        st_bytes(R"({"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", d),
        "impossibly large");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,24]}})", d),
                        "not a non-negative integer");  // beyond u64: parsed as a float
}

TEST_CASE("safetensors data_offsets must match the shape and stay inside the data", "[safetensors][hostile]") {
    const std::vector<uint8_t> d(24);
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,28]}})", d), "outside");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[24,0]}})", d), "outside");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,-24]}})", d),
                        "two non-negative integers");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0]}})", d),
                        "two non-negative integers");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,18446744073709551615]}})", d),
                        "outside");
    // The JSON header that lies: a shape that needs more (or fewer) bytes than its offsets span.
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[2,4],"data_offsets":[0,24]}})", d), "needs 32 bytes");
    require_model_error(st_bytes(R"({"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,24]}})", d), "needs 12 bytes");
    require_model_error(st_bytes(R"({"w":{"dtype":"F32","shape":[],"data_offsets":[0,0]}})", d), "needs 4 bytes");
}

TEST_CASE("safetensors tensors may not overlap or be misaligned", "[safetensors][hostile]") {
    const std::vector<uint8_t> d(24);
    require_model_error(st_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                                 d),
                        "overlap");
    require_model_error(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                 d),
                        "overlap");
    require_model_error(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[2,10]}})", d), "not a multiple");
    // an unpadded header makes the data start misaligned
    require_model_error(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d, false),
                        "not a multiple");
    // gaps and empty tensors sharing an offset are fine
    const auto ok = st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})",
                             d);
    const auto f = SafetensorsFile::parse_memory(ok.data(), ok.size(), "ok");
    CHECK(f.tensors().size() == 3);
    CHECK(f.tensors()[0].name == "a");
    CHECK(f.tensors()[2].name == "b");
}

TEST_CASE("safetensors refuses dtypes glimpse cannot read and bad metadata", "[safetensors][hostile]") {
    const std::vector<uint8_t> d(24);
    for (const char* dt : {"U8", "BOOL", "F8_E4M3", "F8_E5M2", "U64", "f32", ""})
        require_model_error(st_bytes(std::string(R"({"w":{"dtype":")") + dt +
                                         R"(","shape":[1],"data_offsets":[0,1]}})",
                                     d),
                            std::string("dtype \"") + dt + "\"");
    require_model_error(st_bytes(R"({"__metadata__":{"format":1}})", {}), "__metadata__ key \"format\"");
    require_model_error(st_bytes(R"({"__metadata__":["pt"]})", {}), "__metadata__ is not an object");
    require_model_error(st_bytes(R"({"__metadata__":{"a":{"b":"c"}}})", {}), "is not a string");
    // names with control characters are escaped so the message stays on one line
    require_model_error(st_bytes("{\"bad\\nname\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", d),
                        "bad\\x0aname");
}

TEST_CASE("write_safetensors refuses what the format cannot hold", "[safetensors]") {
    TempDir dir;
    std::vector<uint8_t> buf;
    const Tensor q = owned_tensor("q", DType::Q8_0, {32, 1, 1, 1}, 1, buf, 0);
    const std::string path = (dir / "q.safetensors").string();
    CHECK_THROWS_WITH(write_safetensors(path, {q}), Catch::Contains("type Q8_0"));
    std::vector<uint8_t> b1, b2;
    const Tensor a = owned_tensor("a", DType::F32, {2, 1, 1, 1}, 1, b1, 0);
    CHECK_THROWS_WITH(write_safetensors(path, {a, a}), Catch::Contains("two tensors named \"a\""));
    Tensor strided = owned_tensor("s", DType::F32, {2, 2, 1, 1}, 2, b2, 0);
    strided.nb[1] = 4;  // not contiguous
    CHECK_THROWS_WITH(write_safetensors(path, {strided}), Catch::Contains("not contiguous"));
}
