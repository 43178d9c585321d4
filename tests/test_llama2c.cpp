#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/helpers.h"
#include "weights/llama2c.h"

using namespace glimpse;
using glimpse::test::TempDir;
using glimpse::test::write_file;

namespace {

// (resize + memcpy rather than insert: GCC 12 warns falsely about small vector inserts)
void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
    const size_t at = out.size();
    out.resize(at + n);
    std::memcpy(out.data() + at, p, n);
}
void put_i32(std::vector<uint8_t>& out, int32_t v) { put_bytes(out, &v, 4); }
void put_f32(std::vector<uint8_t>& out, float v) { put_bytes(out, &v, 4); }

// A checkpoint with header h[7] and `floats` float32 values 0, 1, 2, ... (the value of a
// float is its index in the data, so a view's first value tells where it starts).
std::vector<uint8_t> checkpoint(const std::array<int32_t, 7>& h, uint64_t floats) {
    std::vector<uint8_t> out;
    for (int32_t v : h) put_i32(out, v);
    for (uint64_t i = 0; i < floats; ++i) put_f32(out, float(i));
    return out;
}

// Float count run.c expects for a header (independent arithmetic from the loader's).
uint64_t expected_floats(const std::array<int32_t, 7>& h) {
    const uint64_t dim = h[0], hid = h[1], L = h[2], nh = h[3], nkv = h[4], seq = h[6];
    const uint64_t vocab = uint64_t(std::abs(h[5])), hs = dim / nh;
    uint64_t n = vocab * dim + L * dim + L * dim * dim + 2 * L * dim * nkv * hs + L * dim * dim + L * dim +
                 3 * L * dim * hid + dim + seq * hs;  // seq*hs/2 twice: the two RoPE tables
    if (h[5] < 0) n += vocab * dim;
    return n;
}

const std::array<int32_t, 7> kTiny = {8, 12, 2, 4, 2, 5, 3};  // dim hid layers heads kv vocab seq

void require_ck_error(const std::vector<uint8_t>& bytes, const std::string& what) {
    INFO("expecting an error containing: " << what);
    try {
        Llama2cCheckpoint::parse_memory(bytes.data(), bytes.size(), "bad.bin");
        FAIL("parse succeeded");
    } catch (const Error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(e.kind() == ErrorKind::Model);
        CHECK(msg.rfind("bad.bin: ", 0) == 0);
        CHECK(msg.find('\n') == std::string::npos);
        CHECK(msg.find(what) != std::string::npos);
    }
}

std::vector<uint8_t> tokenizer_bytes(int32_t max_len, const std::vector<std::pair<float, std::string>>& toks) {
    std::vector<uint8_t> out;
    put_i32(out, max_len);
    for (const auto& [score, piece] : toks) {
        put_f32(out, score);
        put_i32(out, int32_t(piece.size()));
        put_bytes(out, piece.data(), piece.size());
    }
    return out;
}

void require_tok_error(const std::vector<uint8_t>& bytes, int vocab, const std::string& what) {
    INFO("expecting an error containing: " << what);
    try {
        Llama2cTokenizer::parse_memory(bytes.data(), bytes.size(), "tok.bin", vocab);
        FAIL("parse succeeded");
    } catch (const Error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(e.kind() == ErrorKind::Model);
        CHECK(msg.rfind("tok.bin: ", 0) == 0);
        CHECK(msg.find(what) != std::string::npos);
    }
}

}  // namespace

