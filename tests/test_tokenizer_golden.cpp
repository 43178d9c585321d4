// Tokenizers against the golden data (../shared/golden): llama.cpp's ids, pieces and
// detokenized text for every test string of both vocabularies (SmolVLM byte-level BPE with the
// smollm pre-tokenizer, Llama-2 SentencePiece), the exact prompts of every golden run, the
// Hugging Face processor's expanded SmolVLM prompts, round trips on the real vocabularies,
// tokenizer.json files built from the same vocabularies, and the llama2.c tokenizer checked
// against run.c's encode() rules (golden/stories260k/README.md) implemented here independently.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>
#include <unordered_map>

#include "core/error.h"
#include "tests/helpers.h"
#include "text/tokenizer.h"
#include "weights/gguf.h"
#include "weights/llama2c.h"

using namespace glimpse;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A piece as the golden files give it: {"text": "..."} or, when not valid UTF-8 on its own,
// {"bytes": [..]}.
std::string piece_bytes(const json& p) {
    if (p.contains("text")) return p["text"].get<std::string>();
    std::string s;
    for (const json& b : p["bytes"]) s += static_cast<char>(b.get<int>());
    return s;
}

const char* kModels[] = {"smolvlm-tiny", "llava-tiny"};

std::string gguf_of(const std::string& model) { return model + "/" + model + "-text-q8_0.gguf"; }

// One tokenizer per golden model for the whole test run.
const Tokenizer& golden_tokenizer(const fs::path& golden, const std::string& model) {
    static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
    auto& t = cache[model];
    if (!t) t = load_tokenizer_gguf(GgufFile::open((golden / gguf_of(model)).string()));
    return *t;
}

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
                                   "<",
                                   "image",
                                   ">",
                                   "|"};
    std::string s;
    for (size_t i = 0; i < n_pieces; ++i) s += pieces[r.below(std::size(pieces))];
    return s;
}

std::string random_valid_utf8(Rng& r, size_t n_chars) {
    std::string s;
    for (size_t i = 0; i < n_chars; ++i) {
        const uint32_t limits[] = {0x80, 0x800, 0x10000, 0x110000};
        const size_t k = r.below(4);
        const uint32_t lo = k == 0 ? 0 : limits[k - 1];
        uint32_t cp = lo + static_cast<uint32_t>(r.below(limits[k] - lo));
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'S';
        utf8::append(s, cp);
    }
    return s;
}

}  // namespace

TEST_CASE("tokenizer golden: llama.cpp's ids, pieces and detokenized text for every test string", "[tokenizer]") {
    GOLDEN_OR_SKIP(golden);
    for (const std::string model : kModels) {
        const Tokenizer& tok = golden_tokenizer(golden, model);
        const json j = glimpse::test::read_json(golden / model / "tokenize.json");
        REQUIRE(j["entries"].size() >= 20);
        for (const json& e : j["entries"]) {
            const std::string text = e["text"].get<std::string>();
            INFO(model << ": " << text);
            const auto plain = e["plain"].get<std::vector<int32_t>>();
            const auto special = e["special"].get<std::vector<int32_t>>();
            CHECK(tok.encode(text, false, false) == plain);
            CHECK(tok.encode(text, true, true) == special);
            CHECK(tok.decode(plain, false) == e["plain_detok"].get<std::string>());
            CHECK(tok.decode(special, true) == e["special_detok"].get<std::string>());
            for (const json& p : e["plain_pieces"])
                CHECK(tok.token_to_piece(p["id"].get<int32_t>(), true) == piece_bytes(p));
        }
    }
}

