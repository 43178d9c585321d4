// What several glimpse commands share: the sampling flags, the tokenizer and chat template
// that belong to a model, and the --show-probs table.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "text/chat_template.h"
#include "text/json_schema.h"
#include "text/sampler.h"

namespace glimpse {
class Tokenizer;
struct LlamaModel;
}  // namespace glimpse

namespace glimpse::app {

// -n, --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n, --seed, --stop,
// --show-probs: the generation flags of DESIGN.md's "common options".
struct SamplingArgs {
    SamplerParams params;
    int max_tokens = 256;
    int show_probs = 0;
    std::vector<std::string> stops;
    CLI::Option* seed_opt = nullptr;
    // --json-schema FILE (add_json_schema_option): read by finish_sampling_options; the
    // vocabulary index by prepare_json_output once the model's tokenizer is known.
    std::string json_schema_file;
    std::shared_ptr<const JsonSchema> json_schema;
    std::shared_ptr<const JsonVocab> json_vocab;
};
void add_sampling_options(CLI::App* sub, SamplingArgs& a);
// --json-schema FILE: answers constrained to the schema (describe, ask, generate).
void add_json_schema_option(CLI::App* sub, SamplingArgs& a);
// Checks the values (Error(Usage) naming the flag), draws a seed when none was given, and
// compiles the --json-schema file (Error(BadInput) / Error(Usage) naming it).
void finish_sampling_options(SamplingArgs& a);
// With --json-schema: indexes the tokenizer's vocabulary for the constraint (once per run).
void prepare_json_output(SamplingArgs& a, const Tokenizer& tok);
// A fresh constraint for one answer, or null without --json-schema.
std::unique_ptr<TokenConstraint> json_constraint(const SamplingArgs& a);

// The tokenizer that belongs to the model: inside the GGUF, the folder's tokenizer.json, or
// for llama2.c `tokenizer_flag` (default: tok<vocab>.bin, then tokenizer.bin, beside the
// checkpoint). Checks it fits the model's vocabulary.
std::unique_ptr<Tokenizer> model_tokenizer(const LlamaModel& m, const std::string& tokenizer_flag = "");

// --chat-template NAME, else the template the model files carry when glimpse recognises it
// (a note on stderr when it does not), else the raw prompt.
ChatTemplate choose_template(const LlamaModel& m, const std::string& name);

// "[step 3] chose ' the' | ' the' 0.4123 | ' a' 0.2010 | ..." on stderr.
void print_probs(const Tokenizer& tok, int step, const float* logits, int n_vocab, int n, float temperature,
                 int32_t chosen);

double per_second(int64_t n, double ms);

}  // namespace glimpse::app
