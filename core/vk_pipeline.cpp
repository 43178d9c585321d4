// Pipeline cache and command recording (core/vk_pipeline.h).
#include "core/vk_pipeline.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/vk_buffer.h"
#include "core/vk_context.h"

namespace glimpse::vk {

namespace {

Error device_error(const std::string& message) { return Error(ErrorKind::Device, "vulkan: " + message); }

constexpr uint32_t kSetsPerPool = 256;

}  // namespace

// ---- PipelineCache ---------------------------------------------------------------------------

PipelineCache::PipelineCache(Context& ctx) : ctx_(ctx) {
    VkDescriptorSetLayoutBinding bindings[kMaxBindings];
    for (uint32_t i = 0; i < kMaxBindings; ++i)
        bindings[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
    VkDescriptorSetLayoutCreateInfo li = init<VkDescriptorSetLayoutCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO);
    li.bindingCount = kMaxBindings;
    li.pBindings = bindings;
    check(vkCreateDescriptorSetLayout(ctx.device(), &li, nullptr, &set_layout_), "vkCreateDescriptorSetLayout",
          ctx.label());
    VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, kMaxPushBytes};
    VkPipelineLayoutCreateInfo pi = init<VkPipelineLayoutCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO);
    pi.setLayoutCount = 1;
    pi.pSetLayouts = &set_layout_;
    pi.pushConstantRangeCount = 1;
    pi.pPushConstantRanges = &range;
    const VkResult r = vkCreatePipelineLayout(ctx.device(), &pi, nullptr, &layout_);
    if (r != VK_SUCCESS) {
        vkDestroyDescriptorSetLayout(ctx.device(), set_layout_, nullptr);
        check(r, "vkCreatePipelineLayout", ctx.label());
    }
}

PipelineCache::~PipelineCache() {
    for (auto& [key, p] : pipelines_) vkDestroyPipeline(ctx_.device(), p, nullptr);
    for (auto& [id, m] : modules_) vkDestroyShaderModule(ctx_.device(), m, nullptr);
    vkDestroyPipelineLayout(ctx_.device(), layout_, nullptr);
    vkDestroyDescriptorSetLayout(ctx_.device(), set_layout_, nullptr);
}

VkShaderModule PipelineCache::module(ShaderId id) {
    auto it = modules_.find(id);
    if (it != modules_.end()) return it->second;
    const ShaderBinary& bin = shader_binary(id);
    // pCode is uint32_t*: copy the embedded bytes into words rather than cast the byte array.
    std::vector<uint32_t> words(bin.size / 4);
    std::memcpy(words.data(), bin.spirv, words.size() * 4);
    VkShaderModuleCreateInfo ci = init<VkShaderModuleCreateInfo>(VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO);
    ci.codeSize = words.size() * 4;
    ci.pCode = words.data();
    VkShaderModule m = VK_NULL_HANDLE;
    check(vkCreateShaderModule(ctx_.device(), &ci, nullptr, &m), std::string("shader ") + bin.name, ctx_.label());
    modules_[id] = m;
    return m;
}

namespace {

// Mixes a 64-bit word into a hash: a hash_combine-style step, then a multiply and xorshift.
size_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    return size_t(h ^ (h >> 31));
}

}  // namespace

size_t PipelineCache::KeyHash::operator()(const Key& k) const {
    uint64_t h = mix(uint64_t(k.id), k.n_spec);
    for (uint32_t i = 0; i < k.n_spec; ++i) h = mix(h, k.spec[i]);
    return size_t(h);
}

