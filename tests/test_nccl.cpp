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

#include "cuda_one_rank.hpp"

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
    // ncclAvg over one rank leaves everything as it is (tests/cuda_one_rank.hpp); a bucket left
    // out or started twice needs two GPUs to show.
    if (cuda::device_count() == 0) {
        MESSAGE("skipped: no CUDA device on this machine");
        return;
    }
    single_process host;
    nccl_communicator comm{host, 0};
    test::check_one_rank_bits(comm, 13);
    test::check_one_rank_bits<test_nets::wide_bn>(comm, 15);
    // The scalar sum over host memory, on one rank: unchanged.
    std::vector<double> v{1.5, -2.0, 3.25};
    comm.sum_host(v);
    CHECK(v == std::vector<double>{1.5, -2.0, 3.25});
}
