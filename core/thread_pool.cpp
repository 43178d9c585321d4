// The thread pool's wait policy (see the header for the design). Two rules matter on a busy
// machine with few cores:
//   1. Nobody waits for a thread that has not started: indices are claimed, not assigned, so
//      the caller runs whatever a late worker has not taken.
//   2. Nobody spins for long: a worker spins at most kMaxSpin between jobs, less after each
//      job it arrived too late for; the caller spins at most kCallerSpin for indices in flight.
//      After that both sleep on a futex (std::atomic::wait off Linux).
// And while the workers keep being useless (asleep or late, kLazyAfter jobs in a row), the
// caller stops paying a wake-up per job and wakes them at most once per kLazyWakeEvery, so a
// worker rejoins within a millisecond once its core is free again.
#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <stdexcept>
#include <string>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#else
static inline void cpu_relax() {}
#endif

namespace glimpse {

namespace {

using Clock = std::chrono::steady_clock;
using Micros = std::chrono::microseconds;

constexpr Micros kMaxSpin{250};       // worker, between jobs, while it keeps being useful
constexpr Micros kMinSpin{2};         // worker, after many jobs it arrived too late for
constexpr Micros kCallerSpin{50};     // caller, waiting for indices that workers are running
constexpr int kLazyAfter = 8;         // useless jobs in a row before the caller wakes lazily
constexpr Micros kLazyWakeEvery{1000};
constexpr int kPausesPerClockRead = 16;

// The pool whose job this thread is running (nested run() calls go inline).
thread_local const ThreadPool* tl_running_pool = nullptr;

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex word must be a plain u32");

// Sleeps while `word` holds `expected` (returns at once if it does not; may return spuriously).
void sleep_while(std::atomic<uint32_t>& word, uint32_t expected) {
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
    word.wait(expected, std::memory_order_seq_cst);
#endif
}

void wake_all(std::atomic<uint32_t>& word) {
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
    word.notify_all();
#endif
}

// Spins with `pause` until pred() or `budget` has passed; returns pred()'s last value.
template <class Pred>
bool spin_until(Pred&& pred, Micros budget) {
    if (pred()) return true;
    if (budget.count() <= 0) return false;
    const auto deadline = Clock::now() + budget;
    for (;;) {
        for (int i = 0; i < kPausesPerClockRead; ++i) {
            cpu_relax();
            if (pred()) return true;
        }
        if (Clock::now() >= deadline) return pred();
    }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
    if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
    n_threads_ = std::clamp(n_threads, 1, kMaxChunks);
    threads_.reserve(size_t(n_threads_ - 1));
    for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this] { worker(); });
}

ThreadPool::~ThreadPool() {
    stop_.store(true, std::memory_order_seq_cst);
    generation_.fetch_add(1, std::memory_order_seq_cst);
    wake_all(generation_);
    for (auto& t : threads_) t.join();
}

void ThreadPool::run_index(int ith) {
    const ThreadPool* outer = tl_running_pool;
    tl_running_pool = this;
    try {
        (*job_)(ith, int(job_chunks_.load(std::memory_order_relaxed)));
    } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
    }
    tl_running_pool = outer;
    // After this increment the job (and fn) may be gone: touch nothing of it below.
    const uint32_t n = job_chunks_.load(std::memory_order_relaxed);
    if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == n &&
        caller_sleeping_.load(std::memory_order_seq_cst))
        wake_all(done_);
}

int ThreadPool::help(uint32_t gen) {
    int ran = 0;
    uint64_t w = work_.load(std::memory_order_acquire);
    for (;;) {
        // The word carries its own job's chunk count: a thread holding a stale word can never
        // match it against the next job's count (or claim in the gap while it is set up).
        const uint32_t next = uint32_t(w & 0xFFFF), count = uint32_t((w >> 16) & 0xFFFF);
        if (uint32_t(w >> 32) != gen || next >= count) return ran;
        if (work_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
            run_index(int(next));
            ++ran;
            w = work_.load(std::memory_order_acquire);
        }
    }
}

void ThreadPool::worker() {
    // The generation the pool was built with, not the current one: a worker that starts late
    // (busy machine) must still see every later change, the stop request above all.
    uint32_t seen = 0;
    Micros spin = kMaxSpin;
    for (;;) {
        auto fresh = [&] { return generation_.load(std::memory_order_acquire) != seen; };
        if (!spin_until(fresh, spin)) {
            sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
            while (generation_.load(std::memory_order_seq_cst) == seen) sleep_while(generation_, seen);
            sleeping_workers_.fetch_sub(1, std::memory_order_seq_cst);
        }
        seen = generation_.load(std::memory_order_acquire);
        if (stop_.load(std::memory_order_seq_cst)) return;
        // Arriving after every index was claimed means the caller did not need us (tiny job)
        // or we were not running when it did (busy machine): either way, spin less.
        spin = help(seen) > 0 ? kMaxSpin : std::max(kMinSpin, spin / 2);
    }
}

void ThreadPool::wait_for_job_end() {
    const uint32_t n = job_chunks_.load(std::memory_order_relaxed);
    if (spin_until([&] { return done_.load(std::memory_order_acquire) == n; }, kCallerSpin)) return;
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    for (uint32_t d; (d = done_.load(std::memory_order_seq_cst)) != n;) sleep_while(done_, d);
    caller_sleeping_.store(false, std::memory_order_relaxed);
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
    if (n_threads_ == 1 || tl_running_pool == this) {
        fn(0, 1);
        return;
    }
    start_job(n_threads_, fn);
}

void ThreadPool::run_chunks(int n_chunks, const std::function<void(int, int)>& fn) {
    if (n_chunks <= 0) return;
    if (n_chunks > kMaxChunks)
        throw std::invalid_argument("ThreadPool::run_chunks: " + std::to_string(n_chunks) + " chunks (at most " +
                                    std::to_string(kMaxChunks) + ")");
    if (n_threads_ == 1 || n_chunks == 1 || tl_running_pool == this) {
        for (int c = 0; c < n_chunks; ++c) fn(c, n_chunks);
        return;
    }
    start_job(n_chunks, fn);
}

void ThreadPool::start_job(int n_chunks, const std::function<void(int, int)>& fn) {
    std::lock_guard<std::mutex> lock(caller_mutex_);
    job_ = &fn;
    job_chunks_.store(uint32_t(n_chunks), std::memory_order_relaxed);
    error_ = nullptr;
    done_.store(0, std::memory_order_relaxed);
    const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
    work_.store(uint64_t(gen) << 32 | uint64_t(n_chunks) << 16, std::memory_order_release);
    generation_.store(gen, std::memory_order_seq_cst);
    if (sleeping_workers_.load(std::memory_order_seq_cst) > 0) {
        bool wake = useless_jobs_ < kLazyAfter;
        if (!wake) {
            const auto now = Clock::now();
            wake = now - last_lazy_wake_ >= kLazyWakeEvery;
            if (wake) last_lazy_wake_ = now;
        }
        if (wake) wake_all(generation_);
    }
    const int mine = help(gen);
    wait_for_job_end();
    useless_jobs_ = mine < n_chunks ? 0 : useless_jobs_ + 1;
    job_ = nullptr;
    if (error_) {
        std::exception_ptr e = error_;
        error_ = nullptr;
        std::rethrow_exception(e);
    }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    run([&](int ith, int nth) {
        int64_t b, e;
        split(n, ith, nth, b, e);
        if (b < e) fn(b, e);
    });
}

}  // namespace glimpse
