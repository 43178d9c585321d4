// `glimpse bench`: measurements against the machine's own limits, taken in the same run
// (bench/README.md says what each figure means).
//   --ops [-t N] [--json]: the CPU kernels:
//     (a) FMA peak GFLOP/s and (b) memory read bandwidth GB/s on all threads;
//     (c) matmul GFLOP/s per weight type at the ViT sizes, as % of (a);
//     (d) decode matvec GB/s (weight bytes / time) per weight type, as % of (b), at the
//         SmolVLM decode sizes (cache-resident) and over > 512 MiB of weights (from DRAM).
//   -m MODEL | --random SHAPE [--type T] [-t N] [-p 512] [-n 128] [-r 3] [--profile] [--json]:
//     text-model prefill/decode tokens/s against the bandwidth bound (apps/bench_model.cpp).
//   --pool [-t N]: the thread pool on a decode-like workload of many small jobs.
//   --caption [-m MODEL | --random smolvlm-256m] [--images 8] [--batch 8] [-n 32]: captioning
//     images/min, --batch 1 against --batch N (apps/bench_caption.cpp).
//   --device vulkan[:i] [-m MODEL [--mmproj F] | --random SHAPE | --vit]: encode ms per tile,
//     prefill and decode tokens/s on that device (apps/bench_device.cpp; no -m: the default model).
// Every figure is the median of several timed repeats.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/bench_device.h"
#include "apps/bench_caption.h"
#include "apps/bench_model.h"
#include "apps/bench_util.h"
#include "apps/commands.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/matmul.h"
#include "core/quant.h"
#include "core/thread_pool.h"
#include "core/vk_context.h"
#include "vision/vit_forward.h"

namespace glimpse::app {

namespace {

struct BenchOptions {
    bool ops = false;
    bool pool = false;
    bool vit = false;
    int vit_tiles = 4;
    bool caption = false;
    CaptionBenchOptions cap;
    CLI::Option* gen_opt = nullptr;
    bool json = false;
    int threads = 0;
    std::string type = "q8_0";
    ModelBenchOptions model;
    DeviceArgs device;   // --device: vulkan[:i] runs the model benchmark there (apps/bench_device.h)
    std::string mmproj;  // --mmproj with --device vulkan
};

const DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,
                        DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                        DType::Q4_K, DType::Q5_K, DType::Q6_K};

using Clock = std::chrono::steady_clock;

// Median seconds per call of fn over `repeats` timings of `iters` calls each (after a warm-up).
template <class Fn>
double time_median(int repeats, int iters, Fn&& fn) {
    fn();
    std::vector<double> t;
    for (int r = 0; r < repeats; ++r) {
        const auto t0 = Clock::now();
        for (int i = 0; i < iters; ++i) fn();
        t.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / iters);
    }
    return median(t);
}

// Deterministic values in [-1, 1) (xorshift), the same for every type.
std::vector<float> random_values(size_t n, uint64_t seed) {
    std::vector<float> v(n);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& x : v) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x = float(s >> 40) / float(1ull << 24) * 2.0f - 1.0f;
    }
    return v;
}

// `copies` weight matrices of K×N values of type t, back to back in one buffer (each a copy
// of the first: distinct memory is what defeats the caches, not distinct values).
struct WeightSet {
    std::shared_ptr<uint8_t[]> buf;
    std::vector<Tensor> mats;
    uint64_t bytes_each = 0;
};

WeightSet make_weights(DType t, int64_t K, int64_t N, int copies) {
    WeightSet ws;
    Tensor w;
    w.name = "bench.weight";
    w.dtype = t;
    w.n_dims = 2;
    w.ne = {K, N, 1, 1};
    w.nb = contiguous_strides(t, w.ne);
    ws.bytes_each = w.bytes();
    ws.buf = std::shared_ptr<uint8_t[]>(new uint8_t[ws.bytes_each * uint64_t(copies)]);
    const auto vals = random_values(size_t(K * N), 42);
    for (int64_t n = 0; n < N; ++n) quantize_row(t, vals.data() + n * K, ws.buf.get() + n * w.nb[1], K);
    for (int c = 0; c < copies; ++c) {
        uint8_t* dst = ws.buf.get() + uint64_t(c) * ws.bytes_each;
        if (c > 0) std::memcpy(dst, ws.buf.get(), ws.bytes_each);
        w.data = dst;
        w.storage = std::shared_ptr<const void>(ws.buf, dst);
        ws.mats.push_back(w);
    }
    return ws;
}

