// A fixed pool of worker threads for data-parallel kernels. The calling thread takes part, so
// ThreadPool(1) runs everything inline. One job at a time: run() blocks until every index of
// the job has run.
//
// How a job is shared (docs/PERFORMANCE.md has the measurements behind it):
// - A job is nth = size() indices. Any thread may run any index: the caller and the workers
//   claim indices one at a time from a shared counter, so the caller does its share first and
//   then takes every index no worker has claimed yet. A worker that is descheduled (another
//   process busy on its core) therefore never makes the caller wait; the caller waits only for
//   indices a worker is actually running.
// - Between jobs a worker spins (with `pause`) for a short, adaptive time, because decode-time
//   jobs come every few tens of microseconds and waking a sleeping thread costs about as much.
//   When it keeps arriving too late to claim anything (a loaded machine), it spins less and
//   sleeps sooner (futex on Linux), leaving the core to whoever needs it.
// - The caller spins briefly for indices in flight, then sleeps until the last one finishes.
// - run() called from inside a job of the same pool (nested) runs fn(0, 1) inline
//   (run_chunks: every chunk, in order, inline).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace glimpse {

class ThreadPool {
public:
    static constexpr int kMaxChunks = 0xFFFF;  // chunks per job (and threads per pool) at most

    explicit ThreadPool(int n_threads);  // n_threads <= 0: one per hardware thread
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // fn(ith, nth) for every ith in [0, nth), nth = size(), each exactly once, spread over the
    // threads; returns when all have returned. An exception thrown by fn is rethrown here (the
    // first one); the other indices still run. Calls from several threads are serialised.
    void run(const std::function<void(int ith, int nth)>& fn);

    // fn(chunk, n_chunks) for every chunk in [0, n_chunks), each exactly once, claimed one at a
    // time by whichever thread is free: more chunks than threads (say 4x) keeps the job moving
    // when a thread is descheduled mid-job, at the price of one atomic claim per chunk.
    // n_chunks <= 0 does nothing; more than kMaxChunks is std::invalid_argument. Same exception
    // and nesting rules as run().
    void run_chunks(int n_chunks, const std::function<void(int chunk, int n_chunks)>& fn);

    // fn(begin, end) over [0, n) cut into one contiguous range per index.
    void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);

    // The share [begin, end) of [0, n) that index ith of nth takes.
    static void split(int64_t n, int ith, int nth, int64_t& begin, int64_t& end) {
        const int64_t base = n / nth, rem = n % nth;
        begin = ith * base + (ith < rem ? ith : rem);
        end = begin + base + (ith < rem ? 1 : 0);
    }

private:
    void worker();
    // Claims and runs indices of job `gen` until none is left; returns how many it ran.
    int help(uint32_t gen);
    void start_job(int n_chunks, const std::function<void(int, int)>& fn);
    void run_index(int ith);
    void wait_for_job_end();

    int n_threads_;
    std::vector<std::thread> threads_;
    std::mutex caller_mutex_;  // one job at a time, whoever calls

    // The job: published by the caller before the release store of work_.
    const std::function<void(int, int)>* job_ = nullptr;
    std::atomic<uint32_t> job_chunks_{0};  // indices of the current job
    std::exception_ptr error_;
    std::mutex error_mutex_;

    // generation << 32 | chunk count << 16 | next unclaimed chunk. Claims are CAS on the whole
    // word, so a thread holding a stale word can never claim (or skip) a chunk of a newer job.
    alignas(64) std::atomic<uint64_t> work_{0};
    // Futex word the workers sleep on: the latest generation (bumped once more to stop).
    alignas(64) std::atomic<uint32_t> generation_{0};
    std::atomic<int> sleeping_workers_{0};
    std::atomic<bool> stop_{false};
    // Indices finished in the current job; futex word the caller sleeps on.
    alignas(64) std::atomic<uint32_t> done_{0};
    std::atomic<bool> caller_sleeping_{false};
    // Caller-only bookkeeping of the lazy wake-up: jobs in a row that no worker helped with.
    int useless_jobs_ = 0;
    std::chrono::steady_clock::time_point last_lazy_wake_{};
};

}  // namespace glimpse
