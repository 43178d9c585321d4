// The Vulkan device layer: device choice, the shader table, memory (sub-allocator, staged
// copies, limits), the Recorder's automatic barriers and argument checks, validation capture,
// and `glimpse devices`.
#define CATCH_CONFIG_EXTERNAL_INTERFACES  // TestEventListenerBase, for VkContextReleaser
#include <catch2/catch.hpp>

#include <algorithm>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/vk_buffer.h"
#include "core/vk_ops.h"
#include "core/vk_pipeline.h"
#include "tests/test_vk_helpers.h"

using namespace glimpse;
using glimpse::test::random_floats;

namespace {

vk::DeviceInfo fake_device(uint32_t index, vk::DeviceType type, const std::string& name) {
    vk::DeviceInfo d;
    d.index = index;
    d.type = type;
    d.name = name;
    return d;
}

// Destroys the shared test contexts when the run ends, while the Vulkan layers are still loaded.
struct VkContextReleaser : Catch::TestEventListenerBase {
    using TestEventListenerBase::TestEventListenerBase;
    void testRunEnded(Catch::TestRunStats const& stats) override {
        for (int i = 0; i < 2; ++i) test::vk_test_slots()[i].ctx.reset();
        TestEventListenerBase::testRunEnded(stats);
    }
};

}  // namespace

CATCH_REGISTER_LISTENER(VkContextReleaser)

TEST_CASE("select_device: auto on a machine without a GPU device node does not probe Vulkan", "[vulkan]") {
    std::error_code ec;
    bool node = false;
    for (const char* f : {"/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"}) node = node || std::filesystem::exists(f, ec);
    for (std::filesystem::directory_iterator it("/dev/dri", ec), end; !ec && it != end; it.increment(ec))
        node = node || it->path().filename().string().rfind("renderD", 0) == 0;
    const vk::DeviceChoice c = vk::select_device("auto");
    INFO(c.reason);
    if (node) {  // a GPU machine: auto probes (and may or may not find a Vulkan GPU)
        CHECK(c.reason.find("not probed") == std::string::npos);
    } else {     // CI and this project's build machines: the CPU, said why, without a loader
        CHECK(c.backend == vk::Backend::Cpu);
        CHECK(c.reason.find("Vulkan not probed") != std::string::npos);
        // --device vulkan still finds lavapipe
        CHECK(vk::select_device("vulkan").backend == vk::Backend::Vulkan);
    }
}

TEST_CASE("select_device: auto prefers GPUs and never picks a software device", "[vulkan]") {
    using vk::DeviceType;
    const std::vector<vk::DeviceInfo> all = {fake_device(0, DeviceType::Cpu, "llvmpipe"),
                                             fake_device(1, DeviceType::IntegratedGpu, "igpu"),
                                             fake_device(2, DeviceType::DiscreteGpu, "dgpu")};
    auto c = vk::select_device("auto", all);
    CHECK(c.backend == vk::Backend::Vulkan);
    CHECK(c.vulkan_index == 2);
    c = vk::select_device("auto", {all[0], all[1]});
    CHECK(c.vulkan_index == 1);
    c = vk::select_device("auto", {all[0]});
    CHECK(c.backend == vk::Backend::Cpu);
    CHECK(c.reason.find("--device vulkan") != std::string::npos);
    c = vk::select_device("vulkan", {all[0]});
    CHECK(c.backend == vk::Backend::Vulkan);
    CHECK(c.vulkan_index == 0);
    c = vk::select_device("vulkan:1", all);
    CHECK(c.vulkan_index == 1);
    CHECK(vk::select_device("cpu", all).backend == vk::Backend::Cpu);
    CHECK(vk::select_device("auto", {}).backend == vk::Backend::Cpu);

    try {
        vk::select_device("vulkan:3", {all[0], all[1]});
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Device);
        CHECK(std::string(e.what()) == "vulkan: no device 3 (2 found)");
    }
    CHECK_THROWS_AS(vk::select_device("vulkan", {}), Error);
    for (const char* bad : {"gpu", "vulkan:", "vulkan:x", "vulkan:-1", "vulkan:99999999"}) {
        try {
            vk::select_device(bad, all);
            FAIL("no error for " << bad);
        } catch (const Error& e) {
            CHECK(e.kind() == ErrorKind::Usage);
        }
    }
}

