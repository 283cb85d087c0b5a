// cuda/nccl.hpp: the NCCL communicator behind the same interface as MPI's. Without a GPU (CI)
// only the error path runs: construction must say that no usable device exists. With one GPU,
// a one-rank communicator (bootstrapped by single_process) must leave device data unchanged
// through every collective, blocking and started; with more GPUs, run the MPI test's pattern.
// One rank cannot tell a sum from a no-op (NCCL refuses two ranks on one GPU): that the sums are
// sums needs a machine with two GPUs, which no session has had yet. As the GPU trainer's device
// communicator, one rank must repeat the plain trainer's bits (every bucket averaged once, after
// backward wrote it, before the update read it); that 2 ranks equal 1 on the whole batch is
// tested over the staged transport in tests/test_cuda_trainer.cpp.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <ctnet/cuda/runtime.hpp>
#include <ctnet/cuda/nccl.hpp>
#include <ctnet/cuda/trainer.hpp>
#include <ctnet/train/step.hpp>

#include "train_nets.hpp"

using namespace ctnet;

TEST_CASE("nccl_communicator: without a usable device, construction says so") {
    if (cuda::device_count() > 0) {
        MESSAGE("a CUDA device is present: the no-device error cannot be shown on this machine");
        return;
    }
    single_process host;
    std::string e;
    try {
        nccl_communicator comm{host, 0};
    } catch (const ctnet::error& x) {
        e = x.what();
    }
    MESSAGE(e);
    CHECK(e.find("no usable CUDA device") != std::string::npos);
}

TEST_CASE("nccl_communicator: one rank keeps device data through every collective") {
    if (cuda::device_count() == 0) {
        MESSAGE("skipped: no CUDA device on this machine");
        return;
    }
    single_process host;
    nccl_communicator comm{host, 0};
    CHECK(comm.rank() == 0);
    CHECK(comm.size() == 1);
    std::vector<float> h(1000);
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(i) * 0.5F - 7.0F;
    cuda::device_buffer<float> d{h.size()};
    CTNET_CUDA(cudaMemcpy(d.data(), h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
    CTNET_CUDA(cudaDeviceSynchronize());  // the communicator's stream does not wait for the legacy one
    comm.allreduce_sum(std::span<float>{d.data(), d.size()});
    comm.broadcast(std::span<float>{d.data(), d.size()}, 0);
    comm.start_allreduce_sum(std::span<float>{d.data(), 500});
    comm.start_allreduce_sum(std::span<float>{d.data() + 500, 500});
    comm.wait_all();
    std::vector<float> back(h.size());
    CTNET_CUDA(cudaMemcpy(back.data(), d.data(), h.size() * sizeof(float), cudaMemcpyDeviceToHost));
    CHECK(back == h);
}

TEST_CASE("nccl_communicator: one rank as a trainer's device communicator repeats the plain trainer's bits") {
    // Averages over one rank (ncclAvg) and sync BN's sums leave everything as it is, so the bits
    // must match: this holds the stream ordering (the update reading a bucket before NCCL's
    // stream finished it) and the sync-BN kernels to the plain path. A bucket left out or
    // started twice changes nothing on one rank; that needs two GPUs.
    if (cuda::device_count() == 0) {
        MESSAGE("skipped: no CUDA device on this machine");
        return;
    }
    using Net = test_nets::every_layer_logits;
    constexpr shape in = input_shape_v<Net>;
    single_process host;
    nccl_communicator comm{host, 0};
    weights<Net> w0;
    init_seeded(w0, 13, true);
    weights<Net> wa = w0, wb = w0;
    optimizer oa = optimizer::rmsprop(), ob = optimizer::rmsprop();
    const auto ranges = trainable_ranges<Net>();
    trainer<Net, backend::cuda> ta{wa, {.precision = cuda::precision::fp32, .seed = 2}};
    trainer<Net, backend::cuda> tb{wb, {.precision = cuda::precision::fp32, .seed = 2, .comm = &comm, .sync_bn = true, .bucket_bytes = 64}};
    const std::vector<int> labels{0, 1, 2, 3};
    rng g{14};
    for (int s = 0; s < 2; ++s) {
        std::vector<float> x(4 * in.size());
        for (float& v : x) v = static_cast<float>(g.normal());
        const step_result a = train_step(ta, oa, ranges, x, labels, recipe{}, 0.01);
        const step_result b = train_step(tb, ob, ranges, x, labels, recipe{}, 0.01);
        CHECK(a.loss == b.loss);
        CHECK(a.grad_norm == b.grad_norm);
    }
    sync_host(ta, oa, nullptr);
    sync_host(tb, ob, nullptr);
    CHECK(std::equal(wa.data().begin(), wa.data().end(), wb.data().begin()));
    // The scalar sum over host memory, on one rank: unchanged.
    std::vector<double> v{1.5, -2.0, 3.25};
    comm.sum_host(v);
    CHECK(v == std::vector<double>{1.5, -2.0, 3.25});
}