VkPipeline PipelineCache::get(ShaderId id, std::span<const uint32_t> spec) {
    if (spec.size() > kMaxSpecConstants)
        throw device_error(std::string("shader ") + shader_binary(id).name + ": too many specialization constants");
    Key key{id, uint32_t(spec.size()), {}};
    std::copy(spec.begin(), spec.end(), key.spec.begin());
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pipelines_.find(key);
    if (it != pipelines_.end()) return it->second;

    VkSpecializationMapEntry entries[kMaxSpecConstants];
    for (uint32_t i = 0; i < spec.size(); ++i) entries[i] = {i, i * 4, 4};
    VkSpecializationInfo si{uint32_t(spec.size()), entries, spec.size() * 4, spec.data()};
    VkComputePipelineCreateInfo ci = init<VkComputePipelineCreateInfo>(VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO);
    ci.stage = init<VkPipelineShaderStageCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO);
    ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    ci.stage.module = module(id);
    ci.stage.pName = "main";
    ci.stage.pSpecializationInfo = spec.empty() ? nullptr : &si;
    ci.layout = layout_;
    VkPipeline p = VK_NULL_HANDLE;
    check(vkCreateComputePipelines(ctx_.device(), VK_NULL_HANDLE, 1, &ci, nullptr, &p),
          std::string("compiling shader ") + shader_binary(id).name, ctx_.label());
    pipelines_.emplace(key, p);
    return p;
}

// ---- Recorder --------------------------------------------------------------------------------

uint32_t group_count(const Context& ctx, int64_t n, int64_t per_group, int axis) {
    const int64_t g = n <= 0 ? 0 : (n + per_group - 1) / per_group;
    if (g > int64_t(ctx.info().max_workgroup_count[axis]))
        throw device_error("a dispatch of " + std::to_string(g) + " workgroups exceeds maxComputeWorkGroupCount[" +
                           std::to_string(axis) + "] = " + std::to_string(ctx.info().max_workgroup_count[axis]) +
                           " on " + ctx.label());
    return uint32_t(g);
}

Recorder::Recorder(Context& ctx) : ctx_(ctx) {
    VkCommandBufferAllocateInfo ai = init<VkCommandBufferAllocateInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
    ai.commandPool = ctx.command_pool();
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    check(vkAllocateCommandBuffers(ctx.device(), &ai, &cmd_), "vkAllocateCommandBuffers", ctx.label());
    VkFenceCreateInfo fi = init<VkFenceCreateInfo>(VK_STRUCTURE_TYPE_FENCE_CREATE_INFO);
    const VkResult r = vkCreateFence(ctx.device(), &fi, nullptr, &fence_);
    if (r != VK_SUCCESS) {
        vkFreeCommandBuffers(ctx.device(), ctx.command_pool(), 1, &cmd_);
        check(r, "vkCreateFence", ctx.label());
    }
}

Recorder::~Recorder() {
    if (in_flight_) {  // an exception between submit() and wait(): the stream must finish first
        vkWaitForFences(ctx_.device(), 1, &fence_, VK_TRUE, uint64_t(ctx_.options().submit_timeout_ms) * 1000000ull);
        ctx_.stream_finished();
    }
    if (recording_) vkEndCommandBuffer(cmd_);
    if (queries_) vkDestroyQueryPool(ctx_.device(), queries_, nullptr);
    for (VkDescriptorPool p : pools_) vkDestroyDescriptorPool(ctx_.device(), p, nullptr);
    vkDestroyFence(ctx_.device(), fence_, nullptr);
    vkFreeCommandBuffers(ctx_.device(), ctx_.command_pool(), 1, &cmd_);
}

