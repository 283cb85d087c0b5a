// bench/gpu_bench.cpp — Inception v3 (299 x 299, eval, random weights) on the GPU through
// runner<Net, backend::cuda>: the NHWC engines (cuDNN's fused convs, ctnet's own kernels) in every
// precision, with host copies (host input -> pinned -> device, the pass, device -> host logits,
// what operator() does) and device-resident (forward_device: no copies), and the first NCHW
// engine (tf32, host copies) as the baseline, at batch 1, 32, 128 and 256.
//   gpu_bench [--batches 1,32,128,256] [--iters K] [--seconds S] [--only cudnn|ctnet|nchw] [--find 0|1]
// Each row: 3 passes first (set-up with cuDNN's algorithm search, graph capture, launch), then up
// to K timed passes or S seconds, at least 3. Prints one JSON line per row, the describe() line of
// each engine (which convs cuDNN runs, algorithms, whether the pass is a graph), then a table.
// First: every engine's logits at batch 2 against the NCHW engine's fp32 path (itself checked
// against the reference runner by tests/test_cuda.cpp): exit status 1 after the table when one is
// farther than its test bound (tests/test_cuda_nhwc.cpp).
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

using namespace ctnet;
using net = models::inception_v3<>;
using gpu = runner<net, backend::cuda>;

namespace {

struct config {
    cuda::engine engine;
    cuda::precision precision;
};

double bound(cuda::engine e, cuda::precision p) {
    switch (p) {
        case cuda::precision::fp32: return e == cuda::engine::cudnn ? 1e-4 : 1e-5;
        case cuda::precision::tf32: return 1e-2;
        case cuda::precision::fp16: return 5e-3;
        case cuda::precision::bf16: return 2e-2;
    }
    return 0.0;
}

// max |a - b| / max |b|; infinite where a holds a non-finite value.
double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0.0, s = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
        d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
        s = std::max(s, static_cast<double>(std::abs(b[i])));
    }
    return d / s;
}

