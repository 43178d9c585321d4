// Instance, device enumeration, device choice and the logical device (core/vk_context.h).
#include "core/vk_context.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/error.h"
#include "core/vk_buffer.h"
#include "core/vk_pipeline.h"

namespace glimpse::vk {

namespace {

constexpr const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";

Error device_error(const std::string& message) { return Error(ErrorKind::Device, "vulkan: " + message); }

VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                VkDebugUtilsMessageTypeFlagsEXT,
                                                const VkDebugUtilsMessengerCallbackDataEXT* data,
                                                void* user) {
    if ((severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) && data && data->pMessage)
        static_cast<Instance*>(user)->record_validation_error(data->pMessage);
    return VK_FALSE;  // never abort the call that triggered the message
}

bool has_layer(const char* name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, nullptr) != VK_SUCCESS) return false;
    std::vector<VkLayerProperties> layers(n);
    if (vkEnumerateInstanceLayerProperties(&n, layers.data()) != VK_SUCCESS) return false;
    return std::any_of(layers.begin(), layers.begin() + n,
                       [&](const VkLayerProperties& l) { return std::strcmp(l.layerName, name) == 0; });
}

std::vector<std::string> device_extensions(VkPhysicalDevice pd) {
    uint32_t n = 0;
    std::vector<std::string> names;
    if (vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr) != VK_SUCCESS) return names;
    std::vector<VkExtensionProperties> ext(n);
    if (vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, ext.data()) != VK_SUCCESS) return names;
    for (uint32_t i = 0; i < n; ++i) names.emplace_back(ext[i].extensionName);
    return names;
}

