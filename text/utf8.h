// UTF-8 helpers for the tokenizers: decoding one character with a defined result for invalid
// bytes, validation, and a streaming decoder that never emits half a character.
//
// Well-formed sequences (Unicode §3.9, table 3-7), first byte and the ranges that follow it:
//   00..7F                      C2..DF 80..BF             E0 A0..BF 80..BF
//   E1..EC|EE..EF 80..BF 80..BF  ED 80..9F 80..BF          F0 90..BF 80..BF 80..BF
//   F1..F3 80..BF 80..BF 80..BF  F4 80..8F 80..BF 80..BF
// (no overlong forms, no surrogates D800..DFFF, nothing above U+10FFFF). Anything else is
// invalid and is consumed as "maximal subparts": the longest prefix of a well-formed
// sequence, or one byte if not even the first byte can start one. Every maximal subpart
// counts as one invalid unit (one U+FFFD where text is repaired) — the W3C/WHATWG policy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace glimpse::utf8 {

constexpr uint32_t kReplacement = 0xFFFD;

struct Char {
    uint32_t cp = 0;    // the code point; for an invalid unit, its first byte
    uint32_t len = 0;   // bytes consumed (1..4); 0 only at the end of the text
    bool valid = false;
};

// The character starting at s[pos] (pos < s.size()), or an invalid unit (maximal subpart).
Char decode_at(std::string_view s, size_t pos);

bool is_valid(std::string_view s);

// Appends the UTF-8 form of a Unicode scalar value (cp <= 0x10FFFF, not a surrogate; other
// values are written as U+FFFD).
void append(std::string& out, uint32_t cp);
std::string encode(uint32_t cp);

// s with every invalid unit replaced by U+FFFD (valid text comes back unchanged).
std::string sanitize(std::string_view s);

// The number of bytes (0..3) at the end of s that form an incomplete but so far well-formed
// sequence: more bytes could still complete it.
size_t incomplete_tail(std::string_view s);

// Feeds bytes that arrive in pieces (one token's text at a time) and hands back only whole
// characters: a sequence cut at the end of a piece is held until the rest arrives. Output is
// always valid UTF-8: invalid units become U+FFFD.
//
//   StreamDecoder d;  d.push("\xE2\x82") == "";  d.push("\xAC!") == "€!";
class StreamDecoder {
public:
    std::string push(std::string_view bytes);
    // End of the stream: a held incomplete sequence becomes one U+FFFD.
    std::string flush();
    bool pending() const { return !held_.empty(); }

private:
    std::string held_;  // at most 3 bytes: a well-formed prefix of one character
};

}  // namespace glimpse::utf8
