// Vision towers without golden data: tokens per tile, normalisation, the projectors on
// hand-checkable inputs, the encoder against a plain double-precision re-implementation on
// awkward shapes (SigLIP and CLIP layouts), invariance to threads and batching, and mmproj
// files that are broken in one way each (built with GgufWriter).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ops.h"
#include "core/thread_pool.h"
#include "helpers.h"
#include "vision/vit_forward.h"
#include "vision/vit_model.h"
#include "weights/gguf.h"

using namespace glimpse;
using glimpse::test::random_floats;
using glimpse::test::TempDir;

namespace {

VisionConfig shaped(int image, int patch, ProjectorKind kind, int scale, bool class_token) {
    VisionConfig c;
    c.image_size = image;
    c.patch_size = patch;
    c.has_class_token = class_token;
    c.projector.kind = kind;
    c.projector.scale_factor = scale;
    c.projector.n_out = 576;
    return c;
}

Tensor f32_tensor(const std::string& name, std::array<int64_t, 4> ne, int n_dims, uint64_t seed, float scale) {
    Tensor t = make_f32(name, ne, n_dims);
    const auto v = random_floats(size_t(t.numel()), seed, scale);
    std::memcpy(f32_data(t), v.data(), v.size() * sizeof(float));
    return t;
}

// The random SigLIP model turned into the CLIP / LLaVA layout: class token, pre-LN, no post-LN,
// quick-GELU, MLP projector.
VisionModel make_random_clip(int image, int patch, int D, int heads, int F, int layers, int hidden, int n_out) {
    VisionModel m = make_random_siglip(image, patch, D, heads, F, layers, 1, n_out, false, 99);
    VisionConfig& c = m.config;
    VisionWeights& w = m.weights;
    c.kind = VisionKind::CLIP;
    c.has_patch_bias = false;
    c.has_class_token = true;
    c.pre_layernorm = true;
    c.post_layernorm = false;
    c.activation = VisionActivation::QuickGelu;
    c.projector = {ProjectorKind::Mlp, 1, hidden, n_out};
    w.patch_b = {};
    w.post_ln_w = w.post_ln_b = {};
    w.class_embd = f32_tensor("v.class_embd", {D, 1, 1, 1}, 1, 11, 0.5f);
    w.position_embd = f32_tensor("v.position_embd.weight", {D, c.n_positions(), 1, 1}, 2, 12, 0.2f);
    w.pre_ln_w = f32_tensor("v.pre_ln.weight", {D, 1, 1, 1}, 1, 13, 1.0f);
    w.pre_ln_b = f32_tensor("v.pre_ln.bias", {D, 1, 1, 1}, 1, 14, 0.1f);
    w.projector = {};
    w.projector.mm0_w = f32_tensor("mm.0.weight", {D, hidden, 1, 1}, 2, 15, 0.3f);
    w.projector.mm0_b = f32_tensor("mm.0.bias", {hidden, 1, 1, 1}, 1, 16, 0.1f);
    w.projector.mm2_w = f32_tensor("mm.2.weight", {hidden, n_out, 1, 1}, 2, 17, 0.3f);
    w.projector.mm2_b = f32_tensor("mm.2.bias", {n_out, 1, 1, 1}, 1, 18, 0.1f);
    detail::check_vision_model(m.path, c, w);
    return m;
}

// ---- a plain double-precision re-implementation of the forward pass (F32 weights) -------------

using Rows = std::vector<std::vector<double>>;

double at(const Tensor& t, int64_t i) { return f32_data(t)[i]; }

Rows linear_ref(const Rows& x, const Tensor& W, const Tensor* b) {
    const int64_t K = W.ne[0], N = W.ne[1];
    Rows y(x.size(), std::vector<double>(size_t(N)));
    for (size_t r = 0; r < x.size(); ++r)
        for (int64_t n = 0; n < N; ++n) {
            double s = b ? at(*b, n) : 0.0;
            for (int64_t k = 0; k < K; ++k) s += x[r][size_t(k)] * at(W, n * K + k);
            y[r][size_t(n)] = s;
        }
    return y;
}

Rows layer_norm_ref(const Rows& x, const Tensor& w, const Tensor& b, double eps) {
    Rows y = x;
    for (auto& row : y) {
        double mean = 0, var = 0;
        for (double v : row) mean += v;
        mean /= double(row.size());
        for (double v : row) var += (v - mean) * (v - mean);
        var /= double(row.size());
        for (size_t i = 0; i < row.size(); ++i) row[i] = (row[i] - mean) / std::sqrt(var + eps) * at(w, int64_t(i)) + at(b, int64_t(i));
    }
    return y;
}

double act_ref(VisionActivation a, double x) {
    switch (a) {
        case VisionActivation::GeluTanh: return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
        case VisionActivation::GeluErf: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
        case VisionActivation::QuickGelu: return x / (1 + std::exp(-1.702 * x));
    }
    return 0;
}

Rows attention_ref(const Rows& q, const Rows& k, const Rows& v, int H) {
    const size_t T = q.size(), hd = q[0].size() / size_t(H);
    Rows out(T, std::vector<double>(q[0].size()));
    for (int h = 0; h < H; ++h)
        for (size_t i = 0; i < T; ++i) {
            std::vector<double> s(T);
            double mx = -1e300, sum = 0;
            for (size_t j = 0; j < T; ++j) {
                for (size_t d = 0; d < hd; ++d) s[j] += q[i][h * hd + d] * k[j][h * hd + d];
                s[j] /= std::sqrt(double(hd));
                mx = std::max(mx, s[j]);
            }
            for (double& e : s) sum += (e = std::exp(e - mx));
            for (size_t j = 0; j < T; ++j)
                for (size_t d = 0; d < hd; ++d) out[i][h * hd + d] += s[j] / sum * v[j][h * hd + d];
        }
    return out;
}

// One tile [3][S][S] -> [tokens_per_tile][n_out], straight from MODELS.md §3.4-3.5 / §4.3.
Rows encode_ref(const VisionModel& m, const float* tile) {
    const VisionConfig& c = m.config;
    const VisionWeights& w = m.weights;
    const int S = c.image_size, p = c.patch_size, G = S / p, D = c.n_embd;
    Rows x;
    if (c.has_class_token) x.emplace_back(f32_data(w.class_embd), f32_data(w.class_embd) + D);
    for (int r = 0; r < G; ++r)
        for (int col = 0; col < G; ++col) {
            std::vector<double> e(static_cast<size_t>(D));
            for (int o = 0; o < D; ++o) {
                double s = c.has_patch_bias ? at(w.patch_b, o) : 0.0;
                for (int ch = 0; ch < 3; ++ch)
                    for (int kh = 0; kh < p; ++kh)
                        for (int kw = 0; kw < p; ++kw)
                            s += at(w.patch_w, ((int64_t(o) * 3 + ch) * p + kh) * p + kw) *
                                 tile[(ch * S + r * p + kh) * S + col * p + kw];
                e[size_t(o)] = s;
            }
            x.push_back(e);
        }
    for (size_t i = 0; i < x.size(); ++i)
        for (int d = 0; d < D; ++d) x[i][size_t(d)] += at(w.position_embd, int64_t(i) * D + d);
    if (c.pre_layernorm) x = layer_norm_ref(x, w.pre_ln_w, w.pre_ln_b, c.layer_norm_eps);
    for (const auto& L : w.layers) {
        Rows h = layer_norm_ref(x, L.ln1_w, L.ln1_b, c.layer_norm_eps);
        Rows a = linear_ref(attention_ref(linear_ref(h, L.q_w, &L.q_b), linear_ref(h, L.k_w, &L.k_b),
                                          linear_ref(h, L.v_w, &L.v_b), c.n_heads),
                            L.o_w, &L.o_b);
        for (size_t i = 0; i < x.size(); ++i)
            for (int d = 0; d < D; ++d) x[i][size_t(d)] += a[i][size_t(d)];
        Rows f = linear_ref(layer_norm_ref(x, L.ln2_w, L.ln2_b, c.layer_norm_eps), L.fc1_w, &L.fc1_b);
        for (auto& row : f)
            for (double& v : row) v = act_ref(c.activation, v);
        f = linear_ref(f, L.fc2_w, &L.fc2_b);
        for (size_t i = 0; i < x.size(); ++i)
            for (int d = 0; d < D; ++d) x[i][size_t(d)] += f[i][size_t(d)];
    }
    if (c.post_layernorm) x = layer_norm_ref(x, w.post_ln_w, w.post_ln_b, c.layer_norm_eps);
    if (c.has_class_token) x.erase(x.begin());
    const ProjectorWeights& pw = w.projector;
    if (c.projector.kind == ProjectorKind::Mlp) {
        Rows h = linear_ref(x, pw.mm0_w, &pw.mm0_b);
        for (auto& row : h)
            for (double& v : row) v = act_ref(VisionActivation::GeluErf, v);
        return linear_ref(h, pw.mm2_w, &pw.mm2_b);
    }
    const int s = c.projector.scale_factor, Gs = G / s;  // MODELS.md §3.5 closed form
    Rows shuffled(size_t(Gs * Gs), std::vector<double>(size_t(D * s * s)));
    for (int R = 0; R < Gs; ++R)
        for (int C = 0; C < Gs; ++C)
            for (int dh = 0; dh < s; ++dh)
                for (int dw = 0; dw < s; ++dw)
                    for (int e = 0; e < D; ++e)
                        shuffled[size_t(R * Gs + C)][size_t(dh * s * D + dw * D + e)] = x[size_t((s * R + dh) * G + s * C + dw)][size_t(e)];
    return linear_ref(shuffled, pw.fc, nullptr);
}

void check_against_reference(const VisionModel& m, int n_tiles) {
    const VisionConfig& c = m.config;
    const size_t tile_in = 3 * size_t(c.image_size) * c.image_size;
    const auto tiles = random_floats(tile_in * n_tiles, 5, 1.0f);
    const size_t tile_out = size_t(tokens_per_tile(c)) * projected_dim(c);
    std::vector<float> out(tile_out * n_tiles);
    ThreadPool pool(2);
    encode_tiles(m, tiles.data(), n_tiles, out.data(), pool);
    for (int t = 0; t < n_tiles; ++t) {
        const Rows ref = encode_ref(m, tiles.data() + t * tile_in);
        REQUIRE(ref.size() == size_t(tokens_per_tile(c)));
        for (size_t r = 0; r < ref.size(); ++r)
            for (size_t i = 0; i < ref[r].size(); ++i) {
                const float got = out[t * tile_out + r * ref[r].size() + i];
                INFO("tile " << t << " token " << r << " channel " << i << ": " << got << " vs " << ref[r][i]);
                REQUIRE(glimpse::test::close_enough(got, float(ref[r][i]), 2e-4f, 2e-4f));
            }
    }
}

}  // namespace