struct MatmulRow {
    DType t;
    int64_t M, K, N;
    double ms, gflops, pct;
};
struct MatvecRow {
    DType t;
    int64_t K, N;
    int copies;
    double us, mib, gbs, pct;
};

MatmulRow bench_matmul(DType t, int64_t M, int64_t K, int64_t N, double peak, ThreadPool& pool) {
    const WeightSet ws = make_weights(t, K, N, 1);
    const auto x = random_values(size_t(M * K), 7);
    std::vector<float> y(size_t(M * N));
    const double s = time_median(5, 1, [&] { matmul(ws.mats[0], x.data(), y.data(), M, pool); });
    const double gflops = 2.0 * double(M) * double(K) * double(N) / s / 1e9;
    return {t, M, K, N, s * 1e3, gflops, 100.0 * gflops / peak};
}

// Decode: M = 1, cycling through `copies` matrices so that with enough of them every call
// reads its weights from DRAM.
MatvecRow bench_matvec(DType t, int64_t K, int64_t N, int copies, double bw, ThreadPool& pool) {
    const WeightSet ws = make_weights(t, K, N, copies);
    const auto x = random_values(size_t(K), 7);
    std::vector<float> y(static_cast<size_t>(N));
    const double bytes = double(ws.bytes_each);
    const int iters = std::max(copies, int(std::min(2000.0, 2e8 / bytes)));  // ~≥ 200 MB per timing
    size_t next = 0;
    const double s = time_median(7, iters, [&] {
        matmul(ws.mats[next], x.data(), y.data(), 1, pool);
        next = (next + 1) % ws.mats.size();
    });
    const double gbs = bytes / s / 1e9;
    return {t, K, N, copies, s * 1e6, bytes / (1 << 20), gbs, 100.0 * gbs / bw};
}

std::string shape(int64_t M, int64_t K, int64_t N) {
    return std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N);
}

