// apps/ctnet/main.cpp — ctnet, the command-line tool (`ctnet train` is in train.cpp).
//
//   ctnet demo [--seed S] [--batch N]      Inception v3 summary, then a timed forward pass of an
//                                          embedded sample image through seeded random weights
//   ctnet summary MODEL [--no-aux]         per-block table; MODEL: inception_v3 | inception_v2 | fashion | fashion_wide
//   ctnet infer --model inception_v3 --weights W.safetensors --input X.npy --output Y.npy
//               [--transform-input] [--num-classes K] [--threads N] [--dump-blocks DIR] [--check-finite]
//   ctnet classify --weights W.safetensors [--no-transform-input] IMAGE...
//   ctnet graph MODEL [--expand | --expand=BLOCK,...] [--no-aux]   Graphviz DOT of the network type
//   ctnet bench --model inception_v3 [--batch N] [--threads T] [--iters K] [--backend cpu|reference] [--winograd on|off]
//   ctnet bench --train --model inception_v3|fashion|fashion_wide [--batch N] [--threads T] [--iters K]   one training step
//   ctnet train [--epochs N] [--out DIR] [--resume] ...   the paper's recipe on Fashion-MNIST
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <ctnet/cpu/fast_runner.hpp>
#include <ctnet/cpu/trainer.hpp>
#include <ctnet/ctnet.hpp>
#include <ctnet/graph/graphviz.hpp>
#include <ctnet/io/image.hpp>
#include <ctnet/io/npy.hpp>
#include <ctnet/io/safetensors.hpp>
#include <ctnet/train/step.hpp>

#include "fashion_net.hpp"
#include "train.hpp"

