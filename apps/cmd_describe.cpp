// `glimpse describe IMAGE... [-m MODEL] [--mmproj FILE] [-p PROMPT]`: one answer per image.
//
// The model is loaded once; each image is decoded, preprocessed the way its model family's
// Hugging Face processor does it, encoded by the ViT, projected into the text model's
// embedding space and placed into the chat prompt; the decoder then answers, streamed to
// stdout. With several images each answer is headed by its file name. A bad image is
// reported on stderr (one line) and the others are still answered; the exit code is then 2.
// -v adds per-stage timings and token counts on stderr; --json prints one JSON object per
// image (one per line) instead of the stream.
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/default_model.h"
#include "apps/device_option.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "fusion/vlm.h"
#include "text/generation.h"
#include "text/sampler.h"

namespace glimpse::app {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

struct DescribeArgs {
    std::vector<std::string> images;
    std::string model, mmproj, prompt = "Describe this image.", system, chat_template;
    CLI::Option* system_opt = nullptr;
    SamplingArgs sampling;
    DeviceArgs device;
    int threads = 0;
    int ctx = 0;
    int max_tiles = 0;
    bool verbose = false;
    bool json = false;
};

struct Answer {
    std::string text;
    std::vector<int32_t> tokens;
    std::string stop;
    int prompt_tokens = 0, image_tokens = 0, tiles = 0;
    ImageTimings image;
    double prefill_ms = 0, generate_ms = 0;
};

// Answers one image. Streams the text to stdout unless --json.
Answer describe_one(const DescribeArgs& a, const VlmModel& m, LlamaContext& ctx, ThreadPool& pool,
                    const std::string& path) {
    Answer ans;
    ImageOptions opt;
    opt.max_tiles = a.max_tiles;
    const EncodedImage img = encode_image_file(m, path, opt, pool, &ans.image);
    ans.tiles = img.grid.n_tiles();

    const std::optional<std::string> system =
        a.system_opt->count() ? std::optional<std::string>(a.system) : std::optional<std::string>("");
    const MmPrompt prompt = build_prompt(m, a.prompt, {&img}, system);
    ans.prompt_tokens = prompt.n_positions();
    ans.image_tokens = prompt.n_image_positions();

    ctx.reset();
    std::vector<float> logits;
    auto t0 = Clock::now();
    eval_prompt(ctx, prompt, {&img}, logits);
    ans.prefill_ms = ms_since(t0);

    Sampler sampler(a.sampling.params);
    for (const PromptPiece& p : prompt.pieces)
        for (int32_t id : p.tokens) sampler.accept(id);
    GenerateOptions gen;
    gen.max_tokens = a.sampling.max_tokens;
    gen.stop_tokens = m.tokenizer->eog_ids();
    const auto constraint = json_constraint(a.sampling);
    gen.constraint = constraint.get();
    if (a.sampling.show_probs > 0)
        gen.on_step = [&, step = 0](const float* lg, int n_vocab, int32_t chosen) mutable {
            print_probs(*m.tokenizer, ++step, lg, n_vocab, a.sampling.show_probs, a.sampling.params.temperature, chosen);
        };
    TokenStream stream(*m.tokenizer);
    StopStrings stops(a.sampling.stops);
    auto emit = [&](const std::string& s) {
        ans.text += s;
        if (!a.json && !s.empty()) {
            std::fwrite(s.data(), 1, s.size(), stdout);
            std::fflush(stdout);
        }
    };
    t0 = Clock::now();
    const GenerateResult r = continue_generation(ctx, logits, sampler, gen, [&](int32_t id) {
        emit(stops.feed(stream.push(id)));
        return !stops.stopped();
    });
    if (!stops.stopped()) emit(stops.feed(stream.flush()) + stops.flush());
    ans.generate_ms = ms_since(t0);
    ans.tokens = r.tokens;
    ans.stop = r.stopped_by_token ? "eog" : stops.stopped() ? "stop_string" : r.stopped_by_constraint ? "complete" : "length";
    return ans;
}

void print_timings(const Answer& x) {
    const ImageTimings& t = x.image;
    std::fprintf(stderr,
                 "timings: decode image %.1f ms | preprocess %.1f ms | encode %.1f ms (%d tiles, %.1f ms/tile) | "
                 "project %.1f ms | prefill %.1f ms (%d positions, %d image; %.1f/s) | generate %.1f ms (%zu tokens, "
                 "%.1f/s)\n",
                 t.decode_ms, t.preprocess_ms, t.encode_ms, x.tiles, x.tiles ? t.encode_ms / x.tiles : 0.0, t.project_ms,
                 x.prefill_ms, x.prompt_tokens, x.image_tokens, per_second(x.prompt_tokens, x.prefill_ms), x.generate_ms,
                 x.tokens.size(), per_second(int64_t(x.tokens.size()), x.generate_ms));
}

nlohmann::json answer_json(const std::string& path, const Answer& x) {
    const ImageTimings& t = x.image;
    return {{"file", path},
            {"text", x.text},
            {"tokens", x.tokens},
            {"stop", x.stop},
            {"prompt_tokens", x.prompt_tokens},
            {"image_tokens", x.image_tokens},
            {"tiles", x.tiles},
            {"timings",
             {{"decode_ms", t.decode_ms}, {"preprocess_ms", t.preprocess_ms}, {"encode_ms", t.encode_ms},
              {"project_ms", t.project_ms}, {"prefill_ms", x.prefill_ms}, {"generate_ms", x.generate_ms}}}};
}

int run_describe(DescribeArgs& a) {
    finish_sampling_options(a.sampling);
    use_default_model_if_unset(a.model, a.mmproj);  // the tiny SmolVLM trained by weights/tiny/
    const Placement device = open_device(a.device, a.verbose);
    const auto t_load = Clock::now();
    VlmModel m = open_vlm(a.model, a.mmproj, a.chat_template);
    place_vlm(device, m, a.verbose);
    prepare_json_output(a.sampling, *m.tokenizer);
    ThreadPool pool(a.threads);
    LlamaContext ctx(m.text, pool, a.ctx);
    if (a.verbose)
        std::fprintf(stderr,
                     "model: %s + %s; text %d layers, n_embd %d, vocab %d; vision %d layers, %dpx tiles, %d tokens/tile; "
                     "chat template %s; context %d; %d threads; seed %llu; loaded in %.0f ms\n",
                     m.text.path.c_str(), m.vision.path.c_str(), m.text.config.n_layers, m.text.config.n_embd,
                     m.text.config.n_vocab, m.vision.config.n_layers, m.vision.config.image_size,
                     tokens_per_tile(m.vision.config), std::string(m.chat.name()).c_str(), ctx.n_ctx(), pool.size(),
                     static_cast<unsigned long long>(a.sampling.params.seed), ms_since(t_load));

    int failed = 0;
    for (size_t i = 0; i < a.images.size(); ++i) {
        const std::string& path = a.images[i];
        if (!a.json && a.images.size() > 1) std::printf("%s==> %s <==\n", i ? "\n" : "", path.c_str());
        std::fflush(stdout);
        try {
            const Answer x = describe_one(a, m, ctx, pool, path);
            if (a.json) {
                std::printf("%s\n", answer_json(path, x).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
            } else if (x.text.empty() || x.text.back() != '\n') {
                std::fputc('\n', stdout);
            }
            std::fflush(stdout);
            if (a.verbose) {
                print_timings(x);
                print_device_profile_line(device);
            }
        } catch (const Error& e) {
            // A bad image (or one that does not fit the context) is reported; the rest go on.
            if (e.kind() == ErrorKind::Model || e.kind() == ErrorKind::Device) throw;
            ++failed;
            std::fflush(stdout);
            std::fprintf(stderr, "glimpse: %s\n", e.what());
            if (a.json) std::printf("%s\n", nlohmann::json({{"file", path}, {"error", e.what()}}).dump().c_str());
        }
    }
    if (failed && a.images.size() > 1)
        std::fprintf(stderr, "glimpse: %d of %zu images failed\n", failed, a.images.size());
    return failed ? int(ErrorKind::BadInput) : 0;
}

}  // namespace

Command add_describe(CLI::App& app) {
    auto a = std::make_shared<DescribeArgs>();
    auto* sub = app.add_subcommand("describe", "Describe images: one answer per image, streamed");
    sub->footer(
        "MODEL: a GGUF text model (its mmproj*.gguf beside it, or --mmproj), a folder holding both,\n"
        "or a Hugging Face SmolVLM / LLaVA-1.5 folder.\n"
        "The image goes where the prompt says <__media__>, otherwise before the prompt text, as in the\n"
        "model's own chat template. Bad images are reported one line each; the others are still answered\n"
        "(exit code 2 if any failed).\n"
        "Example: glimpse describe photo.jpg -m SmolVLM-256M-Instruct-Q8_0.gguf --mmproj mmproj-SmolVLM-256M-Instruct-f16.gguf");
    sub->add_option("images", a->images, "image files (JPEG, PNG, BMP, GIF, WebP, TIFF)")->required();
    sub->add_option("-m,--model", a->model, "model file or folder (default: the embedded tiny SmolVLM, weights/tiny/)");
    sub->add_option("--mmproj", a->mmproj, "the vision tower + projector GGUF (default: the mmproj*.gguf beside the model)");
    sub->add_option("-p,--prompt", a->prompt, "what to ask about each image (default \"Describe this image.\")");
    add_sampling_options(sub, a->sampling);
    add_json_schema_option(sub, a->sampling);
    add_device_option(sub, a->device);
    a->system_opt = sub->add_option("--system", a->system, "system prompt (default: none)");
    sub->add_option("--chat-template", a->chat_template, "smolvlm, llava, vicuna, chatml (default: the model's own)");
    sub->add_option("--image-max-tiles", a->max_tiles,
                    "SmolVLM: cut an image into at most N tiles besides the overview (fewer image tokens; 0 = the "
                    "model's own rule)")
        ->check(CLI::Range(0, 1024));
    sub->add_option("-t,--threads", a->threads, "threads (default: one per hardware thread)")->check(CLI::Range(1, 1024));
    sub->add_option("--ctx", a->ctx, "context size in tokens (default: the model's, at most 4096)")
        ->check(CLI::Range(1, 1 << 24));
    sub->add_flag("-v,--verbose", a->verbose, "model facts, per-stage timings and token counts on stderr");
    sub->add_flag("--json", a->json, "one JSON object per image (text, token ids, timings, token counts) instead of the stream");
    return {sub, [a] { return run_describe(*a); }};
}

}  // namespace glimpse::app