TEST_CASE("vulkan shader table: every ShaderId has SPIR-V and a binding count", "[vulkan]") {
    for (size_t i = 0; i < vk::kShaderCount; ++i) {
        const auto& b = vk::shader_binary(static_cast<vk::ShaderId>(i));
        INFO(b.name);
        CHECK(static_cast<size_t>(b.id) == i);
        REQUIRE(b.size >= 20);
        CHECK(b.size % 4 == 0);
        uint32_t magic;
        std::memcpy(&magic, b.spirv, 4);
        CHECK(magic == 0x07230203u);
        CHECK(b.n_bindings >= 1);
        CHECK(b.n_bindings <= vk::kMaxBindings);
    }
}

TEST_CASE("vulkan device info is filled in", "[vulkan]") {
    VK_OR_SKIP(ctx);
    const auto& d = ctx->info();
    CHECK(!d.name.empty());
    CHECK(d.api_version >= VK_API_VERSION_1_1);
    CHECK(d.max_storage_buffer_range >= (1u << 27) - 1);
    CHECK(d.subgroup_size >= 1);
    CHECK(d.max_workgroup_invocations >= 128);
    CHECK(ctx->label().find(d.name) != std::string::npos);
    if (!ctx->instance().validation_enabled())
        WARN("validation layer not installed: Vulkan tests run without it");
}

TEST_CASE("vulkan memory: staged upload/download in chunks, at offsets", "[vulkan]") {
    VK_OR_SKIP(shared_ctx);
    vk::ContextOptions o;
    o.staging_bytes = 4096;        // many chunks
    o.map_device_memory = false;   // go through staging even where device memory is mappable
    o.block_bytes = 1 << 20;
    vk::Context ctx(shared_ctx->info().index, o);
    const size_t n = 100003;
    std::vector<uint8_t> bytes(n);
    for (size_t i = 0; i < n; ++i) bytes[i] = uint8_t(i * 2654435761u >> 13);
    vk::Buffer b(ctx, n + 1000);
    CHECK(b.mapped() == nullptr);
    vk::upload(ctx, b, bytes.data(), n, 777);
    std::vector<uint8_t> back(n);
    vk::download(ctx, b, back.data(), n, 777);
    CHECK(back == bytes);
    std::vector<uint8_t> part(5000);
    vk::download(ctx, b, part.data(), part.size(), 777 + 4093);
    CHECK(std::memcmp(part.data(), bytes.data() + 4093, part.size()) == 0);
    CHECK_THROWS_AS(vk::upload(ctx, b, bytes.data(), n, 1001), Error);  // past the end
}

TEST_CASE("vulkan memory: the sub-allocator reuses freed ranges", "[vulkan]") {
    VK_OR_SKIP(shared_ctx);
    vk::ContextOptions o;
    o.block_bytes = 1 << 20;
    vk::Context ctx(shared_ctx->info().index, o);
    auto& a = ctx.allocator();
    {
        std::vector<vk::Buffer> bufs;
        for (int i = 0; i < 10; ++i) bufs.emplace_back(ctx, 50000 + 1000 * i);
        CHECK(a.block_count() == 1);
        CHECK(a.used_bytes() >= 10 * 50000u);
        bufs.erase(bufs.begin() + 3);  // a hole in the middle
        vk::Buffer again(ctx, 40000);
        CHECK(a.block_count() == 1);
        vk::Buffer big(ctx, 3 << 20);  // larger than a block: a block of its own
        CHECK(a.block_count() == 2);
    }
    CHECK(a.used_bytes() == 0);
    const uint64_t reserved = a.reserved_bytes();
    vk::Buffer reuse(ctx, 2 << 20);  // fits the freed big block: no new memory
    CHECK(a.reserved_bytes() == reserved);
}

TEST_CASE("vulkan memory: a buffer beyond maxStorageBufferRange is a device error", "[vulkan]") {
    VK_OR_SKIP(ctx);
    try {
        vk::Buffer b(*ctx, ctx->info().max_storage_buffer_range + 1);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Device);
        CHECK(std::string(e.what()).find("maxStorageBufferRange") != std::string::npos);
    }
}

