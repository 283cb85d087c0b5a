// ctnet/train/distributed.hpp — synchronous data-parallel training over a communicator.
//
//   mpi_session mpi{argc, argv};  mpi_communicator comm;           // train/mpi.hpp (or single_process)
//   weights<net> w;  init_seeded(w, 1);  broadcast_parameters(comm, w);   // identical replicas
//   trainer<net, backend::cpu> t{w, {.threads = 2, .sync_bn = &comm}};    // sync_bn optional
//   const shard part = shard_of(global_batch, comm);               // this rank's contiguous slice
//   step_result s = data_parallel_step(t, comm, opt, ranges, x_part, labels_part, r, lr);
//
// Semantics: each rank's loss is the mean over its own samples; after backward the gradients
// are summed over the ranks and divided by the world size, so with equal shards every rank holds
// the gradient of the mean loss over the global batch, clips and updates identically, and the
// replicas stay equal (they must start equal: broadcast_parameters).
// Batch norm: by default each rank normalises with its own shard's statistics (the paper's
// replicas), so the running statistics differ per rank (rank 0's are the ones to save). With
// trainer options::sync_bn = &comm the statistics are the global batch's: 2 ranks on the two
// halves of a batch then compute what 1 rank computes on all of it, up to float rounding
// (tests/test_distributed.cpp). Dropout masks come from each rank's own generator, so a run with
// dropout differs from a 1-rank run.
// Overlap: the gradient all-reduce is bucketed (data_parallel_options::bucket_bytes, 1 MiB),
// buckets cut from the end of the parameter storage (bucket_plan, train/buckets.hpp). The storage
// is laid out in op order and backward runs the ops last to first, so once op i's backward has
// run, the gradients from ops[i].param_offset to the end are final: every bucket wholly inside
// them is started then (start_allreduce_sum: MPI_Iallreduce) and pending ones are progressed
// between ops (MPI_Test); the rest start after backward, and all are waited for before clipping.
// The same plan cuts the device gradients of trainer<Net, backend::cuda> (cuda/trainer.hpp).
// Requires: every rank runs the same network and recipe with shards of equal size (checked
// after backward: an error on every rank, before any parameter changes).
// comm_seconds in the result: the time blocked after backward (the buckets still in flight, the
// statistics collective), which includes waiting for a slower rank.
// Guarantees: the returned loss, main_loss and aux_loss are means over the ranks and correct the
// sum over the global batch, grad_norm that of the averaged gradient: the same on every rank.
// An error thrown on one rank only (e.g. a non-finite logit in its shard) leaves the others
// blocked in their next collective: end the job (mpi_abort in train/mpi.hpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../exec/backend.hpp"
#include "../exec/communicator.hpp"
#include "buckets.hpp"
#include "optim.hpp"
#include "step.hpp"

namespace ctnet {

// Samples [begin, begin + count) of a global batch: rank r of p takes the r-th of p equal slices.
struct shard {
    std::size_t begin = 0, count = 0;
};

inline shard shard_of(std::size_t global_batch, int rank, int size) {
    if (size < 1 || rank < 0 || rank >= size)
        throw error("ctnet: data parallel: rank " + std::to_string(rank) + " of a world of " + std::to_string(size));
    const auto p = static_cast<std::size_t>(size);
    if (global_batch == 0 || global_batch % p != 0)
        throw error("ctnet: data parallel: the world size " + std::to_string(size) + " does not divide the batch " +
                    std::to_string(global_batch) + " (every rank needs an equal shard)");
    const std::size_t count = global_batch / p;
    return {static_cast<std::size_t>(rank) * count, count};
}
inline shard shard_of(std::size_t global_batch, const communicator& comm) {
    return shard_of(global_batch, comm.rank(), comm.size());
}

// Every rank's parameters (and running statistics) become root's.
template <class Net>
void broadcast_parameters(communicator& comm, weights<Net>& w, int root = 0) {
    comm.broadcast(w.data(), root);
}

// Is each op's parameter storage after that of every earlier op? (Then backward finishes the
// gradients from the end of the storage towards its start.)
template <class Net>
constexpr bool storage_in_op_order() {
    const auto& p = Net::program;
    std::size_t end = 0;
    for (int i = 0; i < p.n_ops; ++i) {
        if (p.ops[i].param_offset < end) return false;
        end = p.ops[i].param_offset + p.ops[i].storage;
    }
    return end <= p.storage;
}

// Sums a gradient storage over the ranks in the buckets of a plan (train/buckets.hpp), each
// started as soon as backward has made it final, then divides it by the world size.
class gradient_reducer {
public:
    gradient_reducer(communicator& comm, std::span<float> grads, const std::vector<grad_bucket>& plan)
        : comm_{&comm}, grads_{grads}, cursor_{plan} {}

    // Op i's backward has run: starts the buckets that made final, progresses those in flight.
    void after_op(int i) {
        cursor_.after(i, [&](const grad_bucket& b) { comm_->start_allreduce_sum(grads_.subspan(b.begin, b.count)); });
        comm_->progress();
    }
    // Starts the rest, waits for every bucket, averages.
    void finish() {
        cursor_.rest([&](const grad_bucket& b) { comm_->start_allreduce_sum(grads_.subspan(b.begin, b.count)); });
        comm_->wait_all();
        const float scale = 1.0F / static_cast<float>(comm_->size());
        for (float& g : grads_) g *= scale;
    }

private:
    communicator* comm_;
    std::span<float> grads_;
    bucket_cursor cursor_;
};

struct data_parallel_options {
    std::size_t bucket_bytes = std::size_t{1} << 20;
};

// train_step (train/step.hpp) on this rank's shard x / labels, with the gradients averaged over
// the ranks between backward and clipping.
template <class Net, class B>
step_result data_parallel_step(trainer<Net, B>& t, communicator& comm, optimizer& opt,
                               std::span<const param_range> ranges, std::span<const float> x,
                               std::span<const int> labels, const recipe& r, double lr, moving_average* ema = nullptr,
                               data_parallel_options o = {}) {
    std::vector<float> dlogits, daux;
    step_result s = step_forward(t, x, labels, r, dlogits, daux);
    t.zero_grads();
    if (comm.size() == 1) {
        t.backward(dlogits, daux);
        step_update(t, opt, ranges, r, lr, ema, s);
        return s;
    }
    const std::vector<grad_bucket> plan = bucket_plan<Net>(o.bucket_bytes / sizeof(float));
    gradient_reducer reducer{comm, t.grads(), plan};
    t.backward(dlogits, daux, [&](int i) { reducer.after_op(i); });
    const auto blocked_from = std::chrono::steady_clock::now();
    reducer.finish();
    // One collective for the shard check and the statistics: equal shards iff p * sum(n^2) == sum(n)^2.
    const auto n = static_cast<double>(t.batch());
    std::vector<double> v{n, n * n, s.loss, s.main_loss, s.aux_loss, static_cast<double>(s.correct)};
    comm.allreduce_sum(v);
    s.comm_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - blocked_from).count();
    const auto p = static_cast<double>(comm.size());
    if (p * v[1] != v[0] * v[0])
        throw error("ctnet: data_parallel_step: the ranks' batches differ in size (" + std::to_string(v[0]) +
                    " samples over " + std::to_string(comm.size()) + " ranks); every rank needs an equal shard");
    s.loss = v[2] / p;
    s.main_loss = v[3] / p;
    s.aux_loss = v[4] / p;
    s.correct = static_cast<int>(v[5]);
    step_update(t, opt, ranges, r, lr, ema, s);
    return s;
}

}  // namespace ctnet
