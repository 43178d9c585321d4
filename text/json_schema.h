// Structured output: decoding constrained to a JSON Schema, so that an answer always parses.
//
//   JsonSchema s = JsonSchema::parse(text, "shape.json");   // or load(path), any_object()
//   auto c = make_json_constraint(s, tokenizer);              // one per generation
//   GenerateOptions opt; opt.constraint = c.get();            // text/llama_forward.h
//
// The schema compiles to a byte-level pushdown automaton (text/json_grammar.h). Before each
// draw the constraint walks that automaton over a trie of the vocabulary's token bytes, once
// per shared prefix, and forbids every token that cannot continue a valid document; inside a
// string, tokens of plain text are allowed in bulk (they always fit, length permitting) and
// only the others are walked. End-of-generation tokens are allowed only once the document is
// whole.
//
// The supported subset (docs/APPS.md, "Structured output"): type object (properties,
// required; only listed properties are written, required ones always, in the schema's
// order), array (items, minItems, maxItems), string (minLength, maxLength, enum), number,
// integer, boolean, null, enum / const of scalars, anyOf / oneOf whose alternatives start
// with different characters, "type" as a list; nested. {} and {"type":"object"} without
// properties: any JSON object (a map whose values follow additionalProperties, when that is
// a schema). Ignored: title, description, $schema, $id, $comment, examples, default, format,
// and additionalProperties beside properties. Anything else is an error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/token_constraint.h"

namespace glimpse {

class Tokenizer;
namespace json_grammar {
struct Grammar;
struct State;
}  // namespace json_grammar

// A JSON Schema compiled for constrained decoding. `origin` names the file (or "response_format")
// in errors: Error(Usage) for malformed JSON or an unsupported keyword, one line naming it.
class JsonSchema {
public:
    static JsonSchema parse(const std::string& schema_text, const std::string& origin);
    // Reads a schema file: Error(BadInput) naming it when it cannot be read, else as parse().
    static JsonSchema load(const std::string& path);
    // Any JSON object (what response_format {"type": "json_object"} asks for).
    static JsonSchema any_object();

    const std::string& origin() const;
    const json_grammar::Grammar& grammar() const { return *g_; }

private:
    explicit JsonSchema(std::shared_ptr<const json_grammar::Grammar> g) : g_(std::move(g)) {}
    std::shared_ptr<const json_grammar::Grammar> g_;
};

// The automaton over bytes, for checking text against a schema one byte at a time.
class JsonMatcher {
public:
    explicit JsonMatcher(const JsonSchema& schema);
    ~JsonMatcher();
    JsonMatcher(const JsonMatcher& o);
    JsonMatcher& operator=(const JsonMatcher&) = delete;

    // False when the byte cannot continue a valid document (the state is then unchanged).
    bool feed(uint8_t byte);
    // Feeds bytes until one is refused; returns how many were taken (text.size(): all).
    size_t feed(std::string_view text);
    // The top-level value has closed: nothing more may follow.
    bool complete() const;
    // What was fed is a whole document (closed, or a top-level number that could go on).
    bool can_end() const;

private:
    JsonSchema schema_;
    std::unique_ptr<json_grammar::State> state_;
};

// The token side: each token's bytes and the tries the mask walks, built once per tokenizer
// (about 50 ms for a 49k vocabulary) and shared by any number of generations.
class JsonVocab {
public:
    explicit JsonVocab(const Tokenizer& tok);
    ~JsonVocab();
    int n_vocab() const;
    struct Index;  // json_constraint.cpp
    const Index& index() const { return *index_; }

private:
    std::unique_ptr<Index> index_;
};

// The per-generation state over a tokenizer's vocabulary.
std::unique_ptr<TokenConstraint> make_json_constraint(const JsonSchema& schema, const Tokenizer& tok);
// The same over a vocabulary index built beforehand (a server builds it once per model).
std::unique_ptr<TokenConstraint> make_json_constraint(const JsonSchema& schema, std::shared_ptr<const JsonVocab> vocab);

}  // namespace glimpse