TEST_CASE("vulkan recorder: barriers only between dependent dispatches", "[vulkan]") {
    VK_OR_SKIP(ctx);
    const int64_t n = 1000;
    const auto a = random_floats(n, 1), b = random_floats(n, 2);
    vk::Buffer da = vk::upload_floats(*ctx, a), db = vk::upload_floats(*ctx, b);
    vk::Buffer s(*ctx, n * 4), p(*ctx, n * 4), r(*ctx, n * 4);
    vk::Recorder rec(*ctx);
    rec.begin();
    vk::add(rec, da, db, s, n);  // s = a + b
    vk::mul(rec, da, db, p, n);  // p = a * b: independent of s
    CHECK(rec.barrier_count() == 0);
    vk::mul(rec, s, p, r, n);  // needs both
    CHECK(rec.barrier_count() == 1);
    vk::add(rec, da, db, s, n);  // rewrites s, which the last dispatch read: write-after-read
    CHECK(rec.barrier_count() == 2);
    rec.submit_and_wait();
    CHECK(rec.dispatch_count() == 4);
    const auto got = vk::download_floats(*ctx, r, n);
    for (int64_t i = 0; i < n; ++i) REQUIRE(got[i] == (a[i] + b[i]) * (a[i] * b[i]));
}

TEST_CASE("vulkan recorder: descriptor sets are written once per buffer list and kept", "[vulkan]") {
    VK_OR_SKIP(ctx);
    const int64_t n = 300;
    const auto a = random_floats(n, 3), b = random_floats(n, 4);
    vk::Buffer da = vk::upload_floats(*ctx, a), db = vk::upload_floats(*ctx, b);
    vk::Buffer y(*ctx, n * 4), z(*ctx, n * 4);
    vk::Recorder rec(*ctx);
    for (int step = 0; step < 3; ++step) {  // the same two lists each stream, like decode steps
        rec.begin();
        vk::add(rec, da, db, y, n);
        vk::mul(rec, y, db, z, n);
        vk::add(rec, da, db, y, n);  // the first list again
        rec.submit_and_wait();
        CHECK(rec.cached_sets() == 2);
    }
    auto got = vk::download_floats(*ctx, z, n);
    for (int64_t i = 0; i < n; ++i) REQUIRE(got[size_t(i)] == (a[size_t(i)] + b[size_t(i)]) * b[size_t(i)]);

    // A buffer destroyed and another made (the driver may give it the destroyed one's handle):
    // each stream binds the buffer it names.
    for (int round = 0; round < 4; ++round) {
        const auto c = random_floats(n, 10 + uint64_t(round));
        vk::Buffer dc = vk::upload_floats(*ctx, c);
        rec.begin();
        vk::add(rec, da, dc, y, n);
        rec.submit_and_wait();
        got = vk::download_floats(*ctx, y, n);
        for (int64_t i = 0; i < n; ++i) REQUIRE(got[size_t(i)] == a[size_t(i)] + c[size_t(i)]);
    }
    CHECK(rec.cached_sets() == 2 + 4);

    // Past kMaxCachedSets lists, the next stream starts with an empty cache.
    std::vector<vk::Buffer> many;
    for (size_t i = 0; i <= vk::Recorder::kMaxCachedSets; ++i) many.emplace_back(*ctx, 16);
    rec.begin();
    for (vk::Buffer& m : many) vk::add(rec, da, db, m, 4);
    rec.submit_and_wait();
    CHECK(rec.cached_sets() > vk::Recorder::kMaxCachedSets);
    rec.begin();
    CHECK(rec.cached_sets() == 0);
    vk::mul(rec, da, db, y, n);
    rec.submit_and_wait();
    CHECK(rec.cached_sets() == 1);
    got = vk::download_floats(*ctx, y, n);
    for (int64_t i = 0; i < n; ++i) REQUIRE(got[size_t(i)] == a[size_t(i)] * b[size_t(i)]);
    REQUIRE(vk::download_floats(*ctx, many.back(), 4)[3] == a[3] + b[3]);
}