TEST_CASE("vit: tokens per tile and projected width", "[vit]") {
    CHECK(tokens_per_tile(shaped(512, 16, ProjectorKind::Idefics3, 4, false)) == 64);   // SmolVLM
    CHECK(tokens_per_tile(shaped(336, 14, ProjectorKind::Mlp, 1, true)) == 576);        // LLaVA-1.5
    CHECK(tokens_per_tile(shaped(128, 16, ProjectorKind::Idefics3, 4, false)) == 4);    // golden tiny
    CHECK(tokens_per_tile(shaped(384, 14, ProjectorKind::Idefics3, 3, false)) == 81);   // Idefics3 27²/3²
    CHECK(shaped(336, 14, ProjectorKind::Mlp, 1, true).n_positions() == 577);
    CHECK(projected_dim(shaped(512, 16, ProjectorKind::Idefics3, 4, false)) == 576);
}

TEST_CASE("vit: tiles are normalised planar as (u8/255 - mean) / std", "[vit]") {
    VisionConfig c = shaped(2, 1, ProjectorKind::Mlp, 1, false);
    const float mean[3] = {0.5f, 0.25f, 0.0f}, stdv[3] = {0.5f, 0.25f, 2.0f};
    std::copy(mean, mean + 3, c.image_mean);
    std::copy(stdv, stdv + 3, c.image_std);
    const uint8_t rgb[12] = {0, 255, 51, 255, 0, 102, 0, 0, 0, 255, 255, 255};  // [2][2][3]
    float out[12];
    normalize_tile_u8(c, rgb, out);
    const float expect[12] = {-1, 1, -1, 1,  // R plane
                              3, -1, -1, 3,  // G plane
                              0.1f, 0.2f, 0, 0.5f};
    for (int i = 0; i < 12; ++i) CHECK(out[i] == Approx(expect[i]).margin(1e-6));
}