TEST_CASE("llama2c stories260K opens with the published config", "[llama2c]") {
    GOLDEN_OR_SKIP(golden);
    const std::string path = (golden / "stories260k" / "stories260K.bin").string();
    REQUIRE(Llama2cCheckpoint::looks_like(path));
    const auto ck = Llama2cCheckpoint::open(path);
    const Llama2cConfig& c = ck.config();
    CHECK(c.dim == 64);
    CHECK(c.hidden_dim == 172);
    CHECK(c.n_layers == 5);
    CHECK(c.n_heads == 8);
    CHECK(c.n_kv_heads == 4);
    CHECK(c.vocab_size == 512);
    CHECK(c.seq_len == 512);
    CHECK(c.shared_classifier);
    CHECK(c.head_size() == 8);
    CHECK(ck.find_tensor("wcls") == nullptr);
    CHECK_THROWS_WITH(ck.tensor("wcls"), Catch::Contains("use token_embedding_table"));

    const auto bytes = glimpse::test::read_file(path);
    float first = 0, last = 0;
    std::memcpy(&first, bytes.data() + 28, 4);
    const Tensor& emb = ck.tensor("token_embedding_table");
    CHECK(emb.ne == std::array<int64_t, 4>{64, 512, 1, 1});
    CHECK(f32_data(emb)[0] == first);
    CHECK(first == Approx(-0.29474878f));
    const Tensor& wk = ck.tensor("wk");
    CHECK(wk.ne == std::array<int64_t, 4>{64, 32, 5, 1});
    CHECK(wk.n_dims == 3);
    CHECK(ck.tensor("w2").ne == std::array<int64_t, 4>{172, 64, 5, 1});
    CHECK(ck.tensor("wo").ne == std::array<int64_t, 4>{64, 64, 5, 1});
    // rms_final_weight ends where the 2 × 512 × 4 floats of RoPE tables (the file's tail) begin
    const Tensor& fin = ck.tensor("rms_final_weight");
    const auto fin_end = static_cast<const uint8_t*>(fin.data) + fin.bytes();
    std::memcpy(&last, bytes.data() + bytes.size() - 4096 * 4 - 4, 4);
    CHECK(f32_data(fin)[63] == last);
    CHECK(uint64_t(fin_end - static_cast<const uint8_t*>(emb.data)) + 28 == bytes.size() - 4096 * 4);
    REQUIRE(ck.tensors().size() == 11);
}

TEST_CASE("llama2c tok512 opens with 512 sane pieces", "[llama2c]") {
    GOLDEN_OR_SKIP(golden);
    const auto tok = Llama2cTokenizer::open((golden / "stories260k" / "tok512.bin").string(), 512);
    CHECK(tok.max_token_length() == 7);
    REQUIRE(tok.pieces().size() == 512);
    REQUIRE(tok.scores().size() == 512);
    CHECK(tok.pieces()[0] == "<unk>");
    CHECK(tok.pieces()[1] == "\n<s>\n");
    char want[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(want, sizeof want, "<0x%02X>", b);
        CHECK(tok.pieces()[size_t(3 + b)] == want);
    }
    CHECK(tok.pieces()[259] == " t");
    CHECK(tok.scores()[260] == -1.0f);
    for (const auto& p : tok.pieces()) CHECK(int(p.size()) <= tok.max_token_length());
    // the vocabulary must match the checkpoint's: fewer tokens leaves bytes over, more runs out
    CHECK_THROWS_WITH(Llama2cTokenizer::open((golden / "stories260k" / "tok512.bin").string(), 511),
                      Catch::Contains("bytes follow"));
    CHECK_THROWS_WITH(Llama2cTokenizer::open((golden / "stories260k" / "tok512.bin").string(), 513),
                      Catch::Contains("ends inside token 512"));
}

