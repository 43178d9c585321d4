// Structured output (text/json_schema.h): the byte automaton accepts valid documents byte by
// byte and refuses invalid ones at the first byte that cannot lead anywhere; generation with
// random logits over the golden SmolVLM vocabulary always ends in a document that parses and
// satisfies its schema; the mask equals what a byte-by-byte check of every token allows; and
// `glimpse describe --json-schema` prints JSON that validates, while a bad schema file is one
// line naming it.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tests/helpers.h"
#include "text/json_schema.h"
#include "text/sampler.h"
#include "text/tokenizer.h"
#include "weights/gguf.h"

using namespace glimpse;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// ---- a small validator of the supported subset, independent of the automaton ----------------

size_t code_points(const std::string& s) {
    size_t n = 0;
    for (unsigned char ch : s) n += (ch & 0xC0) != 0x80;
    return n;
}

bool has_type(const json& v, const std::string& t) {
    if (t == "object") return v.is_object();
    if (t == "array") return v.is_array();
    if (t == "string") return v.is_string();
    if (t == "number") return v.is_number();
    if (t == "integer") return v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
    if (t == "boolean") return v.is_boolean();
    if (t == "null") return v.is_null();
    return false;
}

// Empty when v satisfies s, else why not.
std::string violation(const json& v, const json& s) {
    if (s.is_boolean()) return s.get<bool>() ? "" : "false schema";
    if (s.contains("anyOf") || s.contains("oneOf")) {
        const json& alts = s.contains("anyOf") ? s["anyOf"] : s["oneOf"];
        int ok = 0;
        for (const json& a : alts) ok += violation(v, a).empty();
        if (ok == 0) return "no alternative matches " + v.dump();
        if (s.contains("oneOf") && ok > 1) return "several oneOf alternatives match " + v.dump();
        return "";
    }
    if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end())
        return v.dump() + " is not in the enum";
    if (s.contains("const") && v != s["const"]) return v.dump() + " is not the const";
    if (s.contains("type")) {
        const json& t = s["type"];
        bool ok = false;
        if (t.is_string()) ok = has_type(v, t.get<std::string>());
        else
            for (const json& x : t) ok = ok || has_type(v, x.get<std::string>());
        if (!ok) return v.dump() + " is not of type " + t.dump();
    }
    if (v.is_object()) {
        if (s.contains("required"))
            for (const json& r : s["required"])
                if (!v.contains(r.get<std::string>())) return "required " + r.dump() + " missing";
        if (s.contains("properties"))
            for (auto it = v.begin(); it != v.end(); ++it) {
                if (!s["properties"].contains(it.key())) return "property " + it.key() + " not in the schema";
                const std::string w = violation(it.value(), s["properties"][it.key()]);
                if (!w.empty()) return it.key() + ": " + w;
            }
    }
    if (v.is_array()) {
        if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return "fewer than minItems";
        if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return "more than maxItems";
        if (s.contains("items"))
            for (const json& x : v) {
                const std::string w = violation(x, s["items"]);
                if (!w.empty()) return "item: " + w;
            }
    }
    if (v.is_string()) {
        if (s.contains("maxLength") && code_points(v.get<std::string>()) > s["maxLength"].get<size_t>()) return "longer than maxLength";
        if (s.contains("minLength") && code_points(v.get<std::string>()) < s["minLength"].get<size_t>()) return "shorter than minLength";
    }
    return "";
}

JsonSchema schema(const std::string& text) { return JsonSchema::parse(text, "test.json"); }

// How many bytes of `doc` a fresh matcher takes.
size_t accepted(const JsonSchema& s, const std::string& doc) {
    JsonMatcher m(s);
    return m.feed(doc);
}

bool whole(const JsonSchema& s, const std::string& doc) {
    JsonMatcher m(s);
    return m.feed(doc) == doc.size() && m.complete();
}

const char* kObjectsColors = R"({
  "type": "object",
  "properties": {
    "objects": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
    "colors": {"type": "array", "items": {"enum": ["red", "green", "blue", "yellow"]}, "maxItems": 3}
  },
  "required": ["objects", "colors"]
})";