void Recorder::begin() {
    if (in_flight_) wait();
    begun_ = std::chrono::steady_clock::now();
    if (recording_) vkEndCommandBuffer(cmd_);
    recording_ = ended_ = false;
    if (sets_.size() > kMaxCachedSets) {  // the previous stream has finished: no set is in use
        for (VkDescriptorPool p : pools_)
            check(vkResetDescriptorPool(ctx_.device(), p, 0), "vkResetDescriptorPool", ctx_.label());
        pool_in_use_ = 0;
        sets_.clear();
    }
    check(vkResetCommandBuffer(cmd_, 0), "vkResetCommandBuffer", ctx_.label());
    VkCommandBufferBeginInfo bi = init<VkCommandBufferBeginInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    check(vkBeginCommandBuffer(cmd_, &bi), "vkBeginCommandBuffer", ctx_.label());
    // The stream reads what earlier submissions wrote (the KV cache rows of the step before,
    // uploaded weights). A fence the host waited on makes those writes available but not
    // visible to this stream's shaders; a barrier against everything earlier in submission
    // order does (not counted in barriers(), which counts the hazards inside the stream).
    VkMemoryBarrier mb = init<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
    vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
    recording_ = true;
    dispatches_ = barriers_ = 0;
    clear_tracking();
    timing_ = ctx_.profiling();
    timed_.clear();
    untimed_ = 0;
    if (!timing_) return;
    if (query_capacity_ < query_wanted_) {
        if (queries_) vkDestroyQueryPool(ctx_.device(), queries_, nullptr);
        queries_ = VK_NULL_HANDLE;
        query_capacity_ = 0;
        VkQueryPoolCreateInfo qi = init<VkQueryPoolCreateInfo>(VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO);
        qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
        qi.queryCount = query_wanted_;
        check(vkCreateQueryPool(ctx_.device(), &qi, nullptr, &queries_), "vkCreateQueryPool", ctx_.label());
        query_capacity_ = query_wanted_;
    }
    vkCmdResetQueryPool(cmd_, queries_, 0, query_capacity_);
    vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, queries_, 0);
}

VkDescriptorSet Recorder::allocate_set() {
    for (;; ++pool_in_use_) {
        if (pool_in_use_ == pools_.size()) {
            VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerPool * kMaxBindings};
            VkDescriptorPoolCreateInfo pi = init<VkDescriptorPoolCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO);
            pi.maxSets = kSetsPerPool;
            pi.poolSizeCount = 1;
            pi.pPoolSizes = &size;
            VkDescriptorPool pool = VK_NULL_HANDLE;
            check(vkCreateDescriptorPool(ctx_.device(), &pi, nullptr, &pool), "vkCreateDescriptorPool", ctx_.label());
            pools_.push_back(pool);
        }
        VkDescriptorSetLayout layout = ctx_.pipelines().set_layout();
        VkDescriptorSetAllocateInfo ai = init<VkDescriptorSetAllocateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO);
        ai.descriptorPool = pools_[pool_in_use_];
        ai.descriptorSetCount = 1;
        ai.pSetLayouts = &layout;
        VkDescriptorSet set = VK_NULL_HANDLE;
        const VkResult r = vkAllocateDescriptorSets(ctx_.device(), &ai, &set);
        if (r == VK_SUCCESS) return set;
        if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL)
            check(r, "vkAllocateDescriptorSets", ctx_.label());
    }
}

size_t Recorder::SetKeyHash::operator()(const SetKey& k) const {
    uint64_t h = 0;
    for (uint64_t id : k.ids) h = mix(h, id);
    return size_t(h);
}

// The descriptor set binding args[i] at binding i: written on first use, then reused.
VkDescriptorSet Recorder::descriptor_set(std::initializer_list<Arg> args) {
    SetKey key{};  // ids start at 1, so the zeros past the last argument cannot collide
    size_t n = 0;
    for (const Arg& a : args) key.ids[n++] = a.buffer->id();
    auto it = sets_.find(key);
    if (it != sets_.end()) return it->second;
    const VkDescriptorSet set = allocate_set();
    VkDescriptorBufferInfo infos[kMaxBindings];
    VkWriteDescriptorSet writes[kMaxBindings];
    uint32_t i = 0;
    for (const Arg& a : args) {
        infos[i] = {a.buffer->handle(), 0, VK_WHOLE_SIZE};
        writes[i] = init<VkWriteDescriptorSet>(VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET);
        writes[i].dstSet = set;
        writes[i].dstBinding = i;
        writes[i].descriptorCount = 1;
        writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        writes[i].pBufferInfo = &infos[i];
        ++i;
    }
    vkUpdateDescriptorSets(ctx_.device(), i, writes, 0, nullptr);
    sets_.emplace(key, set);
    return set;
}

