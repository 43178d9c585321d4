// The parts every tokenizer shares (special-token splitting, pieces, decoding, end-of-generation
// ids) and the GGUF loader, which reads tokenizer.* metadata into a VocabSpec and hands it to
// the BPE or SentencePiece factory.
#include "text/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "core/error.h"
#include "weights/gguf.h"
#include "weights/safetensors.h"  // message_safe

namespace glimpse {

namespace {

// llama.cpp's end-of-generation token names (llama-vocab.cpp, "special_eog_ids").
constexpr const char* kEogNames[] = {"<|eot_id|>", "<|im_end|>",     "<|end|>",         "<end_of_turn>",
                                     "<|endoftext|>", "<|eom_id|>", "<EOT>",           "_<EOT>",
                                     "<|end_of_text|>", "<end_of_utterance>"};

// Far beyond any context window; bounds the per-byte work buffers (the pre-tokenizer keeps
// 12 bytes per input byte).
constexpr size_t kMaxTextBytes = size_t{64} << 20;

bool c_isspace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

std::string byte_token_text(int b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    return buf;
}

void check_id(const VocabSpec& v, int32_t id, const char* what) {
    if (id < -1 || id >= static_cast<int64_t>(v.tokens.size()))
        throw model_error(v.source, std::string(what) + " token id " + std::to_string(id) +
                                        " is out of range (the vocabulary has " + std::to_string(v.tokens.size()) +
                                        " tokens)");
}

}  // namespace

int parse_byte_token(std::string_view s) {
    if (s.size() != 6 || s.substr(0, 3) != "<0x" || s[5] != '>') return -1;
    int v = 0;
    for (char c : s.substr(3, 2)) {
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else return -1;
    }
    return v;
}

Tokenizer::Tokenizer(VocabSpec spec) : v_(std::move(spec)) {
    const size_t n = v_.tokens.size();
    if (n == 0) throw model_error(v_.source, "the tokenizer has no tokens");
    if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
        throw model_error(v_.source, "the tokenizer has too many tokens (" + std::to_string(n) + ")");
    if (v_.types.empty()) v_.types.assign(n, TokenType::Normal);
    if (v_.types.size() != n)
        throw model_error(
            v_.source, "token types: " + std::to_string(v_.types.size()) + " entries for " + std::to_string(n) + " tokens");
    if (!v_.scores.empty() && v_.scores.size() != n)
        throw model_error(v_.source, "token scores: " + std::to_string(v_.scores.size()) + " entries for " +
                                         std::to_string(n) + " tokens");
    if (!v_.strip.empty() && v_.strip.size() != n) throw model_error(v_.source, "token strip flags: wrong count");
    check_id(v_, v_.bos, "BOS");
    check_id(v_, v_.eos, "EOS");
    check_id(v_, v_.eot, "EOT");
    check_id(v_, v_.unk, "unknown");
    check_id(v_, v_.pad, "padding");
    for (int32_t id : v_.extra_eog) check_id(v_, id, "end-of-generation");
    if (v_.add_bos && v_.bos < 0) throw model_error(v_.source, "the tokenizer adds BOS but has no BOS token id");
    if (v_.add_eos && v_.eos < 0) throw model_error(v_.source, "the tokenizer adds EOS but has no EOS token id");

    ids_.reserve(n);
    for (size_t i = 0; i < n; ++i) ids_[v_.tokens[i]] = static_cast<int32_t>(i);  // a later duplicate wins, as in llama.cpp

    for (size_t i = 0; i < n; ++i) {
        const TokenType t = v_.types[i];
        if ((t == TokenType::Control || t == TokenType::Unknown || t == TokenType::UserDefined) && !v_.tokens[i].empty())
            specials_.push_back(static_cast<int32_t>(i));
    }
    std::stable_sort(specials_.begin(), specials_.end(),
                     [&](int32_t a, int32_t b) { return v_.tokens[a].size() > v_.tokens[b].size(); });

    for (int32_t id : {v_.eos, v_.eot})
        if (id >= 0) eog_.push_back(id);
    for (int32_t id : v_.extra_eog) eog_.push_back(id);
    for (const char* name : kEogNames)
        if (auto id = id_of(name)) eog_.push_back(*id);
    std::sort(eog_.begin(), eog_.end());
    eog_.erase(std::unique(eog_.begin(), eog_.end()), eog_.end());

    byte_tokens_.assign(256, -1);
    for (int b = 0; b < 256; ++b)
        if (auto id = id_of(byte_token_text(b))) byte_tokens_[b] = *id;
}

bool Tokenizer::is_eog(int32_t id) const { return std::binary_search(eog_.begin(), eog_.end(), id); }

TokenType Tokenizer::token_type(int32_t id) const {
    if (id < 0 || id >= n_vocab()) return TokenType::Undefined;
    return v_.types[id];
}

const std::string& Tokenizer::token_text(int32_t id) const {
    if (id < 0 || id >= n_vocab())
        throw Error(ErrorKind::BadInput,
                    "token id " + std::to_string(id) + " is out of range [0, " + std::to_string(n_vocab()) + ")");
    return v_.tokens[id];
}

std::optional<int32_t> Tokenizer::id_of(std::string_view stored_text) const {
    auto it = ids_.find(stored_text);
    if (it == ids_.end()) return std::nullopt;
    return it->second;
}

// llama.cpp's tokenizer_st_partition: for each special token, longest first, every stretch of
// ordinary text is cut at each occurrence (left to right). lstrip/rstrip tokens also swallow
// the whitespace beside them.
std::vector<Tokenizer::Fragment> Tokenizer::split_special(std::string_view text, bool parse_special) const {
    std::vector<Fragment> frags;
    if (!text.empty()) frags.push_back({0, text.size(), -1});
    std::vector<Fragment> next;
    for (int32_t id : specials_) {
        const TokenType type = v_.types[id];
        if (!parse_special && type != TokenType::UserDefined) continue;
        const std::string& s = v_.tokens[id];
        const bool lstrip = !v_.strip.empty() && (v_.strip[id] & 1);
        const bool rstrip = !v_.strip.empty() && (v_.strip[id] & 2);
        next.clear();
        for (const Fragment& f : frags) {
            if (f.token >= 0) {
                next.push_back(f);
                continue;
            }
            size_t b = f.begin;
            const size_t e = f.begin + f.size;
            const std::string_view area = text.substr(0, e);
            for (;;) {
                const size_t m = area.find(s, b);
                if (m == std::string_view::npos) {
                    if (b < e) next.push_back({b, e - b, -1});
                    break;
                }
                size_t left_end = m;
                if (lstrip)
                    while (left_end > b && c_isspace(text[left_end - 1])) --left_end;
                if (left_end > b) next.push_back({b, left_end - b, -1});
                next.push_back({m, s.size(), id});
                b = m + s.size();
                if (rstrip)
                    while (b < e && c_isspace(text[b])) ++b;
            }
        }
        frags.swap(next);
    }
    return frags;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    if (text.size() > kMaxTextBytes)
        throw Error(ErrorKind::BadInput, "text of " + std::to_string(text.size()) +
                                             " bytes is too long to tokenize (limit " + std::to_string(kMaxTextBytes) + ")");
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 2);
    if (add_special && v_.add_bos) out.push_back(v_.bos);
    for (const Fragment& f : split_special(text, parse_special)) {
        if (f.token >= 0) out.push_back(f.token);
        else encode_text(text.substr(f.begin, f.size), f.begin == 0, out);
    }
    if (add_special && v_.add_eos) out.push_back(v_.eos);
    return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
    const std::string& text = token_text(id);  // range check
    switch (v_.types[id]) {
    case TokenType::Control:
    case TokenType::Unknown: return render_special ? text : std::string();
    case TokenType::UserDefined: return text;
    case TokenType::Byte: {
        const int b = parse_byte_token(text);
        return b >= 0 ? std::string(1, static_cast<char>(b)) : text;
    }
    case TokenType::Normal: return normal_piece(id);
    case TokenType::Undefined:
    case TokenType::Unused: break;
    }
    return {};
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
    std::string out;
    bool strip = strips_leading_space();
    for (int32_t id : ids) {
        std::string piece = token_to_piece(id, render_special);
        // llama_detokenize: only the first token may lose its space, even if it printed nothing.
        if (strip && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
        strip = false;
        out += piece;
    }
    return out;
}

// ---- GGUF ----------------------------------------------------------------------------------

namespace {

struct PreInfo {
    PreTokenizer kind;
    bool ignore_merges = false;
    bool add_bos = false;  // the default when tokenizer.ggml.add_bos_token is absent
};

// tokenizer.ggml.pre names, as llama.cpp's llama_vocab::load maps them.
std::optional<PreInfo> pre_from_name(std::string_view name) {
    auto any = [&](std::initializer_list<std::string_view> names) {
        return std::find(names.begin(), names.end(), name) != names.end();
    };
    if (name.empty() || name == "default") return PreInfo{PreTokenizer::LlamaCppDefault};
    if (any({"gpt-2", "phi-2", "roberta-bpe", "mpt", "olmo", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de",
             "jina-v2-code", "gigachat"}))
        return PreInfo{PreTokenizer::Gpt2};
    if (any({"starcoder", "smollm", "refact", "command-r", "codeshell", "exaone", "minerva-7b"}))
        return PreInfo{PreTokenizer::DigitsGpt2};
    if (any({"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"})) return PreInfo{PreTokenizer::Llama3, true, true};
    if (any({"qwen2", "deepseek-r1-qwen"})) return PreInfo{PreTokenizer::Qwen2};
    return std::nullopt;
}

int32_t read_id(const GgufFile& f, const VocabSpec& v, const char* key, int32_t def) {
    if (!f.has(key)) return def < static_cast<int64_t>(v.tokens.size()) ? def : -1;
    const uint32_t id = f.u32(key);
    if (id >= v.tokens.size())
        throw model_error(f.path(), std::string(key) + " = " + std::to_string(id) +
                                        " is out of range (tokenizer.ggml.tokens has " + std::to_string(v.tokens.size()) +
                                        " tokens)");
    return static_cast<int32_t>(id);
}

// tokens, token_type, special ids and add_* flags: what both tokenizer models read.
VocabSpec read_gguf_vocab(const GgufFile& f, bool spm) {
    VocabSpec v;
    v.source = f.path();
    v.tokens = f.str_array("tokenizer.ggml.tokens");
    if (v.tokens.empty()) throw model_error(f.path(), "tokenizer.ggml.tokens is empty");
    const size_t n = v.tokens.size();
    if (f.has("tokenizer.ggml.token_type")) {
        const std::vector<int32_t> types = f.i32_array("tokenizer.ggml.token_type");
        if (types.size() != n)
            throw model_error(f.path(), "tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                                            " entries, expected " + std::to_string(n) +
                                            " (one per token in tokenizer.ggml.tokens)");
        v.types.resize(n);
        for (size_t i = 0; i < n; ++i) {
            if (types[i] < 0 || types[i] > 6)
                throw model_error(f.path(), "tokenizer.ggml.token_type[" + std::to_string(i) +
                                                "] = " + std::to_string(types[i]) + " is not a token type (0..6)");
            v.types[i] = static_cast<TokenType>(types[i]);
        }
    }
    // llama.cpp's defaults: SentencePiece vocabularies have <unk> <s> </s> at 0 1 2.
    v.bos = read_id(f, v, "tokenizer.ggml.bos_token_id", spm ? 1 : -1);
    v.eos = read_id(f, v, "tokenizer.ggml.eos_token_id", spm ? 2 : -1);
    v.unk = read_id(f, v, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
    v.pad = read_id(f, v, "tokenizer.ggml.padding_token_id", -1);
    v.eot = read_id(f, v, "tokenizer.ggml.eot_token_id", -1);
    const int32_t eom = read_id(f, v, "tokenizer.ggml.eom_token_id", -1);
    if (eom >= 0) v.extra_eog.push_back(eom);
    v.add_eos = f.boolean_or("tokenizer.ggml.add_eos_token", false);
    if (v.add_eos && v.eos < 0)
        throw model_error(f.path(), "tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing");
    return v;
}

void check_add_bos(const GgufFile& f, const VocabSpec& v) {
    if (v.add_bos && v.bos < 0)
        throw model_error(
            f.path(), "the tokenizer adds BOS (tokenizer.ggml.add_bos_token) but tokenizer.ggml.bos_token_id is missing");
}

std::unique_ptr<Tokenizer> load_bpe_gguf(const GgufFile& f) {
    VocabSpec v = read_gguf_vocab(f, false);
    const std::string pre_name = f.str_or("tokenizer.ggml.pre", "");
    const std::optional<PreInfo> pre = pre_from_name(pre_name);
    if (!pre)
        throw model_error(f.path(), "tokenizer.ggml.pre = '" + message_safe(pre_name) +
                                        "' is not a supported pre-tokenizer (supported: default, gpt-2, starcoder, smollm, "
                                        "llama-bpe, qwen2 and their aliases)");
    v.add_bos = f.boolean_or("tokenizer.ggml.add_bos_token", pre->add_bos);
    check_add_bos(f, v);
    const std::vector<std::string>& merges = f.str_array_ref("tokenizer.ggml.merges");
    v.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
        // "Ġ t": two tokens and one space. Search from 1 so that a first token " " still works.
        const size_t sp = merges[i].find(' ', 1);
        if (sp == std::string::npos)
            throw model_error(f.path(), "tokenizer.ggml.merges[" + std::to_string(i) + "] = '" + message_safe(merges[i]) +
                                            "' is not two tokens separated by a space");
        v.merges.emplace_back(merges[i].substr(0, sp), merges[i].substr(sp + 1));
    }
    v.merges_key = "tokenizer.ggml.merges";
    BpeOptions opt;
    opt.input = BpeInput::ByteLevel;
    opt.pre = pre->kind;
    opt.ignore_merges = pre->ignore_merges;
    return make_bpe_tokenizer(std::move(v), opt);
}

std::unique_ptr<Tokenizer> load_spm_gguf(const GgufFile& f) {
    VocabSpec v = read_gguf_vocab(f, true);
    v.add_bos = f.boolean_or("tokenizer.ggml.add_bos_token", true);
    check_add_bos(f, v);
    if (f.has("tokenizer.ggml.scores")) {
        v.scores = f.f32_array("tokenizer.ggml.scores");
        if (v.scores.size() != v.tokens.size())
            throw model_error(f.path(), "tokenizer.ggml.scores has " + std::to_string(v.scores.size()) +
                                            " entries, expected " + std::to_string(v.tokens.size()) +
                                            " (one per token in tokenizer.ggml.tokens)");
        for (size_t i = 0; i < v.scores.size(); ++i)
            if (v.scores[i] != v.scores[i])
                throw model_error(f.path(), "tokenizer.ggml.scores[" + std::to_string(i) + "] is NaN");
    }
    const bool space_prefix = f.boolean_or("tokenizer.ggml.add_space_prefix", true);
    return make_spm_tokenizer(std::move(v), space_prefix);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_gguf(const GgufFile& f) {
    if (!f.has("tokenizer.ggml.model"))
        throw model_error(f.path(), "metadata key 'tokenizer.ggml.model' is missing (the file has no tokenizer)");
    const std::string model = f.str("tokenizer.ggml.model");
    if (model == "gpt2") return load_bpe_gguf(f);
    if (model == "llama") return load_spm_gguf(f);
    throw model_error(f.path(), "tokenizer.ggml.model = '" + message_safe(model) +
                                    "' is not supported (supported: gpt2 = byte-level BPE, llama = SentencePiece BPE)");
}

}  // namespace glimpse
