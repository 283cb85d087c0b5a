// One rank through a device communicator against the plain GPU trainer, for any transport
// (tests/test_cuda_trainer.cpp: the staged one; tests/test_nccl.cpp: NCCL). On one rank the
// average divides by 1 and sync BN's sums are the local ones, computed by the same operations
// in the same order, so every bit must match: this holds the transport's stream ordering (an
// update reading a bucket before its average finished) and the sync-BN kernels to the plain
// path. A bucket left out or started twice changes nothing on one rank; the 2-rank test
// (tests/test_cuda_trainer.cpp) catches those.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include <ctnet/cuda/collective.hpp>
#include <ctnet/cuda/trainer.hpp>
#include <ctnet/train/step.hpp>

#include "train_nets.hpp"

namespace ctnet::test {

// Two train_steps (batch 5, sync BN, 64-byte buckets: one per few tensors) on both; every
// layer kind (dropout too: one rank draws the plain trainer's masks), then batch norms that
// span several blocks per channel on the GPU.
template <class Net = test_nets::every_layer_logits>
void check_one_rank_bits(cuda::device_communicator& comm, std::uint64_t seed) {
    constexpr shape in = input_shape_v<Net>;
    weights<Net> w0;
    init_seeded(w0, seed, true);
    weights<Net> wa = w0, wb = w0;
    optimizer oa = optimizer::rmsprop(), ob = optimizer::rmsprop();
    const auto ranges = trainable_ranges<Net>();
    trainer<Net, backend::cuda> ta{wa, {.precision = cuda::precision::fp32, .seed = seed}};
    trainer<Net, backend::cuda> tb{wb, {.precision = cuda::precision::fp32, .seed = seed, .comm = &comm, .sync_bn = true,
                                        .bucket_bytes = 64}};
    const std::vector<int> labels{0, 1, 2, 3, 1};
    rng g{seed + 1};
    for (int s = 0; s < 2; ++s) {
        std::vector<float> x(labels.size() * in.size());
        for (float& v : x) v = static_cast<float>(g.normal());
        const step_result a = train_step(ta, oa, ranges, x, labels, recipe{}, 0.01);
        const step_result b = train_step(tb, ob, ranges, x, labels, recipe{}, 0.01);
        INFO("step " << s);
        CHECK(a.loss == b.loss);
        CHECK(a.grad_norm == b.grad_norm);
        CHECK(a.correct == b.correct);
    }
    // The public pass too: forward() (with sync BN it checks the shards by a collective first)
    // and backward() with a given output gradient.
    std::vector<float> x(labels.size() * in.size());
    for (float& v : x) v = static_cast<float>(g.normal());
    ta.forward(x);
    tb.forward(x);
    CHECK(std::ranges::equal(ta.logits(), tb.logits()));  // each trainer's own host copy
    std::vector<float> dl(ta.logits().size());
    for (float& v : dl) v = static_cast<float>(g.normal());
    ta.zero_grads();
    tb.zero_grads();
    ta.backward(dl);
    tb.backward(dl);
    CHECK(std::ranges::equal(ta.grads(), tb.grads()));
    sync_host(ta, oa, nullptr);
    sync_host(tb, ob, nullptr);
    CHECK(std::equal(wa.data().begin(), wa.data().end(), wb.data().begin()));
    CHECK(oa.momentum() == ob.momentum());
    CHECK(oa.mean_square() == ob.mean_square());
}

}  // namespace ctnet::test
