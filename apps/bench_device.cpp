// The Vulkan model benchmark (apps/bench_device.h). Each figure is the median of `repeats`
// timed runs after one warm-up run (which also creates the pipelines).
#include "apps/bench_device.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "apps/bench_model.h"
#include "apps/bench_util.h"
#include "apps/default_model.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "core/vk_buffer.h"
#include "core/vk_ops.h"
#include "fusion/vlm.h"
#include "text/llama_forward.h"
#include "text/llama_forward_vk.h"
#include "vision/vit_forward.h"
#include "vision/vit_forward_vk.h"
#include "weights/random_model.h"

namespace glimpse::app {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Deterministic tokens in [0, n_vocab).
std::vector<int32_t> bench_tokens(int n, int n_vocab, uint64_t seed) {
    std::vector<int32_t> t(size_t(std::max(n, 0)));
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int32_t& id : t) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        id = int32_t(s % uint64_t(n_vocab));
    }
    return t;
}

struct VisionFigures {
    double ms_per_tile = 0;
    int tiles = 0;
};

// Normalised pixels of `tiles` tiles (a fixed pattern) and room for their image embeddings.
struct VisionBuffers {
    std::vector<float> in, out;
    VisionBuffers(const VisionConfig& c, int tiles)
        : in(size_t(tiles) * 3 * size_t(c.image_size) * size_t(c.image_size)),
          out(size_t(tiles) * size_t(tokens_per_tile(c)) * size_t(projected_dim(c))) {
        for (size_t i = 0; i < in.size(); ++i) in[i] = float(int(i % 251) - 125) / 125.0f;
    }
};

VisionFigures bench_vision(const VisionModel& m, int tiles, int repeats, ThreadPool& pool) {
    VisionBuffers b(m.config, tiles);
    encode_tiles(m, b.in.data(), tiles, b.out.data(), pool);  // warm-up
    std::vector<double> ms;
    for (int r = 0; r < repeats; ++r) {
        const auto t0 = Clock::now();
        encode_tiles(m, b.in.data(), tiles, b.out.data(), pool);
        ms.push_back(ms_since(t0) / tiles);
    }
    return {median(ms), tiles};
}

struct TextFigures {
    double prefill_tps = 0, decode_tps = 0;
};

// A text model's context with the bench's prompt and generated tokens (bench_tokens), as the
// timed runs and the --profile run take them.
struct TextRun {
    TextRun(const LlamaModel& m, int prompt, int gen, ThreadPool& pool)
        : ctx(m, pool, prompt + gen, std::max(prompt, 1)),
          prompt_tokens(bench_tokens(prompt, m.config.n_vocab, 1)),
          gen_tokens(bench_tokens(gen, m.config.n_vocab, 2)),
          logits(static_cast<size_t>(m.config.n_vocab)) {}
    int prompt() const { return int(prompt_tokens.size()); }
    int gen() const { return int(gen_tokens.size()); }
    // The whole prompt from position 0, then every generated token one step at a time after it.
    void prefill() { ctx.forward(prompt_tokens.data(), prompt(), 0, logits.data()); }
    // Where the context picks greedy tokens on the device (LlamaContext::decode_greedy), the
    // steps feed the model's own picks after the first bench token, the device running each
    // step without waiting for the host; elsewhere each bench token is one forward(), whose
    // logits come back to the host. The same work a step either way.
    void decode() { decode(gen()); }
    void decode(int steps) {
        if (ctx.greedy_on_device()) {
            std::vector<int32_t> picks(static_cast<size_t>(steps));
            ctx.decode_greedy(gen_tokens[0], steps, picks.data(), [](int32_t) { return true; });
            return;
        }
        for (int i = 0; i < steps; ++i) ctx.forward(&gen_tokens[size_t(i)], 1, ctx.n_past(), logits.data());
    }

    LlamaContext ctx;
    std::vector<int32_t> prompt_tokens, gen_tokens;
    std::vector<float> logits;
};

TextFigures bench_text(const LlamaModel& m, int prompt, int gen, int repeats, ThreadPool& pool) {
    TextRun run(m, prompt, gen, pool);
    // Warm-up: pipelines, pages.
    run.ctx.forward(run.prompt_tokens.data(), std::min(prompt, 8), 0, run.logits.data());
    run.decode(std::min(gen, 2));
    std::vector<double> pre, dec;
    for (int r = 0; r < repeats; ++r) {
        run.ctx.reset();
        auto t0 = Clock::now();
        if (prompt > 0) {
            run.prefill();
            pre.push_back(prompt / (ms_since(t0) / 1000.0));
        }
        t0 = Clock::now();
        run.decode();
        dec.push_back(gen / (ms_since(t0) / 1000.0));
    }
    return {median(pre), median(dec)};
}

