// `glimpse caption PATH... -o OUT.jsonl`: one caption per image for many images, with one
// model load.
//
// Inputs are files, folders (recursive, by image extension), glob patterns and @list files
// (apps/caption_inputs.h). Each image gives one JSON line, written whole with one write(2) on
// a file opened O_APPEND, so a run killed at any moment leaves only complete lines (or, after
// a power cut, a torn last line that --resume cuts off):
//   {"file": "...", "caption": "...", "tokens": 12, "ms": 340.5}   or   {"file": "...", "error": "..."}
// A bad file never stops the run. --resume skips files already in OUT; --shard I/N keeps
// only the files whose path hashes to shard I, so N runs cover the set exactly once.
// The images go through apps/caption_engine.h: read and preprocessed on a worker thread
// ahead of the model, --batch N of them encoded, prefilled and decoded together.
// Exit code 0 when every image was captioned, 2 when some failed.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/caption_engine.h"
#include "apps/caption_inputs.h"
#include "apps/commands.h"
#include "apps/common.h"
#include "apps/default_model.h"
#include "apps/device_option.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "fusion/vlm.h"
#include "text/sampler.h"

namespace glimpse::app {

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

struct CaptionArgs {
    std::vector<std::string> inputs;
    std::string out = "-", format = "jsonl", shard;
    std::string model, mmproj, prompt = "Describe this image.", system, chat_template;
    CLI::Option* system_opt = nullptr;
    SamplingArgs sampling;
    DeviceArgs device;
    int threads = 0, ctx = 0, max_tiles = 0, batch = kDefaultCaptionBatch, lanes = 0;
    bool resume = false, verbose = false;
};

// Where results go: a JSONL file (appended line by line), stdout, or image.txt files.
class CaptionSink {
public:
    CaptionSink(const CaptionArgs& a) : format_(a.format) {
        if (format_ == "txt") return;
        if (a.out == "-") {
            fd_ = STDOUT_FILENO;
            return;
        }
        const int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (a.resume ? 0 : O_TRUNC);
        fd_ = ::open(a.out.c_str(), flags, 0644);
        if (fd_ < 0) throw input_error(a.out, std::string("cannot open for writing: ") + std::strerror(errno));
        own_ = true;
    }
    ~CaptionSink() {
        if (own_) ::close(fd_);
    }
    CaptionSink(const CaptionSink&) = delete;
    CaptionSink& operator=(const CaptionSink&) = delete;

    void write(const std::string& file, const nlohmann::ordered_json& line) {
        if (format_ == "txt") return write_txt(file, line);
        write_all(fd_, line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n", "the output");
    }

private:
    // Beside the image, as training-data tools expect: photo.jpg -> photo.txt, written to a
    // temporary name and renamed so a reader never sees half a caption.
    void write_txt(const std::string& file, const nlohmann::ordered_json& line) {
        if (!line.contains("caption")) return;  // the error is on stderr and in the summary
        const std::string txt = fs::path(file).replace_extension(".txt").string();
        const std::string tmp = txt + ".tmp";
        const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) throw input_error(tmp, std::string("cannot open for writing: ") + std::strerror(errno));
        try {
            write_all(fd, line["caption"].get<std::string>() + "\n", tmp);
        } catch (...) {
            ::close(fd);
            throw;
        }
        ::close(fd);
        if (std::rename(tmp.c_str(), txt.c_str()) != 0) throw input_error(txt, "cannot rename " + tmp + " to it");
    }

    static void write_all(int fd, const std::string& s, const std::string& what) {
        size_t done = 0;
        while (done < s.size()) {
            const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) throw input_error(what, std::string("write failed: ") + std::strerror(errno));
            done += size_t(n);
        }
    }

    std::string format_;
    int fd_ = -1;
    bool own_ = false;
};

// "[#####.....] 12/300  3.1 images/s  ETA 1m33s" on a terminal (redrawn in place), a plain
// line every 30 s otherwise.
class Progress {
public:
    Progress(size_t total) : total_(total), tty_(::isatty(STDERR_FILENO) == 1), t0_(Clock::now()), last_(t0_) {}

