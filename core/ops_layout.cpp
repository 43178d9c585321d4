// Data movement: get_rows (embedding lookup), concat, permute, transpose (core/ops.h).
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/ops.h"
#include "core/ops_internal.h"
#include "core/quant.h"

namespace glimpse::ops {

using detail::require;

void get_rows(const Tensor& table, const int32_t* ids, int64_t n_ids, float* out) {
    require(n_ids >= 0, "get_rows", "negative size");
    const int64_t dim = table.ne[0], n_rows = table.ne[1];
    if (table.data == nullptr) throw model_error(table.name, "tensor has no data");
    if (dim <= 0 || n_rows <= 0 || table.ne[2] != 1 || table.ne[3] != 1)
        throw model_error(table.name, "expected a 2-D table [dim, n_rows], got " + table.shape_string());
    const auto& info = dtype_info(table.dtype);
    const auto row_bytes = dtype_row_bytes(table.dtype, uint64_t(dim));
    if (!info.computable || !row_bytes || table.nb[0] != info.block_bytes || table.nb[1] < *row_bytes)
        throw model_error(table.name, "cannot read rows of type " + std::string(info.name) +
                                          " and length " + std::to_string(dim));
    for (int64_t i = 0; i < n_ids; ++i) {
        const int32_t id = ids[i];
        if (id < 0 || id >= n_rows)
            throw model_error(table.name, "row id " + std::to_string(id) + " out of range [0, " +
                                              std::to_string(n_rows) + ")");
        float* dst = out + i * dim;
        if (table.dtype == DType::F32) std::memcpy(dst, table.row(id), size_t(dim) * sizeof(float));
        else dequantize_row(table.dtype, table.row(id), dst, dim);
    }
}

void concat_inner(const float* a, const float* b, float* y, int64_t rows, int64_t na, int64_t nb) {
    require(rows >= 0 && na >= 0 && nb >= 0, "concat_inner", "negative size");
    for (int64_t r = 0; r < rows; ++r) {
        float* dst = y + r * (na + nb);
        std::memcpy(dst, a + r * na, size_t(na) * sizeof(float));
        std::memcpy(dst + na, b + r * nb, size_t(nb) * sizeof(float));
    }
}

void concat_outer(const float* a, int64_t rows_a, const float* b, int64_t rows_b, float* y, int64_t n) {
    require(rows_a >= 0 && rows_b >= 0 && n >= 0, "concat_outer", "negative size");
    // memcpy with a null pointer is UB even for 0 bytes, so skip empty parts.
    if (rows_a * n > 0) std::memcpy(y, a, size_t(rows_a * n) * sizeof(float));
    if (rows_b * n > 0) std::memcpy(y + rows_a * n, b, size_t(rows_b * n) * sizeof(float));
}

void permute(const float* x, const int64_t ne[4], const int order[4], float* y) {
    bool seen[4] = {false, false, false, false};
    for (int k = 0; k < 4; ++k) {
        require(ne[k] >= 0, "permute", "negative size");
        require(order[k] >= 0 && order[k] < 4 && !seen[order[k]], "permute", "order is not a permutation of 0..3");
        seen[order[k]] = true;
    }
    // Input strides in elements (contiguous, ggml order), then the stride in x of each output
    // axis: stepping output axis k steps input axis order[k].
    const int64_t stride_x[4] = {1, ne[0], ne[0] * ne[1], ne[0] * ne[1] * ne[2]};
    int64_t ny[4], sx[4];
    for (int k = 0; k < 4; ++k) {
        ny[k] = ne[order[k]];
        sx[k] = stride_x[order[k]];
    }
    float* dst = y;
    for (int64_t i3 = 0; i3 < ny[3]; ++i3)
        for (int64_t i2 = 0; i2 < ny[2]; ++i2)
            for (int64_t i1 = 0; i1 < ny[1]; ++i1) {
                const float* src = x + i3 * sx[3] + i2 * sx[2] + i1 * sx[1];
                for (int64_t i0 = 0; i0 < ny[0]; ++i0) *dst++ = src[i0 * sx[0]];
            }
}

void transpose_2d(const float* x, float* y, int64_t rows, int64_t cols) {
    require(rows >= 0 && cols >= 0, "transpose_2d", "negative size");
    // 32×32 tiles keep both the reads and the writes within a few cache lines.
    constexpr int64_t kTile = 32;
    for (int64_t r0 = 0; r0 < rows; r0 += kTile)
        for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
            const int64_t r1 = r0 + kTile < rows ? r0 + kTile : rows;
            const int64_t c1 = c0 + kTile < cols ? c0 + kTile : cols;
            for (int64_t c = c0; c < c1; ++c)
                for (int64_t r = r0; r < r1; ++r) y[c * rows + r] = x[r * cols + c];
        }
}

}  // namespace glimpse::ops
