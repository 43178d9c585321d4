// `glimpse bench -m MODEL` / `--random SHAPE`: text-model tokens/s against the machine's own
// memory bandwidth, and `glimpse bench --pool`: the thread pool on a decode-like workload.
//
// Model figures (each the median of `repeats` runs, after a warm-up that faults the weights in):
//   prefill  = P tokens in one forward (n_batch = P), logits of the last row only;
//   decode   = n single-token steps at depth 0 (what llama-bench's tg test measures, so the
//              one to compare with BASELINE.md), and n steps after the P-token prompt;
//   bound    = bandwidth / bytes a decode step must read: every layer matrix, the output
//              matrix and norms (the embedding table is read one row per token, not counted),
//              plus, after the prompt, the f32 K/V rows attention reads (mean depth P + n/2).
// The bandwidth is the --ops probe (a 512 MiB read on all threads), taken after the model runs
// so that its buffer does not count in the peak RSS.
#include "apps/bench_model.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/bench_util.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/kv_cache.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "core/thread_pool.h"
#include "text/llama_forward.h"
#include "text/llama_model.h"
#include "weights/random_model.h"

namespace glimpse::app {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

uint64_t tensor_bytes(const Tensor& t) { return uint64_t(t.ne[3]) * t.nb[3]; }

// Multiply-adds of the layer matrices per token (the FLOPs of prefill are 2x this per token,
// plus attention).
double layer_macs_per_token(const LlamaModel& m) {
    double macs = 0;
    for (const auto& L : m.weights.layers)
        for (const Tensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
            macs += double(t->ne[0]) * double(t->ne[1]);
    return macs;
}

double peak_rss_mib() {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_maxrss) / 1024.0;  // KiB on Linux
}

// A directory removed on destruction (the random model lives there unless --save).
struct ScratchDir {
    std::filesystem::path path;
    ScratchDir() {
        path = std::filesystem::temp_directory_path() / ("glimpse-bench-" + std::to_string(::getpid()));
        std::filesystem::create_directories(path);
    }
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

std::vector<int32_t> random_tokens(int n, int n_vocab, uint64_t seed) {
    std::vector<int32_t> t(size_t(std::max(n, 0)));
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 12345;
    for (auto& id : t) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        id = int32_t(s % uint64_t(n_vocab));
    }
    return t;
}

struct RunFigures {
    std::vector<double> prefill_s, decode0_s, decode_s;
};

// Seconds for n single-token steps starting at position pos0.
double time_decode(LlamaContext& ctx, const std::vector<int32_t>& toks, int n, int pos0, std::vector<float>& logits) {
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) ctx.forward(&toks[size_t(i)], 1, pos0 + i, logits.data());
    return seconds_since(t0);
}

RunFigures run_model(LlamaContext& ctx, const ModelBenchOptions& opt) {
    const int V = ctx.config().n_vocab;
    const auto prompt = random_tokens(opt.prompt, V, opt.seed);
    const auto gen = random_tokens(opt.gen, V, opt.seed + 1);
    std::vector<float> logits(static_cast<size_t>(V));
    // Warm-up: touches every weight page and the scratch buffers.
    ctx.forward(prompt.data(), std::min(opt.prompt, 32), 0, logits.data());
    time_decode(ctx, gen, std::min(opt.gen, 4), ctx.n_past(), logits);
    RunFigures f;
    for (int r = 0; r < opt.repeats; ++r) {
        ctx.reset();
        f.decode0_s.push_back(time_decode(ctx, gen, opt.gen, 0, logits));
        ctx.reset();
        if (opt.prompt > 0) {
            const auto t0 = Clock::now();
            ctx.forward(prompt.data(), opt.prompt, 0, logits.data());
            f.prefill_s.push_back(seconds_since(t0));
        }
        f.decode_s.push_back(time_decode(ctx, gen, opt.gen, opt.prompt, logits));
    }
    return f;
}

