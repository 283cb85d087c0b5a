// Google Benchmark: every distinct conv shape of Inception v3 on the GEMM kernel
// (backend::cpu), its 3x3 stride-1 shapes as Winograd, and on the reference kernel, every distinct block (Mixed_5b ... Mixed_7c) on
// backend::cpu, the whole network on both backends, and the optimizer's step. GFLOP/s counts 2 x MACs.
//
//   ./build/bench/ctnet_bench --benchmark_filter='gemm/'        # the conv shapes, SIMD kernel
//   ./build/bench/ctnet_bench --benchmark_filter='winograd'     # the shapes Winograd can run (3x3, 5x5, 1x7, 7x1 stride 1)
//   ./build/bench/ctnet_bench --benchmark_filter='block/'       # the blocks, batch 1, 1 and 2 threads
//   ./build/bench/ctnet_bench --benchmark_filter='network/cpu'  # Inception v3, batch 1 and 8
//   ./build/bench/ctnet_bench --benchmark_filter='optimizer/'   # one optimizer step over its 27 M parameters
#include <benchmark/benchmark.h>

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <ctnet/cpu/fast_runner.hpp>
#include <ctnet/ctnet.hpp>
#include <ctnet/train/optim.hpp>

using namespace ctnet;
using v3 = models::inception_v3<>;

