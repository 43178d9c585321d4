// Tokenizers without the golden models: UTF-8 handling and the streaming decoder, the
// pre-tokenizer scanners against their regexes worked by hand, BPE and SentencePiece merging
// on tiny vocabularies whose answers can be read off, and hostile GGUF tokenizer metadata.
// (The golden vocabularies, llama.cpp's ids and the HF tokenizer.json loader are in
// test_tokenizer_golden.cpp.)
#include <catch2/catch.hpp>

#include <cstdio>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tests/helpers.h"
#include "text/pretokenize.h"
#include "text/tokenizer.h"
#include "text/utf8.h"
#include "weights/gguf.h"

using namespace glimpse;

namespace {

using Words = std::vector<std::string>;

Words words(std::string_view text, PreTokenizer kind) {
    Words w;
    for (auto v : pretokenize(text, kind)) w.emplace_back(v);
    return w;
}

// xorshift64: the same seed gives the same strings on every run.
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    }
    size_t below(size_t n) { return static_cast<size_t>(next() % n); }
};

// Random text from pieces a tokenizer must handle: ASCII words and code, whitespace runs,
// Cyrillic, CJK, emoji with joiners and modifiers, accents, digits.
std::string random_text(Rng& r, size_t n_pieces) {
    static const char* pieces[] = {"Hello",
                                   " world",
                                   "  ",
                                   "\n",
                                   "\n\n",
                                   "\t",
                                   " \n ",
                                   "   ",
                                   "x",
                                   "'s",
                                   "'LL",
                                   " don't",
                                   "Привет",
                                   " мир",
                                   "ёж",
                                   "日本語",
                                   "中文",
                                   "한국어",
                                   "🦙",
                                   "👍🏽",
                                   "👨\u200d👩\u200d👧",
                                   "naïve",
                                   "café",
                                   "—",
                                   "“q”",
                                   "12",
                                   "3.14",
                                   "1,000",
                                   "int main() { return 0; }",
                                   "x**2",
                                   "#",
                                   "\u00A0",
                                   "\u3000",
                                   "ｆｕｌｌ",
                                   "e\u0301",
                                   "\r\n",
                                   "$",
                                   "<",
                                   ">",
                                   "|"};
    std::string s;
    for (size_t i = 0; i < n_pieces; ++i) s += pieces[r.below(std::size(pieces))];
    return s;
}

std::string random_valid_utf8(Rng& r, size_t n_chars) {
    std::string s;
    for (size_t i = 0; i < n_chars; ++i) {
        uint32_t cp;
        switch (r.below(4)) {
        case 0: cp = static_cast<uint32_t>(r.below(0x80)); break;
        case 1: cp = 0x80 + static_cast<uint32_t>(r.below(0x800 - 0x80)); break;
        case 2: cp = 0x800 + static_cast<uint32_t>(r.below(0x10000 - 0x800)); break;
        default: cp = 0x10000 + static_cast<uint32_t>(r.below(0x110000 - 0x10000)); break;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'S';
        utf8::append(s, cp);
    }
    return s;
}

std::string random_bytes(Rng& r, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += static_cast<char>(r.below(256));
    return s;
}

std::string stand_in(char byte) { return utf8::encode(byte_to_standin(static_cast<uint8_t>(byte))); }

// A byte-level vocabulary: ids 0..255 are the bytes' stand-ins, then `extra` tokens (written
// as plain text, mapped here), then specials. Merges are given as plain-text pairs.
struct ByteLevelVocab {
    VocabSpec spec;
    int32_t id(const std::string& plain) const {
        std::string mapped;
        for (char c : plain) mapped += stand_in(c);
        for (size_t i = 0; i < spec.tokens.size(); ++i)
            if (spec.tokens[i] == mapped) return static_cast<int32_t>(i);
        FAIL("no token " << plain);
        return -1;
    }
};

ByteLevelVocab byte_level_vocab(const std::vector<std::string>& extra,
                                const std::vector<std::pair<std::string, std::string>>& merges) {
    ByteLevelVocab v;
    v.spec.source = "test-vocab";
    auto map = [](const std::string& plain) {
        std::string m;
        for (char c : plain) m += stand_in(c);
        return m;
    };
    for (int b = 0; b < 256; ++b) v.spec.tokens.push_back(stand_in(static_cast<char>(b)));
    for (const auto& t : extra) v.spec.tokens.push_back(map(t));
    v.spec.types.assign(v.spec.tokens.size(), TokenType::Normal);
    for (const auto& [a, b] : merges) v.spec.merges.emplace_back(map(a), map(b));
    return v;
}

std::vector<int32_t> ids_of(const ByteLevelVocab& v, const std::vector<std::string>& plain) {
    std::vector<int32_t> out;
    for (const auto& p : plain) out.push_back(v.id(p));
    return out;
}

}  // namespace

