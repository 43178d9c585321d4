// SentencePiece BPE by scores (Llama-2 / LLaVA-1.5 GGUF vocabularies, llama2.c tokenizers),
// as llama.cpp's llm_tokenizer_spm_session does it:
//   1. text -> (a leading space) + text, every ' ' -> "▁" (U+2581);
//   2. one symbol per UTF-8 character (length from the first byte's high bits alone, so an
//      invalid sequence is still one symbol of 1-4 bytes);
//   3. repeatedly merge the adjacent pair whose concatenation is a token with the highest
//      score (ties: leftmost pair);
//   4. a final symbol that is not a token becomes its bytes' <0xXX> tokens (byte fallback).
// llama2.c's run.c encode() gives the same ids: its dummy prefix is the token " ", its
// merges pick the best score, leftmost first (tests/test_tokenizer.cpp checks this).
#include <algorithm>
#include <array>
#include <queue>

#include "core/error.h"
#include "text/tokenizer.h"
#include "weights/llama2c.h"

namespace glimpse {

namespace {

const std::string kMetaspace = "\xE2\x96\x81";  // U+2581 "▁"

// llama.cpp's unicode_len_utf8: sequence length from the first byte's top four bits.
size_t symbol_length(uint8_t b) {
    static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLen[b >> 4];
}

class SpmTokenizer final : public Tokenizer {
public:
    SpmTokenizer(VocabSpec spec, bool add_space_prefix) : Tokenizer(std::move(spec)), space_prefix_(add_space_prefix) {
        for (int b = 0; b < 256; ++b) {
            fallback_[b] = byte_tokens()[b];
            if (fallback_[b] < 0) {  // llama.cpp: then the byte as a one-character token
                const auto id = id_of(std::string(1, static_cast<char>(b)));
                fallback_[b] = id ? *id : unk_id();
            }
        }
    }

protected:
    void encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out) const override;
    std::string normal_piece(int32_t id) const override;
    bool strips_leading_space() const override { return space_prefix_; }

private:
    float score(int32_t id) const { return vocab().scores.empty() ? 0.0f : vocab().scores[id]; }

    bool space_prefix_;
    std::array<int32_t, 256> fallback_{};  // byte -> token (-1: dropped)
};

void SpmTokenizer::encode_text(std::string_view text, bool /*at_start*/, std::vector<int32_t>& out) const {
    std::string s = space_prefix_ ? kMetaspace : std::string();
    for (char ch : text) {
        if (ch == ' ') s += kMetaspace;
        else s += ch;
    }
    struct Symbol {
        uint32_t begin, size;  // bytes of s; size 0: merged into its left neighbour
        int32_t prev, next;
    };
    std::vector<Symbol> sym;
    for (size_t pos = 0; pos < s.size();) {
        const size_t len = std::min(symbol_length(static_cast<uint8_t>(s[pos])), s.size() - pos);
        const auto i = static_cast<int32_t>(sym.size());
        sym.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(len), i - 1, pos + len < s.size() ? i + 1 : -1});
        pos += len;
    }
    struct Bigram {
        float score;
        int32_t left, right;
        uint32_t size;
    };
    auto worse = [](const Bigram& a, const Bigram& b) {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    };
    std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
    auto text_of = [&](uint32_t begin, uint32_t size) { return std::string_view(s).substr(begin, size); };
    auto consider = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        const uint32_t size = sym[l].size + sym[r].size;
        if (const auto id = id_of(text_of(sym[l].begin, size))) queue.push({score(*id), l, r, size});
    };
    for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) consider(i - 1, i);
    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol& l = sym[b.left];
        Symbol& r = sym[b.right];
        if (l.size == 0 || r.size == 0 || l.size + r.size != b.size || l.next != b.right) continue;  // stale
        l.size += r.size;
        r.size = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = b.left;
        consider(l.prev, b.left);
        consider(b.left, l.next);
    }
    for (int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
        const std::string_view piece = text_of(sym[i].begin, sym[i].size);
        if (const auto id = id_of(piece)) {
            out.push_back(*id);
            continue;
        }
        // Only single characters can be left without a token (merges always form tokens).
        for (char ch : piece)
            if (const int32_t id = fallback_[static_cast<uint8_t>(ch)]; id >= 0) out.push_back(id);
    }
}

std::string SpmTokenizer::normal_piece(int32_t id) const {
    const std::string& text = token_text(id);
    std::string out;
    for (size_t pos = 0; pos < text.size();) {
        if (text.compare(pos, kMetaspace.size(), kMetaspace) == 0) {
            out += ' ';
            pos += kMetaspace.size();
        } else {
            out += text[pos++];
        }
    }
    return out;
}

}  // namespace

std::unique_ptr<Tokenizer> make_spm_tokenizer(VocabSpec spec, bool add_space_prefix) {
    for (size_t i = 0; i < spec.scores.size(); ++i)
        if (spec.scores[i] != spec.scores[i]) throw model_error(spec.source, "token score " + std::to_string(i) + " is NaN");
    return std::make_unique<SpmTokenizer>(std::move(spec), add_space_prefix);
}

// llama2.c stores pieces with plain spaces and BOS/EOS as "\n<s>\n" / "\n</s>\n"; ids 0, 1, 2
// are <unk>, BOS, EOS and 3 + b the byte b (run.c's conventions).
std::unique_ptr<Tokenizer> load_tokenizer_llama2c(const std::string& path, int vocab_size) {
    if (vocab_size < 3)
        throw model_error(path, "a llama2.c vocabulary needs at least 3 tokens (<unk>, <s>, </s>), the checkpoint says " +
                                    std::to_string(vocab_size));
    const Llama2cTokenizer t = Llama2cTokenizer::open(path, vocab_size);
    VocabSpec v;
    v.source = path;
    v.scores = t.scores();
    v.tokens.reserve(t.pieces().size());
    v.types.reserve(t.pieces().size());
    for (size_t i = 0; i < t.pieces().size(); ++i) {
        std::string piece = t.pieces()[i];
        if (i == 1 && piece == "\n<s>\n") piece = "<s>";
        if (i == 2 && piece == "\n</s>\n") piece = "</s>";
        std::string text;
        for (char ch : piece) {
            if (ch == ' ') text += kMetaspace;
            else text += ch;
        }
        v.types.push_back(i == 0 ? TokenType::Unknown
                          : i <= 2 ? TokenType::Control
                          : parse_byte_token(piece) >= 0 ? TokenType::Byte
                                                         : TokenType::Normal);
        v.tokens.push_back(std::move(text));
    }
    v.unk = 0;
    v.bos = 1;
    v.eos = 2;
    v.add_bos = true;
    return make_spm_tokenizer(std::move(v), true);
}

}  // namespace glimpse
