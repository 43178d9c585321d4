#include "text/json_grammar.h"

#include <algorithm>

namespace glimpse::json_grammar {

// Frame fields, by the node's kind:
//   Object    a: next property index (candidates start here); b: the property whose key or
//             value is current; c: key bytes matched; alive: bit i = property b+i still matches
//   Array     a: items so far
//   String    a: code points so far; b: continuation bytes still due (low 8 bits) and the
//             range of the next one (lo << 8, hi << 16); c: hex digits of a \u escape so far
//   Number    a: digits in the current part (integer, fraction or exponent)
//   Literals  a, b: the range [a, b) of literals that match so far; c: bytes matched

namespace {

enum Stage : uint8_t {
    Start = 0,  // every kind: before the first byte
    // Object
    ObjFirst, ObjKey, ObjInFreeKey, ObjColon, ObjBeforeValue, ObjInValue, ObjAfterValue, ObjAfterComma,
    // Array
    ArrFirst, ArrInItem, ArrAfterItem, ArrAfterComma,
    // String
    StrBody, StrEscape, StrHex, StrUtf8,
    // Number
    NumMinus, NumZero, NumInt, NumDot, NumFrac, NumExp, NumExpSign, NumExpDigits,
    // Literals
    LitBody,
};

enum class Step {
    Consumed,   // byte taken, frame goes on
    Done,       // byte taken, frame finished
    Push,       // a child value starts with this byte (child node in `child`)
    EndRetry,   // frame finished before this byte: pop, give the byte to the parent
    Retry,      // frame replaced (anyOf resolved): give the byte to it again
    Reject,
};

bool is_ws(uint8_t ch) { return ch == ' ' || ch == '\n'; }
bool is_digit(uint8_t ch) { return ch >= '0' && ch <= '9'; }
bool is_hex(uint8_t ch) { return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'); }

// A whitespace byte in a gap: taken while the gap's allowance lasts.
Step take_ws(Frame& f) {
    if (f.ws >= kMaxWhitespace) return Step::Reject;
    ++f.ws;
    return Step::Consumed;
}

bool is_container(Kind k) { return k == Kind::Object || k == Kind::Array; }

// Matches one byte of a property key against the candidates still alive.
Step match_key(const Node& n, Frame& f, uint8_t ch) {
    uint64_t alive = 0;
    int finished = -1;
    for (uint64_t m = f.alive; m; m &= m - 1) {
        const int bit = __builtin_ctzll(m);
        const std::string& key = n.props[f.b + uint32_t(bit)].key;
        if (f.c < key.size() && uint8_t(key[f.c]) == ch) {
            alive |= uint64_t(1) << bit;
            if (f.c + 1 == key.size()) finished = bit;  // keys are prefix-free: only one can end
        }
    }
    if (!alive) return Step::Reject;
    ++f.c;
    if (finished >= 0) {
        f.b += uint32_t(finished);  // the property now being written
        f.a = f.b + 1;              // later keys may only come after it
        f.stage = ObjColon;
    } else {
        f.alive = alive;
    }
    return Step::Consumed;
}

// A key starts ('"' just came) in a schema object: the candidates are the properties from
// f.a up to and including the next required one.
Step start_key(const Node& n, Frame& f, uint8_t ch) {
    const uint32_t count = uint32_t(n.props.size());
    if (f.a >= count) return Step::Reject;
    const uint32_t last = std::min<uint32_t>(uint32_t(n.next_required[f.a]), count - 1);
    f.b = f.a;
    f.c = 0;
    const uint32_t width = last - f.a + 1;
    f.alive = width >= 64 ? ~uint64_t(0) : (uint64_t(1) << width) - 1;
    f.stage = ObjKey;
    return match_key(n, f, ch);
}

Step step_object(const Node& n, Frame& f, uint8_t ch, int& child) {
    const bool may_close = n.free_keys || n.next_required[f.a] == int(n.props.size());
    switch (f.stage) {
    case Start:
        if (ch != '{') return Step::Reject;
        f.stage = ObjFirst;
        return Step::Consumed;
    case ObjFirst:
    case ObjAfterComma:
        if (is_ws(ch)) return take_ws(f);
        f.ws = 0;
        if (ch == '}' && f.stage == ObjFirst && may_close) return Step::Done;
        if (ch != '"') return Step::Reject;
        if (n.free_keys) {
            f.stage = ObjInFreeKey;
            child = n.keys;
            return Step::Push;
        }
        return start_key(n, f, ch);
    case ObjKey:
        return match_key(n, f, ch);
    case ObjColon:
        if (is_ws(ch)) return take_ws(f);
        if (ch != ':') return Step::Reject;
        f.ws = 0;
        f.stage = ObjBeforeValue;
        return Step::Consumed;
    case ObjBeforeValue:
        if (is_ws(ch)) return take_ws(f);
        f.ws = 0;
        f.stage = ObjInValue;
        child = n.free_keys ? n.items : n.props[f.b].node;
        return Step::Push;
    case ObjAfterValue:
        if (is_ws(ch)) return take_ws(f);
        f.ws = 0;
        if (ch == '}') return may_close ? Step::Done : Step::Reject;
        if (ch != ',') return Step::Reject;
        if (!n.free_keys && f.a >= n.props.size()) return Step::Reject;
        f.stage = ObjAfterComma;
        return Step::Consumed;
    default:
        return Step::Reject;
    }
}

Step step_array(const Node& n, Frame& f, uint8_t ch, int& child) {
    switch (f.stage) {
    case Start:
        if (ch != '[') return Step::Reject;
        f.stage = ArrFirst;
        return Step::Consumed;
    case ArrFirst:
    case ArrAfterComma:
        if (is_ws(ch)) return take_ws(f);
        f.ws = 0;
        if (ch == ']' && f.stage == ArrFirst && n.min_items == 0) return Step::Done;
        if (f.a >= n.max_items) return Step::Reject;
        f.stage = ArrInItem;
        child = n.items;
        return Step::Push;
    case ArrAfterItem:
        if (is_ws(ch)) return take_ws(f);
        f.ws = 0;
        if (ch == ']') return f.a >= n.min_items ? Step::Done : Step::Reject;
        if (ch != ',' || f.a >= n.max_items) return Step::Reject;
        f.stage = ArrAfterComma;
        return Step::Consumed;
    default:
        return Step::Reject;
    }
}

// One more code point in a string, if it fits.
bool count_char(const Node& n, Frame& f) {
    if (f.a >= n.max_length) return false;
    ++f.a;
    return true;
}

Step step_string(const Node& n, Frame& f, uint8_t ch) {
    switch (f.stage) {
    case Start:
        if (ch != '"') return Step::Reject;
        f.stage = StrBody;
        return Step::Consumed;
    case StrBody: {
        if (ch == '"') return f.a >= n.min_length ? Step::Done : Step::Reject;
        if (ch < 0x20) return Step::Reject;
        if (ch < 0x80) {
            if (!count_char(n, f)) return Step::Reject;
            if (ch == '\\') f.stage = StrEscape;
            return Step::Consumed;
        }
        // A UTF-8 lead byte: how many continuation bytes, and the range of the first one
        // (no overlong forms, no surrogates, nothing above U+10FFFF).
        uint32_t due = 0, lo = 0x80, hi = 0xBF;
        if (ch >= 0xC2 && ch <= 0xDF) due = 1;
        else if (ch >= 0xE0 && ch <= 0xEF) due = 2, lo = ch == 0xE0 ? 0xA0 : 0x80, hi = ch == 0xED ? 0x9F : 0xBF;
        else if (ch >= 0xF0 && ch <= 0xF4) due = 3, lo = ch == 0xF0 ? 0x90 : 0x80, hi = ch == 0xF4 ? 0x8F : 0xBF;
        else return Step::Reject;
        if (!count_char(n, f)) return Step::Reject;
        f.b = due | (lo << 8) | (hi << 16);
        f.stage = StrUtf8;
        return Step::Consumed;
    }
    case StrUtf8: {
        const uint32_t lo = (f.b >> 8) & 0xFF, hi = (f.b >> 16) & 0xFF, due = f.b & 0xFF;
        if (ch < lo || ch > hi) return Step::Reject;
        f.b = (due - 1) | (0x80u << 8) | (0xBFu << 16);
        if (due == 1) f.stage = StrBody;
        return Step::Consumed;
    }
    case StrEscape:
        switch (ch) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            f.stage = StrBody;
            return Step::Consumed;
        case 'u':
            f.stage = StrHex;
            f.c = 0;
            return Step::Consumed;
        default:
            return Step::Reject;
        }
    case StrHex: {
        // c: hex digits so far, | 0x100 when the first was 'd' (\uD800..\uDFFF, surrogate
        // halves, would need a partner: not allowed).
        if (!is_hex(ch)) return Step::Reject;
        const uint32_t i = f.c & 0xFF;
        uint32_t d_first = f.c & 0x100;
        if (i == 0 && (ch == 'd' || ch == 'D')) d_first = 0x100;
        if (i == 1 && d_first && !(ch >= '0' && ch <= '7')) return Step::Reject;
        f.c = (i + 1) | d_first;
        if (i + 1 == 4) f.stage = StrBody;
        return Step::Consumed;
    }
    default:
        return Step::Reject;
    }
}

// After a number's last byte: a byte that could only continue a number is an error here,
// anything else belongs to the parent.
Step end_number(uint8_t ch) {
    return is_digit(ch) || ch == '.' || ch == 'e' || ch == 'E' || ch == '-' || ch == '+' ? Step::Reject : Step::EndRetry;
}

Step step_number(Kind kind, Frame& f, uint8_t ch) {
    const bool real = kind == Kind::Number;
    auto digit_in_part = [&](uint32_t cap) {
        if (f.a >= cap) return Step::Reject;
        ++f.a;
        return Step::Consumed;
    };
    auto to = [&](uint8_t stage, uint32_t digits) {
        f.stage = stage;
        f.a = digits;
        return Step::Consumed;
    };
    switch (f.stage) {
    case Start:
        if (ch == '-') return to(NumMinus, 0);
        [[fallthrough]];
    case NumMinus:
        if (!is_digit(ch)) return Step::Reject;
        return to(ch == '0' ? NumZero : NumInt, 1);
    case NumZero:
    case NumInt:
        if (is_digit(ch)) return f.stage == NumInt ? digit_in_part(kMaxIntDigits) : Step::Reject;
        if (real && ch == '.') return to(NumDot, 0);
        if (real && (ch == 'e' || ch == 'E')) return to(NumExp, 0);
        return end_number(ch);
    case NumDot:
        return is_digit(ch) ? to(NumFrac, 1) : Step::Reject;
    case NumFrac:
        if (is_digit(ch)) return digit_in_part(kMaxFracDigits);
        if (ch == 'e' || ch == 'E') return to(NumExp, 0);
        return end_number(ch);
    case NumExp:
        if (ch == '+' || ch == '-') return to(NumExpSign, 0);
        [[fallthrough]];
    case NumExpSign:
        return is_digit(ch) ? to(NumExpDigits, 1) : Step::Reject;
    case NumExpDigits:
        if (is_digit(ch)) return digit_in_part(kMaxExpDigits);
        return end_number(ch);
    default:
        return Step::Reject;
    }
}

Step step_literals(const Node& n, Frame& f, uint8_t ch) {
    if (f.stage == Start) {
        f.stage = LitBody;
        f.a = 0;
        f.b = uint32_t(n.literals.size());
        f.c = 0;
    }
    // The literals are sorted, so those that share the matched prefix and continue with ch
    // are again a contiguous range.
    uint32_t lo = f.a, hi = f.b;
    while (lo < hi && (n.literals[lo].size() <= f.c || uint8_t(n.literals[lo][f.c]) < ch)) ++lo;
    uint32_t end = lo;
    while (end < hi && n.literals[end].size() > f.c && uint8_t(n.literals[end][f.c]) == ch) ++end;
    if (lo == end) {
        // A literal that is complete may end here (a number like 1 among 1 and 12).
        return n.literals[f.a].size() == f.c ? Step::EndRetry : Step::Reject;
    }
    f.a = lo;
    f.b = end;
    ++f.c;
    return end - lo == 1 && n.literals[lo].size() == f.c ? Step::Done : Step::Consumed;
}

bool frame_can_end(const Node& n, const Frame& f) {
    switch (n.kind) {
    case Kind::Number:
    case Kind::Integer:
        return f.stage == NumZero || f.stage == NumInt || f.stage == NumFrac || f.stage == NumExpDigits;
    case Kind::Literals:
        return f.stage == LitBody && n.literals[f.a].size() == f.c;
    default:
        return false;
    }
}

// The parent of a finished child moves on.
void child_done(Frame& parent) {
    switch (parent.stage) {
    case ObjInFreeKey: parent.stage = ObjColon; break;
    case ObjInValue: parent.stage = ObjAfterValue; break;
    case ArrInItem:
        parent.stage = ArrAfterItem;
        ++parent.a;
        break;
    default: break;
    }
}

void pop(State& s) {
    --s.depth;
    if (s.depth > 0) child_done(s.frames[size_t(s.depth - 1)]);
}

}  // namespace

State initial_state(const Grammar& g) {
    State s;
    s.depth = 1;
    s.frames[0] = Frame{};
    s.frames[0].node = uint16_t(g.root);
    return s;
}

bool advance(const Grammar& g, State& s, uint8_t ch) {
    for (;;) {
        if (s.depth == 0) return false;
        Frame& f = s.frames[size_t(s.depth - 1)];
        const Node& n = g.nodes[f.node];
        int child = -1;
        Step r = Step::Reject;
        switch (n.kind) {
        case Kind::Object:
            r = step_object(n, f, ch, child);
            break;
        case Kind::Array: r = step_array(n, f, ch, child); break;
        case Kind::String: r = step_string(n, f, ch); break;
        case Kind::Number:
        case Kind::Integer: r = step_number(n.kind, f, ch); break;
        case Kind::Literals: r = step_literals(n, f, ch); break;
        case Kind::AnyOf: {
            const int alt = n.first[ch];
            if (alt < 0) return false;
            if (n.limit_depth && is_container(g.nodes[size_t(alt)].kind) && s.depth > kMaxAnyNesting) return false;
            f = Frame{};
            f.node = uint16_t(alt);
            r = Step::Retry;
            break;
        }
        }
        switch (r) {
        case Step::Consumed: return true;
        case Step::Done: pop(s); return true;
        case Step::Reject: return false;
        case Step::Retry: continue;
        case Step::EndRetry: pop(s); continue;
        case Step::Push:
            if (s.depth == kMaxFrames) return false;
            s.frames[size_t(s.depth)] = Frame{};
            s.frames[size_t(s.depth)].node = uint16_t(child);
            ++s.depth;
            continue;
        }
    }
}

bool can_end(const Grammar& g, const State& s) {
    if (s.depth == 0) return true;
    return s.depth == 1 && frame_can_end(g.nodes[s.frames[0].node], s.frames[0]);
}

uint32_t plain_string_room(const Grammar& g, const State& s) {
    if (s.depth == 0) return 0;
    const Frame& f = s.top();
    const Node& n = g.nodes[f.node];
    if (n.kind != Kind::String || f.stage != StrBody) return 0;
    return n.max_length == kUnbounded ? kUnbounded : n.max_length - f.a;
}

}  // namespace glimpse::json_grammar
