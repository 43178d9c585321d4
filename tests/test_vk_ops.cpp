// Parity of every Vulkan op with its CPU reference (core/ops.h, core/matmul.h) on awkward
// shapes, on whatever Vulkan device exists (lavapipe in CI), validation layers on where
// installed. Tolerances: |got − ref| ≤ abs + rel·|ref| (tests/helpers.h close_enough); GPU sums
// are float where the references sum in double, and GPU exp/sin/cos differ by a few ulp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "core/matmul.h"
#include "core/ops.h"
#include "core/quant.h"
#include "core/vk_ops.h"
#include "core/vk_ops_vision.h"
#include "tests/test_vk_helpers.h"
#include "text/sampler.h"

using namespace glimpse;
using glimpse::test::make_weight;
using glimpse::test::random_floats;
using glimpse::test::reference_pool;
using glimpse::test::run_matmul;
using glimpse::test::require_close;

TEST_CASE("vulkan matmul matches matmul_reference for every weight type", "[vulkan]") {
    const DType type = GENERATE(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K);
    const bool subgroups = GENERATE(true, false);
    VK_OR_SKIP(ctx, subgroups);
    const int64_t block = dtype_info(type).block_elems;
    struct Shape {
        int64_t M, N, K;
    };
    // K not a multiple of 16/32/64 for the float types; N and M around the tile edges; the
    // model widths 576 and 960 and 1023 (issue 5's awkward shapes).
    std::vector<Shape> shapes = block == 1
        ? std::vector<Shape>{{1, 7, 13},   {3, 129, 100},  {8, 127, 65}, {7, 1000, 33}, {13, 7, 1},
                             {129, 65, 129}, {127, 1, 50}, {1, 1023, 576}, {13, 576, 960}, {127, 960, 33}}
        : block == 32 ? std::vector<Shape>{{1, 7, 32},     {5, 129, 96},   {8, 13, 160}, {9, 127, 64},
                                           {129, 33, 96},  {1, 1023, 576}, {13, 960, 576}, {127, 576, 64}}
                      : std::vector<Shape>{{1, 7, 256}, {4, 33, 512}, {13, 17, 256}, {127, 9, 256}, {1, 1023, 768},
                                           {7, 576, 1024}, {13, 960, 512}};
    for (const Shape& s : shapes) {
        INFO(dtype_name(type) << " subgroups=" << subgroups << " M=" << s.M << " N=" << s.N << " K=" << s.K);
        const Tensor W = make_weight(type, s.K, s.N, random_floats(size_t(s.K * s.N), 11 + s.N));
        const auto x = random_floats(size_t(s.M * s.K), 5 + s.M);
        std::vector<float> ref(size_t(s.M * s.N));
        matmul_reference(W, x.data(), ref.data(), s.M);
        const float abs_tol = 2e-5f * float(s.K) + 1e-5f;
        require_close(run_matmul(*ctx, W, x, s.M, vk::MatmulPath::Auto), ref, abs_tol, 1e-4f);
        // The tiled kernel with both tiles (Auto took the matvec kernel or the 64×64 tile).
        for (const vk::MatmulPath p : {vk::MatmulPath::Tiled64, vk::MatmulPath::Tiled128}) {
            INFO("tile " << (p == vk::MatmulPath::Tiled64 ? 64 : 128));
            require_close(run_matmul(*ctx, W, x, s.M, p), ref, abs_tol, 1e-4f);
        }
    }
}

TEST_CASE("the tiled matmul takes 128x128 tiles only where they still make many workgroups", "[vulkan]") {
    VK_OR_SKIP(ctx);
    const bool room = ctx->info().max_shared_memory >= 16896;  // matmul.comp's 128×128 stage
    const bool cpu = ctx->info().type == vk::DeviceType::Cpu;   // lavapipe: large wherever there is room
    CHECK(vk::matmul_large_tile(*ctx, 8 * 1024, 768, false) == room);  // 8 SigLIP tiles: 384 groups
    CHECK_FALSE(vk::matmul_large_tile(*ctx, 8 * 1024, 768, true));    // GLU keeps 64×64
    CHECK(vk::matmul_large_tile(*ctx, 1024, 768, false) == (room && cpu));  // one tile: 48 groups
    CHECK(vk::matmul_large_tile(*ctx, 512, 960, false) == (room && cpu));   // a prefill batch: 32
    CHECK(vk::matmul_large_tile(*ctx, 16 * 128, 16 * 128, false) == room);  // exactly 256
    CHECK(vk::matmul_large_tile(*ctx, 16 * 128, 15 * 128, false) == (room && cpu));
}

