// The Vulkan vision tower (vision/vit_forward_vk.h): uploads and the recording of one group
// of tiles. Each step mirrors vision/vit_forward.cpp (embed, attention_block, mlp_block,
// encode_batch) and fusion/projector.cpp (project).
#include "vision/vit_forward_vk.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "core/vk_ops_vision.h"

namespace glimpse {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

uint64_t fbytes(int64_t rows, int64_t cols) { return uint64_t(rows) * uint64_t(cols) * 4; }

// The F32 vector (norm weight, bias, position table) as a device buffer; empty when absent.
vk::Buffer upload_vector(vk::Context& ctx, const Tensor& t, uint64_t& bytes) {
    if (!t.data) return {};
    const float* p = f32_data(t);
    const auto n = size_t(t.numel());
    bytes += n * 4;
    return vk::upload_floats(ctx, std::vector<float>(p, p + n));
}

// The patch-conv kernel ne {p, p, C, D} as the matrix {C·p·p, D} the im2col rows multiply.
Tensor kernel_matrix(const Tensor& kernel) {
    Tensor w = kernel;
    const int64_t K = kernel.ne[0] * kernel.ne[1] * kernel.ne[2], D = kernel.ne[3];
    w.n_dims = 2;
    w.ne = {K, D, 1, 1};
    w.nb = {kernel.nb[0], kernel.nb[3], kernel.nb[3] * uint64_t(D), kernel.nb[3] * uint64_t(D)};
    return w;
}

vk::UnaryOp unary_of(VisionActivation a) {
    switch (a) {
        case VisionActivation::GeluTanh: return vk::UnaryOp::GeluTanh;
        case VisionActivation::GeluErf: return vk::UnaryOp::GeluErf;
        case VisionActivation::QuickGelu: return vk::UnaryOp::QuickGelu;
    }
    return vk::UnaryOp::GeluTanh;
}

}  // namespace

VitVulkan::VitVulkan(std::shared_ptr<vk::Context> ctx, const VisionModel& m) : ctx_(std::move(ctx)), c_(m.config) {
    vk::Context& cx = *ctx_;
    const VisionWeights& w = m.weights;
    auto matrix = [&](const Tensor& t) {
        vk::DeviceMatrix d = vk::upload_matrix(cx, t);
        bytes_ += d.buffer.size();
        return d;
    };
    auto vec = [&](const Tensor& t) { return upload_vector(cx, t, bytes_); };
    patch_ = matrix(kernel_matrix(w.patch_w));
    patch_.name = w.patch_w.name;
    patch_b_ = vec(w.patch_b);
    class_embd_ = vec(w.class_embd);
    position_ = vec(w.position_embd);
    pre_ln_w_ = vec(w.pre_ln_w);
    pre_ln_b_ = vec(w.pre_ln_b);
    post_ln_w_ = vec(w.post_ln_w);
    post_ln_b_ = vec(w.post_ln_b);
    for (const VisionLayerWeights& L : w.layers) {
        Layer d;
        d.ln1_w = vec(L.ln1_w);
        d.ln1_b = vec(L.ln1_b);
        d.q = matrix(L.q_w);
        d.q_b = vec(L.q_b);
        d.k = matrix(L.k_w);
        d.k_b = vec(L.k_b);
        d.v = matrix(L.v_w);
        d.v_b = vec(L.v_b);
        d.o = matrix(L.o_w);
        d.o_b = vec(L.o_b);
        d.ln2_w = vec(L.ln2_w);
        d.ln2_b = vec(L.ln2_b);
        d.fc1 = matrix(L.fc1_w);
        d.fc1_b = vec(L.fc1_b);
        d.fc2 = matrix(L.fc2_w);
        d.fc2_b = vec(L.fc2_b);
        layers_.push_back(std::move(d));
    }
    const ProjectorWeights& pw = w.projector;
    if (c_.projector.kind == ProjectorKind::Idefics3) {
        proj_fc_ = matrix(pw.fc);
    } else {
        mm0_ = matrix(pw.mm0_w);
        mm0_b_ = vec(pw.mm0_b);
        mm2_ = matrix(pw.mm2_w);
        mm2_b_ = vec(pw.mm2_b);
    }
    rec_ = std::make_unique<vk::Recorder>(cx);
}

VitVulkan::~VitVulkan() = default;

bool tiles_at_once(const vk::Context& ctx) {
    return ctx.options().vit_tiles_at_once.value_or(ctx.info().type != vk::DeviceType::Cpu);
}