    void update(size_t done) {
        const double s = ms_since(t0_) / 1000.0;
        const double rate = s > 0 ? double(done) / s : 0.0;
        const double eta = rate > 0 ? double(total_ - done) / rate : 0.0;
        char eta_buf[32];
        std::snprintf(eta_buf, sizeof eta_buf, "%dm%02ds", int(eta) / 60, int(eta) % 60);
        if (tty_) {
            const int width = 30, fill = total_ ? int(double(width) * double(done) / double(total_)) : width;
            std::fprintf(stderr, "\r[%s%s] %zu/%zu  %.2f images/s  ETA %s ", std::string(size_t(fill), '#').c_str(),
                         std::string(size_t(width - fill), '.').c_str(), done, total_, rate, eta_buf);
            if (done == total_) std::fputc('\n', stderr);
        } else if (ms_since(last_) >= 30000.0 && done < total_) {
            last_ = Clock::now();
            std::fprintf(stderr, "caption: %zu/%zu images, %.2f images/s, ETA %s\n", done, total_, rate, eta_buf);
        }
        std::fflush(stderr);
    }

private:
    size_t total_;
    bool tty_;
    Clock::time_point t0_, last_;
};

// The inputs left after --shard and --resume; `skipped` counts those already done.
std::vector<CaptionInput> select_inputs(const CaptionArgs& a, size_t& skipped) {
    uint32_t shard = 0, n_shards = 1;
    if (!a.shard.empty()) parse_shard(a.shard, shard, n_shards);
    std::set<std::string> done;
    if (a.resume && a.format == "jsonl") done = read_done_files(a.out);
    std::vector<CaptionInput> todo;
    for (auto& in : expand_caption_inputs(a.inputs)) {
        if (shard_of(in.path, n_shards) != shard) continue;
        const bool txt_done = a.resume && a.format == "txt" && fs::exists(fs::path(in.path).replace_extension(".txt"));
        if (done.count(in.path) || txt_done) {
            ++skipped;
            continue;
        }
        todo.push_back(std::move(in));
    }
    return todo;
}

int run_caption(CaptionArgs& a) {
    finish_sampling_options(a.sampling);
    if (a.resume && a.format == "jsonl" && a.out == "-")
        throw Error(ErrorKind::Usage, "--resume needs an output file (-o OUT.jsonl) to resume from");
    use_default_model_if_unset(a.model, a.mmproj);
    size_t skipped = 0;
    const std::vector<CaptionInput> todo = select_inputs(a, skipped);
    const Placement device = open_device(a.device, a.verbose);
    const auto t_load = Clock::now();
    VlmModel m = open_vlm(a.model, a.mmproj, a.chat_template);
    place_vlm(device, m, a.verbose);
    ThreadPool pool(a.threads);
    CaptionSettings settings;
    settings.prompt = a.prompt;
    settings.system = a.system_opt->count() ? a.system : std::string();
    settings.sampling = a.sampling.params;  // reseeded per image: a caption does not depend on the order
    settings.max_tokens = a.sampling.max_tokens;
    settings.stops = a.sampling.stops;
    settings.image.max_tiles = a.max_tiles;
    settings.batch = a.batch;
    settings.lanes = a.lanes;
    settings.ctx = a.ctx;
    CaptionEngine engine(m, pool, settings);
    if (a.verbose)
        std::fprintf(stderr, "caption: %zu images to do, %zu already in %s; model loaded in %.0f ms; %d threads, batch %d, %d lane%s\n",
                     todo.size(), skipped, a.out.c_str(), ms_since(t_load), pool.size(), a.batch, engine.lanes(),
                     engine.lanes() == 1 ? "" : "s");
    CaptionSink sink(a);
    Progress progress(todo.size());

    const auto t0 = Clock::now();
    size_t failed = 0, done = 0;
    engine.run(todo, [&](size_t i, const nlohmann::ordered_json& line) {
        const std::string& path = todo[i].path;
        if (line.contains("error")) {
            ++failed;
            std::fprintf(stderr, "%sglimpse: %s\n", ::isatty(STDERR_FILENO) ? "\r" : "",
                         line["error"].get<std::string>().c_str());
        }
        sink.write(path, line);
        ++done;
        if (a.verbose && line.contains("caption"))
            std::fprintf(stderr, "caption: %s: %d tokens, %.1f ms\n", path.c_str(), line["tokens"].get<int>(),
                         line["ms"].get<double>());
        progress.update(done);
    });
    if (a.verbose) {
        const CaptionStats& st = engine.stats();
        std::fprintf(stderr,
                     "caption: model thread: encode %.0f ms (%lld tiles), prefill %.0f ms (%lld positions), decode %.0f ms "
                     "(%lld tokens); reader thread: %.0f ms\n",
                     st.encode_ms, (long long)st.tiles, st.prefill_ms, (long long)st.prompt_positions, st.decode_ms,
                     (long long)st.generated, st.read_ms);
        print_device_profile_line(device);  // with a Vulkan --device: its GPU time by shader
    }
    const double ms = ms_since(t0);
    std::fprintf(stderr, "caption: %zu captioned, %zu failed%s in %.1f s (%.2f images/s)\n", done - failed, failed,
                 skipped ? (", " + std::to_string(skipped) + " already done").c_str() : "", ms / 1000.0,
                 per_second(int64_t(done), ms));
    return failed ? int(ErrorKind::BadInput) : 0;
}

}  // namespace