bool contains(const std::vector<std::string>& v, const char* s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

DeviceType to_type(VkPhysicalDeviceType t) {
    switch (t) {
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return DeviceType::IntegratedGpu;
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return DeviceType::DiscreteGpu;
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return DeviceType::VirtualGpu;
        case VK_PHYSICAL_DEVICE_TYPE_CPU: return DeviceType::Cpu;
        default: return DeviceType::Other;
    }
}

// Feature structs glimpse can enable, chained for vkGetPhysicalDeviceFeatures2/vkCreateDevice.
// The 1.2-era structs are chained only where the device knows them (API 1.2 or the extension).
struct FeatureChain {
    VkPhysicalDeviceFeatures2 base = init<VkPhysicalDeviceFeatures2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2);
    VkPhysicalDevice16BitStorageFeatures s16 = init<VkPhysicalDevice16BitStorageFeatures>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES);
    VkPhysicalDevice8BitStorageFeatures s8 = init<VkPhysicalDevice8BitStorageFeatures>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES);
    VkPhysicalDeviceShaderFloat16Int8Features f16i8 = init<VkPhysicalDeviceShaderFloat16Int8Features>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES);
    // What the tensor-core matmul (matmul_coop.comp) needs besides shaderFloat16: the NV
    // cooperative matrix, and the Vulkan memory model its GLSL extension declares.
    VkPhysicalDeviceCooperativeMatrixFeaturesNV coop = init<VkPhysicalDeviceCooperativeMatrixFeaturesNV>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV);
    VkPhysicalDeviceVulkanMemoryModelFeatures vmm = init<VkPhysicalDeviceVulkanMemoryModelFeatures>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES);
    bool has_s8 = false, has_f16i8 = false, has_coop = false;

    FeatureChain(uint32_t api, const std::vector<std::string>& ext) {
        has_s8 = api >= VK_API_VERSION_1_2 || contains(ext, VK_KHR_8BIT_STORAGE_EXTENSION_NAME);
        has_f16i8 = api >= VK_API_VERSION_1_2 || contains(ext, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
        has_coop = api >= VK_API_VERSION_1_2 && contains(ext, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
        link();
    }
    FeatureChain(const FeatureChain&) = delete;
    void link() {
        void** next = &base.pNext;
        *next = &s16;
        next = &s16.pNext;
        if (has_s8) {
            *next = &s8;
            next = &s8.pNext;
        }
        if (has_f16i8) {
            *next = &f16i8;
            next = &f16i8.pNext;
        }
        if (has_coop) {
            *next = &coop;
            next = &coop.pNext;
            *next = &vmm;
            next = &vmm.pNext;
        }
        *next = nullptr;
    }
};

const char* component_name(VkComponentTypeNV t) {
    switch (t) {
        case VK_COMPONENT_TYPE_FLOAT16_NV: return "f16";
        case VK_COMPONENT_TYPE_FLOAT32_NV: return "f32";
        case VK_COMPONENT_TYPE_FLOAT64_NV: return "f64";
        case VK_COMPONENT_TYPE_SINT8_NV: return "s8";
        case VK_COMPONENT_TYPE_SINT32_NV: return "s32";
        case VK_COMPONENT_TYPE_UINT8_NV: return "u8";
        case VK_COMPONENT_TYPE_UINT32_NV: return "u32";
        default: return "other";
    }
}

// VK_NV_cooperative_matrix's subgroup-scope shapes (DeviceInfo::coopmat_nv_shapes); none where
// the loader cannot give the query.
std::vector<std::string> nv_coopmat_shapes(VkInstance instance, VkPhysicalDevice pd) {
    const auto query = reinterpret_cast<PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV>(
        vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV"));
    std::vector<std::string> shapes;
    uint32_t n = 0;
    if (!query || query(pd, &n, nullptr) != VK_SUCCESS) return shapes;
    std::vector<VkCooperativeMatrixPropertiesNV> props(
        n, init<VkCooperativeMatrixPropertiesNV>(VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV));
    const VkResult r = query(pd, &n, props.data());
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) return shapes;
    props.resize(n);
    for (const VkCooperativeMatrixPropertiesNV& c : props)
        if (c.scope == VK_SCOPE_SUBGROUP_NV)
            shapes.push_back(std::to_string(c.MSize) + "x" + std::to_string(c.NSize) + "x" + std::to_string(c.KSize) +
                             " " + component_name(c.AType) + "*" + component_name(c.BType) + "+" +
                             component_name(c.CType) + "->" + component_name(c.DType));
    return shapes;
}

DeviceInfo describe(VkInstance instance, VkPhysicalDevice pd, uint32_t index) {
    DeviceInfo d;
    d.index = index;
    VkPhysicalDeviceProperties p0;
    vkGetPhysicalDeviceProperties(pd, &p0);
    const auto ext = device_extensions(pd);
    const bool has_driver_props = p0.apiVersion >= VK_API_VERSION_1_2 ||
                                  contains(ext, VK_KHR_DRIVER_PROPERTIES_EXTENSION_NAME);

    VkPhysicalDeviceProperties2 props = init<VkPhysicalDeviceProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2);
    VkPhysicalDeviceSubgroupProperties sub = init<VkPhysicalDeviceSubgroupProperties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES);
    VkPhysicalDeviceMaintenance3Properties m3 = init<VkPhysicalDeviceMaintenance3Properties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES);
    VkPhysicalDeviceDriverProperties drv = init<VkPhysicalDeviceDriverProperties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES);
    props.pNext = &sub;
    sub.pNext = &m3;
    if (has_driver_props) m3.pNext = &drv;
    vkGetPhysicalDeviceProperties2(pd, &props);
    const VkPhysicalDeviceProperties& p = props.properties;

    d.name = p.deviceName;
    d.type = to_type(p.deviceType);
    d.vendor_id = p.vendorID;
    d.device_id = p.deviceID;
    d.api_version = p.apiVersion;
    d.driver_version = p.driverVersion;
    if (has_driver_props) {
        d.driver_name = drv.driverName;
        d.driver_info = drv.driverInfo;
    }
    d.max_storage_buffer_range = p.limits.maxStorageBufferRange;
    d.max_allocation_size = m3.maxMemoryAllocationSize;
    d.min_storage_offset_alignment = p.limits.minStorageBufferOffsetAlignment;
    d.max_shared_memory = p.limits.maxComputeSharedMemorySize;
    d.max_workgroup_invocations = p.limits.maxComputeWorkGroupInvocations;
    for (int i = 0; i < 3; ++i) d.max_workgroup_count[i] = p.limits.maxComputeWorkGroupCount[i];
    d.subgroup_size = sub.subgroupSize;
    d.subgroup_arithmetic = (sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                            (sub.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) &&
                            (sub.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT);

    VkPhysicalDeviceMemoryProperties mem;
    vkGetPhysicalDeviceMemoryProperties(pd, &mem);
    for (uint32_t h = 0; h < mem.memoryHeapCount; ++h)
        if (mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) d.device_local_bytes += mem.memoryHeaps[h].size;

    FeatureChain f(p.apiVersion, ext);
    vkGetPhysicalDeviceFeatures2(pd, &f.base);
    d.storage_16bit = f.s16.storageBuffer16BitAccess;
    d.storage_8bit = f.has_s8 && f.s8.storageBuffer8BitAccess;
    d.fp16_arithmetic = f.has_f16i8 && f.f16i8.shaderFloat16;
    d.int8_arithmetic = f.has_f16i8 && f.f16i8.shaderInt8;
    d.coopmat_khr = contains(ext, "VK_KHR_cooperative_matrix");
    d.coopmat_nv = contains(ext, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
    d.cooperative_matrix = d.coopmat_khr || d.coopmat_nv;
    if (d.coopmat_nv) d.coopmat_nv_shapes = nv_coopmat_shapes(instance, pd);
    d.coop_matmul = f.has_coop && f.coop.cooperativeMatrix && f.vmm.vulkanMemoryModel && d.fp16_arithmetic &&
                    d.storage_16bit && d.subgroup_size == 32 && contains(d.coopmat_nv_shapes, kCoopMatmulShape);
    return d;
}

int type_rank(DeviceType t) {  // higher is preferred
    switch (t) {
        case DeviceType::DiscreteGpu: return 4;
        case DeviceType::IntegratedGpu: return 3;
        case DeviceType::VirtualGpu: return 2;
        case DeviceType::Cpu: return 1;
        default: return 0;
    }
}

}  // namespace