TEST_CASE("vit: Idefics3 projector applies the pixel shuffle of MODELS.md 3.5", "[vit]") {
    // Patch p channel e holds p*1000 + e; an identity fc exposes the shuffled token directly.
    const int side = 8, s = 4, D = 3, P = side * side, G = side / s, W = D * s * s, n_tiles = 2;
    ProjectorConfig c{ProjectorKind::Idefics3, s, 0, W};
    ProjectorWeights w;
    w.fc = make_f32("fc", {W, W, 1, 1}, 2);
    for (int i = 0; i < W; ++i) f32_data(w.fc)[i * W + i] = 1.0f;
    std::vector<float> x(size_t(n_tiles) * P * D);
    for (int t = 0; t < n_tiles; ++t)
        for (int p = 0; p < P; ++p)
            for (int e = 0; e < D; ++e) x[size_t((t * P + p) * D + e)] = float(t * 100000 + p * 1000 + e);
    const int tok = projector_tokens(c, P);
    REQUIRE(tok == G * G);
    std::vector<float> out(size_t(n_tiles) * tok * W), scratch(size_t(projector_scratch_floats(c, n_tiles, P, D)));
    ThreadPool pool(2);
    project(c, w, x.data(), n_tiles, P, D, out.data(), scratch.data(), pool);
    for (int t = 0; t < n_tiles; ++t)
        for (int R = 0; R < G; ++R)
            for (int C = 0; C < G; ++C)
                for (int dh = 0; dh < s; ++dh)
                    for (int dw = 0; dw < s; ++dw)
                        for (int e = 0; e < D; ++e) {
                            const float got = out[size_t((t * tok + R * G + C) * W + dh * s * D + dw * D + e)];
                            CHECK(got == float(t * 100000 + ((s * R + dh) * side + s * C + dw) * 1000 + e));
                        }
}

