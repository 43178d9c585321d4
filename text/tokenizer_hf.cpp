// Hugging Face tokenizer.json (the `tokenizers` library's format), model.type "BPE", in the
// two shapes the supported models ship:
//   byte level (SmolLM2, GPT-2, Llama-3, Qwen2): pre_tokenizer ByteLevel, alone or after
//     Digits(individual_digits) or a Split with the Llama-3 / Qwen2 regex; decoder ByteLevel;
//   SentencePiece-like (Llama-2, LLaVA-1.5): normalizer Prepend("▁") + Replace(" ", "▁") or
//     pre_tokenizer Metaspace; byte_fallback; decoder Replace/ByteFallback/Fuse/Strip.
// added_tokens become control tokens (special: true) or user-defined tokens; the
// post_processor's template says whether BOS/EOS are added. tokenizer_config.json and
// generation_config.json beside the file name BOS/EOS/PAD and the end-of-generation ids.
// Not supported (Error(Model) naming the key): other model types, other pre-tokenizers,
// normalizers other than Prepend/Replace/NFC (NFC is taken as already satisfied, as llama.cpp
// does), continuing_subword_prefix / end_of_word_suffix. Ignored: BPE dropout (a training
// device), added tokens' single_word / normalized flags (added tokens match the raw text, as
// in llama.cpp), and the decoder section (decoding follows from the input shape).
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/tokenizer.h"
#include "weights/hf_folder.h"     // read_json_file
#include "weights/safetensors.h"  // message_safe

namespace glimpse {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kMetaspace = "\xE2\x96\x81";

// Regexes of Split pre-tokenizers that have a hand scanner (text/pretokenize.h).
const std::string kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const std::string kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

class HfReader {
public:
    explicit HfReader(std::string path) : path_(std::move(path)) {}
    [[noreturn]] void fail(const std::string& what) const { throw model_error(path_, what); }

    std::string type_of(const json& j, const char* where) const {
        if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
            fail(std::string(where) + " has no \"type\" string");
        return j["type"].get<std::string>();
    }
    bool flag(const json& j, const char* key, bool def) const {
        if (!j.is_object() || !j.contains(key) || j[key].is_null()) return def;
        if (!j[key].is_boolean()) fail(std::string("\"") + key + "\" is not true/false");
        return j[key].get<bool>();
    }
    std::string text(const json& j, const char* key, const char* where) const {
        if (!j.is_object() || !j.contains(key) || !j[key].is_string())
            fail(std::string(where) + "." + key + " is not a string");
        return j[key].get<std::string>();
    }

