// `glimpse ask IMAGE... [-m MODEL]`: a conversation about images, one question per line of
// stdin (a terminal or a pipe), each answer streamed to stdout.
//
// The KV cache is kept across turns, so a question costs only its own tokens; images are
// encoded once (cached by content). Lines starting with '/' are commands:
//   /image PATH   add an image to the next question     /reset       start over
//   /save FILE    keep the conversation (transcript + what the cache holds)
//   /load FILE    continue a saved conversation         /quit        end (so does end of input)
// When the context is full the question is refused with a note suggesting /reset; nothing
// crashes. Exit code 0, or 2 if some command or question failed (so scripts notice).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/default_model.h"
#include "apps/device_option.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "fusion/session.h"
#include "fusion/vlm.h"
#include "text/sampler.h"

namespace glimpse::app {

namespace {

struct AskArgs {
    std::vector<std::string> images;
    std::string model, mmproj, prompt, system, chat_template;
    CLI::Option* system_opt = nullptr;
    SamplingArgs sampling;
    DeviceArgs device;
    int threads = 0, ctx = 0, max_tiles = 0;
    bool verbose = false, no_cache = false;
};

const char* kHelp =
    "commands: /image PATH (add an image to the next question), /reset (start over), /save FILE, /load FILE, "
    "/quit\n";

class AskLoop {
public:
    AskLoop(const AskArgs& a, ChatSession& s, const VlmModel& m, const Placement& device)
        : a_(a), s_(s), m_(m), device_(device), tty_(::isatty(STDIN_FILENO) == 1) {}

    int run() {
        for (const std::string& path : a_.images) add_image(path, true);
        if (!a_.prompt.empty()) question(a_.prompt);
        if (tty_) std::fprintf(stderr, "%s", kHelp);
        std::string line;
        while (true) {
            if (tty_) std::fprintf(stderr, "> ");
            if (!std::getline(std::cin, line)) break;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.empty()) continue;
            if (line[0] == '/') {
                if (!command(line)) break;
            } else {
                question(line);
            }
        }
        return failed_ ? int(ErrorKind::BadInput) : 0;
    }

private:
    // Runs f; an Error about input or context is reported and the conversation goes on.
    template <class F>
    void guarded(F&& f) {
        try {
            f();
        } catch (const Error& e) {
            if (e.kind() == ErrorKind::Model || e.kind() == ErrorKind::Device) throw;
            std::fflush(stdout);
            std::fprintf(stderr, "glimpse: %s\n", e.what());
            failed_ = true;
        }
    }

    void add_image(const std::string& path, bool fatal) {
        auto f = [&] {
            ImageTimings t;
            const bool cached = s_.add_image(path, &t);
            if (a_.verbose) {
                if (cached) std::fprintf(stderr, "image %s: cached (not encoded again)\n", path.c_str());
                else
                    std::fprintf(stderr, "image %s: decode %.1f ms | preprocess %.1f ms | encode %.1f ms | project %.1f ms\n",
                                 path.c_str(), t.decode_ms, t.preprocess_ms, t.encode_ms, t.project_ms);
                print_device_profile_line(device_);
            }
        };
        if (fatal) f();
        else guarded(f);
    }

    void question(const std::string& text) {
        guarded([&] {
            std::function<void(const float*, int, int32_t)> on_step;
            if (a_.sampling.show_probs > 0)
                on_step = [&, step = 0](const float* lg, int n_vocab, int32_t chosen) mutable {
                    print_probs(*m_.tokenizer, ++step, lg, n_vocab, a_.sampling.show_probs, a_.sampling.params.temperature,
                                chosen);
                };
            const auto constraint = json_constraint(a_.sampling);  // each answer a fresh document
            const TurnResult r = s_.ask(text, a_.sampling.params, a_.sampling.max_tokens, a_.sampling.stops,
                                        [](const std::string& piece) {
                                            std::fwrite(piece.data(), 1, piece.size(), stdout);
                                            std::fflush(stdout);
                                        },
                                        on_step, constraint.get());
            std::fputc('\n', stdout);
            std::fflush(stdout);
            if (r.stop == "context_full")
                std::fprintf(stderr, "glimpse: the context is full (%d positions): /reset to start over\n", s_.n_ctx());
            if (a_.verbose)
                std::fprintf(stderr, "turn %d: prefill %.1f ms (%d new positions) | generate %.1f ms (%zu tokens, %.1f/s) | "
                             "context %d/%d\n", s_.turns(), r.prefill_ms, r.new_positions, r.generate_ms, r.tokens.size(),
                             per_second(int64_t(r.tokens.size()), r.generate_ms), s_.n_past(), s_.n_ctx());
            if (a_.verbose) print_device_profile_line(device_);
        });
    }