const char* kEveryType = R"({
  "type": "object",
  "description": "every supported kind",
  "properties": {
    "name": {"type": "string", "maxLength": 8},
    "count": {"type": "integer"},
    "score": {"type": "number"},
    "ok": {"type": "boolean"},
    "note": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
    "pos": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]},
    "tags": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 6}, "minItems": 1, "maxItems": 3},
    "kind": {"const": "scene"}
  },
  "required": ["name", "count", "pos"]
})";

}  // namespace

// ---- the automaton --------------------------------------------------------------------------

TEST_CASE("json automaton: valid documents are accepted byte by byte", "[json]") {
    const JsonSchema s = schema(kObjectsColors);
    CHECK(whole(s, R"({"objects":["cat","a tree"],"colors":["red","blue"]})"));
    CHECK(whole(s, "{\"objects\": [], \"colors\": []}"));
    CHECK(whole(s, "{\n\"objects\": [\"x\"],\n\"colors\": [\"green\"]\n}"));

    const JsonSchema e = schema(kEveryType);
    CHECK(whole(e, R"({"name":"ab","count":-12,"pos":{"x":0.5,"y":-3e+2}})"));
    CHECK(whole(e, R"({"name":"","count":0,"score":1.25E-7,"ok":false,"note":null,"pos":{"x":1,"y":2},"tags":["a"],"kind":"scene"})"));
    CHECK(whole(e, R"({"name":"\"q\\\u00e9\n","count":7,"note":"héllo","pos":{"x":1,"y":2}})"));
    // Each accepted prefix of a document is still accepted after a copy of the matcher.
    JsonMatcher m(e);
    const std::string doc = R"({"name":"x","count":1,"pos":{"x":1,"y":2}})";
    for (char ch : doc) {
        JsonMatcher copy(m);
        REQUIRE(copy.feed(uint8_t(ch)));
        REQUIRE(m.feed(uint8_t(ch)));
    }
    CHECK(m.complete());
    CHECK(m.can_end());
}

TEST_CASE("json automaton: invalid documents are refused at the first impossible byte", "[json]") {
    const JsonSchema s = schema(kObjectsColors);
    const std::string a = R"({"objects":[1]})";
    CHECK(accepted(s, a) == a.find('1'));  // a number where a string must be
    const std::string b = R"({"objects":[],"colours":[]})";
    CHECK(accepted(s, b) == b.find("colours") + 4);  // "colo" fits "colors", 'u' does not
    const std::string c = R"({"objects":[]})";
    CHECK(accepted(s, c) == c.size() - 1);  // '}' before the required "colors"
    const std::string d = R"({"colors":[],"objects":[]})";
    CHECK(accepted(s, d) == 2);  // properties in the schema's order: "objects" first
    const std::string e = R"({"objects":[],"colors":["purple"]})";
    CHECK(accepted(s, e) == e.find("purple"));
    const std::string f = R"({"objects":["abcdefghijklm"]})";
    CHECK(accepted(s, f) == f.find('m'));  // maxLength 12
    const std::string g = R"({"objects":["a","b","c","d","e"]})";
    CHECK(accepted(s, g) == g.find(",\"e\""));  // maxItems 4
    const std::string h = R"({"objects":[],"colors":[]} )";
    CHECK(accepted(s, h) == h.size() - 1);  // nothing after the document
    const std::string ws = "{  \"objects\"";
    CHECK(accepted(s, ws) == 2);  // one whitespace byte per gap
    const std::string trailing = R"({"objects":["a",]})";
    CHECK(accepted(s, trailing) == trailing.find(']'));

    const JsonSchema n = schema(kEveryType);
    const std::string p = R"({"name":"x","count":1.5})";
    CHECK(accepted(n, p) == p.find('.'));  // integer
    const std::string lead0 = R"({"name":"x","count":01})";
    CHECK(accepted(n, lead0) == lead0.find("01") + 1);
    const std::string ctrl = "{\"name\":\"a\tb\"";
    CHECK(accepted(n, ctrl) == ctrl.find('\t'));
    const std::string surrogate = R"({"name":"\ud800"})";
    CHECK(accepted(n, surrogate) == surrogate.find("800"));
    const std::string bad_utf8 = "{\"name\":\"\xC0\xAF\"";
    CHECK(accepted(n, bad_utf8) == bad_utf8.find('\xC0'));
    const std::string note = R"({"name":"x","count":1,"note":true})";
    CHECK(accepted(n, note) == note.find("true"));  // anyOf string | null
    const std::string kind = R"({"name":"x","count":1,"pos":{"x":1,"y":1},"kind":"scenery"})";
    CHECK(accepted(n, kind) == kind.find("ry\""));
    const std::string tags = R"({"name":"x","count":1,"pos":{"x":1,"y":1},"tags":[]})";
    CHECK(accepted(n, tags) == tags.find("]}"));  // minItems 1
}