namespace {

using namespace ctnet;
using v3 = models::inception_v3<>;
using v3_noaux = models::inception_v3<1000, 299, models::inception_options{.aux_logits = false}>;
using v2 = models::inception_v2<>;
using v2_noaux = models::inception_v2<1000, 299, models::inception_options{.aux_logits = false}>;
using fashion_wide = fashion::fashion_net<fashion::fashion_options{.wide = true}>;  // ctnet train --wide

// ImageNet's class names, in torchvision's order (apps/ctnet/imagenet_classes.txt, built in).
constexpr const char imagenet_classes[] = {
#include "imagenet_classes.inc"
};

int usage(int code) {
    std::fputs(
        "usage: ctnet demo [--seed S] [--batch N]\n"
        "       ctnet summary inception_v3|inception_v2 [--no-aux] | ctnet summary fashion|fashion_wide\n"
        "       ctnet infer --model inception_v3 --weights W.safetensors --input X.npy --output Y.npy\n"
        "                   [--transform-input] [--num-classes K] [--threads N] [--dump-blocks DIR] [--check-finite]\n"
        "       ctnet classify --weights W.safetensors [--no-transform-input] IMAGE...\n"
        "       ctnet graph inception_v3|inception_v2 [--expand | --expand=BLOCK,...] [--no-aux]\n"
        "       ctnet bench --model inception_v3 [--batch N] [--threads T] [--iters K] [--backend cpu|reference] [--winograd on|off]\n"
        "       ctnet bench --train --model inception_v3|fashion|fashion_wide [--batch N] [--threads T] [--iters K]\n"
        "       ctnet train [--data DIR] [--out DIR] [--epochs N] [--batch B] [--threads T] [--resume]\n"
        "                   [--optimizer rmsprop|rmsprop-torch|sgd] [--lr X] [--lr-decay X] [--decay-epochs X]\n"
        "                   [--smoothing X] [--aux-weight X] [--clip-norm X] [--clip-value X] [--weight-decay X]\n"
        "                   [--ema X] [--no-factorized] [--no-bn-aux] [--no-augment] [--limit N] [--test-limit N]\n",
        code == 0 ? stdout : stderr);
    return code;
}

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
    std::string weights, input, output, dump_dir;
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

int infer(int argc, char** argv) {
    infer_args a;
    std::string model;
    for (int i = 2; i < argc; ++i) {
        const std::string_view k = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw error("ctnet infer: " + std::string{k} + " needs a value");
            return argv[++i];
        };
        if (k == "--model") model = value();
        else if (k == "--weights") a.weights = value();
        else if (k == "--input") a.input = value();
        else if (k == "--output") a.output = value();
        else if (k == "--dump-blocks") a.dump_dir = value();
        else if (k == "--transform-input") a.transform = true;
        else if (k == "--check-finite") a.check_finite = true;
        else if (k == "--num-classes") a.classes = std::stoi(value());
        else if (k == "--threads") a.threads = std::stoi(value());
        else if (k == "--backend") {
            const std::string b = value();
            if (b != "cpu" && b != "reference") throw error("ctnet infer: --backend is cpu or reference, not '" + b + "'");
            a.reference = b == "reference";
        } else throw error("ctnet infer: unknown option '" + std::string{k} + "'");
    }
    if (model != "inception_v3") throw error("ctnet infer: --model must be inception_v3 (got '" + model + "')");
    if (a.weights.empty() || a.input.empty() || a.output.empty())
        throw error("ctnet infer: --weights, --input and --output are required");
    if (a.threads < 1) throw error("ctnet infer: --threads must be at least 1");
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

int classify(int argc, char** argv) {
    std::string weights_path;
    bool transform = true;  // torchvision turns transform_input on with its pretrained weights
    std::vector<std::string> images;
    for (int i = 2; i < argc; ++i) {
        const std::string_view k = argv[i];
        if (k == "--weights" && i + 1 < argc) weights_path = argv[++i];
        else if (k == "--no-transform-input") transform = false;
        else if (k.starts_with("--")) throw error("ctnet classify: unknown option '" + std::string{k} + "'");
        else images.emplace_back(k);
    }
    if (weights_path.empty() || images.empty()) return usage(2);
    std::vector<std::string_view> names;
    for (std::string_view rest = imagenet_classes; !rest.empty();) {
        const std::size_t eol = rest.find('\n');
        names.push_back(rest.substr(0, eol));
        rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
    }
    auto w = std::make_unique<weights<v3>>();
    load_weights(weights_path, *w);
    runner<v3, backend::cpu> run{*w, {.threads = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()))}};
    for (const std::string& path : images) {
        std::vector<float> x = io::imagenet_preprocess(path);
        if (transform) apply_transform_input<input_shape_v<v3>>(x);
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

int demo(int argc, char** argv) {
    std::uint64_t seed = 42;
    int batch = 1;
    for (int i = 2; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
        else if (a == "--batch" && i + 1 < argc) batch = std::stoi(argv[++i]);
        else return usage(2);
    }
    if (batch < 1) throw error("ctnet demo: --batch must be at least 1");
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

// One training step (forward in training mode, smoothed losses, backward, clipping, RMSProp)
// of MODEL at batch N, timed ITERS times after a warm-up.
template <class Net>
int bench_train(const char* model, int batch, int threads, int iters) {
    auto w = std::make_unique<weights<Net>>();
    init_seeded(*w, 1);
    trainer<Net, backend::cpu> t{*w, {.threads = threads, .seed = 3}};
    optimizer opt = optimizer::rmsprop();
    const auto ranges = trainable_ranges<Net>();
    constexpr int classes = static_cast<int>(output_shape_v<Net>.size());
    std::vector<float> x(static_cast<std::size_t>(batch) * input_shape_v<Net>.size());
    std::vector<int> labels(static_cast<std::size_t>(batch));
    rng g{2};
    for (float& v : x) v = static_cast<float>(g.normal());
    for (int& l : labels) l = static_cast<int>(g.next() % classes);
    std::vector<double> ms;
    for (int i = 0; i <= iters; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        (void)train_step(t, opt, ranges, x, labels, recipe{}, 1e-4);
        if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    std::printf("{\"model\": \"%s\", \"mode\": \"train\", \"batch\": %d, \"threads\": %d, \"iters\": %d, "
                "\"median_ms\": %.2f, \"min_ms\": %.2f, \"images_per_s\": %.1f}\n",
                model, batch, threads, iters, median, ms.front(), batch * 1000.0 / median);
    return 0;
}

int bench(int argc, char** argv) {
    std::string model = "inception_v3", backend_name = "cpu";
    int batch = 1, threads = 1, iters = 10;
    bool train = false, winograd = true;
    for (int i = 2; i < argc; ++i) {
        const std::string_view k = argv[i];
        if (k == "--train") {
            train = true;
            continue;
        }
        if (i + 1 >= argc) throw error("ctnet bench: " + std::string{k} + " needs a value");
        if (k == "--model") model = argv[++i];
        else if (k == "--batch") batch = std::stoi(argv[++i]);
        else if (k == "--threads") threads = std::stoi(argv[++i]);
        else if (k == "--iters") iters = std::stoi(argv[++i]);
        else if (k == "--backend") backend_name = argv[++i];
        else if (k == "--winograd") {
            const std::string_view v = argv[++i];
            if (v != "on" && v != "off") throw error("ctnet bench: --winograd is on or off");
            winograd = v == "on";
        } else throw error("ctnet bench: unknown option '" + std::string{k} + "'");
    }
    if (batch < 1 || threads < 1 || iters < 1) throw error("ctnet bench: --batch, --threads and --iters must be positive");
    if (train) {
        if (batch < 2) throw error("ctnet bench: --train needs --batch of at least 2 (batch norm)");
        if (model == "inception_v3") return bench_train<v3>("inception_v3", batch, threads, iters);
        if (model == "fashion") return bench_train<fashion::fashion_net<>>("fashion", batch, threads, iters);
        if (model == "fashion_wide")
            return bench_train<fashion_wide>("fashion_wide", batch, threads, iters);
        throw error("ctnet bench: --train --model must be inception_v3, fashion or fashion_wide");
    }
    if (model != "inception_v3") throw error("ctnet bench: --model must be inception_v3");
    if (batch < 1 || threads < 1 || iters < 1) throw error("ctnet bench: --batch, --threads and --iters must be positive");
    if (backend_name != "cpu" && backend_name != "reference") throw error("ctnet bench: --backend is cpu or reference");
    auto w = std::make_unique<weights<v3>>();
    init_seeded(*w, 1);
    std::vector<float> x(static_cast<std::size_t>(batch) * input_shape_v<v3>.size()), y(static_cast<std::size_t>(batch) * 1000);
    rng g{2};
    for (float& v : x) v = static_cast<float>(g.normal());
    std::vector<double> ms;
    auto time_it = [&](auto& run) {
        run.forward(x, y);  // warm-up: arena, caches
        for (int i = 0; i < iters; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            run.forward(x, y);
            ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
    };
    if (backend_name == "cpu") {
        runner<v3, backend::cpu> run{*w, {.threads = threads, .winograd = winograd}};
        time_it(run);
    } else {
        runner<v3> run{*w};
        time_it(run);
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2], best = ms.front();
    const double gflops = 2.0 * static_cast<double>(macs_v<v3>) * batch / (median * 1e6);
    const double peak = measured_peak_gflops() * threads;
    std::printf("{\"model\": \"inception_v3\", \"backend\": \"%s\", \"batch\": %d, \"threads\": %d, \"iters\": %d, "
                "\"median_ms\": %.2f, \"min_ms\": %.2f, \"gflops\": %.1f, \"peak_gflops\": %.1f, \"peak_fraction\": %.3f}\n",
                backend_name.c_str(), batch, threads, iters, median, best, gflops, peak, gflops / peak);
    return 0;
}

int graph(int argc, char** argv) {
    if (argc < 3) return usage(2);
    const std::string_view model = argv[2];
    bool no_aux = false;
    dot_options opt;
    for (int i = 3; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--no-aux") no_aux = true;
        else if (a == "--expand") opt.expand = true;
        else if (a.starts_with("--expand=")) {
            for (std::string_view rest = a.substr(9); !rest.empty();) {
                const std::size_t comma = rest.find(',');
                opt.expanded.emplace_back(rest.substr(0, comma));
                rest.remove_prefix(comma == std::string_view::npos ? rest.size() : comma + 1);
            }
        }
        else return usage(2);
    }
    if (model == "inception_v3") no_aux ? write_dot<v3_noaux>(std::cout, model, opt) : write_dot<v3>(std::cout, model, opt);
    else if (model == "inception_v2") no_aux ? write_dot<v2_noaux>(std::cout, model, opt) : write_dot<v2>(std::cout, model, opt);
    else throw error("ctnet graph: unknown model '" + std::string{model} + "' (known: inception_v3, inception_v2)");
    return 0;
}

int summary(int argc, char** argv) {
    if (argc < 3) return usage(2);
    const std::string_view model = argv[2];
    const bool no_aux = argc > 3 && std::string_view{argv[3]} == "--no-aux";
    if (argc > 3 + (no_aux ? 1 : 0)) return usage(2);
    if (model == "inception_v3") no_aux ? print_summary<v3_noaux>(std::cout, model) : print_summary<v3>(std::cout, model);
    else if (model == "inception_v2") no_aux ? print_summary<v2_noaux>(std::cout, model) : print_summary<v2>(std::cout, model);
    else if (model == "fashion" && !no_aux) print_summary<fashion::fashion_net<>>(std::cout, model);
    else if (model == "fashion_wide" && !no_aux) print_summary<fashion_wide>(std::cout, model);
    else {
        std::fprintf(stderr, "ctnet summary: unknown model '%s' (known: inception_v3, inception_v2, fashion, fashion_wide)\n",
                     argv[2]);
        return 2;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc < 2) return usage(2);
        const std::string_view cmd = argv[1];
        if (cmd == "demo") return demo(argc, argv);
        if (cmd == "summary") return summary(argc, argv);
        if (cmd == "infer") return infer(argc, argv);
        if (cmd == "classify") return classify(argc, argv);
        if (cmd == "graph") return graph(argc, argv);
        if (cmd == "bench") return bench(argc, argv);
        if (cmd == "train") return train_cli::train(argc, argv);
        if (cmd == "help" || cmd == "--help" || cmd == "-h") return usage(0);
        std::fprintf(stderr, "ctnet: unknown command '%s'\n", argv[1]);
        return usage(2);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
