#include "apps/common.h"

#include <cstdio>
#include <random>

#include "core/error.h"
#include "text/llama_model.h"
#include "text/model_files.h"
#include "text/tokenizer.h"

namespace glimpse::app {

ChatTemplate choose_template(const LlamaModel& m, const std::string& name) {
    if (!name.empty()) return chat_template_by_name(name);
    const std::string text = model_chat_template_text(m);
    if (text.empty()) return chat_template_by_name("none");
    if (auto t = recognise_chat_template(text)) return *t;
    std::fprintf(stderr,
                 "glimpse: %s: the model's chat template is not one glimpse knows; using the raw prompt "
                 "(choose one with --chat-template %s)\n",
                 m.path.c_str(), std::string(chat_template_names()).c_str());
    return chat_template_by_name("none");
}

namespace {

// "'text'" with control characters made visible, for the --show-probs table.
std::string visible(const std::string& s) {
    std::string r = "'";
    for (unsigned char ch : s) {
        if (ch == '\n') r += "\\n";
        else if (ch == '\t') r += "\\t";
        else if (ch == '\r') r += "\\r";
        else if (ch < 0x20 || ch == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", ch);
            r += buf;
        } else r += char(ch);
    }
    return r + "'";
}

}  // namespace

std::unique_ptr<Tokenizer> model_tokenizer(const LlamaModel& m, const std::string& tokenizer_flag) {
    return load_model_tokenizer(m, tokenizer_flag);
}

void print_probs(const Tokenizer& tok, int step, const float* logits, int n_vocab, int n, float temperature,
                 int32_t chosen) {
    const auto top = top_candidates(logits, n_vocab, n, temperature);
    std::string line = "[step " + std::to_string(step) + "] chose " + visible(tok.token_to_piece(chosen, true));
    for (const auto& c : top) {
        char buf[32];
        std::snprintf(buf, sizeof buf, " %.4f", c.prob);
        line += " | " + visible(tok.token_to_piece(c.id, true)) + buf;
    }
    std::fprintf(stderr, "%s\n", line.c_str());
}

double per_second(int64_t n, double ms) { return ms > 0 ? 1000.0 * double(n) / ms : 0.0; }

void add_sampling_options(CLI::App* sub, SamplingArgs& a) {
    sub->add_option("-n,--max-tokens", a.max_tokens, "tokens to generate at most (default 256)");
    sub->add_option("--temp", a.params.temperature, "temperature; 0 = greedy (default 0)");
    sub->add_option("--top-k", a.params.top_k, "keep the K most likely tokens (0 = off)");
    sub->add_option("--top-p", a.params.top_p, "nucleus sampling: keep the most likely tokens up to mass P (1 = off)");
    sub->add_option("--min-p", a.params.min_p, "drop tokens below P times the best one's probability (0 = off)");
    sub->add_option("--repeat-penalty", a.params.repeat_penalty, "penalise recently seen tokens (1 = off)");
    sub->add_option("--repeat-last-n", a.params.repeat_last_n, "tokens the penalty looks back over (default 64, -1 = all)");
    a.seed_opt = sub->add_option("--seed", a.params.seed, "random seed (default: a random one, shown by -v)");
    sub->add_option("--stop", a.stops, "stop when this text appears (repeatable); it is not printed");
    sub->add_option("--show-probs", a.show_probs, "print the N most likely tokens of every step to stderr")
        ->check(CLI::Range(0, 100));
}

void add_json_schema_option(CLI::App* sub, SamplingArgs& a) {
    sub->add_option("--json-schema", a.json_schema_file,
                    "answer with JSON that follows this JSON Schema file (decoding is constrained to it; see "
                    "docs/APPS.md, \"Structured output\")");
}

void finish_sampling_options(SamplingArgs& a) {
    if (a.max_tokens < 0) throw Error(ErrorKind::Usage, "-n/--max-tokens must be >= 0");
    if (a.seed_opt->count() == 0) a.params.seed = std::random_device{}();
    validate(a.params);
    if (!a.json_schema_file.empty()) a.json_schema = std::make_shared<const JsonSchema>(JsonSchema::load(a.json_schema_file));
}

void prepare_json_output(SamplingArgs& a, const Tokenizer& tok) {
    if (a.json_schema && !a.json_vocab) a.json_vocab = std::make_shared<const JsonVocab>(tok);
}

std::unique_ptr<TokenConstraint> json_constraint(const SamplingArgs& a) {
    if (!a.json_schema) return nullptr;
    if (!a.json_vocab) throw Error(ErrorKind::Usage, "internal: prepare_json_output was not called");
    return make_json_constraint(*a.json_schema, a.json_vocab);
}

}  // namespace glimpse::app