TEST_CASE("vulkan matmul epilogue (bias, activation, residual, output offset, GLU) equals the separate ops",
          "[vulkan]") {
    VK_OR_SKIP(ctx);
    const DType type = GENERATE(DType::F32, DType::Q8_0, DType::Q4_K);
    // The tensor-core kernel's epilogue emulated, in its 64×64 tile (its pipelines take lavapipe
    // a while to compile; both tiles' sums are checked above).
    const vk::MatmulPath path = GENERATE(vk::MatmulPath::Matvec, vk::MatmulPath::Tiled64, vk::MatmulPath::Tiled128,
                                         vk::MatmulPath::CoopEmu64);
    const int64_t K = dtype_info(type).block_elems == 256 ? 256 : 96, N = 127;
    const int64_t M = path == vk::MatmulPath::Matvec ? 5 : 70;
    const Tensor W = make_weight(type, K, N, random_floats(size_t(K * N), 41));
    const vk::DeviceMatrix dw = vk::upload_matrix(*ctx, W);
    const auto x = random_floats(size_t(M * K), 42);
    const auto b = random_floats(size_t(N), 43);
    vk::Buffer dx = vk::upload_floats(*ctx, x), db = vk::upload_floats(*ctx, b);
    struct Case {
        bool bias, activate;
        vk::UnaryOp act;
        bool accumulate;
        int64_t offset;
    };
    for (const Case c : {Case{true, false, vk::UnaryOp::GeluTanh, false, 0},
                         Case{true, true, vk::UnaryOp::GeluErf, false, 0},
                         Case{false, true, vk::UnaryOp::QuickGelu, false, 0},
                         Case{true, true, vk::UnaryOp::GeluTanh, false, 3 * N + 1},
                         Case{true, false, vk::UnaryOp::GeluTanh, true, 0},
                         Case{false, false, vk::UnaryOp::GeluTanh, true, 2 * N}}) {
        INFO(dtype_name(type) << " M=" << M << " bias=" << c.bias << " act=" << (c.activate ? int(c.act) : -1)
                              << " accumulate=" << c.accumulate << " offset=" << c.offset);
        // The separate ops: t = x·Wᵀ; t += bias; t = act(t).
        const int64_t n_out = M * N;
        vk::Buffer t(*ctx, uint64_t(n_out) * 4);
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::matmul(rec, dw, dx, t, M, path);
        if (c.bias) vk::add_row_bias(rec, t, db, M, N);
        if (c.activate) vk::unary(rec, c.act, t, t, n_out);
        rec.submit_and_wait();
        const auto separate = vk::download_floats(*ctx, t, uint64_t(n_out));
        // y holds old values around and under the written range [offset, offset + M·N).
        const auto y0 = random_floats(size_t(c.offset + n_out + 7), 44, 3.0f);
        vk::Buffer y = vk::upload_floats(*ctx, y0);
        vk::MatmulEpilogue e;
        e.bias = c.bias ? &db : nullptr;
        e.activate = c.activate;
        e.act = c.act;
        e.accumulate = c.accumulate;
        e.y_offset = c.offset;
        rec.begin();
        vk::matmul(rec, dw, dx, y, M, e, path);
        rec.submit_and_wait();
        auto want = y0;
        for (int64_t i = 0; i < n_out; ++i) {
            float& w = want[size_t(c.offset + i)];
            w = c.accumulate ? w + separate[size_t(i)] : separate[size_t(i)];
        }
        // The same float operations in the same order: equal up to a driver's freedom to fuse a
        // multiply and an add.
        require_close(vk::download_floats(*ctx, y, want.size()), want, 1e-7f, 1e-6f);
    }
    {  // GLU: gate and up stacked in one matrix, silu(x·gate) ⊙ x·up in one dispatch
        INFO(dtype_name(type) << " M=" << M << " glu");
        const Tensor U = make_weight(type, K, N, random_floats(size_t(K * N), 46));
        const vk::DeviceMatrix du = vk::upload_matrix(*ctx, U), stacked = vk::upload_stacked(*ctx, {&W, &U});
        CHECK(stacked.N == 2 * N);
        vk::Buffer g(*ctx, uint64_t(M * N) * 4), u(*ctx, uint64_t(M * N) * 4), y(*ctx, uint64_t(M * N) * 4);
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::matmul(rec, dw, dx, g, M, path);
        vk::matmul(rec, du, dx, u, M, path);
        vk::swiglu(rec, g, u, g, M * N);
        vk::MatmulEpilogue e;
        e.glu = true;
        vk::matmul(rec, stacked, dx, y, M, e, path);
        rec.submit_and_wait();
        require_close(vk::download_floats(*ctx, y, uint64_t(M * N)), vk::download_floats(*ctx, g, uint64_t(M * N)),
                      1e-7f, 1e-6f);
        // Rows of another type or length cannot be stacked; glu takes nothing else.
        const Tensor other = make_weight(type == DType::F32 ? DType::F16 : DType::F32, K, N,
                                         random_floats(size_t(K * N), 47));
        CHECK_THROWS_AS(vk::upload_stacked(*ctx, {&W, &other}), Error);
        e.accumulate = true;
        CHECK_THROWS_AS(vk::matmul(rec, stacked, dx, y, M, e, path), std::invalid_argument);
    }
    // y must not be x (the kernel would read what it overwrites), and Scale is no epilogue.
    vk::Recorder rec(*ctx);
    rec.begin();
    vk::Buffer xy = vk::upload_floats(*ctx, random_floats(size_t(M * std::max(K, N)), 45));
    CHECK_THROWS_AS(vk::matmul(rec, dw, xy, xy, M, vk::MatmulEpilogue{}, path), std::invalid_argument);
    vk::MatmulEpilogue scale;
    scale.activate = true;
    scale.act = vk::UnaryOp::Scale;
    vk::Buffer y(*ctx, uint64_t(M * N) * 4);
    CHECK_THROWS_AS(vk::matmul(rec, dw, dx, y, M, scale, path), std::invalid_argument);
    vk::MatmulEpilogue past_end;
    past_end.y_offset = 1;
    CHECK_THROWS_AS(vk::matmul(rec, dw, dx, y, M, past_end, path), std::invalid_argument);
}