int run_ops(const BenchOptions& opt) {
    ThreadPool pool(opt.threads);
    const std::string features = cpu_features_string();
    const char* kernels = has_avx512_kernels() ? "avx2+fma+f16c, avx512f gemm tile"
                          : has_avx2_kernels() ? "avx2+fma+f16c"
                                               : "portable";
    const double load_before = load_average();
    if (!opt.json) {
        std::printf("glimpse bench --ops: %d threads, CPU features: %s; matmul kernels: %s\n", pool.size(),
                    features.c_str(), kernels);
        std::printf("load average before: %.2f on %u hardware threads%s\n", load_before,
                    std::thread::hardware_concurrency(),
                    load_before > 0.5 ? " (other work is running: figures will be lower and noisier)" : "");
        std::fflush(stdout);
    }
    const double peak = measure_fma_peak_gflops(pool, 1.0);
    const double bw = measure_read_bandwidth_gbs(pool, size_t(512) << 20, 5);
    if (!opt.json) {
        std::printf("machine: FMA peak %.1f GFLOP/s (%s, all threads), memory read %.1f GB/s (512 MiB)\n\n",
                    peak, has_avx512_kernels() ? "AVX-512 FMA" : has_avx2_kernels() ? "AVX2 FMA" : "portable", bw);
        std::printf("%-16s %-5s %10s %10s %8s\n", "matmul M×K×N", "type", "ms", "GFLOP/s", "% peak");
        std::fflush(stdout);
    }
    std::vector<MatmulRow> mm;
    for (const auto& [M, K, N] : {std::array<int64_t, 3>{1024, 768, 768}, {1024, 768, 3072}})
        for (DType t : kTypes) {
            mm.push_back(bench_matmul(t, M, K, N, peak, pool));
            const auto& r = mm.back();
            if (!opt.json) {
                std::printf("%-14s %-5s %10.2f %10.1f %7.1f%%\n", shape(M, K, N).c_str(),
                            std::string(dtype_name(t)).c_str(), r.ms, r.gflops, r.pct);
                std::fflush(stdout);
            }
        }
    if (!opt.json)
        std::printf("\n%-24s %-5s %9s %9s %8s %8s\n", "matvec 1×K×N", "type", "µs", "MiB", "GB/s", "% bw");
    std::vector<MatvecRow> mv;
    struct VecCase {
        int64_t K, N;
        bool rotate;
    };
    for (const VecCase c : {VecCase{576, 1536, false}, VecCase{960, 2560, false}, VecCase{2048, 8192, true}})
        for (DType t : kTypes) {
            // The K types need K % 256 == 0: at the SmolVLM widths (576, 960) they only occur
            // in the FFN down projection, K = 1536 / 2560, so that shape stands in for them.
            const bool swap = c.K % dtype_info(t).block_elems != 0;
            const int64_t K = swap ? c.N : c.K, N = swap ? c.K : c.N;
            const uint64_t each = *dtype_row_bytes(t, uint64_t(K)) * uint64_t(N);
            const int copies = c.rotate ? int(((uint64_t(512) << 20) + each - 1) / each) : 1;
            mv.push_back(bench_matvec(t, K, N, copies, bw, pool));
            const auto& r = mv.back();
            if (!opt.json) {
                std::string name = shape(1, K, N);
                if (copies > 1) name += " x" + std::to_string(copies) + " rot";
                std::printf("%-22s %-5s %9.1f %9.2f %8.1f %7.1f%%\n", name.c_str(),
                            std::string(dtype_name(t)).c_str(), r.us, r.mib, r.gbs, r.pct);
                std::fflush(stdout);
            }
        }
    if (!opt.json) std::printf("\nload average after: %.2f\n", load_average());
    if (opt.json) {
        nlohmann::json j;
        j["threads"] = pool.size();
        j["cpu_features"] = features;
        j["kernels"] = kernels;
        j["fma_peak_gflops"] = peak;
        j["read_bandwidth_gbs"] = bw;
        j["load_average_before"] = load_before;
        j["load_average_after"] = load_average();
        for (const auto& r : mm)
            j["matmul"].push_back({{"type", dtype_name(r.t)}, {"M", r.M}, {"K", r.K}, {"N", r.N},
                                   {"ms", r.ms}, {"gflops", r.gflops}, {"pct_fma_peak", r.pct}});
        for (const auto& r : mv)
            j["matvec"].push_back({{"type", dtype_name(r.t)}, {"M", 1}, {"K", r.K}, {"N", r.N},
                                   {"matrices", r.copies}, {"us", r.us}, {"weight_mib", r.mib},
                                   {"gbs", r.gbs}, {"pct_bandwidth", r.pct}});
        std::printf("%s\n", j.dump(2).c_str());
    }
    return 0;
}