TEST_CASE("json automaton: top-level scalars, enums and any JSON", "[json]") {
    const JsonSchema num = schema(R"({"type": "number"})");
    JsonMatcher m(num);
    REQUIRE(m.feed("-12.5") == 5);
    CHECK(m.can_end());
    CHECK_FALSE(m.complete());  // more digits could follow
    CHECK(m.feed("e") == 1);
    CHECK_FALSE(m.can_end());

    const JsonSchema e = schema(R"({"enum": ["a", 1, 12, true, null]})");
    JsonMatcher one(e);
    REQUIRE(one.feed("1") == 1);
    CHECK(one.can_end());  // 1, or the start of 12
    CHECK(one.feed("2") == 1);
    CHECK(one.complete());
    CHECK(whole(e, "\"a\""));
    CHECK(whole(e, "null"));
    CHECK(accepted(e, "13") == 1);
    CHECK(accepted(e, "\"b\"") == 1);

    for (const char* any : {"{}", R"({"type": "object"})", R"({"title": "anything"})"}) {
        const JsonSchema s = schema(any);
        INFO(any);
        CHECK(whole(s, R"({"a":[1,{"b":null},"x"],"c":{"d":[true,false,-0.5e3]}})"));
        CHECK(whole(s, "{}"));
        CHECK(accepted(s, "[1]") == 0);  // an object, not any value
    }
    // "Any value" nests only so deep: the innermost '[' is refused.
    const JsonSchema any_obj = schema("{}");
    const std::string deep = R"({"a":[[[[[[[1]]]]]]]})";
    CHECK(accepted(any_obj, deep) < deep.size());

    // Maps: an object without properties whose values follow additionalProperties.
    const JsonSchema map = schema(R"({"type": "object", "additionalProperties": {"type": "integer"}})");
    CHECK(whole(map, R"({"a":1,"b c":-2})"));
    CHECK(accepted(map, R"({"a":"x"})") == 5);
    const JsonSchema closed = schema(R"({"type": "object", "additionalProperties": false})");
    CHECK(whole(closed, "{}"));
    CHECK(accepted(closed, R"({"a":1})") == 1);

    const JsonSchema arr = schema(R"({"type": "array", "items": {"type": ["integer", "null"]}, "minItems": 2})");
    CHECK(whole(arr, "[1,null,-3]"));
    CHECK(accepted(arr, "[1]") == 2);
}

