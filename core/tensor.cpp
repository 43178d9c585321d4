#include "core/tensor.h"

#include <cstring>
#include <stdexcept>

namespace glimpse {

std::array<uint64_t, kMaxDims> contiguous_strides(DType t, const std::array<int64_t, kMaxDims>& ne) {
    for (int i = 0; i < kMaxDims; ++i)
        if (ne[i] < 0) throw std::invalid_argument("negative dimension");
    const auto row = dtype_row_bytes(t, static_cast<uint64_t>(ne[0]));
    if (!row) throw std::invalid_argument("row length is not a whole number of blocks");
    std::array<uint64_t, kMaxDims> nb{};
    nb[0] = dtype_info(t).block_bytes;
    nb[1] = *row;
    for (int i = 2; i < kMaxDims; ++i) {
        const uint64_t n = static_cast<uint64_t>(ne[i - 1]);
        if (n != 0 && nb[i - 1] > UINT64_MAX / n) throw std::invalid_argument("tensor size overflows");
        nb[i] = nb[i - 1] * n;
    }
    const uint64_t n3 = static_cast<uint64_t>(ne[3]);
    if (n3 != 0 && nb[3] > UINT64_MAX / n3) throw std::invalid_argument("tensor size overflows");
    return nb;
}

bool Tensor::contiguous() const { return nb == contiguous_strides(dtype, ne); }

std::string Tensor::shape_string() const {
    std::string s = "[";
    for (int i = 0; i < n_dims; ++i) {
        if (i) s += ", ";
        s += std::to_string(ne[i]);
    }
    return s + "]";
}

Tensor make_f32(const std::string& name, std::array<int64_t, kMaxDims> ne, int n_dims) {
    Tensor t;
    t.name = name;
    t.dtype = DType::F32;
    t.n_dims = n_dims;
    t.ne = ne;
    t.nb = contiguous_strides(DType::F32, ne);
    const uint64_t n = t.bytes() / sizeof(float);
    auto buf = std::shared_ptr<float[]>(new float[n ? n : 1]());
    t.data = buf.get();
    t.storage = std::shared_ptr<const void>(buf, buf.get());
    return t;
}

}  // namespace glimpse