// ---- UTF-8 -------------------------------------------------------------------------------

TEST_CASE("utf8: characters, and invalid bytes as maximal subparts", "[tokenizer]") {
    auto at = [](std::string_view s) { return utf8::decode_at(s, 0); };
    CHECK(at("A").cp == 'A');
    CHECK(at("\xC3\xA9").cp == 0xE9);
    CHECK(at("\xE2\x82\xAC").cp == 0x20AC);
    CHECK(at("\xF0\x9F\x98\x80").cp == 0x1F600);
    CHECK(at("\xF0\x9F\x98\x80").len == 4);
    struct Bad {
        std::string s;
        uint32_t len;
    };
    for (const Bad& b : {Bad{"\x80", 1}, Bad{"\xC0\x80", 1}, Bad{"\xC1\xBF", 1}, Bad{"\xE2\x82(", 2}, Bad{"\xED\xA0\x80", 1},
                         Bad{"\xE0\x80\x80", 1}, Bad{"\xF0\x80\x80\x80", 1}, Bad{"\xF4\x90\x80\x80", 1}, Bad{"\xF5", 1},
                         Bad{"\xFF", 1}, Bad{"\xF0\x9F\x98", 3}, Bad{"\xF0\x9F", 2}}) {
        INFO("bytes " << test::shell_quote(b.s));
        CHECK_FALSE(at(b.s).valid);
        CHECK(at(b.s).len == b.len);
    }
    CHECK(utf8::is_valid("héllo €😀"));
    CHECK_FALSE(utf8::is_valid("h\xE9llo"));
    CHECK(utf8::sanitize("a\xE2\x82(b\xFF") == "a\xEF\xBF\xBD(b\xEF\xBF\xBD");
    CHECK(utf8::sanitize("ok ✓") == "ok ✓");
    CHECK(utf8::incomplete_tail("ab\xF0\x9F") == 2);
    CHECK(utf8::incomplete_tail("ab\xE2\x82\xAC") == 0);
    CHECK(utf8::incomplete_tail("\xE2(") == 0);
    CHECK(utf8::incomplete_tail("\xC3") == 1);
    CHECK(utf8::incomplete_tail("\xF0\x80") == 0);  // can never complete: overlong
    CHECK(utf8::encode(0xD800) == "\xEF\xBF\xBD");
}

TEST_CASE("utf8: the streaming decoder never emits part of a character", "[tokenizer]") {
    Rng r(7);
    for (int round = 0; round < 200; ++round) {
        const std::string text = round % 2 ? random_text(r, 20) : random_valid_utf8(r, 40);
        utf8::StreamDecoder d;
        std::string out;
        for (size_t pos = 0; pos < text.size();) {
            const size_t n = 1 + r.below(5);
            const std::string got = d.push(std::string_view(text).substr(pos, n));
            REQUIRE(utf8::is_valid(got));
            out += got;
            pos += n;
        }
        CHECK_FALSE(d.pending());
        out += d.flush();
        REQUIRE(out == text);
    }
    utf8::StreamDecoder d;
    CHECK(d.push("\xE2\x82") == "");
    CHECK(d.pending());
    CHECK(d.push("\xAC!") == "€!");
    CHECK(d.push("\xE2\x82") == "");
    CHECK(d.push("(") == "\xEF\xBF\xBD(");  // an interrupted sequence is one U+FFFD
    CHECK(d.push("\xF0\x9F") == "");
    CHECK(d.flush() == "\xEF\xBF\xBD");      // cut off at the end of the stream
    CHECK(d.push("\xFF\x80x") == "\xEF\xBF\xBD\xEF\xBF\xBDx");
    // Arbitrary bytes in arbitrary pieces: every output is valid UTF-8.
    for (int round = 0; round < 100; ++round) {
        const std::string bytes = random_bytes(r, 64);
        utf8::StreamDecoder s;
        for (size_t pos = 0; pos < bytes.size(); pos += 3)
            REQUIRE(utf8::is_valid(s.push(std::string_view(bytes).substr(pos, 3))));
        REQUIRE(utf8::is_valid(s.flush()));
    }
}