TEST_CASE("tokenizer golden: the formatted prompts of every llama.cpp run", "[tokenizer]") {
    GOLDEN_OR_SKIP(golden);
    for (const std::string model : kModels) {
        const Tokenizer& tok = golden_tokenizer(golden, model);
        for (const char* run : {"ref", "ref-defaults", "f16", "q8_0", "ref-hf"}) {
            const fs::path path = golden / model / run / "result.json";
            if (!fs::exists(path)) continue;
            const json r = glimpse::test::read_json(path);
            for (const json& t : r["text_prompts"]) {
                INFO(model << "/" << run << ": " << t["prompt"].get<std::string>());
                CHECK(tok.encode(t["prompt"].get<std::string>(), true, true) == t["tokens"].get<std::vector<int32_t>>());
            }
            // Image prompts: mtmd tokenizes the text between image chunks one chunk at a time,
            // BOS only on the first. The chunk's text is its pieces joined (for the SentencePiece
            // vocabulary less BOS and the one leading space every chunk gets).
            for (const json& ip : r["image_prompts"]) {
                std::vector<std::string> texts;
                bool first = true;
                for (const json& c : ip["chunks"]) {
                    if (c["type"] != "text" || !c.contains("pieces")) continue;
                    const auto ids = c["tokens"].get<std::vector<int32_t>>();
                    std::string text;
                    size_t k = 0;
                    if (first && tok.add_bos() && !ids.empty() && ids[0] == tok.bos_id()) k = 1;
                    for (; k < c["pieces"].size(); ++k) text += piece_bytes(c["pieces"][k]);
                    if (model == "llava-tiny" && !text.empty() && text[0] == ' ') text.erase(0, 1);
                    INFO(model << "/" << run << " " << ip["id"].get<std::string>() << " chunk: " << text);
                    CHECK(tok.encode(text, first, true) == ids);
                    texts.push_back(text);
                    first = false;
                }
                if (model == "llava-tiny" && texts.size() == 2)  // the reconstruction is the prompt
                    CHECK(texts[0] + "<__media__>" + texts[1] == ip["prompt"].get<std::string>());
            }
        }
    }
}

TEST_CASE("tokenizer golden: SmolVLM prompts expanded by the Hugging Face processor", "[tokenizer]") {
    GOLDEN_OR_SKIP(golden);
    const Tokenizer& tok = golden_tokenizer(golden, "smolvlm-tiny");
    const json r = glimpse::test::read_json(golden / "smolvlm-tiny" / "ref-hf-e2e" / "result.json");
    const int32_t image = *tok.id_of("<image>");
    for (const json& ip : r["image_prompts"]) {
        auto expected = ip["sequence"].get<std::vector<int32_t>>();
        for (auto& id : expected)
            if (id < 0) id = image;  // -1 marks an image position; the prompt has <image> there
        INFO(ip["prompt_expanded"].get<std::string>());
        CHECK(tok.encode(ip["prompt_expanded"].get<std::string>(), true, true) == expected);
    }
}

TEST_CASE("tokenizer golden: round trips on the real vocabularies", "[tokenizer]") {
    GOLDEN_OR_SKIP(golden);
    Rng r(2024);
    SECTION("SmolVLM byte-level BPE: every byte string over the bytes the vocabulary has") {
        const Tokenizer& tok = golden_tokenizer(golden, "smolvlm-tiny");
        std::string covered;
        for (int b = 0; b < 256; ++b)
            if (tok.id_of(utf8::encode(byte_to_standin(static_cast<uint8_t>(b))))) covered += static_cast<char>(b);
        CHECK(covered.size() == 242);  // StarCoder's vocabulary lacks C0 C1 F1 F5..FF
        for (int round = 0; round < 300; ++round) {
            std::string text;
            if (round % 3 == 0) {
                for (int i = 0; i < 40; ++i) text += covered[r.below(covered.size())];  // mostly invalid UTF-8
            } else {
                text = round % 3 == 1 ? random_text(r, 12) : random_valid_utf8(r, 30);
                if (text.find('\xF1') != std::string::npos) continue;  // planes 4-7: lead byte F1 has no token
            }
            INFO(test::shell_quote(text));
            REQUIRE(tok.decode(tok.encode(text, false, false), false) == text);
            REQUIRE(tok.decode(tok.encode(text, true, true), true) == text);  // specials render as their text
        }
        // A byte without a token is dropped, as llama.cpp drops it.
        CHECK(tok.decode(tok.encode("a\xFF" "b", false, false)) == "ab");
    }
    SECTION("Llama SentencePiece: valid UTF-8 without U+2581; anything else is still defined") {
        const Tokenizer& tok = golden_tokenizer(golden, "llava-tiny");
        for (int round = 0; round < 300; ++round) {
            const std::string text = round % 2 ? random_text(r, 12) : random_valid_utf8(r, 30);
            if (text.find("\xE2\x96\x81") != std::string::npos) continue;
            INFO(test::shell_quote(text));
            REQUIRE(tok.decode(tok.encode(text, false, false), false) == text);
        }
        for (int round = 0; round < 100; ++round) {
            std::string bytes;
            for (int i = 0; i < 40; ++i) bytes += static_cast<char>(r.below(256));
            for (int32_t id : tok.encode(bytes, true, true)) REQUIRE((id >= 0 && id < tok.n_vocab()));
            (void)tok.decode(tok.encode(bytes, false, false));
        }
    }
}

