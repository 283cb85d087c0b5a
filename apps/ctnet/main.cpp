// apps/ctnet/main.cpp — ctnet, the command-line tool (`ctnet train` is in train.cpp), on CLI11:
// `ctnet --help`, `ctnet COMMAND --help` (every option with its default), `ctnet --version`.
//
//   ctnet demo [--seed S] [--batch N]      Inception v3 summary, then a timed forward pass of an
//                                          embedded sample image through seeded random weights
//   ctnet summary MODEL [--no-aux]         per-block table; MODEL: inception_v3 | inception_v2 | fashion | fashion_wide
//   ctnet infer --model inception_v3 --weights W.safetensors --input X.npy --output Y.npy ...   logits to .npy
//   ctnet classify --weights W.safetensors [--no-transform-input] IMAGE...               top-5 ImageNet classes
//   ctnet graph MODEL [--expand | --expand=BLOCK,...] [--no-aux]   Graphviz DOT of the network type
//   ctnet bench [--train] --model M [--batch N] [--threads T] [--iters K] [--profile] ...   one JSON line of timings
//   ctnet train [--epochs N] [--out DIR] [--resume] ...   the paper's recipe on Fashion-MNIST
//   ctnet import MODEL.onnx ... / ctnet export --model M ...   ONNX (built with ctnet::onnx)
//
// Exit status: 0, 1 for a failed run (bad files, a diverging run), 2 for a usage error.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <ctnet/cpu/calibrate.hpp>
#include <ctnet/cpu/fast_runner.hpp>
#include <ctnet/cpu/trainer.hpp>
#include <ctnet/ctnet.hpp>
#include <ctnet/graph/graphviz.hpp>
#include <ctnet/io/image.hpp>
#include <ctnet/io/npy.hpp>
#include <ctnet/io/safetensors.hpp>
#include <ctnet/train/step.hpp>

#include <CLI/CLI.hpp>

#include "cli_options.hpp"
#include "fashion_net.hpp"
#include "bench_batch.hpp"
#include "train.hpp"
#if defined(CTNET_WITH_CUDA)
#include "bench_cuda.hpp"
#endif
#if defined(CTNET_WITH_ONNX)
#include "onnx_commands.hpp"
#endif

namespace {

using namespace ctnet;
using ctnet_tool::one_of, ctnet_tool::usage_error, ctnet_tool::whole;
using v3 = models::inception_v3<>;
using v3_noaux = models::inception_v3<1000, 299, models::inception_options{.aux_logits = false}>;
using v2 = models::inception_v2<>;
using v2_noaux = models::inception_v2<1000, 299, models::inception_options{.aux_logits = false}>;
using fashion_wide = fashion::fashion_net<fashion::fashion_options{.wide = true}>;  // ctnet train --wide

// ImageNet's class names, in torchvision's order (apps/ctnet/imagenet_classes.txt, built in).
constexpr const char imagenet_classes[] = {
#include "imagenet_classes.inc"
};

// ---- infer -----------------------------------------------------------------------------------

// Shapes are static: the tool carries Inception v3 compiled for these input sizes and classes.
using compiled_size_list = std::integer_sequence<int, 299, 75, 107, 139>;
constexpr auto compiled_sizes = []<int... S>(std::integer_sequence<int, S...>) { return std::array{S...}; }(compiled_size_list{});
constexpr int compiled_classes[] = {1000};

// 299x299 keeps the aux head (its weights load; eval skips it); smaller inputs cannot have one.
template <int Classes, int Size>
using v3_for = std::conditional_t<Size >= 299, models::inception_v3<Classes, Size>,
                                  models::inception_v3<Classes, Size, models::inception_options{.aux_logits = false}>>;

struct infer_args {
    std::string model, weights, input, output, dump_dir;
    bool transform = false, reference = false, check_finite = false;
    int classes = 1000, threads = 1;
};

// A torchvision file always has the aux head; models built without one skip its tensors.
template <class Net>
void load_weights(const std::string& path, weights<Net>& w) {
    io::load_safetensors(path, w, {.ignore_prefix = "AuxLogits."});
}

// torchvision's transform_input, applied to the input batch by the library's own layer.
template <shape In>
void apply_transform_input(std::vector<float>& x) {
    using t = network<In, transform_input>;
    weights<t> none;
    runner<t> r{none};
    x = r(x);
}

template <class Net>
void write_logits(const infer_args& a, const std::vector<float>& y, const char* backend_name, int threads) {
    constexpr shape in = input_shape_v<Net>, out = output_shape_v<Net>;
    const std::size_t n = y.size() / out.size();
    io::write_npy(a.output, {n, static_cast<std::size_t>(out.c)}, y.data());
    std::printf("wrote %s: %zu x %d logits (inception_v3, %dx%d input%s, backend %s, %d thread%s)\n", a.output.c_str(), n,
                out.c, in.h, in.w, a.transform ? ", transform_input" : "", backend_name, threads, threads == 1 ? "" : "s");
}

template <class Net>
void run_infer(const infer_args& a, io::npy_array& x) {
    constexpr shape in = input_shape_v<Net>;
    const std::size_t n = x.shape[0];
    auto w = std::make_unique<weights<Net>>();
    load_weights(a.weights, *w);
    if (a.transform) apply_transform_input<in>(x.data);

    if (!a.reference && a.dump_dir.empty()) {  // SIMD kernels, threads inside each layer
        // Takes the weights over: conv weights are freed as they are packed (one copy in memory).
        runner<Net, backend::cpu> run{std::move(*w), {.threads = a.threads, .check_finite = a.check_finite}};
        std::vector<float> y(n * output_shape_v<Net>.size());
        run.forward(x.data, y);
        write_logits<Net>(a, y, "cpu", a.threads);
        return;
    }

    // Reference kernels (and --dump-blocks): threads split the batch, each with its own runner.
    const int threads = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(a.threads), n));
    const bool keep = !a.dump_dir.empty();
    std::vector<float> y(n * output_shape_v<Net>.size());
    std::vector<std::unique_ptr<runner<Net>>> runners;
    runners.reserve(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) runners.push_back(std::make_unique<runner<Net>>(*w, typename runner<Net>::options{.keep_activations = keep, .check_finite = a.check_finite}));
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> failed(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) {
        const std::size_t lo = n * t / threads, hi = n * (t + 1) / threads;
        pool.emplace_back([&, t, lo, hi] {
            try {
                runners[t]->forward({x.data.data() + lo * in.size(), (hi - lo) * in.size()},
                                    {y.data() + lo * output_shape_v<Net>.size(), (hi - lo) * output_shape_v<Net>.size()});
            } catch (...) {
                failed[t] = std::current_exception();
            }
        });
    }
    for (std::thread& th : pool) th.join();
    for (const std::exception_ptr& e : failed)
        if (e) std::rethrow_exception(e);
    write_logits<Net>(a, y, "reference", threads);

    if (keep) {  // block outputs, for debugging against another framework (thread 0's samples)
        const auto& p = Net::program;
        const std::size_t n0 = n / threads;
        for (int b = 0; b < p.n_blocks; ++b) {
            if (p.blocks[b].train_only) continue;
            const shape s = p.blocks[b].out.s;
            const std::vector<float> v = runners[0]->block_output(p.blocks[b].name.view());
            io::write_npy(a.dump_dir + "/" + std::string{p.blocks[b].name.view()} + ".npy",
                          {n0, static_cast<std::size_t>(s.c), static_cast<std::size_t>(s.h), static_cast<std::size_t>(s.w)},
                          v.data());
        }
    }
}