TEST_CASE("json schema: unsupported or malformed schemas are one-line usage errors naming the origin", "[json]") {
    auto error_of = [](const std::string& text) -> std::string {
        try {
            JsonSchema::parse(text, "shape.json");
        } catch (const Error& e) {
            CHECK(e.kind() == ErrorKind::Usage);
            return e.what();
        }
        return "";
    };
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"type": "object", "properties": {"a": {"$ref": "#/defs/x"}}})", "\"$ref\" (glimpse supports"},
        {R"({"type": "string", "pattern": "^a"})", "\"pattern\""},
        {R"({"type": "object", "patternProperties": {}})", "\"patternProperties\""},
        {R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})", "\"b\" is not in properties"},
        {R"({"anyOf": [{"type": "object"}, {"type": "object", "properties": {"a": {}}}]})", "both start with '{'"},
        {R"({"type": "strin"})", "unknown type \"strin\""},
        {R"({"type": "array", "minItems": 3, "maxItems": 2})", "minItems is larger"},
        {R"({"enum": [[1]]})", "scalars"},
        {R"({"type": "object", "properties": )", "not valid JSON"},
        {"", "not valid JSON"},
    };
    for (const auto& [text, expect] : cases) {
        INFO(text);
        const std::string what = error_of(text);
        CHECK(what.rfind("shape.json: ", 0) == 0);
        CHECK(what.find(expect) != std::string::npos);
        CHECK(what.find('\n') == std::string::npos);
    }
    CHECK(error_of(R"({"type": "object", "properties": {"a": {"$ref": "#"}}})").find("#/properties/a") != std::string::npos);
    // Annotations are ignored, not errors.
    CHECK(error_of(R"({"title": "t", "description": "d", "type": "string", "format": "date", "default": "x"})").empty());
    CHECK_THROWS_AS(JsonSchema::load("/nonexistent/schema.json"), Error);
}

// ---- generation over the golden SmolVLM vocabulary -------------------------------------------

namespace {

std::unique_ptr<Tokenizer> golden_smolvlm_tokenizer(const fs::path& golden) {
    return load_tokenizer_gguf(GgufFile::open((golden / "smolvlm-tiny" / "smolvlm-tiny-text-f32.gguf").string()));
}

struct Generated {
    std::string text;
    int tokens = 0;
    bool ended = false;  // complete, or an end-of-generation token where the document may end
};

// Draws tokens through the constraint until it is complete: fresh random logits every step,
// the sampler's argmax of them (so: a uniform draw among the allowed tokens). For the first
// cross_check steps the mask is also compared with a byte-by-byte check of every token.
Generated random_generation(const JsonSchema& s, const Tokenizer& tok, std::shared_ptr<const JsonVocab> vocab,
                            uint64_t seed, int max_tokens, int cross_check) {
    auto c = make_json_constraint(s, vocab);
    JsonMatcher shadow(s);
    Sampler sampler(SamplerParams{});  // greedy
    const int n_vocab = tok.n_vocab() + 6;  // a model's vocabulary may be padded past the tokenizer's
    Generated g;
    std::vector<float> logits(static_cast<size_t>(n_vocab));
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
    for (; g.tokens < max_tokens; ++g.tokens) {
        for (float& x : logits) {  // xorshift64: uniform in [-4, 4)
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            x = float(rng >> 40) * (8.0f / 16777216.0f) - 4.0f;
        }
        c->mask(logits.data(), n_vocab);
        if (g.tokens < cross_check) {
            for (int id = 0; id < n_vocab; ++id) {
                bool ok = false;
                if (id < tok.n_vocab()) {
                    if (tok.is_eog(id)) ok = shadow.can_end();
                    else {
                        const std::string piece = tok.token_to_piece(id, false);
                        JsonMatcher m(shadow);
                        ok = !piece.empty() && m.feed(piece) == piece.size();
                    }
                }
                if (ok != std::isfinite(logits[size_t(id)])) {
                    FAIL_CHECK("step " << g.tokens << " after '" << g.text << "': token " << id << " '"
                                       << (id < tok.n_vocab() ? tok.token_to_piece(id, true) : "")
                                       << "' mask says " << std::isfinite(logits[size_t(id)]) << ", bytes say " << ok);
                    return g;
                }
            }
        }
        const int32_t id = sampler.sample(logits.data(), n_vocab);
        REQUIRE(std::isfinite(logits[size_t(id)]));
        if (tok.is_eog(id)) {
            g.ended = true;
            break;
        }
        c->accept(id);
        const std::string piece = tok.token_to_piece(id, false);
        REQUIRE(shadow.feed(piece) == piece.size());
        g.text += piece;
        if (c->complete()) {
            g.ended = true;
            ++g.tokens;
            break;
        }
    }
    return g;
}

}  // namespace

TEST_CASE("json constraint: random-logit generation always gives a document that parses and validates", "[json][golden]") {
    GOLDEN_OR_SKIP(golden);
    const auto tok = golden_smolvlm_tokenizer(golden);
    const auto vocab = std::make_shared<const JsonVocab>(*tok);
    const std::vector<std::pair<std::string, int>> schemas = {
        {kObjectsColors, 25},
        {kEveryType, 25},
        {R"({"type": "array", "items": {"type": ["integer", "null"]}, "minItems": 2, "maxItems": 5})", 25},
        {R"({"enum": ["a", 1, 12, true, null, 2.5]})", 25},
        {R"({"type": "object", "properties": {"caption": {"type": "string", "maxLength": 40},
             "objects": {"type": "array", "items": {"type": "object",
               "properties": {"label": {"type": "string", "maxLength": 10}, "count": {"type": "integer"}},
               "required": ["label"]}, "maxItems": 3}}, "required": ["caption", "objects"]})", 25},
        {R"({"type": "object"})", 8},  // free strings: several hundred tokens on average
        {R"({"type": "number"})", 25},
    };
    int runs = 0;
    for (size_t k = 0; k < schemas.size(); ++k) {
        const JsonSchema s = schema(schemas[k].first);
        const json schema_json = json::parse(schemas[k].first);
        for (int run = 0; run < schemas[k].second; ++run, ++runs) {
            const Generated g = random_generation(s, *tok, vocab, 1000 * k + uint64_t(run), 20000, run == 0 ? 25 : 0);
            INFO("schema " << k << " run " << run << ": " << g.text);
            REQUIRE(g.ended);
            json v;
            REQUIRE_NOTHROW(v = json::parse(g.text));
            const std::string why = violation(v, schema_json);
            CHECK(why == "");
        }
    }
    CHECK(runs >= 50);
}

