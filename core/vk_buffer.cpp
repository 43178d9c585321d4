// The sub-allocator, buffers and staged copies (core/vk_buffer.h).
#include "core/vk_buffer.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "core/error.h"
#include "core/vk_context.h"

namespace glimpse::vk {

namespace {

Error device_error(const std::string& message) { return Error(ErrorKind::Device, "vulkan: " + message); }

std::string mib(uint64_t bytes) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1024.0 * 1024.0));
    return buf;
}

uint64_t align_up(uint64_t v, uint64_t a) { return a <= 1 ? v : (v + a - 1) / a * a; }

}  // namespace

// A block's free list maps offset -> size of each free range; ranges never touch (they are
// merged on release), so first-fit over it is enough for the few large, long-lived buffers a
// model makes.
struct Allocator::Block {
    VkDeviceMemory memory = VK_NULL_HANDLE;
    uint64_t size = 0;
    uint32_t type = 0;
    void* mapped = nullptr;
    std::map<uint64_t, uint64_t> free;
};

Allocator::Allocator(Context& ctx) : ctx_(ctx) {
    vkGetPhysicalDeviceMemoryProperties(ctx.physical_device(), &props_);
}

Allocator::~Allocator() {
    for (auto& [type, list] : blocks_)
        for (auto& b : list) {
            if (b->mapped) vkUnmapMemory(ctx_.device(), b->memory);
            vkFreeMemory(ctx_.device(), b->memory, nullptr);
        }
}

uint32_t Allocator::memory_type(uint32_t type_bits, MemoryKind kind) const {
    // Preferred flags first, then the minimum that works.
    const VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    const std::vector<VkMemoryPropertyFlags> wanted =
        kind == MemoryKind::Device
            ? std::vector<VkMemoryPropertyFlags>{VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0}
            : std::vector<VkMemoryPropertyFlags>{host | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, host};
    for (VkMemoryPropertyFlags w : wanted)
        for (uint32_t i = 0; i < props_.memoryTypeCount; ++i)
            if ((type_bits & (1u << i)) && (props_.memoryTypes[i].propertyFlags & w) == w) return i;
    throw device_error(std::string("no ") + (kind == MemoryKind::Device ? "device" : "host-visible") +
                       " memory type for a buffer on " + ctx_.label());
}

Allocator::Block* Allocator::new_block(uint32_t type, uint64_t min_size) {
    const uint64_t cap = ctx_.info().max_allocation_size ? ctx_.info().max_allocation_size : min_size;
    if (min_size > cap)
        throw device_error("a buffer of " + mib(min_size) + " exceeds maxMemoryAllocationSize (" + mib(cap) +
                           ") on " + ctx_.label());
    const uint64_t size = std::min(cap, std::max(min_size, ctx_.options().block_bytes));
    auto b = std::make_unique<Block>();
    VkMemoryAllocateInfo ai = init<VkMemoryAllocateInfo>(VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO);
    ai.allocationSize = size;
    ai.memoryTypeIndex = type;
    const VkResult r = vkAllocateMemory(ctx_.device(), &ai, nullptr, &b->memory);
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        throw device_error("out of memory allocating " + mib(size) + " (for a buffer of " + mib(min_size) +
                           ") on " + ctx_.label() + "; " + mib(reserved_bytes()) + " already reserved");
    check(r, "vkAllocateMemory", ctx_.label());
    b->size = size;
    b->type = type;
    b->free[0] = size;
    if (props_.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) {
        const VkResult mr = vkMapMemory(ctx_.device(), b->memory, 0, VK_WHOLE_SIZE, 0, &b->mapped);
        if (mr != VK_SUCCESS) {
            vkFreeMemory(ctx_.device(), b->memory, nullptr);
            check(mr, "vkMapMemory", ctx_.label());
        }
    }
    auto& list = blocks_[type];
    list.push_back(std::move(b));
    return list.back().get();
}