TEST_CASE("vulkan matvec with a fused RMSNorm equals rms_norm then the matvec", "[vulkan]") {
    const bool subgroups = GENERATE(true, false);
    VK_OR_SKIP(ctx, subgroups);
    struct Case {
        DType type;
        int64_t M, N, K;
        bool glu;
    };
    // K % 8 == 0 (runs of 8), K % 4 == 0 only (runs of 4), K odd (one value at a time); with
    // and without GLU; M up to the matvec's 8 rows.
    for (const Case c : {Case{DType::F32, 1, 127, 96, false}, Case{DType::F32, 3, 33, 36, true},
                         Case{DType::F32, 8, 7, 13, false}, Case{DType::F32, 2, 65, 13, true},
                         Case{DType::F16, 1, 960, 960, false}, Case{DType::Q8_0, 5, 129, 160, true},
                         Case{DType::Q4_K, 1, 576, 512, false}, Case{DType::Q4_K, 4, 31, 256, true}}) {
        INFO(dtype_name(c.type) << " subgroups=" << subgroups << " M=" << c.M << " N=" << c.N << " K=" << c.K
                                << " glu=" << c.glu);
        const int64_t rows = c.glu ? 2 * c.N : c.N;
        const Tensor W = make_weight(c.type, c.K, rows, random_floats(size_t(c.K * rows), 61 + c.K));
        const vk::DeviceMatrix dw = vk::upload_matrix(*ctx, W);
        auto x = random_floats(size_t(c.M * c.K), 62, 4.0f);
        for (int64_t k = 0; k < c.K; ++k) x[size_t(k)] *= 0.01f;  // one row of a much smaller scale
        const auto g = random_floats(size_t(c.K), 63);
        const float eps = 1e-5f;
        vk::Buffer dx = vk::upload_floats(*ctx, x), dg = vk::upload_floats(*ctx, g);
        vk::Buffer xn(*ctx, uint64_t(c.M * c.K) * 4), want(*ctx, uint64_t(c.M * c.N) * 4),
            got(*ctx, uint64_t(c.M * c.N) * 4);
        vk::MatmulEpilogue e;
        e.glu = c.glu;
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::rms_norm(rec, dx, &dg, xn, c.M, c.K, eps);
        vk::matmul(rec, dw, xn, want, c.M, e, vk::MatmulPath::Matvec);
        e.norm = &dg;
        e.norm_eps = eps;
        vk::matmul(rec, dw, dx, got, c.M, e, vk::MatmulPath::Auto);
        rec.submit_and_wait();
        // The same products summed in another order (x·g·W·r against (x·r·g)·W).
        require_close(vk::download_floats(*ctx, got, uint64_t(c.M * c.N)),
                      vk::download_floats(*ctx, want, uint64_t(c.M * c.N)), 2e-5f * float(c.K), 1e-4f);
    }
    // Not on the tiled path.
    const Tensor W = make_weight(DType::F32, 16, 8, random_floats(16 * 8, 64));
    const vk::DeviceMatrix dw = vk::upload_matrix(*ctx, W);
    vk::Buffer dx = vk::upload_floats(*ctx, random_floats(16 * 9, 65)), y(*ctx, 8 * 9 * 4);
    vk::Buffer dg = vk::upload_floats(*ctx, random_floats(16, 66));
    vk::MatmulEpilogue e;
    e.norm = &dg;
    vk::Recorder rec(*ctx);
    rec.begin();
    CHECK_THROWS_AS(vk::matmul(rec, dw, dx, y, 9, e), std::invalid_argument);
    CHECK_THROWS_AS(vk::matmul(rec, dw, dx, y, 2, e, vk::MatmulPath::Tiled), std::invalid_argument);
    vk::Buffer short_g(*ctx, 15 * 4);
    e.norm = &short_g;
    CHECK_THROWS_AS(vk::matmul(rec, dw, dx, y, 2, e), std::invalid_argument);
}

TEST_CASE("vulkan upload_matrix rejects what it cannot run", "[vulkan]") {
    VK_OR_SKIP(ctx);
    // Q2_K: a type glimpse reads from files but does not compute with (no CPU kernel either).
    Tensor w;
    w.name = "w.Q2_K";
    w.dtype = DType::Q2_K;
    w.n_dims = 2;
    w.ne = {256, 2, 1, 1};
    w.nb = contiguous_strides(DType::Q2_K, w.ne);
    const std::vector<uint8_t> zeros(w.bytes());
    w.data = zeros.data();
    try {
        vk::upload_matrix(*ctx, w);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Model);
        CHECK(std::string(e.what()).rfind("w.Q2_K: type Q2_K", 0) == 0);
    }
}

TEST_CASE("vulkan rms_norm and layer_norm match the CPU", "[vulkan]") {
    VK_OR_SKIP(ctx);
    struct Shape {
        int64_t rows, n;
    };
    for (const Shape s : {Shape{1, 7}, Shape{7, 1000}, Shape{127, 65}, Shape{3, 1}, Shape{2, 4097}}) {
        INFO("rows=" << s.rows << " n=" << s.n);
        const size_t total = size_t(s.rows * s.n);
        auto x = random_floats(total, 3, 2.0f);
        for (size_t i = 0; i < total; i += 3) x[i] += 5.0f;  // an offset for layer_norm's centring
        const auto w = random_floats(size_t(s.n), 4), b = random_floats(size_t(s.n), 5);
        vk::Buffer dx = vk::upload_floats(*ctx, x), dw = vk::upload_floats(*ctx, w), db = vk::upload_floats(*ctx, b);
        vk::Buffer y1(*ctx, total * 4), y2(*ctx, total * 4), y3(*ctx, total * 4), y4(*ctx, total * 4);
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::rms_norm(rec, dx, &dw, y1, s.rows, s.n, 1e-6f);
        vk::rms_norm(rec, dx, nullptr, y2, s.rows, s.n, 1e-5f);
        vk::layer_norm(rec, dx, &dw, &db, y3, s.rows, s.n, 1e-6f);
        vk::layer_norm(rec, dx, nullptr, nullptr, y4, s.rows, s.n, 1e-5f);
        rec.submit_and_wait();
        std::vector<float> r1(total), r2(total), r3(total), r4(total);
        ops::rms_norm(x.data(), w.data(), r1.data(), s.rows, s.n, 1e-6f, reference_pool());
        ops::rms_norm(x.data(), nullptr, r2.data(), s.rows, s.n, 1e-5f, reference_pool());
        ops::layer_norm(x.data(), w.data(), b.data(), r3.data(), s.rows, s.n, 1e-6f, reference_pool());
        ops::layer_norm(x.data(), nullptr, nullptr, r4.data(), s.rows, s.n, 1e-5f, reference_pool());
        require_close(vk::download_floats(*ctx, y1, total), r1, 1e-5f, 1e-4f);
        require_close(vk::download_floats(*ctx, y2, total), r2, 1e-5f, 1e-4f);
        require_close(vk::download_floats(*ctx, y3, total), r3, 1e-5f, 1e-4f);
        require_close(vk::download_floats(*ctx, y4, total), r4, 1e-5f, 1e-4f);
    }
}

TEST_CASE("vulkan softmax_rows (plain and causal) matches the CPU", "[vulkan]") {
    VK_OR_SKIP(ctx);
    struct Shape {
        int64_t rows, n, offset;
    };
    for (const Shape s : {Shape{1, 1, 0}, Shape{7, 13, 0}, Shape{13, 1000, 3}, Shape{127, 129, -5}, Shape{5, 300, 600}}) {
        INFO("rows=" << s.rows << " n=" << s.n << " offset=" << s.offset);
        const size_t total = size_t(s.rows * s.n);
        const auto x = random_floats(total, 9, 8.0f);
        vk::Buffer a = vk::upload_floats(*ctx, x), c = vk::upload_floats(*ctx, x);
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::softmax_rows(rec, a, s.rows, s.n);
        vk::softmax_rows_causal(rec, c, s.rows, s.n, s.offset);
        rec.submit_and_wait();
        auto ra = x, rc = x;
        ops::softmax_rows(ra.data(), s.rows, s.n);
        ops::softmax_rows_causal(rc.data(), s.rows, s.n, s.offset);
        require_close(vk::download_floats(*ctx, a, total), ra, 1e-6f, 1e-4f);
        require_close(vk::download_floats(*ctx, c, total), rc, 1e-6f, 1e-4f);
    }
}

