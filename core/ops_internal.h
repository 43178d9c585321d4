// Helpers shared by the core/ops*.cpp files (not part of the public ops API).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/thread_pool.h"

namespace glimpse::ops::detail {

// Below this many scalar operations a job runs on the calling thread: waking the pool costs
// a few microseconds, more than e.g. one 576-wide RMSNorm row (decode).
constexpr int64_t kMinParallelWork = 1 << 15;

// Programming errors (negative sizes, inconsistent shapes) are std::invalid_argument.
inline void require(bool ok, const char* op, const char* what) {
    if (!ok) throw std::invalid_argument(std::string("ops::") + op + ": " + what);
}

// fn(begin, end) over rows [0, rows), split across the pool when the work (rows ·
// cost_per_row scalar operations) is large enough to pay for the wake-up.
template <class F>
void parallel_rows(ThreadPool& pool, int64_t rows, int64_t cost_per_row, F&& fn) {
    if (rows <= 0) return;
    if (pool.size() == 1 || rows == 1 || rows * cost_per_row < kMinParallelWork) {
        fn(int64_t(0), rows);
        return;
    }
    pool.parallel_for(rows, fn);
}

}  // namespace glimpse::ops::detail
