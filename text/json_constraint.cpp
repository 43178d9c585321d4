// The JSON constraint over a vocabulary: which tokens may come next (text/json_schema.h).
//
// Every token's bytes are decoded once and put into a trie, flattened in preorder: node i
// holds one byte, its depth, the index just past its subtree, and the tokens that end there.
// mask() walks the trie depth first, keeping one automaton state per depth: a node's state is
// its parent's advanced by one byte, so a prefix shared by many tokens is walked once, and a
// rejected byte skips its whole subtree. Inside a string almost every token fits, which would
// make that walk visit the whole trie; there the "plain" tokens (text without '"', '\\',
// control bytes or a split UTF-8 character) are allowed in bulk, as many code points as the
// string still has room for, and only the rest (a second, much smaller trie) is walked.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "text/json_grammar.h"
#include "text/json_schema.h"
#include "text/tokenizer.h"

namespace glimpse {

namespace jg = json_grammar;

namespace {

struct Trie {
    struct Node {
        uint32_t skip;            // index just past this node's subtree
        uint32_t tok_begin, tok_end;  // [begin, end) in tokens: the ids whose bytes end here
        uint16_t depth;           // 1 for a first byte
        uint8_t byte;
    };
    std::vector<Node> nodes;
    std::vector<int32_t> tokens;
    int max_depth = 0;

    // ids: the tokens to hold; pieces: every token's bytes.
    void build(std::vector<int32_t> ids, const std::vector<std::string>& pieces) {
        std::sort(ids.begin(), ids.end(), [&](int32_t x, int32_t y) {
            return pieces[size_t(x)] != pieces[size_t(y)] ? pieces[size_t(x)] < pieces[size_t(y)] : x < y;
        });
        std::vector<uint32_t> open;  // node index per depth - 1
        const std::string* prev = nullptr;
        for (int32_t id : ids) {
            const std::string& s = pieces[size_t(id)];
            size_t common = 0;
            if (prev)
                while (common < prev->size() && common < s.size() && (*prev)[common] == s[common]) ++common;
            while (open.size() > common) {  // subtrees that end before this token
                nodes[open.back()].skip = uint32_t(nodes.size());
                open.pop_back();
            }
            for (size_t d = common; d < s.size(); ++d) {
                open.push_back(uint32_t(nodes.size()));
                nodes.push_back(Node{0, uint32_t(tokens.size()), uint32_t(tokens.size()), uint16_t(d + 1), uint8_t(s[d])});
            }
            tokens.push_back(id);
            nodes[open.back()].tok_end = uint32_t(tokens.size());
            max_depth = std::max(max_depth, int(s.size()));
            prev = &s;
        }
        while (!open.empty()) {
            nodes[open.back()].skip = uint32_t(nodes.size());
            open.pop_back();
        }
    }
};

// Code points of s if it is plain string text (see the top of the file), else -1.
int plain_chars(const std::string& s) {
    int chars = 0;
    for (size_t i = 0; i < s.size();) {
        const uint8_t ch = uint8_t(s[i]);
        if (ch < 0x20 || ch == '"' || ch == '\\') return -1;
        // Whole UTF-8 characters only, with the same ranges as the automaton's string state.
        const size_t len = ch < 0x80 ? 1 : (ch >= 0xC2 && ch <= 0xDF) ? 2 : (ch >= 0xE0 && ch <= 0xEF) ? 3 : (ch >= 0xF0 && ch <= 0xF4) ? 4 : 0;
        if (len == 0 || i + len > s.size()) return -1;
        if (len > 1) {
            const uint8_t c1 = uint8_t(s[i + 1]);
            const uint8_t lo = ch == 0xE0 ? 0xA0 : ch == 0xF0 ? 0x90 : 0x80;
            const uint8_t hi = ch == 0xED ? 0x9F : ch == 0xF4 ? 0x8F : 0xBF;
            if (c1 < lo || c1 > hi) return -1;
            for (size_t k = 2; k < len; ++k)
                if ((uint8_t(s[i + k]) & 0xC0) != 0x80) return -1;
        }
        i += len;
        ++chars;
    }
    return chars;
}

}  // namespace

struct JsonVocab::Index {
    int n_vocab = 0;
    std::vector<std::string> pieces;    // [n_vocab] the bytes each token writes ("" for control tokens)
    std::vector<int32_t> eog;           // end-of-generation ids
    Trie all;                           // every token with bytes (not end-of-generation ones)
    Trie special;                       // those of them that are not plain string text
    std::vector<int32_t> plain;         // plain tokens, by code points ascending
    std::vector<uint32_t> plain_chars;  // their code points
};

JsonVocab::JsonVocab(const Tokenizer& tok) : index_(std::make_unique<Index>()) {
    Index& x = *index_;
    x.n_vocab = tok.n_vocab();
    x.eog = tok.eog_ids();
    x.pieces.resize(size_t(x.n_vocab));
    std::vector<int32_t> with_bytes, special;
    std::vector<std::pair<int, int32_t>> plain;
    for (int32_t id = 0; id < x.n_vocab; ++id) {
        if (tok.is_eog(id)) continue;
        x.pieces[size_t(id)] = tok.token_to_piece(id, false);
        const std::string& p = x.pieces[size_t(id)];
        if (p.empty()) continue;
        with_bytes.push_back(id);
        const int chars = plain_chars(p);
        if (chars > 0) plain.emplace_back(chars, id);
        else special.push_back(id);
    }
    x.all.build(with_bytes, x.pieces);
    x.special.build(special, x.pieces);
    std::sort(plain.begin(), plain.end());
    for (const auto& [chars, id] : plain) {
        x.plain.push_back(id);
        x.plain_chars.push_back(uint32_t(chars));
    }
}

JsonVocab::~JsonVocab() = default;
int JsonVocab::n_vocab() const { return index_->n_vocab; }

namespace {

class JsonConstraint final : public TokenConstraint {
public:
    JsonConstraint(JsonSchema schema, std::shared_ptr<const JsonVocab> vocab)
        : schema_(std::move(schema)), vocab_(std::move(vocab)), state_(jg::initial_state(schema_.grammar())) {
        const int depth = std::max(vocab_->index().all.max_depth, 1) + 1;
        walk_.resize(size_t(depth));
    }