nlohmann::json profile_json(const vk::DeviceProfile& p, double calls) {
    nlohmann::json j = {{"gpu_ms", p.gpu_ms / calls},
                          {"record_ms", p.record_ms / calls},
                          {"record_ahead_ms", p.record_ahead_ms / calls},
                          {"submissions", double(p.submissions) / calls},
                          {"untimed_dispatches", p.untimed}};
    for (const auto& [name, t] : p.shaders) j["shaders"][name] = {{"ms", t.ms / calls}, {"dispatches", double(t.dispatches) / calls}};
    return j;
}

// --profile: one more encode, prefill and decode with timestamps around every dispatch
// (apart from the timed runs above, whose figures the timestamps would disturb).
void profile_runs(vk::Context& dev, const VisionModel* vm, const LlamaModel* tm, const DeviceBenchOptions& o,
                  ThreadPool& pool, nlohmann::json& j) {
    if (!dev.set_profiling(true)) {
        if (!o.json) std::printf("\n--profile: %s has no timestamps on its compute queue\n", dev.label().c_str());
        j["profile"] = nullptr;
        return;
    }
    auto report = [&](const char* key, const std::string& title, double calls, double wall_ms) {
        const vk::DeviceProfile p = dev.take_profile();
        j["profile"][key] = profile_json(p, calls);
        j["profile"][key]["wall_ms"] = wall_ms / calls;
        if (!o.json) print_device_profile(p, title, calls, wall_ms);
    };
    dev.take_profile();
    if (vm) {
        VisionBuffers b(vm->config, o.tiles);
        const auto t0 = Clock::now();
        encode_tiles(*vm, b.in.data(), o.tiles, b.out.data(), pool);
        report("encode", "encode of " + std::to_string(o.tiles) + " tiles, GPU time by shader (per tile):", o.tiles,
               ms_since(t0));
    }
    if (tm) {
        TextRun run(*tm, o.prompt, o.gen, pool);
        if (o.prompt > 0) {
            const auto t0 = Clock::now();
            run.prefill();
            report("prefill", "prefill of " + std::to_string(o.prompt) + " tokens, GPU time by shader (per call):", 1,
                   ms_since(t0));
        }
        const auto t0 = Clock::now();
        run.decode();
        report("decode", "decode, " + std::to_string(o.gen) + " steps, GPU time by shader (per token):", o.gen,
               ms_since(t0));
    }
    dev.set_profiling(false);
}

}  // namespace