TEST_CASE("tokenizer golden: a streamed decode prints whole characters only", "[tokenizer]") {
    GOLDEN_OR_SKIP(golden);
    for (const std::string model : kModels) {
        const Tokenizer& tok = golden_tokenizer(golden, model);
        const std::string text = "🦙🚀 emoji 👍🏽 Привет 日本語のテキスト ａｂｃ";
        TokenStream stream(tok);
        std::string out;
        for (int32_t id : tok.encode(text, false, false)) {
            const std::string part = stream.push(id);
            REQUIRE(utf8::is_valid(part));
            out += part;
        }
        out += stream.flush();
        // The SentencePiece stream keeps the leading space the encoder added (generation
        // continues after a prompt, so nothing is stripped).
        CHECK(out == (model == "llava-tiny" ? " " + text : text));
    }
}

TEST_CASE("tokenizer golden: 100 KB of text, and one 100 KB word", "[tokenizer]") {
    GOLDEN_OR_SKIP(golden);
    Rng r(9);
    std::string text;
    while (text.size() < 100000) text += random_text(r, 1);
    const std::string word(100000, 'a');
    for (const std::string model : kModels) {
        const Tokenizer& tok = golden_tokenizer(golden, model);
        for (const std::string* t : std::initializer_list<const std::string*>{&text, &word}) {
            const auto start = std::chrono::steady_clock::now();
            const auto ids = tok.encode(*t, false, false);
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
            INFO(model << ": " << t->size() << " bytes -> " << ids.size() << " tokens in " << ms << " ms");
            CHECK(tok.decode(ids, false) == *t);
            CHECK(ms < 20000);  // ~0.1 s here: only a quadratic regression would fail, even under ASan
        }
    }
}

// ---- tokenizer.json -------------------------------------------------------------------------