std::vector<int> parse_list(const char* p) {
    std::vector<int> v;
    while (*p != 0) {
        v.push_back(std::atoi(p));
        while (*p != 0 && *p != ',') ++p;
        if (*p == ',') ++p;
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    int iters = 30;
    double seconds = 1.0;
    bool find = true;
    std::string only;
    std::vector<int> batches{1, 32, 128, 256};
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--iters") iters = std::atoi(argv[i + 1]);
        else if (k == "--seconds") seconds = std::atof(argv[i + 1]);
        else if (k == "--batches") batches = parse_list(argv[i + 1]);
        else if (k == "--only") only = argv[i + 1];
        else if (k == "--find") find = std::atoi(argv[i + 1]) != 0;
    }
    try {
        cuda::require_device();
        cudaDeviceProp prop{};
        CTNET_CUDA(cudaGetDeviceProperties(&prop, 0));
        std::printf("device: %s, %d SMs, %.1f GiB\n", prop.name, prop.multiProcessorCount,
                    static_cast<double>(prop.totalGlobalMem) / (1 << 30));
        std::printf("cuDNN engine: %s\n", cuda::cudnn_available() ? "available" : cuda::cudnn_unavailable_reason().c_str());
        auto w = std::make_unique<weights<net>>();
        init_seeded(*w, 1, true);
        std::vector<config> configs;
        const cuda::precision order[] = {cuda::precision::bf16, cuda::precision::fp16, cuda::precision::tf32, cuda::precision::fp32};
        if (cuda::cudnn_available() && (only.empty() || only == "cudnn"))
            for (const cuda::precision p : order) configs.push_back({cuda::engine::cudnn, p});
        if (only.empty() || only == "ctnet")
            for (const cuda::precision p : order) configs.push_back({cuda::engine::ctnet, p});
        if (only.empty() || only == "nchw") configs.push_back({cuda::engine::nchw, cuda::precision::tf32});

        rng g{2};
        auto input = [&](int n) {
            std::vector<float> x(static_cast<std::size_t>(n) * input_shape_v<net>.size());
            for (float& v : x) v = static_cast<float>(g.normal());
            return x;
        };
        bool disagree = false;
        const std::vector<float> x2 = input(2);
        const std::vector<float> want = gpu{*w, {.engine = cuda::engine::nchw, .precision = cuda::precision::fp32, .graphs = false}}(x2);
        for (const config& c : configs) {
            gpu r{*w, {.engine = c.engine, .precision = c.precision, .find = find}};
            const double err = max_rel(r(x2), want), tol = bound(c.engine, c.precision);
            std::printf("agreement %-5s %-4s max |diff| / max |logit| vs nchw fp32: %.2e (bound %.0e)%s\n",
                        cuda::to_string(c.engine), cuda::to_string(c.precision), err, tol, err <= tol ? "" : "  DISAGREES");
            std::fflush(stdout);
            disagree = disagree || !(err <= tol);
        }

        std::vector<std::string> table;
        for (const int n : batches) {
            const std::vector<float> x = input(n);
            std::vector<float> y(static_cast<std::size_t>(n) * output_shape_v<net>.size());
            cuda::device_buffer<float> xd{x.size()}, yd{y.size()};
            CTNET_CUDA(cudaMemcpy(xd.data(), x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice));
            for (const config& c : configs) {
                gpu r{*w, {.engine = c.engine, .precision = c.precision, .find = find}};
                for (const bool copies : {true, false}) {
                    if (!copies && c.engine == cuda::engine::nchw) continue;  // no forward_device there
                    const auto pass = [&] {
                        if (copies) r.forward(x, y);
                        else r.forward_device(xd.data(), yd.data(), static_cast<std::size_t>(n));
                    };
                    const auto t_setup = std::chrono::steady_clock::now();
                    pass();  // set-up (cuDNN algorithm search) and an eager pass
                    const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_setup).count();
                    pass();  // graph capture
                    pass();
                    std::vector<double> ms;
                    const auto t0 = std::chrono::steady_clock::now();
                    while (static_cast<int>(ms.size()) < iters &&
                           (ms.size() < 3 || std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds)) {
                        const auto a = std::chrono::steady_clock::now();
                        pass();
                        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
                    }
                    std::sort(ms.begin(), ms.end());
                    const double med = ms[ms.size() / 2];
                    const char* mode = copies ? "host copies" : "device";
                    std::printf("{\"engine\": \"ctnet %s\", \"precision\": \"%s\", \"copies\": %s, \"batch\": %d, \"median_ms\": %.3f, "
                                "\"min_ms\": %.3f, \"images_per_s\": %.1f, \"iters\": %zu, \"first_pass_s\": %.2f}\n",
                                cuda::to_string(c.engine), cuda::to_string(c.precision), copies ? "true" : "false", n, med, ms.front(),
                                n * 1000.0 / med, ms.size(), setup_s);
                    if (copies && n == batches.front()) std::printf("  %s\n", r.describe().c_str());
                    std::fflush(stdout);
                    char row[200];
                    std::snprintf(row, sizeof row, "| %5d | ctnet %-5s | %-4s | %-11s | %9.3f | %9.3f | %9.1f |", n, cuda::to_string(c.engine),
                                  cuda::to_string(c.precision), mode, med, ms.front(), n * 1000.0 / med);
                    table.emplace_back(row);
                }
            }
        }
        std::printf("\n| batch | engine       | prec | input       | median ms |    min ms |  images/s |\n|---|---|---|---|---|---|---|\n");
        for (const std::string& row : table) std::printf("%s\n", row.c_str());
        if (disagree) {
            std::fprintf(stderr, "gpu_bench: an engine's logits disagree with the nchw fp32 path (see 'agreement' above)\n");
            return 1;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gpu_bench: %s\n", e.what());
        return 1;
    }
}