template <int Classes, int... Sizes>
bool dispatch_size(int size, const infer_args& a, io::npy_array& x, std::integer_sequence<int, Sizes...>) {
    return ((size == Sizes ? (run_infer<v3_for<Classes, Sizes>>(a, x), true) : false) || ...);
}

std::string list(const int* v, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s;
}

int infer(infer_args& a) {
    io::npy_array x = io::read_npy(a.input);
    if (x.shape.size() != 4 || x.shape[0] == 0 || x.shape[1] != 3 || x.shape[2] != x.shape[3])
        throw error("ctnet infer: input '" + a.input + "' must be N x 3 x S x S float32 (NCHW), got rank " +
                    std::to_string(x.shape.size()) + " shape" + [&] {
                        std::string s;
                        for (std::size_t d : x.shape) s += " " + std::to_string(d);
                        return s;
                    }());
    const int size = static_cast<int>(x.shape[2]);
    if (std::find(std::begin(compiled_sizes), std::end(compiled_sizes), size) == std::end(compiled_sizes))
        throw error("ctnet infer: no inception_v3 compiled for " + std::to_string(size) + "x" + std::to_string(size) +
                    " input; this tool has " + list(compiled_sizes.data(), compiled_sizes.size()) +
                    " (shapes are static: add a size to compiled_size_list in apps/ctnet/main.cpp)");
    if (a.classes != 1000)
        throw error("ctnet infer: no inception_v3 compiled for " + std::to_string(a.classes) +
                    " classes; this tool has " + list(compiled_classes, std::size(compiled_classes)));
    dispatch_size<1000>(size, a, x, compiled_size_list{});
    return 0;
}

// ---- classify --------------------------------------------------------------------------------

struct classify_args {
    std::string weights;
    bool transform = true;  // torchvision turns transform_input on with its pretrained weights
    std::vector<std::string> images;
};

