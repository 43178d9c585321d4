#include "text/pretokenize.h"

#include "text/utf8.h"

namespace glimpse {

namespace {

using unicode::kLetter;
using unicode::kNumber;
using unicode::kPunct;
using unicode::kSpace;

// One character of the text (or one invalid unit): where it is and what class it has.
struct Unit {
    uint32_t cp;     // code point; U+FFFD for an invalid unit
    uint32_t begin;  // byte offset in the text
    uint8_t cls;     // ClassFlag bits; 0 for an invalid unit
};

std::vector<Unit> units_of(std::string_view text) {
    std::vector<Unit> units;
    units.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
        const utf8::Char c = utf8::decode_at(text, pos);
        const uint32_t cp = c.valid ? c.cp : utf8::kReplacement;
        units.push_back({cp, static_cast<uint32_t>(pos), c.valid ? unicode::classes(cp) : uint8_t{0}});
        pos += c.len;
    }
    return units;
}

// A scanner looks at units [b, e) and appends the end index of each word it cuts there; the
// words cover [b, e) without gaps. Every lookahead stops at e (a regex cannot see past the
// piece it runs on).
class Scan {
public:
    Scan(const std::vector<Unit>& u, size_t e, std::vector<size_t>& ends) : u_(u), e_(e), ends_(ends) {}
    uint32_t cp(size_t i) const { return i < e_ ? u_[i].cp : 0xFFFFFFFFu; }
    bool in(size_t i) const { return i < e_; }
    bool letter(size_t i) const { return i < e_ && (u_[i].cls & kLetter); }
    bool number(size_t i) const { return i < e_ && (u_[i].cls & kNumber); }
    bool space(size_t i) const { return i < e_ && (u_[i].cls & kSpace); }
    // [^\s\p{L}\p{N}]
    bool other(size_t i) const { return i < e_ && !(u_[i].cls & (kSpace | kLetter | kNumber)); }
    bool newline(size_t i) const { return cp(i) == '\r' || cp(i) == '\n'; }
    void cut(size_t at) { ends_.push_back(at); }

private:
    const std::vector<Unit>& u_;
    size_t e_;
    std::vector<size_t>& ends_;
};

uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// 's|'t|'re|'ve|'m|'ll|'d at p (case-insensitive when `fold`): the match length, or 0.
size_t contraction(const Scan& s, size_t p, bool fold) {
    if (s.cp(p) != '\'' || !s.in(p + 1)) return 0;
    auto at = [&](size_t i) { return fold ? ascii_lower(s.cp(i)) : s.cp(i); };
    const uint32_t c1 = at(p + 1);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
    if (!s.in(p + 2)) return 0;
    const uint32_t c2 = at(p + 2);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
    return 0;
}

// \s+(?!\S)|\s+ at p, with n = the length of the whitespace run starting at p (n >= 1): a run
// followed by a non-space gives its last character to the next word (" world").
size_t space_run(const Scan& s, size_t p, size_t n) {
    if (n > 1 && s.in(p + n)) return n - 1;
    return n;
}

size_t run_length(const Scan& s, size_t p, bool (Scan::*pred)(size_t) const) {
    size_t q = p;
    while ((s.*pred)(q)) ++q;
    return q - p;
}

void scan_gpt2(const std::vector<Unit>& u, size_t b, size_t e, std::vector<size_t>& ends) {
    Scan s(u, e, ends);
    for (size_t p = b; p < e;) {
        size_t len = contraction(s, p, false);
        const size_t q = p + (s.cp(p) == ' ' ? 1 : 0);  // the optional leading space
        if (len == 0 && s.letter(q)) len = q - p + run_length(s, q, &Scan::letter);
        if (len == 0 && s.number(q)) len = q - p + run_length(s, q, &Scan::number);
        if (len == 0 && s.other(q)) len = q - p + run_length(s, q, &Scan::other);
        if (len == 0) {
            const size_t n = run_length(s, p, &Scan::space);
            len = n > 0 ? space_run(s, p, n) : 1;
        }
        p += len;
        s.cut(p);
    }
}

// Llama-3 and Qwen2; max_digits = 3 for Llama-3, 1 for Qwen2.
void scan_llama3(const std::vector<Unit>& u, size_t b, size_t e, std::vector<size_t>& ends, size_t max_digits) {
    Scan s(u, e, ends);
    for (size_t p = b; p < e;) {
        size_t len = contraction(s, p, true);
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (len == 0 && s.letter(p)) len = run_length(s, p, &Scan::letter);
        if (len == 0 && !s.newline(p) && !s.number(p) && s.letter(p + 1)) len = 1 + run_length(s, p + 1, &Scan::letter);
        // \p{N}{1,max}
        if (len == 0 && s.number(p)) len = std::min(max_digits, run_length(s, p, &Scan::number));
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        const size_t q = p + (s.cp(p) == ' ' ? 1 : 0);
        if (len == 0 && s.other(q)) {
            size_t r = q + run_length(s, q, &Scan::other);
            while (s.newline(r)) ++r;
            len = r - p;
        }
        if (len == 0) {
            const size_t n = run_length(s, p, &Scan::space);
            // \s*[\r\n]+ : through the last CR/LF of the whitespace run
            size_t last_newline = 0;
            for (size_t i = p; i < p + n; ++i)
                if (s.newline(i)) last_newline = i + 1;
            if (last_newline) len = last_newline - p;
            else len = n > 0 ? space_run(s, p, n) : 1;
        }
        p += len;
        s.cut(p);
    }
}

// One regex that matches runs of a class: matched runs and the gaps between them are words.
template <class Pred>
void scan_runs(const std::vector<Unit>& u, size_t b, size_t e, std::vector<size_t>& ends, Pred in_run) {
    for (size_t p = b; p < e;) {
        const bool inside = in_run(u[p]);
        size_t q = p + 1;
        while (q < e && in_run(u[q]) == inside) ++q;
        ends.push_back(q);
        p = q;
    }
}

// \p{N} : every number character is a word of its own.
void scan_single_numbers(const std::vector<Unit>& u, size_t b, size_t e, std::vector<size_t>& ends) {
    for (size_t p = b; p < e;) {
        size_t q = p + 1;
        if (!(u[p].cls & kNumber))
            while (q < e && !(u[q].cls & kNumber)) ++q;
        ends.push_back(q);
        p = q;
    }
}

// [0-9][0-9][0-9] : leftmost non-overlapping triples of ASCII digits; the rest are gaps.
void scan_digit_triples(const std::vector<Unit>& u, size_t b, size_t e, std::vector<size_t>& ends) {
    auto digit = [&](size_t i) { return i < e && u[i].cp >= '0' && u[i].cp <= '9'; };
    size_t gap = b;
    for (size_t p = b; p < e;) {
        if (digit(p) && digit(p + 1) && digit(p + 2)) {
            if (gap < p) ends.push_back(p);
            ends.push_back(p + 3);
            p += 3;
            gap = p;
        } else {
            ++p;
        }
    }
    if (gap < e) ends.push_back(e);
}

bool llama_cpp_default_punct(const Unit& u) {
    switch (u.cp) {
    case '$': case '+': case '<': case '=': case '>': case '^': case '~': case '|': return true;
    default: return (u.cls & kPunct) != 0;
    }
}

using Stage = void (*)(const std::vector<Unit>&, size_t, size_t, std::vector<size_t>&);

void stage_gpt2(const std::vector<Unit>& u, size_t b, size_t e, std::vector<size_t>& ends) { scan_gpt2(u, b, e, ends); }
void stage_llama3(const std::vector<Unit>& u, size_t b, size_t e, std::vector<size_t>& ends) {
    scan_llama3(u, b, e, ends, 3);
}
void stage_qwen2(const std::vector<Unit>& u, size_t b, size_t e, std::vector<size_t>& ends) {
    scan_llama3(u, b, e, ends, 1);
}
void stage_punct(const std::vector<Unit>& u, size_t b, size_t e, std::vector<size_t>& ends) {
    scan_runs(u, b, e, ends, llama_cpp_default_punct);
}
void stage_numbers(const std::vector<Unit>& u, size_t b, size_t e, std::vector<size_t>& ends) {
    scan_runs(u, b, e, ends, [](const Unit& x) { return (x.cls & kNumber) != 0; });
}

std::vector<Stage> stages_of(PreTokenizer kind) {
    switch (kind) {
    case PreTokenizer::Gpt2: return {stage_gpt2};
    case PreTokenizer::DigitsGpt2: return {scan_single_numbers, stage_gpt2};
    case PreTokenizer::Llama3: return {stage_llama3};
    case PreTokenizer::Qwen2: return {stage_qwen2};
    case PreTokenizer::LlamaCppDefault: return {stage_punct, stage_gpt2, stage_numbers, scan_digit_triples};
    }
    return {stage_gpt2};
}

}  // namespace

std::vector<std::string_view> pretokenize(std::string_view text, PreTokenizer kind) {
    const std::vector<Unit> units = units_of(text);
    // Word boundaries as unit indices: each stage re-cuts every word of the stage before.
    std::vector<size_t> ends = {units.size()};
    if (units.empty()) ends.clear();
    for (Stage stage : stages_of(kind)) {
        std::vector<size_t> next;
        next.reserve(ends.size() * 2);
        size_t b = 0;
        for (size_t e : ends) {
            stage(units, b, e, next);
            b = e;
        }
        ends = std::move(next);
    }
    std::vector<std::string_view> words;
    words.reserve(ends.size());
    size_t b = 0;
    for (size_t e : ends) {
        const size_t from = units[b].begin;
        const size_t to = e < units.size() ? units[e].begin : text.size();
        words.push_back(text.substr(from, to - from));
        b = e;
    }
    return words;
}

}  // namespace glimpse
