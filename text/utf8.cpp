#include "text/utf8.h"

namespace glimpse::utf8 {

namespace {

// Sequence length for a first byte (0 if it cannot start one) and the allowed range of the
// second byte (table 3-7); later bytes are always 80..BF.
struct Lead {
    uint8_t len, lo, hi;
};

Lead lead_of(uint8_t b) {
    if (b < 0x80) return {1, 0, 0};
    if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
    if (b == 0xE0) return {3, 0xA0, 0xBF};
    if (b == 0xED) return {3, 0x80, 0x9F};
    if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
    if (b == 0xF0) return {4, 0x90, 0xBF};
    if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
    if (b == 0xF4) return {4, 0x80, 0x8F};
    return {0, 0, 0};
}

// How many bytes of s[pos..] form a well-formed prefix of the sequence s[pos] starts
// (stops at the first byte that does not fit, or at the end of s); `need` gets the full length.
size_t valid_prefix(std::string_view s, size_t pos, size_t& need) {
    const auto b0 = static_cast<uint8_t>(s[pos]);
    const Lead lead = lead_of(b0);
    need = lead.len;
    if (lead.len <= 1) return lead.len;
    size_t n = 1;
    while (n < lead.len && pos + n < s.size()) {
        const auto b = static_cast<uint8_t>(s[pos + n]);
        const uint8_t lo = n == 1 ? lead.lo : 0x80, hi = n == 1 ? lead.hi : 0xBF;
        if (b < lo || b > hi) break;
        ++n;
    }
    return n;
}

}  // namespace

Char decode_at(std::string_view s, size_t pos) {
    if (pos >= s.size()) return {};
    size_t need = 0;
    const size_t n = valid_prefix(s, pos, need);
    const auto b0 = static_cast<uint8_t>(s[pos]);
    if (n == 0) return {b0, 1, false};
    if (n < need) return {b0, static_cast<uint32_t>(n), false};
    uint32_t cp = need == 1 ? b0 : need == 2 ? b0 & 0x1Fu : need == 3 ? b0 & 0x0Fu : b0 & 0x07u;
    for (size_t i = 1; i < need; ++i) cp = (cp << 6) | (static_cast<uint8_t>(s[pos + i]) & 0x3Fu);
    return {cp, static_cast<uint32_t>(need), true};
}

bool is_valid(std::string_view s) {
    for (size_t pos = 0; pos < s.size();) {
        const Char c = decode_at(s, pos);
        if (!c.valid) return false;
        pos += c.len;
    }
    return true;
}

void append(std::string& out, uint32_t cp) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = kReplacement;
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

std::string encode(uint32_t cp) {
    std::string s;
    append(s, cp);
    return s;
}

std::string sanitize(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t pos = 0; pos < s.size();) {
        const Char c = decode_at(s, pos);
        if (c.valid) out.append(s.substr(pos, c.len));
        else append(out, kReplacement);
        pos += c.len;
    }
    return out;
}

size_t incomplete_tail(std::string_view s) {
    // A character is at most 4 bytes, so an unfinished one starts in the last 3.
    const size_t from = s.size() > 3 ? s.size() - 3 : 0;
    for (size_t pos = from; pos < s.size(); ++pos) {
        size_t need = 0;
        const size_t n = valid_prefix(s, pos, need);
        if (need > 1 && n == s.size() - pos && n < need) return n;
    }
    return 0;
}

std::string StreamDecoder::push(std::string_view bytes) {
    std::string buf = held_;
    buf.append(bytes);
    const size_t tail = incomplete_tail(buf);
    held_ = buf.substr(buf.size() - tail);
    buf.resize(buf.size() - tail);
    return sanitize(buf);
}

std::string StreamDecoder::flush() {
    std::string out = sanitize(held_);  // an incomplete sequence is one invalid unit
    held_.clear();
    return out;
}

}  // namespace glimpse::utf8
