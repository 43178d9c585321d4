// `glimpse generate -m MODEL -p TEXT`: text in, text out, with the Llama decoder.
//
// stdout carries the generated text and nothing else, streamed token by token (the prompt is
// not echoed). Everything else goes to stderr: -v (model, template, prompt size, seed,
// prompt and generation timings with tokens/s) and --show-probs N (one line per generated
// token: the N most likely candidates with their probabilities). --json replaces the stream
// with one JSON document at the end.
//
// The prompt goes through the model's chat template when the model carries one glimpse
// recognises (GGUF tokenizer.chat_template, or the folder's chat_template.json /
// tokenizer_config.json); models without a template (llama2.c, base models) get the raw
// prompt. --chat-template NAME overrides, --chat-template none forces the raw prompt.
// Generation stops at the vocabulary's end-of-generation tokens (for llama2.c models also at
// BOS, as run.c does), at a --stop string, after -n tokens, or when the context is full.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "text/chat_template.h"
#include "text/llama_forward.h"
#include "text/llama_model.h"
#include "text/sampler.h"
#include "text/tokenizer.h"
#include "weights/gguf.h"
#include "weights/hf_folder.h"
#include "weights/llama2c.h"

namespace glimpse::app {

namespace {

namespace fs = std::filesystem;

struct GenerateArgs {
    std::string model, prompt, system, chat_template, tokenizer;
    CLI::Option* system_opt = nullptr;
    CLI::Option* seed_opt = nullptr;
    std::vector<std::string> stops;
    int max_tokens = 256;
    SamplerParams sampling;
    int show_probs = 0;
    int threads = 0;
    int ctx = 0;
    bool verbose = false;
    bool json = false;
};

// The tokenizer that belongs to the model: inside the GGUF, the folder's tokenizer.json, or
// for llama2.c --tokenizer (default: tok<vocab>.bin, then tokenizer.bin, beside the checkpoint).
std::unique_ptr<Tokenizer> model_tokenizer(const LlamaModel& m, const std::string& flag) {
    if (!flag.empty() && m.format != LlamaFormat::Llama2c)
        throw Error(ErrorKind::Usage, "--tokenizer is for llama2.c checkpoints only (" + m.path + " carries its own)");
    switch (m.format) {
        case LlamaFormat::Gguf: return load_tokenizer_gguf(*m.gguf);
        case LlamaFormat::HfFolder:
            if (!m.hf->has_tokenizer_json()) throw model_error(m.path, "has no tokenizer.json");
            return load_tokenizer_hf_json(m.hf->tokenizer_json_path());
        case LlamaFormat::Llama2c: {
            if (!flag.empty()) return load_tokenizer_llama2c(flag, m.config.n_vocab);
            const fs::path dir = fs::path(m.path).parent_path();
            for (const std::string& name : {"tok" + std::to_string(m.config.n_vocab) + ".bin", std::string("tokenizer.bin")}) {
                std::error_code ec;
                if (fs::is_regular_file(dir / name, ec)) return load_tokenizer_llama2c((dir / name).string(), m.config.n_vocab);
            }
            throw Error(ErrorKind::Usage, m.path + ": a llama2.c checkpoint has no vocabulary; pass its tokenizer with "
                                                   "--tokenizer tok.bin");
        }
    }
    throw Error(ErrorKind::Model, m.path + ": unknown model format");
}

// The template text the model files carry ("" if none).
std::string model_template_text(const LlamaModel& m) {
    if (m.gguf) return m.gguf->str_or("tokenizer.chat_template", "");
    if (m.hf) return hf_chat_template_text(m.hf->dir());
    return "";
}

ChatTemplate choose_template(const LlamaModel& m, const std::string& name) {
    if (!name.empty()) return chat_template_by_name(name);
    const std::string text = model_template_text(m);
    if (text.empty()) return chat_template_by_name("none");
    if (auto t = recognise_chat_template(text)) return *t;
    std::fprintf(stderr,
                 "glimpse: %s: the model's chat template is not one glimpse knows; using the raw prompt "
                 "(choose one with --chat-template %s)\n",
                 m.path.c_str(), std::string(chat_template_names()).c_str());
    return chat_template_by_name("none");
}

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

// "[step 3] chose ' the' | ' the' 0.4123 | ' a' 0.2010 | ..."
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

int run_generate(GenerateArgs& a) {
    if (a.max_tokens < 0) throw Error(ErrorKind::Usage, "-n/--max-tokens must be >= 0");
    if (a.seed_opt->count() == 0) a.sampling.seed = std::random_device{}();
    validate(a.sampling);

    const LlamaModel model = open_llama_model(a.model);
    const auto tok = model_tokenizer(model, a.tokenizer);
    if (tok->n_vocab() > model.config.n_vocab)
        throw model_error(model.path, "the tokenizer has " + std::to_string(tok->n_vocab()) +
                                          " tokens but the model only " + std::to_string(model.config.n_vocab));
    const ChatTemplate tmpl = choose_template(model, a.chat_template);
    if (a.system_opt->count() && !tmpl.supports_system())
        throw Error(ErrorKind::Usage, "--system needs a chat template (the prompt is used raw here; pick one with --chat-template)");
    const std::string text = tmpl.render_user(a.prompt, a.system_opt->count() ? std::optional<std::string>(a.system)
                                                                               : std::nullopt);
    const std::vector<int32_t> prompt = tok->encode(text, true, true);
    if (prompt.empty()) throw Error(ErrorKind::Usage, "the prompt is empty (no tokens to start from)");

    ThreadPool pool(a.threads);
    LlamaContext ctx(model, pool, a.ctx);
    if (int64_t(prompt.size()) > ctx.n_ctx())
        throw Error(ErrorKind::Usage, "the prompt is " + std::to_string(prompt.size()) + " tokens, longer than the context of " +
                                          std::to_string(ctx.n_ctx()) + " tokens (raise --ctx; the model was trained for " +
                                          std::to_string(model.config.n_ctx_train) + ")");
    if (a.verbose)
        std::fprintf(stderr,
                     "model: %s (%s), %d layers, n_embd %d, %d heads (%d KV), vocab %d; context %d; %d threads\n"
                     "chat template: %s; prompt: %zu tokens; seed %llu\n",
                     model.path.c_str(), std::string(llama_format_name(model.format)).c_str(), model.config.n_layers,
                     model.config.n_embd, model.config.n_heads, model.config.n_kv_heads, model.config.n_vocab,
                     ctx.n_ctx(), pool.size(), std::string(tmpl.name()).c_str(), prompt.size(),
                     static_cast<unsigned long long>(a.sampling.seed));

    GenerateOptions opts;
    opts.max_tokens = a.max_tokens;
    opts.stop_tokens = tok->eog_ids();
    if (model.format == LlamaFormat::Llama2c && tok->bos_id() >= 0) opts.stop_tokens.push_back(tok->bos_id());
    if (a.show_probs > 0)
        opts.on_step = [&, step = 0](const float* logits, int n_vocab, int32_t chosen) mutable {
            print_probs(*tok, ++step, logits, n_vocab, a.show_probs, a.sampling.temperature, chosen);
        };

    Sampler sampler(a.sampling);
    TokenStream stream(*tok);
    StopStrings stops(a.stops);
    std::string generated;
    auto emit = [&](const std::string& s) {
        generated += s;
        if (!a.json && !s.empty()) {
            std::fwrite(s.data(), 1, s.size(), stdout);
            std::fflush(stdout);
        }
    };
    const GenerateResult r = generate(ctx, prompt, sampler, opts, [&](int32_t id) {
        emit(stops.feed(stream.push(id)));
        return !stops.stopped();
    });
    if (!stops.stopped()) emit(stops.feed(stream.flush()) + stops.flush());

    const LlamaTimings& t = ctx.timings();
    if (a.verbose)
        std::fprintf(stderr, "\nprompt: %lld tokens in %.1f ms (%.1f tokens/s); generation: %lld tokens in %.1f ms (%.1f tokens/s)\n",
                     static_cast<long long>(t.prefill_tokens), t.prefill_ms, per_second(t.prefill_tokens, t.prefill_ms),
                     static_cast<long long>(t.decode_tokens), t.decode_ms, per_second(t.decode_tokens, t.decode_ms));
    if (a.json) {
        nlohmann::json j = {{"text", generated},
                            {"prompt_tokens", prompt.size()},
                            {"tokens", r.tokens},
                            {"stop", r.stopped_by_token ? "eog" : stops.stopped() ? "stop_string" : "length"},
                            {"seed", a.sampling.seed},
                            {"timings", {{"prompt_ms", t.prefill_ms}, {"prompt_tokens", t.prefill_tokens},
                                         {"generation_ms", t.decode_ms}, {"generation_tokens", t.decode_tokens}}}};
        std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else if (!generated.empty() && generated.back() != '\n') {
        std::fputc('\n', stdout);
    }
    return 0;
}

}  // namespace

Command add_generate(CLI::App& app) {
    auto a = std::make_shared<GenerateArgs>();
    auto* sub = app.add_subcommand("generate", "Generate text from a text prompt with the language model");
    sub->footer(
        "MODEL: a GGUF text model, a Hugging Face folder, or a llama2.c checkpoint (its tokenizer\n"
        "from --tokenizer, or tok<vocab>.bin / tokenizer.bin beside it).\n"
        "stdout carries only the generated text; -v and --show-probs write to stderr.\n"
        "The model's chat template is used when glimpse recognises it, the raw prompt otherwise.\n"
        "Example: glimpse generate -m stories260K.bin -p \"Once upon a time\" -n 100");
    sub->add_option("-m,--model", a->model, "model file or folder")->required();
    sub->add_option("-p,--prompt", a->prompt, "the prompt (the user message when a chat template applies)")->required();
    sub->add_option("-n,--max-tokens", a->max_tokens, "tokens to generate at most (default 256)");
    sub->add_option("--temp", a->sampling.temperature, "temperature; 0 = greedy (default 0)");
    sub->add_option("--top-k", a->sampling.top_k, "keep the K most likely tokens (0 = off)");
    sub->add_option("--top-p", a->sampling.top_p, "nucleus sampling: keep the most likely tokens up to mass P (1 = off)");
    sub->add_option("--min-p", a->sampling.min_p, "drop tokens below P times the best one's probability (0 = off)");
    sub->add_option("--repeat-penalty", a->sampling.repeat_penalty, "penalise recently seen tokens (1 = off)");
    sub->add_option("--repeat-last-n", a->sampling.repeat_last_n, "tokens the penalty looks back over (default 64, -1 = all)");
    a->seed_opt = sub->add_option("--seed", a->sampling.seed, "random seed (default: a random one, shown by -v)");
    a->system_opt = sub->add_option("--system", a->system, "system prompt (templates that have one); \"\" = none");
    sub->add_option("--chat-template", a->chat_template,
                    "smolvlm, llava, vicuna, chatml, or none for the raw prompt (default: the model's own)");
    sub->add_option("--stop", a->stops, "stop when this text appears (repeatable); it is not printed");
    sub->add_option("--show-probs", a->show_probs, "print the N most likely tokens of every step to stderr")
        ->check(CLI::Range(0, 100));
    sub->add_option("-t,--threads", a->threads, "threads (default: one per hardware thread)")->check(CLI::Range(1, 1024));
    sub->add_option("--ctx", a->ctx, "context size in tokens (default: the model's, at most 4096)")
        ->check(CLI::Range(1, 1 << 24));
    sub->add_option("--tokenizer", a->tokenizer, "llama2.c tokenizer file (tok512.bin, tokenizer.bin)");
    sub->add_flag("-v,--verbose", a->verbose, "model facts and timings on stderr");
    sub->add_flag("--json", a->json, "print one JSON document (text, token ids, timings) at the end instead of streaming");
    return {sub, [a] { return run_generate(*a); }};
}

}  // namespace glimpse::app