// ---- pre-tokenizers ------------------------------------------------------------------------

TEST_CASE("pretokenize: GPT-2 regex alternatives", "[tokenizer]") {
    const auto k = PreTokenizer::Gpt2;
    CHECK(words("Hello world", k) == Words{"Hello", " world"});
    CHECK(words("a  b   c", k) == Words{"a", " ", " b", "  ", " c"});                 // \s+(?!\S) leaves one space
    CHECK(words("I've 'told' HE'S", k) == Words{"I", "'ve", " '", "told", "'", " HE", "'", "S"});  // case-sensitive
    CHECK(words("x\n\n  y", k) == Words{"x", "\n\n ", " y"});
    CHECK(words("trailing   ", k) == Words{"trailing", "   "});
    CHECK(words("3.14 1,000", k) == Words{"3", ".", "14", " 1", ",", "000"});
    CHECK(words("\t\ttabs\tand\u00A0nbsp", k) == Words{"\t", "\t", "tabs", "\t", "and", "\u00A0", "nbsp"});
    CHECK(words("Привет, мир", k) == Words{"Привет", ",", " мир"});
    CHECK(words("🦙🚀 ok", k) == Words{"🦙🚀", " ok"});  // emoji are symbols: [^\s\p{L}\p{N}]+
    CHECK(words("x\xFF\xFEy", k) == Words{"x", "\xFF\xFE", "y"});  // invalid bytes: no class, kept as they are
    CHECK(words("", k).empty());
}

TEST_CASE("pretokenize: digits one by one before GPT-2 (starcoder, smollm)", "[tokenizer]") {
    const auto k = PreTokenizer::DigitsGpt2;
    CHECK(words("3.14", k) == Words{"3", ".", "1", "4"});
    CHECK(words("The year 2024", k) == Words{"The", " year", " ", "2", "0", "2", "4"});
    CHECK(words("x٣y", k) == Words{"x", "٣", "y"});  // Arabic-Indic digit three is \p{N}
}

TEST_CASE("pretokenize: Llama-3 and Qwen2 regexes", "[tokenizer]") {
    CHECK(words("12345", PreTokenizer::Llama3) == Words{"123", "45"});
    CHECK(words("12345", PreTokenizer::Qwen2) == Words{"1", "2", "3", "4", "5"});
    CHECK(words("Hello world", PreTokenizer::Llama3) == Words{"Hello", " world"});
    CHECK(words("I'VE we'Ll", PreTokenizer::Llama3) == Words{"I", "'VE", " we", "'Ll"});  // case-insensitive
    CHECK(words("a\n\n b", PreTokenizer::Llama3) == Words{"a", "\n\n", " b"});             // \s*[\r\n]+
    CHECK(words("(hello) x  \n", PreTokenizer::Llama3) == Words{"(hello", ")", " x", "  \n"});
    CHECK(words("!!\n\nok", PreTokenizer::Llama3) == Words{"!!\n\n", "ok"});  // ?[^\s\p{L}\p{N}]+[\r\n]*
    CHECK(words("\tfoo", PreTokenizer::Qwen2) == Words{"\tfoo"});            // any non-newline, non-L/N prefix
}

TEST_CASE("pretokenize: llama.cpp default BPE pre-tokenizer", "[tokenizer]") {
    const auto k = PreTokenizer::LlamaCppDefault;
    CHECK(words("abc+=1234567", k) == Words{"abc", "+=", "123", "456", "7"});
    CHECK(words("hi, there", k) == Words{"hi", ",", " there"});
}

