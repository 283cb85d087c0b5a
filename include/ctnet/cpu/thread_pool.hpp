// ctnet/cpu/thread_pool.hpp — a fixed set of threads for data-parallel loops.
//
//   thread_pool pool{2};
//   pool.run(tasks, [&](int task, int thread) { ... });   // returns when every task is done
//   pool.run_ranges(count, tasks, [&](int begin, int end, int thread, int task) { ... });
//
// run_ranges cuts a loop of `count` items into `tasks` ranges: task t takes the items
// task_range(count, tasks, t), [t * count / tasks, (t + 1) * count / tasks). The CPU kernels
// split their loops with it (training's batch chunks, channel ranges and pooling planes; the
// inference conv schedule uses task_range for its runs of units and its row ranges); the cut
// depends on (count, tasks) only, never on which thread runs what.
// Requires: run() is called from one thread at a time (the pool's owner).
// Guarantees: threads - 1 workers are started once; the caller works too. Between loops the
// threads spin briefly (layers follow each other within microseconds), then sleep. run() allocates
// nothing, so a steady-state forward pass stays allocation-free. Tasks are handed out in
// order from an atomic counter; which thread runs which task varies, so callers must make
// results independent of that (each task writes its own outputs).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace ctnet::cpu {

// Items [begin, end) of task `task` when `count` items are cut into `tasks` ranges, in order:
// [task * count / tasks, (task + 1) * count / tasks). Sizes differ by at most one; a range is
// empty only when tasks > count.
struct index_range {
    int begin, end;
};
[[nodiscard]] constexpr index_range task_range(int count, int tasks, int task) {
    const auto c = static_cast<long long>(count);
    return {static_cast<int>(c * task / tasks), static_cast<int>(c * (task + 1) / tasks)};
}

class thread_pool {
public:
    explicit thread_pool(int threads) : threads_{threads < 1 ? 1 : threads} {
        workers_.reserve(static_cast<std::size_t>(threads_ - 1));
        for (int t = 1; t < threads_; ++t) workers_.emplace_back([this, t] { work(t); });
    }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() {
        {
            const std::lock_guard lock{mutex_};
            stop_.store(true, std::memory_order_release);
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        for (std::thread& w : workers_) w.join();
    }

    [[nodiscard]] int size() const { return threads_; }

    template <class F>
    void run(int tasks, F&& f) {
        if (tasks <= 0) return;
        if (threads_ == 1 || tasks == 1) {
            for (int i = 0; i < tasks; ++i) f(i, 0);
            return;
        }
        call_ = [](void* ctx, int task, int thread) { (*static_cast<F*>(ctx))(task, thread); };
        ctx_ = &f;
        tasks_ = tasks;
        next_.store(0, std::memory_order_relaxed);
        busy_.store(threads_ - 1, std::memory_order_relaxed);
        {
            const std::lock_guard lock{mutex_};
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        drain(0);
        // Layers follow each other within microseconds: spin a little before sleeping.
        for (int spin = 0; spin < spin_limit && busy_.load(std::memory_order_acquire) != 0; ++spin) pause();
        if (busy_.load(std::memory_order_acquire) != 0) {
            std::unique_lock lock{mutex_};
            done_.wait(lock, [&] { return busy_.load(std::memory_order_acquire) == 0; });
        }
    }

    // run(tasks, ...) with task t calling f(begin, end, thread, t) over task_range(count, tasks, t).
    template <class F>
    void run_ranges(int count, int tasks, F&& f) {
        run(tasks, [&](int task, int thread) {
            const index_range r = task_range(count, tasks, task);
            f(r.begin, r.end, thread, task);
        });
    }

private:
    static constexpr int spin_limit = 20000;

    static void pause() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    void drain(int thread) {
        for (int i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < tasks_;) call_(ctx_, i, thread);
    }
    void work(int thread) {
        std::uint64_t seen = 0;
        for (;;) {
            for (int spin = 0; spin < spin_limit && generation_.load(std::memory_order_acquire) == seen; ++spin) pause();
            if (generation_.load(std::memory_order_acquire) == seen) {
                std::unique_lock lock{mutex_};
                wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            }
            seen = generation_.load(std::memory_order_acquire);
            if (stop_.load(std::memory_order_acquire)) return;
            drain(thread);
            if (busy_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                const std::lock_guard lock{mutex_};  // pairs with the owner's wait
                done_.notify_one();
            }
        }
    }

    int threads_;
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<int> busy_{0};
    std::atomic<bool> stop_{false};
    void (*call_)(void*, int, int) = nullptr;
    void* ctx_ = nullptr;
    int tasks_ = 0;
    std::atomic<int> next_{0};
};

}  // namespace ctnet::cpu
