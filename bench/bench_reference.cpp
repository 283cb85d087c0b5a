// Google Benchmark: the reference kernels and the reference runner. These are the baseline the
// fast kernels of later work are measured against; FLOP rates are 2 x MACs per second.
//
//   ./build/bench/ctnet_bench --benchmark_filter=conv
#include <benchmark/benchmark.h>

#include <vector>

#include <ctnet/ctnet.hpp>

using namespace ctnet;

namespace {

std::vector<float> random_vector(std::size_t n, std::uint64_t seed) {
    rng g{seed};
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(g.normal());
    return v;
}

// One conv layer of Inception v3 at 299x299, by its input shape and window.
void conv_layer(benchmark::State& state, shape in, int out_c, window win) {
    const shape out = detail::window_shape(in, win, out_c);
    const std::vector<float> x = random_vector(in.size(), 1);
    const std::vector<float> w = random_vector(static_cast<std::size_t>(out_c) * in.c * win.kh * win.kw, 2);
    std::vector<float> y(out.size());
    for (auto _ : state) {
        cpu::ref::conv2d({x.data(), in.size(), in}, {y.data(), out.size(), out}, 1, w.data(), nullptr, win);
        benchmark::DoNotOptimize(y.data());
    }
    const double flops = 2.0 * static_cast<double>(out.size()) * in.c * win.kh * win.kw;
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_CAPTURE(conv_layer, Conv2d_2b_3x3, shape{32, 147, 147}, 64, window{3, 3, 1, 1, 1, 1, 1, 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(conv_layer, Mixed_5b_branch5x5_2, shape{48, 35, 35}, 64, window{5, 5, 1, 1, 2, 2, 2, 2})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(conv_layer, Mixed_6a_branch3x3_s2, shape{288, 35, 35}, 384, window{3, 3, 2, 2})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(conv_layer, Mixed_6b_branch7x7_2_1x7, shape{128, 17, 17}, 128, window{1, 7, 1, 1, 0, 0, 3, 3})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(conv_layer, Mixed_7b_branch1x1, shape{1280, 8, 8}, 320, window{})->Unit(benchmark::kMillisecond);

template <class Net>
void full_network(benchmark::State& state) {
    weights<Net> w;
    init_seeded(w, 1);
    runner<Net> r{w};
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::vector<float> x = random_vector(n * input_shape_v<Net>.size(), 3);
    std::vector<float> y(n * output_shape_v<Net>.size());
    for (auto _ : state) {
        r.forward(x, y);
        benchmark::DoNotOptimize(y.data());
    }
    const double flops = 2.0 * static_cast<double>(macs_v<Net>) * static_cast<double>(n);
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_TEMPLATE(full_network, models::inception_v3<>)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(2);

}  // namespace

BENCHMARK_MAIN();
