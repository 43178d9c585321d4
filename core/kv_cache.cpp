#include "core/kv_cache.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "core/error.h"

namespace glimpse {

KvCache::KvCache(int64_t n_layers, int64_t n_ctx, int64_t n_kv_heads, int64_t head_dim)
    : n_layers_(n_layers), n_ctx_(n_ctx), n_kv_heads_(n_kv_heads), head_dim_(head_dim), kt_stride_(0) {
    if (n_layers <= 0 || n_ctx <= 0 || n_kv_heads <= 0 || head_dim <= 0)
        throw std::invalid_argument("KvCache: sizes must be positive");
    // Each partial product stays under 2^56 elements, so no size computed here overflows
    // (an allocation that large then fails with std::bad_alloc).
    constexpr int64_t kMaxElems = int64_t(1) << 56;
    if (n_kv_heads > kMaxElems / head_dim || n_ctx > kMaxElems / (n_kv_heads * head_dim) ||
        n_layers > kMaxElems / (n_ctx * n_kv_heads * head_dim))
        throw std::invalid_argument("KvCache: size overflows");
    kt_stride_ = (n_ctx + 15) / 16 * 16;
    if ((kt_stride_ / 16) % 2 == 0) kt_stride_ += 16;  // an odd number of cache lines
    const int64_t per_layer = n_ctx * n_kv_heads * head_dim;
    k_.reserve(size_t(n_layers));
    v_.reserve(size_t(n_layers));
    for (int64_t l = 0; l < n_layers; ++l) {
        k_.emplace_back(new float[size_t(kt_stride_ * n_kv_heads * head_dim)]);  // default-initialised: not touched
        v_.emplace_back(new float[size_t(per_layer)]);
    }
}

void KvCache::write(int64_t layer, int64_t pos, const float* k_rows, const float* v_rows, int64_t n_tokens) {
    if (layer < 0 || layer >= n_layers_)
        throw std::invalid_argument("KvCache::write: layer " + std::to_string(layer) + " out of range");
    if (pos < 0 || n_tokens < 0) throw std::invalid_argument("KvCache::write: negative position or count");
    if (n_tokens > n_ctx_ - pos)
        throw Error(ErrorKind::Usage, "KV cache full: " + std::to_string(n_tokens) + " tokens at position " +
                                          std::to_string(pos) + " do not fit in a context of " +
                                          std::to_string(n_ctx_) + " tokens (raise the context size)");
    if (n_tokens == 0) return;
    const int64_t row = row_size();
    float* kt = k_[size_t(layer)].get();
    for (int64_t t = 0; t < n_tokens; ++t)  // row t's value e = g·head_dim + d goes to kt[e][pos + t]
        for (int64_t e = 0; e < row; ++e) kt[e * kt_stride_ + pos + t] = k_rows[t * row + e];
    std::memcpy(v_[size_t(layer)].get() + size_t(pos * row), v_rows, size_t(n_tokens * row) * sizeof(float));
    if (pos + n_tokens > used_) used_ = pos + n_tokens;
}

const float* KvCache::kt(int64_t layer) const {
    if (layer < 0 || layer >= n_layers_) throw std::invalid_argument("KvCache::kt: layer out of range");
    return k_[size_t(layer)].get();
}

const float* KvCache::v(int64_t layer) const {
    if (layer < 0 || layer >= n_layers_) throw std::invalid_argument("KvCache::v: layer out of range");
    return v_[size_t(layer)].get();
}

void KvCache::truncate(int64_t n) {
    if (n < 0) throw std::invalid_argument("KvCache::truncate: negative length");
    if (n < used_) used_ = n;
}

uint64_t KvCache::bytes() const {
    return uint64_t(n_layers_) * uint64_t(kt_stride_ + n_ctx_) * uint64_t(row_size()) * sizeof(float);
}

}  // namespace glimpse
