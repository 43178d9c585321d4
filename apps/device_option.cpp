// --device and the placement of the towers (apps/device_option.h).
#include "apps/device_option.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "fusion/vlm.h"
#include "text/llama_forward_vk.h"
#include "vision/vit_forward_vk.h"

namespace glimpse::app {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

std::string format_fixed(double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

}  // namespace

void add_device_option(CLI::App* sub, DeviceArgs& a) {
    sub->add_option("--device", a.spec,
                    "compute device: auto (a GPU if there is one, else the CPU), cpu, vulkan (the best Vulkan "
                    "device, lavapipe included), vulkan:I (device I of `glimpse devices`)")
        ->capture_default_str();
}

std::string Placement::label() const { return ctx ? ctx->label() : std::string("cpu"); }

Placement open_device(const DeviceArgs& a, bool verbose) {
    Placement p;
    p.choice = vk::select_device(a.spec);
    if (p.choice.backend == vk::Backend::Vulkan) {
        vk::ContextOptions o;
        if (vk::validation_requested_by_env()) o.validation = vk::Validation::IfAvailable;
        o.fuse_norms = vk::env_switch("GLIMPSE_VK_FUSE_NORMS");
        o.record_ahead = vk::env_switch("GLIMPSE_VK_RECORD_AHEAD").value_or(o.record_ahead);
        o.profile_detail = vk::env_switch("GLIMPSE_VK_PROFILE_DETAIL").value_or(o.profile_detail);
        o.matmul_large_tiles = vk::env_switch("GLIMPSE_VK_MATMUL_LARGE_TILES");
        o.attention_blocked = vk::env_switch("GLIMPSE_VK_ATTENTION_BLOCKED");
        o.vit_tiles_at_once = vk::env_switch("GLIMPSE_VK_VIT_TILES_AT_ONCE");
        o.fuse_qkv = vk::env_switch("GLIMPSE_VK_FUSE_QKV");
        o.fuse_rope = vk::env_switch("GLIMPSE_VK_FUSE_ROPE");
        o.greedy_pick = vk::env_switch("GLIMPSE_VK_GREEDY_PICK");
        o.batch_decode = vk::env_switch("GLIMPSE_VK_BATCH_DECODE");
        o.batch_prefill = vk::env_switch("GLIMPSE_VK_BATCH_PREFILL");
        o.coop_matmul = vk::env_switch("GLIMPSE_VK_COOP_MATMUL");
        o.coop_attention = vk::env_switch("GLIMPSE_VK_COOP_ATTENTION");
        p.ctx = std::make_shared<vk::Context>(p.choice.vulkan_index, o);
    }
    if (verbose) std::fprintf(stderr, "device: %s (%s)\n", p.label().c_str(), p.choice.reason.c_str());
    if (verbose && p.ctx && !p.ctx->set_profiling(true))
        std::fprintf(stderr, "device: its compute queue has no timestamps, so no GPU time by shader\n");
    return p;
}

namespace {

std::vector<std::pair<std::string, vk::ShaderTime>> by_time(const vk::DeviceProfile& prof) {
    std::vector<std::pair<std::string, vk::ShaderTime>> v(prof.shaders.begin(), prof.shaders.end());
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    return v;
}

// Percent of the profile's GPU time.
double share(const vk::DeviceProfile& prof, double ms) { return prof.gpu_ms > 0 ? 100.0 * ms / prof.gpu_ms : 0.0; }

}  // namespace

void print_device_profile_line(const Placement& p) {
    if (!p.ctx || !p.ctx->profiling()) return;
    const vk::DeviceProfile prof = p.ctx->take_profile();
    if (prof.submissions == 0) return;
    std::string line = "device: GPU time " + format_fixed(prof.gpu_ms, 1) + " ms in " +
                       std::to_string(prof.submissions) + " submissions";
    const char* sep = ": ";
    int shown = 0;
    double rest = 0;
    for (const auto& [name, t] : by_time(prof)) {
        if (shown++ < 6) {
            line += sep + name + " " + format_fixed(share(prof, t.ms), 0) + "%";
            sep = ", ";
        } else {
            rest += t.ms;
        }
    }
    if (rest > 0) line += ", others " + format_fixed(share(prof, rest), 0) + "%";
    if (prof.untimed) line += " (" + std::to_string(prof.untimed) + " dispatches untimed)";
    std::fprintf(stderr, "%s\n", line.c_str());
}

void print_device_profile(const vk::DeviceProfile& prof, const std::string& title, double calls, double wall_ms) {
    std::printf("\n%s\n", title.c_str());
    int w = 22;  // the name column: wider for the shapes of GLIMPSE_VK_PROFILE_DETAIL
    for (const auto& [name, t] : prof.shaders) w = std::max(w, int(name.size()));
    std::printf("  %-*s %11s %10s %7s\n", w, "shader", "dispatches", "ms", "share");
    for (const auto& [name, t] : by_time(prof)) {
        std::printf("  %-*s %11.1f %10.3f %6.1f%%\n", w, name.c_str(), double(t.dispatches) / calls, t.ms / calls,
                    share(prof, t.ms));
    }
    std::printf("  %-*s %11s %10.3f", w, "GPU total", "", prof.gpu_ms / calls);
    if (wall_ms > 0) std::printf("  (the GPU was busy %.0f%% of the wall time)", 100.0 * prof.gpu_ms / wall_ms);
    std::printf("\n");
    std::printf("  %-*s %11.1f %10.3f  (host time recording the commands, while the GPU waits)\n", w, "host recording",
                double(prof.submissions) / calls, (prof.record_ms - prof.record_ahead_ms) / calls);
    if (prof.record_ahead_ms > 0)
        std::printf("  %-*s %11s %10.3f  (host time recording the next step, while the GPU runs this one)\n", w,
                    "recorded ahead", "", prof.record_ahead_ms / calls);
    if (prof.untimed) std::printf("  %llu dispatches were not timed (query pool full)\n", (unsigned long long)prof.untimed);
}

void place_text(const Placement& p, LlamaModel& m, bool verbose) {
    if (!p.ctx) {
        if (verbose) std::fprintf(stderr, "device: text tower on the cpu\n");
        return;
    }
    const auto t0 = Clock::now();
    m.vulkan = upload_llama_weights(p.ctx, m);
    if (verbose)
        std::fprintf(stderr, "device: text tower on %s (%.1f MiB of weights uploaded in %.0f ms)\n", p.label().c_str(),
                     double(m.vulkan->bytes) / (1 << 20), ms_since(t0));
}

void place_vision(const Placement& p, VisionModel& m, bool verbose) {
    if (!p.ctx) {
        if (verbose) std::fprintf(stderr, "device: vision tower on the cpu\n");
        return;
    }
    const auto t0 = Clock::now();
    m.vulkan = std::make_shared<VitVulkan>(p.ctx, m);
    if (verbose)
        std::fprintf(stderr, "device: vision tower + projector on %s (%.1f MiB of weights uploaded in %.0f ms)\n",
                     p.label().c_str(), double(m.vulkan->weight_bytes()) / (1 << 20), ms_since(t0));
}

void place_vlm(const Placement& p, VlmModel& m, bool verbose) {
    place_vision(p, m.vision, verbose);
    place_text(p, m.text, verbose);
}

}  // namespace glimpse::app
