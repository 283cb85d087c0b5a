// ctnet/cuda/nccl.hpp — the communicator (exec/communicator.hpp) over NCCL, for GPU memory.
//
//   ctnet::mpi_session mpi{argc, argv};
//   ctnet::mpi_communicator host;                       // or any communicator: it only bootstraps
//   ctnet::nccl_communicator comm{host, local_rank};    // one GPU per rank
//   comm.allreduce_sum(device_gradients);               // spans of device memory
//
// Rank 0 creates the NCCL id and the bootstrap communicator broadcasts it; rank and size are the
// bootstrap's. Collectives are in place on one stream of the communicator's own: the blocking
// ones wait for it; start_allreduce_sum only enqueues (NCCL runs it while the caller goes on) and
// wait_all waits. Waiting polls the stream and NCCL's asynchronous error together, so a peer that
// failed aborts the communicator and throws instead of spinning forever in a collective.
// It is also a cuda::device_communicator (cuda/collective.hpp), the transport of
// trainer<Net, backend::cuda>'s data parallelism: start_average enqueues an ncclAvg all-reduce
// on its stream after an event of the caller's stream (the averaging runs on the device), join
// makes the caller's stream wait for it, sum_on_stream does the same for batch-norm statistics.
// One GPU per rank: NCCL refuses two ranks on one device (use cuda::staged_communicator there).
// Requires: NCCL and the CUDA runtime (link nccl and CUDA::cudart); every span points to device
// memory on this rank's device; the caller's own kernels that produce a span have finished (or
// ran on this communicator's stream(), which it may use). Host C++ only.
// Guarantees: every NCCL and CUDA status is checked: a failure throws ctnet::error naming the
// call and NCCL's or CUDA's message (no device, no driver, a peer that vanished).
// Status: compiled and linked in CI; not yet run on a GPU (see docs/distributed.md).
#pragma once

#include <array>
#include <cstring>
#include <span>
#include <string>
#include <thread>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "../core/error.hpp"
#include "../exec/communicator.hpp"
#include "collective.hpp"
#include "runtime.hpp"

#if NCCL_VERSION_CODE < 21000
#error "ctnet: cuda/nccl.hpp needs NCCL 2.10 or later (ncclAvg)"
#endif

namespace ctnet {

namespace detail {
inline void nccl_check(ncclResult_t r, const char* call) {
    if (r != ncclSuccess) throw error(std::string{"ctnet: nccl: "} + call + " failed: " + ncclGetErrorString(r));
}
}  // namespace detail

class nccl_communicator final : public communicator, public cuda::device_communicator {
public:
    // Collective over the bootstrap's ranks: every rank constructs one, each with its device.
    nccl_communicator(communicator& bootstrap, int device) : rank_{bootstrap.rank()}, size_{bootstrap.size()} {
        cuda::require_device(device);
        ncclUniqueId id{};
        if (rank_ == 0) detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
        // The id is opaque bytes; the bootstrap broadcasts floats, which it copies bit for bit.
        static_assert(sizeof(ncclUniqueId) % sizeof(float) == 0, "ctnet: ncclUniqueId is not a whole number of floats");
        std::array<float, sizeof(ncclUniqueId) / sizeof(float)> words{};
        std::memcpy(words.data(), &id, sizeof id);
        bootstrap.broadcast(words, 0);
        std::memcpy(&id, words.data(), sizeof id);
        CTNET_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        if (cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming) != cudaSuccess ||
            cudaEventCreateWithFlags(&done_, cudaEventDisableTiming) != cudaSuccess) {
            release();
            throw error("ctnet: nccl: cudaEventCreateWithFlags failed");
        }
        const ncclResult_t r = ncclCommInitRank(&comm_, size_, id, rank_);
        if (r != ncclSuccess) {
            release();
            detail::nccl_check(r, "ncclCommInitRank");
        }
    }
    nccl_communicator(const nccl_communicator&) = delete;
    nccl_communicator& operator=(const nccl_communicator&) = delete;
    ~nccl_communicator() override {
        if (comm_ != nullptr) {
            if (drain() == ncclSuccess) static_cast<void>(ncclCommDestroy(comm_));  // drain aborted it otherwise
        }
        release();
    }

    [[nodiscard]] int rank() const override { return rank_; }
    [[nodiscard]] int size() const override { return size_; }
    [[nodiscard]] cudaStream_t stream() const { return stream_; }