// ---- --profile: one decode step, stage by stage --------------------------------------------

struct Stage {
    const char* name;
    double seconds = 0;
    uint64_t bytes = 0;  // weight bytes read (matmuls)
};

// Re-runs the decode step's sequence of ops (text/llama_forward.cpp) at depth `depth` with
// a timer around each, summed over layers and `steps` steps. Not the forward itself, but the
// same kernels on the same tensors in the same order.
std::vector<Stage> profile_decode(const LlamaModel& model, ThreadPool& pool, int depth, int steps) {
    const LlamaConfig& c = model.config;
    const int64_t D = c.n_embd, Q = c.q_dim(), KVD = c.kv_dim(), F = c.n_ff;
    auto buf = [](int64_t n) { return std::vector<float>(static_cast<size_t>(n)); };
    std::vector<float> x = buf(D), xb = buf(D), q = buf(Q), k = buf(KVD), v = buf(KVD), att = buf(Q), proj = buf(D),
                       gate = buf(F), up = buf(F), logits = buf(c.n_vocab);
    std::fill(x.begin(), x.end(), 0.5f);
    KvCache kv(1, depth + 1, c.n_kv_heads, c.head_dim);
    std::vector<float> fill(size_t(KVD) * size_t(depth + 1), 0.01f);
    kv.write(0, 0, fill.data(), fill.data(), depth + 1);
    const int32_t pos = depth;
    enum { kNorm, kQKV, kRope, kAttn, kO, kGateUp, kSwiglu, kDown, kAdd, kOutput, kCount };
    std::vector<Stage> st = {{"rms_norm"},  {"matmul wq+wk+wv"}, {"rope"},           {"attention"},
                             {"matmul wo"}, {"matmul gate+up"},  {"swiglu"},         {"matmul w_down"},
                             {"residual add"}, {"output (norm + matmul)"}};
    auto timed = [&](int s, auto&& fn) {
        const auto t0 = Clock::now();
        fn();
        st[size_t(s)].seconds += seconds_since(t0);
    };
    auto mm = [&](int s, const Tensor& W, const float* in, float* out) {
        timed(s, [&] { matmul(W, in, out, 1, pool); });
        st[size_t(s)].bytes += tensor_bytes(W);
    };
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    for (int step = 0; step < steps; ++step) {
        for (const auto& L : model.weights.layers) {
            timed(kNorm, [&] { ops::rms_norm(x.data(), f32_data(L.attn_norm), xb.data(), 1, D, c.rms_eps, pool); });
            timed(kQKV, [&] {
                matmul_same_x({{&L.wq, q.data()}, {&L.wk, k.data()}, {&L.wv, v.data()}}, xb.data(), 1, pool);
            });
            st[kQKV].bytes += tensor_bytes(L.wq) + tensor_bytes(L.wk) + tensor_bytes(L.wv);
            timed(kRope, [&] {
                ops::rope(q.data(), &pos, 1, c.n_heads, c.head_dim, c.rope_theta, c.rope_style);
                ops::rope(k.data(), &pos, 1, c.n_kv_heads, c.head_dim, c.rope_theta, c.rope_style);
            });
            timed(kAttn, [&] {
                ops::attention_kt(q.data(), kv.kt(0), kv.kt_stride(), kv.v(0), att.data(), 1, depth + 1, c.n_heads,
                                  c.n_kv_heads, c.head_dim, scale, true, depth, pool);
            });
            mm(kO, L.wo, att.data(), proj.data());
            timed(kAdd, [&] { ops::add(x.data(), proj.data(), x.data(), D); });
            timed(kNorm, [&] { ops::rms_norm(x.data(), f32_data(L.ffn_norm), xb.data(), 1, D, c.rms_eps, pool); });
            timed(kGateUp, [&] {
                matmul_same_x({{&L.w_gate, gate.data()}, {&L.w_up, up.data()}}, xb.data(), 1, pool);
            });
            st[kGateUp].bytes += tensor_bytes(L.w_gate) + tensor_bytes(L.w_up);
            timed(kSwiglu, [&] { ops::swiglu(gate.data(), up.data(), gate.data(), F, pool); });
            mm(kDown, L.w_down, gate.data(), proj.data());
            timed(kAdd, [&] { ops::add(x.data(), proj.data(), x.data(), D); });
            // Keep the stream bounded: random weights, no learned scale.
            for (auto& e : x) e = std::tanh(e);
        }
        timed(kOutput, [&] {
            ops::rms_norm(x.data(), f32_data(model.weights.output_norm), xb.data(), 1, D, c.rms_eps, pool);
            matmul(model.weights.output, xb.data(), logits.data(), 1, pool);
        });
        st[kOutput].bytes += tensor_bytes(model.weights.output);
    }
    for (auto& s : st) {
        s.seconds /= steps;
        s.bytes /= uint64_t(steps);
    }
    return st;
}

