// A fixed pool of worker threads for data-parallel kernels. The calling thread takes part, so
// ThreadPool(1) runs everything inline. One job at a time: run() blocks until every thread
// has finished its share. Workers spin briefly before sleeping, because decode-time kernels
// are short (tens of microseconds) and a sleeping wake-up would cost more than the work.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace glimpse {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);  // n_threads <= 0: one per hardware thread
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // fn(ith, nth) on every thread, ith in [0, nth); returns when all have returned.
    // An exception thrown by fn is rethrown here (the first one).
    void run(const std::function<void(int ith, int nth)>& fn);

    // fn(begin, end) over [0, n) cut into one contiguous range per thread.
    void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);

    // The share [begin, end) of [0, n) that thread ith of nth takes.
    static void split(int64_t n, int ith, int nth, int64_t& begin, int64_t& end) {
        const int64_t base = n / nth, rem = n % nth;
        begin = ith * base + (ith < rem ? ith : rem);
        end = begin + base + (ith < rem ? 1 : 0);
    }

private:
    void worker(int ith);
    void run_share(int ith);

    int n_threads_;
    std::vector<std::thread> threads_;
    const std::function<void(int, int)>* job_ = nullptr;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::exception_ptr error_;
    std::mutex error_mutex_;
};

}  // namespace glimpse