int classify(const classify_args& a) {
    std::vector<std::string_view> names;
    for (std::string_view rest = imagenet_classes; !rest.empty();) {
        const std::size_t eol = rest.find('\n');
        names.push_back(rest.substr(0, eol));
        rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
    }
    auto w = std::make_unique<weights<v3>>();
    load_weights(a.weights, *w);
    runner<v3, backend::cpu> run{*w, {.threads = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()))}};
    for (const std::string& path : a.images) {
        std::vector<float> x = io::imagenet_preprocess(path);
        if (a.transform) apply_transform_input<input_shape_v<v3>>(x);
        const std::vector<float> logits = run(x);
        std::vector<double> p(logits.size());
        const float mx = *std::max_element(logits.begin(), logits.end());
        double z = 0.0;
        for (std::size_t k = 0; k < p.size(); ++k) z += p[k] = std::exp(static_cast<double>(logits[k] - mx));
        std::vector<int> idx(p.size());
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(), [&](int a, int b) { return p[a] > p[b]; });
        std::printf("%s\n", path.c_str());
        for (int k = 0; k < 5; ++k)
            std::printf("  %7.3f%%  %4d  %.*s\n", 100.0 * p[idx[k]] / z, idx[k], static_cast<int>(names[idx[k]].size()),
                        names[idx[k]].data());
    }
    return 0;
}

// The embedded sample: a 299x299 RGB picture defined by a formula (concentric rings over a
// colour gradient), normalised with ImageNet's mean and std as torchvision's preprocessing does.
std::vector<float> sample_image(int n) {
    constexpr int size = 299;
    constexpr float mean[3] = {0.485F, 0.456F, 0.406F}, stdev[3] = {0.229F, 0.224F, 0.225F};
    std::vector<float> x(static_cast<std::size_t>(n) * 3 * size * size);
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < 3; ++c)
            for (int h = 0; h < size; ++h)
                for (int w = 0; w < size; ++w) {
                    const float dx = static_cast<float>(w - 150), dy = static_cast<float>(h - 140);
                    const float ring = 0.5F + 0.5F * std::sin(std::sqrt(dx * dx + dy * dy) / (6.0F + 2.0F * c));
                    const float grad = static_cast<float>(c == 0 ? w : c == 1 ? h : size - w) / size;
                    const float v = 0.6F * ring + 0.4F * grad;
                    x[((static_cast<std::size_t>(i) * 3 + c) * size + h) * size + w] = (v - mean[c]) / stdev[c];
                }
    return x;
}

int demo(std::uint64_t seed, int batch) {
    print_summary<v3>(std::cout, "inception_v3");

    auto w = std::make_unique<weights<v3>>();
    init_seeded(*w, seed);
    runner<v3> run{*w};
    const std::vector<float> x = sample_image(batch);
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<float> logits = run(x);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

    std::printf("\nforward pass: batch %d, 3x299x299, seeded weights (seed %llu)\n", batch,
                static_cast<unsigned long long>(seed));
    std::printf("reference kernels:  %8.1f ms (%.2f GFLOP/s)\n", ms,
                2.0 * static_cast<double>(macs_v<v3>) * batch / (ms * 1e6));

    // The same model type on the SIMD backend (BN folded, packed GEMM convs, all cores).
    const int threads = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
    runner<v3, backend::cpu> fast{*w, {.threads = threads}};
    std::vector<float> fast_logits = fast(x);  // first pass: allocates the arena
    const auto t1 = std::chrono::steady_clock::now();
    fast.forward(x, fast_logits);
    const double fast_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
    double diff = 0.0, scale = 0.0;
    for (std::size_t k = 0; k < logits.size(); ++k) {
        diff = std::max(diff, static_cast<double>(std::fabs(fast_logits[k] - logits[k])));
        scale = std::max(scale, static_cast<double>(std::fabs(logits[k])));
    }
    std::printf("backend::cpu (%d thread%s): %6.1f ms (%.2f GFLOP/s), relative difference %.1e\n", threads,
                threads == 1 ? "" : "s", fast_ms, 2.0 * static_cast<double>(macs_v<v3>) * batch / (fast_ms * 1e6),
                diff / scale);
    for (int i = 0; i < batch; ++i) {
        const float* l = logits.data() + static_cast<std::size_t>(i) * 1000;
        std::vector<int> idx(1000);
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(), [&](int a, int b) { return l[a] > l[b]; });
        const float mx = l[idx[0]];
        double z = 0.0;
        for (int k = 0; k < 1000; ++k) z += std::exp(static_cast<double>(l[k] - mx));
        std::printf("sample %d top-5 (class: probability):", i);
        for (int k = 0; k < 5; ++k) std::printf(" %d: %.4f", idx[k], std::exp(static_cast<double>(l[idx[k]] - mx)) / z);
        std::printf("\n");
    }
    return 0;
}

// ---- bench -----------------------------------------------------------------------------------

