// The Vulkan device layer: the instance (with optional validation), what each physical device
// offers, the choice of a compute device from `--device`, and the `Context` that owns a logical
// device and its compute queue. There is no global device: whoever runs on Vulkan holds a
// Context and passes it down (STYLE.md "RAII, one owner per Vulkan handle").
//
// Ownership (parents outlive children): Context owns its Instance, the VkDevice, the command
// pool, the memory Allocator (core/vk_buffer.h) and the PipelineCache (core/vk_pipeline.h).
// Buffers and Recorders made from a Context must be destroyed before it.
//
// Every failure is a glimpse::Error of kind Device (exit code 4) with a one-line message that
// starts with "vulkan:" and names the device and the stage.
#pragma once

#include <vulkan/vulkan.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace glimpse::vk {

class Allocator;
class PipelineCache;
class Buffer;

enum class DeviceType { Other, IntegratedGpu, DiscreteGpu, VirtualGpu, Cpu };
std::string_view device_type_name(DeviceType t);  // "discrete", "integrated", "virtual", "cpu", "other"

// What one physical device offers (what `glimpse devices` prints).
struct DeviceInfo {
    uint32_t index = 0;  // position in the instance's enumeration: the i of --device vulkan:i
    std::string name;
    DeviceType type = DeviceType::Other;
    uint32_t vendor_id = 0, device_id = 0;
    std::string driver_name, driver_info;  // VK 1.2 driver properties ("llvmpipe", "Mesa 22.3.6 ...")
    uint32_t driver_version = 0;           // raw, vendor-encoded
    uint32_t api_version = 0;              // VK_MAKE_API_VERSION encoded
    uint64_t device_local_bytes = 0;       // sum of the DEVICE_LOCAL heaps
    uint64_t max_storage_buffer_range = 0; // largest buffer one descriptor can see
    uint64_t max_allocation_size = 0;      // largest single VkDeviceMemory
    uint64_t min_storage_offset_alignment = 0;
    uint32_t max_shared_memory = 0;        // bytes of workgroup-shared memory
    uint32_t max_workgroup_invocations = 0;
    uint32_t max_workgroup_count[3] = {0, 0, 0};
    uint32_t subgroup_size = 0;
    bool subgroup_arithmetic = false;  // subgroupAdd/Max in compute shaders
    bool fp16_arithmetic = false;      // shaderFloat16
    bool int8_arithmetic = false;      // shaderInt8
    bool storage_16bit = false;        // storageBuffer16BitAccess
    bool storage_8bit = false;         // storageBuffer8BitAccess
    bool cooperative_matrix = false;   // VK_KHR_cooperative_matrix or VK_NV_cooperative_matrix
    bool coopmat_khr = false, coopmat_nv = false;  // which of the two the device has
    // VK_NV_cooperative_matrix's subgroup-scope shapes, from vkGetPhysicalDeviceCooperativeMatrixPropertiesNV,
    // as "MxNxK A*B+C->D" ("16x16x16 f16*f16+f32->f32"): what a GLSL GL_NV_cooperative_matrix
    // kernel, the one tensor-core route Debian 12's glslc compiles (docs/VULKAN.md), could use.
    std::vector<std::string> coopmat_nv_shapes;
    // Whether the tensor-core matmul (shaders/matmul_coop.comp) can run here: VK_NV_cooperative_matrix
    // with its cooperativeMatrix feature and kCoopMatmulShape, the Vulkan memory model, fp16
    // arithmetic, 16-bit storage and subgroups of 32 (Context opens the device with them).
    bool coop_matmul = false;
};

// The one cooperative-matrix shape the tensor-core matmul (shaders/matmul_coop.comp) uses, as
// DeviceInfo::coopmat_nv_shapes lists it.
constexpr const char* kCoopMatmulShape = "16x16x16 f16*f16+f32->f32";

std::string api_version_string(uint32_t v);  // "1.3.230"

// Validation layers: Off, or on when VK_LAYER_KHRONOS_validation is installed (IfAvailable).
enum class Validation { Off, IfAvailable };

// True when the environment asks for validation (GLIMPSE_VK_VALIDATION=1).
bool validation_requested_by_env();
// An environment switch: "1" on, "0" off; unset or anything else: no say. The switches that
// set ContextOptions (apps/device_option.cpp), to measure both ways on one device:
// GLIMPSE_VK_FUSE_NORMS (fuse_norms), GLIMPSE_VK_RECORD_AHEAD (record_ahead),
// GLIMPSE_VK_PROFILE_DETAIL (profile_detail), GLIMPSE_VK_MATMUL_LARGE_TILES
// (matmul_large_tiles), GLIMPSE_VK_ATTENTION_BLOCKED (attention_blocked),
// GLIMPSE_VK_VIT_TILES_AT_ONCE (vit_tiles_at_once), GLIMPSE_VK_FUSE_QKV (fuse_qkv),
// GLIMPSE_VK_FUSE_ROPE (fuse_rope), GLIMPSE_VK_GREEDY_PICK (greedy_pick),
// GLIMPSE_VK_BATCH_DECODE (batch_decode), GLIMPSE_VK_BATCH_PREFILL (batch_prefill),
// GLIMPSE_VK_COOP_MATMUL (coop_matmul), GLIMPSE_VK_COOP_ATTENTION (coop_attention).
std::optional<bool> env_switch(const char* name);