    void read_vocab(const json& model, const json& added, VocabSpec& v) const;
    void read_merges(const json& model, VocabSpec& v) const;
    void read_pre_tokenizer(const json& root, BpeOptions& opt) const;
    void read_post_processor(const json& pp, VocabSpec& v) const;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// model.vocab {text: id} plus added_tokens [{id, content, special, lstrip, rstrip}]: ids must
// cover 0..n-1 exactly (which also bounds what is allocated).
void HfReader::read_vocab(const json& model, const json& added, VocabSpec& v) const {
    if (!model.contains("vocab") || !model["vocab"].is_object()) fail("model.vocab is not an object {token: id}");
    if (!added.is_null() && !added.is_array()) fail("added_tokens is not an array");
    const size_t limit = model["vocab"].size() + (added.is_array() ? added.size() : 0);
    std::vector<bool> seen;
    auto put = [&](const std::string& text, const json& id_value, const char* where) {
        if (!id_value.is_number_integer()) fail(std::string(where) + " '" + message_safe(text) + "' has no integer id");
        const int64_t id = id_value.get<int64_t>();
        if (id < 0 || static_cast<uint64_t>(id) >= limit)
            fail(std::string(where) + " '" + message_safe(text) + "' has id " + std::to_string(id) + ", outside 0.." +
                 std::to_string(limit - 1) + " (ids must be contiguous)");
        if (static_cast<size_t>(id) >= v.tokens.size()) {
            v.tokens.resize(id + 1);
            seen.resize(id + 1, false);
        }
        v.tokens[id] = text;
        seen[id] = true;
        return static_cast<size_t>(id);
    };
    for (const auto& [text, id] : model["vocab"].items()) put(text, id, "model.vocab entry");
    v.types.assign(v.tokens.size(), TokenType::Normal);
    if (added.is_array()) {
        for (const json& a : added) {
            if (!a.is_object() || !a.contains("content") || !a["content"].is_string())
                fail("added_tokens entry without \"content\"");
            const size_t id = put(a["content"].get<std::string>(), a.value("id", json()), "added_tokens entry");
            v.types.resize(v.tokens.size(), TokenType::Normal);
            v.strip.resize(v.tokens.size(), 0);
            v.types[id] = flag(a, "special", false) ? TokenType::Control : TokenType::UserDefined;
            v.strip[id] = static_cast<uint8_t>((flag(a, "lstrip", false) ? 1 : 0) | (flag(a, "rstrip", false) ? 2 : 0));
        }
    }
    v.strip.resize(v.tokens.size(), 0);
    for (size_t i = 0; i < seen.size(); ++i)
        if (!seen[i])
            fail("token id " + std::to_string(i) + " is in neither model.vocab nor added_tokens (ids must be contiguous)");
}

// model.merges: ["a b", ...] (older files) or [["a", "b"], ...].
void HfReader::read_merges(const json& model, VocabSpec& v) const {
    if (!model.contains("merges") || !model["merges"].is_array()) fail("model.merges is not an array");
    v.merges_key = "model.merges";
    const json& merges = model["merges"];
    v.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
        const json& m = merges[i];
        if (m.is_string()) {
            const std::string& s = m.get_ref<const std::string&>();
            const size_t sp = s.find(' ', 1);
            if (sp == std::string::npos)
                fail("model.merges[" + std::to_string(i) + "] = '" + message_safe(s) + "' is not \"a b\"");
            v.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            v.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
        } else {
            fail("model.merges[" + std::to_string(i) + "] is neither \"a b\" nor [\"a\", \"b\"]");
        }
    }
}

// Which input shape and pre-tokenizer the normalizer + pre_tokenizer describe.
void HfReader::read_pre_tokenizer(const json& root, BpeOptions& opt) const {
    const json pre = root.value("pre_tokenizer", json());
    const json norm = root.value("normalizer", json());
    std::vector<json> pres;
    if (!pre.is_null()) {
        if (type_of(pre, "pre_tokenizer") == "Sequence") {
            if (!pre.contains("pretokenizers") || !pre["pretokenizers"].is_array())
                fail("pre_tokenizer.pretokenizers is not an array");
            for (const json& p : pre["pretokenizers"]) pres.push_back(p);
        } else {
            pres.push_back(pre);
        }
    }
    std::vector<std::string> names;
    for (const json& p : pres) names.push_back(type_of(p, "pre_tokenizer"));
    auto unsupported = [&] {
        std::string list;
        for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
        fail("pre_tokenizer [" + message_safe(list) + "] is not supported (supported: ByteLevel, Digits + ByteLevel, "
             "Split(Llama-3/Qwen2 regex) + ByteLevel, Metaspace, none)");
    };
    if (!names.empty() && names.back() == "ByteLevel") {
        opt.input = BpeInput::ByteLevel;
        opt.add_prefix_space = flag(pres.back(), "add_prefix_space", false);
        const bool use_regex = flag(pres.back(), "use_regex", true);
        if (names.size() == 1 && use_regex) {
            opt.pre = PreTokenizer::Gpt2;
        } else if (names.size() == 2 && names[0] == "Digits" && use_regex && flag(pres[0], "individual_digits", false)) {
            opt.pre = PreTokenizer::DigitsGpt2;
        } else if (names.size() == 2 && names[0] == "Split" && !use_regex) {
            const json& pattern = pres[0].value("pattern", json());
            const std::string regex = pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()
                                          ? pattern["Regex"].get<std::string>()
                                          : std::string();
            if (regex == kLlama3Regex) {
                opt.pre = PreTokenizer::Llama3;
            } else if (regex == kQwen2Regex) {
                opt.pre = PreTokenizer::Qwen2;
            } else {
                fail("pre_tokenizer Split pattern '" + message_safe(regex, 80) +
                     "' is not supported (supported: the Llama-3 and Qwen2 regexes)");
            }
        } else {
            unsupported();
        }
        return;
    }
    opt.input = BpeInput::Metaspace;
    if (names.size() == 1 && names[0] == "Metaspace") {
        const json& m = pres[0];
        if (m.contains("replacement") && m["replacement"] != kMetaspace)
            fail("pre_tokenizer Metaspace replacement is not \"▁\"");
        std::string scheme = m.value("prepend_scheme", std::string());
        if (scheme.empty()) scheme = flag(m, "add_prefix_space", true) ? "always" : "never";
        if (scheme == "always") opt.space_prefix = SpacePrefix::IfMissing;
        else if (scheme == "first") opt.space_prefix = SpacePrefix::FirstIfMissing;
        else if (scheme == "never") opt.space_prefix = SpacePrefix::None;
        else fail("pre_tokenizer Metaspace prepend_scheme '" + message_safe(scheme) + "' is unknown");
        opt.split_on_space = flag(m, "split", true);
    } else if (!names.empty()) {
        unsupported();
    }
    // Normalizer: Prepend("▁") and Replace(" " -> "▁") as Llama-2 uses them; NFC is a no-op here.
    std::vector<json> norms;
    if (!norm.is_null()) {
        if (type_of(norm, "normalizer") == "Sequence") {
            if (!norm.contains("normalizers") || !norm["normalizers"].is_array())
                fail("normalizer.normalizers is not an array");
            for (const json& n : norm["normalizers"]) norms.push_back(n);
        } else {
            norms.push_back(norm);
        }
    }
    for (const json& n : norms) {
        const std::string t = type_of(n, "normalizer");
        if (t == "Prepend" && n.value("prepend", std::string()) == kMetaspace) opt.space_prefix = SpacePrefix::Always;
        else if (t == "Replace" && n.contains("pattern") && n["pattern"].value("String", std::string()) == " " &&
                 n.value("content", std::string()) == kMetaspace) continue;
        else if (t != "NFC")
            fail("normalizer " + message_safe(t) +
                 " is not supported (supported: Prepend(\"▁\"), Replace(\" \", \"▁\"), NFC)");
    }
}

// TemplateProcessing {"single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}]}
// (also inside a Sequence of processors), Bert/RobertaProcessing {cls, sep}.
void HfReader::read_post_processor(const json& pp, VocabSpec& v) const {
    if (pp.is_null()) return;
    const std::string type = type_of(pp, "post_processor");
    auto id_of_text = [&](const std::string& text) -> int32_t {
        for (size_t i = 0; i < v.tokens.size(); ++i)
            if (v.tokens[i] == text) return static_cast<int32_t>(i);
        fail("post_processor names the token '" + message_safe(text) + "', which is not in the vocabulary");
    };
    if (type == "Sequence") {
        if (!pp.contains("processors") || !pp["processors"].is_array()) fail("post_processor.processors is not an array");
        for (const json& p : pp["processors"]) read_post_processor(p, v);
    } else if (type == "TemplateProcessing") {
        if (!pp.contains("single") || !pp["single"].is_array()) fail("post_processor.single is not an array");
        bool seen_text = false;
        for (const json& item : pp["single"]) {
            if (item.contains("Sequence")) {
                seen_text = true;
            } else if (item.contains("SpecialToken") && item["SpecialToken"].is_object()) {
                const int32_t id = id_of_text(text(item["SpecialToken"], "id", "post_processor.single.SpecialToken"));
                if (!seen_text && !v.add_bos) v.add_bos = true, v.bos = id;
                else if (seen_text && !v.add_eos) v.add_eos = true, v.eos = id;
                else fail("post_processor.single adds more than one token before or after the text (not supported)");
            }
        }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
        auto pair_text = [&](const char* key) {
            if (!pp.contains(key) || !pp[key].is_array() || pp[key].empty() || !pp[key][0].is_string())
                fail(std::string("post_processor.") + key + " is not [token, id]");
            return pp[key][0].get<std::string>();
        };
        v.add_bos = true, v.bos = id_of_text(pair_text("cls"));
        v.add_eos = true, v.eos = id_of_text(pair_text("sep"));
    } else if (type != "ByteLevel") {
        fail("post_processor " + message_safe(type) + " is not supported");
    }
}

// A token named in tokenizer_config.json: "<s>" or {"content": "<s>", ...}.
std::optional<std::string> config_token(const json& cfg, const char* key) {
    if (!cfg.is_object() || !cfg.contains(key)) return std::nullopt;
    const json& t = cfg[key];
    if (t.is_string()) return t.get<std::string>();
    if (t.is_object() && t.contains("content") && t["content"].is_string()) return t["content"].get<std::string>();
    return std::nullopt;
}

// tokenizer_config.json and generation_config.json next to tokenizer.json (both optional).
void read_side_configs(const std::string& path, VocabSpec& v) {
    const fs::path dir = fs::path(path).parent_path();
    std::error_code ec;
    auto find = [&](const std::string& text) -> int32_t {
        for (size_t i = 0; i < v.tokens.size(); ++i)
            if (v.tokens[i] == text) return static_cast<int32_t>(i);
        return -1;
    };
    const fs::path tc = dir / "tokenizer_config.json";
    if (fs::is_regular_file(tc, ec)) {
        const json cfg = read_json_file(tc.string());
        if (auto t = config_token(cfg, "bos_token"); t && v.bos < 0) v.bos = find(*t);
        if (auto t = config_token(cfg, "eos_token"); t && v.eos < 0) v.eos = find(*t);
        if (auto t = config_token(cfg, "pad_token"); t && v.pad < 0) v.pad = find(*t);
    }
    const fs::path gc = dir / "generation_config.json";
    if (fs::is_regular_file(gc, ec)) {
        const json cfg = read_json_file(gc.string());
        const json eos = cfg.is_object() ? cfg.value("eos_token_id", json()) : json();
        for (const json& e : eos.is_array() ? eos : json::array({eos})) {
            if (!e.is_number_integer()) continue;
            const int64_t id = e.get<int64_t>();
            if (id < 0 || id >= static_cast<int64_t>(v.tokens.size()))
                throw model_error(gc.string(),
                                  "eos_token_id " + std::to_string(id) + " is outside the vocabulary of " + path);
            v.extra_eog.push_back(static_cast<int32_t>(id));
            if (v.eos < 0) v.eos = static_cast<int32_t>(id);
        }
    }
}

std::unique_ptr<Tokenizer> load_hf(const std::string& path) {
    const json root = read_json_file(path);
    HfReader r(path);
    if (!root.is_object()) r.fail("is not a JSON object");
    if (!root.contains("model") || !root["model"].is_object()) r.fail("has no \"model\" object");
    const json& model = root["model"];
    const std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE") r.fail("model.type '" + message_safe(type) + "' is not supported (supported: BPE)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
        if (model.contains(key) && !model[key].is_null() && model[key] != "")
            r.fail(std::string("model.") + key + " is not supported");

    VocabSpec v;
    v.source = path;
    r.read_vocab(model, root.value("added_tokens", json()), v);
    r.read_merges(model, v);
    BpeOptions opt;
    r.read_pre_tokenizer(root, opt);
    opt.byte_fallback = r.flag(model, "byte_fallback", false);
    opt.fuse_unk = r.flag(model, "fuse_unk", false);
    opt.ignore_merges = r.flag(model, "ignore_merges", false);
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
        const std::string unk = model["unk_token"].get<std::string>();
        for (size_t i = 0; i < v.tokens.size() && v.unk < 0; ++i)
            if (v.tokens[i] == unk) v.unk = static_cast<int32_t>(i);
        if (v.unk < 0) r.fail("model.unk_token '" + message_safe(unk) + "' is not in the vocabulary");
        if (v.types[v.unk] == TokenType::Normal || v.types[v.unk] == TokenType::Control) v.types[v.unk] = TokenType::Unknown;
    }
    if (opt.byte_fallback)
        for (size_t i = 0; i < v.tokens.size(); ++i)
            if (v.types[i] == TokenType::Normal && parse_byte_token(v.tokens[i]) >= 0) v.types[i] = TokenType::Byte;
    r.read_post_processor(root.value("post_processor", json()), v);
    read_side_configs(path, v);
    return make_bpe_tokenizer(std::move(v), opt);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_hf_json(const std::string& path) {
    try {
        return load_hf(path);
    } catch (const nlohmann::json::exception& e) {
        // A value of an unexpected JSON type somewhere the reader did not check by hand.
        throw model_error(path, "unexpected JSON structure: " + message_safe(e.what()));
    }
}

}  // namespace glimpse