TEST_CASE("llama2c synthetic checkpoints: shared and unshared classifier", "[llama2c]") {
    auto h = kTiny;
    for (bool shared : {true, false}) {
        h[5] = shared ? 5 : -5;
        const auto bytes = checkpoint(h, expected_floats(h));
        const auto ck = Llama2cCheckpoint::parse_memory(bytes.data(), bytes.size(), "tiny.bin");
        CHECK(ck.config().vocab_size == 5);
        CHECK(ck.config().shared_classifier == shared);
        // start index of each tensor in the float data: run.c's pointer walk
        const uint64_t d = 8, hid = 12, L = 2, kv = 4;
        const std::vector<std::pair<const char*, uint64_t>> starts = {
            {"token_embedding_table", 0},
            {"rms_att_weight", 5 * d},
            {"wq", 5 * d + L * d},
            {"wk", 5 * d + L * d + L * d * d},
            {"wv", 5 * d + L * d + L * d * d + L * d * kv},
            {"wo", 5 * d + L * d + L * d * d + 2 * L * d * kv},
            {"rms_ffn_weight", 5 * d + L * d + 2 * L * d * d + 2 * L * d * kv},
            {"w1", 5 * d + 2 * L * d + 2 * L * d * d + 2 * L * d * kv},
            {"w2", 5 * d + 2 * L * d + 2 * L * d * d + 2 * L * d * kv + L * d * hid},
            {"w3", 5 * d + 2 * L * d + 2 * L * d * d + 2 * L * d * kv + 2 * L * d * hid},
            {"rms_final_weight", 5 * d + 2 * L * d + 2 * L * d * d + 2 * L * d * kv + 3 * L * d * hid},
        };
        for (const auto& [name, start] : starts) {
            INFO(name);
            CHECK(f32_data(ck.tensor(name))[0] == float(start));
        }
        CHECK(ck.tensor("wk").ne == std::array<int64_t, 4>{8, 4, 2, 1});
        CHECK(ck.tensor("w1").ne == std::array<int64_t, 4>{8, 12, 2, 1});
        CHECK(ck.tensor("w2").ne == std::array<int64_t, 4>{12, 8, 2, 1});
        if (!shared) {
            const Tensor& wcls = ck.tensor("wcls");
            CHECK(wcls.ne == std::array<int64_t, 4>{8, 5, 1, 1});
            // after rms_final_weight (dim floats) and the RoPE tables (2 × seq × hs/2 = 3 × 2 floats)
            CHECK(f32_data(wcls)[0] == float(starts.back().second + d + 6));
            CHECK(f32_data(wcls)[39] == float(expected_floats(h) - 1));
        }
    }
}

TEST_CASE("llama2c looks_like accepts exactly consistent files", "[llama2c]") {
    TempDir dir;
    const auto good = checkpoint(kTiny, expected_floats(kTiny));
    write_file(dir / "good.bin", good);
    CHECK(Llama2cCheckpoint::looks_like((dir / "good.bin").string()));
    auto longer = good;
    longer.push_back(0);
    write_file(dir / "long.bin", longer);
    CHECK_FALSE(Llama2cCheckpoint::looks_like((dir / "long.bin").string()));
    write_file(dir / "gguf.bin", std::string("GGUF\x03\0\0\0 and more bytes in here", 31));
    CHECK_FALSE(Llama2cCheckpoint::looks_like((dir / "gguf.bin").string()));
    CHECK_FALSE(Llama2cCheckpoint::looks_like((dir / "missing.bin").string()));
    CHECK_FALSE(Llama2cCheckpoint::looks_like(dir.path().string()));
    const auto ck = Llama2cCheckpoint::open((dir / "good.bin").string());
    CHECK(ck.tensor("wq").storage != nullptr);
    try {
        Llama2cCheckpoint::open((dir / "missing.bin").string());
        FAIL("opened a missing file");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::BadInput);
    }
}