void Recorder::barrier() {
    if (!recording_) throw device_error("Recorder::barrier outside begin()/submit_and_wait()");
    VkMemoryBarrier mb = init<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
    vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb,
                         0, nullptr, 0, nullptr);
    ++barriers_;
    clear_tracking();
}

void Recorder::clear_tracking() {
    written_.clear();
    read_.clear();
    ranges_.clear();
}

namespace {

bool contains(const std::vector<VkBuffer>& v, VkBuffer b) { return std::find(v.begin(), v.end(), b) != v.end(); }

void add_once(std::vector<VkBuffer>& v, VkBuffer b) {
    if (!contains(v, b)) v.push_back(b);
}

}  // namespace

// Inserts buffer memory barriers for the hazards this dispatch would have with the ones
// recorded since the last barrier.
void Recorder::sync_for(std::initializer_list<Arg> args) {
    bool hazard = false;
    for (const Arg& a : args) {
        const VkBuffer b = a.buffer->handle();
        hazard = hazard || contains(written_, b) || (a.written && contains(read_, b));
        // A range written before: only a write of a range that does not overlap it goes on.
        for (const Range& r : ranges_)
            hazard = hazard || (r.buffer == b && (a.hi == 0 || (a.lo < r.hi && r.lo < a.hi)));
    }
    if (!hazard) return;
    for (const Range& r : ranges_) add_once(written_, r.buffer);
    // The barrier orders all earlier dispatches before this one, so it must also make every
    // earlier write visible (not only the conflicting ones): the tracking lists are cleared.
    for (const Arg& a : args)
        if (a.written && contains(read_, a.buffer->handle())) add_once(written_, a.buffer->handle());
    barrier_list_.clear();
    for (const VkBuffer b : written_) {
        VkBufferMemoryBarrier bb = init<VkBufferMemoryBarrier>(VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER);
        bb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_SHADER_READ_BIT;
        bb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
        bb.srcQueueFamilyIndex = bb.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
        bb.buffer = b;
        bb.offset = 0;
        bb.size = VK_WHOLE_SIZE;
        barrier_list_.push_back(bb);
    }
    vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 0,
                         nullptr, uint32_t(barrier_list_.size()), barrier_list_.data(), 0, nullptr);
    ++barriers_;
    clear_tracking();
}

void Recorder::dispatch_raw(ShaderId id, std::initializer_list<Arg> args, const void* push, size_t push_size,
                            Groups groups, std::initializer_list<uint32_t> spec) {
    const ShaderBinary& bin = shader_binary(id);
    if (!recording_) throw device_error(std::string("dispatch of ") + bin.name + " outside begin()/submit_and_wait()");
    if (args.size() != bin.n_bindings || args.size() > kMaxBindings)
        throw device_error(std::string("shader ") + bin.name + " takes " + std::to_string(bin.n_bindings) +
                           " buffers, the dispatch gave " + std::to_string(args.size()));
    for (const Arg& a : args)
        if (!a.buffer || !*a.buffer) throw device_error(std::string("shader ") + bin.name + ": an empty buffer argument");
    if (groups.x == 0 || groups.y == 0 || groups.z == 0) return;  // nothing to do

    const VkPipeline pipeline = ctx_.pipelines().get(id, std::span<const uint32_t>(spec.begin(), spec.size()));
    const VkDescriptorSet set = descriptor_set(args);

    sync_for(args);
    vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
    vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, ctx_.pipelines().layout(), 0, 1, &set, 0, nullptr);
    if (push_size) vkCmdPushConstants(cmd_, ctx_.pipelines().layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, uint32_t(push_size), push);
    vkCmdDispatch(cmd_, groups.x, groups.y, groups.z);
    for (const Arg& a : args) {
        if (a.hi > 0) ranges_.push_back({a.buffer->handle(), a.lo, a.hi});
        else add_once(a.written ? written_ : read_, a.buffer->handle());
    }
    ++dispatches_;
    if (!timing_) return;
    if (timed_.size() + 1 < query_capacity_) {
        vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries_, uint32_t(timed_.size() + 1));
        // The shader's name is static; only profile_detail builds a string while recording.
        TimedDispatch t{bin.name, {}};
        if (ctx_.options().profile_detail) {
            t.detail = std::string(bin.name) + ' ' + std::to_string(groups.x) + 'x' + std::to_string(groups.y) + 'x' +
                       std::to_string(groups.z);
            uint32_t words[3] = {};
            std::memcpy(words, push, std::min(push_size, sizeof(words)));
            t.detail += " [" + std::to_string(words[0]) + ' ' + std::to_string(words[1]) + ' ' + std::to_string(words[2]) + ']';
        }
        timed_.push_back(std::move(t));
    } else {
        ++untimed_;
    }
}

