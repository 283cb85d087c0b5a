// apps/ctnet/bench_cuda.hpp — `ctnet bench --train --backend cuda`: one training step of MODEL at
// batch N on the GPU (trainer<Net, backend::cuda>, the whole train_step on the device: forward
// in training mode, smoothed losses, backward, clipping, RMSProp; no moving average, as the
// CPU's `bench --train` and PyTorch's step in bench/gpu_torch_train.py), timed ITERS times after
// two warm-up steps (allocation, the optimizer state). One JSON line, the fields of the CPU's
// `bench --train` where they apply. Built when ctnet::cuda is (CTNET_WITH_CUDA).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <ctnet/cuda/trainer.hpp>
#include <ctnet/train/step.hpp>

#include "bench_batch.hpp"

namespace ctnet_tool {

template <class Net>
int bench_train_cuda(const char* model, int batch, int iters, const std::string& precision) {
    using namespace ctnet;
    auto w = std::make_unique<weights<Net>>();
    init_seeded(*w, 1);
    trainer<Net, backend::cuda> t{*w, {.precision = precision == "fp32"   ? cuda::precision::fp32
                                                    : precision == "bf16" ? cuda::precision::bf16
                                                                          : cuda::precision::tf32,
                                       .seed = 3}};
    optimizer opt = optimizer::rmsprop();
    const auto ranges = trainable_ranges<Net>();
    const auto [x, labels] = ctnet_tool::random_train_batch<Net>(batch);
    std::vector<double> ms;
    using clock = std::chrono::steady_clock;
    for (int i = 0; i < iters + 2; ++i) {
        const auto t0 = clock::now();
        static_cast<void>(train_step(t, opt, ranges, x, labels, recipe{}, 1e-4, nullptr));  // synchronises (the scalars)
        if (i >= 2) ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    std::printf("{\"model\": \"%s\", \"mode\": \"train\", \"backend\": \"cuda\", \"precision\": \"%s\", \"batch\": %d, "
                "\"iters\": %d, \"median_ms\": %.2f, \"min_ms\": %.2f, \"images_per_s\": %.1f, \"convs\": \"%s\"}\n",
                model, precision.c_str(), batch, iters, median, ms.front(), batch * 1000.0 / median, t.conv_engine().c_str());
    return 0;
}

}  // namespace ctnet_tool