TEST_CASE("vulkan activations and element-wise ops match the CPU", "[vulkan]") {
    VK_OR_SKIP(ctx);
    for (const int64_t n : {int64_t(1), int64_t(127), int64_t(1000), int64_t(70001)}) {
        INFO("n=" << n);
        auto x = random_floats(size_t(n), 31, 6.0f);
        x[0] = n > 1 ? -90.0f : x[0];  // exp overflow territory
        const auto b = random_floats(size_t(n), 32);
        vk::Buffer dx = vk::upload_floats(*ctx, x), dbuf = vk::upload_floats(*ctx, b);
        std::vector<vk::Buffer> outs;
        for (int i = 0; i < 8; ++i) outs.emplace_back(*ctx, uint64_t(n) * 4);
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::unary(rec, vk::UnaryOp::GeluTanh, dx, outs[0], n);
        vk::unary(rec, vk::UnaryOp::GeluErf, dx, outs[1], n);
        vk::unary(rec, vk::UnaryOp::QuickGelu, dx, outs[2], n);
        vk::unary(rec, vk::UnaryOp::Silu, dx, outs[3], n);
        vk::unary(rec, vk::UnaryOp::Scale, dx, outs[4], n, -0.37f);
        vk::add(rec, dx, dbuf, outs[5], n);
        vk::mul(rec, dx, dbuf, outs[6], n);
        vk::swiglu(rec, dx, dbuf, outs[7], n);
        rec.submit_and_wait();
        std::vector<std::vector<float>> ref(8, std::vector<float>(size_t(n)));
        ops::gelu_tanh(x.data(), ref[0].data(), n);
        ops::gelu_erf(x.data(), ref[1].data(), n);
        ops::quick_gelu(x.data(), ref[2].data(), n);
        ops::silu(x.data(), ref[3].data(), n);
        ops::scale(x.data(), -0.37f, ref[4].data(), n);
        ops::add(x.data(), b.data(), ref[5].data(), n);
        ops::mul(x.data(), b.data(), ref[6].data(), n);
        ops::swiglu(x.data(), b.data(), ref[7].data(), n);
        const char* names[] = {"gelu_tanh", "gelu_erf", "quick_gelu", "silu", "scale", "add", "mul", "swiglu"};
        for (int i = 0; i < 8; ++i) {
            INFO(names[i]);
            require_close(vk::download_floats(*ctx, outs[size_t(i)], uint64_t(n)), ref[size_t(i)], 1e-6f, 1e-5f);
        }
    }
}

TEST_CASE("vulkan add_row_bias (in place, broadcast) matches the CPU", "[vulkan]") {
    VK_OR_SKIP(ctx);
    const int64_t rows = 129, n = 77;
    const auto x = random_floats(size_t(rows * n), 41), bias = random_floats(size_t(n), 42);
    vk::Buffer dx = vk::upload_floats(*ctx, x), db = vk::upload_floats(*ctx, bias);
    vk::Recorder rec(*ctx);
    rec.begin();
    vk::add_row_bias(rec, dx, db, rows, n);
    vk::add_row_bias(rec, dx, db, rows, n);  // twice: the second depends on the first
    rec.submit_and_wait();
    auto ref = x;
    ops::add_row_bias(ref.data(), bias.data(), rows, n);
    ops::add_row_bias(ref.data(), bias.data(), rows, n);
    require_close(vk::download_floats(*ctx, dx, uint64_t(rows * n)), ref, 0.0f, 0.0f);
}

TEST_CASE("vulkan get_rows matches the CPU for F32, F16, BF16 and Q8_0 tables", "[vulkan]") {
    VK_OR_SKIP(ctx);
    const DType type = GENERATE(DType::F32, DType::F16, DType::BF16, DType::Q8_0);
    const int64_t dim = type == DType::Q8_0 ? 96 : 37, n_rows = 1000;
    const Tensor table = make_weight(type, dim, n_rows, random_floats(size_t(dim * n_rows), 51));
    const std::vector<int32_t> ids = {0, 999, 7, 7, 500, 1, 998};
    const vk::DeviceMatrix dt = vk::upload_matrix(*ctx, table);
    vk::check_row_ids(dt, ids.data(), int64_t(ids.size()));
    vk::Buffer did(*ctx, ids.size() * 4), dout(*ctx, ids.size() * uint64_t(dim) * 4);
    vk::upload(*ctx, did, ids.data(), ids.size() * 4);
    vk::Recorder rec(*ctx);
    rec.begin();
    vk::get_rows(rec, dt, did, dout, int64_t(ids.size()));
    rec.submit_and_wait();
    std::vector<float> ref(ids.size() * size_t(dim));
    ops::get_rows(table, ids.data(), int64_t(ids.size()), ref.data());
    require_close(vk::download_floats(*ctx, dout, ref.size()), ref, 0.0f, 0.0f);  // exact: same formula

    // From an offset into the ids: the last three.
    rec.begin();
    vk::get_rows(rec, dt, did, dout, 3, int64_t(ids.size()) - 3);
    rec.submit_and_wait();
    const std::vector<float> tail(ref.end() - 3 * dim, ref.end());
    require_close(vk::download_floats(*ctx, dout, tail.size()), tail, 0.0f, 0.0f);
    rec.begin();
    CHECK_THROWS_AS(vk::get_rows(rec, dt, did, dout, 3, int64_t(ids.size()) - 2), std::invalid_argument);
    rec.end();

    const int32_t bad[] = {3, 1000};
    try {
        vk::check_row_ids(dt, bad, 2);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Model);
        CHECK(std::string(e.what()).find("row id 1000 outside [0, 1000)") != std::string::npos);
    }
}

