// --device and the placement of the towers (apps/device_option.h).
#include "apps/device_option.h"

#include <chrono>
#include <cstdio>

#include "fusion/vlm.h"
#include "text/llama_forward_vk.h"
#include "vision/vit_forward_vk.h"

namespace glimpse::app {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

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
        p.ctx = std::make_shared<vk::Context>(p.choice.vulkan_index, o);
    }
    if (verbose) std::fprintf(stderr, "device: %s (%s)\n", p.label().c_str(), p.choice.reason.c_str());
    return p;
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
