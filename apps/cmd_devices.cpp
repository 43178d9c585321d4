// `glimpse devices`: the compute devices this machine offers — the CPU backend and every
// Vulkan device (index, name, type, driver, API version, memory, limits, subgroup size, and the
// features the shaders can use) — and which one `--device auto` would pick. `--json` prints
// the same as one JSON document. Validation layers: GLIMPSE_VK_VALIDATION=1.
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "core/vk_context.h"

namespace glimpse::app {

namespace {

nlohmann::json device_json(const vk::DeviceInfo& d) {
    return {
        {"index", d.index},
        {"device", "vulkan:" + std::to_string(d.index)},
        {"name", d.name},
        {"type", std::string(vk::device_type_name(d.type))},
        {"vendor_id", d.vendor_id},
        {"device_id", d.device_id},
        {"driver_name", d.driver_name},
        {"driver_info", d.driver_info},
        {"driver_version", d.driver_version},
        {"api_version", vk::api_version_string(d.api_version)},
        {"device_local_bytes", d.device_local_bytes},
        {"max_storage_buffer_range", d.max_storage_buffer_range},
        {"max_allocation_size", d.max_allocation_size},
        {"max_shared_memory", d.max_shared_memory},
        {"max_workgroup_invocations", d.max_workgroup_invocations},
        {"subgroup_size", d.subgroup_size},
        {"subgroup_arithmetic", d.subgroup_arithmetic},
        {"fp16_arithmetic", d.fp16_arithmetic},
        {"int8_arithmetic", d.int8_arithmetic},
        {"storage_16bit", d.storage_16bit},
        {"storage_8bit", d.storage_8bit},
        {"cooperative_matrix", d.cooperative_matrix},
        {"cooperative_matrix_khr", d.coopmat_khr},
        {"cooperative_matrix_nv", d.coopmat_nv},
        {"cooperative_matrix_nv_shapes", d.coopmat_nv_shapes},
        {"tensor_core_matmul", d.coop_matmul},
    };
}

std::string mib(uint64_t b) { return std::to_string(b >> 20) + " MiB"; }
const char* yes_no(bool b) { return b ? "yes" : "no"; }

void print_device(const vk::DeviceInfo& d) {
    std::printf("vulkan:%u  %s (%s)\n", d.index, d.name.c_str(), std::string(vk::device_type_name(d.type)).c_str());
    std::printf("  driver            %s %s\n", d.driver_name.empty() ? "?" : d.driver_name.c_str(),
                d.driver_info.c_str());
    std::printf("  Vulkan API        %s\n", vk::api_version_string(d.api_version).c_str());
    std::printf("  device memory     %s\n", mib(d.device_local_bytes).c_str());
    std::printf("  max buffer        %s (storage range), %s (allocation)\n", mib(d.max_storage_buffer_range).c_str(),
                mib(d.max_allocation_size).c_str());
    std::printf("  subgroup size     %u (arithmetic: %s)\n", d.subgroup_size, yes_no(d.subgroup_arithmetic));
    std::printf("  fp16 / int8 math  %s / %s\n", yes_no(d.fp16_arithmetic), yes_no(d.int8_arithmetic));
    std::printf("  16/8-bit storage  %s / %s\n", yes_no(d.storage_16bit), yes_no(d.storage_8bit));
    std::string coop = yes_no(d.cooperative_matrix);
    if (d.cooperative_matrix) {
        coop += std::string(" (") + (d.coopmat_khr ? "KHR" : "") + (d.coopmat_khr && d.coopmat_nv ? ", " : "") +
                (d.coopmat_nv ? "NV" : "") + ")";
        for (size_t i = 0; i < d.coopmat_nv_shapes.size(); ++i)
            coop += (i == 0 ? "; NV shapes: " : ", ") + d.coopmat_nv_shapes[i];
    }
    std::printf("  cooperative matrix %s\n", coop.c_str());
    // glimpse's tensor-core matmul and ViT attention (matmul_coop.comp, attention_coop.comp):
    // off by default, not yet checked on a GPU.
    std::printf("  tensor-core matmul %s\n",
                d.coop_matmul ? "possible (off by default; GLIMPSE_VK_COOP_MATMUL=1 turns it on, and the "
                                "ViT's attention with it)"
                              : "no");
}

int run_devices(bool json) {
    std::vector<vk::DeviceInfo> devices;
    std::string vulkan_error;
    try {
        vk::Instance instance(vk::validation_requested_by_env() ? vk::Validation::IfAvailable : vk::Validation::Off);
        devices = instance.devices();
    } catch (const Error& e) {
        if (e.kind() != ErrorKind::Device) throw;
        vulkan_error = e.what();
    }
    const vk::DeviceChoice choice = vk::select_device("auto", devices);
    const std::string auto_pick =
        choice.backend == vk::Backend::Cpu ? "cpu" : "vulkan:" + std::to_string(choice.vulkan_index);
    if (json) {
        nlohmann::json j = {{"cpu", {{"device", "cpu"}}}, {"vulkan", nlohmann::json::array()},
                            {"auto", auto_pick}, {"auto_reason", choice.reason}};
        for (const auto& d : devices) j["vulkan"].push_back(device_json(d));
        if (!vulkan_error.empty()) j["vulkan_error"] = vulkan_error;
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    std::printf("cpu       the CPU backend\n");
    if (!vulkan_error.empty()) std::printf("vulkan    unavailable: %s\n", vulkan_error.c_str());
    else if (devices.empty()) std::printf("vulkan    no devices\n");
    for (const auto& d : devices) print_device(d);
    std::printf("\n--device auto picks %s (%s)\n", auto_pick.c_str(), choice.reason.c_str());
    return 0;
}

}  // namespace

Command add_devices(CLI::App& app) {
    auto* sub = app.add_subcommand("devices", "List the compute devices (CPU and Vulkan) and what they support");
    sub->footer(
        "--device auto prefers a discrete GPU, then an integrated one, else the CPU backend;\n"
        "a software Vulkan device (lavapipe) is used only when asked for: --device vulkan[:i].\n"
        "Set GLIMPSE_VK_VALIDATION=1 to run with the Khronos validation layer.");
    auto json = std::make_shared<bool>(false);
    sub->add_flag("--json", *json, "print one JSON document");
    return {sub, [json] { return run_devices(*json); }};
}

}  // namespace glimpse::app
