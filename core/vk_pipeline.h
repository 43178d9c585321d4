// Compute pipelines and the command stream that runs them.
//
// Every shader uses the same interface, so there is one descriptor-set layout and one pipeline
// layout for all of them: set 0 holds kMaxBindings storage buffers (a shader declares bindings
// 0..n-1, n from the generated table), and one push-constant range of kMaxPushBytes. A pipeline
// is (ShaderId, specialization constants): constant_id i = spec[i]; shaders use constant 0 for
// the workgroup size where they take one, and the rest for tile sizes or an op selector.
//
// A Recorder records dispatches into one command buffer and submits them once:
//   rec.begin();
//   rec.dispatch(ShaderId::rms_norm, {in(x), in(w), out(y)}, push, {rows});
//   rec.dispatch(ShaderId::matvec_q8_0, {in(W), in(y), out(z)}, push2, {N});  // barrier added
//   rec.submit_and_wait();
// Each argument says whether the dispatch writes it; before a dispatch that touches a buffer
// written (or, for a write, read) since the last barrier, the Recorder inserts a pipeline
// barrier with buffer memory barriers for exactly those buffers (read-after-write,
// write-after-write, write-after-read). barrier() inserts a full one by hand. The descriptor
// set of a dispatch is written the first time its list of buffers is seen and kept for later
// streams, so a decode step, which binds the same lists every token, writes none.
//
// submit_and_wait() is submit() then wait(): between the two the host may record another
// stream into another Recorder while the device runs this one (decode records its next step
// so). end() closes a stream recorded ahead of its submission.
//
// While the Context is profiling, each command stream also writes a timestamp at its start and
// after every dispatch; wait() reads them back and adds the time of each dispatch, by shader
// (and shape, ContextOptions::profile_detail), to the Context's DeviceProfile, with the host
// time spent recording the stream.
#pragma once

#include <vulkan/vulkan.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "glimpse_shaders/shader_ids.h"

namespace glimpse::vk {

class Context;
class Buffer;

constexpr uint32_t kMaxBindings = 8;
constexpr uint32_t kMaxPushBytes = 128;  // the minimum every Vulkan device guarantees
constexpr uint32_t kMaxSpecConstants = 8;

class PipelineCache {
public:
    explicit PipelineCache(Context& ctx);
    ~PipelineCache();
    PipelineCache(const PipelineCache&) = delete;
    PipelineCache& operator=(const PipelineCache&) = delete;

    // The pipeline for this shader and specialization constants, created on first use.
    // Throws Error(Device) naming the shader if the driver rejects it. Safe to call from
    // several threads.
    VkPipeline get(ShaderId id, std::span<const uint32_t> spec);
    VkPipelineLayout layout() const { return layout_; }
    VkDescriptorSetLayout set_layout() const { return set_layout_; }
    size_t size() const { return pipelines_.size(); }

private:
    VkShaderModule module(ShaderId id);

    Context& ctx_;
    VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
    VkPipelineLayout layout_ = VK_NULL_HANDLE;
    struct Key {
        ShaderId id;
        uint32_t n_spec;
        std::array<uint32_t, kMaxSpecConstants> spec;
        bool operator==(const Key&) const = default;
    };
    struct KeyHash {
        size_t operator()(const Key& k) const;
    };
    std::mutex mutex_;
    std::map<ShaderId, VkShaderModule> modules_;
    std::unordered_map<Key, VkPipeline, KeyHash> pipelines_;  // looked up once a dispatch
};

// One buffer argument of a dispatch: binding i of the shader is the i-th argument.
struct Arg {
    const Buffer* buffer;
    bool written;
    // Bytes [lo, hi) for a write confined to them (out_range); hi == 0: the whole buffer.
    uint64_t lo = 0, hi = 0;
};
inline Arg in(const Buffer& b) { return {&b, false}; }
inline Arg out(Buffer& b) { return {&b, true}; }  // written (and possibly read)
// Written only in bytes [offset, offset + bytes), and not read: dispatches writing ranges of
// one buffer that do not overlap need no barrier between them (a batched decode step's
// sequences, each writing its own rows of the attention output).
inline Arg out_range(Buffer& b, uint64_t offset, uint64_t bytes) { return {&b, true, offset, offset + bytes}; }

struct Groups {
    uint32_t x = 1, y = 1, z = 1;
};

// ceil(n / per_group) as a group count; throws Error(Device) when the count exceeds what
// the device can dispatch in that dimension (`axis` 0..2).
uint32_t group_count(const Context& ctx, int64_t n, int64_t per_group, int axis = 0);

class Recorder {
public:
    explicit Recorder(Context& ctx);
    ~Recorder();
    Recorder(const Recorder&) = delete;
    Recorder& operator=(const Recorder&) = delete;

