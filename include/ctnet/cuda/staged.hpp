// ctnet/cuda/staged.hpp — cuda::device_communicator (cuda/collective.hpp) through host memory:
// for ranks that share a GPU, which NCCL refuses, and for machines without NCCL.
//
//   ctnet::mpi_session mpi{argc, argv};  ctnet::mpi_communicator host;   // or any communicator
//   ctnet::cuda::staged_communicator comm{host};
//   trainer<net, backend::cuda> t{w, {.comm = &comm}};
//
// start_average enqueues the bucket's copy to pinned host memory on a stream of its own, after
// the caller's work so far (so the copies overlap the rest of backward); join waits for the copies,
// sums every bucket with the host communicator (its non-blocking all-reduce, all in flight
// together), copies them back on the caller's stream and scales them there by 1 / size (on the
// device). sum_on_stream waits for the caller's stream, sums on the host and copies back.
// Slower than NCCL by the two copies and the host reduction; the sums are the same up to
// rounding (NCCL's ncclAvg may scale before it sums).
// Requires: the host communicator's ranks are this communicator's; the caller's device is
// current on every call (the trainer's is); after an error between start_average and join the
// communicator is not used again (its pending buckets point into the failed step's gradients).
// Links ctnet::cuda (the scaling kernel).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include <cuda_runtime_api.h>

#include "../exec/communicator.hpp"
#include "collective.hpp"
#include "launch.hpp"
#include "runtime.hpp"

namespace ctnet::cuda {

class staged_communicator final : public device_communicator {
public:
    explicit staged_communicator(communicator& host) : host_{&host} {
        CTNET_CUDA(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    }
    ~staged_communicator() override { static_cast<void>(cudaEventDestroy(ready_)); }

    [[nodiscard]] int rank() const override { return host_->rank(); }
    [[nodiscard]] int size() const override { return host_->size(); }

    void start_average(std::span<float> v, cudaStream_t after) override {
        if (used_ == stage_.size()) stage_.emplace_back();
        pinned_buffer<float>& h = stage_[used_];
        if (h.size() < v.size()) h = pinned_buffer<float>{v.size()};
        CTNET_CUDA(cudaEventRecord(ready_, after));
        CTNET_CUDA(cudaStreamWaitEvent(copies_.get(), ready_, 0));
        CTNET_CUDA(cudaMemcpyAsync(h.data(), v.data(), v.size_bytes(), cudaMemcpyDeviceToHost, copies_.get()));
        pending_.push_back(v);
        ++used_;
    }
    void join(cudaStream_t s) override {
        copies_.synchronize();
        for (std::size_t k = 0; k < pending_.size(); ++k) host_->start_allreduce_sum({stage_[k].data(), pending_[k].size()});
        host_->wait_all();
        const double inv = 1.0 / static_cast<double>(size());
        for (std::size_t k = 0; k < pending_.size(); ++k) {
            const std::span<float> d = pending_[k];
            CTNET_CUDA(cudaMemcpyAsync(d.data(), stage_[k].data(), d.size_bytes(), cudaMemcpyHostToDevice, s));
            scale(d.data(), static_cast<long long>(d.size()), inv, s);
        }
        pending_.clear();
        used_ = 0;  // the stage is reused next step: its copies back run on s before anything after them
    }
    void wait() override {}  // join already waited for the host reduction
    void sum_on_stream(std::span<double> v, cudaStream_t s) override {
        if (sums_.size() < v.size()) sums_ = pinned_buffer<double>{v.size()};
        CTNET_CUDA(cudaMemcpyAsync(sums_.data(), v.data(), v.size_bytes(), cudaMemcpyDeviceToHost, s));
        CTNET_CUDA(cudaStreamSynchronize(s));
        host_->allreduce_sum(std::span<double>{sums_.data(), v.size()});
        CTNET_CUDA(cudaMemcpyAsync(v.data(), sums_.data(), v.size_bytes(), cudaMemcpyHostToDevice, s));
        CTNET_CUDA(cudaStreamSynchronize(s));  // sums_ is reused by the next call
    }
    void sum_host(std::span<double> v) override { host_->allreduce_sum(v); }

private:
    communicator* host_;
    stream copies_;
    cudaEvent_t ready_ = nullptr;
    std::vector<pinned_buffer<float>> stage_;
    std::vector<std::span<float>> pending_;
    std::size_t used_ = 0;
    pinned_buffer<double> sums_;
};

}  // namespace ctnet::cuda