TEST_CASE("vit: MLP projector is linear_2(gelu_erf(linear_1(x)))", "[vit]") {
    // One row x = (1, -2); linear_1 = [[1, 0], [1, 1]] + (0.5, 0); linear_2 = [[2, -1]] + 0.25.
    ProjectorConfig c{ProjectorKind::Mlp, 1, 2, 1};
    ProjectorWeights w;
    w.mm0_w = make_f32("mm.0.weight", {2, 2, 1, 1}, 2);
    w.mm0_b = make_f32("mm.0.bias", {2, 1, 1, 1}, 1);
    w.mm2_w = make_f32("mm.2.weight", {2, 1, 1, 1}, 2);
    w.mm2_b = make_f32("mm.2.bias", {1, 1, 1, 1}, 1);
    const float m0[4] = {1, 0, 1, 1}, b0[2] = {0.5f, 0}, m2[2] = {2, -1};
    std::memcpy(f32_data(w.mm0_w), m0, sizeof m0);
    std::memcpy(f32_data(w.mm0_b), b0, sizeof b0);
    std::memcpy(f32_data(w.mm2_w), m2, sizeof m2);
    f32_data(w.mm2_b)[0] = 0.25f;
    const float x[2] = {1, -2};
    float out[1], scratch[2];
    ThreadPool pool(1);
    project(c, w, x, 1, 1, 2, out, scratch, pool);
    // h = (1.5, -1); gelu(1.5) = 0.75·(1 + erf(1.5/√2)) = 1.3997892, gelu(-1) = -0.5·(1 + erf(-1/√2))
    // = -0.15865525; y = 2·1.3997892 + 0.15865525 + 0.25
    CHECK(out[0] == Approx(3.2082337).epsilon(1e-6));
}


TEST_CASE("vit: SigLIP + Idefics3 encoder matches a plain re-implementation on awkward shapes", "[vit]") {
    // 30×30 tile, patch 6 (5×5 grid), width 20 with 4 heads of 5, FFN 36, scale 5 (one token).
    check_against_reference(make_random_siglip(30, 6, 20, 4, 36, 2, 5, 7, false, 3), 2);
    // 28×28, patch 7 (4×4 grid), scale 2 (4 tokens), one head of 12.
    check_against_reference(make_random_siglip(28, 7, 12, 1, 24, 1, 2, 5, false, 4), 3);
}

