// What the CPU we run on can do, detected once at run time, so one x86-64 binary uses AVX2/FMA
// kernels where they exist and portable C++ elsewhere (CMakeLists: only *_avx2.cpp files are
// compiled with -mavx2 -mfma -mf16c, and nothing calls into them unless has_avx2_kernels()).
//
// Also here: the two machine limits that performance is measured against (docs/PERFORMANCE.md):
// the FMA peak and the memory read bandwidth, measured on the spot by `glimpse bench --ops`.
#pragma once

#include <cstddef>
#include <string>

namespace glimpse {

class ThreadPool;

struct CpuFeatures {
    bool x86_64 = false;   // built for x86-64 (the only target with SIMD kernels so far)
    bool avx2 = false;     // CPU and OS (YMM state) support
    bool fma = false;
    bool f16c = false;
    bool avx512f = false;  // CPU and OS (ZMM state) support: the GEMM's AVX-512 tile
    bool avx_vnni = false; // reported only
};

// Detected on first call (thread-safe); the same object afterwards.
const CpuFeatures& cpu_features();

// "x86-64 avx2 fma f16c avx512f" — what was found, in a fixed order ("generic" if nothing).
std::string cpu_features_string();

// True when the AVX2+FMA+F16C kernels may run: built for x86-64 and all three present, unless
// the environment variable GLIMPSE_NO_AVX2 is set (the tests run the portable kernels so).
bool has_avx2_kernels();

// True when the GEMM may also use its AVX-512F tile: has_avx2_kernels() and AVX-512F, unless
// the environment variable GLIMPSE_NO_AVX512 is set (to measure the AVX2 path on such a CPU).
bool has_avx512_kernels();

// Peak float32 multiply-add rate in GFLOP/s (1 FMA = 2 flops) on all threads of `pool`, from
// independent register-only FMA chains (16-wide AVX-512 where has_avx512_kernels(), 8-wide
// AVX2 where has_avx2_kernels(), else scalar code the compiler vectorises as it can): the
// peak of the widest kernels the GEMM uses. Runs for about `seconds`.
double measure_fma_peak_gflops(ThreadPool& pool, double seconds);

// Memory read bandwidth in GB/s (1e9 bytes/s): every thread of `pool` sums its share of a
// `bytes`-sized buffer (allocated and touched first), best of `repeats` passes.
double measure_read_bandwidth_gbs(ThreadPool& pool, size_t bytes, int repeats);

namespace detail {
// The AVX2 bodies of the two probes (core/cpu_probe_avx2.cpp); call only if has_avx2_kernels().
// fma_chains_avx2 runs `iters` rounds of 12 independent 8-wide FMAs (192 flops each) and
// returns a value that depends on all of them, so the loop cannot be optimised away.
float fma_chains_avx2(long iters);
float fma_chains_avx512(long iters);  // 384 flops per round; only if has_avx512_kernels()
float sum_floats_avx2(const float* p, size_t n);  // n a multiple of 64, p 32-byte aligned
}  // namespace detail

}  // namespace glimpse