TEST_CASE("vulkan greedy_pick picks what argmax() picks: ties to the lowest index, NaN as the host takes it, row by row",
          "[vulkan]") {
    VK_OR_SKIP(ctx);
    const int64_t n = GENERATE(1, 7, 13, 127, 576, 960, 1023, 49152);
    INFO("n = " << n);
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    std::vector<std::vector<float>> cases;
    cases.push_back(random_floats(size_t(n), 61));
    std::vector<float> ties(size_t(n), 0.5f);  // equals everywhere: index 0
    cases.push_back(ties);
    if (n > 2) {
        ties[size_t(n / 2)] = 2.0f;  // two equal maxima, the later one in another invocation's stride
        ties[size_t(n - 1)] = 2.0f;
        cases.push_back(ties);
        std::vector<float> x = random_floats(size_t(n), 62);
        x[size_t(n - 2)] = nan;  // a NaN never wins...
        x[1] = inf;
        x[size_t(n - 1)] = inf;  // ...and of two infinities the first does
        cases.push_back(x);
        x[0] = nan;  // ...except at index 0, which nothing can beat
        cases.push_back(x);
        cases.push_back(std::vector<float>(size_t(n), -inf));
    }
    // The cases one by one, then all of them as the rows of one pick (one workgroup a row).
    const int64_t R = int64_t(cases.size());
    std::vector<float> all;
    for (const auto& x : cases) all.insert(all.end(), x.begin(), x.end());
    vk::Buffer dx(*ctx, uint64_t(n) * 4), rows(*ctx, uint64_t(R * n) * 4), ids(*ctx, uint64_t(R + 2) * 4),
        pos(*ctx, uint64_t(R) * 4);
    vk::Recorder rec(*ctx);
    std::vector<int32_t> want_rows;
    for (size_t c = 0; c < cases.size(); ++c) {
        INFO("case " << c);
        vk::upload(*ctx, dx, cases[c].data(), uint64_t(n) * 4);
        vk::upload(*ctx, ids, std::vector<int32_t>(size_t(R + 2), -1).data(), uint64_t(R + 2) * 4);
        const int32_t start = 1234 + int32_t(c);
        vk::upload(*ctx, pos, &start, 4);
        rec.begin();
        vk::greedy_pick(rec, dx, n, ids, 1, &pos);
        vk::greedy_pick(rec, dx, n, ids, 2);  // no position
        rec.submit_and_wait();
        std::vector<int32_t> got(3);
        int32_t got_pos = 0;
        vk::download(*ctx, ids, got.data(), 3 * 4);
        vk::download(*ctx, pos, &got_pos, 4);
        const int32_t want = argmax(cases[c].data(), int(n));
        want_rows.push_back(want);
        CHECK(got[0] == -1);  // only its slot is written
        CHECK(got[1] == want);
        CHECK(got[2] == want);
        CHECK(got_pos == start + 1);  // the next position
    }
    std::vector<int32_t> starts(static_cast<size_t>(R));
    for (int64_t r = 0; r < R; ++r) starts[size_t(r)] = int32_t(10 * r);
    vk::upload(*ctx, rows, all.data(), uint64_t(R * n) * 4);
    vk::upload(*ctx, ids, std::vector<int32_t>(size_t(R + 2), -1).data(), uint64_t(R + 2) * 4);
    vk::upload(*ctx, pos, starts.data(), uint64_t(R) * 4);
    rec.begin();
    vk::greedy_pick(rec, rows, n, ids, 1, &pos, R);
    rec.submit_and_wait();
    std::vector<int32_t> got(size_t(R + 2)), got_pos(static_cast<size_t>(R));
    vk::download(*ctx, ids, got.data(), uint64_t(R + 2) * 4);
    vk::download(*ctx, pos, got_pos.data(), uint64_t(R) * 4);
    CHECK(got.front() == -1);
    CHECK(got.back() == -1);
    CHECK(std::vector<int32_t>(got.begin() + 1, got.end() - 1) == want_rows);
    for (int64_t r = 0; r < R; ++r) CHECK(got_pos[size_t(r)] == starts[size_t(r)] + 1);
    rec.begin();
    CHECK_THROWS_AS(vk::greedy_pick(rec, dx, n, ids, R + 2), std::invalid_argument);  // slot past the buffer
    CHECK_THROWS_AS(vk::greedy_pick(rec, rows, n, ids, 3, nullptr, R), std::invalid_argument);  // rows past it
    CHECK_THROWS_AS(vk::greedy_pick(rec, dx, n, ids, 0, nullptr, 2), std::invalid_argument);  // x holds one row
    CHECK_THROWS_AS(vk::greedy_pick(rec, dx, 0, ids, 0), std::invalid_argument);
    CHECK_THROWS_AS(vk::greedy_pick(rec, dx, n, ids, 0, &ids), std::invalid_argument);
    rec.end();
}

