// core/vmath.h against its specification (ops::softmax_rows, ops::gelu_tanh), on the widest
// path this CPU has and on the portable one, at lengths that exercise every tail.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "core/ops.h"
#include "core/vmath.h"
#include "helpers.h"

using namespace glimpse;

TEST_CASE("vmath: exp_scaled_rows is softmax, on every path and tail", "[vmath]") {
    const vmath::Path path = GENERATE(vmath::Path::Auto, vmath::Path::Portable);
    for (int64_t n : {1, 7, 8, 13, 15, 16, 17, 31, 33, 64, 1025}) {
        const int64_t rows = 3;
        auto x = test::random_floats(size_t(rows * n), uint64_t(n), 40.0f);
        std::vector<float> ref(x.size());
        ops::scale(x.data(), 0.125f, ref.data(), rows * n);
        ops::softmax_rows(ref.data(), rows, n);
        std::vector<float> inv(static_cast<size_t>(rows));
        vmath::exp_scaled_rows(x.data(), rows, n, 0.125f, inv.data(), path);
        for (size_t i = 0; i < x.size(); ++i) {
            INFO("path " << int(path) << " n " << n << " i " << i);
            REQUIRE(test::close_enough(x[i] * inv[i / size_t(n)], ref[i], 1e-8f, 2e-6f));
        }
    }
}

TEST_CASE("vmath: a row's largest entry gives exp 1, masked -inf gives 0", "[vmath]") {
    const vmath::Path path = GENERATE(vmath::Path::Auto, vmath::Path::Portable);
    std::vector<float> x = {3.0f, -INFINITY, 1.0f, 3.0f, -1e30f};
    const float inv = vmath::exp_scaled_row(x.data(), int64_t(x.size()), 0.5f, path);
    CHECK(x[0] == Approx(1.0f).epsilon(1e-6));
    CHECK(x[1] < 1e-37f);
    CHECK(x[3] == Approx(1.0f).epsilon(1e-6));
    CHECK(inv == Approx(1.0 / (2.0 + std::exp(-1.0))).epsilon(1e-6));
}

TEST_CASE("vmath: gelu_tanh matches ops::gelu_tanh, extremes included", "[vmath]") {
    const vmath::Path path = GENERATE(vmath::Path::Auto, vmath::Path::Portable);
    std::vector<float> x = test::random_floats(4099, 77, 12.0f);
    for (float v : {0.0f, -0.0f, 1e-20f, -1e-20f, 9.99f, -9.99f, 30.0f, -30.0f, 100.0f, -100.0f, 1e6f, -1e6f}) x.push_back(v);
    for (size_t n : {x.size(), size_t(5), size_t(21)}) {
        std::vector<float> ref(n), got(n, -7.0f);
        ops::gelu_tanh(x.data(), ref.data(), int64_t(n));
        vmath::gelu_tanh(x.data(), got.data(), int64_t(n), path);
        for (size_t i = 0; i < n; ++i) {
            INFO("path " << int(path) << " x = " << x[i]);
            REQUIRE(test::close_enough(got[i], ref[i], 1e-7f, 2e-6f));
        }
    }
}

TEST_CASE("vmath: swiglu matches ops::swiglu, in place too", "[vmath]") {
    const vmath::Path path = GENERATE(vmath::Path::Auto, vmath::Path::Portable);
    std::vector<float> g = test::random_floats(1031, 78, 12.0f), u = test::random_floats(1031, 79, 3.0f);
    for (float v : {0.0f, -0.0f, 30.0f, -30.0f, 100.0f, -100.0f}) {
        g.push_back(v);
        u.push_back(1.5f);
    }
    for (size_t n : {g.size(), size_t(3), size_t(19)}) {
        std::vector<float> ref(n), got(n, -7.0f);
        ops::swiglu(g.data(), u.data(), ref.data(), int64_t(n));
        vmath::swiglu(g.data(), u.data(), got.data(), int64_t(n), path);
        for (size_t i = 0; i < n; ++i) {
            INFO("path " << int(path) << " gate = " << g[i] << " up = " << u[i]);
            REQUIRE(test::close_enough(got[i], ref[i], 1e-7f, 2e-6f));
        }
        std::vector<float> inplace(g.begin(), g.begin() + long(n));
        vmath::swiglu(inplace.data(), u.data(), inplace.data(), int64_t(n), path);
        REQUIRE(inplace == got);
    }
}
