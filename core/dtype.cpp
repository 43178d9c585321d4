#include "core/dtype.h"

#include <array>
#include <cctype>
#include <limits>
#include <stdexcept>

namespace glimpse {

namespace {

constexpr std::array kInfos = {
    DTypeInfo{DType::F32, "F32", 1, 4, true},      DTypeInfo{DType::F16, "F16", 1, 2, true},
    DTypeInfo{DType::Q4_0, "Q4_0", 32, 18, true},  DTypeInfo{DType::Q4_1, "Q4_1", 32, 20, true},
    DTypeInfo{DType::Q5_0, "Q5_0", 32, 22, true},  DTypeInfo{DType::Q5_1, "Q5_1", 32, 24, true},
    DTypeInfo{DType::Q8_0, "Q8_0", 32, 34, true},  DTypeInfo{DType::Q2_K, "Q2_K", 256, 84, false},
    DTypeInfo{DType::Q3_K, "Q3_K", 256, 110, false}, DTypeInfo{DType::Q4_K, "Q4_K", 256, 144, true},
    DTypeInfo{DType::Q5_K, "Q5_K", 256, 176, true}, DTypeInfo{DType::Q6_K, "Q6_K", 256, 210, true},
    DTypeInfo{DType::I8, "I8", 1, 1, false},       DTypeInfo{DType::I16, "I16", 1, 2, false},
    DTypeInfo{DType::I32, "I32", 1, 4, false},     DTypeInfo{DType::I64, "I64", 1, 8, false},
    DTypeInfo{DType::F64, "F64", 1, 8, false},     DTypeInfo{DType::BF16, "BF16", 1, 2, true},
};

}  // namespace

std::optional<DTypeInfo> dtype_info(uint32_t ggml_id) {
    for (const auto& i : kInfos)
        if (static_cast<uint32_t>(i.type) == ggml_id) return i;
    return std::nullopt;
}

const DTypeInfo& dtype_info(DType t) {
    for (const auto& i : kInfos)
        if (i.type == t) return i;
    throw std::logic_error("dtype_info: DType value outside the enum");
}

std::optional<DType> dtype_from_name(std::string_view name) {
    for (const auto& i : kInfos) {
        if (i.name.size() != name.size()) continue;
        bool same = true;
        for (size_t k = 0; k < name.size() && same; ++k)
            same = std::toupper(static_cast<unsigned char>(name[k])) == i.name[k];
        if (same) return i.type;
    }
    return std::nullopt;
}

std::optional<uint64_t> dtype_row_bytes(DType t, uint64_t n) {
    const auto& i = dtype_info(t);
    if (n % i.block_elems != 0) return std::nullopt;
    const uint64_t blocks = n / i.block_elems;
    if (blocks > std::numeric_limits<uint64_t>::max() / i.block_bytes) return std::nullopt;
    return blocks * i.block_bytes;
}

}  // namespace glimpse