// The machine's FP32 FMA peak per thread, measured: independent FMA chains in registers.
double measured_peak_gflops() {
    constexpr int chains = 10;
    cpu::simd acc[chains];
    for (int i = 0; i < chains; ++i) acc[i] = cpu::simd(1.0F + static_cast<float>(i) * 1e-7F);
    const cpu::simd m(0.9999999F), c(1e-7F);
    constexpr long iters = 20'000'000;
    const auto t0 = std::chrono::steady_clock::now();
    asm volatile("" : : "m"(acc) : "memory");  // ... and start after it
    for (long k = 0; k < iters; ++k) {
#pragma GCC unroll 10
        for (int i = 0; i < chains; ++i) acc[i] = xsimd::fma(acc[i], m, c);
    }
    asm volatile("" : : "m"(acc) : "memory");  // the loop must finish before the clock is read
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return 2.0 * iters * chains * cpu::simd_width / s / 1e9;
}

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// One training step (forward in training mode, smoothed losses, backward, clipping, RMSProp)
// of MODEL at batch N, timed ITERS times after a warm-up.
template <class Net>
int bench_train(const char* model, int batch, int threads, int iters) {
    auto w = std::make_unique<weights<Net>>();
    init_seeded(*w, 1);
    trainer<Net, backend::cpu> t{*w, {.threads = threads, .seed = 3}};
    optimizer opt = optimizer::rmsprop();
    const auto ranges = trainable_ranges<Net>();
    const auto [x, labels] = ctnet_tool::random_train_batch<Net>(batch);
    // train_step in its three phases (train/step.hpp), each timed: forward and losses, backward,
    // norm + clipping + RMSProp (with the finiteness checks).
    std::vector<double> ms, fwd, bwd, upd;
    std::vector<float> dlogits, daux;
    using clock = std::chrono::steady_clock;
    const auto since = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    for (int i = 0; i <= iters; ++i) {
        const auto t0 = clock::now();
        step_result s = step_forward(t, x, labels, recipe{}, dlogits, daux);
        const auto t1 = clock::now();
        t.zero_grads();
        t.backward(dlogits, daux);
        const auto t2 = clock::now();
        step_update(t, opt, ranges, recipe{}, 1e-4, nullptr, s);
        const auto t3 = clock::now();
        if (i == 0) continue;  // warm-up
        ms.push_back(since(t0, t3));
        fwd.push_back(since(t0, t1));
        bwd.push_back(since(t1, t2));
        upd.push_back(since(t2, t3));
    }
    const double median = median_of(ms);
    std::printf("{\"model\": \"%s\", \"mode\": \"train\", \"batch\": %d, \"threads\": %d, \"iters\": %d, "
                "\"median_ms\": %.2f, \"min_ms\": %.2f, \"images_per_s\": %.1f, \"forward_ms\": %.2f, "
                "\"backward_ms\": %.2f, \"update_ms\": %.2f}\n",
                model, batch, threads, iters, median, *std::min_element(ms.begin(), ms.end()), batch * 1000.0 / median,
                median_of(fwd), median_of(bwd), median_of(upd));
    return 0;
}

struct bench_args {
    std::string model = "inception_v3", backend_name = "cpu", winograd = "on", precision = "fp32";
    int batch = 1, threads = 1, iters = 10;
    bool train = false, profile = false;
};

// --profile: the per-step table (each step's median over the passes), grouped by torchvision
// block (a block's row: the median of its per-pass sums); returns both as JSON fields for the
// JSON line: "profile_ms": {block: ms, ...}, "step_ms": [[step, kind, ms], ...].
template <class Info>
std::string print_profile(const std::vector<Info>& steps, const std::vector<std::vector<double>>& passes, int batch) {
    const auto gflops = [&](std::size_t macs, double ms) {
        return macs == 0 || ms <= 0.0 ? std::string{} : std::to_string(std::lround(2.0 * static_cast<double>(macs) * batch / (ms * 1e6)));
    };
    std::printf("per step: median ms of %zu passes; GFLOP/s count the direct convolution's FLOPs (Winograd: effective)\n",
                passes.size());
    std::printf("%-36s %-30s %-12s %9s %8s\n", "block / step", "kind", "output", "ms", "GFLOP/s");
    std::string blocks, step_list;
    double sum = 0.0;
    for (std::size_t b = 0; b < steps.size();) {
        std::size_t e = b;
        std::size_t macs = 0;
        while (e < steps.size() && steps[e].block == steps[b].block) macs += steps[e++].macs;
        std::vector<double> block_ms;
        block_ms.reserve(passes.size());
        for (const std::vector<double>& pass : passes) block_ms.push_back(std::accumulate(pass.begin() + b, pass.begin() + e, 0.0));
        const double ms = median_of(block_ms);
        const std::string block{steps[b].block};
        std::printf("%-36s %-30s %-12s %9.3f %8s\n", block.c_str(), "", "", ms, gflops(macs, ms).c_str());
        blocks += (b == 0 ? "\"" : ", \"") + block + "\": " + std::to_string(ms);
        for (std::size_t i = b; i < e; ++i) {
            std::vector<double> t;
            t.reserve(passes.size());
            for (const std::vector<double>& pass : passes) t.push_back(pass[i]);
            const double step_ms = median_of(t);
            sum += step_ms;
            step_list += (i == 0 ? "[\"" : ", [\"") + std::string{steps[i].name} + "\", \"" + steps[i].kind + "\", " +
                         std::to_string(step_ms) + "]";
            const shape o = steps[i].out;
            const std::string out = std::to_string(o.c) + "x" + std::to_string(o.h) + "x" + std::to_string(o.w);
            std::printf("  %-34s %-30s %-12s %9.3f %8s\n", std::string{steps[i].name}.c_str(), steps[i].kind.c_str(),
                        out.c_str(), step_ms, gflops(steps[i].macs, step_ms).c_str());
        }
        b = e;
    }
    std::printf("sum of the step medians: %.2f ms\n", sum);
    return "\"profile_ms\": {" + blocks + "}, \"step_ms\": [" + step_list + "]";
}