TEST_CASE("vulkan attention (causal, non-causal, GQA) matches the CPU", "[vulkan]") {
    VK_OR_SKIP(ctx);
    struct Shape {
        int64_t n_q, n_kv, heads, kv_heads, dim;
        bool causal;
        int64_t q_pos0;
    };
    const Shape shapes[] = {
        {1, 1, 1, 1, 8, false, 0},       {7, 7, 4, 2, 64, true, 0},    {1, 130, 6, 2, 64, true, 129},
        {13, 129, 3, 3, 80, false, 0},   {5, 200, 8, 1, 32, true, 60}, {3, 65, 2, 2, 256, true, 62},
        {127, 127, 2, 1, 16, true, 0},
        // several query blocks and key tiles (tiled), key chunks past 2048 (per row)
        {70, 90, 3, 1, 64, true, 20},    {40, 300, 2, 2, 128, false, 0}, {2, 2100, 2, 1, 64, true, 2098},
        {40, 600, 2, 2, 64, false, 0},   {40, 300, 2, 2, 112, true, 260}, {20, 33, 5, 5, 12, true, 13},
        // split keys (decode): up to 32 splits, causal rows whose later splits see no key
        {1, 640, 15, 5, 64, true, 639},  {4, 3000, 3, 1, 64, true, 2996}, {3, 200, 4, 2, 128, true, 150},
        {1, 129, 2, 2, 256, true, 128},  {2, 500, 3, 3, 13, false, 0},
        // blocked: rows past the last full block, a head_dim whose columns do not fill the
        // invocations (36: 9 vec4s of 16), a short one, a SigLIP-sized block of heads
        {33, 33, 2, 1, 36, false, 0},    {65, 97, 2, 2, 4, true, 40},  {257, 257, 3, 3, 64, false, 0},
        {48, 48, 2, 2, 48, true, 0},
    };
    // One scratch for every split shape: the last split of each (row, head) sets its counter
    // back to zero, so each dispatch finds them as the one before left them.
    int64_t most = 0;
    for (const Shape& s : shapes) most = std::max(most, vk::attention_partial_floats(s.n_q, s.heads, s.dim));
    vk::Buffer partials(*ctx, uint64_t(most) * 4);
    vk::upload(*ctx, partials, std::vector<uint32_t>(size_t(most), 0u).data(), uint64_t(most) * 4);
    for (const Shape& s : shapes)
        for (const int kernel : {0, 1, 2, 3}) {  // per row, per row with split keys, tiled, blocked
            const vk::AttentionPath path = kernel == 3   ? vk::AttentionPath::Blocked
                                           : kernel == 2 ? vk::AttentionPath::Tiled
                                                         : vk::AttentionPath::PerRow;
            if (path == vk::AttentionPath::Tiled && (s.dim > vk::kVkAttentionTiledMaxDim || s.dim % 4 != 0)) continue;
            if (path == vk::AttentionPath::Blocked && (s.dim > vk::kVkAttentionBlockedMaxDim || s.dim % 4 != 0))
                continue;
            // Split only where vk::attention would: few (row, head) pairs, 2 × 64 keys or more.
            const bool splits = s.n_q * s.heads < vk::kVkAttentionSplitBelow && s.n_kv >= 2 * vk::kVkAttentionSplitKeys;
            if (kernel == 1 && !splits) continue;
            INFO("n_q=" << s.n_q << " n_kv=" << s.n_kv << " heads=" << s.heads << "/" << s.kv_heads
                        << " dim=" << s.dim << " causal=" << s.causal << " q_pos0=" << s.q_pos0
                        << (kernel == 3   ? " blocked"
                            : kernel == 2 ? " tiled"
                            : kernel == 1 ? " per row, split"
                                          : " per row"));
            const size_t nq = size_t(s.n_q * s.heads * s.dim), nk = size_t(s.n_kv * s.kv_heads * s.dim);
            const auto q = random_floats(nq, 61, 2.0f), k = random_floats(nk, 62, 2.0f), v = random_floats(nk, 63);
            const float scale = 1.0f / std::sqrt(float(s.dim));
            vk::Buffer dq = vk::upload_floats(*ctx, q), dk = vk::upload_floats(*ctx, k);
            vk::Buffer dv = vk::upload_floats(*ctx, v);
            vk::Buffer dout(*ctx, nq * 4);
            vk::Recorder rec(*ctx);
            rec.begin();
            vk::attention(rec, dq, dk, dv, dout, s.n_q, s.n_kv, s.heads, s.kv_heads, s.dim, scale, s.causal, s.q_pos0,
                          path, kernel == 1 ? &partials : nullptr);
            rec.submit_and_wait();
            std::vector<float> ref(nq);
            ops::attention(q.data(), k.data(), v.data(), ref.data(), s.n_q, s.n_kv, s.heads, s.kv_heads, s.dim, scale,
                           s.causal, s.q_pos0, reference_pool());
            require_close(vk::download_floats(*ctx, dout, nq), ref, 2e-5f, 1e-4f);
        }
}

TEST_CASE("vulkan attention of a batch (the ViT's tiles) is each batch's own attention, by every kernel",
          "[vulkan]") {
    VK_OR_SKIP(ctx);
    using Shape = glimpse::test::AttentionShape;
    const Shape shapes[] = {
        {3, 40, 40, 3, 3, 64, false, 0}, {2, 33, 50, 4, 2, 32, true, 17}, {4, 2, 200, 2, 1, 64, true, 198},
        {3, 65, 65, 2, 2, 128, false, 0},
    };
    using P = vk::AttentionPath;
    for (const Shape& s : shapes)
        for (const P path : {P::PerRow, P::Tiled, P::Blocked}) {
            if (path != P::PerRow && s.dim > (path == P::Tiled ? vk::kVkAttentionTiledMaxDim : vk::kVkAttentionBlockedMaxDim))
                continue;
            INFO("batch=" << s.batch << " n_q=" << s.n_q << " n_kv=" << s.n_kv << " heads=" << s.heads << "/" << s.kv_heads
                          << " dim=" << s.dim << " causal=" << s.causal << " path=" << int(path));
            const size_t nq = size_t(s.n_q * s.heads * s.dim), nk = size_t(s.n_kv * s.kv_heads * s.dim);
            const size_t B = size_t(s.batch);
            const auto q = random_floats(B * nq, 81, 2.0f), k = random_floats(B * nk, 82, 2.0f);
            const auto v = random_floats(B * nk, 83);
            const float scale = 1.0f / std::sqrt(float(s.dim));
            vk::Buffer dq = vk::upload_floats(*ctx, q), dk = vk::upload_floats(*ctx, k), dv = vk::upload_floats(*ctx, v);
            vk::Buffer dout(*ctx, B * nq * 4);
            vk::Buffer partials = vk::attention_partials(*ctx, s.batch * s.n_q, s.heads, s.dim);
            vk::Recorder rec(*ctx);
            rec.begin();
            vk::attention(rec, dq, dk, dv, dout, s.n_q, s.n_kv, s.heads, s.kv_heads, s.dim, scale, s.causal, s.q_pos0,
                          path, &partials, s.batch);
            rec.submit_and_wait();
            std::vector<float> ref(B * nq);
            for (size_t b = 0; b < B; ++b)
                ops::attention(q.data() + b * nq, k.data() + b * nk, v.data() + b * nk, ref.data() + b * nq, s.n_q,
                               s.n_kv, s.heads, s.kv_heads, s.dim, scale, s.causal, s.q_pos0, reference_pool());
            require_close(vk::download_floats(*ctx, dout, B * nq), ref, 2e-5f, 1e-4f);
        }
}