TEST_CASE("vit: CLIP + MLP encoder matches a plain re-implementation (class token first)", "[vit]") {
    check_against_reference(make_random_clip(30, 6, 20, 4, 36, 2, 11, 7), 2);
}

TEST_CASE("vit: results do not depend on threads or on how tiles are batched", "[vit]") {
    const VisionModel m = make_random_siglip(32, 8, 24, 3, 40, 2, 2, 6, false, 8);
    const int n = 3;
    const auto tiles = random_floats(size_t(n) * 3 * 32 * 32, 9, 1.0f);
    const size_t out_n = size_t(n) * tokens_per_tile(m.config) * projected_dim(m.config);
    std::vector<float> a(out_n), b(out_n), c(out_n);
    ThreadPool one(1), two(2);
    encode_tiles(m, tiles.data(), n, a.data(), one);
    VisionTimings t;
    encode_tiles(m, tiles.data(), n, b.data(), two, &t, nullptr, 1);  // one tile per batch
    encode_tiles(m, tiles.data(), n, c.data(), two);
    CHECK(t.tiles == n);
    for (size_t i = 0; i < out_n; ++i) {
        REQUIRE(b[i] == Approx(a[i]).margin(1e-6));
        REQUIRE(c[i] == Approx(a[i]).margin(1e-6));
    }
}

// ---- mmproj files with one thing wrong ---------------------------------------------------------

namespace {

// Writes `m` (a random SigLIP model) as an idefics3 mmproj; `edit_tensor` may rename/replace a
// tensor or return false to leave it out; `edit_meta` runs after the metadata is set.
std::string write_mmproj(const TempDir& dir, const VisionModel& m, const std::function<bool(Tensor&)>& edit_tensor,
                         const std::function<void(GgufWriter&)>& edit_meta) {
    const VisionConfig& c = m.config;
    GgufWriter w;
    w.set_str("general.architecture", "clip");
    w.set_bool("clip.has_vision_encoder", true);
    w.set_str("clip.projector_type", "idefics3");
    w.set_u32("clip.vision.image_size", uint32_t(c.image_size));
    w.set_u32("clip.vision.patch_size", uint32_t(c.patch_size));
    w.set_u32("clip.vision.embedding_length", uint32_t(c.n_embd));
    w.set_u32("clip.vision.feed_forward_length", uint32_t(c.n_ff));
    w.set_u32("clip.vision.block_count", uint32_t(c.n_layers));
    w.set_u32("clip.vision.attention.head_count", uint32_t(c.n_heads));
    w.set_f32("clip.vision.attention.layer_norm_epsilon", 1e-6f);
    w.set_u32("clip.vision.projection_dim", uint32_t(c.projector.n_out));
    w.set_f32_array("clip.vision.image_mean", {0.5f, 0.5f, 0.5f});
    w.set_f32_array("clip.vision.image_std", {0.5f, 0.5f, 0.5f});
    w.set_bool("clip.use_gelu", true);
    w.set_u32("clip.vision.projector.scale_factor", uint32_t(c.projector.scale_factor));
    w.set_u32("clip.vision.preproc_image_size", uint32_t(3 * c.image_size));
    if (edit_meta) edit_meta(w);
    const VisionWeights& v = m.weights;
    std::vector<Tensor> all = {v.patch_w, v.patch_b, v.position_embd};
    for (const auto& L : v.layers)
        for (const Tensor* t : {&L.ln1_w, &L.ln1_b, &L.q_w, &L.q_b, &L.k_w, &L.k_b, &L.v_w, &L.v_b, &L.o_w, &L.o_b,
                                &L.ln2_w, &L.ln2_b, &L.fc1_w, &L.fc1_b, &L.fc2_w, &L.fc2_b})
            all.push_back(*t);
    for (const Tensor* t : {&v.post_ln_w, &v.post_ln_b, &v.projector.fc}) all.push_back(*t);
    for (Tensor& t : all)
        if (!edit_tensor || edit_tensor(t)) w.add_tensor(t);
    const std::string path = (dir / "mmproj.gguf").string();
    w.write(path);
    return path;
}

// Loading must fail with Error(Model) whose one-line message names the file and every `needles`.
void expect_model_error(const std::string& path, std::initializer_list<const char*> needles) {
    try {
        open_vision_model(path);
        FAIL("loaded without error");
    } catch (const Error& e) {
        const std::string msg = e.what();
        INFO(msg);
        CHECK(e.kind() == ErrorKind::Model);
        CHECK(msg.find(path) != std::string::npos);
        CHECK(msg.find('\n') == std::string::npos);
        for (const char* n : needles) CHECK(msg.find(n) != std::string::npos);
    }
}

}  // namespace