std::string_view device_type_name(DeviceType t) {
    switch (t) {
        case DeviceType::DiscreteGpu: return "discrete";
        case DeviceType::IntegratedGpu: return "integrated";
        case DeviceType::VirtualGpu: return "virtual";
        case DeviceType::Cpu: return "cpu";
        default: return "other";
    }
}

std::string api_version_string(uint32_t v) {
    return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) + "." +
           std::to_string(VK_API_VERSION_PATCH(v));
}

std::string_view result_name(VkResult r) {
    switch (r) {
        case VK_SUCCESS: return "VK_SUCCESS";
        case VK_TIMEOUT: return "VK_TIMEOUT";
        case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
        case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
        case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
        case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
        case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
        case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
        case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
        case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
        case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
        case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
        case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
        case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
        case VK_ERROR_INVALID_SHADER_NV: return "VK_ERROR_INVALID_SHADER_NV";
        default: return "VK_ERROR_UNKNOWN";
    }
}

void check(VkResult r, std::string_view what, std::string_view where) {
    if (r == VK_SUCCESS) return;
    std::string msg = std::string(what) + " failed on " + std::string(where) + ": " + std::string(result_name(r));
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        msg += " (out of memory)";
    else if (r == VK_ERROR_DEVICE_LOST)
        msg += " (the device was lost: driver reset or a shader fault)";
    throw device_error(msg);
}

std::optional<bool> env_switch(const char* name) {
    const char* v = std::getenv(name);
    if (v && std::strcmp(v, "1") == 0) return true;
    if (v && std::strcmp(v, "0") == 0) return false;
    return std::nullopt;
}

bool validation_requested_by_env() { return env_switch("GLIMPSE_VK_VALIDATION").value_or(false); }