TEST_CASE("attention takes the blocked kernel for many rows of head_dim <= 64 (causal ones on a CPU device)", "[vulkan]") {
    VK_OR_SKIP(ctx);
    using P = vk::AttentionPath;
    const bool room = ctx->info().max_shared_memory >= 26624;  // attention_block.comp's stage
    CHECK(vk::attention_path(*ctx, 1024, 64, false) == (room ? P::Blocked : P::Tiled));  // a SigLIP tile
    CHECK(vk::attention_path(*ctx, 577, 128, false) == P::Tiled);
    const bool cpu = ctx->info().type == vk::DeviceType::Cpu;  // lavapipe: causal prefill blocked too
    CHECK(vk::attention_path(*ctx, 512, 64, true) == (room && cpu ? P::Blocked : P::PerRow));  // causal prefill
    CHECK(vk::attention_path(*ctx, 15, 64, false) == P::PerRow);  // few rows
    CHECK(vk::attention_path(*ctx, 1, 64, true) == P::PerRow);    // decode
    CHECK(vk::attention_path(*ctx, 1024, 66, false) == P::PerRow);
    // Forced on (causal prefill too) and off.
    for (const bool on : {true, false}) {
        vk::ContextOptions o;
        o.attention_blocked = on;
        vk::Context forced(ctx->info().index, o);
        INFO("attention_blocked = " << on);
        CHECK(vk::attention_path(forced, 512, 64, true) == (on && room ? P::Blocked : P::PerRow));
        CHECK(vk::attention_path(forced, 1024, 64, false) == (on && room ? P::Blocked : P::Tiled));
        CHECK(vk::attention_path(forced, 512, 128, true) == P::PerRow);
    }
}

TEST_CASE("vulkan copy (KV-cache write, row picking) moves exactly the range asked", "[vulkan]") {
    VK_OR_SKIP(ctx);
    struct Case {
        int64_t src_n, dst_n, src_off, dst_off, n;
    };
    const Case cases[] = {{1, 1, 0, 0, 1}, {13, 127, 6, 100, 7}, {1023, 2000, 0, 977, 1023}, {576, 576, 575, 0, 1}};
    for (const Case& c : cases) {
        INFO("src " << c.src_n << " dst " << c.dst_n << " offsets " << c.src_off << "/" << c.dst_off << " n " << c.n);
        const auto src = random_floats(size_t(c.src_n), 71), dst = random_floats(size_t(c.dst_n), 72);
        vk::Buffer ds = vk::upload_floats(*ctx, src), dd = vk::upload_floats(*ctx, dst);
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::copy(rec, ds, c.src_off, dd, c.dst_off, c.n);
        rec.submit_and_wait();
        std::vector<float> ref = dst;  // everything outside the range stays
        for (int64_t i = 0; i < c.n; ++i) ref[size_t(c.dst_off + i)] = src[size_t(c.src_off + i)];
        CHECK(vk::download_floats(*ctx, dd, uint64_t(c.dst_n)) == ref);
    }
    vk::Buffer a = vk::upload_floats(*ctx, random_floats(8, 1));
    vk::Recorder rec(*ctx);
    rec.begin();
    CHECK_THROWS_AS(vk::copy(rec, a, 4, a, 0, 4), std::invalid_argument);  // same buffer
    vk::Buffer b(*ctx, 16);
    CHECK_THROWS_AS(vk::copy(rec, a, 6, b, 0, 3), std::invalid_argument);  // past the end of src
    rec.submit_and_wait();
}

TEST_CASE("vulkan im2col + matmul equals patch_embed; im2col of two tiles at an offset", "[vulkan]") {
    VK_OR_SKIP(ctx);
    struct Shape {
        int64_t C, H, W, p, D;
    };
    // H, W not multiples of p (the remainder is ignored); one patch; many small patches.
    const Shape shapes[] = {{3, 16, 16, 16, 7}, {3, 29, 35, 7, 13}, {1, 4, 4, 1, 5}, {3, 64, 64, 8, 33}};
    for (const Shape& s : shapes) {
        INFO("C=" << s.C << " H=" << s.H << " W=" << s.W << " p=" << s.p << " D=" << s.D);
        const int64_t img = s.C * s.H * s.W, K = s.C * s.p * s.p, P = (s.H / s.p) * (s.W / s.p);
        // Three images one after another; the second and third are embedded, in one dispatch.
        const auto images = random_floats(size_t(3 * img), 81);
        const auto kernel = random_floats(size_t(K * s.D), 82, 0.2f);
        Tensor kt = make_weight(DType::F32, K, s.D, kernel);
        Tensor conv = kt;  // the same bytes as ne {p, p, C, D}
        conv.n_dims = 4;
        conv.ne = {s.p, s.p, s.C, s.D};
        conv.nb = contiguous_strides(DType::F32, conv.ne);
        std::vector<float> ref(size_t(2 * P * s.D));
        for (int64_t i = 0; i < 2; ++i)
            ops::patch_embed(images.data() + (1 + i) * img, s.C, s.H, s.W, conv, nullptr, s.p,
                             ref.data() + i * P * s.D, reference_pool());

        vk::Buffer dimg = vk::upload_floats(*ctx, images);
        vk::Buffer cols(*ctx, uint64_t(2 * P * K) * 4), out(*ctx, uint64_t(2 * P * s.D) * 4);
        const vk::DeviceMatrix dk = vk::upload_matrix(*ctx, kt);
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::im2col(rec, dimg, img, s.C, s.H, s.W, s.p, cols, 2);
        vk::matmul(rec, dk, cols, out, 2 * P);
        rec.submit_and_wait();
        require_close(vk::download_floats(*ctx, out, uint64_t(2 * P * s.D)), ref, 1e-4f, 1e-4f);
        // The rows themselves: cols[i][r·gw + c][(ch·p + kh)·p + kw] = image 1 + i [ch][r·p + kh][c·p + kw].
        const std::vector<float> got = vk::download_floats(*ctx, cols, uint64_t(2 * P * K));
        const int64_t gw = s.W / s.p;
        bool same = true;
        for (int64_t i = 0; i < 2; ++i)
            for (int64_t patch = 0; patch < P; ++patch)
                for (int64_t ch = 0; ch < s.C; ++ch)
                    for (int64_t kh = 0; kh < s.p; ++kh)
                        for (int64_t kw = 0; kw < s.p; ++kw)
                            same = same && got[size_t((i * P + patch) * K + (ch * s.p + kh) * s.p + kw)] ==
                                               images[size_t((1 + i) * img + (ch * s.H + (patch / gw) * s.p + kh) * s.W +
                                                             (patch % gw) * s.p + kw)];
        CHECK(same);
    }
}