// The SmolVLM-256M vision tower (SigLIP-B/16 at 512×512 + the Idefics3 projector, random
// weights): ms per tile for a batch of tiles, as an image of several tiles is encoded, against
// the FMA peak measured in the same run.
int run_vit_bench(const BenchOptions& o) {
    ThreadPool pool(o.threads);
    const double peak = measure_fma_peak_gflops(pool, 0.5);
    const VitBenchResult f32 = bench_vit_tiles(pool, o.vit_tiles, o.model.repeats, false);
    const VitBenchResult f16 = bench_vit_tiles(pool, o.vit_tiles, o.model.repeats, true);
    const double load = load_average();
    auto pct = [&](const VitBenchResult& r, double ms) { return 100.0 * r.gflop_per_tile / (ms / 1000.0) / peak; };
    if (o.json) {
        nlohmann::json j = {{"threads", pool.size()}, {"tiles_per_batch", o.vit_tiles}, {"fma_peak_gflops", peak},
                            {"load_average", load}};
        for (const auto& [name, r] : {std::pair{"f32", f32}, std::pair{"f16", f16}})
            j[name] = {{"ms_per_tile", r.wall_ms_per_tile}, {"cpu_ms_per_tile", r.cpu_ms_per_tile},
                       {"gflop_per_tile", r.gflop_per_tile}, {"pct_fma_peak", pct(r, r.wall_ms_per_tile)},
                       {"image_tokens_per_s", 64.0 * 1000.0 / r.wall_ms_per_tile}};
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    std::printf("ViT: SmolVLM-256M vision tower (SigLIP-B/16, 512x512 tile, 12 layers of 768, projector to 576), "
                "%d tiles per batch, %d threads, load average %.1f\n", o.vit_tiles, pool.size(), load);
    std::printf("FMA peak: %.1f GFLOP/s\n\n", peak);
    std::printf("%-8s %12s %14s %10s %14s %16s\n", "weights", "ms/tile", "cpu ms/tile", "GFLOP", "% FMA peak", "image tokens/s");
    for (const auto& [name, r] : {std::pair{"F32", f32}, std::pair{"F16", f16}})
        std::printf("%-8s %12.0f %14.0f %10.1f %13.0f%% %16.1f\n", name, r.wall_ms_per_tile, r.cpu_ms_per_tile,
                    r.gflop_per_tile, pct(r, r.wall_ms_per_tile), 64.0 * 1000.0 / r.wall_ms_per_tile);
    std::printf("\nstages, ms per tile (wall): embed, attention block (LN1, Q/K/V, attention, output), MLP block, projector\n");
    for (const auto& [name, r] : {std::pair{"F32", f32}, std::pair{"F16", f16}}) {
        const VisionTimings& t = r.timings;
        const double n = t.tiles > 0 ? double(t.tiles) : 1.0;
        std::printf("%-8s embed %6.0f   attention %6.0f (of which softmax(QK^T)V %5.0f)   mlp %6.0f   project %5.0f\n", name,
                    t.embed_ms / n, t.attention_ms / n, t.attention_core_ms / n, t.mlp_ms / n, t.project_ms / n);
    }
    std::printf("\n(cpu ms/tile = process CPU time / threads: the wall time idle cores would give; 64 image tokens per tile)\n");
    return 0;
}

}  // namespace