int bench(const bench_args& a) {
    const std::string& model = a.model;
    const int batch = a.batch, threads = a.threads, iters = a.iters;
    if (a.train) {
        if (batch < 2) throw usage_error("--batch", "must be at least 2 with --train (batch norm), not " + std::to_string(batch));
        if (a.profile) throw usage_error("--profile", "times inference passes, not --train");
        if (a.backend_name == "reference") throw usage_error("--backend", "reference times inference passes, not --train");
        if (a.backend_name == "cuda") {
            if (a.precision != "fp32" && a.precision != "tf32" && a.precision != "bf16")
                throw usage_error("--precision", "must be fp32, tf32 or bf16 with --train --backend cuda, not " + a.precision);
#if defined(CTNET_WITH_CUDA)
            if (model == "inception_v3") return ctnet_tool::bench_train_cuda<v3>("inception_v3", batch, iters, a.precision);
            if (model == "fashion") return ctnet_tool::bench_train_cuda<fashion::fashion_net<>>("fashion", batch, iters, a.precision);
            return ctnet_tool::bench_train_cuda<fashion_wide>("fashion_wide", batch, iters, a.precision);
#else
            throw usage_error("--backend", "cuda: this ctnet was built without CUDA (nvcc was not found at configure time)");
#endif
        }
        if (a.precision != "fp32") throw usage_error("--precision", "must be fp32 with --train --backend cpu, not " + a.precision);
        if (model == "inception_v3") return bench_train<v3>("inception_v3", batch, threads, iters);
        if (model == "fashion") return bench_train<fashion::fashion_net<>>("fashion", batch, threads, iters);
        return bench_train<fashion_wide>("fashion_wide", batch, threads, iters);
    }
    if (model != "inception_v3") throw usage_error("--model", "must be inception_v3 without --train, not " + model);
    if (a.backend_name == "cuda") throw usage_error("--backend", "cuda needs --train here (inference on the GPU: bench/gpu_bench)");
    if (a.precision == "tf32") throw usage_error("--precision", "tf32 needs --train --backend cuda");
    if (a.profile && a.backend_name != "cpu") throw usage_error("--profile", "needs --backend cpu");
    const std::string& backend_name = a.backend_name;
    const bool winograd = a.winograd == "on";
    auto w = std::make_unique<weights<v3>>();
    init_seeded(*w, 1);
    std::vector<float> x(static_cast<std::size_t>(batch) * input_shape_v<v3>.size()), y(static_cast<std::size_t>(batch) * 1000);
    rng g{2};
    for (float& v : x) v = static_cast<float>(g.normal());
    std::vector<double> ms;
    std::string profile;  // --profile: the blocks' and steps' medians, as JSON fields
    auto time_it = [&](auto& run) {
        run.forward(x, y);  // warm-up: arena, caches
        for (int i = 0; i < iters; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            run.forward(x, y);
            ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
    };
    // --profile: as many passes again, each step timed (the passes above stay untimed inside).
    auto profile_it = [&](auto& run) {
        const auto steps = run.step_infos();
        std::vector<std::vector<double>> passes(static_cast<std::size_t>(iters), std::vector<double>(steps.size()));
        for (std::vector<double>& pass : passes) run.forward(x, y, pass);
        profile = print_profile(steps, passes, batch);
    };
    if (backend_name == "cpu") {
        // bf16 / int8 (docs/precision.md); int8's scales from 2 other random inputs.
        const ctnet::precision prec = a.precision == "bf16" ? ctnet::precision::bf16
                                      : a.precision == "int8" ? ctnet::precision::int8 : ctnet::precision::fp32;
        cpu::quant_scales scales;
        if (prec == ctnet::precision::int8) {
            std::vector<float> calib(2 * input_shape_v<v3>.size());
            rng gc{3};
            for (float& v : calib) v = static_cast<float>(gc.normal());
            scales = cpu::calibrate(*w, calib, 2, threads);
        }
        runner<v3, backend::cpu> run{*w, {.threads = threads, .winograd = winograd, .precision = prec, .scales = scales}};
        time_it(run);
        if (a.profile) profile_it(run);
    } else {
        if (a.precision != "fp32") throw usage_error("--precision", "bf16 and int8 need --backend cpu");
        runner<v3> run{*w};
        time_it(run);
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2], best = ms.front();
    const double gflops = 2.0 * static_cast<double>(macs_v<v3>) * batch / (median * 1e6);
    const double peak = measured_peak_gflops() * threads;
    std::printf("{\"model\": \"inception_v3\", \"backend\": \"%s\", \"precision\": \"%s\", \"batch\": %d, \"threads\": %d, "
                "\"iters\": %d, \"median_ms\": %.2f, \"min_ms\": %.2f, \"gflops\": %.1f, \"peak_gflops\": %.1f, "
                "\"peak_fraction\": %.3f%s}\n",
                backend_name.c_str(), a.precision.c_str(), batch, threads, iters, median, best, gflops, peak, gflops / peak,
                profile.empty() ? "" : (", " + profile).c_str());
    return 0;
}

struct graph_args {
    std::string model, expand;
    bool no_aux = false, expand_all = false;
};

int graph(const graph_args& a) {
    const std::string_view model = a.model;
    const bool no_aux = a.no_aux;
    dot_options opt;
    opt.expand = a.expand_all && a.expand.empty();
    for (std::string_view rest = a.expand; !rest.empty();) {
        const std::size_t comma = rest.find(',');
        opt.expanded.emplace_back(rest.substr(0, comma));
        rest.remove_prefix(comma == std::string_view::npos ? rest.size() : comma + 1);
    }
    if (model == "inception_v3") no_aux ? write_dot<v3_noaux>(std::cout, model, opt) : write_dot<v3>(std::cout, model, opt);
    else if (model == "inception_v2") no_aux ? write_dot<v2_noaux>(std::cout, model, opt) : write_dot<v2>(std::cout, model, opt);
    else throw error("ctnet graph: unknown model '" + std::string{model} + "' (known: inception_v3, inception_v2)");
    return 0;
}

// The paper's section 9 variants: the table, then their MACs beside the 299x299 network's.
template <class Net>
void print_lowres_summary(std::string_view name) {
    print_summary<Net>(std::cout, name);
    std::printf("section 9 of the paper: %s at %dx%d, %s MACs per sample against inception_v3's %s at 299x299 (%.3fx)\n",
                std::string(name).c_str(), input_shape_v<Net>.h, input_shape_v<Net>.w, ctnet::detail::grouped(macs_v<Net>).c_str(),
                ctnet::detail::grouped(macs_v<v3>).c_str(), static_cast<double>(macs_v<Net>) / static_cast<double>(macs_v<v3>));
}

int summary(const std::string& name, bool no_aux) {
    const std::string_view model = name;
    if (model == "inception_v3") no_aux ? print_summary<v3_noaux>(std::cout, model) : print_summary<v3>(std::cout, model);
    else if (model == "inception_v2") no_aux ? print_summary<v2_noaux>(std::cout, model) : print_summary<v2>(std::cout, model);
    else if (model == "fashion" && !no_aux) print_summary<fashion::fashion_net<>>(std::cout, model);
    else if (model == "fashion_wide" && !no_aux) print_summary<fashion_wide>(std::cout, model);
    else if (model == "inception_v3_lowres151" && !no_aux) print_lowres_summary<models::inception_v3_lowres<151>>(model);
    else if (model == "inception_v3_lowres79" && !no_aux) print_lowres_summary<models::inception_v3_lowres<79>>(model);
    else {
        std::fprintf(stderr, "ctnet summary: unknown model '%s' (known: inception_v3, inception_v2, fashion, fashion_wide, "
                     "inception_v3_lowres151, inception_v3_lowres79)\n",
                     name.c_str());
        return 2;
    }
    return 0;
}

// The command line: one CLI11 subcommand per command, each with the function that runs it.
struct command {
    CLI::App* app;
    std::function<int()> run;
};

std::vector<command> add_commands(CLI::App& app, int argc, char** argv) {
    std::vector<command> cmds;
    const auto model_names = "inception_v3 | inception_v2 | fashion | fashion_wide |\n"
                             "inception_v3_lowres151 | inception_v3_lowres79 (the paper's section 9)";

    auto demo_args = std::make_shared<std::pair<std::uint64_t, int>>(42, 1);
    CLI::App* c = app.add_subcommand("demo", "Inception v3's summary, then a timed forward pass of an embedded sample\n"
                                             "image through seeded random weights (reference kernels and backend::cpu)");
    c->add_option("--seed", demo_args->first, "seed of the random weights")->check(whole(0, 1'000'000'000'000'000'000))->type_name("S");
    c->add_option("--batch", demo_args->second, "copies of the sample image in the batch")->check(whole(1, 4096))->type_name("N");
    cmds.push_back({c, [demo_args] { return demo(demo_args->first, demo_args->second); }});

    auto summary_args = std::make_shared<std::pair<std::string, bool>>();
    c = app.add_subcommand("summary", "Per-block table of a network type: output shapes, parameters, MACs");
    c->add_option("model", summary_args->first, model_names)->required()->type_name("MODEL");
    c->add_flag("--no-aux", summary_args->second, "Inception without its auxiliary head");
    cmds.push_back({c, [summary_args] { return summary(summary_args->first, summary_args->second); }});

    auto ia = std::make_shared<infer_args>();
    auto backend_name = std::make_shared<std::string>("cpu");
    c = app.add_subcommand("infer", "Logits of a batch (an N x 3 x S x S float32 .npy, S: " +
                                        list(compiled_sizes.data(), compiled_sizes.size()) +
                                        ")\nthrough Inception v3 with torchvision-named weights");
    one_of(c->add_option("--model", ia->model, "the network (the one this tool carries)")->required(), {"inception_v3"});
    c->add_option("--weights", ia->weights, "torchvision's Inception v3 state_dict as safetensors")->required()->type_name("FILE");
    c->add_option("--input", ia->input, "the input batch, NCHW float32 .npy")->required()->type_name("FILE");
    c->add_option("--output", ia->output, "the logits, N x K float32 .npy")->required()->type_name("FILE");
    c->add_flag("--transform-input", ia->transform, "apply torchvision's transform_input to the batch first");
    c->add_option("--num-classes", ia->classes, "classes of the weights' classifier")->check(whole(1))->type_name("K");
    c->add_option("--threads", ia->threads, "threads (cpu: inside each layer; reference: split the batch)")
        ->check(whole(1, 4096))->type_name("N");
    one_of(c->add_option("--backend", *backend_name, "cpu: SIMD kernels; reference: the reference kernels"), {"cpu", "reference"});
    c->add_option("--dump-blocks", ia->dump_dir, "also write each block's output there as BLOCK.npy\n"
                                                  "(reference kernels, the first thread's samples)")->type_name("DIR");
    c->add_flag("--check-finite", ia->check_finite, "stop at the first layer that produces a NaN or an infinity");
    cmds.push_back({c, [ia, backend_name] {
                        ia->reference = *backend_name == "reference";
                        return infer(*ia);
                    }});

    auto ca = std::make_shared<classify_args>();
    c = app.add_subcommand("classify", "Top-5 ImageNet classes of images (JPEG, PNG) with torchvision's preprocessing");
    c->add_option("--weights", ca->weights, "torchvision's Inception v3 state_dict as safetensors")->required()->type_name("FILE");
    c->add_flag_callback("--no-transform-input", [ca] { ca->transform = false; },
                         "skip torchvision's transform_input (on by default: its pretrained weights need it)");
    c->add_option("images", ca->images, "the images")->required()->type_name("IMAGE");
    cmds.push_back({c, [ca] { return classify(*ca); }});

    auto ga = std::make_shared<graph_args>();
    c = app.add_subcommand("graph", "Graphviz DOT of a network type, one box per block (dot -Tsvg)");
    c->add_option("model", ga->model, "inception_v3 | inception_v2")->required()->type_name("MODEL");
    c->add_option("--expand", ga->expand, "show the layers inside the blocks: all of them, or those named\n"
                                           "(--expand=Mixed_5b,Mixed_6a)")
        ->expected(0, 1)->type_name("[=BLOCK,...]");
    c->add_flag("--no-aux", ga->no_aux, "Inception without its auxiliary head");
    cmds.push_back({c, [ga, c] {
                        ga->expand_all = c->count("--expand") > 0;
                        return graph(*ga);
                    }});

    auto ba = std::make_shared<bench_args>();
    c = app.add_subcommand("bench", "Times forward passes (or, with --train, training steps) of seeded weights on\n"
                                    "random inputs; prints one JSON line (median and min ms, GFLOP/s, measured peak)");
    c->add_flag("--train", ba->train, "time one training step: forward, losses, backward, clipping, RMSProp");
    c->add_flag("--profile", ba->profile, "backend::cpu: then K more passes with each step timed; prints the per-step\n"
                                          "medians grouped by torchvision block (ms, GFLOP/s) before the JSON line,\n"
                                          "which gains \"profile_ms\" (each block's median) and \"step_ms\"");
    one_of(c->add_option("--model", ba->model, "inception_v3; with --train also fashion or fashion_wide"),
           {"inception_v3", "fashion", "fashion_wide"});
    c->add_option("--batch", ba->batch, "images per pass (at least 2 with --train)")->check(whole(1, 65536))->type_name("N");
    c->add_option("--threads", ba->threads, "threads inside each layer (backend::cpu)")->check(whole(1, 4096))->type_name("N");
    c->add_option("--iters", ba->iters, "timed passes after one warm-up")->check(whole(1))->type_name("K");
    one_of(c->add_option("--backend", ba->backend_name, "cpu: SIMD kernels; reference: the reference kernels; cuda (with\n"
                                                        "--train): trainer<Net, backend::cuda>, one JSON line"),
           {"cpu", "reference", "cuda"});
    one_of(c->add_option("--winograd", ba->winograd, "backend::cpu's Winograd 3x3 convolutions"), {"on", "off"});
    one_of(c->add_option("--precision", ba->precision,
                         "backend::cpu's convolutions in fp32, bf16 (AVX512_BF16) or int8 (AVX512_VNNI, calibrated on\n"
                         "2 other random inputs); docs/precision.md. --train --backend cuda: fp32, tf32 or bf16"),
           {"fp32", "bf16", "int8", "tf32"});
    cmds.push_back({c, [ba] { return bench(*ba); }});

    std::function<int()> train = train_cli::add_command(app, argc, argv);  // train.cpp
    cmds.push_back({app.get_subcommand("train"), std::move(train)});

#if defined(CTNET_WITH_ONNX)
    auto im = std::make_shared<onnx_cli::import_args>();
    c = app.add_subcommand("import", "An ONNX model as a C++ network type (a header) and its weights (safetensors)");
    c->add_option("model", im->onnx_path, "the ONNX file")->required()->type_name("MODEL.onnx");
    c->add_option("--name", im->name, "C++ name of the generated network type")->required()->type_name("NAME");
    c->add_option("-o,--output", im->header_out, "the header to write")->required()->type_name("OUT.hpp");
    c->add_option("--weights", im->weights_out, "the weights to write, by the ONNX graph's names")->required()->type_name("OUT.safetensors");
    cmds.push_back({c, [im] { return onnx_cli::import_onnx(*im); }});

    auto ex = std::make_shared<onnx_cli::export_args>();
    c = app.add_subcommand("export", "A network type and its weights as an ONNX model");
    c->add_option("--model", ex->model, "inception_v3 | fashion | fashion_wide")->required()->type_name("MODEL");
    c->add_option("--weights", ex->weights_path, "safetensors weights (default: seeded random weights, --seed)")->type_name("W.safetensors");
    c->add_option("-o,--output", ex->output, "the ONNX file to write")->required()->type_name("OUT.onnx");
    c->add_flag("--fold-bn", ex->fold_bn, "fold batch norm into the convolutions");
    c->add_option("--batch", ex->batch, "the static batch dimension of the ONNX input")->check(whole(1, 65536))->type_name("N");
    c->add_option("--seed", ex->seed, "seed of the random weights when there is no --weights")
        ->check(whole(0, 1'000'000'000'000'000'000))->type_name("S");
    cmds.push_back({c, [ex] { return onnx_cli::export_onnx(*ex); }});
#endif
    return cmds;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ctnet: neural networks as C++20 types (Inception v3, the Fashion-MNIST example)", "ctnet"};
    ctnet_tool::configure(app);
    app.set_version_flag("--version", "ctnet " CTNET_VERSION, "Print the version and exit");
    app.require_subcommand(1);
    const std::vector<command> cmds = add_commands(app, argc, argv);
    app.footer("`ctnet COMMAND --help` lists a command's options with their defaults.\n"
               "Exit status: 0, 1 for a failed run, 2 for a usage error.");

    // `ctnet help [COMMAND]` as `ctnet [COMMAND] --help`; no command: the help, as a usage error.
    std::vector<char*> args(argv, argv + argc);
    std::string help_flag = "--help";
    if (argc >= 2 && std::string_view{argv[1]} == "help") {
        args.erase(args.begin() + 1);
        args.push_back(help_flag.data());
    }
    if (argc < 2) {
        std::cerr << app.help();
        return 2;
    }
    if (args.size() >= 2 && args[1][0] != '-' &&
        std::none_of(cmds.begin(), cmds.end(), [&](const command& c) { return c.app->get_name() == args[1]; })) {
        std::fprintf(stderr, "ctnet: unknown command '%s'\nRun 'ctnet --help' for the commands.\n", args[1]);
        return 2;
    }
    CLI::App* sub = nullptr;
    try {
        app.parse(static_cast<int>(args.size()), args.data());
        for (const command& c : cmds)
            if (c.app->parsed()) {
                sub = c.app;
                return c.run();
            }
        return 2;  // not reached: require_subcommand(1)
    } catch (const CLI::CallForHelp&) {
        std::cout << app.help();
        return 0;
    } catch (const CLI::CallForVersion& e) {
        std::cout << e.what() << "\n";
        return 0;
    } catch (const CLI::ParseError& e) {
        if (sub == nullptr)
            for (const command& c : cmds)
                if (c.app->parsed()) sub = c.app;
        const std::string name = sub != nullptr ? "ctnet " + sub->get_name() : "ctnet";
        // An unknown option first: CLI11 checks required options before it reports extra arguments.
        const std::string what = sub != nullptr && dynamic_cast<const CLI::RequiredError*>(&e) != nullptr &&
                                         !sub->remaining().empty()
                                     ? CLI::ExtrasError{sub->remaining()}.what()
                                     : e.what();
        std::fprintf(stderr, "%s: %s\nRun '%s --help' for the options.\n", name.c_str(), what.c_str(), name.c_str());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
