// Vulkan memory: a sub-allocator that carves buffers out of a few large VkDeviceMemory blocks
// (one list of blocks per memory type, so a forward pass never calls vkAllocateMemory), the
// Buffer that owns one VkBuffer bound at an offset inside a block, and chunked upload/download
// through the Context's host-visible staging buffer.
//
// Limits respected: no single buffer larger than maxStorageBufferRange (what one descriptor
// can address) for device buffers, no block larger than maxMemoryAllocationSize; offsets
// aligned to the buffer's memory requirements and minStorageBufferOffsetAlignment.
#pragma once

#include <vulkan/vulkan.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

namespace glimpse::vk {

class Context;

enum class MemoryKind {
    Device,   // device-local: weights, activations, KV cache
    Staging,  // host-visible and coherent: uploads and downloads go through it
};

class Allocator {
public:
    struct Block;  // one VkDeviceMemory and its free list
    struct Allocation {
        Block* block = nullptr;
        VkDeviceMemory memory = VK_NULL_HANDLE;
        uint64_t offset = 0, size = 0;
        void* mapped = nullptr;  // host pointer to offset, for host-visible memory
    };

    explicit Allocator(Context& ctx);
    ~Allocator();
    Allocator(const Allocator&) = delete;
    Allocator& operator=(const Allocator&) = delete;

    // Memory for `req` of the given kind; throws Error(Device) naming the size when the device
    // has no such memory or it is exhausted.
    Allocation allocate(const VkMemoryRequirements& req, MemoryKind kind);
    void release(const Allocation& a);

    // Bookkeeping for tests and `bench`: bytes in blocks, bytes handed out, number of blocks.
    uint64_t reserved_bytes() const;
    uint64_t used_bytes() const { return used_; }
    size_t block_count() const;

private:
    uint32_t memory_type(uint32_t type_bits, MemoryKind kind) const;
    Block* new_block(uint32_t type, uint64_t min_size);

    Context& ctx_;
    VkPhysicalDeviceMemoryProperties props_{};
    std::map<uint32_t, std::vector<std::unique_ptr<Block>>> blocks_;  // by memory type index
    uint64_t used_ = 0;
};

// One storage buffer (usable as a copy source and destination too). Move-only; destroyed
// before its Context.
class Buffer {
public:
    Buffer() = default;
    Buffer(Context& ctx, uint64_t bytes, MemoryKind kind = MemoryKind::Device);
    ~Buffer();
    Buffer(Buffer&& o) noexcept;
    Buffer& operator=(Buffer&& o) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    VkBuffer handle() const { return buffer_; }
    // Unique among the Context's buffers, never reused after destruction (a VkBuffer handle
    // may be): what Recorder's descriptor-set cache keys on.
    uint64_t id() const { return id_; }
    uint64_t size() const { return size_; }  // bytes asked for
    MemoryKind kind() const { return kind_; }
    void* mapped() const { return alloc_.mapped; }  // null unless host-visible
    explicit operator bool() const { return buffer_ != VK_NULL_HANDLE; }

private:
    void reset();
    Context* ctx_ = nullptr;
    VkBuffer buffer_ = VK_NULL_HANDLE;
    uint64_t id_ = 0;
    uint64_t size_ = 0;
    MemoryKind kind_ = MemoryKind::Device;
    Allocator::Allocation alloc_;
};

// Copies host bytes into `dst` at `dst_offset` (through the staging buffer, one chunk of
// ContextOptions::staging_bytes per submission, or directly into mapped staging buffers).
void upload(Context& ctx, Buffer& dst, const void* src, uint64_t bytes, uint64_t dst_offset = 0);
// Copies `bytes` of `src` from `src_offset` into host memory.
void download(Context& ctx, const Buffer& src, void* dst, uint64_t bytes, uint64_t src_offset = 0);

// A device buffer holding these floats.
Buffer upload_floats(Context& ctx, const std::vector<float>& v);
std::vector<float> download_floats(Context& ctx, const Buffer& b, uint64_t count);

// The copy rate of `run(a, b, bytes)`, which makes `copies` copies of `bytes` (capped at what
// one buffer may hold, a multiple of 256) between two device buffers a and b, back and forth,
// and waits for them: GB/s of bytes read plus bytes written, best of `runs` after a warm-up run.
double measure_copies_gbs(Context& ctx, uint64_t bytes, int copies, int runs,
                          const std::function<void(Buffer& a, Buffer& b, uint64_t bytes)>& run);

// The device's memory bandwidth as its own copies see it: measure_copies_gbs with
// buffer-to-buffer copies in one submission. What a decode step's weight reads are held against
// (bench --device vulkan), with vk::measure_shader_copy_gbs (core/vk_ops.h).
double measure_copy_bandwidth_gbs(Context& ctx, uint64_t bytes, int copies = 8, int runs = 3);

}  // namespace glimpse::vk