namespace {

// SmolLM2's tokenizer.json shape over the golden GGUF vocabulary.
json smolvlm_tokenizer_json(const GgufFile& f) {
    const auto& tokens = f.str_array_ref("tokenizer.ggml.tokens");
    const auto types = f.i32_array("tokenizer.ggml.token_type");
    json vocab = json::object(), added = json::array(), merges = json::array();
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (types[i] == 3)
            added.push_back({{"id", i}, {"content", tokens[i]}, {"special", true}, {"lstrip", false}, {"rstrip", false}});
        else vocab[tokens[i]] = i;
    }
    for (const auto& m : f.str_array_ref("tokenizer.ggml.merges")) {
        const size_t sp = m.find(' ', 1);
        merges.push_back({m.substr(0, sp), m.substr(sp + 1)});  // the newer [a, b] form
    }
    return {{"version", "1.0"},
            {"added_tokens", added},
            {"normalizer", nullptr},
            {"pre_tokenizer",
             {{"type", "Sequence"},
              {"pretokenizers",
               {{{"type", "Digits"}, {"individual_digits", true}},
                {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}}}}},
            {"post_processor", nullptr},
            {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
            {"model",
             {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
              {"vocab", vocab}, {"merges", merges}}}};
}

// Llama-2's tokenizer.json shape over the golden SentencePiece vocabulary. Merges are made the
// way transformers' SentencePieceExtractor makes them: every split of a piece into two pieces,
// ordered by the score of the merged piece (best first).
json llama_tokenizer_json(const GgufFile& f, bool metaspace) {
    const auto& tokens = f.str_array_ref("tokenizer.ggml.tokens");
    const auto scores = f.f32_array("tokenizer.ggml.scores");
    std::unordered_map<std::string, size_t> id;
    json vocab = json::object();
    for (size_t i = 0; i < tokens.size(); ++i) {
        id[tokens[i]] = i;
        vocab[tokens[i]] = i;
    }
    struct M {
        size_t l, r;
        float score;
    };
    std::vector<M> ms;
    for (size_t i = 0; i < tokens.size(); ++i) {
        std::vector<M> local;
        const std::string& t = tokens[i];
        for (size_t pos = utf8::decode_at(t, 0).len; pos < t.size(); pos += utf8::decode_at(t, pos).len) {
            auto a = id.find(t.substr(0, pos)), b = id.find(t.substr(pos));
            if (a != id.end() && b != id.end()) local.push_back({a->second, b->second, scores[i]});
        }
        std::sort(local.begin(), local.end(),
                  [](const M& x, const M& y) { return std::tie(x.l, x.r) < std::tie(y.l, y.r); });
        ms.insert(ms.end(), local.begin(), local.end());
    }
    std::stable_sort(ms.begin(), ms.end(), [](const M& x, const M& y) { return x.score > y.score; });
    json merges = json::array();
    for (const M& m : ms) merges.push_back(tokens[m.l] + " " + tokens[m.r]);  // the older "a b" form
    json added = json::array();
    for (size_t i = 0; i < 3; ++i) added.push_back({{"id", i}, {"content", tokens[i]}, {"special", true}});
    const std::string meta = "\xE2\x96\x81";
    const json bos_template = json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}});
    json root = json::object();
    root["added_tokens"] = added;
    root["post_processor"] = {{"type", "TemplateProcessing"}, {"single", bos_template}};
    root["model"] = {{"type", "BPE"},     {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true},
                     {"vocab", vocab},    {"merges", merges}};
    if (metaspace) {
        root["normalizer"] = nullptr;
        root["pre_tokenizer"] = {
            {"type", "Metaspace"}, {"replacement", meta}, {"prepend_scheme", "first"}, {"split", false}};
    } else {
        root["normalizer"] = {{"type", "Sequence"},
                              {"normalizers",
                               {{{"type", "Prepend"}, {"prepend", meta}},
                                {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", meta}}}}};
        root["pre_tokenizer"] = nullptr;
    }
    return root;
}

void write_json(const fs::path& p, const json& j) { test::write_file(p, j.dump()); }

}  // namespace

TEST_CASE("tokenizer golden: tokenizer.json (SmolLM2 shape) gives llama.cpp's ids", "[tokenizer]") {
    GOLDEN_OR_SKIP(golden);
    test::TempDir dir;
    const GgufFile f = GgufFile::open((golden / gguf_of("smolvlm-tiny")).string());
    write_json(dir / "tokenizer.json", smolvlm_tokenizer_json(f));
    write_json(dir / "tokenizer_config.json", {{"bos_token", "<|im_start|>"}, {"eos_token", "<end_of_utterance>"}});
    write_json(dir / "generation_config.json", {{"eos_token_id", {49191, 0}}});
    const auto tok = load_tokenizer_hf_json((dir / "tokenizer.json").string());
    CHECK(tok->bos_id() == 49192);
    CHECK(tok->eos_id() == 49191);
    CHECK_FALSE(tok->add_bos());
    CHECK(tok->is_eog(0));
    CHECK(tok->is_eog(49191));
    const json entries = glimpse::test::read_json(golden / "smolvlm-tiny" / "tokenize.json")["entries"];
    for (const json& e : entries) {
        const std::string text = e["text"].get<std::string>();
        INFO(text);
        CHECK(tok->encode(text, false, false) == e["plain"].get<std::vector<int32_t>>());
        CHECK(tok->encode(text, true, true) == e["special"].get<std::vector<int32_t>>());
        CHECK(tok->decode(e["special"].get<std::vector<int32_t>>(), true) == e["special_detok"].get<std::string>());
    }
}

TEST_CASE("tokenizer golden: tokenizer.json (Llama-2 shape) gives llama.cpp's ids", "[tokenizer]") {
    GOLDEN_OR_SKIP(golden);
    test::TempDir dir;
    const GgufFile f = GgufFile::open((golden / gguf_of("llava-tiny")).string());
    write_json(dir / "tokenizer.json", llama_tokenizer_json(f, false));
    const auto tok = load_tokenizer_hf_json((dir / "tokenizer.json").string());
    CHECK(tok->add_bos());
    CHECK(tok->bos_id() == 1);
    CHECK(tok->unk_id() == 0);
    const json entries = glimpse::test::read_json(golden / "llava-tiny" / "tokenize.json")["entries"];
    for (const json& e : entries) {
        const std::string text = e["text"].get<std::string>();
        INFO(text);
        CHECK(tok->encode(text, false, false) == e["plain"].get<std::vector<int32_t>>());
        CHECK(tok->encode(text, true, true) == e["special"].get<std::vector<int32_t>>());
        CHECK(tok->decode(e["plain"].get<std::vector<int32_t>>(), false) == e["plain_detok"].get<std::string>());
        CHECK(tok->decode(e["special"].get<std::vector<int32_t>>(), true) == e["special_detok"].get<std::string>());
    }
    // The newer Metaspace form (prepend_scheme "first") prefixes "▁" only where none is: the
    // same ids for text that starts with a non-space, one "▁" less for text that starts with one.
    write_json(dir / "tokenizer.json", llama_tokenizer_json(f, true));
    const auto meta = load_tokenizer_hf_json((dir / "tokenizer.json").string());
    CHECK(meta->encode("Hello world", false, false) == std::vector<int32_t>{15043, 3186});
    CHECK(meta->encode(" Hello world", false, false) == std::vector<int32_t>{15043, 3186});
}

TEST_CASE("tokenizer golden: tokenizer.json errors name the file and the key", "[tokenizer]") {
    test::TempDir dir;
    auto expect = [&](const json& j, const std::string& what) {
        write_json(dir / "tokenizer.json", j);
        try {
            load_tokenizer_hf_json((dir / "tokenizer.json").string());
            FAIL("no error for " << what);
        } catch (const Error& e) {
            INFO(e.what());
            CHECK(e.kind() == ErrorKind::Model);
            CHECK_THAT(e.what(), Catch::Contains("tokenizer.json: ") && Catch::Contains(what));
        }
    };
    const json base = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}},
                       {"pre_tokenizer", {{"type", "ByteLevel"}}}};
    json j = base;
    j["model"]["type"] = "Unigram";
    expect(j, "model.type");
    j = base;
    j["model"]["merges"] = {"a c"};
    expect(j, "model.merges[0]");
    j = base;
    j["model"]["vocab"]["gap"] = 7;
    expect(j, "ids must be contiguous");
    j = base;
    j["pre_tokenizer"] = {{"type", "Whitespace"}};
    expect(j, "pre_tokenizer");
    j = base;
    j["model"]["vocab"] = 5;
    expect(j, "model.vocab");
    j = base;
    j["pre_tokenizer"]["type"] = 3;
    expect(j, "pre_tokenizer");
    CHECK_THROWS_AS(load_tokenizer_hf_json((dir / "missing.json").string()), Error);
}