    // false = end the conversation.
    bool command(const std::string& line) {
        const size_t sp = line.find(' ');
        const std::string cmd = line.substr(0, sp);
        std::string arg = sp == std::string::npos ? "" : line.substr(sp + 1);
        while (!arg.empty() && arg.back() == ' ') arg.pop_back();
        while (!arg.empty() && arg.front() == ' ') arg.erase(0, 1);
        auto need_arg = [&] {
            if (!arg.empty()) return true;
            std::fprintf(stderr, "glimpse: %s needs a file name\n", cmd.c_str());
            failed_ = true;
            return false;
        };
        if (cmd == "/quit" || cmd == "/exit") return false;
        if (cmd == "/reset") {
            s_.reset();
            note("conversation reset");
        } else if (cmd == "/image") {
            if (need_arg()) add_image(arg, false);
        } else if (cmd == "/save") {
            if (need_arg()) guarded([&] {
                    s_.save(arg);
                    note("saved " + std::to_string(s_.turns()) + " turns to " + arg);
                });
        } else if (cmd == "/load") {
            if (need_arg()) guarded([&] {
                    s_.load(arg);
                    note("loaded " + std::to_string(s_.turns()) + " turns from " + arg);
                });
        } else if (cmd == "/help") {
            std::fprintf(stderr, "%s", kHelp);
        } else {
            std::fprintf(stderr, "glimpse: unknown command %s; %s", cmd.c_str(), kHelp);
            failed_ = true;
        }
        return true;
    }

    void note(const std::string& s) const {
        if (tty_ || a_.verbose) std::fprintf(stderr, "%s\n", s.c_str());
    }

    const AskArgs& a_;
    ChatSession& s_;
    const VlmModel& m_;
    const Placement& device_;
    bool tty_;
    bool failed_ = false;
};

int run_ask(AskArgs& a) {
    finish_sampling_options(a.sampling);
    use_default_model_if_unset(a.model, a.mmproj);
    const Placement device = open_device(a.device, a.verbose);
    VlmModel m = open_vlm(a.model, a.mmproj, a.chat_template);
    place_vlm(device, m, a.verbose);
    prepare_json_output(a.sampling, *m.tokenizer);
    ThreadPool pool(a.threads);
    LlamaContext ctx(m.text, pool, a.ctx);
    SessionOptions opt;
    opt.system = a.system_opt->count() ? std::optional<std::string>(a.system) : std::optional<std::string>("");
    opt.image.max_tiles = a.max_tiles;
    opt.reuse_cache = !a.no_cache;
    ChatSession session(m, ctx, pool, opt);
    if (a.verbose)
        std::fprintf(stderr, "model: %s + %s; chat template %s; context %d; %d threads; seed %llu\n", m.text.path.c_str(),
                     m.vision.path.c_str(), std::string(m.chat.name()).c_str(), ctx.n_ctx(), pool.size(),
                     static_cast<unsigned long long>(a.sampling.params.seed));
    return AskLoop(a, session, m, device).run();
}

}  // namespace

Command add_ask(CLI::App& app) {
    auto a = std::make_shared<AskArgs>();
    auto* sub = app.add_subcommand("ask", "Talk about images: one question per line of stdin, answers streamed");
    sub->footer(
        "Commands on their own line: /image PATH, /reset, /save FILE, /load FILE, /quit.\n"
        "The conversation stays in the model's KV cache: each question evaluates only its own tokens.\n"
        "Example: echo 'What is in this photo?' | glimpse ask photo.jpg -m model.gguf");
    sub->add_option("images", a->images, "images for the first question");
    sub->add_option("-m,--model", a->model, "model file or folder (default: the embedded tiny SmolVLM, weights/tiny/)");
    sub->add_option("--mmproj", a->mmproj, "the vision tower + projector GGUF (default: the mmproj*.gguf beside the model)");
    sub->add_option("-p,--prompt", a->prompt, "a first question, asked before reading stdin");
    add_sampling_options(sub, a->sampling);
    add_device_option(sub, a->device);
    add_json_schema_option(sub, a->sampling);
    a->system_opt = sub->add_option("--system", a->system, "system prompt: the assistant's name, manner and rules");
    sub->add_option("--chat-template", a->chat_template, "smolvlm, llava, vicuna, chatml (default: the model's own)");
    sub->add_option("--image-max-tiles", a->max_tiles, "SmolVLM: at most N tiles besides the overview (0 = the model's rule)")
        ->check(CLI::Range(0, 1024));
    sub->add_option("-t,--threads", a->threads, "threads (default: one per hardware thread)")->check(CLI::Range(1, 1024));
    sub->add_option("--ctx", a->ctx, "context size in tokens (default: the model's, at most 4096)")->check(CLI::Range(1, 1 << 24));
    sub->add_flag("--no-cache", a->no_cache, "re-evaluate the whole conversation for every question (slow; for checking)");
    sub->add_flag("-v,--verbose", a->verbose, "image and turn timings on stderr");
    return {sub, [a] { return run_ask(*a); }};
}

}  // namespace glimpse::app