class Instance {
public:
    // Throws Error(Device) when no Vulkan loader/driver answers.
    explicit Instance(Validation validation = Validation::Off);
    ~Instance();
    Instance(const Instance&) = delete;
    Instance& operator=(const Instance&) = delete;

    VkInstance handle() const { return instance_; }
    const std::vector<DeviceInfo>& devices() const { return devices_; }
    VkPhysicalDevice physical_device(uint32_t index) const;
    bool validation_enabled() const { return messenger_ != VK_NULL_HANDLE; }

    // Error-severity validation messages since the last call. The debug messenger only records
    // them: an exception must not unwind through the driver's C callback.
    std::vector<std::string> take_validation_errors();
    // Throws Error(Device) "vulkan: validation error during <stage>: <first message>" if any.
    void throw_if_validation_errors(std::string_view stage);

    // Called by the messenger callback.
    void record_validation_error(const char* message);

private:
    VkInstance instance_ = VK_NULL_HANDLE;
    VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
    std::vector<VkPhysicalDevice> physical_;
    std::vector<DeviceInfo> devices_;
    std::mutex mutex_;
    std::vector<std::string> validation_errors_;
};

// ---- device choice (--device auto|cpu|vulkan|vulkan:i) ---------------------------------------

enum class Backend { Cpu, Vulkan };

struct DeviceChoice {
    Backend backend = Backend::Cpu;
    uint32_t vulkan_index = 0;  // meaningful when backend == Vulkan
    std::string reason;         // one line for -v: why this device
};

// The choice among `devices` for a --device spec:
//   cpu       the CPU backend;
//   vulkan    the best Vulkan device: discrete > integrated > virtual > cpu (lavapipe) > other;
//   vulkan:i  device i (Error(Device) "vulkan: no device 3 (2 found)");
//   auto      a discrete or integrated (or virtual) GPU if there is one, else the CPU backend:
//             a software Vulkan device such as lavapipe is slower than the CPU backend, so it is
//             used only when asked for by name (issue 5).
// Throws Error(Usage) for an unknown spec and Error(Device) when Vulkan is asked for and there
// is no device.
DeviceChoice select_device(const std::string& spec, const std::vector<DeviceInfo>& devices);

// The same, enumerating devices with a temporary instance ("cpu" creates none; for "auto" a
// missing Vulkan loader/driver means the CPU backend).
DeviceChoice select_device(const std::string& spec);

// ---- the logical device ----------------------------------------------------------------------

// GPU time by shader, from a timestamp written after every dispatch (Context::set_profiling).
// A dispatch's time runs from the previous timestamp to its own, so it includes the barrier
// wait before it; on GPUs that overlap independent dispatches the split is approximate, the
// sum (gpu_ms) is not.
struct ShaderTime {
    double ms = 0;
    uint64_t dispatches = 0;
};
struct DeviceProfile {
    std::map<std::string, ShaderTime> shaders;  // by shader name ("matvec_q8_0", "attention", ...)
    double gpu_ms = 0;         // first to last timestamp of every profiled submission, summed
    uint64_t submissions = 0;
    uint64_t untimed = 0;      // dispatches past a full query pool: run, counted, not timed
    double record_ms = 0;      // host time spent recording those submissions (begin() to end)
    // The part of record_ms spent while another stream ran on the device (a decode step
    // recorded ahead), which the device did not wait for.
    double record_ahead_ms = 0;
    void add(const DeviceProfile& o);
};