    void mask(float* logits, int n_vocab) override {
        const JsonVocab::Index& x = vocab_->index();
        const jg::Grammar& g = schema_.grammar();
        allowed_.assign(size_t(x.n_vocab), 0);
        const uint32_t room = jg::plain_string_room(g, state_);
        if (room > 0) {
            const size_t n_fit = size_t(std::upper_bound(x.plain_chars.begin(), x.plain_chars.end(), room) - x.plain_chars.begin());
            for (size_t i = 0; i < n_fit; ++i) allowed_[size_t(x.plain[i])] = 1;
            walk(x.special);
        } else {
            walk(x.all);
        }
        const bool may_end = jg::can_end(g, state_) || ended_;
        for (int32_t id : x.eog)
            if (id < x.n_vocab) allowed_[size_t(id)] = may_end;
        bool any = false;
        for (int i = 0; i < n_vocab; ++i) {
            if (i < x.n_vocab && allowed_[size_t(i)]) any = true;
            else logits[i] = -INFINITY;
        }
        if (!any)  // cannot happen for a vocabulary with single-byte tokens; say so if it does
            throw Error(ErrorKind::Usage, schema_.origin() + ": no token of the vocabulary can continue the JSON document");
    }

    void accept(int32_t id) override {
        const JsonVocab::Index& x = vocab_->index();
        if (id < 0 || id >= x.n_vocab) throw Error(ErrorKind::Usage, "JSON constraint: token id " + std::to_string(id) + " outside the vocabulary");
        if (std::find(x.eog.begin(), x.eog.end(), id) != x.eog.end()) {
            if (!jg::can_end(schema_.grammar(), state_)) refuse(id);
            ended_ = true;
            return;
        }
        const std::string& piece = x.pieces[size_t(id)];
        jg::State next;
        next.copy_from(state_);
        for (char ch : piece)
            if (!jg::advance(schema_.grammar(), next, uint8_t(ch))) refuse(id);
        if (piece.empty()) refuse(id);
        state_.copy_from(next);
    }

    bool complete() const override { return ended_ || jg::is_complete(state_); }

private:
    [[noreturn]] void refuse(int32_t id) const {
        throw Error(ErrorKind::Usage, schema_.origin() + ": token " + std::to_string(id) +
                                          " does not continue the JSON document here (it was not allowed by the mask)");
    }

    void walk(const Trie& t) {
        const jg::Grammar& g = schema_.grammar();
        walk_[0].copy_from(state_);
        const size_t n = t.nodes.size();
        for (size_t i = 0; i < n;) {
            const Trie::Node& node = t.nodes[i];
            jg::State& s = walk_[node.depth];
            s.copy_from(walk_[node.depth - 1u]);
            if (!jg::advance(g, s, node.byte)) {
                i = node.skip;
                continue;
            }
            for (uint32_t k = node.tok_begin; k < node.tok_end; ++k) allowed_[size_t(t.tokens[k])] = 1;
            ++i;
        }
    }

    JsonSchema schema_;
    std::shared_ptr<const JsonVocab> vocab_;
    jg::State state_;
    bool ended_ = false;
    std::vector<jg::State> walk_;   // [max token length + 1]: the state at each depth of the walk
    std::vector<uint8_t> allowed_;  // [n_vocab]
};

}  // namespace

std::unique_ptr<TokenConstraint> make_json_constraint(const JsonSchema& schema, std::shared_ptr<const JsonVocab> vocab) {
    return std::make_unique<JsonConstraint>(schema, std::move(vocab));
}

std::unique_ptr<TokenConstraint> make_json_constraint(const JsonSchema& schema, const Tokenizer& tok) {
    return make_json_constraint(schema, std::make_shared<const JsonVocab>(tok));
}

}  // namespace glimpse
