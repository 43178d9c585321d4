// BPE by merge rank (GPT-2 / Hugging Face "BPE" models). Each word starts as one symbol per
// byte (byte level) or per character (Metaspace); then, repeatedly, the adjacent pair with the
// lowest merge rank is replaced by its merged token, the leftmost pair first among equal ranks
// (llama.cpp llm_tokenizer_bpe_session and HF tokenizers' Word::merge_all agree on this).
// A priority queue of candidate pairs with lazy invalidation keeps a word of n symbols at
// O(n log n), so a long run without spaces is no problem.
#include <array>
#include <limits>
#include <queue>

#include "core/error.h"
#include "text/tokenizer.h"
#include "weights/safetensors.h"  // message_safe

namespace glimpse {

namespace {

bool printable_byte(uint32_t b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

struct StandinTables {
    std::array<uint32_t, 256> to_cp{};
    std::array<int16_t, 256 + 68> to_byte{};  // indexed by code point < 324
    StandinTables() {
        to_byte.fill(-1);
        uint32_t next = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            to_cp[b] = printable_byte(b) ? b : next++;
            to_byte[to_cp[b]] = static_cast<int16_t>(b);
        }
    }
};

const StandinTables& standins() {
    static const StandinTables t;
    return t;
}

const std::string kMetaspace = "\xE2\x96\x81";  // U+2581 "▁"

}  // namespace

uint32_t byte_to_standin(uint8_t b) { return standins().to_cp[b]; }

int standin_to_byte(uint32_t cp) { return cp < standins().to_byte.size() ? standins().to_byte[cp] : -1; }

namespace {

class BpeTokenizer final : public Tokenizer {
public:
    BpeTokenizer(VocabSpec spec, const BpeOptions& opt);

protected:
    void encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out) const override;
    std::string normal_piece(int32_t id) const override;
    bool strips_leading_space() const override {
        return opt_.input == BpeInput::Metaspace && opt_.space_prefix != SpacePrefix::None;
    }

private:
    struct Merge {
        int32_t rank, result;
    };
    static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

    void encode_byte_level(std::string_view text, std::vector<int32_t>& out) const;
    void encode_metaspace(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
    void metaspace_word(std::string_view word, std::vector<int32_t>& out) const;
    // Merges symbols (token ids; -1 = a byte/character without a token, which blocks merges
    // and is dropped) and appends the result.
    void merge(std::vector<int32_t>& ids, std::vector<int32_t>& out) const;

    BpeOptions opt_;
    std::unordered_map<uint64_t, Merge> merges_;
    std::array<int32_t, 256> standin_ids_{};  // byte level: the token of each byte's stand-in
};

BpeTokenizer::BpeTokenizer(VocabSpec spec, const BpeOptions& opt) : Tokenizer(std::move(spec)), opt_(opt) {
    const VocabSpec& v = vocab();
    merges_.reserve(v.merges.size());
    for (size_t i = 0; i < v.merges.size(); ++i) {
        const auto& [a, b] = v.merges[i];
        const auto ia = id_of(a), ib = id_of(b), ir = id_of(a + b);
        if (!ia || !ib || !ir) {
            const std::string& missing = !ia ? a : !ib ? b : a + b;
            throw model_error(v.source, v.merges_key + "[" + std::to_string(i) + "] = '" + message_safe(a + " " + b) +
                                            "' names '" + message_safe(missing) + "', which is not in the vocabulary");
        }
        if (i > static_cast<size_t>(std::numeric_limits<int32_t>::max())) throw model_error(v.source, "too many merges");
        merges_.emplace(pair_key(*ia, *ib), Merge{static_cast<int32_t>(i), *ir});  // the first rank of a pair wins
    }
    for (int b = 0; b < 256; ++b) {
        const auto id = id_of(utf8::encode(byte_to_standin(static_cast<uint8_t>(b))));
        standin_ids_[b] = id ? *id : -1;
    }
}

void BpeTokenizer::merge(std::vector<int32_t>& ids, std::vector<int32_t>& out) const {
    const int32_t n = static_cast<int32_t>(ids.size());
    if (n == 0) return;
    std::vector<int32_t> prev(n), next(n);
    for (int32_t i = 0; i < n; ++i) {
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
    }
    struct Candidate {
        int32_t rank, left, right, left_id, right_id, result;
    };
    auto worse = [](const Candidate& a, const Candidate& b) { return a.rank != b.rank ? a.rank > b.rank : a.left > b.left; };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> queue(worse);
    auto consider = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0 || ids[l] < 0 || ids[r] < 0) return;
        const auto it = merges_.find(pair_key(ids[l], ids[r]));
        if (it != merges_.end()) queue.push({it->second.rank, l, r, ids[l], ids[r], it->second.result});
    };
    for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
    constexpr int32_t kGone = -2;
    while (!queue.empty()) {
        const Candidate c = queue.top();
        queue.pop();
        // Stale: one side has changed or is gone since the pair was queued.
        if (ids[c.left] != c.left_id || ids[c.right] != c.right_id || next[c.left] != c.right) continue;
        ids[c.left] = c.result;
        ids[c.right] = kGone;
        next[c.left] = next[c.right];
        if (next[c.right] >= 0) prev[next[c.right]] = c.left;
        consider(prev[c.left], c.left);
        consider(c.left, next[c.left]);
    }
    for (int32_t i = 0; i >= 0; i = next[i])
        if (ids[i] >= 0) out.push_back(ids[i]);
}

