// ThreadPool: the contract (every index exactly once, exceptions, reuse, nesting) and the
// wait policy's liveness (no lost wake-up over many tiny jobs, with workers asleep or spinning).
#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "core/thread_pool.h"

using glimpse::ThreadPool;
using namespace std::chrono_literals;

namespace {

// Runs fn on another thread and reports whether it finished within `limit` (a hang fails the
// test instead of blocking the suite; the stuck thread is detached and the process exits).
template <class Fn>
bool finishes_within(std::chrono::seconds limit, Fn fn) {
    std::packaged_task<void()> task(std::move(fn));
    auto done = task.get_future();
    std::thread t(std::move(task));
    if (done.wait_for(limit) != std::future_status::ready) {
        t.detach();
        return false;
    }
    t.join();
    done.get();  // rethrows a failure inside fn
    return true;
}

}  // namespace

TEST_CASE("thread pool runs every index exactly once, with nth = size()", "[thread_pool]") {
    const int threads = GENERATE(1, 2, 3, 5, 8);
    ThreadPool pool(threads);
    REQUIRE(pool.size() == threads);
    std::vector<std::atomic<int>> hits(static_cast<size_t>(threads));
    std::atomic<int> bad_nth{0};
    for (int rep = 0; rep < 200; ++rep)
        pool.run([&](int ith, int nth) {
            if (nth != threads || ith < 0 || ith >= nth) bad_nth++;
            else hits[size_t(ith)]++;
        });
    CHECK(bad_nth.load() == 0);
    for (auto& h : hits) CHECK(h.load() == 200);
}

TEST_CASE("thread pool run_chunks runs every chunk exactly once", "[thread_pool]") {
    const int threads = GENERATE(1, 2, 3);
    ThreadPool pool(threads);
    for (int chunks : {0, 1, 2, 3, 7, 16, 64}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(chunks));
        std::atomic<int> bad{0};
        for (int rep = 0; rep < 50; ++rep)
            pool.run_chunks(chunks, [&](int c, int n) {
                if (n != chunks || c < 0 || c >= n) bad++;
                else hits[size_t(c)]++;
            });
        CHECK(bad.load() == 0);
        for (auto& h : hits) REQUIRE(h.load() == 50);
    }
    // Alternating with run(): the chunk count of one job never leaks into the next.
    std::atomic<int> total{0};
    for (int rep = 0; rep < 500; ++rep) {
        pool.run_chunks(5, [&](int, int) { total++; });
        pool.run([&](int, int) { total++; });
    }
    CHECK(total.load() == 500 * (5 + threads));
    CHECK_THROWS_WITH(pool.run_chunks(9, [](int c, int) {
        if (c == 8) throw std::runtime_error("last chunk");
    }),
                      "last chunk");
    CHECK_THROWS_AS(pool.run_chunks(ThreadPool::kMaxChunks + 1, [](int, int) {}), std::invalid_argument);
    std::atomic<int> nested{0};
    pool.run([&](int, int) { pool.run_chunks(4, [&](int, int) { nested++; }); });
    CHECK(nested.load() == 4 * threads);
}

TEST_CASE("thread pool parallel_for covers awkward ranges", "[thread_pool]") {
    ThreadPool pool(3);
    for (int64_t n : {0, 1, 2, 7, 13, 127, 576, 1000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
        });
        for (auto& h : hits) REQUIRE(h.load() == 1);
    }
    int64_t b = -1, e = -1;
    ThreadPool::split(10, 2, 3, b, e);  // 4 + 3 + 3
    CHECK(b == 7);
    CHECK(e == 10);
}

TEST_CASE("thread pool rethrows the first exception and stays usable", "[thread_pool]") {
    ThreadPool pool(4);
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH(pool.run([&](int ith, int) {
        ran++;
        if (ith == 3) throw std::runtime_error("index three failed");
    }),
                      "index three failed");
    CHECK(ran.load() == 4);  // the other indices still ran
    // The caller's own index throwing is no different.
    CHECK_THROWS_AS(pool.run([](int ith, int) {
        if (ith == 0) throw std::logic_error("caller index");
    }),
                    std::logic_error);
    std::atomic<int> count{0};
    pool.run([&](int, int) { count++; });
    CHECK(count.load() == 4);  // no stale error is rethrown
}