// ---- Instance --------------------------------------------------------------------------------

Instance::Instance(Validation validation) {
    const bool want_validation = validation == Validation::IfAvailable && has_layer(kValidationLayer);
    VkApplicationInfo app = init<VkApplicationInfo>(VK_STRUCTURE_TYPE_APPLICATION_INFO);
    app.pApplicationName = "glimpse";
    app.pEngineName = "glimpse";
    app.apiVersion = VK_API_VERSION_1_2;

    std::vector<const char*> layers, extensions;
    if (want_validation) {
        layers.push_back(kValidationLayer);
        extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    }
    VkInstanceCreateInfo ci = init<VkInstanceCreateInfo>(VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
    ci.pApplicationInfo = &app;
    ci.enabledLayerCount = uint32_t(layers.size());
    ci.ppEnabledLayerNames = layers.data();
    ci.enabledExtensionCount = uint32_t(extensions.size());
    ci.ppEnabledExtensionNames = extensions.data();
    const VkResult r = vkCreateInstance(&ci, nullptr, &instance_);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED)
        throw device_error("no Vulkan driver found (" + std::string(result_name(r)) +
                           "): install mesa-vulkan-drivers or your GPU vendor's driver");
    check(r, "vkCreateInstance", "the Vulkan loader");

    if (want_validation) {
        auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
            vkGetInstanceProcAddr(instance_, "vkCreateDebugUtilsMessengerEXT"));
        VkDebugUtilsMessengerCreateInfoEXT mi = init<VkDebugUtilsMessengerCreateInfoEXT>(VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT);
        mi.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT;
        mi.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                         VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
        mi.pfnUserCallback = on_debug_message;
        mi.pUserData = this;
        if (!create || create(instance_, &mi, nullptr, &messenger_) != VK_SUCCESS) messenger_ = VK_NULL_HANDLE;
    }

    uint32_t n = 0;
    VkResult er = vkEnumeratePhysicalDevices(instance_, &n, nullptr);
    if (er == VK_SUCCESS || er == VK_INCOMPLETE) {
        physical_.resize(n);
        er = vkEnumeratePhysicalDevices(instance_, &n, physical_.data());
        physical_.resize(er == VK_SUCCESS || er == VK_INCOMPLETE ? n : 0);
    }
    for (uint32_t i = 0; i < physical_.size(); ++i) devices_.push_back(describe(instance_, physical_[i], i));
}

Instance::~Instance() {
    if (messenger_ != VK_NULL_HANDLE) {
        auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
            vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
        if (destroy) destroy(instance_, messenger_, nullptr);
    }
    if (instance_ != VK_NULL_HANDLE) vkDestroyInstance(instance_, nullptr);
}

VkPhysicalDevice Instance::physical_device(uint32_t index) const {
    if (index >= physical_.size())
        throw device_error("no device " + std::to_string(index) + " (" + std::to_string(physical_.size()) + " found)");
    return physical_[index];
}

void Instance::record_validation_error(const char* message) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (validation_errors_.size() < 64) validation_errors_.emplace_back(message);
}

std::vector<std::string> Instance::take_validation_errors() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::exchange(validation_errors_, {});
}

void Instance::throw_if_validation_errors(std::string_view stage) {
    const auto errors = take_validation_errors();
    if (errors.empty()) return;
    std::string first = errors.front();
    std::replace(first.begin(), first.end(), '\n', ' ');
    throw device_error("validation error during " + std::string(stage) + " (" + std::to_string(errors.size()) +
                       " in all): " + first);
}

// ---- device choice ---------------------------------------------------------------------------