    void allreduce_sum(std::span<float> v) override {
        start(v.data(), v.size(), ncclFloat32);
        wait_all();
    }
    void allreduce_sum(std::span<double> v) override {
        start(v.data(), v.size(), ncclFloat64);
        wait_all();
    }
    void broadcast(std::span<float> v, int root) override {
        live();
        detail::nccl_check(ncclBroadcast(v.data(), v.data(), v.size(), ncclFloat32, root, comm_, stream_), "ncclBroadcast");
        wait_all();
    }
    void start_allreduce_sum(std::span<float> v) override { start(v.data(), v.size(), ncclFloat32); }
    void wait_all() override {
        live();
        detail::nccl_check(drain(), "a collective (asynchronous error; the communicator is aborted)");
    }

    // ---- cuda::device_communicator: device gradients and statistics, ordered with a stream.
    void start_average(std::span<float> v, cudaStream_t after) override {
        follow(after);
        detail::nccl_check(ncclAllReduce(v.data(), v.data(), v.size(), ncclFloat32, ncclAvg, comm_, stream_), "ncclAllReduce (avg)");
    }
    void join(cudaStream_t s) override {
        live();
        CTNET_CUDA(cudaEventRecord(done_, stream_));
        CTNET_CUDA(cudaStreamWaitEvent(s, done_, 0));
    }
    void wait() override { wait_all(); }
    void sum_on_stream(std::span<double> v, cudaStream_t s) override {
        follow(s);
        detail::nccl_check(ncclAllReduce(v.data(), v.data(), v.size(), ncclFloat64, ncclSum, comm_, stream_), "ncclAllReduce (sum)");
        join(s);
    }
    void sum_host(std::span<double> v) override {
        live();
        if (scalars_.size() < v.size()) scalars_ = cuda::device_buffer<double>{v.size()};
        CTNET_CUDA(cudaMemcpyAsync(scalars_.data(), v.data(), v.size_bytes(), cudaMemcpyHostToDevice, stream_));
        allreduce_sum(std::span<double>{scalars_.data(), v.size()});
        CTNET_CUDA(cudaMemcpyAsync(v.data(), scalars_.data(), v.size_bytes(), cudaMemcpyDeviceToHost, stream_));
        wait_all();
    }

private:
    // The communicator's stream waits for the work enqueued on s so far.
    void follow(cudaStream_t s) {
        live();
        CTNET_CUDA(cudaEventRecord(ready_, s));
        CTNET_CUDA(cudaStreamWaitEvent(stream_, ready_, 0));
    }
    void release() noexcept {
        if (done_ != nullptr) static_cast<void>(cudaEventDestroy(done_));
        if (ready_ != nullptr) static_cast<void>(cudaEventDestroy(ready_));
        static_cast<void>(cudaStreamDestroy(stream_));
    }

    void live() const {
        if (comm_ == nullptr) throw error("ctnet: nccl: the communicator was aborted after an earlier error");
    }

    // Waits until the stream is idle or NCCL reports an error; on an error (or a CUDA error on the
    // stream) aborts the communicator, which also ends its kernels, and returns what went wrong.
    ncclResult_t drain() noexcept {
        for (;;) {
            const cudaError_t q = cudaStreamQuery(stream_);
            if (q == cudaSuccess) return ncclSuccess;
            ncclResult_t async = ncclSuccess;
            if (q != cudaErrorNotReady) async = ncclUnhandledCudaError;
            else if (ncclCommGetAsyncError(comm_, &async) != ncclSuccess) async = ncclInternalError;
            if (async != ncclSuccess && async != ncclInProgress) {
                static_cast<void>(ncclCommAbort(comm_));
                comm_ = nullptr;
                return async;
            }
            std::this_thread::yield();
        }
    }

    void start(void* data, std::size_t count, ncclDataType_t type) {
        live();
        detail::nccl_check(ncclAllReduce(data, data, count, type, ncclSum, comm_, stream_), "ncclAllReduce");
    }

    int rank_, size_;
    cudaStream_t stream_ = nullptr;
    cudaEvent_t ready_ = nullptr, done_ = nullptr;
    ncclComm_t comm_ = nullptr;
    cuda::device_buffer<double> scalars_;
};

}  // namespace ctnet