TEST_CASE("vulkan recorder: wrong buffer count and use outside begin() are errors; streams in flight", "[vulkan]") {
    VK_OR_SKIP(ctx);
    vk::Buffer x(*ctx, 64);
    vk::Recorder rec(*ctx);
    struct P {
        uint32_t n, nb;
    } push{16, 16};
    CHECK_THROWS_AS(rec.dispatch(vk::ShaderId::binary, {vk::in(x), vk::out(x)}, push, {1}), Error);  // not begun
    rec.begin();
    try {
        rec.dispatch(vk::ShaderId::binary, {vk::in(x), vk::out(x)}, push, {1});
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("binary takes 3 buffers") != std::string::npos);
    }
    rec.submit_and_wait();
    CHECK_THROWS_AS(rec.submit_and_wait(), Error);
    CHECK_THROWS_AS(rec.wait(), Error);  // nothing submitted
    CHECK_THROWS_AS(rec.end(), Error);   // nothing recording
    // A stream in flight: begin() waits for it; a stream ended and never submitted is dropped.
    rec.begin();
    rec.submit();
    CHECK(ctx->streams_in_flight() == 1);
    rec.begin();
    CHECK(ctx->streams_in_flight() == 0);
    rec.end();
    rec.begin();
    rec.submit_and_wait();
    CHECK(ctx->streams_in_flight() == 0);
    {  // destroyed with a stream in flight: it waits, and the count goes back
        vk::Recorder other(*ctx);
        other.begin();
        other.submit();
        CHECK(ctx->streams_in_flight() == 1);
    }
    CHECK(ctx->streams_in_flight() == 0);
}

TEST_CASE("vulkan validation errors become exceptions", "[vulkan]") {
    VK_OR_SKIP(ctx);
    if (!ctx->instance().validation_enabled()) {
        WARN("SKIPPED: validation layer not installed");
        return;
    }
    // A zero-sized buffer is invalid usage the layer reports (and drivers tolerate).
    VkBufferCreateInfo bi = vk::init<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
    bi.size = 0;
    bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
    VkBuffer buf = VK_NULL_HANDLE;
    const VkResult r = vkCreateBuffer(ctx->device(), &bi, nullptr, &buf);
    if (r == VK_SUCCESS && buf != VK_NULL_HANDLE) vkDestroyBuffer(ctx->device(), buf, nullptr);
    try {
        ctx->instance().throw_if_validation_errors("the test");
        FAIL("no validation error reported");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Device);
        CHECK(std::string(e.what()).rfind("vulkan: validation error during the test", 0) == 0);
    }
    CHECK(ctx->instance().take_validation_errors().empty());
}

TEST_CASE("glimpse devices --json lists the CPU and the Vulkan devices", "[vulkan]") {
    const auto r = test::run_glimpse("devices --json");
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j.contains("cpu"));
    REQUIRE(j["vulkan"].is_array());
    if (vk::Context* ctx = test::vk_test_context()) {
        REQUIRE(j["vulkan"].size() >= 1);
        const auto& d = j["vulkan"][ctx->info().index];
        CHECK(d["name"] == ctx->info().name);
        CHECK(d["subgroup_size"] == ctx->info().subgroup_size);
        CHECK(d["storage_16bit"] == ctx->info().storage_16bit);
        // Cooperative matrices: which extension, and the NV one's shapes only where it is offered.
        CHECK(d["cooperative_matrix"] == (d["cooperative_matrix_khr"].get<bool>() || d["cooperative_matrix_nv"].get<bool>()));
        REQUIRE(d["cooperative_matrix_nv_shapes"].is_array());
        if (!d["cooperative_matrix_nv"].get<bool>()) CHECK(d["cooperative_matrix_nv_shapes"].empty());
        for (const auto& shape : d["cooperative_matrix_nv_shapes"])
            CHECK_THAT(shape.get<std::string>(), Catch::Matches(R"(\d+x\d+x\d+ \w+\*\w+\+\w+->\w+)"));
        // The tensor-core matmul: only with the NV extension, its shape and subgroups of 32.
        CHECK(d["tensor_core_matmul"] == ctx->coop_matmul_supported());
        if (d["tensor_core_matmul"].get<bool>()) {
            CHECK(d["cooperative_matrix_nv"].get<bool>());
            CHECK(d["subgroup_size"] == 32);
            CHECK(std::find(d["cooperative_matrix_nv_shapes"].begin(), d["cooperative_matrix_nv_shapes"].end(),
                            vk::kCoopMatmulShape) != d["cooperative_matrix_nv_shapes"].end());
        }
        if (ctx->info().type == vk::DeviceType::Cpu && j["vulkan"].size() == 1) CHECK(j["auto"] == "cpu");
    }
    const auto t = test::run_glimpse("devices");
    CHECK(t.exit_code == 0);
    CHECK(t.out.find("--device auto picks") != std::string::npos);
    if (test::vk_test_context()) {
        CHECK(t.out.find("cooperative matrix ") != std::string::npos);
        CHECK(t.out.find("tensor-core matmul ") != std::string::npos);
    }
}