struct ContextOptions {
    Validation validation = Validation::Off;
    bool allow_subgroup_ops = true;      // false: shared-memory reductions only (tests use both)
    uint64_t staging_bytes = 16u << 20;  // upload/download chunk (one host-visible buffer)
    uint64_t block_bytes = 256u << 20;   // size of each VkDeviceMemory the sub-allocator carves
    uint32_t submit_timeout_ms = 120000; // a submission that takes longer is an error, not a hang
    // Copy straight into device memory when it is host-visible (integrated GPUs, lavapipe);
    // false forces the staged path (tests use it to exercise staging on such devices).
    bool map_device_memory = true;
    // Decode fuses each RMSNorm into the matvecs that read it (MatmulEpilogue::norm): one
    // dispatch and barrier fewer per norm, at the price of every matvec workgroup redoing the
    // norm's arithmetic on x. Worth it where the matvec waits on memory (a GPU), not where it
    // is arithmetic-bound (a CPU device: on lavapipe fused decode ran at 1.4 against 2.1
    // tokens/s). Unset: fused on every device type but Cpu.
    std::optional<bool> fuse_norms;
    // Decode records its next step while the device runs the current one (LlamaVulkanRun), so
    // the device does not wait for the host's recording between tokens.
    bool record_ahead = true;
    // Profiles name each dispatch by shader and shape ("matvec_f16_sg 240x1x1 [1 960 960]": its
    // workgroups and first three push-constant words) instead of by shader alone.
    bool profile_detail = false;
    // The tiled matmul's tile (vk::matmul_large_tile): unset, by the shape; true, always
    // 128×128; false, always 64×64.
    std::optional<bool> matmul_large_tiles;
    // The register-blocked attention kernel (vk::attention_path): unset, where it applies to
    // non-causal attention, and to causal attention (prefill) on a CPU device; true, to
    // causal attention on any device as well; false, never.
    std::optional<bool> attention_blocked;
    // The vision tower's tiles through each step all at once (glimpse::tiles_at_once): unset,
    // on every device type but Cpu; true or false forces it.
    std::optional<bool> vit_tiles_at_once;
    // The decoder's Q, K and V projections as one matmul of the stacked wq, wk, wv rows, split
    // into q and the KV cache (and Q and K rotated) by one rope_qkv dispatch: two dispatches a
    // layer where three products and a rope take four (LlamaVulkanWeights). Decided when the
    // weights are uploaded. Unset: on (a layer whose three matrices differ in type, or are
    // too large for one buffer together, keeps them apart either way).
    std::optional<bool> fuse_qkv;
    // Where Q, K and V are stacked, a decode step's rotation inside its attention dispatch
    // (vk::attention_qkv) rather than a rope_qkv dispatch before it: one dispatch a layer fewer.
    // Unset: on.
    std::optional<bool> fuse_rope;
    // Greedy decoding (temperature 0, no repetition penalty, nothing that reads the logits) picks
    // each token on the device (vk::greedy_pick), and the next step, which reads the pick there,
    // is submitted before the host has seen it (LlamaVulkanRun::decode_greedy; for a batch's
    // captions stepped together, decode_greedy_batch): the device never waits for the host
    // between tokens, and no logits come back. Unset: on.
    std::optional<bool> greedy_pick;
    // Several sequences decoded together (caption's batches: LlamaBatch::decode) step in one
    // command stream, each weight read once for all of them (LlamaVulkanRun::decode_batch),
    // rather than one after another. Unset: on.
    std::optional<bool> batch_decode;
    // Several sequences' prompts (caption's batches: LlamaBatch::prefill) run in one command
    // stream, each weight product over all their rows (LlamaVulkanRun::prefill_batch), rather
    // than one after another. Unset: on.
    std::optional<bool> batch_prefill;
    // The tensor-core matmul (matmul_coop.comp: f16 products summed in f32) for many-row
    // products, where the device can run it (Context::coop_matmul_supported).
    // Unset: off, until a GPU has run its tests (docs/VULKAN.md); true turns it on there.
    std::optional<bool> coop_matmul;
    // Tests: where the tensor-core matmul would run, the same kernel with its matrix operations
    // written out (MatmulPath::CoopEmu*) runs on any device, so that a whole forward pass with
    // f16-rounded products can be checked on lavapipe.
    bool coop_matmul_emulated = false;
    // Where the tensor-core matmul runs (coop_matmul, or coop_matmul_emulated), the ViT's
    // attention on tensor cores too (attention_coop.comp, vk::AttentionPath::Coop). Unset: on;
    // false keeps the blocked kernel, to measure the two apart.
    std::optional<bool> coop_attention;
};