void print_profile(const std::vector<Stage>& st, int depth) {
    double total = 0;
    for (const auto& s : st) total += s.seconds;
    std::printf("\ndecode step by stage at depth %d (summed over layers, mean of the steps):\n", depth);
    std::printf("%-24s %10s %7s %9s\n", "stage", "µs/token", "share", "GB/s");
    for (const auto& s : st) {
        std::printf("%-24s %10.1f %6.1f%%", s.name, s.seconds * 1e6, 100.0 * s.seconds / total);
        if (s.bytes) std::printf(" %9.1f", double(s.bytes) / s.seconds / 1e9);
        std::printf("\n");
    }
    std::printf("%-24s %10.1f  (%.1f tokens/s)\n", "total", total * 1e6, 1.0 / total);
}

}  // namespace

// What one decode step streams: see the file comment.
uint64_t decode_weight_bytes(const LlamaModel& m) {
    const LlamaWeights& w = m.weights;
    uint64_t total = tensor_bytes(w.output_norm) + tensor_bytes(w.output);
    for (const auto& L : w.layers)
        for (const Tensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_norm, &L.w_gate, &L.w_up, &L.w_down})
            total += tensor_bytes(*t);
    return total;
}

double decode_kv_bytes(const LlamaModel& m, int prompt, int steps) {
    const LlamaConfig& c = m.config;
    return 2.0 * c.n_layers * c.kv_dim() * sizeof(float) * (prompt + 0.5 * (steps - 1));
}

