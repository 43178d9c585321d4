// Small helpers shared by the benchmark files (apps/cmd_bench.cpp, apps/bench_model.cpp).
#pragma once

#include <algorithm>
#include <cstdio>
#include <vector>

namespace glimpse::app {

inline double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The 1-minute load average (Linux /proc/loadavg), or -1 where unavailable: printed with the
// results because a busy machine lowers every figure.
inline double load_average() {
    std::FILE* f = std::fopen("/proc/loadavg", "r");
    if (!f) return -1;
    double l = -1;
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
    return l;
}

}  // namespace glimpse::app