TEST_CASE("pretokenize: words cover any input exactly", "[tokenizer]") {
    Rng r(11);
    for (auto kind : {PreTokenizer::Gpt2, PreTokenizer::DigitsGpt2, PreTokenizer::Llama3, PreTokenizer::Qwen2,
                      PreTokenizer::LlamaCppDefault}) {
        for (int round = 0; round < 60; ++round) {
            const std::string text = round % 3 == 0   ? random_bytes(r, 50)
                                     : round % 3 == 1 ? random_text(r, 15)
                                                      : random_valid_utf8(r, 30);
            std::string joined;
            for (auto w : pretokenize(text, kind)) {
                REQUIRE_FALSE(w.empty());
                joined += w;
            }
            REQUIRE(joined == text);
        }
    }
}

// ---- byte-level BPE on a tiny vocabulary -------------------------------------------------------

TEST_CASE("bpe: lowest rank merges first, leftmost among equal ranks", "[tokenizer]") {
    {
        const auto v = byte_level_vocab({"aa", "aaaa"}, {{"a", "a"}, {"aa", "aa"}});
        const auto tok = make_bpe_tokenizer(v.spec, {});
        CHECK(tok->encode("aaa", false, false) == ids_of(v, {"aa", "a"}));  // not {a, aa}
        CHECK(tok->encode("aaaa", false, false) == ids_of(v, {"aaaa"}));
        CHECK(tok->encode("aaaaa", false, false) == ids_of(v, {"aaaa", "a"}));
    }
    {
        const auto v = byte_level_vocab({"bc", "ab"}, {{"b", "c"}, {"a", "b"}});
        CHECK(make_bpe_tokenizer(v.spec, {})->encode("abc", false, false) == ids_of(v, {"a", "bc"}));
    }
    {
        const auto v = byte_level_vocab({"bc", "ab"}, {{"a", "b"}, {"b", "c"}});
        CHECK(make_bpe_tokenizer(v.spec, {})->encode("abc", false, false) == ids_of(v, {"ab", "c"}));
    }
    {
        // Words never merge across a pre-tokenizer boundary: " a" is one word, "a a" two.
        const auto v = byte_level_vocab({" a", "a "}, {{"a", " "}, {" ", "a"}});
        const auto tok = make_bpe_tokenizer(v.spec, {});
        CHECK(tok->encode("a a", false, false) == ids_of(v, {"a", " a"}));
        CHECK(tok->decode(tok->encode("a a", false, false)) == "a a");
        CHECK(tok->token_to_piece(v.id(" a")) == " a");
        CHECK(tok->token_text(v.id(" a")) == "\xC4\xA0" "a");  // stored as "Ġa"
    }
}