TEST_CASE("json constraint: the mask equals a byte-by-byte check of every token", "[json][golden]") {
    GOLDEN_OR_SKIP(golden);
    const auto tok = golden_smolvlm_tokenizer(golden);
    const auto vocab = std::make_shared<const JsonVocab>(*tok);
    // Strings with and without room (the bulk path), escapes, numbers, nesting.
    const JsonSchema s = schema(kEveryType);
    for (uint64_t seed : {1u, 2u, 3u}) {
        const Generated g = random_generation(s, *tok, vocab, seed, 400, 400);
        CHECK(g.ended);
    }
    const JsonSchema t = schema(R"({"type": "object", "properties": {"t": {"type": "string", "maxLength": 3}}, "required": ["t"]})");
    CHECK(random_generation(t, *tok, vocab, 9, 400, 400).ended);
    // A token sampled around the mask is refused.
    auto c = make_json_constraint(s, vocab);
    const auto id = tok->encode("hello", false, false);
    REQUIRE(id.size() == 1);
    CHECK_THROWS_AS(c->accept(id[0]), Error);
}

TEST_CASE("json constraint: mask time on the SmolVLM vocabulary", "[.][json-bench]") {
    GOLDEN_OR_SKIP(golden);
    const auto tok = golden_smolvlm_tokenizer(golden);
    auto t0 = std::chrono::steady_clock::now();
    const auto vocab = std::make_shared<const JsonVocab>(*tok);
    const double build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    for (const char* text : {kObjectsColors, kEveryType, R"({"type":"object","properties":{"caption":{"type":"string"}},"required":["caption"]})"}) {
        const JsonSchema s = schema(text);
        double mask_ms = 0;
        int steps = 0;
        for (uint64_t seed = 0; seed < 20; ++seed) {
            auto c = make_json_constraint(s, vocab);
            std::mt19937_64 rng(seed);
            std::uniform_real_distribution<float> uni(-4.0f, 4.0f);
            std::vector<float> logits(size_t(tok->n_vocab()));
            Sampler sampler(SamplerParams{1.0f, 0, 1.0f, 0.0f, 1.0f, 64, seed});
            for (int i = 0; i < 2000 && !c->complete(); ++i) {
                for (float& x : logits) x = uni(rng);
                t0 = std::chrono::steady_clock::now();
                c->mask(logits.data(), tok->n_vocab());
                mask_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                ++steps;
                const int32_t id = sampler.sample(logits.data(), tok->n_vocab());
                if (tok->is_eog(id)) break;
                c->accept(id);
            }
        }
        std::printf("vocab index %.1f ms; mask %.3f ms/token over %d tokens; schema %.40s...\n", build_ms, mask_ms / steps, steps, text);
    }
}

// ---- the command line ------------------------------------------------------------------------