// ---- llama2.c --------------------------------------------------------------------------------

namespace {

// run.c's encode(), written from golden/stories260k/README.md: BOS, the " " token as a dummy
// prefix, each UTF-8 character its token or its bytes (id 3 + byte), then repeatedly the
// adjacent pair whose concatenation has the best score merges (first such pair on ties).
std::vector<int32_t> llama2c_reference_encode(const std::vector<std::string>& vocab, const std::vector<float>& scores,
                                              const std::string& text) {
    auto lookup = [&](const std::string& s) -> int32_t {
        for (size_t i = 0; i < vocab.size(); ++i)
            if (vocab[i] == s) return static_cast<int32_t>(i);
        return -1;
    };
    std::vector<int32_t> t = {1};
    if (!text.empty()) t.push_back(lookup(" "));
    for (size_t pos = 0; pos < text.size();) {
        size_t len = 1;
        while (pos + len < text.size() && (static_cast<uint8_t>(text[pos + len]) & 0xC0) == 0x80 && len < 4) ++len;
        const std::string ch = text.substr(pos, len);
        if (const int32_t id = lookup(ch); id >= 0) t.push_back(id);
        else for (char b : ch) t.push_back(3 + static_cast<uint8_t>(b));
        pos += len;
    }
    for (;;) {
        float best = -1e10f;
        int best_id = -1, best_at = -1;
        for (size_t i = 1; i + 1 < t.size(); ++i) {  // t[0] is BOS
            const int32_t id = lookup(vocab[t[i]] + vocab[t[i + 1]]);
            if (id >= 0 && scores[id] > best) best = scores[id], best_id = id, best_at = static_cast<int>(i);
        }
        if (best_at < 0) break;
        t[best_at] = best_id;
        t.erase(t.begin() + best_at + 1);
    }
    return t;
}

}  // namespace

