// bench/gpu_bench.cpp — Inception v3 (299 x 299, eval) on the GPU: ctnet's kernels (TF32 and FP32,
// with and without CUDA Graphs) against cuDNN's convolutions on the same folded graph, at batch
// 1, 32 and 128. Each pass is what a caller sees: host input -> pinned -> device, the network,
// device -> pinned -> host output, synchronised. Prints one JSON line per row, then a table.
//   gpu_bench [--iters K] [--batches 1,32,128]
// First it checks that every engine's logits agree with ctnet's FP32 path at batch 2 (printed;
// exit status 1 after the table when one is farther than 1e-4 for FP32 or 2e-2 for TF32).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <ctnet/ctnet.hpp>
#include <ctnet/cuda/runner.hpp>

#include "cudnn_conv.hpp"

using namespace ctnet;
using net = models::inception_v3<>;
using gpu = runner<net, backend::cuda>;

namespace {

struct engine {
    std::string name;
    bool cudnn = false, tf32 = true, graphs = true;
};

// max |a - b| / max |b|; infinite where a holds a non-finite value (std::max would drop a NaN).
double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0.0, s = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
        d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
        s = std::max(s, static_cast<double>(std::abs(b[i])));
    }
    return d / s;
}

}  // namespace

int main(int argc, char** argv) {
    int iters = 20;
    std::vector<int> batches{1, 32, 128};
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--iters") iters = std::atoi(argv[i + 1]);
        if (k == "--batches") {
            batches.clear();
            for (const char* p = argv[i + 1]; *p != 0;) {
                batches.push_back(std::atoi(p));
                while (*p != 0 && *p != ',') ++p;
                if (*p == ',') ++p;
            }
        }
    }
    try {
        cuda::require_device();
        cudaDeviceProp prop{};
        CTNET_CUDA(cudaGetDeviceProperties(&prop, 0));
        std::printf("device: %s, %d SMs, %.1f GiB\n", prop.name, prop.multiProcessorCount,
                    static_cast<double>(prop.totalGlobalMem) / (1 << 30));
        auto w = std::make_unique<weights<net>>();
        init_seeded(*w, 1, true);
        const std::vector<engine> engines{{"ctnet tf32 graph", false, true, true},
                                          {"ctnet tf32", false, true, false},
                                          {"ctnet fp32 graph", false, false, true},
                                          {"cudnn tf32", true, true, false},
                                          {"cudnn fp32", true, false, false}};
        bool disagree = false;  // an engine farther from ctnet fp32 than 1e-4 (fp32) or 2e-2 (tf32)
        rng g{2};
        auto input = [&](int n) {
            std::vector<float> x(static_cast<std::size_t>(n) * input_shape_v<net>.size());
            for (float& v : x) v = static_cast<float>(g.normal());
            return x;
        };
        // Agreement at batch 2 against ctnet's FP32 path.
        const std::vector<float> x2 = input(2);
        const std::vector<float> want = gpu{*w, {.precision = cuda::precision::fp32, .graphs = false}}(x2);
        for (const engine& e : engines) {
            bench::cudnn_conv dnn{e.tf32};
            gpu r{*w, {.precision = e.tf32 ? cuda::precision::tf32 : cuda::precision::fp32, .graphs = e.graphs,
                       .conv = e.cudnn ? std::function<void(const cuda::conv_call&)>{[&dnn](const cuda::conv_call& k) { dnn(k); }}
                                       : nullptr}};
            const double err = max_rel(r(x2), want), tol = e.tf32 ? 2e-2 : 1e-4;
            std::printf("agreement %-18s max |diff| / max |logit| vs ctnet fp32: %.2e%s\n", e.name.c_str(), err,
                        err <= tol ? "" : "  DISAGREES");
            disagree = disagree || !(err <= tol);
        }
        std::vector<std::string> table;
        for (const int n : batches) {
            const std::vector<float> x = input(n);
            std::vector<float> y(static_cast<std::size_t>(n) * output_shape_v<net>.size());
            for (const engine& e : engines) {
                bench::cudnn_conv dnn{e.tf32};
                gpu r{*w, {.precision = e.tf32 ? cuda::precision::tf32 : cuda::precision::fp32, .graphs = e.graphs,
                           .conv = e.cudnn ? std::function<void(const cuda::conv_call&)>{[&dnn](const cuda::conv_call& k) { dnn(k); }}
                                           : nullptr}};
                for (int i = 0; i < 3; ++i) r.forward(x, y);  // set-up, graph capture, warm-up
                std::vector<double> ms;
                for (int i = 0; i < iters; ++i) {
                    const auto t0 = std::chrono::steady_clock::now();
                    r.forward(x, y);
                    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
                }
                std::sort(ms.begin(), ms.end());
                const double med = ms[ms.size() / 2];
                std::printf("{\"engine\": \"%s\", \"batch\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, \"images_per_s\": %.1f}\n",
                            e.name.c_str(), n, med, ms.front(), n * 1000.0 / med);
                char row[160];
                std::snprintf(row, sizeof row, "| %5d | %-18s | %9.3f | %9.3f | %9.1f |", n, e.name.c_str(), med, ms.front(),
                              n * 1000.0 / med);
                table.emplace_back(row);
            }
        }
        std::printf("\n| batch | engine             | median ms |    min ms |  images/s |\n|---|---|---|---|---|\n");
        for (const std::string& row : table) std::printf("%s\n", row.c_str());
        if (disagree) {
            std::fprintf(stderr, "gpu_bench: an engine's logits disagree with ctnet fp32 (see 'agreement' above)\n");
            return 1;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gpu_bench: %s\n", e.what());
        return 1;
    }
}
