// ctnet/cuda/collective.hpp — collectives over device memory, ordered with a CUDA stream: what
// trainer<Net, backend::cuda> needs for data parallelism (its options::comm).
//
//   ctnet::nccl_communicator comm{host, local_rank};        // cuda/nccl.hpp: one GPU per rank
//   ctnet::cuda::staged_communicator comm{host};             // cuda/staged.hpp: through host memory
//   trainer<net, backend::cuda> t{w, {.comm = &comm}};
//
// Two transports implement it. NCCL's (cuda/nccl.hpp) reduces in device memory on its own stream
// and is the one to use with a GPU per rank. NCCL refuses two ranks on one GPU ("Duplicate GPU
// detected", since NCCL 2.5), so ranks that share a GPU — and the tests that compare 2 ranks with
// 1 on a single GPU — use the staged one, which copies each bucket to pinned host memory and
// reduces it with the host communicator (MPI). Both average in device memory, on the device.
// Requires: every rank calls the same collectives in the same order (the trainer's bucket plan
// and its batch norms see to that); spans point to device memory on the caller's device.
#pragma once

#include <span>

#include <cuda_runtime_api.h>

namespace ctnet::cuda {

class device_communicator {
public:
    device_communicator() = default;
    device_communicator(const device_communicator&) = delete;
    device_communicator& operator=(const device_communicator&) = delete;
    virtual ~device_communicator() = default;

    [[nodiscard]] virtual int rank() const = 0;
    [[nodiscard]] virtual int size() const = 0;
    // Starts averaging v over the ranks once the work enqueued on `after` so far has finished;
    // returns at once (the staged transport may block until then).
    virtual void start_average(std::span<float> v, cudaStream_t after) = 0;
    // Work enqueued on s from now on sees every started average done.
    virtual void join(cudaStream_t s) = 0;
    // Blocks until the started averages are done; a failed peer throws ctnet::error here
    // instead of leaving the caller waiting on its stream forever.
    virtual void wait() = 0;
    // Sums v (device doubles: per-channel statistics) over the ranks after the work enqueued on s
    // so far; work enqueued on s afterwards sees the sums.
    virtual void sum_on_stream(std::span<double> v, cudaStream_t s) = 0;
    // Sums v (host doubles: the step's scalars) over the ranks; blocking.
    virtual void sum_host(std::span<double> v) = 0;
};

}  // namespace ctnet::cuda
