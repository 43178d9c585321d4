// --device auto|cpu|vulkan|vulkan:i (DESIGN.md's command-line contract) for the commands that
// run a model: the choice of the compute device (core/vk_context.h select_device) and the
// placement of the towers on it. A Vulkan tower has its weights uploaded once here; every
// LlamaContext made from the model afterwards runs on the device (text/llama_forward_vk.h).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "core/vk_context.h"

namespace glimpse {
struct LlamaModel;
struct VisionModel;
struct VlmModel;
}  // namespace glimpse

namespace glimpse::app {

struct DeviceArgs {
    std::string spec = "auto";
};
void add_device_option(CLI::App* sub, DeviceArgs& a);

// The device of one run: ctx is null for the CPU backend.
struct Placement {
    vk::DeviceChoice choice;
    std::shared_ptr<vk::Context> ctx;
    std::string label() const;  // "cpu" or the Vulkan device as errors name it
};

// Chooses the device. Error(Device) (exit 4) when Vulkan is asked for and there is none, or
// device i does not exist; Error(Usage) for an unknown spec. With verbose, one line on stderr
// saying which device and why, and a Vulkan device times its dispatches (per-shader GPU time
// for print_device_profile_line).
Placement open_device(const DeviceArgs& a, bool verbose);

// The GPU time by shader that the placement's Context gathered since the last take (open_device
// turns profiling on with verbose): one line on stderr, the largest shares first. Nothing for
// the CPU or when the device was not profiling.
void print_device_profile_line(const Placement& p);
// The same as a table on stdout: `title`, then one row per shader (dispatches, ms, share).
// `calls` divides the figures (per call / per token); `wall_ms` > 0 adds how much of the wall
// time the GPU was busy.
void print_device_profile(const vk::DeviceProfile& prof, const std::string& title, double calls, double wall_ms);

// Put each tower on the placement's device (nothing to do for the CPU). With verbose, one
// line per tower on stderr: where it runs and what its upload took.
void place_text(const Placement& p, LlamaModel& m, bool verbose);
void place_vision(const Placement& p, VisionModel& m, bool verbose);
void place_vlm(const Placement& p, VlmModel& m, bool verbose);

}  // namespace glimpse::app