TEST_CASE("vulkan pixel_shuffle equals the CPU on several tiles", "[vulkan]") {
    VK_OR_SKIP(ctx);
    struct Shape {
        int64_t tiles, side, dim, s;
    };
    const Shape shapes[] = {{1, 2, 1, 2}, {3, 6, 7, 3}, {2, 8, 13, 4}, {1, 32, 64, 4}};
    for (const Shape& sh : shapes) {
        INFO("tiles=" << sh.tiles << " side=" << sh.side << " dim=" << sh.dim << " s=" << sh.s);
        const int64_t seq = sh.side * sh.side, per_tile = seq * sh.dim;
        const auto x = random_floats(size_t(sh.tiles * per_tile), 91);
        std::vector<float> ref(x.size());
        for (int64_t t = 0; t < sh.tiles; ++t)
            ops::pixel_shuffle(x.data() + t * per_tile, seq, sh.dim, sh.s, ref.data() + t * per_tile);
        vk::Buffer dx = vk::upload_floats(*ctx, x), dy(*ctx, x.size() * 4);
        vk::Recorder rec(*ctx);
        rec.begin();
        vk::pixel_shuffle(rec, dx, sh.tiles, seq, sh.dim, sh.s, dy);
        rec.submit_and_wait();
        CHECK(vk::download_floats(*ctx, dy, x.size()) == ref);
    }
}

// ---- profiling (Context::set_profiling): GPU time by shader from timestamp queries -------------

TEST_CASE("vulkan profiling times every dispatch, by shader", "[vulkan][vk_profile]") {
    VK_OR_SKIP(ctx);
    if (ctx->timestamp_bits() == 0) {
        WARN("SKIPPED: the compute queue of " << ctx->label() << " has no timestamps");
        return;
    }
    const int64_t n = 4096, K = 512, M = 64;
    vk::Buffer a = vk::upload_floats(*ctx, random_floats(n, 1));
    vk::Buffer b = vk::upload_floats(*ctx, random_floats(n, 2));
    vk::Buffer y(*ctx, uint64_t(n) * 4);
    const Tensor W = make_weight(DType::F32, K, K, random_floats(K * K, 3));
    const vk::DeviceMatrix dw = vk::upload_matrix(*ctx, W);
    vk::Buffer x = vk::upload_floats(*ctx, random_floats(M * K, 4));
    vk::Buffer z(*ctx, uint64_t(M * K) * 4);
    vk::Recorder rec(*ctx);
    auto record = [&](int adds) {
        rec.begin();
        for (int i = 0; i < adds; ++i) vk::add(rec, a, b, y, n);
        vk::matmul(rec, dw, x, z, M, vk::MatmulPath::Tiled);  // 64×512×512: ~1000× the work of an add
        vk::rms_norm(rec, y, nullptr, y, 1, n, 1e-6f);
        rec.submit_and_wait();
    };

    SECTION("off: nothing is gathered") {
        ctx->take_profile();
        record(3);
        CHECK(ctx->take_profile().submissions == 0);
    }
    SECTION("on: the counts are the dispatches, the times add up to the stream's") {
        REQUIRE(ctx->set_profiling(true));
        ctx->take_profile();
        record(3);
        record(3);
        const vk::DeviceProfile p = ctx->take_profile();
        ctx->set_profiling(false);
        CHECK(p.submissions == 2);
        CHECK(p.untimed == 0);
        REQUIRE(p.shaders.size() == 3);
        CHECK(p.shaders.at("binary").dispatches == 6);
        CHECK(p.shaders.at("matmul_f32").dispatches == 2);
        CHECK(p.shaders.at("rms_norm").dispatches == 2);
        double sum = 0;
        for (const auto& [name, t] : p.shaders) {
            CHECK(t.ms >= 0);
            sum += t.ms;
        }
        CHECK(p.gpu_ms > 0);
        CHECK(sum == Approx(p.gpu_ms).epsilon(1e-9));
        CHECK(ctx->take_profile().submissions == 0);  // taking clears
    }
    SECTION("the timestamps measure work: a 64×512×512 matmul takes longer than three adds of 4096") {
        // Each dispatch's time is wall time on a CPU device such as lavapipe, so one descheduled
        // worker thread can make three adds look slower than the matmul (seen once in CI under
        // the sanitizers: 55 ms of adds). The fastest of five streams is each shader's own time.
        REQUIRE(ctx->set_profiling(true));
        ctx->take_profile();
        double matmul = 1e30, adds = 1e30;
        for (int i = 0; i < 5; ++i) {
            record(3);
            const vk::DeviceProfile p = ctx->take_profile();
            matmul = std::min(matmul, p.shaders.at("matmul_f32").ms);
            adds = std::min(adds, p.shaders.at("binary").ms);
        }
        ctx->set_profiling(false);
        CHECK(matmul > adds);
    }
    SECTION("a stream longer than the query pool: the rest counted as untimed, the pool grows") {
        REQUIRE(ctx->set_profiling(true));
        ctx->take_profile();
        record(1500);  // 1502 dispatches; the first pool holds 1024 timestamps
        const vk::DeviceProfile first = ctx->take_profile();
        CHECK(first.untimed == 1502 - 1023);
        CHECK(first.shaders.at("binary").dispatches == 1023);
        record(1500);
        const vk::DeviceProfile second = ctx->take_profile();
        ctx->set_profiling(false);
        CHECK(second.untimed == 0);
        CHECK(second.shaders.at("binary").dispatches == 1500);
        CHECK(second.shaders.at("matmul_f32").dispatches == 1);
    }
}