Command add_caption(CLI::App& app) {
    auto a = std::make_shared<CaptionArgs>();
    auto* sub = app.add_subcommand("caption", "Caption many images: one JSON line per image, resumable, shardable");
    sub->footer(
        "PATH: an image file, a folder (searched recursively for .jpg .jpeg .png .bmp .gif .webp .tif .tiff),\n"
        "a glob pattern (quote it: 'photos/*.jpg'), or @LIST (one path per line).\n"
        "Each image gives one line {\"file\",\"caption\",\"tokens\",\"ms\"}, or {\"file\",\"error\"} for a bad one;\n"
        "a bad file never stops the run (exit code 2 if any failed).\n"
        "Example: glimpse caption photos/ -o captions.jsonl -m model.gguf --resume --shard 0/4");
    sub->add_option("paths", a->inputs, "images, folders, glob patterns, @list files")->required();
    sub->add_option("-o,--output", a->out, "JSONL file to write (default: stdout)");
    sub->add_option("--format", a->format, "jsonl (default), or txt: IMAGE.txt beside each image")
        ->check(CLI::IsMember({"jsonl", "txt"}));
    sub->add_flag("--resume", a->resume, "skip the files already in the output (txt: that have their .txt) and append");
    sub->add_option("--shard", a->shard, "I/N: caption only shard I of N (by a hash of the path)");
    sub->add_option("-m,--model", a->model, "model file or folder (default: the embedded tiny SmolVLM, weights/tiny/)");
    sub->add_option("--mmproj", a->mmproj, "the vision tower + projector GGUF (default: the mmproj*.gguf beside the model)");
    sub->add_option("-p,--prompt", a->prompt, "what to ask about each image (default \"Describe this image.\")");
    add_sampling_options(sub, a->sampling);
    add_device_option(sub, a->device);
    a->system_opt = sub->add_option("--system", a->system, "system prompt (default: none)");
    sub->add_option("--chat-template", a->chat_template, "smolvlm, llava, vicuna, chatml (default: the model's own)");
    sub->add_option("--image-max-tiles", a->max_tiles, "SmolVLM: at most N tiles besides the overview (0 = the model's rule)")
        ->check(CLI::Range(0, 1024));
    sub->add_option("--batch", a->batch,
                    "images captioned together: their tiles share encoder batches and their captions are decoded "
                    "together (default " + std::to_string(kDefaultCaptionBatch) + "; 1 = one image at a time)")
        ->check(CLI::Range(1, 256));
    sub->add_option("--lanes", a->lanes,
                    "run N lanes of batch/N images side by side, one thread each, every op of a lane inline (default: one lane per "
                    "thread for a model under 8 M parameters such as the default one, else 1)")
        ->check(CLI::Range(0, 256));
    sub->add_option("-t,--threads", a->threads, "threads (default: one per hardware thread)")->check(CLI::Range(1, 1024));
    sub->add_option("--ctx", a->ctx, "context size in tokens (default: the model's, at most 4096)")->check(CLI::Range(1, 1 << 24));
    sub->add_flag("-v,--verbose", a->verbose, "per-image tokens and times, images/s on stderr");
    return {sub, [a] { return run_caption(*a); }};
}

}  // namespace glimpse::app