Allocator::Allocation Allocator::allocate(const VkMemoryRequirements& req, MemoryKind kind) {
    const uint32_t type = memory_type(req.memoryTypeBits, kind);
    const uint64_t align = std::max<uint64_t>({req.alignment, ctx_.info().min_storage_offset_alignment, 16});
    const auto try_block = [&](Block* b, Allocation& out) {
        for (auto it = b->free.begin(); it != b->free.end(); ++it) {
            const uint64_t start = align_up(it->first, align);
            const uint64_t end = it->first + it->second;
            if (start > end || end - start < req.size) continue;
            const uint64_t free_off = it->first;
            b->free.erase(it);
            if (start > free_off) b->free[free_off] = start - free_off;
            if (end > start + req.size) b->free[start + req.size] = end - (start + req.size);
            const bool map = b->mapped && (kind == MemoryKind::Staging || ctx_.options().map_device_memory);
            out = {b, b->memory, start, req.size, map ? static_cast<uint8_t*>(b->mapped) + start : nullptr};
            return true;
        }
        return false;
    };
    Allocation a;
    for (auto& b : blocks_[type])
        if (try_block(b.get(), a)) break;
    if (!a.block && !try_block(new_block(type, align_up(req.size, align)), a))
        throw device_error("internal: a new memory block cannot hold " + mib(req.size));
    used_ += a.size;
    return a;
}

void Allocator::release(const Allocation& a) {
    if (!a.block) return;
    auto& fl = a.block->free;
    uint64_t off = a.offset, size = a.size;
    auto next = fl.lower_bound(off);
    if (next != fl.end() && next->first == off + size) {  // merge with the range after
        size += next->second;
        next = fl.erase(next);
    }
    if (next != fl.begin()) {  // merge with the range before
        auto prev = std::prev(next);
        if (prev->first + prev->second == off) {
            off = prev->first;
            size += prev->second;
            fl.erase(prev);
        }
    }
    fl[off] = size;
    used_ -= a.size;
}

uint64_t Allocator::reserved_bytes() const {
    uint64_t n = 0;
    for (const auto& [type, list] : blocks_)
        for (const auto& b : list) n += b->size;
    return n;
}

size_t Allocator::block_count() const {
    size_t n = 0;
    for (const auto& [type, list] : blocks_) n += list.size();
    return n;
}

// ---- Buffer ----------------------------------------------------------------------------------

Buffer::Buffer(Context& ctx, uint64_t bytes, MemoryKind kind)
    : ctx_(&ctx), id_(ctx.next_buffer_id()), size_(bytes), kind_(kind) {
    if (kind == MemoryKind::Device && bytes > ctx.info().max_storage_buffer_range)
        throw device_error("a buffer of " + mib(bytes) + " exceeds maxStorageBufferRange (" +
                           mib(ctx.info().max_storage_buffer_range) + ") on " + ctx.label());
    VkBufferCreateInfo bi = init<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
    bi.size = align_up(std::max<uint64_t>(bytes, 4), 4);  // Vulkan forbids empty buffers
    bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    check(vkCreateBuffer(ctx.device(), &bi, nullptr, &buffer_), "vkCreateBuffer (" + mib(bytes) + ")", ctx.label());
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(ctx.device(), buffer_, &req);
    try {
        alloc_ = ctx.allocator().allocate(req, kind);
        check(vkBindBufferMemory(ctx.device(), buffer_, alloc_.memory, alloc_.offset), "vkBindBufferMemory", ctx.label());
    } catch (...) {
        reset();
        throw;
    }
}

Buffer::~Buffer() { reset(); }

void Buffer::reset() {
    if (buffer_ != VK_NULL_HANDLE) vkDestroyBuffer(ctx_->device(), buffer_, nullptr);
    if (alloc_.block) ctx_->allocator().release(alloc_);
    buffer_ = VK_NULL_HANDLE;
    alloc_ = {};
    id_ = 0;
    size_ = 0;
}

Buffer::Buffer(Buffer&& o) noexcept { *this = std::move(o); }

Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        reset();
        ctx_ = o.ctx_;
        buffer_ = std::exchange(o.buffer_, VK_NULL_HANDLE);
        id_ = std::exchange(o.id_, 0);
        size_ = std::exchange(o.size_, 0);
        kind_ = o.kind_;
        alloc_ = std::exchange(o.alloc_, {});
    }
    return *this;
}

// ---- copies ----------------------------------------------------------------------------------

namespace {

void check_range(const Context& ctx, const Buffer& b, uint64_t offset, uint64_t bytes, const char* what) {
    if (offset > b.size() || bytes > b.size() - offset)
        throw device_error(std::string(what) + " of " + std::to_string(bytes) + " bytes at offset " +
                           std::to_string(offset) + " does not fit a buffer of " + std::to_string(b.size()) +
                           " bytes on " + ctx.label());
}

}  // namespace

