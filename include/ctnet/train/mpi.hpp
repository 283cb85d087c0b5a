// ctnet/train/mpi.hpp — the communicator (exec/communicator.hpp) over MPI.
//
//   int main(int argc, char** argv) {
//       ctnet::mpi_session mpi{argc, argv};        // MPI_Init ... MPI_Finalize
//       ctnet::mpi_communicator comm;              // MPI_COMM_WORLD
//       ...  data_parallel_step(t, comm, ...)      // train/distributed.hpp
//   }
//   mpirun -np 2 ./app       (as root: --allow-run-as-root; more ranks than cores: --oversubscribe)
//
// Only this header includes <mpi.h>: build what uses it with MPI (CMake: find_package(MPI
// COMPONENTS CXX), link MPI::MPI_CXX). Reductions are MPI_SUM in place (MPI_IN_PLACE);
// start_allreduce_sum is MPI_Iallreduce, progress() MPI_Testall, wait_all() MPI_Waitall.
// Requires: MPI initialised (mpi_session) for as long as a communicator is used; one thread
// calls it (MPI_THREAD_FUNNELED suffices: the trainer calls collectives outside its pool).
// Guarantees: an MPI error (under an error handler that returns) or a span longer than an MPI
// count can hold throws ctnet::error naming the call; the default handler aborts the job.
#pragma once

#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../exec/communicator.hpp"

namespace ctnet {

namespace detail {
inline void mpi_check(int rc, const char* call) {
    if (rc != MPI_SUCCESS) throw error(std::string{"ctnet: "} + call + " failed (MPI error " + std::to_string(rc) + ")");
}
template <class T>
int mpi_count(std::span<T> v, const char* call) {
    if (v.size() > static_cast<std::size_t>(INT_MAX))
        throw error(std::string{"ctnet: "} + call + ": " + std::to_string(v.size()) + " values exceed an MPI count");
    return static_cast<int>(v.size());
}
}  // namespace detail

// MPI_Init_thread in the constructor (unless already initialised), MPI_Finalize in the
// destructor. MPI_THREAD_FUNNELED: the process has other threads (the trainer's pool), only the
// main thread calls MPI.
class mpi_session {
public:
    mpi_session(int& argc, char**& argv) {
        int done = 0;
        MPI_Initialized(&done);
        if (done) return;
        int provided = MPI_THREAD_SINGLE;
        detail::mpi_check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
        owned_ = true;
        if (provided < MPI_THREAD_FUNNELED)
            throw error("ctnet: this MPI does not support MPI_THREAD_FUNNELED (threads beside the one calling MPI)");
    }
    mpi_session(const mpi_session&) = delete;
    mpi_session& operator=(const mpi_session&) = delete;
    ~mpi_session() {
        if (owned_) MPI_Finalize();
    }

private:
    bool owned_ = false;
};

// Ends every rank of the job (for an error on one rank while the others wait in a collective).
[[noreturn]] inline void mpi_abort(int code = 1) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();
}

class mpi_communicator final : public communicator {
public:
    explicit mpi_communicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_{comm} {
        detail::mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
        detail::mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    }
    ~mpi_communicator() override {
        if (!pending_.empty()) MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE);
    }

    [[nodiscard]] int rank() const override { return rank_; }
    [[nodiscard]] int size() const override { return size_; }

    void allreduce_sum(std::span<float> v) override {
        const int n = detail::mpi_count(v, "MPI_Allreduce");
        detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, v.data(), n, MPI_FLOAT, MPI_SUM, comm_), "MPI_Allreduce");
    }
    void allreduce_sum(std::span<double> v) override {
        const int n = detail::mpi_count(v, "MPI_Allreduce");
        detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, v.data(), n, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
    }
    void broadcast(std::span<float> v, int root) override {
        const int n = detail::mpi_count(v, "MPI_Bcast");
        detail::mpi_check(MPI_Bcast(v.data(), n, MPI_FLOAT, root, comm_), "MPI_Bcast");
    }
    void start_allreduce_sum(std::span<float> v) override {
        const int n = detail::mpi_count(v, "MPI_Iallreduce");
        MPI_Request r = MPI_REQUEST_NULL;
        detail::mpi_check(MPI_Iallreduce(MPI_IN_PLACE, v.data(), n, MPI_FLOAT, MPI_SUM, comm_, &r), "MPI_Iallreduce");
        pending_.push_back(r);
    }
    void progress() override {
        if (pending_.empty()) return;
        int done = 0;
        detail::mpi_check(MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE),
                          "MPI_Testall");
        if (done) pending_.clear();
    }
    void wait_all() override {
        if (pending_.empty()) return;
        detail::mpi_check(MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE),
                          "MPI_Waitall");
        pending_.clear();
    }

private:
    MPI_Comm comm_;
    int rank_ = 0, size_ = 1;
    std::vector<MPI_Request> pending_;
};

}  // namespace ctnet
