// The key/value cache of a decoder: for every layer, the K and V rows of every position seen so
// far, in the layouts ops::attention_kt reads directly:
//   kt(layer)  [n_kv_heads][head_dim][kt_stride]  keys transposed: position j, KV head g,
//              dimension d at kt[(g · head_dim + d) · kt_stride + j], so the scores of
//              consecutive positions are consecutive floats and no decode step transposes the
//              cache. kt_stride ≥ n_ctx is n_ctx rounded up to an odd multiple of 16 floats
//              (64 bytes): rows a power-of-two apart would all fall into the same L1 cache set,
//              and the attention kernel reads 64 of them at once.
//   v(layer)   [n_ctx][n_kv_heads][head_dim]  (row r = position r)
// (float32). A prefill writes T rows at once, each decode step writes one; attention over the
// cache then uses n_kv = pos + n_tokens keys. Entries not yet written are never read, so the
// buffers are left uninitialised (no page is touched before it is used).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace glimpse {

class KvCache {
public:
    // Throws std::invalid_argument for non-positive sizes or a size that overflows.
    KvCache(int64_t n_layers, int64_t n_ctx, int64_t n_kv_heads, int64_t head_dim);

    int64_t n_layers() const { return n_layers_; }
    int64_t n_ctx() const { return n_ctx_; }
    int64_t n_kv_heads() const { return n_kv_heads_; }
    int64_t head_dim() const { return head_dim_; }
    int64_t row_size() const { return n_kv_heads_ * head_dim_; }  // floats per position
    // One past the highest position written since the last clear()/truncate().
    int64_t used() const { return used_; }

    // Copies k_rows, v_rows [n_tokens][n_kv_heads][head_dim] into positions
    // [pos, pos + n_tokens) of `layer`. Throws glimpse::Error(Usage) when they do not fit in
    // the context, std::invalid_argument for a bad layer or a negative pos / n_tokens.
    void write(int64_t layer, int64_t pos, const float* k_rows, const float* v_rows, int64_t n_tokens);

    int64_t kt_stride() const { return kt_stride_; }  // row stride of kt(), in floats
    const float* kt(int64_t layer) const;  // [n_kv_heads][head_dim][kt_stride()]
    const float* v(int64_t layer) const;   // [n_ctx][n_kv_heads][head_dim]
    // Key of `pos`, KV head g, dimension d (for code that reads single keys).
    float key(int64_t layer, int64_t pos, int64_t g, int64_t d) const {
        return kt(layer)[(g * head_dim_ + d) * kt_stride_ + pos];
    }

    void clear() { used_ = 0; }
    // Forget positions >= n (a chat rewinding to an earlier turn); used() becomes min(used, n).
    void truncate(int64_t n);

    uint64_t bytes() const;  // memory the buffers take when full

private:
    int64_t n_layers_, n_ctx_, n_kv_heads_, head_dim_;
    int64_t kt_stride_;
    int64_t used_ = 0;
    std::vector<std::unique_ptr<float[]>> k_, v_;
};

}  // namespace glimpse