// Tiles a group may hold: kVitVulkanGroup, fewer where a group's largest buffer (the MLP's
// g·T·n_ff floats, as a rule) would pass what one storage descriptor can address.
int VitVulkan::max_group() const {
    const int64_t S = c_.image_size, p = c_.patch_size, P = c_.n_patches(), T = c_.n_positions(), D = c_.n_embd;
    const uint64_t per_tile = std::max({fbytes(1, 3 * S * S), fbytes(P, 3 * p * p), fbytes(T, std::max<int64_t>(D, c_.n_ff)),
                                        fbytes(P, std::max<int64_t>(D, c_.projector.n_hidden)),
                                        fbytes(tokens_per_tile(c_), projected_dim(c_))});
    const uint64_t fit = ctx_->info().max_storage_buffer_range / std::max<uint64_t>(per_tile, 1);
    return int(std::clamp<uint64_t>(fit, 1, kVitVulkanGroup));
}

// Buffers for `group` tiles, grown (never shrunk) when a larger group comes; the activations
// for the tiles of one pass (tiles_at_once).
void VitVulkan::reserve(int group) {
    if (group <= group_) return;
    vk::Context& cx = *ctx_;
    const int64_t S = c_.image_size, p = c_.patch_size, P = c_.n_patches(), T = c_.n_positions(), D = c_.n_embd;
    const int pass = tiles_at_once(*ctx_) ? group : 1;
    if (pass > pass_) {
        cols_ = vk::Buffer(cx, fbytes(int64_t(pass) * P, 3 * p * p));
        for (vk::Buffer* b : {&x_, &h_, &q_, &k_, &v_, &att_}) *b = vk::Buffer(cx, fbytes(int64_t(pass) * T, D));
        ff_ = vk::Buffer(cx, fbytes(int64_t(pass) * T, c_.n_ff));
        pass_ = pass;
    }
    tiles_ = vk::Buffer(cx, fbytes(group, 3 * S * S));
    features_ = vk::Buffer(cx, fbytes(int64_t(group) * P, D));
    if (c_.projector.kind == ProjectorKind::Idefics3)
        shuffled_ = vk::Buffer(cx, fbytes(int64_t(group) * P, D));
    else
        hidden_ = vk::Buffer(cx, fbytes(int64_t(group) * P, c_.projector.n_hidden));
    out_ = vk::Buffer(cx, fbytes(int64_t(group) * tokens_per_tile(c_), projected_dim(c_)));
    group_ = group;
}

void VitVulkan::record_group(int g) {
    for (int first = 0; first < g; first += pass_) record_pass(first, std::min(pass_, g - first));
}

// Tiles [first, first + g) of the group (tiles_) -> features_ rows [first·P, (first + g)·P),
// all g tiles through each step at once: a layer's matmuls have g·T rows and its attention g
// batches, so a dispatch has g times the workgroups it would have for one tile.
void VitVulkan::record_pass(int first, int g) {
    vk::Recorder& r = *rec_;
    const int64_t S = c_.image_size, p = c_.patch_size, P = c_.n_patches(), T = c_.n_positions(), D = c_.n_embd;
    const int64_t H = c_.n_heads, hd = c_.head_dim(), rows = int64_t(g) * T;
    const float eps = c_.layer_norm_eps;
    // out = in · Wᵀ + b, with the bias (if the model has one), the activation (act) or the
    // residual add (residual: out += ...) fused into the matmul's store.
    enum class Then { Store, Activate, AddTo };
    auto linear = [&](const vk::DeviceMatrix& W, const vk::Buffer& b, const vk::Buffer& in, vk::Buffer& out,
                      int64_t m, Then then = Then::Store) {
        vk::MatmulEpilogue e;
        e.bias = b ? &b : nullptr;
        e.activate = then == Then::Activate;
        e.act = unary_of(c_.activation);
        e.accumulate = then == Then::AddTo;
        vk::matmul(r, W, in, out, m, e);
    };
    auto opt = [](const vk::Buffer& b) { return b ? &b : nullptr; };
    vk::Buffer* x = &x_;
    vk::Buffer* h = &h_;

    // x = [class;] patch_conv(tile) + bias, + positions, (pre-LN), per tile
    vk::im2col(r, tiles_, int64_t(first) * 3 * S * S, 3, S, S, p, cols_, g);
    if (c_.has_class_token) {
        linear(patch_, patch_b_, cols_, *h, int64_t(g) * P);
        for (int64_t t = 0; t < g; ++t) {
            vk::copy(r, class_embd_, 0, *x, t * T * D, D);
            vk::copy(r, *h, t * P * D, *x, (t * T + T - P) * D, P * D);
        }
    } else {
        linear(patch_, patch_b_, cols_, *x, int64_t(g) * P);
    }
    vk::binary(r, vk::BinaryOp::Add, *x, position_, *x, rows * D, T * D);  // each tile + the table
    if (c_.pre_layernorm) {
        vk::layer_norm(r, *x, opt(pre_ln_w_), opt(pre_ln_b_), *h, rows, D, eps);
        std::swap(x, h);
    }
    const float scale = 1.0f / std::sqrt(float(hd));
    for (const Layer& L : layers_) {
        // x += o(attention(q, k, v)), q, k, v = ln1(x) · {q,k,v}ᵀ + b (non-causal, within each tile)
        vk::layer_norm(r, *x, opt(L.ln1_w), opt(L.ln1_b), *h, rows, D, eps);
        linear(L.q, L.q_b, *h, q_, rows);
        linear(L.k, L.k_b, *h, k_, rows);
        linear(L.v, L.v_b, *h, v_, rows);
        vk::attention(r, q_, k_, v_, att_, T, T, H, H, hd, scale, /*causal=*/false, 0, vk::AttentionPath::Auto,
                      nullptr, g);
        linear(L.o, L.o_b, att_, *x, rows, Then::AddTo);
        // x += fc2(act(fc1(ln2(x))))
        vk::layer_norm(r, *x, opt(L.ln2_w), opt(L.ln2_b), *h, rows, D, eps);
        linear(L.fc1, L.fc1_b, *h, ff_, rows, Then::Activate);
        linear(L.fc2, L.fc2_b, ff_, *x, rows, Then::AddTo);
    }
    if (c_.post_layernorm) {
        vk::layer_norm(r, *x, opt(post_ln_w_), opt(post_ln_b_), *h, rows, D, eps);
        std::swap(x, h);
    }
    if (T == P) {
        vk::copy(r, *x, 0, features_, int64_t(first) * P * D, int64_t(g) * P * D);
    } else {
        for (int64_t t = 0; t < g; ++t)  // drops CLIP's class rows
            vk::copy(r, *x, (t * T + T - P) * D, features_, (first + t) * P * D, P * D);
    }
}