class Context {
public:
    // Opens device `index` of a new instance (validation per options).
    Context(uint32_t index, ContextOptions options = {});
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    Instance& instance() { return *instance_; }
    const DeviceInfo& info() const { return info_; }
    const ContextOptions& options() const { return options_; }
    VkPhysicalDevice physical_device() const { return physical_; }
    VkDevice device() const { return device_; }
    VkQueue queue() const { return queue_; }
    uint32_t queue_family() const { return queue_family_; }
    VkCommandPool command_pool() const { return command_pool_; }
    Allocator& allocator() { return *allocator_; }
    PipelineCache& pipelines() { return *pipelines_; }
    // Per-shader GPU timing of every Recorder submission from now on (timestamp queries);
    // returns false, and times nothing, when the compute queue has no timestamps.
    bool set_profiling(bool on);
    bool profiling() const { return profiling_; }
    uint32_t timestamp_bits() const { return timestamp_bits_; }         // 0: no timestamps
    double timestamp_period_ns() const { return timestamp_period_ns_; }  // ns per tick
    void add_profile(const DeviceProfile& p);
    DeviceProfile take_profile();  // what was added since the last take, then cleared
    // Subgroup reductions are used when the device has them and the options allow them.
    bool use_subgroups() const { return use_subgroups_; }
    // Whether decode fuses its norms into the matvecs (ContextOptions::fuse_norms).
    bool fuse_norms() const { return options_.fuse_norms.value_or(info_.type != DeviceType::Cpu); }
    // Whether the decoder stacks its Q, K and V projections (ContextOptions::fuse_qkv).
    bool fuse_qkv() const { return options_.fuse_qkv.value_or(true); }
    // Whether decode rotates Q and K inside its attention dispatch (ContextOptions::fuse_rope).
    bool fuse_rope() const { return options_.fuse_rope.value_or(true); }
    // Whether greedy decoding picks its tokens on the device (ContextOptions::greedy_pick).
    bool greedy_pick() const { return options_.greedy_pick.value_or(true); }
    // Whether sequences decoded together step in one pass (ContextOptions::batch_decode).
    bool batch_decode() const { return options_.batch_decode.value_or(true); }
    // Whether sequences' prompts run together in one pass (ContextOptions::batch_prefill).
    bool batch_prefill() const { return options_.batch_prefill.value_or(true); }
    // Whether the device can run the tensor-core matmul (DeviceInfo::coop_matmul; opened with
    // what it needs).
    bool coop_matmul_supported() const { return info_.coop_matmul; }
    // Whether many-row matmuls take it (ContextOptions::coop_matmul, where supported).
    bool coop_matmul() const { return info_.coop_matmul && options_.coop_matmul.value_or(false); }
    // Whether non-causal many-row attention takes the tensor-core kernel (ContextOptions::
    // coop_attention, where coop_matmul()).
    bool coop_attention() const { return coop_matmul() && options_.coop_attention.value_or(true); }
    // "vulkan device 0 (llvmpipe (LLVM 15.0.6, 256 bits))": how errors name this device.
    const std::string& label() const { return label_; }

    // Records `fill` into a one-time command buffer, submits it and waits (uploads, copies).
    void run_once(const std::function<void(VkCommandBuffer)>& fill, std::string_view stage);
    // Waits for `fence` with the submit timeout; throws on timeout or device loss.
    void wait_fence(VkFence fence, std::string_view stage);

    // The host-visible buffer that uploads and downloads go through (created on first use).
    Buffer& staging();

    // Command streams submitted and not yet waited for (Recorder::submit, Recorder::wait).
    int streams_in_flight() const { return streams_in_flight_; }
    void stream_submitted() { ++streams_in_flight_; }
    void stream_finished() { --streams_in_flight_; }

    // A number no other Buffer of this Context has had or will have (Buffer::id).
    uint64_t next_buffer_id() { return ++buffer_ids_; }

private:
    std::unique_ptr<Instance> instance_;
    ContextOptions options_;
    DeviceInfo info_;
    std::string label_;
    VkPhysicalDevice physical_ = VK_NULL_HANDLE;
    VkDevice device_ = VK_NULL_HANDLE;
    VkQueue queue_ = VK_NULL_HANDLE;
    uint32_t queue_family_ = 0;
    VkCommandPool command_pool_ = VK_NULL_HANDLE;
    VkCommandBuffer once_cmd_ = VK_NULL_HANDLE;
    VkFence once_fence_ = VK_NULL_HANDLE;
    bool use_subgroups_ = false;
    bool profiling_ = false;
    uint32_t timestamp_bits_ = 0;
    double timestamp_period_ns_ = 0;
    std::atomic<uint64_t> buffer_ids_{0};
    std::atomic<int> streams_in_flight_{0};
    std::mutex profile_mutex_;  // Recorders of several threads may share the Context
    DeviceProfile profile_;
    std::unique_ptr<Allocator> allocator_;
    std::unique_ptr<PipelineCache> pipelines_;
    std::unique_ptr<Buffer> staging_;
};

// A zeroed Vulkan create-info/properties struct with its sType set.
template <class T>
T init(VkStructureType type) {
    T t{};
    t.sType = type;
    return t;
}

// Throws Error(Device) "vulkan: <what> failed on <where>: VK_ERROR_..." unless r is VK_SUCCESS.
void check(VkResult r, std::string_view what, std::string_view where);
std::string_view result_name(VkResult r);

}  // namespace glimpse::vk
