// `glimpse inspect IMAGE [-p PROMPT] [-o DIR]`: one answer about one image, with what happened
// inside written to DIR for a person to look at:
//   tiles.png      the tiles the vision encoder was given, with the patch grid and the number of
//                  image tokens (fusion/tile_sheet.h)
//   tokens.txt     the whole prompt as the decoder reads it: text token ids and the runs of
//                  image positions (what `tokenize --image` prints), then the answer's ids
//   attention.png  for every generated token, a heat map of the attention its position paid
//                  to the image tokens (averaged over the heads of one layer, or of all layers)
//   probs.txt      for every generated token, the most likely candidates and their probabilities
// stdout gets a summary: the answer and, per token, its probability, the share of attention
// that went to the image, and the image token looked at most.
//
// The attention comes from LlamaContext's optional AttentionCapture: the softmax weights of the
// last query row of every forward() call, i.e. of the position whose logits choose the token.
// That capture exists in the CPU forward pass only, so with --device vulkan the vision tower
// and projector run on the device and the decoder on the CPU (said on stderr).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/default_model.h"
#include "apps/device_option.h"
#include "fusion/inspect_pictures.h"
#include "apps/tokenize_image.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "fusion/vlm.h"
#include "text/generation.h"
#include "text/sampler.h"

namespace glimpse::app {

namespace {

namespace fs = std::filesystem;

struct InspectArgs {
    std::string image, model, mmproj, prompt = "Describe this image.", system, chat_template, out_dir = "inspect";
    CLI::Option* system_opt = nullptr;
    SamplingArgs sampling;
    int threads = 0, ctx = 0, max_tiles = 0;
    int layer = -1;        // decoder layer whose heads are averaged; -1 = all layers
    int probs_top = 10;    // rows per table in probs.txt
    DeviceArgs device;
};

// What one generation step leaves behind.
struct Step {
    int32_t id = 0;
    std::vector<TokenProb> top;  // most likely first
    float prob = 0;              // of the chosen token
    StepAttention attention;
};

// A file in the output folder, opened for writing; Error(BadInput) naming it otherwise.
struct OutFile {
    std::FILE* f;
    explicit OutFile(const fs::path& p) : f(std::fopen(p.string().c_str(), "wb")) {
        if (!f) throw input_error(p.string(), "cannot write");
    }
    ~OutFile() {
        if (f) std::fclose(f);
    }
    // Flushes and closes; Error(BadInput) naming the file when the data did not reach it.
    void close(const fs::path& p) {
        const bool ok = std::ferror(f) == 0 && std::fclose(f) == 0;
        f = nullptr;
        if (!ok) throw input_error(p.string(), "write failed (disk full?)");
    }
    OutFile(const OutFile&) = delete;
    OutFile& operator=(const OutFile&) = delete;
};

// A token as a label under its picture: its text without surrounding spaces; an invisible one
// (a newline, a space) as its escaped form.
std::string label_of(const Tokenizer& tok, int32_t id) {
    const std::string text = token_text(tok, id);
    const size_t b = text.find_first_not_of(' '), e = text.find_last_not_of(' ');
    return b == std::string::npos ? "'" + text + "'" : text.substr(b, e - b + 1);
}

// Characters (not bytes) in a UTF-8 string, and the string padded with spaces to `width` of them.
size_t n_chars(const std::string& s) {
    return size_t(std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}
std::string pad(const std::string& s, size_t width) { return s + std::string(width - std::min(width, n_chars(s)), ' '); }

// softmax(logits / T)[id], T <= 0 counting as 1 (as top_candidates does).
float probability_of(const float* logits, int n_vocab, int32_t id, float temperature) {
    const double t = temperature > 0 ? temperature : 1.0;
    const float max = *std::max_element(logits, logits + n_vocab);
    double sum = 0;
    for (int i = 0; i < n_vocab; ++i) sum += std::exp((double(logits[i]) - max) / t);
    return float(std::exp((double(logits[id]) - max) / t) / sum);
}

// For each image embedding row (in embedding order), its position in the prompt.
std::vector<int> image_positions(const MmPrompt& prompt, int n_embd_rows) {
    std::vector<int> pos(size_t(n_embd_rows), -1);
    int p0 = 0;
    for (const PromptPiece& p : prompt.pieces) {
        if (p.is_image())
            for (int r = 0; r < p.n_rows; ++r) pos[size_t(p.embd_row + r)] = p0 + r;
        p0 += p.n_positions();
    }
    return pos;
}

// The attention of the last forward() to each image token, averaged over the heads of `layer`
// (or of every layer when layer < 0).
StepAttention image_attention(const AttentionCapture& cap, const std::vector<int>& positions, int layer) {
    StepAttention s;
    s.image.assign(positions.size(), 0.0f);
    const int l0 = layer < 0 ? 0 : layer, l1 = layer < 0 ? cap.n_layers : layer + 1;
    const float w = 1.0f / float((l1 - l0) * cap.n_heads);
    for (int l = l0; l < l1; ++l)
        for (int h = 0; h < cap.n_heads; ++h) {
            const float* p = cap.row(l, h);
            for (size_t i = 0; i < positions.size(); ++i) s.image[i] += w * p[positions[i]];
        }
    for (float v : s.image) s.image_share += v;
    return s;
}

// "row 2 col 3" (an unsplit image) or "tile r1 c2, row 2 col 3" / "global image, row 1 col 1":
// where the most looked-at image token sits.
std::string hottest_place(const ImageGrid& g, const std::vector<float>& w) {
    const int i = int(std::max_element(w.begin(), w.end()) - w.begin());
    const int tile = i / g.tokens_per_tile, t = i % g.tokens_per_tile;
    int side = 1;
    while (side * side < g.tokens_per_tile) ++side;
    const std::string cell = "row " + std::to_string(t / side + 1) + " col " + std::to_string(t % side + 1);
    if (g.rows == 0) return cell;
    if (tile == g.rows * g.cols) return "global image, " + cell;
    return "tile r" + std::to_string(tile / g.cols + 1) + " c" + std::to_string(tile % g.cols + 1) + ", " + cell;
}

void write_tokens(const fs::path& path, const InspectArgs& a, const VlmModel& m, const RgbImage& img,
                  const ImageGrid& g, const MmPrompt& prompt, const std::vector<Step>& steps) {
    OutFile out(path);
    print_image_prompt(out.f, m, a.image, img, g, prompt);
    std::fprintf(out.f, "\nanswer: %zu generated tokens\n", steps.size());
    for (const Step& s : steps)
        std::fprintf(out.f, "%6d  '%s'%s\n", s.id, token_text(*m.tokenizer, s.id).c_str(),
                     m.tokenizer->is_special(s.id) ? "  (special)" : "");
    out.close(path);
}

void write_probs(const fs::path& path, const Tokenizer& tok, float temperature, const std::vector<Step>& steps) {
    OutFile out(path);
    std::fprintf(out.f,
                 "# For each generated token: the most likely candidates at that step, with their probability\n"
                 "# (softmax of the logits%s). Greedy decoding takes the first row.\n",
                 temperature > 0 ? (" / temperature " + std::to_string(temperature)).c_str() : "");
    for (size_t i = 0; i < steps.size(); ++i) {
        const Step& s = steps[i];
        std::fprintf(out.f, "\nstep %zu: chose '%s' (id %d, probability %.6f)\n", i + 1,
                     token_text(tok, s.id).c_str(), s.id, double(s.prob));
        std::fprintf(out.f, "  rank      id  probability  token\n");
        double rest = 1.0;
        for (size_t r = 0; r < s.top.size(); ++r) {
            std::fprintf(out.f, "  %4zu  %6d  %11.6f  '%s'\n", r + 1, s.top[r].id, double(s.top[r].prob),
                         token_text(tok, s.top[r].id).c_str());
            rest -= s.top[r].prob;
        }
        std::fprintf(out.f, "  (all other tokens together: %.6f)\n", std::max(rest, 0.0));
    }
    out.close(path);
}

int run_inspect(InspectArgs& a) {
    finish_sampling_options(a.sampling);
    use_default_model_if_unset(a.model, a.mmproj);
    const Placement device = open_device(a.device, false);
    VlmModel m = open_vlm(a.model, a.mmproj, a.chat_template);
    // The vision tower runs on the chosen device; the decoder stays on the CPU, because the
    // attention weights attention.png draws are captured by the CPU forward pass only.
    place_vision(device, m.vision, false);
    if (device.ctx)
        std::fprintf(stderr, "inspect: vision tower + projector on %s; the decoder runs on the cpu "
                             "(attention capture is CPU-only)\n", device.label().c_str());
    const int n_layers = m.text.config.n_layers;
    if (a.layer >= n_layers)
        throw Error(ErrorKind::Usage, "--layer " + std::to_string(a.layer) + ": the model has " +
                                          std::to_string(n_layers) + " decoder layers (0.." +
                                          std::to_string(n_layers - 1) + ", or -1 for all)");
    std::error_code ec;
    fs::create_directories(a.out_dir, ec);
    if (ec || !fs::is_directory(a.out_dir)) throw input_error(a.out_dir, "cannot create the output folder");

    ThreadPool pool(a.threads);
    LlamaContext ctx(m.text, pool, a.ctx);
    const RgbImage img = load_image(a.image);
    ImageOptions opt;
    opt.max_tiles = a.max_tiles;
    ImageGrid grid;
    const std::vector<RgbImage> tiles = preprocess_image(m, img, opt, grid);
    const EncodedImage enc = encode_image(m, img, opt, pool);
    const std::optional<std::string> system =
        a.system_opt->count() ? std::optional<std::string>(a.system) : std::optional<std::string>("");
    const MmPrompt prompt = build_prompt(m, a.prompt, {&enc}, system);
    const std::vector<int> positions = image_positions(prompt, grid.n_embeddings());

    // Generation as describe does it, with the capture on: each step reads the attention of the
    // forward() whose logits it samples from.
    AttentionCapture capture;
    ctx.set_attention_capture(&capture);
    std::vector<float> logits;
    eval_prompt(ctx, prompt, {&enc}, logits);
    Sampler sampler(a.sampling.params);
    for (const PromptPiece& p : prompt.pieces)
        for (int32_t id : p.tokens) sampler.accept(id);
    std::vector<Step> steps;
    GenerateOptions gen;
    gen.max_tokens = a.sampling.max_tokens;
    gen.stop_tokens = m.tokenizer->eog_ids();
    const float temperature = a.sampling.params.temperature;
    gen.on_step = [&](const float* lg, int n_vocab, int32_t chosen) {
        Step s;
        s.id = chosen;
        s.top = top_candidates(lg, n_vocab, a.probs_top, temperature);
        s.prob = probability_of(lg, n_vocab, chosen, temperature);
        s.attention = image_attention(capture, positions, a.layer);
        s.attention.label = label_of(*m.tokenizer, chosen);
        steps.push_back(std::move(s));
        if (a.sampling.show_probs > 0)
            print_probs(*m.tokenizer, int(steps.size()), lg, n_vocab, a.sampling.show_probs, temperature, chosen);
    };
    TokenStream stream(*m.tokenizer);
    StopStrings stops(a.sampling.stops);
    std::string answer;
    continue_generation(ctx, logits, sampler, gen, [&](int32_t id) {
        answer += stops.feed(stream.push(id));
        return !stops.stopped();
    });
    if (!stops.stopped()) answer += stops.feed(stream.flush()) + stops.flush();
    ctx.set_attention_capture(nullptr);

    // The files.
    const fs::path dir(a.out_dir);
    const int patch = m.vision.config.patch_size, pps = m.vision.config.patches_per_side();
    const std::string tiles_line = grid.rows > 0 ? std::to_string(grid.rows) + "x" + std::to_string(grid.cols) +
                                                       " tiles + the whole image = " + std::to_string(grid.n_tiles()) +
                                                       " tiles of " + std::to_string(tiles[0].width) + " px"
                                                 : "1 tile of " + std::to_string(tiles[0].width) + " px";
    const std::vector<std::string> caption = {
        tiles_line, std::to_string(pps) + "x" + std::to_string(pps) + " patches of " + std::to_string(patch) + " px",
        std::to_string(grid.n_embeddings()) + " image tokens (" + std::to_string(grid.tokens_per_tile) + " per tile)"};
    save_image(tiles_picture(tiles, grid, patch, caption), (dir / "tiles.png").string());
    write_tokens(dir / "tokens.txt", a, m, img, grid, prompt, steps);
    std::vector<StepAttention> strip;
    for (const Step& s : steps) strip.push_back(s.attention);
    const std::string which = a.layer < 0 ? "all " + std::to_string(n_layers) + " layers" : "layer " + std::to_string(a.layer);
    save_image(attention_strip(tiles, grid, strip, "Where each word looked (" + which + ", heads averaged)"),
               (dir / "attention.png").string());
    write_probs(dir / "probs.txt", *m.tokenizer, temperature, steps);

    // The summary.
    std::printf("image: %s, %dx%d -> %s, %dx%d patches of %d px -> %d image tokens\n", a.image.c_str(), img.width,
                img.height, tiles_line.c_str(), pps, pps, patch, grid.n_embeddings());
    std::printf("prompt: %d positions (%d text tokens, %d image positions)\n", prompt.n_positions(),
                prompt.n_positions() - prompt.n_image_positions(), prompt.n_image_positions());
    std::printf("answer:%s%s\n\n", answer.empty() || answer[0] == ' ' ? "" : " ", answer.c_str());
    std::vector<std::string> shown;
    size_t width = 5;
    for (const Step& s : steps) {
        shown.push_back("'" + token_text(*m.tokenizer, s.id) + "'");
        width = std::max(width, n_chars(shown.back()));
    }
    std::printf("step  %s  chance  on the image  looked at most\n", pad("token", width).c_str());
    for (size_t i = 0; i < steps.size(); ++i) {
        const Step& s = steps[i];
        std::printf("%4zu  %s  %5.0f%%  %11.0f%%  %s\n", i + 1, pad(shown[i], width).c_str(), 100.0 * s.prob,
                    100.0 * s.attention.image_share, hottest_place(grid, s.attention.image).c_str());
    }
    std::printf("\nattention: %s, heads averaged\n", which.c_str());
    std::printf("wrote %s: tiles.png tokens.txt attention.png probs.txt\n", a.out_dir.c_str());
    return 0;
}

}  // namespace

Command add_inspect(CLI::App& app) {
    auto a = std::make_shared<InspectArgs>();
    auto* sub = app.add_subcommand("inspect", "Answer about one image and show what happened inside (pictures, tokens, attention, probabilities)");
    sub->footer(
        "Writes to DIR: tiles.png (the tiles the vision encoder sees, with the patch grid), tokens.txt\n"
        "(the prompt as the model reads it, image positions included), attention.png (for each generated\n"
        "token, where in the image its position looked) and probs.txt (the candidates of every step).\n"
        "MODEL as for describe; without -m, the embedded tiny SmolVLM.\n"
        "Example: glimpse inspect examples/scene_3.png -o /tmp/inspect");
    sub->add_option("image", a->image, "the image file")->required();
    sub->add_option("-m,--model", a->model, "model file or folder (default: the embedded tiny SmolVLM, weights/tiny/)");
    sub->add_option("--mmproj", a->mmproj, "the vision tower + projector GGUF (default: the mmproj*.gguf beside the model)");
    sub->add_option("-p,--prompt", a->prompt, "what to ask (default \"Describe this image.\")");
    sub->add_option("-o,--out", a->out_dir, "folder for the four files (default ./inspect, created if missing)");
    sub->add_option("--layer", a->layer, "decoder layer whose attention heads are averaged (default -1: all layers)")
        ->check(CLI::Range(-1, 1 << 16));
    sub->add_option("--probs", a->probs_top, "candidates per step in probs.txt (default 10)")->check(CLI::Range(1, 1000));
    add_sampling_options(sub, a->sampling);
    a->sampling.max_tokens = 32;
    sub->get_option("-n")->description("tokens to generate at most (default 32)");
    a->system_opt = sub->add_option("--system", a->system, "system prompt (default: none)");
    sub->add_option("--chat-template", a->chat_template, "smolvlm, llava, vicuna, chatml (default: the model's own)");
    sub->add_option("--image-max-tiles", a->max_tiles, "SmolVLM: at most N tiles besides the overview (0 = the model's rule)")
        ->check(CLI::Range(0, 1024));
    sub->add_option("-t,--threads", a->threads, "threads (default: one per hardware thread)")->check(CLI::Range(1, 1024));
    sub->add_option("--ctx", a->ctx, "context size in tokens (default: the model's, at most 4096)")
        ->check(CLI::Range(1, 1 << 24));
    add_device_option(sub, a->device);
    return {sub, [a] { return run_inspect(*a); }};
}

}  // namespace glimpse::app