TEST_CASE("llama2c hostile checkpoints are refused", "[llama2c][hostile]") {
    const auto good = checkpoint(kTiny, expected_floats(kTiny));
    for (size_t n = 0; n < good.size(); n += (n < 64 ? 1 : 97)) {
        INFO("prefix " << n);
        require_ck_error(std::vector<uint8_t>(good.begin(), good.begin() + long(n)), n < 28 ? "too short" : "implies");
    }
    auto longer = good;
    longer.push_back(0);
    require_ck_error(longer, "header implies");
    // the unshared size with a shared header (and the reverse)
    auto h = kTiny;
    h[5] = -5;
    require_ck_error(checkpoint(kTiny, expected_floats(h)), "header implies");
    require_ck_error(checkpoint(h, expected_floats(kTiny)), "header implies");

    const std::vector<std::pair<std::array<int32_t, 7>, std::string>> bad_headers = {
        {{0, 12, 2, 4, 2, 5, 3}, "dim = 0"},
        {{-8, 12, 2, 4, 2, 5, 3}, "dim = -8"},
        {{8, 0, 2, 4, 2, 5, 3}, "hidden_dim = 0"},
        {{8, 12, -1, 4, 2, 5, 3}, "n_layers = -1"},
        {{8, 12, 2, 0, 2, 5, 3}, "n_heads = 0"},
        {{8, 12, 2, 16, 2, 5, 3}, "n_heads = 16"},
        {{8, 12, 2, 4, 0, 5, 3}, "n_kv_heads = 0"},
        {{8, 12, 2, 4, 8, 5, 3}, "n_kv_heads = 8"},
        {{8, 12, 2, 4, 2, 0, 3}, "|vocab_size| = 0"},
        {{8, 12, 2, 4, 2, INT32_MIN, 3}, "|vocab_size| = 2147483648"},
        {{8, 12, 2, 4, 2, 5, 0}, "seq_len = 0"},
        {{12, 12, 2, 5, 1, 5, 3}, "n_heads 5 does not divide dim 12"},
        {{12, 12, 2, 4, 1, 5, 3}, "head size 3 is odd"},
        {{8, 12, 2, 4, 3, 5, 3}, "n_kv_heads 3 does not divide n_heads 4"},
        {{0x616b3432, 1, 0, 0, 0, 0, 0}, "version-1/2 export"},
        {{65537, 12, 2, 1, 1, 5, 3}, "dim = 65537"},
        {{64, 1 << 21, 2, 1, 1, 5, 3}, "hidden_dim = 2097152"},
    };
    for (const auto& [hdr, what] : bad_headers) require_ck_error(checkpoint(hdr, 64), what);
    // A header whose implied size is huge (but within the bounds) is refused by size, without allocation.
    require_ck_error(checkpoint({65536, 1 << 20, 1024, 1, 1, 1 << 22, 1 << 20}, 16), "header implies");
}

TEST_CASE("llama2c tokenizer: synthetic file and hostile variants", "[llama2c][hostile]") {
    const std::vector<std::pair<float, std::string>> toks = {{0.f, "<unk>"}, {-1.f, "ab"}, {-2.f, ""}, {-3.f, "xyz"}};
    const auto good = tokenizer_bytes(5, toks);
    const auto tok = Llama2cTokenizer::parse_memory(good.data(), good.size(), "tok.bin", 4);
    CHECK(tok.max_token_length() == 5);
    CHECK(tok.pieces() == std::vector<std::string>{"<unk>", "ab", "", "xyz"});
    CHECK(tok.scores() == std::vector<float>{0.f, -1.f, -2.f, -3.f});

    for (size_t n = 0; n < good.size(); ++n)
        require_tok_error(std::vector<uint8_t>(good.begin(), good.begin() + long(n)), 4,
                          n < 4 ? "too short" : n < 4 + 8 * 4 ? "too short for 4 tokens" : "");
    auto trailing = good;
    trailing.push_back('!');
    require_tok_error(trailing, 4, "1 bytes follow the 4 tokens");
    require_tok_error(good, 5, "ends inside token 4 of 5");
    require_tok_error(good, 6, "too short for 6 tokens");
    require_tok_error(tokenizer_bytes(4, toks), 4, "token 0 has length 5 (max_token_length 4");
    require_tok_error(tokenizer_bytes(0, toks), 4, "max_token_length 0");
    require_tok_error(tokenizer_bytes(-7, toks), 4, "max_token_length -7");
    require_tok_error(tokenizer_bytes(5, {{std::nanf(""), "a"}, {0.f, "b"}}), 2, "NaN score");
    auto negative = tokenizer_bytes(5, {{0.f, "a"}, {0.f, "b"}});
    negative[4 + 4] = 0xff, negative[4 + 5] = 0xff, negative[4 + 6] = 0xff, negative[4 + 7] = 0xff;  // len = -1
    require_tok_error(negative, 2, "token 0 has length -1");
    require_tok_error(tokenizer_bytes(5, {{0.f, "a"}}), 0, "vocabulary size 0");
    require_tok_error(tokenizer_bytes(5, {{0.f, "a"}}), -512, "vocabulary size -512");
}
