// Recording of the Vulkan vision ops (core/vk_ops_vision.h): argument checks, push constants
// (each struct mirrors its shader's `Push` block), group counts.
#include "core/vk_ops_vision.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "core/error.h"
#include "core/vk_context.h"

namespace glimpse::vk {

namespace {

struct Im2colPush {  // im2col.comp
    uint32_t H, W, C, p, grid_w, n_patches, src_offset, n_images;
};
struct PixelShufflePush {  // pixel_shuffle.comp
    uint32_t n_tiles, side, dim, s;
};
static_assert(sizeof(Im2colPush) == 32 && sizeof(PixelShufflePush) == 16);

void require(bool ok, const char* op, const std::string& what) {
    if (!ok) throw std::invalid_argument(std::string("vk::") + op + ": " + what);
}

uint32_t u32(int64_t v, const char* op) {
    require(v >= 0 && v <= 0xffffffffLL, op, "size " + std::to_string(v) + " outside [0, 2^32)");
    return uint32_t(v);
}

void require_floats(const Buffer& b, int64_t count, const char* op, const char* name) {
    require(count >= 0 && b.size() >= uint64_t(count) * 4, op,
            std::string(name) + " holds " + std::to_string(b.size() / 4) + " floats, " + std::to_string(count) +
                " needed");
}

// 1-D dispatch of n invocations in groups of 256 (or the device's maximum), split over y
// beyond the x limit as core/vk_ops.cpp does (the shaders use linear_invocation).
std::pair<Groups, uint32_t> elementwise(const Context& ctx, int64_t n) {
    uint32_t wg = 256;
    while (wg > ctx.info().max_workgroup_invocations && wg > 1) wg /= 2;
    const int64_t total = (n + wg - 1) / wg, max_x = ctx.info().max_workgroup_count[0];
    if (total <= max_x) return {{uint32_t(total), 1, 1}, wg};
    const int64_t y = (total + max_x - 1) / max_x;
    if (y > int64_t(ctx.info().max_workgroup_count[1]))
        throw Error(ErrorKind::Device, "vulkan: a dispatch of " + std::to_string(total) +
                                           " workgroups is too large for " + ctx.label());
    return {{uint32_t(max_x), uint32_t(y), 1}, wg};
}

}  // namespace

void im2col(Recorder& rec, const Buffer& image, int64_t image_offset, int64_t C, int64_t H, int64_t W, int64_t p,
            Buffer& cols, int64_t n_images) {
    require(C > 0 && H >= 0 && W >= 0 && p > 0 && image_offset >= 0 && n_images >= 0, "im2col",
            "bad image or patch size");
    const int64_t grid_w = W / p, n_patches = (H / p) * grid_w, K = C * p * p;
    require_floats(image, image_offset + n_images * C * H * W, "im2col", "image");
    require_floats(cols, n_images * n_patches * K, "im2col", "cols");
    const Im2colPush push{u32(H, "im2col"),         u32(W, "im2col"),        u32(C, "im2col"),
                          u32(p, "im2col"),         u32(grid_w, "im2col"),   u32(n_patches, "im2col"),
                          u32(image_offset, "im2col"), u32(n_images, "im2col")};
    u32(image_offset + n_images * C * H * W, "im2col");
    u32(n_images * n_patches * K, "im2col");
    if (n_patches == 0 || n_images == 0) return;
    const auto [groups, wg] = elementwise(rec.context(), n_images * n_patches * K);
    rec.dispatch(ShaderId::im2col, {in(image), out(cols)}, push, groups, {wg});
}

void pixel_shuffle(Recorder& rec, const Buffer& x, int64_t n_tiles, int64_t seq, int64_t dim, int64_t s, Buffer& y) {
    require(n_tiles >= 0 && seq >= 0 && dim >= 0 && s > 0, "pixel_shuffle", "negative size");
    const auto side = int64_t(std::llround(std::sqrt(double(seq))));
    require(side * side == seq && side % s == 0, "pixel_shuffle", "seq must be a square of a multiple of s");
    const int64_t n = n_tiles * seq * dim;
    require_floats(x, n, "pixel_shuffle", "x");
    require_floats(y, n, "pixel_shuffle", "y");
    const PixelShufflePush push{u32(n_tiles, "pixel_shuffle"), u32(side, "pixel_shuffle"), u32(dim, "pixel_shuffle"),
                                u32(s, "pixel_shuffle")};
    u32(n, "pixel_shuffle");
    if (n == 0) return;
    const auto [groups, wg] = elementwise(rec.context(), n);
    rec.dispatch(ShaderId::pixel_shuffle, {in(x), out(y)}, push, groups, {wg});
}

}  // namespace glimpse::vk