int run_device_bench(const DeviceBenchOptions& o) {
    if (o.prompt < 0 || o.gen < 1 || o.repeats < 1 || o.tiles < 1)
        throw Error(ErrorKind::Usage, "bench: -p must be >= 0, -n, -r and --vit-tiles >= 1");
    const Placement dev = open_device(o.device, false);
    ThreadPool pool(0);
    nlohmann::json j;
    j["device"] = dev.label();
    if (dev.ctx) {
        j["driver"] = dev.ctx->info().driver_name + " " + dev.ctx->info().driver_info;
        j["device_type"] = std::string(vk::device_type_name(dev.ctx->info().type));
        j["fuse_norms"] = dev.ctx->fuse_norms();
        j["record_ahead"] = dev.ctx->options().record_ahead;
        // The tiled matmul's tile: "by shape" (vk::matmul_large_tile), or forced "128" / "64".
        const std::optional<bool> large = dev.ctx->options().matmul_large_tiles;
        j["matmul_tiles"] = !large ? "by shape" : *large ? "128" : "64";
        // The register-blocked attention kernel (vk::attention_path): "by shape", or forced "on" / "off".
        const std::optional<bool> blocked = dev.ctx->options().attention_blocked;
        j["attention_blocked"] = !blocked ? "by shape" : *blocked ? "on" : "off";
        j["vit_tiles_at_once"] = tiles_at_once(*dev.ctx);  // a group's tiles through each step together
        j["fuse_qkv"] = dev.ctx->fuse_qkv();  // the decoder's Q, K, V as one matmul and one rope_qkv
        j["fuse_rope"] = dev.ctx->fuse_rope();  // decode's rope_qkv inside its attention (attention_qkv)
        j["greedy_pick"] = dev.ctx->greedy_pick();  // decode picks its tokens on the device (greedy_pick)
        j["batch_decode"] = dev.ctx->batch_decode();  // caption's sequences step together (decode_batch)
        // Many-row matmuls on tensor cores (matmul_coop.comp): asked for and possible here.
        j["coop_matmul"] = dev.ctx->coop_matmul();
        j["coop_matmul_supported"] = dev.ctx->coop_matmul_supported();
        j["coop_attention"] = dev.ctx->coop_attention();  // and the ViT's attention (attention_coop.comp)
    }
    std::optional<VisionModel> vision;
    std::optional<LlamaModel> text;
    std::optional<VlmModel> vlm;
    std::filesystem::path scratch;
    if (o.vit) {
        vision = make_random_siglip(512, 16, 768, 12, 3072, 12, 4, 576, false, o.seed);
        j["model"] = "random SmolVLM-256M-shaped vision tower (SigLIP-B/16, 512x512 tiles, F32)";
    } else if (!o.random.empty()) {
        scratch = std::filesystem::temp_directory_path() / ("glimpse-bench-" + std::to_string(::getpid()) + ".gguf");
        write_random_llama_gguf(scratch.string(), random_llama_shape(o.random), o.type, o.seed);
        text = open_llama_model(scratch.string());
        j["model"] = "random " + o.random + " (" + std::string(dtype_name(o.type)) + ")";
    } else {
        std::string model = o.model, mmproj = o.mmproj;
        if (model.empty()) use_default_model_if_unset(model, mmproj);
        if (!mmproj.empty() || o.model.empty()) {
            vlm = open_vlm(model, mmproj);
        } else {
            try {
                vlm = open_vlm(model, mmproj);
            } catch (const Error& e) {
                if (e.kind() != ErrorKind::Usage) throw;  // no mmproj beside it: the text model alone
                text = open_llama_model(model);
            }
        }
        j["model"] = model;
    }
    VisionModel* vm = o.vit ? &*vision : vlm ? &vlm->vision : nullptr;
    LlamaModel* tm = text ? &*text : vlm ? &vlm->text : nullptr;
    if (vm) place_vision(dev, *vm, false);
    if (tm) place_text(dev, *tm, false);
    if (!o.json) {
        std::printf("device: %s%s%s\n", dev.label().c_str(), dev.ctx ? ", driver " : "",
                    dev.ctx ? j["driver"].get<std::string>().c_str() : "");
        std::printf("model: %s\n", j["model"].get<std::string>().c_str());
        std::fflush(stdout);
    }
    if (vm) {
        const VisionFigures v = bench_vision(*vm, o.tiles, o.repeats, pool);
        j["encode_ms_per_tile"] = v.ms_per_tile;
        j["tiles_per_call"] = v.tiles;
        j["tile_px"] = vm->config.image_size;
        const double gflop = vision_gflop_per_tile(vm->config), gflops = gflop / v.ms_per_tile * 1000.0;
        j["encode_gflop_per_tile"] = gflop;
        j["encode_gflops"] = gflops;
        if (!o.json)
            std::printf("vision: %.1f ms per %dx%d tile (%d tiles per call, projector included; %.2f GFLOP a tile: "
                        "%.0f GFLOP/s)\n",
                        v.ms_per_tile, vm->config.image_size, vm->config.image_size, v.tiles, gflop, gflops);
        std::fflush(stdout);
    }
    if (tm) {
        const TextFigures t = bench_text(*tm, o.prompt, o.gen, o.repeats, pool);
        j["prefill_tokens"] = o.prompt;
        j["decode_tokens"] = o.gen;
        j["prefill_tps"] = t.prefill_tps;
        j["decode_tps"] = t.decode_tps;
        if (!o.json)
            std::printf("text: prefill %.1f tokens/s (%d tokens), decode %.1f tokens/s (%d steps)\n", t.prefill_tps,
                        o.prompt, t.decode_tps, o.gen);
        if (dev.ctx) {
            // Decode against the device's memory bandwidth: each step reads every layer
            // matrix, the output matrix and the K/V rows (the CPU bench's bound, apps/bench_model.h).
            // The better of the transfer copies and a compute shader's copies: drivers differ
            // in which of the two comes near the memory's rate (an H200's transfer copies: 830 GB/s).
            const double bw_transfer = vk::measure_copy_bandwidth_gbs(*dev.ctx, uint64_t(256) << 20);
            const double bw_shader = vk::measure_shader_copy_gbs(*dev.ctx, uint64_t(256) << 20);
            const double bw = std::max(bw_transfer, bw_shader);
            const double bytes = double(decode_weight_bytes(*tm)) + decode_kv_bytes(*tm, o.prompt, o.gen);
            const double bound = bw * 1e9 / bytes, pct = 100.0 * t.decode_tps / bound;
            j["device_copy_gbs"] = bw;
            j["device_copy_transfer_gbs"] = bw_transfer;
            j["device_copy_shader_gbs"] = bw_shader;
            j["decode_bytes_per_token"] = bytes;
            j["decode_bound_tps"] = bound;
            j["decode_pct_bound"] = pct;
            if (!o.json)
                std::printf("decode: %.1f%% of the bandwidth bound of %.1f tokens/s (%.1f MiB of weights and K/V "
                            "read a token, %.1f GB/s: the best of the device's own buffer copies, transfer "
                            "%.1f, shader %.1f)\n",
                            pct, bound, bytes / (1 << 20), bw, bw_transfer, bw_shader);
        }
    }
    if (o.profile) {
        if (dev.ctx) profile_runs(*dev.ctx, vm, tm, o, pool, j);
        else if (!o.json) std::printf("\n--profile: the GPU time by shader needs a Vulkan --device\n");
    }
    j["repeats"] = o.repeats;
    j["load_average"] = load_average();
    if (!scratch.empty()) std::filesystem::remove(scratch);
    if (o.json) std::printf("%s\n", j.dump(2).c_str());
    else std::printf("(medians of %d runs; load average %.2f)\n", o.repeats, j["load_average"].get<double>());
    return 0;
}

}  // namespace glimpse::app