Command add_bench(CLI::App& app) {
    auto opt = std::make_shared<BenchOptions>();
    auto* sub = app.add_subcommand(
        "bench", "benchmarks against this machine's measured FMA peak and memory bandwidth: --ops (kernels), "
                 "-m MODEL or --random SHAPE (text model tokens/s), --vit (vision tower), --pool (thread pool)");
    sub->add_flag("--ops", opt->ops, "benchmark the CPU kernels (matmul, matvec) against measured machine limits");
    sub->add_flag("--pool", opt->pool, "benchmark the thread pool on many small decode-like jobs");
    sub->add_flag("--vit", opt->vit, "benchmark the SmolVLM-256M vision tower: ms per 512x512 tile vs the FMA peak");
    sub->add_option("--vit-tiles", opt->vit_tiles, "--vit: tiles encoded per batch (default 4)")->check(CLI::Range(1, 64));
    sub->add_flag("--caption", opt->caption,
                  "benchmark captioning: images/min for --batch 1 vs --batch N on generated pictures "
                  "(-m MODEL, --random smolvlm-256m, or the default model)");
    sub->add_option("--images", opt->cap.images, "--caption: pictures per run (default 8)")->check(CLI::Range(1, 100000));
    sub->add_option("--image-size", opt->cap.image_size, "--caption: picture width and height (default 512 for --random, else 256)")
        ->check(CLI::Range(16, 8192));
    sub->add_option("--batch", opt->cap.batch, "--caption: the batch compared with 1 (default 8)")->check(CLI::Range(1, 256));
    sub->add_option("--lanes", opt->cap.lanes, "--caption: lanes of the batch-N runs (default: caption's own choice)")
        ->check(CLI::Range(0, 256));
    sub->add_option("--image-max-tiles", opt->cap.max_tiles, "--caption: SmolVLM tiles besides the overview (0 = the model's rule)")
        ->check(CLI::Range(0, 1024));
    sub->add_option("-m,--model", opt->model.model, "text model to benchmark (GGUF, HF folder, llama2.c)");
    sub->add_option("--random", opt->model.random,
                    "benchmark a random-weight model of this shape: smollm2-135m, smolvlm-256m, smolvlm-500m");
    sub->add_option("--type", opt->type, "weight type of the --random model (f32 f16 bf16 q8_0 q4_0 q4_k ...)");
    sub->add_option("--save", opt->model.save, "keep the --random model in this file (default: a temp dir)");
    sub->add_option("--seed", opt->model.seed, "seed of the --random weights");
    sub->add_option("-p,--prompt", opt->model.prompt, "prefill tokens, one forward (default 512)")
        ->check(CLI::Range(0, 1 << 16));
    opt->gen_opt = sub->add_option("-n,--gen", opt->model.gen, "decode steps (default 128; --caption: tokens per caption, default 32)")
                       ->check(CLI::Range(1, 1 << 16));
    sub->add_option("-r,--repeats", opt->model.repeats, "runs per figure; the median is reported (default 3)")
        ->check(CLI::Range(1, 100));
    sub->add_flag("--profile", opt->model.profile, "also time each stage of a decode step (with a Vulkan --device: GPU time by shader of an encode, a prefill and the decode steps)");
    sub->add_option("-t,--threads", opt->threads, "threads (default: one per hardware thread)")
        ->check(CLI::Range(1, 1024));
    sub->add_flag("--json", opt->json, "print one JSON document instead of tables");
    add_device_option(sub, opt->device);
    sub->add_option("--mmproj", opt->mmproj, "with a Vulkan --device or --caption: the vision tower of -m");
    return {sub, [opt] {
                // --type, checked only by the modes that make a model from it.
                auto weight_type = [&] {
                    const auto t = dtype_from_name(opt->type);
                    if (!t) throw Error(ErrorKind::Usage, "bench: unknown --type '" + opt->type + "'");
                    return *t;
                };
                if (opt->caption) {
                    if (opt->ops || opt->pool || opt->vit)
                        throw Error(ErrorKind::Usage, "bench: --caption cannot be combined with --ops, --pool, --vit");
                    CaptionBenchOptions c = opt->cap;
                    c.mmproj = opt->mmproj;
                    c.model = opt->model.model;
                    c.random = opt->model.random;
                    c.save = opt->model.save;
                    if (opt->gen_opt->count()) c.max_tokens = opt->model.gen;
                    c.type = weight_type();
                    c.repeats = opt->model.repeats;
                    c.threads = opt->threads;
                    c.json = opt->json;
                    c.device = opt->device.spec;
                    return run_caption_bench(c);
                }
                // A Vulkan device (asked for, or what auto finds): encode ms/tile, prefill and
                // decode tokens/s there; -m, --random, --vit or nothing (the default model).
                if (!opt->ops && !opt->pool && vk::select_device(opt->device.spec).backend == vk::Backend::Vulkan) {
                    if (int(opt->vit) + int(!opt->model.model.empty()) + int(!opt->model.random.empty()) > 1)
                        throw Error(ErrorKind::Usage, "bench: choose one of --vit, -m MODEL, --random SHAPE");
                    DeviceBenchOptions d;
                    d.device = opt->device;
                    d.model = opt->model.model;
                    d.mmproj = opt->mmproj;
                    d.random = opt->model.random;
                    d.type = weight_type();
                    d.seed = opt->model.seed;
                    d.vit = opt->vit;
                    d.tiles = opt->vit_tiles;
                    d.prompt = opt->model.prompt;
                    d.gen = opt->model.gen;
                    d.repeats = opt->model.repeats;
                    d.json = opt->json;
                    d.profile = opt->model.profile;
                    return run_device_bench(d);
                }
                const int modes = int(opt->ops) + int(opt->pool) + int(opt->vit) +
                                  int(!opt->model.model.empty() || !opt->model.random.empty());
                if (modes != 1)
                    throw Error(ErrorKind::Usage,
                                "bench: choose one of --ops, --pool, --vit, -m MODEL, --random SHAPE");
                if (opt->ops) return run_ops(*opt);
                if (opt->pool) return run_pool_bench(opt->threads, opt->json);
                if (opt->vit) return run_vit_bench(*opt);
                ModelBenchOptions m = opt->model;
                m.type = weight_type();
                m.threads = opt->threads;
                m.json = opt->json;
                return run_model_bench(m);
            }};
}

}  // namespace glimpse::app