    Context& context() { return ctx_; }

    // Starts a new command stream (waiting first for this Recorder's stream in flight, if any);
    // a stream recorded and never submitted is dropped.
    void begin();
    // Records one dispatch. `push` is the shader's push-constant struct (mirrored in C++).
    template <class Push>
    void dispatch(ShaderId id, std::initializer_list<Arg> args, const Push& push, Groups groups,
                  std::initializer_list<uint32_t> spec = {}) {
        static_assert(sizeof(Push) <= kMaxPushBytes, "push constants are limited to 128 bytes");
        static_assert(std::is_trivially_copyable_v<Push>);
        dispatch_raw(id, args, &push, sizeof(Push), groups, spec);
    }
    // A full compute->compute memory barrier.
    void barrier();
    // Ends the recording (submit() does it where it was not done).
    void end();
    // Ends if needed and submits with a fence; returns at once.
    void submit();
    // Waits for the submitted stream (bounded by ContextOptions::submit_timeout_ms), then
    // checks validation messages and collects the timestamps.
    void wait();
    // submit() then wait(). The Recorder can begin() again afterwards.
    void submit_and_wait() {
        submit();
        wait();
    }

    uint32_t dispatch_count() const { return dispatches_; }
    uint32_t barrier_count() const { return barriers_; }  // inside the stream (not begin()'s own)
    size_t cached_sets() const { return sets_.size(); }
    static constexpr size_t kMaxCachedSets = 4096;

private:
    void dispatch_raw(ShaderId id, std::initializer_list<Arg> args, const void* push, size_t push_size,
                      Groups groups, std::initializer_list<uint32_t> spec);
    VkDescriptorSet descriptor_set(std::initializer_list<Arg> args);
    VkDescriptorSet allocate_set();
    void sync_for(std::initializer_list<Arg> args);
    void collect_timestamps();

    // Profiling (Context::set_profiling): timestamp 0 at begin(), i + 1 after dispatch i.
    VkQueryPool queries_ = VK_NULL_HANDLE;
    uint32_t query_capacity_ = 0, query_wanted_ = 1024;
    bool timing_ = false;           // this command stream is timed
    struct TimedDispatch {
        const char* name;    // the shader's (static)
        std::string detail;  // with profile_detail: the name with the shape, else empty
    };
    std::vector<TimedDispatch> timed_;  // each timed dispatch, in order
    uint64_t untimed_ = 0;
    std::chrono::steady_clock::time_point begun_;  // when begin() started this stream
    double record_ms_ = 0;       // begin() to end()
    bool recorded_ahead_ = false;  // another stream was in flight when this one ended

    Context& ctx_;
    VkCommandBuffer cmd_ = VK_NULL_HANDLE;
    VkFence fence_ = VK_NULL_HANDLE;
    // Descriptor sets are written once for each list of buffers (by Buffer::id, in binding
    // order) and kept: a decode step binds the same ~400 lists every token. Past
    // kMaxCachedSets, begin() resets the pools and starts the cache again.
    struct SetKey {
        std::array<uint64_t, kMaxBindings> ids;
        bool operator==(const SetKey&) const = default;
    };
    struct SetKeyHash {
        size_t operator()(const SetKey& k) const;
    };
    std::unordered_map<SetKey, VkDescriptorSet, SetKeyHash> sets_;
    std::vector<VkDescriptorPool> pools_;  // grown on demand
    size_t pool_in_use_ = 0;
    bool recording_ = false, ended_ = false, in_flight_ = false;
    uint32_t dispatches_ = 0, barriers_ = 0;
    std::vector<VkBuffer> written_, read_;  // since the last barrier (a few each)
    struct Range {
        VkBuffer buffer;
        uint64_t lo, hi;
    };
    std::vector<Range> ranges_;  // out_range writes since the last barrier
    void clear_tracking();
    std::vector<VkBufferMemoryBarrier> barrier_list_;
};

}  // namespace glimpse::vk
