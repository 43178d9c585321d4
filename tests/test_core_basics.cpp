#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

using namespace glimpse;

TEST_CASE("fp16 conversion round-trips every binary16 value", "[core][fp16]") {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = fp16_to_f32(uint16_t(h));
        if (std::isnan(f)) {
            REQUIRE(std::isnan(fp16_to_f32(f32_to_fp16(f))));
            continue;
        }
        REQUIRE(f32_to_fp16(f) == h);
    }
}

TEST_CASE("fp16 rounding is to nearest even", "[core][fp16]") {
    CHECK(f32_to_fp16(1.0f) == 0x3c00);
    CHECK(f32_to_fp16(65504.0f) == 0x7bff);
    CHECK(f32_to_fp16(65520.0f) == 0x7c00);           // halfway to the next: rounds up to inf
    CHECK(f32_to_fp16(65519.99f) == 0x7bff);
    CHECK(f32_to_fp16(1.0f + 1.0f / 2048) == 0x3c00);  // tie: keep even mantissa
    CHECK(f32_to_fp16(1.0f + 3.0f / 2048) == 0x3c02);  // tie: round up to even
    CHECK(f32_to_fp16(5.9604645e-8f) == 0x0001);       // smallest subnormal
    CHECK(f32_to_fp16(2.9802322e-8f) == 0x0000);       // half of it: ties to even (0)
    CHECK(f32_to_fp16(-0.0f) == 0x8000);
}

TEST_CASE("bf16 conversion", "[core][bf16]") {
    CHECK(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
    CHECK(f32_to_bf16(1.00390625f) == 0x3f80);  // tie 0x3f808000 -> even 0x3f80
    CHECK(f32_to_bf16(1.01171875f) == 0x3f82);  // tie 0x3f818000 -> even 0x3f82
    CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
}

TEST_CASE("dtype table matches ggml block sizes", "[core][dtype]") {
    CHECK(dtype_info(DType::Q8_0).block_bytes == 34);
    CHECK(dtype_info(DType::Q4_K).block_elems == 256);
    CHECK(dtype_from_name("q4_k") == DType::Q4_K);
    CHECK_FALSE(dtype_info(uint32_t(19)).has_value());  // IQ1_S: not supported
    CHECK(dtype_row_bytes(DType::Q8_0, 64) == 68u);
    CHECK_FALSE(dtype_row_bytes(DType::Q8_0, 33).has_value());
}

TEST_CASE("tensor strides", "[core][tensor]") {
    const auto nb = contiguous_strides(DType::Q4_0, {64, 3, 2, 1});
    CHECK(nb[0] == 18);
    CHECK(nb[1] == 36);
    CHECK(nb[2] == 108);
    CHECK(nb[3] == 216);
    CHECK_THROWS(contiguous_strides(DType::Q4_0, {63, 1, 1, 1}));
    CHECK_THROWS(contiguous_strides(DType::F32, {INT64_MAX / 2, INT64_MAX / 2, 1, 1}));
    Tensor t = make_f32("x", {7, 13, 1, 1}, 2);
    CHECK(t.contiguous());
    CHECK(t.shape_string() == "[7, 13]");
    CHECK(f32_data(t)[7 * 13 - 1] == 0.0f);
}

TEST_CASE("thread pool covers every index exactly once", "[core][threads]") {
    for (int threads : {1, 2, 3, 8}) {
        ThreadPool pool(threads);
        for (int64_t n : {0, 1, 7, 13, 127, 1000}) {
            std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
            for (int rep = 0; rep < 20; ++rep)
                pool.parallel_for(n, [&](int64_t b, int64_t e) {
                    for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
                });
            for (auto& h : hits) REQUIRE(h.load() == 20);
        }
    }
}

TEST_CASE("thread pool rethrows a worker's exception", "[core][threads]") {
    ThreadPool pool(3);
    CHECK_THROWS_AS(pool.run([](int ith, int) {
        if (ith == 2) throw std::runtime_error("boom");
    }),
                    std::runtime_error);
    int count = 0;
    pool.run([&](int ith, int) {
        if (ith == 0) ++count;
    });
    CHECK(count == 1);
}