TEST_CASE("bpe: special tokens, BOS/EOS, end of generation", "[tokenizer]") {
    auto v = byte_level_vocab({"ab"}, {{"a", "b"}});
    const int32_t ctl = 257, ctl_long = 258, user = 259, im_end = 260;
    v.spec.tokens.insert(v.spec.tokens.end(), {"<|x|>", "<|x|>y", "<u>", "<|im_end|>"});
    v.spec.types.insert(v.spec.types.end(),
                        {TokenType::Control, TokenType::Control, TokenType::UserDefined, TokenType::Control});
    v.spec.bos = ctl;
    v.spec.eos = ctl_long;
    const auto plain_tok = make_bpe_tokenizer(v.spec, {});
    CHECK(plain_tok->encode("ab<|x|>ab", true, true) == std::vector<int32_t>{v.id("ab"), ctl, v.id("ab")});
    CHECK(plain_tok->encode("<|x|>y<|x|>", true, true) == std::vector<int32_t>{ctl_long, ctl});  // longest first
    // Without parse_special, control text is ordinary text; user-defined tokens still match.
    const auto no_special = plain_tok->encode("<|x|><u>", false, false);
    CHECK(no_special.back() == user);
    CHECK(no_special.size() == 6);  // < | x | > as bytes, then <u>
    CHECK(plain_tok->decode(no_special) == "<|x|><u>");
    CHECK(plain_tok->decode(std::vector<int32_t>{ctl, v.id("ab")}, false) == "ab");
    CHECK(plain_tok->decode(std::vector<int32_t>{ctl, v.id("ab")}, true) == "<|x|>ab");
    CHECK(plain_tok->is_special(ctl));
    CHECK_FALSE(plain_tok->is_special(user));
    CHECK(plain_tok->eog_ids() == std::vector<int32_t>{ctl_long, im_end});  // EOS and <|im_end|> by name
    CHECK(plain_tok->id_of("<u>") == user);
    CHECK_FALSE(plain_tok->id_of("nope"));

    v.spec.add_bos = v.spec.add_eos = true;
    const auto tok = make_bpe_tokenizer(v.spec, {});
    CHECK(tok->encode("ab", true, false) == std::vector<int32_t>{ctl, v.id("ab"), ctl_long});
    CHECK(tok->encode("ab", false, false) == std::vector<int32_t>{v.id("ab")});
    CHECK(tok->encode("", true, true) == std::vector<int32_t>{ctl, ctl_long});

    // lstrip / rstrip (HF added tokens) swallow the whitespace beside the token.
    v.spec.add_bos = v.spec.add_eos = false;
    v.spec.strip.assign(v.spec.tokens.size(), 0);
    v.spec.strip[user] = 3;
    const auto strip_tok = make_bpe_tokenizer(v.spec, {});
    CHECK(strip_tok->encode("ab  <u> \nab", false, false) == std::vector<int32_t>{v.id("ab"), user, v.id("ab")});
}

TEST_CASE("bpe: bytes without a token are dropped and block merges", "[tokenizer]") {
    auto v = byte_level_vocab({"aa"}, {{"a", "a"}});
    v.spec.tokens[0xFF] = "unused-slot";  // the vocabulary has no token for byte 0xFF
    const auto tok = make_bpe_tokenizer(v.spec, {});
    CHECK(tok->encode("a\xFF" "a", false, false) == ids_of(v, {"a", "a"}));
    CHECK(tok->encode("\xFF", false, false).empty());
}

TEST_CASE("bpe: any byte string round-trips through a complete byte-level vocabulary", "[tokenizer]") {
    const auto v = byte_level_vocab({"he", "ll", "hell", "hello", " w", " wo"},
                                    {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {" w", "o"}});
    for (auto pre : {PreTokenizer::Gpt2, PreTokenizer::DigitsGpt2, PreTokenizer::Llama3, PreTokenizer::Qwen2}) {
        BpeOptions opt;
        opt.pre = pre;
        const auto tok = make_bpe_tokenizer(v.spec, opt);
        CHECK(tok->encode("hello wo", false, false) == ids_of(v, {"hello", " wo"}));
        Rng r(3);
        for (int round = 0; round < 100; ++round) {
            const std::string text = round % 2 ? random_bytes(r, 40) : random_text(r, 10);
            REQUIRE(tok->decode(tok->encode(text, false, false)) == text);
        }
    }
}

TEST_CASE("bpe: merges that name unknown tokens are a model error", "[tokenizer]") {
    auto v = byte_level_vocab({"ab"}, {{"a", "b"}, {"ab", "zz"}});
    try {
        make_bpe_tokenizer(v.spec, {});
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Model);
        CHECK_THAT(e.what(), Catch::Contains("test-vocab: merges[1]"));
    }
}

// ---- SentencePiece ---------------------------------------------------------------------------

namespace {

// <unk> <s> </s>, the 256 byte tokens, then scored pieces ("_" written for "▁").
VocabSpec spm_vocab(const std::vector<std::pair<std::string, float>>& pieces) {
    VocabSpec v;
    v.source = "spm-vocab";
    v.tokens = {"<unk>", "<s>", "</s>"};
    v.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
    v.scores = {0, 0, 0};
    for (int b = 0; b < 256; ++b) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        v.tokens.push_back(buf);
        v.types.push_back(TokenType::Byte);
        v.scores.push_back(0);
    }
    for (const auto& [p, s] : pieces) {
        std::string t;
        for (char c : p) t += c == '_' ? std::string("\xE2\x96\x81") : std::string(1, c);
        v.tokens.push_back(t);
        v.types.push_back(TokenType::Normal);
        v.scores.push_back(s);
    }
    v.unk = 0, v.bos = 1, v.eos = 2;
    v.add_bos = true;
    return v;
}

}  // namespace

