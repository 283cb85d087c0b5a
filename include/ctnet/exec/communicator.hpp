// ctnet/exec/communicator.hpp — the collectives data-parallel training needs, behind an interface.
//
//   single_process comm;                       // rank 0 of 1: every collective is a no-op
//   mpi_communicator comm;                     // train/mpi.hpp: MPI_COMM_WORLD
//   comm.allreduce_sum(grads);                 // every rank ends with the element-wise sum
//   comm.broadcast(w.data(), 0);               // every rank ends with rank 0's values
//   comm.start_allreduce_sum(bucket); ... comm.progress(); ... comm.wait_all();
//
// The trainer (options::sync_bn) and train/distributed.hpp use only this interface, so they
// compile without MPI; train/mpi.hpp implements it with MPI.
// Requires: collective semantics, as MPI's: every rank calls the same collectives in the same
// order with spans of equal sizes. A span given to start_allreduce_sum must stay valid, and be
// neither read nor written by the caller, until wait_all() returns.
// Guarantees: after allreduce_sum / wait_all every rank holds the same sums (MPI_SUM); the
// single-process implementation leaves every value unchanged.
#pragma once

#include <span>

namespace ctnet {

struct communicator {
    communicator() = default;
    communicator(const communicator&) = delete;
    communicator& operator=(const communicator&) = delete;
    virtual ~communicator() = default;

    [[nodiscard]] virtual int rank() const = 0;
    [[nodiscard]] virtual int size() const = 0;
    // Blocking: every rank's v becomes the element-wise sum over all ranks.
    virtual void allreduce_sum(std::span<float> v) = 0;
    virtual void allreduce_sum(std::span<double> v) = 0;
    // Blocking: every rank's v becomes root's.
    virtual void broadcast(std::span<float> v, int root) = 0;
    // Non-blocking sum: starts it (the default implementation runs it to completion here).
    virtual void start_allreduce_sum(std::span<float> v) { allreduce_sum(v); }
    // Lets started reductions advance (MPI progresses them only inside MPI calls).
    virtual void progress() {}
    // Blocks until every started reduction has completed.
    virtual void wait_all() {}
};

// One process: rank 0 of 1.
struct single_process final : communicator {
    [[nodiscard]] int rank() const override { return 0; }
    [[nodiscard]] int size() const override { return 1; }
    void allreduce_sum(std::span<float>) override {}
    void allreduce_sum(std::span<double>) override {}
    void broadcast(std::span<float>, int) override {}
};

}  // namespace ctnet