DeviceChoice select_device(const std::string& spec, const std::vector<DeviceInfo>& devices) {
    DeviceChoice c;
    if (spec == "cpu") {
        c.reason = "cpu: asked for";
        return c;
    }
    const auto best = [&](int min_rank) -> const DeviceInfo* {
        const DeviceInfo* b = nullptr;
        for (const auto& d : devices)
            if (type_rank(d.type) >= min_rank && (!b || type_rank(d.type) > type_rank(b->type))) b = &d;
        return b;
    };
    const auto use = [&](const DeviceInfo& d, const std::string& why) {
        c.backend = Backend::Vulkan;
        c.vulkan_index = d.index;
        c.reason = "vulkan:" + std::to_string(d.index) + " " + d.name + " (" +
                   std::string(device_type_name(d.type)) + "): " + why;
        return c;
    };
    if (spec == "auto") {
        if (const DeviceInfo* d = best(type_rank(DeviceType::VirtualGpu))) return use(*d, "the best GPU found");
        c.reason = devices.empty() ? "cpu: no Vulkan device found"
                                   : "cpu: no GPU found (software Vulkan devices are used only with --device vulkan)";
        return c;
    }
    if (spec == "vulkan") {
        if (const DeviceInfo* d = best(0)) return use(*d, "the best Vulkan device found");
        throw device_error("no Vulkan device found: install mesa-vulkan-drivers or your GPU vendor's driver");
    }
    if (spec.rfind("vulkan:", 0) == 0) {
        const std::string num = spec.substr(7);
        if (num.empty() || num.size() > 6 || !std::all_of(num.begin(), num.end(), ::isdigit))
            throw Error(ErrorKind::Usage, "--device: expected vulkan:N with a device number, got '" + spec + "'");
        const unsigned long i = std::stoul(num);
        if (i >= devices.size())
            throw device_error("no device " + num + " (" + std::to_string(devices.size()) + " found)");
        return use(devices[i], "asked for");
    }
    throw Error(ErrorKind::Usage, "--device: expected auto, cpu, vulkan or vulkan:N, got '" + spec + "'");
}

namespace {

// Whether this machine has a GPU device node: a DRM render node (Mesa's drivers, AMDGPU,
// Intel, virtio-gpu), NVIDIA's device files or WSL2's /dev/dxg. Every hardware Vulkan driver
// on Linux opens one of these, so where none exists `auto` can skip the Vulkan loader, which
// loads every installed driver (lavapipe's LLVM included) to find none: about 50-80 ms, half
// the run time of a one-picture `describe` on the default model. Elsewhere: always probe.
bool gpu_device_node_present() {
#ifdef __linux__
    std::error_code ec;
    for (const char* f : {"/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"})
        if (std::filesystem::exists(f, ec)) return true;
    for (std::filesystem::directory_iterator it("/dev/dri", ec), end; !ec && it != end; it.increment(ec))
        if (it->path().filename().string().rfind("renderD", 0) == 0) return true;
    return false;
#else
    return true;
#endif
}

}  // namespace

DeviceChoice select_device(const std::string& spec) {
    if (spec == "cpu") return select_device(spec, {});
    if (spec == "auto" && !gpu_device_node_present()) {
        DeviceChoice c;
        c.reason = "cpu: no GPU device node (/dev/dri/renderD*, /dev/nvidia*, /dev/dxg); Vulkan not probed "
                   "(a software Vulkan device is used only with --device vulkan)";
        return c;
    }
    try {
        Instance instance;
        return select_device(spec, instance.devices());
    } catch (const Error& e) {
        if (spec != "auto" || e.kind() != ErrorKind::Device) throw;
        DeviceChoice c;
        c.reason = std::string("cpu: ") + e.what();
        return c;
    }
}

// ---- Context ---------------------------------------------------------------------------------

