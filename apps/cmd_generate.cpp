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
#include "apps/common.h"
#include "apps/device_option.h"
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
    SamplingArgs sampling;
    DeviceArgs device;
    int threads = 0;
    int ctx = 0;
    bool verbose = false;
    bool json = false;
};

int run_generate(GenerateArgs& a) {
    finish_sampling_options(a.sampling);

    const Placement device = open_device(a.device, a.verbose);
    LlamaModel model = open_llama_model(a.model);
    place_text(device, model, a.verbose);
    const auto tok = model_tokenizer(model, a.tokenizer);
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
                     static_cast<unsigned long long>(a.sampling.params.seed));

    GenerateOptions opts;
    opts.max_tokens = a.sampling.max_tokens;
    opts.stop_tokens = tok->eog_ids();
    if (model.format == LlamaFormat::Llama2c && tok->bos_id() >= 0) opts.stop_tokens.push_back(tok->bos_id());
    prepare_json_output(a.sampling, *tok);
    const auto constraint = json_constraint(a.sampling);
    opts.constraint = constraint.get();
    if (a.sampling.show_probs > 0)
        opts.on_step = [&, step = 0](const float* logits, int n_vocab, int32_t chosen) mutable {
            print_probs(*tok, ++step, logits, n_vocab, a.sampling.show_probs, a.sampling.params.temperature, chosen);
        };

    Sampler sampler(a.sampling.params);
    TokenStream stream(*tok);
    StopStrings stops(a.sampling.stops);
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
    if (a.verbose) print_device_profile_line(device);
    if (a.json) {
        nlohmann::json j = {{"text", generated},
                            {"prompt_tokens", prompt.size()},
                            {"tokens", r.tokens},
                            {"stop", r.stopped_by_token              ? "eog"
                                     : stops.stopped()               ? "stop_string"
                                     : r.stopped_by_constraint       ? "complete"
                                                                     : "length"},
                            {"seed", a.sampling.params.seed},
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
    add_sampling_options(sub, a->sampling);
    add_device_option(sub, a->device);
    add_json_schema_option(sub, a->sampling);
    a->system_opt = sub->add_option("--system", a->system, "system prompt (templates that have one); \"\" = none");
    sub->add_option("--chat-template", a->chat_template,
                    "smolvlm, llava, vicuna, chatml, or none for the raw prompt (default: the model's own)");
    sub->add_option("-t,--threads", a->threads, "threads (default: one per hardware thread)")->check(CLI::Range(1, 1024));
    sub->add_option("--ctx", a->ctx, "context size in tokens (default: the model's, at most 4096)")
        ->check(CLI::Range(1, 1 << 24));
    sub->add_option("--tokenizer", a->tokenizer, "llama2.c tokenizer file (tok512.bin, tokenizer.bin)");
    sub->add_flag("-v,--verbose", a->verbose, "model facts and timings on stderr");
    sub->add_flag("--json", a->json, "print one JSON document (text, token ids, timings) at the end instead of streaming");
    return {sub, [a] { return run_generate(*a); }};
}

}  // namespace glimpse::app