TEST_CASE("vit: an mmproj written from a model loads back and computes the same", "[vit]") {
    const VisionModel m = make_random_siglip(32, 8, 16, 2, 24, 2, 2, 6, false, 21);
    TempDir dir;
    const std::string path = write_mmproj(dir, m, nullptr, nullptr);
    const VisionModel g = open_vision_model(path);
    CHECK(g.config.projector.scale_factor == 2);
    CHECK(g.config.preproc_image_size == 96);
    CHECK(g.config.activation == VisionActivation::GeluTanh);
    CHECK(tokens_per_tile(g.config) == 4);
    const auto tiles = random_floats(3 * 32 * 32, 22, 1.0f);
    std::vector<float> a(size_t(tokens_per_tile(m.config)) * 6), b(a.size());
    ThreadPool pool(2);
    encode_tiles(m, tiles.data(), 1, a.data(), pool);
    encode_tiles(g, tiles.data(), 1, b.data(), pool);
    CHECK(a == b);
    CHECK(vision_weight_bytes(g) > 0);
    // A folder holding the mmproj (and, in real use, the text GGUF beside it) opens too.
    std::filesystem::rename(path, dir / "mmproj-model-f32.gguf");
    CHECK(open_vision_model(dir.path().string()).config.n_layers == 2);

    SECTION("legacy names: fc1 stored as ffn_down, fc2 as ffn_up, resolved by shape") {
        TempDir d2;
        const std::string p2 = write_mmproj(d2, m, [](Tensor& t) {
            const auto swap = [&](const char* from, const char* to) {
                const auto at = t.name.find(from);
                if (at != std::string::npos) t.name.replace(at, std::strlen(from), to);
            };
            if (t.name.find("ffn_up") != std::string::npos) swap("ffn_up", "ffn_down");
            else swap("ffn_down", "ffn_up");
            return true;
        }, nullptr);
        const VisionModel legacy = open_vision_model(p2);
        encode_tiles(legacy, tiles.data(), 1, b.data(), pool);
        CHECK(a == b);
    }
}