// After the fence: the timestamps of this stream as GPU time per shader, into the Context.
void Recorder::collect_timestamps() {
    if (!timing_) return;
    if (untimed_) query_wanted_ = std::max(query_wanted_, uint32_t(2 * (timed_.size() + untimed_ + 1)));
    DeviceProfile p;
    p.submissions = 1;
    p.untimed = untimed_;
    p.record_ms = record_ms_;
    if (recorded_ahead_) p.record_ahead_ms = record_ms_;
    if (!timed_.empty()) {
        std::vector<uint64_t> ts(timed_.size() + 1);
        check(vkGetQueryPoolResults(ctx_.device(), queries_, 0, uint32_t(ts.size()), ts.size() * 8, ts.data(), 8,
                                    VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
              "vkGetQueryPoolResults", ctx_.label());
        const uint32_t bits = ctx_.timestamp_bits();
        const uint64_t mask = bits >= 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1;
        const double ms_per_tick = ctx_.timestamp_period_ns() * 1e-6;
        for (size_t i = 0; i < timed_.size(); ++i) {
            const TimedDispatch& t = timed_[i];
            ShaderTime& s = p.shaders[t.detail.empty() ? std::string(t.name) : t.detail];
            s.ms += double((ts[i + 1] - ts[i]) & mask) * ms_per_tick;
            ++s.dispatches;
        }
        p.gpu_ms = double((ts.back() - ts.front()) & mask) * ms_per_tick;
    }
    ctx_.add_profile(p);
}

void Recorder::end() {
    if (!recording_) throw device_error("Recorder::end without begin()");
    // Shader writes to host-visible buffers become visible to the host once the fence signals.
    VkMemoryBarrier mb = init<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, nullptr,
                         0, nullptr);
    recording_ = false;
    check(vkEndCommandBuffer(cmd_), "vkEndCommandBuffer", ctx_.label());
    ended_ = true;
    record_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begun_).count();
    recorded_ahead_ = ctx_.streams_in_flight() > 0;
}

void Recorder::submit() {
    if (recording_) end();
    if (!ended_) throw device_error("submit without begin()");
    ended_ = false;
    check(vkResetFences(ctx_.device(), 1, &fence_), "vkResetFences", ctx_.label());
    VkSubmitInfo si = init<VkSubmitInfo>(VK_STRUCTURE_TYPE_SUBMIT_INFO);
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd_;
    check(vkQueueSubmit(ctx_.queue(), 1, &si, fence_), "vkQueueSubmit", ctx_.label());
    in_flight_ = true;
    ctx_.stream_submitted();
}

void Recorder::wait() {
    if (!in_flight_) throw device_error("Recorder::wait without submit()");
    in_flight_ = false;  // whatever the wait says, this stream is not waited for again
    ctx_.stream_finished();
    ctx_.wait_fence(fence_, "a submission of " + std::to_string(dispatches_) + " dispatches");
    ctx_.instance().throw_if_validation_errors("a submission");
    collect_timestamps();
}

}  // namespace glimpse::vk
