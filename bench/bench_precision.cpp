// bench/bench_precision.cpp — Inception v3 (299x299, seeded weights, random inputs) on
// backend::cpu in fp32, bf16 and int8, timed alternately (docs/precision.md, bench/RESULTS.md).
//
//   build-x/bench/ctnet_bench_precision [BATCH [THREADS [ROUNDS [WINOGRAD]]]]    (8 1 5 1)
//
// Builds the three runners once (int8 calibrated on 2 other random inputs), runs one warm-up
// pass each, then ROUNDS rounds of one pass per precision in turn, and prints per precision the
// median and range of the wall time and of the process CPU time (on a machine shared with other
// jobs, CPU time is the steadier figure with 1 thread; with 2 threads both count waiting), the
// images per second and the speed-up over fp32 (by the medians), and the relative error of the
// logits against fp32 (max |y - y32| / max |y32| over the batch).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include <ctnet/cpu/calibrate.hpp>
#include <ctnet/ctnet.hpp>

using namespace ctnet;
using net = models::inception_v3<1000, 299, models::inception_options{.aux_logits = false}>;

namespace {

double cpu_ms() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const int batch = argc > 1 ? std::atoi(argv[1]) : 8, threads = argc > 2 ? std::atoi(argv[2]) : 1;
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
    const bool winograd = argc > 4 ? std::atoi(argv[4]) != 0 : true;
    if (batch < 1 || threads < 1 || rounds < 1) {
        std::fprintf(stderr, "usage: ctnet_bench_precision [BATCH [THREADS [ROUNDS [WINOGRAD 0|1]]]]\n");
        return 2;
    }
    constexpr std::size_t per = input_shape_v<net>.size();
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 1, true);
    rng g{2};
    std::vector<float> x(static_cast<std::size_t>(batch) * per), calib(2 * per);
    for (float& v : x) v = static_cast<float>(g.normal());
    for (float& v : calib) v = static_cast<float>(g.normal());
    const cpu::quant_scales scales = cpu::calibrate(*w, calib, 2, threads);
    const precision ps[3] = {precision::fp32, precision::bf16, precision::int8};
    using run_t = runner<net, backend::cpu>;
    std::vector<std::unique_ptr<run_t>> runs;
    for (precision p : ps)
        runs.push_back(std::make_unique<run_t>(
            *w, run_t::options{.threads = threads, .winograd = winograd, .precision = p, .scales = scales}));
    std::vector<float> y(static_cast<std::size_t>(batch) * 1000), y32;
    double err[3]{};
    for (int r = 0; r < 3; ++r) {  // warm-up, and the error against fp32
        runs[r]->forward(x, y);
        if (r == 0) y32 = y;
        double d = 0.0, m = 0.0;
        for (std::size_t i = 0; i < y.size(); ++i) {
            d = std::max(d, static_cast<double>(std::fabs(y[i] - y32[i])));
            m = std::max(m, static_cast<double>(std::fabs(y32[i])));
        }
        err[r] = d / m;
    }
    std::vector<double> wall[3], cpu[3];
    for (int round = 0; round < rounds; ++round)
        for (int r = 0; r < 3; ++r) {
            const double c0 = cpu_ms();
            const auto t0 = std::chrono::steady_clock::now();
            runs[r]->forward(x, y);
            wall[r].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            cpu[r].push_back(cpu_ms() - c0);
        }
    for (int r = 0; r < 3; ++r) {
        const auto [wlo, whi] = std::minmax_element(wall[r].begin(), wall[r].end());
        const auto [clo, chi] = std::minmax_element(cpu[r].begin(), cpu[r].end());
        std::printf("{\"precision\": \"%s\", \"batch\": %d, \"threads\": %d, \"rounds\": %d, \"winograd\": %d, "
                    "\"reduced_convs\": %zu, \"wall_median_ms\": %.1f, \"wall_min_ms\": %.1f, \"wall_max_ms\": %.1f, "
                    "\"cpu_median_ms\": %.1f, \"cpu_min_ms\": %.1f, \"cpu_max_ms\": %.1f, \"images_per_s\": %.2f, "
                    "\"speedup_wall\": %.2f, \"speedup_cpu\": %.2f, \"logits_rel_err\": %.2g}\n",
                    std::string{to_string(ps[r])}.c_str(), batch, threads, rounds, winograd ? 1 : 0, runs[r]->reduced_convs(),
                    median(wall[r]), *wlo, *whi, median(cpu[r]), *clo, *chi, batch * 1000.0 / median(wall[r]),
                    median(wall[0]) / median(wall[r]), median(cpu[0]) / median(cpu[r]), err[r]);
    }
    return 0;
}