void upload(Context& ctx, Buffer& dst, const void* src, uint64_t bytes, uint64_t dst_offset) {
    check_range(ctx, dst, dst_offset, bytes, "upload");
    if (dst.mapped()) {
        std::memcpy(static_cast<uint8_t*>(dst.mapped()) + dst_offset, src, bytes);
        return;
    }
    Buffer& staging = ctx.staging();
    const uint64_t chunk = staging.size();
    for (uint64_t done = 0; done < bytes; done += chunk) {
        const uint64_t n = std::min(chunk, bytes - done);
        std::memcpy(staging.mapped(), static_cast<const uint8_t*>(src) + done, n);
        ctx.run_once(
            [&](VkCommandBuffer cmd) {
                VkBufferCopy region{0, dst_offset + done, n};
                vkCmdCopyBuffer(cmd, staging.handle(), dst.handle(), 1, &region);
            },
            "upload");
    }
}

void download(Context& ctx, const Buffer& src, void* dst, uint64_t bytes, uint64_t src_offset) {
    check_range(ctx, src, src_offset, bytes, "download");
    if (src.mapped()) {
        std::memcpy(dst, static_cast<const uint8_t*>(src.mapped()) + src_offset, bytes);
        return;
    }
    Buffer& staging = ctx.staging();
    const uint64_t chunk = staging.size();
    for (uint64_t done = 0; done < bytes; done += chunk) {
        const uint64_t n = std::min(chunk, bytes - done);
        ctx.run_once(
            [&](VkCommandBuffer cmd) {
                VkBufferCopy region{src_offset + done, 0, n};
                vkCmdCopyBuffer(cmd, src.handle(), staging.handle(), 1, &region);
            },
            "download");
        std::memcpy(static_cast<uint8_t*>(dst) + done, staging.mapped(), n);
    }
}

Buffer upload_floats(Context& ctx, const std::vector<float>& v) {
    Buffer b(ctx, v.size() * sizeof(float));
    upload(ctx, b, v.data(), v.size() * sizeof(float));
    return b;
}

std::vector<float> download_floats(Context& ctx, const Buffer& b, uint64_t count) {
    std::vector<float> v(count);
    download(ctx, b, v.data(), count * sizeof(float));
    return v;
}

double measure_copies_gbs(Context& ctx, uint64_t bytes, int copies, int runs,
                          const std::function<void(Buffer& a, Buffer& b, uint64_t bytes)>& run) {
    bytes = std::min(bytes, ctx.info().max_storage_buffer_range) / 256 * 256;
    if (bytes == 0 || copies < 1 || runs < 1) throw std::invalid_argument("measure_copies_gbs: nothing to copy");
    Buffer a(ctx, bytes), b(ctx, bytes);
    double best_s = 0;
    for (int r = 0; r <= runs; ++r) {  // run 0 warms up (first touch of the pages, pipelines)
        const auto t0 = std::chrono::steady_clock::now();
        run(a, b, bytes);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r > 0 && (best_s == 0 || s < best_s)) best_s = s;
    }
    return 2.0 * double(bytes) * copies / best_s / 1e9;
}

double measure_copy_bandwidth_gbs(Context& ctx, uint64_t bytes, int copies, int runs) {
    return measure_copies_gbs(ctx, bytes, copies, runs, [&](Buffer& a, Buffer& b, uint64_t n) {
        ctx.run_once(
            [&](VkCommandBuffer cmd) {
                // a -> b, b -> a, ...: each copy waits for the one before (it reads what that wrote).
                VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER, nullptr, VK_ACCESS_TRANSFER_WRITE_BIT,
                                   VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
                for (int i = 0; i < copies; ++i) {
                    if (i > 0)
                        vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0,
                                             1, &mb, 0, nullptr, 0, nullptr);
                    const VkBufferCopy region{0, 0, n};
                    const bool forward = i % 2 == 0;
                    vkCmdCopyBuffer(cmd, forward ? a.handle() : b.handle(), forward ? b.handle() : a.handle(), 1,
                                    &region);
                }
            },
            "the bandwidth probe");
    });
}

}  // namespace glimpse::vk
