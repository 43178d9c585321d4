// `glimpse bench --caption` (apps/bench_caption.h): the same folder of generated pictures
// captioned with --batch 1 and with --batch N by one loaded model, runs alternating, each
// figure the median of the repeats. The pictures are scenes of the default model's kind
// (1 to 3 coloured discs and squares on a light background, with some pixel noise so that
// the files are photo-like to decode), saved as JPEG.
#include "apps/bench_caption.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/bench_util.h"
#include "apps/caption_engine.h"
#include "apps/default_model.h"
#include "apps/device_option.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "fusion/vlm.h"
#include "vision/image.h"
#include "weights/random_model.h"

namespace glimpse::app {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// llama.cpp's figure for a folder of 512x512 photos, one llama-mtmd-cli per image (BASELINE.md).
constexpr double kLlamaCppImagesPerMin = 1.47;

struct Scratch {
    fs::path path;
    Scratch() {
        path = fs::temp_directory_path() / ("glimpse-bench-caption-" + std::to_string(::getpid()));
        fs::create_directories(path);
    }
    ~Scratch() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

struct Rng {
    uint64_t s;
    uint32_t next() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return uint32_t(s >> 32);
    }
    int below(int n) { return int(next() % uint32_t(n)); }
};

RgbImage make_picture(int size, uint64_t seed) {
    Rng rng{seed * 0x9E3779B97F4A7C15ull + 7};
    RgbImage img(size, size);
    const uint8_t bg = uint8_t(220 + rng.below(36));
    for (uint8_t& p : img.pixels) p = uint8_t(std::max(0, int(bg) - rng.below(12)));
    const uint8_t colours[7][3] = {{220, 30, 30}, {30, 160, 40}, {30, 60, 220}, {240, 210, 20},
                                   {140, 40, 170}, {250, 140, 20}, {10, 10, 10}};
    const int cell = size / 3;
    const int n = 1 + rng.below(3);
    for (int k = 0; k < n; ++k) {
        const int cx = rng.below(3) * cell + cell / 2, cy = rng.below(3) * cell + cell / 2;
        const int r = cell / (rng.below(2) ? 3 : 5);
        const bool disc = rng.below(2);
        const uint8_t* c = colours[rng.below(7)];
        for (int y = std::max(0, cy - r); y < std::min(size, cy + r); ++y)
            for (int x = std::max(0, cx - r); x < std::min(size, cx + r); ++x) {
                if (disc && (x - cx) * (x - cx) + (y - cy) * (y - cy) > r * r) continue;
                uint8_t* p = img.row(y) + size_t(x) * 3;
                for (int ch = 0; ch < 3; ++ch) p[ch] = c[ch];
            }
    }
    return img;
}

double cpu_seconds() {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

struct RunFigure {
    double wall_s = 0, cpu_s = 0;
    size_t failed = 0;
    CaptionStats stats;
    int lanes = 1;
};

RunFigure run_once(const VlmModel& m, ThreadPool& pool, const CaptionSettings& s, const std::vector<CaptionInput>& in) {
    CaptionEngine engine(m, pool, s);
    RunFigure f;
    const double c0 = cpu_seconds();
    const auto t0 = Clock::now();
    engine.run(in, [&](size_t, const nlohmann::ordered_json& line) { f.failed += line.contains("error") ? 1 : 0; });
    f.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
    f.cpu_s = cpu_seconds() - c0;
    f.stats = engine.stats();
    f.lanes = engine.lanes();
    return f;
}

}  // namespace

int run_caption_bench(const CaptionBenchOptions& opt) {
    Scratch scratch;
    std::string model = opt.model, mmproj = opt.mmproj;
    if (!opt.random.empty()) {
        if (!model.empty()) throw Error(ErrorKind::Usage, "bench --caption: give -m MODEL or --random SHAPE, not both");
        model = opt.save.empty() ? (scratch.path / (opt.random + ".gguf")).string() : opt.save;
        mmproj = (fs::path(model).parent_path() / ("mmproj-" + fs::path(model).filename().string())).string();
        write_random_llama_gguf(model, random_llama_shape(opt.random), opt.type, 1);
        write_random_mmproj_gguf(mmproj, opt.random, DType::F16, 1);
    } else {
        use_default_model_if_unset(model, mmproj);
    }
    const int size = opt.image_size > 0 ? opt.image_size : opt.random.empty() ? 256 : 512;
    std::vector<CaptionInput> inputs;
    // JPEG like the photos people caption; PNG in a build that cannot write JPEG (no OpenCV).
    const std::string ext = can_encode_image("jpg") ? ".jpg" : ".png";
    for (int i = 0; i < opt.images; ++i) {
        const fs::path p = scratch.path / ("picture" + std::to_string(1000 + i) + ext);
        save_image(make_picture(size, uint64_t(i)), p.string());
        inputs.push_back({p.string(), ""});
    }
    const Placement device = open_device(DeviceArgs{opt.device}, false);
    VlmModel m = open_vlm(model, mmproj);
    place_vlm(device, m, false);
    ThreadPool pool(opt.threads);
    CaptionSettings s;
    s.max_tokens = opt.max_tokens;
    s.image.max_tiles = opt.max_tiles;
    const double load_before = load_average();
    if (!opt.json) {
        std::printf("bench --caption: %d pictures of %dx%d, -n %d, %d threads, batch 1 vs %d, %d repeats; model %s on %s\n",
                    opt.images, size, size, opt.max_tokens, pool.size(), opt.batch, opt.repeats, model.c_str(),
                    device.label().c_str());
        std::printf("load average before: %.2f on %u hardware threads\n", load_before, std::thread::hardware_concurrency());
        std::fflush(stdout);
    }
    std::vector<double> one_wall, one_cpu, many_wall, many_cpu;
    int lanes = 1;
    for (int r = 0; r < opt.repeats; ++r)
        for (int batch : {1, opt.batch}) {
            s.batch = batch;
            s.lanes = batch == 1 ? 1 : opt.lanes;
            const RunFigure f = run_once(m, pool, s, inputs);
            if (f.failed) throw Error(ErrorKind::BadInput, "bench --caption: " + std::to_string(f.failed) + " pictures failed");
            (batch == 1 ? one_wall : many_wall).push_back(f.wall_s);
            if (batch != 1) lanes = f.lanes;
            (batch == 1 ? one_cpu : many_cpu).push_back(f.cpu_s / pool.size());
            if (!opt.json) {
                const CaptionStats& st = f.stats;
                std::printf("  batch %2d, %d lane%s: %7.2f s  %8.2f images/min  (cpu/threads %.2f s; encode %.0f ms for %lld "
                            "tiles, prefill %.0f ms, decode %.0f ms for %lld tokens, reader %.0f ms)\n",
                            batch, f.lanes, f.lanes == 1 ? " " : "s", f.wall_s, 60.0 * opt.images / f.wall_s, f.cpu_s / pool.size(), st.encode_ms,
                            (long long)st.tiles, st.prefill_ms, st.decode_ms, (long long)st.generated, st.read_ms);
                std::fflush(stdout);
            }
        }
    const double per_min_one = 60.0 * opt.images / median(one_wall), per_min_many = 60.0 * opt.images / median(many_wall);
    const double cpu_one = 60.0 * opt.images / median(one_cpu), cpu_many = 60.0 * opt.images / median(many_cpu);
    const double load_after = load_average();
    const bool vs_llama = opt.random == "smolvlm-256m";
    if (opt.json) {
        nlohmann::json j = {{"images", opt.images},       {"image_size", size},
                            {"max_tokens", opt.max_tokens}, {"threads", pool.size()},
                            {"device", device.label()},
                            {"batch", opt.batch},          {"lanes", lanes},
                            {"repeats", opt.repeats},
                            {"load_average_before", load_before}, {"load_average_after", load_after},
                            {"batch1_images_per_min", per_min_one}, {"batchN_images_per_min", per_min_many},
                            {"batch1_cpu_images_per_min", cpu_one}, {"batchN_cpu_images_per_min", cpu_many},
                            {"speedup", per_min_many / per_min_one}};
        if (vs_llama) j["vs_llama_cpp"] = per_min_many / kLlamaCppImagesPerMin;
        if (device.ctx) {
            j["batch_decode"] = device.ctx->batch_decode();  // a batch's captions step together
            j["batch_prefill"] = device.ctx->batch_prefill();  // and their prompts run together
            j["record_ahead"] = device.ctx->options().record_ahead;  // each step recorded during the last
            j["greedy_pick"] = device.ctx->greedy_pick();  // greedy tokens picked on the device
        }
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    std::printf("\nmedian: batch 1 %.2f images/min, batch %d (%d lane%s) %.2f images/min: %.2fx\n", per_min_one, opt.batch,
                lanes, lanes == 1 ? "" : "s", per_min_many, per_min_many / per_min_one);
    std::printf("by CPU time / threads (what idle cores would give): batch 1 %.2f, batch %d %.2f images/min\n", cpu_one,
                opt.batch, cpu_many);
    if (vs_llama)
        std::printf("vs llama.cpp (BASELINE.md, one llama-mtmd-cli per image): %.2f images/min -> %.2fx (by CPU time %.2fx)\n",
                    kLlamaCppImagesPerMin, per_min_many / kLlamaCppImagesPerMin, cpu_many / kLlamaCppImagesPerMin);
    std::printf("load average after: %.2f\n", load_after);
    return 0;
}

}  // namespace glimpse::app