namespace {

std::vector<float> random_vector(std::size_t n, std::uint64_t seed) {
    rng g{seed};
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(g.normal());
    return v;
}

void set_rate(benchmark::State& state, double flops) {
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void conv_gemm(benchmark::State& state, shape in, shape out, window win) {
    const int k = in.c * win.kh * win.kw;
    const std::vector<float> x = random_vector(in.size(), 1), w = random_vector(static_cast<std::size_t>(out.c) * k, 2);
    cpu::packed_conv cv;
    cv.pack(w.data(), out.c, k);
    cv.bias.assign(static_cast<std::size_t>(out.c), 0.0F);
    cv.relu = true;
    cv.win = win;
    cv.in = in;
    cv.out = out;
    std::vector<float> y(out.size()), scratch(cpu::conv_scratch_floats);
    for (auto _ : state) {
        cpu::conv_gemm(cv, x.data(), y.data(), scratch.data());
        benchmark::DoNotOptimize(y.data());
    }
    set_rate(state, 2.0 * static_cast<double>(out.size()) * k);
}

// The same conv as Winograd with tiling t (cpu/winograd.hpp); GFLOP/s counts the direct conv's
// 2 x MACs, so it compares with gemm/ directly (an effective rate).
void conv_winograd(benchmark::State& state, shape in, shape out, window win, cpu::winograd_tiling t) {
    const int k = in.c * win.kh * win.kw;
    const std::vector<float> x = random_vector(in.size(), 1), w = random_vector(static_cast<std::size_t>(out.c) * k, 2);
    cpu::packed_conv cv;
    cv.m = out.c;
    cv.k = k;
    cv.bias.assign(static_cast<std::size_t>(out.c), 0.0F);
    cv.relu = true;
    cv.win = win;
    cv.in = in;
    cv.out = out;
    cv.tiling = t;
    const std::vector<float> u = cpu::winograd_pack_weights(w.data(), out.c, in.c, t, win);
    std::vector<float> y(out.size()), scratch(cpu::winograd_scratch_floats(in.c, t, win.kh, win.kw));
    for (auto _ : state) {
        cpu::winograd_conv(cv, u.data(), x.data(), y.data(), scratch.data());
        benchmark::DoNotOptimize(y.data());
    }
    set_rate(state, 2.0 * static_cast<double>(out.size()) * k);
}

void conv_reference(benchmark::State& state, shape in, shape out, window win) {
    const std::vector<float> x = random_vector(in.size(), 1);
    const std::vector<float> w = random_vector(static_cast<std::size_t>(out.c) * in.c * win.kh * win.kw, 2);
    std::vector<float> y(out.size());
    for (auto _ : state) {
        cpu::ref::conv2d({x.data(), in.size(), in}, {y.data(), out.size(), out}, 1, w.data(), nullptr, win);
        benchmark::DoNotOptimize(y.data());
    }
    set_rate(state, 2.0 * static_cast<double>(out.size()) * in.c * win.kh * win.kw);
}

template <class Backend>
void whole_network(benchmark::State& state) {
    auto w = std::make_unique<weights<v3>>();
    init_seeded(*w, 1);
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::vector<float> x = random_vector(n * input_shape_v<v3>.size(), 3);
    std::vector<float> y(n * 1000);
    auto run = [&] {
        if constexpr (std::is_same_v<Backend, backend::cpu>) return runner<v3, backend::cpu>{*w, {.threads = static_cast<int>(state.range(1))}};
        else return runner<v3>{*w};
    }();
    run.forward(x, y);
    for (auto _ : state) {
        run.forward(x, y);
        benchmark::DoNotOptimize(y.data());
    }
    set_rate(state, 2.0 * static_cast<double>(macs_v<v3>) * static_cast<double>(n));
}

// One Inception block as a network of its own (its input shape at 299x299), on backend::cpu:
// batch 1, state.range(0) threads.
template <shape In, class Block>
void block_bench(benchmark::State& state) {
    using net = network<In, Block>;
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 1, true);
    const std::vector<float> x = random_vector(In.size(), 4);
    std::vector<float> y(output_shape_v<net>.size());
    runner<net, backend::cpu> run{*w, {.threads = static_cast<int>(state.range(0))}};
    run.forward(x, y);
    for (auto _ : state) {
        run.forward(x, y);
        benchmark::DoNotOptimize(y.data());
    }
    set_rate(state, 2.0 * static_cast<double>(macs_v<net>));
}

template <shape In, class Block>
void register_block(const std::string& name) {
    benchmark::RegisterBenchmark(("block/" + name).c_str(), block_bench<In, Block>)
        ->Arg(1)
        ->Arg(2)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
}

// The distinct blocks of Inception v3 (torchvision's variant), named after the first of each kind.
int register_blocks() {
    register_block<shape{192, 35, 35}, models::inception_a<32>>("Mixed_5b");
    register_block<shape{256, 35, 35}, models::inception_a<64>>("Mixed_5c");
    register_block<shape{288, 35, 35}, models::inception_b>("Mixed_6a");
    register_block<shape{768, 17, 17}, models::inception_c<128>>("Mixed_6b");
    register_block<shape{768, 17, 17}, models::inception_c<160>>("Mixed_6c");
    register_block<shape{768, 17, 17}, models::inception_c<192>>("Mixed_6e");
    register_block<shape{768, 17, 17}, models::inception_d>("Mixed_7a");
    register_block<shape{1280, 8, 8}, models::inception_e<>>("Mixed_7b");
    register_block<shape{2048, 8, 8}, models::inception_e<>>("Mixed_7c");
    return 9;
}
const int distinct_blocks = register_blocks();

// One benchmark per distinct (input, output, window) among Inception v3's convs at 299x299,
// named after the first layer with that shape.
int register_conv_shapes() {
    const auto& p = v3::program;
    std::map<std::tuple<int, int, int, int, int, int, int, int, int, int, int>, std::string> seen;
    for (int i = 0; i < p.n_ops; ++i) {
        const op& o = p.ops[i];
        if (o.kind != op_kind::conv) continue;
        const window& g = o.win;
        const auto key = std::make_tuple(o.in.s.c, o.in.s.h, o.in.s.w, o.out.s.c, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, 0);
        if (seen.count(key)) continue;
        seen[key] = std::string{o.path.view()};
        const std::string name = std::string{o.path.view()};
        benchmark::RegisterBenchmark(("gemm/" + name).c_str(), conv_gemm, o.in.s, o.out.s, g)->Unit(benchmark::kMillisecond);
        // Every Winograd variant for this window, eligible or not (3x3 as 2x2 and as 4x4 tiles).
        for (const cpu::winograd_variant& v : cpu::winograd_variants) {
            if (g.sh != 1 || g.sw != 1 || g.kh != v.kh || g.kw != v.kw) continue;
            const cpu::winograd_tiling t = v.tiling;
            benchmark::RegisterBenchmark(("winograd" + std::to_string(t.h) + "x" + std::to_string(t.w) + "/" + name).c_str(),
                                         conv_winograd, o.in.s, o.out.s, g, t)
                ->Unit(benchmark::kMillisecond);
        }
        benchmark::RegisterBenchmark(("reference/" + name).c_str(), conv_reference, o.in.s, o.out.s, g)
            ->Unit(benchmark::kMillisecond)
            ->Iterations(2);
    }
    return static_cast<int>(seen.size());
}
const int distinct_conv_shapes = register_conv_shapes();

// One optimizer step over Inception v3's trainable parameters (27 M floats, one thread):
// train/update.hpp's rule in optimizer::step's loops. Arg: 0 SGD, 1 RMSProp (TF), 2 RMSProp (torch).
void optimizer_step(benchmark::State& state) {
    const std::vector<param_range> ranges = trainable_ranges<v3>();
    std::vector<float> params = random_vector(v3::program.storage, 1), grads = random_vector(v3::program.storage, 2);
    for (float& g : grads) g *= 1e-3F;
    optimizer opt = state.range(0) == 0   ? optimizer::sgd()
                    : state.range(0) == 1 ? optimizer::rmsprop()
                                          : optimizer::rmsprop({.eps = 1e-3, .style = rmsprop_style::pytorch});
    for (auto _ : state) benchmark::DoNotOptimize(opt.step(params, grads, ranges, 1e-6, 4e-5));
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(v3::program.storage * 5 * sizeof(float)));
}
BENCHMARK(optimizer_step)->Name("optimizer/step")->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_TEMPLATE(whole_network, backend::cpu)->Name("network/cpu")->Args({1, 1})->Args({1, 2})->Args({8, 2})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(whole_network, backend::reference)->Name("network/reference")->Args({1, 1})->Unit(benchmark::kMillisecond)
    ->Iterations(1);

BENCHMARK_MAIN();