TEST_CASE("vit: broken mmproj files are Error(Model) naming the file and the tensor or key", "[vit]") {
    const VisionModel m = make_random_siglip(32, 8, 16, 2, 24, 2, 2, 6, false, 31);
    TempDir dir;
    SECTION("missing tensor") {
        const auto p = write_mmproj(dir, m, [](Tensor& t) { return t.name != "v.blk.1.attn_q.weight"; }, nullptr);
        expect_model_error(p, {"v.blk.1.attn_q.weight", "missing"});
    }
    SECTION("wrong shape") {
        const Tensor bad = make_f32("v.blk.0.attn_k.weight", {16, 8, 1, 1}, 2);
        const auto p = write_mmproj(dir, m, [&](Tensor& t) {
            if (t.name == bad.name) t = bad;
            return true;
        }, nullptr);
        expect_model_error(p, {"v.blk.0.attn_k.weight", "shape", "[16, 8]", "[16, 16]"});
    }
    SECTION("unknown projector type") {
        const auto p = write_mmproj(dir, m, nullptr, [](GgufWriter& w) { w.set_str("clip.projector_type", "resampler"); });
        expect_model_error(p, {"clip.projector_type", "resampler", "not supported"});
    }
    SECTION("missing metadata key") {
        const auto p = write_mmproj(dir, m, nullptr, [](GgufWriter& w) { w.set_str("clip.vision.patch_size", "8"); });
        expect_model_error(p, {"clip.vision.patch_size"});
    }
    SECTION("not an mmproj") {
        const auto p = write_mmproj(dir, m, nullptr, [](GgufWriter& w) { w.set_str("general.architecture", "llama"); });
        expect_model_error(p, {"general.architecture", "llama"});
    }
    SECTION("scale factor key disagrees with the projector's shape") {
        const auto p = write_mmproj(dir, m, nullptr, [](GgufWriter& w) { w.set_u32("clip.vision.projector.scale_factor", 4); });
        expect_model_error(p, {"clip.vision.projector.scale_factor", "mm.model.fc.weight"});
    }
    SECTION("projector input width is not n_embd times a square") {
        const Tensor bad = make_f32("mm.model.fc.weight", {48, 6, 1, 1}, 2);
        const auto p = write_mmproj(dir, m, [&](Tensor& t) {
            if (t.name == bad.name) t = bad;
            return true;
        }, nullptr);
        expect_model_error(p, {"mm.model.fc.weight", "square"});
    }
    SECTION("a block beyond block_count") {
        const auto p = write_mmproj(dir, m, nullptr, [](GgufWriter& w) { w.set_u32("clip.vision.block_count", 1); });
        expect_model_error(p, {"block 1", "clip.vision.block_count"});
    }
    SECTION("image size not a multiple of the patch size") {
        const auto p = write_mmproj(dir, m, nullptr, [](GgufWriter& w) { w.set_u32("clip.vision.image_size", 30); });
        expect_model_error(p, {"image_size 30", "patch_size 8"});
    }
    SECTION("head count that does not divide the width") {
        const auto p = write_mmproj(dir, m, nullptr, [](GgufWriter& w) { w.set_u32("clip.vision.attention.head_count", 3); });
        expect_model_error(p, {"head count 3"});
    }
    SECTION("absurd sizes are refused before anything is allocated") {
        const auto p = write_mmproj(dir, m, nullptr, [](GgufWriter& w) {
            w.set_u32("clip.vision.image_size", 4000000000u);
        });
        expect_model_error(p, {"clip.vision.image_size"});
    }
    SECTION("a patch grid too large to attend over") {
        const auto p = write_mmproj(dir, m, nullptr, [](GgufWriter& w) {
            w.set_u32("clip.vision.image_size", 512);
            w.set_u32("clip.vision.patch_size", 1);
        });
        expect_model_error(p, {"patches per tile"});
    }
    SECTION("mean/std with the wrong number of values") {
        const auto p = write_mmproj(dir, m, nullptr, [](GgufWriter& w) { w.set_f32_array("clip.vision.image_std", {0.5f}); });
        expect_model_error(p, {"clip.vision.image_std", "3"});
    }
    SECTION("an mlp projector without a class embedding") {
        const auto p = write_mmproj(dir, m, nullptr, [](GgufWriter& w) { w.set_str("clip.projector_type", "mlp"); });
        expect_model_error(p, {"v.class_embd"});
    }
}

TEST_CASE("vit: not a GGUF file, or no such path", "[vit]") {
    TempDir dir;
    glimpse::test::write_file(dir / "x.gguf", std::string("not a gguf at all"));
    expect_model_error((dir / "x.gguf").string(), {"GGUF"});
    try {
        open_vision_model((dir / "absent.gguf").string());
        FAIL("opened a missing file");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::BadInput);
    }
}

TEST_CASE("vit bench: SmolVLM-256M-shaped tile on 2 threads", "[.vit-bench]") {
    ThreadPool pool(2);
    for (bool f16 : {false, true})
        for (int n : {1, 4}) {
            const VitBenchResult r = bench_vit_tiles(pool, n, 1, f16);
            const VisionTimings& t = r.timings;
            WARN("vit encode, 512x512 SigLIP-B/16 tile, 2 threads, "
                 << (f16 ? "F16" : "F32") << " weights, " << n << " tile(s) per batch: " << r.wall_ms_per_tile
                 << " ms/tile wall, " << r.cpu_ms_per_tile << " ms/tile CPU/2 (" << r.gflop_per_tile / r.cpu_ms_per_tile * 1e3
                 << " GFLOP/s); embed " << t.embed_ms << " ms, attention " << t.attention_ms << " ms, mlp " << t.mlp_ms
                 << " ms, projector " << t.project_ms << " ms in all");
        }
}