void VitVulkan::record_projector(int n_tiles) {
    vk::Recorder& r = *rec_;
    const int64_t P = c_.n_patches(), D = c_.n_embd;
    const ProjectorConfig& pc = c_.projector;
    if (pc.kind == ProjectorKind::Idefics3) {
        vk::pixel_shuffle(r, features_, n_tiles, P, D, pc.scale_factor, shuffled_);
        vk::matmul(r, proj_fc_, shuffled_, out_, int64_t(n_tiles) * tokens_per_tile(c_));
        return;
    }
    const int64_t rows = int64_t(n_tiles) * P;
    // hidden = gelu_erf(features · mm0ᵀ + b0); out = hidden · mm2ᵀ + b2 (bias and GELU fused)
    vk::MatmulEpilogue e0;
    e0.bias = mm0_b_ ? &mm0_b_ : nullptr;
    e0.activate = true;
    e0.act = vk::UnaryOp::GeluErf;
    vk::matmul(r, mm0_, features_, hidden_, rows, e0);
    vk::MatmulEpilogue e2;
    e2.bias = mm2_b_ ? &mm2_b_ : nullptr;
    vk::matmul(r, mm2_, hidden_, out_, rows, e2);
}

void VitVulkan::encode(const float* tiles, int n_tiles, float* out, bool with_projector, VisionTimings* t) {
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t S = c_.image_size, P = c_.n_patches(), D = c_.n_embd;
    const int64_t tile_out = with_projector ? int64_t(tokens_per_tile(c_)) * projected_dim(c_) : P * D;
    reserve(std::min(n_tiles, max_group()));
    VisionTimings local;
    for (int done = 0; done < n_tiles;) {
        const int g = std::min(group_, n_tiles - done);
        auto t0 = Clock::now();
        vk::upload(*ctx_, tiles_, tiles + int64_t(done) * 3 * S * S, fbytes(g, 3 * S * S));
        rec_->begin();
        record_group(g);
        rec_->submit_and_wait();
        local.device_ms += ms_since(t0);
        t0 = Clock::now();
        if (with_projector) {
            rec_->begin();
            record_projector(g);
            rec_->submit_and_wait();
            vk::download(*ctx_, out_, out + int64_t(done) * tile_out, fbytes(g, tile_out));
        } else {
            vk::download(*ctx_, features_, out + int64_t(done) * tile_out, fbytes(g, tile_out));
        }
        local.project_ms += ms_since(t0);
        done += g;
    }
    local.tiles = n_tiles;
    if (t) {
        t->device_ms += local.device_ms;
        t->project_ms += local.project_ms;
        t->tiles += local.tiles;
    }
}

}  // namespace glimpse
