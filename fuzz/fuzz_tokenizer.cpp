// libFuzzer target for the tokenizers: the fuzz input is text. Byte 0 picks the tokenizer
// (even: byte-level BPE, odd: SentencePiece), the rest is encoded
//   plain     (no BOS/EOS, control tokens not parsed) and decoded with special tokens rendered:
//             must give the text back exactly when it is valid UTF-8 (text/tokenizer.h says
//             which texts round-trip; the conditions are checked below);
//   special   (BOS/EOS per the vocabulary, control tokens parsed) and decoded: the same for the
//             BPE vocabulary, which adds no BOS;
// and every id list is streamed through TokenStream, whose output must be valid UTF-8.
// Any failure aborts; a glimpse::Error for input over the size limit is the only allowed throw.
//
// Vocabularies: the golden SmolVLM (StarCoder byte-level BPE, smollm pre-tokenizer) and LLaVA
// (Llama-2 SentencePiece) vocabularies, found through $GLIMPSE_GOLDEN or ../shared/golden beside
// the source tree; without them, small in-memory vocabularies of the same two kinds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "text/tokenizer.h"
#include "text/utf8.h"
#include "weights/gguf.h"

namespace {

using namespace glimpse;
namespace fs = std::filesystem;

fs::path golden_dir() {
    if (const char* env = std::getenv("GLIMPSE_GOLDEN")) return env;
    return fs::path(__FILE__).parent_path() / ".." / ".." / "shared" / "golden";
}

std::unique_ptr<Tokenizer> golden_tokenizer(const fs::path& file) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) return nullptr;
    const GgufFile f = GgufFile::open(file.string());
    return load_tokenizer_gguf(f);
}

// 256 GPT-2 byte stand-ins, a few merges, two control tokens.
std::unique_ptr<Tokenizer> small_bpe() {
    VocabSpec v;
    v.source = "in-memory BPE";
    for (int b = 0; b < 256; ++b) v.tokens.push_back(utf8::encode(byte_to_standin(uint8_t(b))));
    const std::string G = utf8::encode(byte_to_standin(' '));
    for (auto [a, b] : {std::pair<std::string, std::string>{G, "t"}, {"h", "e"}, {G + "t", "he"}, {"i", "n"}, {"Ð", "¿"}}) {
        v.merges.emplace_back(a, b);
        v.tokens.push_back(a + b);
    }
    v.tokens.push_back("<|im_start|>");
    v.tokens.push_back("<|im_end|>");
    v.types.assign(v.tokens.size(), TokenType::Normal);
    v.types[v.tokens.size() - 1] = v.types[v.tokens.size() - 2] = TokenType::Control;
    v.eos = int32_t(v.tokens.size() - 1);
    BpeOptions opt;
    opt.pre = PreTokenizer::DigitsGpt2;
    return make_bpe_tokenizer(std::move(v), opt);
}

// <unk> <s> </s>, the 256 byte tokens, "▁" and a few pieces with scores.
std::unique_ptr<Tokenizer> small_spm() {
    VocabSpec v;
    v.source = "in-memory SentencePiece";
    v.tokens = {"<unk>", "<s>", "</s>"};
    v.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
    char buf[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        v.tokens.push_back(buf);
        v.types.push_back(TokenType::Byte);
    }
    const std::string m = "\xE2\x96\x81";
    for (const std::string& p : std::vector<std::string>{m, m + "t", "h", "e", "he", m + "the", "a", m + "a"}) {
        v.tokens.push_back(p);
        v.types.push_back(TokenType::Normal);
    }
    for (size_t i = 0; i < v.tokens.size(); ++i) v.scores.push_back(-float(i));
    v.unk = 0, v.bos = 1, v.eos = 2, v.add_bos = true;
    return make_spm_tokenizer(std::move(v), true);
}

struct Vocabs {
    std::unique_ptr<Tokenizer> bpe, spm;
    bool bpe_has_all_bytes = false;  // the StarCoder vocabulary lacks a few bytes (text/tokenizer.h)
};

const Vocabs& vocabs() {
    static const Vocabs v = [] {
        Vocabs r;
        const fs::path g = golden_dir();
        r.bpe = golden_tokenizer(g / "smolvlm-tiny" / "smolvlm-tiny-text-f32.gguf");
        r.spm = golden_tokenizer(g / "llava-tiny" / "llava-tiny-text-q8_0.gguf");
        r.bpe_has_all_bytes = r.bpe == nullptr;
        if (!r.bpe) r.bpe = small_bpe();
        if (!r.spm) r.spm = small_spm();
        return r;
    }();
    return v;
}

void require(bool ok) {
    if (!ok) std::abort();
}

void stream_is_valid(const Tokenizer& tok, const std::vector<int32_t>& ids) {
    TokenStream s(tok, true);
    std::string out;
    for (int32_t id : ids) out += s.push(id);
    out += s.flush();
    require(utf8::is_valid(out));
}

bool has_byte(std::string_view s, uint8_t lo, uint8_t hi) {
    for (unsigned char c : s)
        if (c >= lo && c <= hi) return true;
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    const Vocabs& v = vocabs();
    const bool use_spm = data[0] & 1;
    const Tokenizer& tok = use_spm ? *v.spm : *v.bpe;
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    const bool valid = utf8::is_valid(text);

    const std::vector<int32_t> plain = tok.encode(text, false, false);
    for (int32_t id : plain) require(id >= 0 && id < tok.n_vocab());
    const std::string back = tok.decode(plain, true);
    // SentencePiece: "▁" is the escaped space and decodes as " ".
    const bool spm_roundtrips = text.find("\xE2\x96\x81") == std::string_view::npos;
    const bool bpe_roundtrips = v.bpe_has_all_bytes || !has_byte(text, 0xF1, 0xF1);
    if (valid && (use_spm ? spm_roundtrips : bpe_roundtrips)) require(back == text);
    stream_is_valid(tok, plain);

    const std::vector<int32_t> special = tok.encode(text, true, true);
    for (int32_t id : special) require(id >= 0 && id < tok.n_vocab());
    if (!use_spm && !tok.add_bos() && !tok.add_eos() && valid && bpe_roundtrips) require(tok.decode(special, true) == text);
    stream_is_valid(tok, special);
    return 0;
}