TEST_CASE("thread pool: nested run goes inline, serial reuse keeps working", "[thread_pool]") {
    ThreadPool pool(3);
    std::atomic<int> inner{0}, outer{0};
    pool.run([&](int, int) {
        outer++;
        pool.run([&](int ith, int nth) {
            CHECK(ith == 0);
            CHECK(nth == 1);
            inner++;
        });
    });
    CHECK(outer.load() == 3);
    CHECK(inner.load() == 3);
    // A second pool used from inside a job of the first is an ordinary (non-nested) caller.
    ThreadPool other(2);
    std::atomic<int> other_hits{0};
    pool.run([&](int ith, int) {
        if (ith == 1) other.run([&](int, int nth) { other_hits += nth; });
    });
    CHECK(other_hits.load() == 4);
}

TEST_CASE("thread pool: callers on several threads are serialised", "[thread_pool]") {
    ThreadPool pool(2);
    std::atomic<int> in_job{0}, overlap{0}, total{0};
    auto caller = [&] {
        for (int i = 0; i < 2000; ++i)
            pool.run([&](int, int) {
                if (in_job.fetch_add(1) >= 2) overlap++;
                total++;
                in_job.fetch_sub(1);
            });
    };
    REQUIRE(finishes_within(30s, [&] {
        std::thread a(caller), b(caller);
        a.join();
        b.join();
    }));
    CHECK(overlap.load() == 0);
    CHECK(total.load() == 2 * 2000 * 2);
}

TEST_CASE("thread pool: 100k tiny jobs finish (no lost wake-up)", "[thread_pool]") {
    const int threads = GENERATE(2, 3);
    ThreadPool pool(threads);
    std::atomic<int64_t> sum{0};
    REQUIRE(finishes_within(60s, [&] {
        for (int i = 0; i < 100000; ++i) {
            pool.run([&](int ith, int) { sum += ith + 1; });
            // Every so often let the workers fall asleep, so both the spinning and the
            // sleeping hand-over are exercised.
            if (i % 10000 == 9999) std::this_thread::sleep_for(2ms);
        }
    }));
    CHECK(sum.load() == int64_t(100000) * threads * (threads + 1) / 2);
}

TEST_CASE("thread pool: jobs after a long idle wake the workers", "[thread_pool]") {
    ThreadPool pool(2);
    std::atomic<bool> worker_ran{false};
    const auto caller = std::this_thread::get_id();
    // Many tiny jobs teach the workers to sleep early; then one job that needs them.
    for (int i = 0; i < 200; ++i) pool.run([](int, int) {});
    std::this_thread::sleep_for(20ms);
    REQUIRE(finishes_within(30s, [&] {
        for (int attempt = 0; attempt < 200 && !worker_ran; ++attempt)
            pool.run([&](int ith, int) {
                if (ith == 0) std::this_thread::sleep_for(5ms);  // room for a worker to claim 1
                if (std::this_thread::get_id() != caller) worker_ran = true;
            });
    }));
    CHECK(worker_ran.load());
}

TEST_CASE("thread pool destruction while idle, busy-then-idle and never used", "[thread_pool]") {
    REQUIRE(finishes_within(30s, [] {
        { ThreadPool never_used(4); }
        {
            ThreadPool spinning(3);
            spinning.run([](int, int) {});
        }  // destroyed while the workers still spin
        {
            ThreadPool sleeping(3);
            sleeping.run([](int, int) {});
            std::this_thread::sleep_for(10ms);  // past the spin budget: workers asleep
        }
        for (int i = 0; i < 50; ++i) ThreadPool churn(2);
    }));
}