TEST_CASE("spm: highest score merges first, byte fallback, leading space", "[tokenizer]") {
    // ids: 259 "_", 260 "a", 261 "b", 262 "_a", 263 "ab", 264 "_ab", 265 "c"
    const auto tok =
        make_spm_tokenizer(spm_vocab({{"_", -1}, {"a", -2}, {"b", -3}, {"_a", -5}, {"ab", -4}, {"_ab", -6}, {"c", -7}}));
    // "_ab": "ab" (-4) beats "_a" (-5); then "_" + "ab" -> "_ab".
    CHECK(tok->encode("ab", true, true) == std::vector<int32_t>{1, 264});
    CHECK(tok->encode("ab", false, false) == std::vector<int32_t>{264});
    CHECK(tok->encode("c a", false, false) == std::vector<int32_t>{259, 265, 262});
    // "é" has no piece: its two bytes.
    CHECK(tok->encode("é", false, false) == std::vector<int32_t>{259, 3 + 0xC3, 3 + 0xA9});
    // Every stretch of text gets the leading "▁", also after a special token.
    CHECK(tok->encode("<s>a", false, true) == std::vector<int32_t>{1, 262});
    CHECK(tok->encode("<s>a", false, false) != std::vector<int32_t>{1, 262});
    CHECK(tok->decode(std::vector<int32_t>{264}) == "ab");       // the prefixed space is dropped
    CHECK(tok->decode(std::vector<int32_t>{1, 264}, true) == "<s> ab");
    CHECK(tok->decode(std::vector<int32_t>{259, 264}) == " ab");  // only one space is
    CHECK(tok->token_to_piece(3 + 0xC3) == "\xC3");
    CHECK(tok->token_to_piece(0, false) == "");
    CHECK(tok->token_to_piece(0, true) == "<unk>");
    CHECK_THROWS_AS(tok->token_to_piece(10000), Error);
    Rng r(5);
    for (int round = 0; round < 200; ++round) {
        const std::string text = round % 2 ? random_valid_utf8(r, 20) : random_text(r, 8);
        if (text.find("\xE2\x96\x81") != std::string::npos) continue;  // "▁" decodes as a space
        REQUIRE(tok->decode(tok->encode(text, false, false)) == text);
    }
    for (int round = 0; round < 100; ++round) {  // invalid UTF-8: a defined result, no crash
        const std::string bytes = random_bytes(r, 30);
        for (int32_t id : tok->encode(bytes, true, true)) REQUIRE((id >= 0 && id < tok->n_vocab()));
    }
}

TEST_CASE("spm: equal scores merge leftmost first", "[tokenizer]") {
    // No space prefix; "aaa" has two equal-score "aa" pairs: the left one merges.
    const auto tok = make_spm_tokenizer(spm_vocab({{"_", -1}, {"a", -1}, {"aa", -2}}), false);
    CHECK(tok->encode("aaa", false, false) == std::vector<int32_t>{261, 260});
    CHECK(tok->decode(std::vector<int32_t>{261, 260}) == "aaa");  // no space prefix, nothing stripped
}

// ---- GGUF tokenizer metadata -----------------------------------------------------------------

