// bench/gpu_train_bench.cpp — one training step of Inception v3 (299 x 299, aux head, random
// weights and labels) on the GPU through trainer<Net, backend::cuda> and train_step: forward in
// training mode, label-smoothed cross-entropy + 0.4 x the aux loss, backward, global-norm
// clipping, weight decay, RMSProp (TF) and the moving average, all on the device; the scalars of
// the progress line come back each step (what `ctnet train --backend cuda` runs).
//   gpu_train_bench [--batches 32,128] [--steps K] [--precisions tf32,fp32] [--convs cudnn,ctnet]
// Per row: 2 steps first (allocation, the optimizer state), then K timed steps, host wall clock
// per step (the step synchronises), median. One JSON line per row, as bench/gpu_torch_train.py.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <ctnet/ctnet.hpp>
#include <ctnet/cuda/trainer.hpp>
#include <ctnet/train/step.hpp>

using namespace ctnet;
using net = models::inception_v3<>;

namespace {

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> v;
    std::size_t at = 0;
    while (at <= s.size()) {
        const std::size_t end = std::min(s.find(',', at), s.size());
        if (end > at) v.push_back(s.substr(at, end - at));
        at = end + 1;
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> batches{"32", "128"}, precisions{"tf32", "fp32"}, convs{"cudnn", "ctnet"};
    int steps = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--batches") batches = split(argv[i + 1]);
        else if (k == "--steps") steps = std::max(1, std::atoi(argv[i + 1]));
        else if (k == "--precisions") precisions = split(argv[i + 1]);
        else if (k == "--convs") convs = split(argv[i + 1]);
    }
    try {
        cuda::require_device();
        auto w = std::make_unique<weights<net>>();
        init_seeded(*w, 1);
        const auto ranges = trainable_ranges<net>();
        const recipe r{};
        for (const std::string& c : convs) {
          if (c == "cudnn" && !cuda::cudnn_available()) {
              std::printf("{\"engine\": \"cudnn\", \"error\": \"%s\"}\n", cuda::cudnn_unavailable_reason().c_str());
              continue;
          }
          for (const std::string& p : precisions) {
            if (p == "bf16" && c != "cudnn") continue;  // bf16's convs run on cuDNN only
            for (const std::string& b : batches) {
                const int n = std::atoi(b.c_str());
                auto wt = std::make_unique<weights<net>>(*w);
                optimizer opt = optimizer::rmsprop();
                moving_average ema{0.9999};
                ema.update(wt->data());
                trainer<net, backend::cuda> t{*wt, {.precision = p == "fp32"   ? cuda::precision::fp32
                                                                  : p == "bf16" ? cuda::precision::bf16
                                                                                : cuda::precision::tf32,
                                                    .cudnn = c == "cudnn", .seed = 2}};
                rng g{3};
                std::vector<float> x(static_cast<std::size_t>(n) * input_shape_v<net>.size());
                for (float& v : x) v = static_cast<float>(g.normal());
                std::vector<int> labels(static_cast<std::size_t>(n));
                for (int& l : labels) l = static_cast<int>(g.next() % 1000);
                std::vector<double> ms;
                step_result last{};
                for (int s = 0; s < steps + 2; ++s) {
                    const auto t0 = std::chrono::steady_clock::now();
                    last = train_step(t, opt, ranges, x, labels, r, 0.045, &ema);
                    const double e = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                    if (s >= 2) ms.push_back(e);
                }
                std::sort(ms.begin(), ms.end());
                const double med = ms[ms.size() / 2];
                std::printf("{\"engine\": \"%s\", \"precision\": \"%s\", \"batch\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, "
                            "\"images_per_s\": %.1f, \"steps\": %zu, \"loss\": %.4f, \"convs\": \"%s\"}\n",
                            c.c_str(), p.c_str(), n, med, ms.front(), n * 1e3 / med, ms.size(), last.loss, t.conv_engine().c_str());
                std::fflush(stdout);
            }
          }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gpu_train_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
