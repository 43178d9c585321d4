// The byte-level pushdown automaton behind structured output (text/json_schema.h): a compiled
// schema is a table of nodes, and a parse state is a stack of frames, one per open value.
// Internal to text/: json_schema.cpp builds the nodes, json_grammar.cpp steps the automaton,
// json_constraint.cpp walks it over a vocabulary trie.
//
// The automaton accepts exactly the prefixes of documents it can still finish: a byte that
// could not lead to a valid document is rejected at once, so generation never paints itself
// into a corner. JSON whitespace is limited to one ' ' or '\n' per gap (none before or after
// the top-level value); numbers to 15 integer digits, 15 fraction digits and 2 exponent digits
// (so every number parses as a double); nesting that the schema leaves open ("any value") to
// kMaxAnyNesting levels.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace glimpse::json_grammar {

enum class Kind : uint8_t {
    Object,    // properties in order (or, with none, any keys with any values)
    Array,     // items, min/max count
    String,    // any UTF-8 text, min/max length in code points
    Number,    // any JSON number
    Integer,   // -?(0|[1-9][0-9]*)
    Literals,  // one of a fixed set of serialized scalars (enum, const, true/false, null)
    AnyOf,     // alternatives that differ in their first byte
};

constexpr uint32_t kUnbounded = std::numeric_limits<uint32_t>::max();
constexpr int kMaxFrames = 48;       // stack depth of a parse state
constexpr int kMaxSchemaDepth = 24;  // nesting the schema itself may have
constexpr int kMaxAnyNesting = 6;    // frames below which "any value" may still open a container
constexpr int kMaxProperties = 64;   // per object (the key matcher's candidate mask is 64 bits)
constexpr int kMaxWhitespace = 1;    // whitespace bytes per gap
constexpr uint32_t kMaxIntDigits = 15, kMaxFracDigits = 15, kMaxExpDigits = 2;

struct Property {
    std::string name;
    std::string key;  // the name as a JSON string, quotes included: what the model writes
    int node = -1;
    bool required = false;
};

struct Node {
    Kind kind = Kind::Literals;
    // Object: the properties in schema order; free_keys (no properties): any keys, values `items`.
    std::vector<Property> props;
    std::vector<int> next_required;  // [props.size() + 1]: first required index >= i (or size)
    bool free_keys = false;
    // Array: the item node; Object with free_keys: the value node, and `keys` the key node.
    int items = -1;
    int keys = -1;
    uint32_t min_items = 0, max_items = kUnbounded;
    // String: code points.
    uint32_t min_length = 0, max_length = kUnbounded;
    // Literals: serialized JSON scalars, sorted and distinct.
    std::vector<std::string> literals;
    // AnyOf: the alternative that starts with each byte (-1: none); limit_depth: containers
    // only below kMaxAnyNesting (the built-in "any value").
    std::array<int16_t, 256> first{};
    bool limit_depth = false;
};

struct Grammar {
    std::string origin;
    std::vector<Node> nodes;
    int root = -1;
};

// One open value. Field meaning depends on the node's kind (json_grammar.cpp, "Frame fields").
struct Frame {
    uint16_t node = 0;
    uint8_t stage = 0;
    uint8_t ws = 0;      // whitespace bytes in the current gap
    uint32_t a = 0, b = 0, c = 0;
    uint64_t alive = 0;  // Object: candidate properties of the key being matched
};

struct State {
    int depth = 0;  // frames in use
    std::array<Frame, kMaxFrames> frames;

    void copy_from(const State& o) {
        depth = o.depth;
        std::memcpy(frames.data(), o.frames.data(), sizeof(Frame) * size_t(o.depth));
    }
    const Frame& top() const { return frames[size_t(depth - 1)]; }
};

// The state before the first byte of a document of g.
State initial_state(const Grammar& g);
// Feeds one byte; false when it cannot continue any document (s is then unspecified: step a copy).
bool advance(const Grammar& g, State& s, uint8_t byte);
// The top-level value has closed: no byte may follow.
inline bool is_complete(const State& s) { return s.depth == 0; }
// The bytes so far are a whole document (closed, or a top-level number or literal that could
// also go on, like "12" or an enum holding both 1 and 12).
bool can_end(const Grammar& g, const State& s);
// The fast path of the vocabulary walk: inside a string's text (no escape or multi-byte
// character half done), where any run of plain characters (no '"', '\\', control bytes,
// whole UTF-8 characters) is accepted as long as it fits. Returns how many more code points
// fit (kUnbounded: any), or 0 when the state is not such a place.
uint32_t plain_string_room(const Grammar& g, const State& s);

}  // namespace glimpse::json_grammar