TEST_CASE("describe CLI: --json-schema prints JSON that parses and validates", "[json][cli]") {
    test::TempDir tmp;
    test::write_file(tmp / "s.json", std::string(kObjectsColors));
    const std::string img = test::shell_quote(std::string(GLIMPSE_SOURCE_DIR) + "/examples/scene_1.png");
    const auto r = test::run_glimpse("describe " + img + " --json-schema " + test::shell_quote((tmp / "s.json").string()) +
                                     " -p 'Describe this image as JSON with fields objects and colors.' -n 200 -t 2");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    json v;
    REQUIRE_NOTHROW(v = json::parse(r.out));
    CHECK(violation(v, json::parse(kObjectsColors)) == "");

    // --json: the answer's stop reason says the document completed.
    const auto j = test::run_glimpse("describe " + img + " --json-schema " + test::shell_quote((tmp / "s.json").string()) +
                                     " -n 200 -t 2 --json --temp 0.8 --seed 3");
    REQUIRE(j.exit_code == 0);
    const json obj = json::parse(j.out);
    CHECK(obj["stop"] == "complete");
    CHECK(violation(json::parse(obj["text"].get<std::string>()), json::parse(kObjectsColors)) == "");
}

TEST_CASE("CLI: a bad --json-schema file is one line naming it, with a nonzero exit code", "[json][cli]") {
    test::TempDir tmp;
    const std::string img = test::shell_quote(std::string(GLIMPSE_SOURCE_DIR) + "/examples/scene_1.png");
    const std::vector<std::tuple<std::string, std::string, int>> cases = {
        {"ref.json", R"({"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}})", 1},
        {"broken.json", R"({"type": "object", "properties": {)", 1},
    };
    for (const auto& [name, text, code] : cases) {
        test::write_file(tmp / name, text);
        const auto r = test::run_glimpse("describe " + img + " --json-schema " + test::shell_quote((tmp / name).string()));
        INFO(r.err);
        CHECK(r.exit_code == code);
        CHECK(r.out.empty());
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.err.find(name) != std::string::npos);
    }
    const auto missing = test::run_glimpse("describe " + img + " --json-schema " + test::shell_quote((tmp / "none.json").string()));
    CHECK(missing.exit_code == 2);
    CHECK(missing.err.find("none.json") != std::string::npos);
}

TEST_CASE("generate and ask CLI: --json-schema on the golden SmolVLM", "[json][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    test::TempDir tmp;
    const std::string schema_text = R"({"type": "object", "properties": {"answer": {"type": "string", "maxLength": 20},
        "sure": {"type": "boolean"}}, "required": ["answer", "sure"]})";
    test::write_file(tmp / "s.json", schema_text);
    const std::string s = test::shell_quote((tmp / "s.json").string());
    // Random weights: whatever they prefer, the text is forced into the schema.
    const auto g = test::run_glimpse("generate -m " + test::shell_quote((dir / "smolvlm-tiny-text-f32.gguf").string()) +
                                     " -p 'Answer in JSON.' --json-schema " + s + " -n 300 --temp 1 --seed 5 -t 2");
    INFO(g.err);
    REQUIRE(g.exit_code == 0);
    CHECK(violation(json::parse(g.out), json::parse(schema_text)) == "");

    // ask: every answer of the conversation is a document of its own.
    test::write_file(tmp / "in", std::string("First question?\nSecond question?\n"));
    const std::string cmd = test::shell_quote(GLIMPSE_BINARY) + " ask " +
                            test::shell_quote((dir / "images" / "shapes_64x64.png").string()) + " -m " +
                            test::shell_quote((dir / "smolvlm-tiny-text-f32.gguf").string()) + " --mmproj " +
                            test::shell_quote((dir / "mmproj-smolvlm-tiny-f32.gguf").string()) + " --json-schema " + s +
                            " -n 300 --temp 1 --seed 2 -t 2 <" + test::shell_quote((tmp / "in").string()) + " >" +
                            test::shell_quote((tmp / "out").string());
    REQUIRE(std::system(cmd.c_str()) == 0);
    // The answers may hold newlines (JSON whitespace): the automaton says where each ends.
    const auto bytes = test::read_file(tmp / "out");
    const std::string out(bytes.begin(), bytes.end());
    const JsonSchema compiled = schema(schema_text);
    int answers = 0;
    for (size_t at = 0; at < out.size(); ++answers) {
        JsonMatcher m(compiled);
        const size_t n = m.feed(std::string_view(out).substr(at));
        INFO(out.substr(at));
        REQUIRE(m.complete());
        CHECK(violation(json::parse(out.substr(at, n)), json::parse(schema_text)) == "");
        REQUIRE(at + n < out.size());
        CHECK(out[at + n] == '\n');
        at += n + 1;
    }
    CHECK(answers == 2);
}