void BpeTokenizer::encode_byte_level(std::string_view text, std::vector<int32_t>& out) const {
    std::string prefixed;
    if (opt_.add_prefix_space && (text.empty() || text[0] != ' ')) {
        prefixed.reserve(text.size() + 1);
        prefixed.push_back(' ');
        prefixed.append(text);
        text = prefixed;
    }
    std::vector<int32_t> ids;
    std::string mapped;
    for (std::string_view word : pretokenize(text, opt_.pre)) {
        if (opt_.ignore_merges) {
            mapped.clear();
            for (char ch : word) utf8::append(mapped, byte_to_standin(static_cast<uint8_t>(ch)));
            if (const auto id = id_of(mapped)) {
                out.push_back(*id);
                continue;
            }
        }
        ids.clear();
        for (char ch : word) ids.push_back(standin_ids_[static_cast<uint8_t>(ch)]);
        merge(ids, out);
    }
}

void BpeTokenizer::metaspace_word(std::string_view word, std::vector<int32_t>& out) const {
    if (opt_.ignore_merges) {
        if (const auto id = id_of(word)) {
            out.push_back(*id);
            return;
        }
    }
    std::vector<int32_t> ids;
    bool last_unk = false;
    for (size_t pos = 0; pos < word.size();) {
        const utf8::Char c = utf8::decode_at(word, pos);
        const std::string_view ch = word.substr(pos, c.len);
        pos += c.len;
        if (const auto id = id_of(ch)) {
            ids.push_back(*id);
            last_unk = false;
            continue;
        }
        bool all_bytes = opt_.byte_fallback;
        for (char b : ch) all_bytes = all_bytes && byte_tokens()[static_cast<uint8_t>(b)] >= 0;
        if (all_bytes) {
            for (char b : ch) ids.push_back(byte_tokens()[static_cast<uint8_t>(b)]);
            last_unk = false;
        } else if (!(opt_.fuse_unk && last_unk)) {
            ids.push_back(unk_id());  // -1 without an <unk> token: dropped
            last_unk = true;
        }
    }
    merge(ids, out);
}

void BpeTokenizer::encode_metaspace(std::string_view text, bool at_start, std::vector<int32_t>& out) const {
    std::string s;
    for (char ch : text) {
        if (ch == ' ') s += kMetaspace;
        else s += ch;
    }
    const bool starts_with_meta = s.compare(0, kMetaspace.size(), kMetaspace) == 0;
    bool prefix = false;
    switch (opt_.space_prefix) {
    case SpacePrefix::None: break;
    case SpacePrefix::Always: prefix = true; break;
    case SpacePrefix::IfMissing: prefix = !starts_with_meta; break;
    case SpacePrefix::FirstIfMissing: prefix = at_start && !starts_with_meta; break;
    }
    if (prefix) s.insert(0, kMetaspace);
    if (!opt_.split_on_space) {
        metaspace_word(s, out);
        return;
    }
    // HF Metaspace split: every "▁" starts a new word.
    size_t begin = 0;
    while (begin < s.size()) {
        size_t end = s.find(kMetaspace, begin + 1);
        if (end == std::string::npos) end = s.size();
        metaspace_word(std::string_view(s).substr(begin, end - begin), out);
        begin = end;
    }
}

void BpeTokenizer::encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out) const {
    if (opt_.input == BpeInput::ByteLevel) encode_byte_level(text, out);
    else encode_metaspace(text, at_start, out);
}

std::string BpeTokenizer::normal_piece(int32_t id) const {
    const std::string& text = token_text(id);
    std::string out;
    if (opt_.input == BpeInput::Metaspace) {
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
    // Byte level: every stand-in character is one byte; anything else is kept as it is.
    for (size_t pos = 0; pos < text.size();) {
        const utf8::Char c = utf8::decode_at(text, pos);
        const int b = c.valid ? standin_to_byte(c.cp) : -1;
        if (b >= 0) out += static_cast<char>(b);
        else out.append(text, pos, c.len);
        pos += c.len;
    }
    return out;
}

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(VocabSpec spec, const BpeOptions& options) {
    return std::make_unique<BpeTokenizer>(std::move(spec), options);
}

}  // namespace glimpse