namespace {

// A valid vocabulary-only byte-level GGUF: 256 stand-ins, "ab", and <|endoftext|>.
GgufWriter gpt2_gguf() {
    GgufWriter w;
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.push_back(stand_in(static_cast<char>(b)));
    tokens.push_back("ab");
    tokens.push_back("<|endoftext|>");
    std::vector<int32_t> types(tokens.size(), 1);
    types.back() = 3;
    w.set_str("general.architecture", "llama");
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_str("tokenizer.ggml.pre", "smollm");
    w.set_str_array("tokenizer.ggml.tokens", tokens);
    w.set_i32_array("tokenizer.ggml.token_type", types);
    w.set_str_array("tokenizer.ggml.merges", {"a b"});
    w.set_u32("tokenizer.ggml.eos_token_id", 257);
    w.set_u32("tokenizer.ggml.bos_token_id", 257);
    return w;
}

std::unique_ptr<Tokenizer> load(const GgufWriter& w) {
    const auto bytes = w.to_bytes();
    const GgufFile f = GgufFile::parse_memory(bytes.data(), bytes.size(), "vocab.gguf");
    return load_tokenizer_gguf(f);
}

void expect_model_error(const GgufWriter& w, const std::string& key) {
    try {
        load(w);
        FAIL("no error for " << key);
    } catch (const Error& e) {
        INFO(e.what());
        CHECK(e.kind() == ErrorKind::Model);
        CHECK_THAT(e.what(), Catch::StartsWith("vocab.gguf: ") && Catch::Contains(key));
        CHECK(std::string(e.what()).find('\n') == std::string::npos);
    }
}

}  // namespace

TEST_CASE("gguf tokenizer: a vocabulary-only file is enough", "[tokenizer]") {
    test::TempDir dir;
    gpt2_gguf().write((dir / "vocab.gguf").string());
    const auto tok = load_tokenizer_gguf(GgufFile::open((dir / "vocab.gguf").string()));
    CHECK(tok->n_vocab() == 258);
    CHECK(tok->encode("ab<|endoftext|>", true, true) == std::vector<int32_t>{256, 257});
    CHECK_FALSE(tok->add_bos());
    CHECK(tok->is_eog(257));
}

TEST_CASE("gguf tokenizer: hostile metadata gives a model error naming the key", "[tokenizer]") {
    SECTION("tokenizer.ggml.model missing") {
        GgufWriter w;
        w.set_str("general.architecture", "llama");
        expect_model_error(w, "tokenizer.ggml.model");
    }
    SECTION("unknown tokenizer model") {
        auto w = gpt2_gguf();
        w.set_str("tokenizer.ggml.model", "bert");
        expect_model_error(w, "tokenizer.ggml.model");
    }
    SECTION("unknown pre-tokenizer") {
        auto w = gpt2_gguf();
        w.set_str("tokenizer.ggml.pre", "klingon");
        expect_model_error(w, "tokenizer.ggml.pre");
    }
    SECTION("tokens missing") {
        GgufWriter w;
        w.set_str("tokenizer.ggml.model", "gpt2");
        w.set_str_array("tokenizer.ggml.merges", {"a b"});
        expect_model_error(w, "tokenizer.ggml.tokens");
    }
    SECTION("tokens of the wrong type") {
        auto w = gpt2_gguf();
        w.set_i32_array("tokenizer.ggml.tokens", {1, 2, 3});
        expect_model_error(w, "tokenizer.ggml.tokens");
    }
    SECTION("tokens empty") {
        auto w = gpt2_gguf();
        w.set_str_array("tokenizer.ggml.tokens", {});
        expect_model_error(w, "tokenizer.ggml.tokens");
    }
    SECTION("merges referencing unknown tokens") {
        auto w = gpt2_gguf();
        w.set_str_array("tokenizer.ggml.merges", {"a b", "ab zz"});
        expect_model_error(w, "tokenizer.ggml.merges[1]");
    }
    SECTION("a merge without a space") {
        auto w = gpt2_gguf();
        w.set_str_array("tokenizer.ggml.merges", {"ab"});
        expect_model_error(w, "tokenizer.ggml.merges[0]");
    }
    SECTION("merges missing") {
        auto w = gpt2_gguf();
        GgufWriter w2;
        for (const auto& kv : w.metadata())
            if (kv.key != "tokenizer.ggml.merges") w2.set(kv.key, kv.value);
        expect_model_error(w2, "tokenizer.ggml.merges");
    }
    SECTION("token_type of the wrong length") {
        auto w = gpt2_gguf();
        w.set_i32_array("tokenizer.ggml.token_type", {1, 1, 1});
        expect_model_error(w, "tokenizer.ggml.token_type");
    }
    SECTION("token_type value out of range") {
        auto w = gpt2_gguf();
        std::vector<int32_t> types(258, 1);
        types[5] = 99;
        w.set_i32_array("tokenizer.ggml.token_type", types);
        expect_model_error(w, "tokenizer.ggml.token_type[5]");
    }
    SECTION("bos id out of range") {
        auto w = gpt2_gguf();
        w.set_u32("tokenizer.ggml.bos_token_id", 258);
        expect_model_error(w, "tokenizer.ggml.bos_token_id");
    }
    SECTION("eos id of the wrong type") {
        auto w = gpt2_gguf();
        w.set_str("tokenizer.ggml.eos_token_id", "</s>");
        expect_model_error(w, "tokenizer.ggml.eos_token_id");
    }
    SECTION("add_bos without a bos id") {
        auto w = gpt2_gguf();
        GgufWriter w2;
        for (const auto& kv : w.metadata())
            if (kv.key != "tokenizer.ggml.bos_token_id") w2.set(kv.key, kv.value);
        w2.set_bool("tokenizer.ggml.add_bos_token", true);
        expect_model_error(w2, "tokenizer.ggml.add_bos_token");
    }
    SECTION("SentencePiece scores of the wrong length") {
        GgufWriter w;
        w.set_str("tokenizer.ggml.model", "llama");
        w.set_str_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\xE2\x96\x81"});
        w.set_f32_array("tokenizer.ggml.scores", {0, 0});
        expect_model_error(w, "tokenizer.ggml.scores");
    }
}