int run_model_bench(const ModelBenchOptions& opt) {
    if (opt.model.empty() == opt.random.empty())
        throw Error(ErrorKind::Usage, "bench: give exactly one of -m MODEL and --random SHAPE");
    if (opt.prompt < 0 || opt.gen < 1 || opt.repeats < 1)
        throw Error(ErrorKind::Usage, "bench: -p must be >= 0, -n and -r >= 1");
    std::unique_ptr<ScratchDir> scratch;
    std::string path = opt.model;
    double write_s = 0;
    if (!opt.random.empty()) {
        const RandomLlamaShape shape = random_llama_shape(opt.random);
        if (opt.save.empty()) scratch = std::make_unique<ScratchDir>();
        path = opt.save.empty() ? (scratch->path / (opt.random + ".gguf")).string() : opt.save;
        const auto t0 = Clock::now();
        write_random_llama_gguf(path, shape, opt.type, opt.seed);
        write_s = seconds_since(t0);
    }
    const LlamaModel model = open_llama_model(path);
    const LlamaConfig& c = model.config;
    ThreadPool pool(opt.threads);
    const double load_before = load_average();
    const std::string type_name(dtype_name(model.weights.layers.at(0).w_gate.dtype));
    const uint64_t weight_bytes = decode_weight_bytes(model);
    if (!opt.json) {
        if (!opt.random.empty())
            std::printf("random %s model, %s weights, written in %.1f s%s%s\n", opt.random.c_str(), type_name.c_str(),
                        write_s, opt.save.empty() ? "" : " to ", opt.save.c_str());
        std::printf("model: %s (%d layers, %d wide, %d/%d heads, FFN %d, vocab %d, %s)\n", path.c_str(), c.n_layers,
                    c.n_embd, c.n_heads, c.n_kv_heads, c.n_ff, c.n_vocab, type_name.c_str());
        std::printf("decode reads %.1f MiB of weights per token; %d threads; load average %.2f on %u hardware threads\n",
                    double(weight_bytes) / (1 << 20), pool.size(), load_before, std::thread::hardware_concurrency());
        std::fflush(stdout);
    }
    LlamaContext ctx(model, pool, opt.prompt + opt.gen, std::max(opt.prompt, 1));
    const RunFigures f = run_model(ctx, opt);
    std::vector<Stage> profile;
    if (opt.profile) profile = profile_decode(model, pool, opt.prompt, std::min(opt.gen, 32));
    const double rss = peak_rss_mib();
    const double bw = measure_read_bandwidth_gbs(pool, size_t(512) << 20, 5);
    const double peak = measure_fma_peak_gflops(pool, 0.5);
    const double load_after = load_average();

    const double prefill_tps = opt.prompt > 0 ? opt.prompt / median(f.prefill_s) : 0;
    const double decode0_tps = opt.gen / median(f.decode0_s), decode_tps = opt.gen / median(f.decode_s);
    const double kv_bytes = decode_kv_bytes(model, opt.prompt, opt.gen);
    const double bound0 = bw * 1e9 / double(weight_bytes), bound = bw * 1e9 / (double(weight_bytes) + kv_bytes);
    const double P = opt.prompt;
    const double prefill_flops = 2.0 * P * layer_macs_per_token(model) + 2.0 * c.n_embd * c.n_vocab +
                                 2.0 * P * P * c.q_dim() * c.n_layers;  // QKᵀ and AV, causal: P²/2 each
    const double prefill_gflops = opt.prompt > 0 ? prefill_flops / median(f.prefill_s) / 1e9 : 0;

    if (opt.json) {
        nlohmann::json j;
        j["model"] = path;
        j["random"] = opt.random;
        j["weight_type"] = type_name;
        j["threads"] = pool.size();
        j["prompt_tokens"] = opt.prompt;
        j["decode_tokens"] = opt.gen;
        j["repeats"] = opt.repeats;
        j["prefill_tps"] = prefill_tps;
        j["prefill_gflops"] = prefill_gflops;
        j["prefill_pct_fma_peak"] = 100.0 * prefill_gflops / peak;
        j["decode_depth0_tps"] = decode0_tps;
        j["decode_depth0_bound_tps"] = bound0;
        j["decode_depth0_pct_bound"] = 100.0 * decode0_tps / bound0;
        j["decode_tps"] = decode_tps;
        j["decode_bound_tps"] = bound;
        j["decode_pct_bound"] = 100.0 * decode_tps / bound;
        j["decode_weight_bytes"] = weight_bytes;
        j["read_bandwidth_gbs"] = bw;
        j["fma_peak_gflops"] = peak;
        j["peak_rss_mib"] = rss;
        j["runs"] = {{"prefill_s", f.prefill_s}, {"decode_depth0_s", f.decode0_s}, {"decode_s", f.decode_s}};
        j["load_average_before"] = load_before;
        j["load_average_after"] = load_after;
        for (const auto& s : profile)
            j["profile"].push_back({{"stage", s.name}, {"us_per_token", s.seconds * 1e6}, {"weight_bytes", s.bytes}});
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    std::printf("machine: memory read %.1f GB/s (512 MiB, all threads), FMA peak %.1f GFLOP/s\n\n", bw, peak);
    std::printf("%-34s %10s %12s %9s\n", "test", "tokens/s", "bound tok/s", "% bound");
    if (opt.prompt > 0)
        std::printf("%-34s %10.1f %12s %9s   %.1f GFLOP/s = %.0f%% of FMA peak\n",
                    ("prefill " + std::to_string(opt.prompt) + " (one forward)").c_str(), prefill_tps, "-", "-",
                    prefill_gflops, 100.0 * prefill_gflops / peak);
    std::printf("%-34s %10.1f %12.1f %8.0f%%\n", ("decode " + std::to_string(opt.gen) + " at depth 0").c_str(),
                decode0_tps, bound0, 100.0 * decode0_tps / bound0);
    std::printf("%-34s %10.1f %12.1f %8.0f%%\n",
                ("decode " + std::to_string(opt.gen) + " after the prompt").c_str(), decode_tps, bound,
                100.0 * decode_tps / bound);
    std::printf("\nmedian of %d runs each; peak RSS %.0f MiB (before the bandwidth probe); load average after %.2f\n",
                opt.repeats, rss, load_after);
    if (opt.profile) print_profile(profile, opt.prompt);
    return 0;
}

// ---- --pool ------------------------------------------------------------------------------------

namespace {

// `iters` dependent multiply-adds: fixed work that neither memory nor the optimiser shortens.
float busy_work(int64_t iters, float seed) {
    float a = seed, b = 0.999f;
    for (int64_t i = 0; i < iters; ++i) a = a * b + 0.0001f;
    return a;
}

}  // namespace

int run_pool_bench(int threads, bool json) {
    ThreadPool pool(threads);
    const int nth = pool.size();
    // Calibrate: iterations per microsecond on one thread.
    int64_t iters = 1 << 16;
    volatile float sink = 0;
    double per_us = 0;
    for (;;) {
        const auto t0 = Clock::now();
        sink = sink + busy_work(iters, 1.0f);
        const double s = seconds_since(t0);
        if (s > 0.01) {
            per_us = double(iters) / (s * 1e6);
            break;
        }
        iters *= 2;
    }
    nlohmann::json j;
    if (!json)
        std::printf("thread pool: %d threads; jobs of W µs of one-thread work split over the threads, 2 µs serial gap\n"
                    "%-8s %8s %12s %12s %9s\n",
                    nth, "W (µs)", "jobs", "1 thread µs", "pool µs", "speed-up");
    for (double work_us : {5.0, 20.0, 50.0, 200.0}) {
        const int jobs = int(std::max(200.0, 2e5 / work_us));
        const int64_t share = std::max<int64_t>(1, int64_t(work_us * per_us / nth));
        const int64_t gap = std::max<int64_t>(1, int64_t(2.0 * per_us));
        auto run_jobs = [&](bool use_pool) {
            const auto t0 = Clock::now();
            for (int i = 0; i < jobs; ++i) {
                if (use_pool) {
                    pool.run([&](int ith, int) { sink = sink + busy_work(share, float(ith)); });
                } else {
                    for (int ith = 0; ith < nth; ++ith) sink = sink + busy_work(share, float(ith));
                }
                sink = sink + busy_work(gap, 0.5f);
            }
            return seconds_since(t0) / jobs * 1e6;
        };
        std::vector<double> serial, pooled;
        for (int r = 0; r < 3; ++r) {
            serial.push_back(run_jobs(false));
            pooled.push_back(run_jobs(true));
        }
        const double s = median(serial), p = median(pooled);
        if (json)
            j["cases"].push_back({{"work_us", work_us}, {"jobs", jobs}, {"serial_us", s}, {"pool_us", p}});
        else
            std::printf("%-8.0f %8d %12.1f %12.1f %8.2fx\n", work_us, jobs, s, p, s / p);
        std::fflush(stdout);
    }
    if (json) {
        j["threads"] = nth;
        j["load_average"] = load_average();
        std::printf("%s\n", j.dump(2).c_str());
    } else {
        std::printf("load average %.2f\n", load_average());
    }
    return 0;
}

}  // namespace glimpse::app
