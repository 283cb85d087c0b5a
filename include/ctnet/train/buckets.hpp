// ctnet/train/buckets.hpp — how the gradient all-reduce is cut into buckets, and when each starts.
//
//   const std::vector<grad_bucket> plan = bucket_plan<Net>(bucket_floats);
//   // backward runs the ops last to first; once op i's backward has run, start every bucket
//   // whose after_op is i, in the plan's order
//
// The buckets tile the parameter storage [0, storage) from its end, bucket_floats each (the one at
// offset 0 takes the rest). A bucket's gradients are final once every op whose storage overlaps
// it has run its backward; backward reaches the smallest such op index last, so that index is the
// bucket's after_op. With the storage in op order (graph/program.hpp lays it out so) a bucket is
// started as soon as the op holding its first float is done, while the ops before it still run.
// The plan is in start order: after_op descending, then from the end of the storage. Every rank
// computes the same plan, so the ranks start their collectives in the same order, which NCCL
// requires (and MPI's non-blocking collectives too).
// Used by data_parallel_step (train/distributed.hpp, host gradients) and by
// trainer<Net, backend::cuda> (cuda/trainer.hpp, device gradients over NCCL).
// Requires: bucket_floats > 0 (0 is taken as 1). Guarantees: counts > 0, the buckets disjoint and
// covering the storage exactly, after_op in [0, n_ops).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "../graph/network.hpp"

namespace ctnet {

struct grad_bucket {
    std::size_t begin = 0, count = 0;  // floats of the parameter storage
    int after_op = 0;                  // start once this op's backward has run
};

template <class Program>
std::vector<grad_bucket> bucket_plan(const Program& p, std::size_t bucket_floats) {
    const std::size_t size = std::max<std::size_t>(bucket_floats, 1), total = p.storage;
    if (total == 0) return {};
    const std::size_t buckets = (total + size - 1) / size;
    // Bucket k covers [total - (k + 1) * size, total - k * size), clipped at 0: float f is in
    // bucket (total - 1 - f) / size.
    std::vector<grad_bucket> plan(buckets);
    for (std::size_t k = 0; k < buckets; ++k) {
        const std::size_t end = total - k * size;
        plan[k].begin = end > size ? end - size : 0;
        plan[k].count = end - plan[k].begin;
        plan[k].after_op = p.n_ops - 1;  // no op overlaps it: its gradients stay zero, final at once
    }
    for (int i = 0; i < p.n_ops; ++i) {
        const std::size_t offset = p.ops[i].param_offset, floats = p.ops[i].storage;
        if (floats == 0) continue;
        for (std::size_t k = (total - offset - floats) / size; k <= (total - 1 - offset) / size; ++k)
            plan[k].after_op = std::min(plan[k].after_op, i);
    }
    std::stable_sort(plan.begin(), plan.end(), [](const grad_bucket& a, const grad_bucket& b) { return a.after_op > b.after_op; });
    return plan;
}

template <class Net>
std::vector<grad_bucket> bucket_plan(std::size_t bucket_floats) {
    return bucket_plan(Net::program, bucket_floats);
}

// Walks a plan as backward runs: after(i) hands start() each bucket whose after_op is i; rest()
// hands it those not started yet (all of them when backward ran without the after(i) calls).
class bucket_cursor {
public:
    explicit bucket_cursor(const std::vector<grad_bucket>& plan) : plan_{&plan} {}
    template <class F>
    void after(int op, F&& start) {
        while (next_ < plan_->size() && (*plan_)[next_].after_op >= op) start((*plan_)[next_++]);
    }
    template <class F>
    void rest(F&& start) {
        after(0, start);  // every after_op is >= 0
    }

private:
    const std::vector<grad_bucket>* plan_;
    std::size_t next_ = 0;
};

}  // namespace ctnet