// ---- tokenizer.json pre-tokenizer shapes -------------------------------------------------------

TEST_CASE("hf tokenizer.json: the pre_tokenizer decides how digits are cut", "[tokenizer]") {
    // Stand-ins of all bytes, then "12", "34" (merged) and "45" (no merge: only ignore_merges
    // can produce it).
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) vocab[stand_in(static_cast<char>(b))] = b;
    vocab["12"] = 256;
    vocab["34"] = 257;
    vocab["45"] = 258;
    const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    auto split = [](const std::string& regex) {
        return nlohmann::json{
            {"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
    };
    const std::string llama3 =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    const std::string qwen2 =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    nlohmann::json no_regex = byte_level;
    no_regex["use_regex"] = false;
    struct Case {
        nlohmann::json pre;
        bool ignore_merges;
        std::vector<int32_t> ids;
    };
    const Case cases[] = {
        {byte_level, false, {256, 257, '5'}},                                             // one word "12345"
        {{{"type", "Sequence"}, {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level}}},
         false, {'1', '2', '3', '4', '5'}},
        {{{"type", "Sequence"}, {"pretokenizers", {split(llama3), no_regex}}}, false, {256, '3', '4', '5'}},  // "123" "45"
        {{{"type", "Sequence"}, {"pretokenizers", {split(llama3), no_regex}}}, true, {256, '3', 258}},         // "45" whole
        {{{"type", "Sequence"}, {"pretokenizers", {split(qwen2), no_regex}}}, false, {'1', '2', '3', '4', '5'}},
    };
    test::TempDir dir;
    for (const Case& c : cases) {
        const nlohmann::json j = {
            {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"1 2", "3 4"}}, {"ignore_merges", c.ignore_merges}}},
            {"pre_tokenizer", c.pre}};
        test::write_file(dir / "tokenizer.json", j.dump());
        const auto tok = load_tokenizer_hf_json((dir / "tokenizer.json").string());
        INFO(c.pre.dump());
        CHECK(tok->encode("12345", true, true) == c.ids);
        CHECK(tok->decode(tok->encode("x 12345 y", true, true)) == "x 12345 y");
    }
    nlohmann::json bad = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
                          {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {split("\\w+"), no_regex}}}}};
    test::write_file(dir / "tokenizer.json", bad.dump());
    CHECK_THROWS_WITH(load_tokenizer_hf_json((dir / "tokenizer.json").string()), Catch::Contains("Split pattern"));
}