Context::Context(uint32_t index, ContextOptions options)
    : instance_(std::make_unique<Instance>(options.validation)), options_(options) {
    physical_ = instance_->physical_device(index);
    info_ = instance_->devices()[index];
    label_ = "vulkan device " + std::to_string(index) + " (" + info_.name + ")";
    if (info_.api_version < VK_API_VERSION_1_1)
        throw device_error(label_ + " supports only Vulkan " + api_version_string(info_.api_version) + "; 1.1 is needed");

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> families(nq);
    vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nq, families.data());
    // Prefer a compute family without graphics (a dedicated async-compute queue), else any.
    int family = -1;
    for (uint32_t i = 0; i < nq && family < 0; ++i)
        if ((families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(families[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
            family = int(i);
    for (uint32_t i = 0; i < nq && family < 0; ++i)
        if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) family = int(i);
    if (family < 0) throw device_error(label_ + " has no compute queue");
    queue_family_ = uint32_t(family);
    timestamp_bits_ = families[size_t(family)].timestampValidBits;
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(physical_, &props);
    timestamp_period_ns_ = double(props.limits.timestampPeriod);
    if (!(timestamp_period_ns_ > 0)) timestamp_bits_ = 0;

    const auto ext = device_extensions(physical_);
    FeatureChain f(info_.api_version, ext);
    vkGetPhysicalDeviceFeatures2(physical_, &f.base);
    // Enable only what the shaders use: 16/8-bit storage (block structs), fp16/int8 arithmetic.
    const VkPhysicalDeviceFeatures2 supported = f.base;
    f.base.features = VkPhysicalDeviceFeatures{};
    f.base.features.shaderInt16 = supported.features.shaderInt16;
    f.s16.uniformAndStorageBuffer16BitAccess = VK_FALSE;
    f.s16.storagePushConstant16 = VK_FALSE;
    f.s16.storageInputOutput16 = VK_FALSE;
    f.s8.uniformAndStorageBuffer8BitAccess = VK_FALSE;
    f.s8.storagePushConstant8 = VK_FALSE;
    // The tensor-core matmul's extension and features where the device has all it needs.
    f.has_coop = info_.coop_matmul;
    f.coop.cooperativeMatrixRobustBufferAccess = VK_FALSE;
    f.vmm.vulkanMemoryModelDeviceScope = VK_FALSE;
    f.vmm.vulkanMemoryModelAvailabilityVisibilityChains = VK_FALSE;
    f.link();
    std::vector<const char*> enabled_ext;
    if (info_.api_version < VK_API_VERSION_1_2) {
        if (f.has_s8) enabled_ext.push_back(VK_KHR_8BIT_STORAGE_EXTENSION_NAME);
        if (f.has_f16i8) enabled_ext.push_back(VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
    }
    if (info_.coop_matmul) enabled_ext.push_back(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);

    const float priority = 1.0f;
    VkDeviceQueueCreateInfo qi = init<VkDeviceQueueCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO);
    qi.queueFamilyIndex = queue_family_;
    qi.queueCount = 1;
    qi.pQueuePriorities = &priority;
    VkDeviceCreateInfo di = init<VkDeviceCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO);
    di.pNext = &f.base;
    di.queueCreateInfoCount = 1;
    di.pQueueCreateInfos = &qi;
    di.enabledExtensionCount = uint32_t(enabled_ext.size());
    di.ppEnabledExtensionNames = enabled_ext.data();
    check(vkCreateDevice(physical_, &di, nullptr, &device_), "vkCreateDevice", label_);
    vkGetDeviceQueue(device_, queue_family_, 0, &queue_);
    use_subgroups_ = options_.allow_subgroup_ops && info_.subgroup_arithmetic;

    try {
        VkCommandPoolCreateInfo pi = init<VkCommandPoolCreateInfo>(VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO);
        pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
        pi.queueFamilyIndex = queue_family_;
        check(vkCreateCommandPool(device_, &pi, nullptr, &command_pool_), "vkCreateCommandPool", label_);
        VkCommandBufferAllocateInfo ai = init<VkCommandBufferAllocateInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
        ai.commandPool = command_pool_;
        ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
        ai.commandBufferCount = 1;
        check(vkAllocateCommandBuffers(device_, &ai, &once_cmd_), "vkAllocateCommandBuffers", label_);
        VkFenceCreateInfo fi = init<VkFenceCreateInfo>(VK_STRUCTURE_TYPE_FENCE_CREATE_INFO);
        check(vkCreateFence(device_, &fi, nullptr, &once_fence_), "vkCreateFence", label_);
        allocator_ = std::make_unique<Allocator>(*this);
        pipelines_ = std::make_unique<PipelineCache>(*this);
        instance_->throw_if_validation_errors("device creation");
    } catch (...) {
        staging_.reset();
        pipelines_.reset();
        allocator_.reset();
        if (once_fence_) vkDestroyFence(device_, once_fence_, nullptr);
        if (command_pool_) vkDestroyCommandPool(device_, command_pool_, nullptr);
        vkDestroyDevice(device_, nullptr);
        throw;
    }
}

Context::~Context() {
    vkDeviceWaitIdle(device_);
    staging_.reset();  // children first: buffers, pipelines, memory, then the device
    pipelines_.reset();
    allocator_.reset();
    vkDestroyFence(device_, once_fence_, nullptr);
    vkDestroyCommandPool(device_, command_pool_, nullptr);
    vkDestroyDevice(device_, nullptr);
}

void DeviceProfile::add(const DeviceProfile& o) {
    for (const auto& [name, t] : o.shaders) {
        ShaderTime& s = shaders[name];
        s.ms += t.ms;
        s.dispatches += t.dispatches;
    }
    gpu_ms += o.gpu_ms;
    submissions += o.submissions;
    untimed += o.untimed;
    record_ms += o.record_ms;
    record_ahead_ms += o.record_ahead_ms;
}

bool Context::set_profiling(bool on) {
    profiling_ = on && timestamp_bits_ > 0;
    return profiling_ == on;
}

void Context::add_profile(const DeviceProfile& p) {
    std::lock_guard<std::mutex> lock(profile_mutex_);
    profile_.add(p);
}

DeviceProfile Context::take_profile() {
    std::lock_guard<std::mutex> lock(profile_mutex_);
    DeviceProfile p = std::move(profile_);
    profile_ = DeviceProfile{};
    return p;
}

Buffer& Context::staging() {
    if (!staging_) staging_ = std::make_unique<Buffer>(*this, std::max<uint64_t>(options_.staging_bytes, 256), MemoryKind::Staging);
    return *staging_;
}

void Context::wait_fence(VkFence fence, std::string_view stage) {
    const uint64_t timeout_ns = uint64_t(options_.submit_timeout_ms) * 1000000ull;
    const VkResult r = vkWaitForFences(device_, 1, &fence, VK_TRUE, timeout_ns);
    if (r == VK_TIMEOUT)
        throw device_error(std::string(stage) + " did not finish within " +
                           std::to_string(options_.submit_timeout_ms / 1000) + " s on " + label_);
    check(r, std::string(stage) + " (waiting for the fence)", label_);
}

void Context::run_once(const std::function<void(VkCommandBuffer)>& fill, std::string_view stage) {
    check(vkResetCommandBuffer(once_cmd_, 0), "vkResetCommandBuffer", label_);
    VkCommandBufferBeginInfo bi = init<VkCommandBufferBeginInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    check(vkBeginCommandBuffer(once_cmd_, &bi), "vkBeginCommandBuffer", label_);
    fill(once_cmd_);
    check(vkEndCommandBuffer(once_cmd_), "vkEndCommandBuffer", label_);
    check(vkResetFences(device_, 1, &once_fence_), "vkResetFences", label_);
    VkSubmitInfo si = init<VkSubmitInfo>(VK_STRUCTURE_TYPE_SUBMIT_INFO);
    si.commandBufferCount = 1;
    si.pCommandBuffers = &once_cmd_;
    check(vkQueueSubmit(queue_, 1, &si, once_fence_), std::string(stage) + " (vkQueueSubmit)", label_);
    wait_fence(once_fence_, stage);
    instance_->throw_if_validation_errors(stage);
    if (profiling_) {  // counted as a round trip to the device; its copies are not timed
        DeviceProfile p;
        p.submissions = 1;
        add_profile(p);
    }
}

}  // namespace glimpse::vk
