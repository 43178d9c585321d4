// The model and thread-pool benchmarks of `glimpse bench` (apps/cmd_bench.cpp has the CLI and
// the kernel benchmark --ops; bench/README.md says what every figure means).
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace glimpse {
struct LlamaModel;
}

namespace glimpse::app {

// Bytes one decode step must stream: every layer matrix, the output matrix and the norms (the
// embedding table is read one row per token, not counted) ...
uint64_t decode_weight_bytes(const LlamaModel& m);
// ... and the float K/V cache rows that the attention of `steps` decode steps after a prompt of
// `prompt` tokens reads, per step (mean depth prompt + (steps − 1)/2).
double decode_kv_bytes(const LlamaModel& m, int prompt, int steps);

struct ModelBenchOptions {
    std::string model;           // -m: any text model open_llama_model takes
    std::string random;          // --random NAME: write a random model of that shape instead
    DType type = DType::Q8_0;    // --type: weight type of the random model
    std::string save;            // --save FILE: keep the random model there (else a temp dir)
    uint64_t seed = 1;
    int threads = 0;             // <= 0: one per hardware thread
    int prompt = 512;            // -p: prefill tokens, one forward
    int gen = 128;               // -n: decode steps
    int repeats = 3;             // -r: each figure is the median of this many runs
    bool json = false;
    bool profile = false;        // --profile: time each stage of a decode step
};

// Prefill and decode tokens/s (medians), the memory-bandwidth bound of decode measured in the
// same run, and peak RSS. Returns the exit code.
int run_model_bench(const ModelBenchOptions& opt);

// Decode-like thread-pool workload: many small jobs, each a fixed amount of work split over
// the threads, with a short serial gap between jobs; µs per job against one thread.
int run_pool_bench(int threads, bool json);

}  // namespace glimpse::app