TEST_CASE("tokenizer golden: llama2.c tok512.bin encodes as run.c does", "[tokenizer]") {
    GOLDEN_OR_SKIP(golden);
    const std::string bin = (golden / "stories260k" / "tok512.bin").string();
    const auto tok = load_tokenizer_llama2c(bin, 512);
    const Llama2cTokenizer raw = Llama2cTokenizer::open(bin, 512);
    const auto& vocab = raw.pieces();
    const auto& scores = raw.scores();

    const auto ids = tok->encode("Once upon a time", true, true);
    CHECK(ids == llama2c_reference_encode(vocab, scores, "Once upon a time"));
    CHECK(ids.front() == 1);
    CHECK(ids.size() <= 8);
    std::string joined;
    for (size_t i = 1; i < ids.size(); ++i) joined += vocab[ids[i]];
    CHECK(joined == " Once upon a time");
    CHECK(tok->decode(std::vector<int32_t>(ids.begin() + 1, ids.end())) == "Once upon a time");

    Rng r(260);
    for (int round = 0; round < 60; ++round) {
        const std::string text = round % 2 ? random_text(r, 6) : random_valid_utf8(r, 12);
        if (text.find("\xE2\x96\x81") != std::string::npos) continue;
        INFO(test::shell_quote(text));
        REQUIRE(tok->encode(text, true, false) == llama2c_reference_encode(vocab, scores, text));
        const auto plain = tok->encode(text, false, false);
        REQUIRE(tok->decode(plain) == text);
    }
    CHECK(tok->eos_id() == 2);
    CHECK(tok->token_to_piece(1, true) == "<s>");
}

// ---- glimpse tokenize ------------------------------------------------------------------------

TEST_CASE("tokenize command: ids, table, files, errors", "[tokenizer]") {
    GOLDEN_OR_SKIP(golden);
    REQUIRE(test::run_glimpse("tokenize --help").exit_code == 0);
    const std::string smol = test::shell_quote((golden / gguf_of("smolvlm-tiny")).string());
    const std::string llava = test::shell_quote((golden / gguf_of("llava-tiny")).string());

    auto r = test::run_glimpse("tokenize -m " + smol + " --ids 'Hello world'");
    CHECK(r.exit_code == 0);
    CHECK(r.out == "8302 5810\n");
    r = test::run_glimpse("tokenize -m " + llava + " --ids 'Hello world'");
    CHECK(r.out == "1 15043 3186\n");
    r = test::run_glimpse("tokenize -m " + llava + " --ids --no-bos 'Hello world'");
    CHECK(r.out == "15043 3186\n");
    r = test::run_glimpse("tokenize -m " + smol + " --ids '<image>x'");
    CHECK(r.out == "49190 125\n");
    r = test::run_glimpse("tokenize -m " + smol + " --ids --no-special '<image>'");
    CHECK(r.out == "65 915 67\n");

    r = test::run_glimpse("tokenize -m " + smol + " " + test::shell_quote("<|im_start|>User:\n🦙"));
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::Contains("49192  <|im_start|>  (special)") && Catch::Contains("'User'") &&
                          Catch::Contains("'\\n'") && Catch::Contains("<0xF0><0x9F>") && Catch::EndsWith("7 tokens\n"));

    test::TempDir dir;
    const std::string text = "line one\n\tline two\r\n\xFF end";
    test::write_file(dir / "in.txt", text);
    r = test::run_glimpse("tokenize -m " + smol + " --ids -f " + test::shell_quote((dir / "in.txt").string()));
    const auto ids = golden_tokenizer(golden, "smolvlm-tiny").encode(text, true, true);
    std::string expected;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) expected += ' ';
        expected += std::to_string(ids[i]);
    }
    CHECK(r.out == expected + "\n");
    r = test::run_glimpse("tokenize -m " + smol + " -f -");  // stdin is empty here
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::EndsWith("0 tokens\n"));

    const std::string stories = test::shell_quote((golden / "stories260k" / "stories260K.bin").string());
    const std::string tok512 = test::shell_quote((golden / "stories260k" / "tok512.bin").string());
    r = test::run_glimpse("tokenize -m " + stories + " --tokenizer " + tok512 + " --ids 'Once upon a time'");
    CHECK(r.exit_code == 0);
    CHECK(r.out == "1 403 407 261 378\n");

    struct Bad {
        std::string args;
        int code;
    };
    for (const Bad& b :
         {Bad{"-m /no/such.gguf x", 2}, Bad{"-m " + smol + " -f /no/such.txt", 2},
          Bad{"-m " + test::shell_quote((golden / "smolvlm-tiny" / "mmproj-smolvlm-tiny-f16.gguf").string()) + " x", 3},
          Bad{"-m " + test::shell_quote((golden / "README.md").string()) + " x", 3}, Bad{"-m " + smol, 1},
          Bad{"-m " + stories + " x", 1}}) {
        r = test::run_glimpse("tokenize " + b.args);
        INFO(b.args << " -> " << r.err);
        CHECK(r.exit_code == b.code);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
}
