// ctnet — the command-line tool.
//
//   ctnet demo [--seed S] [--batch N]      Inception v3 summary, then a timed forward pass of an
//                                          embedded sample image through seeded random weights
//   ctnet summary MODEL [--no-aux]         per-block table; MODEL: inception_v3 | inception_v2
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include <ctnet/ctnet.hpp>

namespace {

using namespace ctnet;
using v3 = models::inception_v3<>;
using v3_noaux = models::inception_v3<1000, 299, models::inception_options{.aux_logits = false}>;
using v2 = models::inception_v2<>;
using v2_noaux = models::inception_v2<1000, 299, models::inception_options{.aux_logits = false}>;

int usage(int code) {
    std::fputs(
        "usage: ctnet demo [--seed S] [--batch N]\n"
        "       ctnet summary inception_v3|inception_v2 [--no-aux]\n",
        code == 0 ? stdout : stderr);
    return code;
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

    weights<v3> w;
    init_seeded(w, seed);
    runner<v3> run{w};
    const std::vector<float> x = sample_image(batch);
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<float> logits = run(x);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

    std::printf("\nforward pass: batch %d, 3x299x299, reference kernels, seeded weights (seed %llu)\n", batch,
                static_cast<unsigned long long>(seed));
    std::printf("time %.1f ms (%.2f GFLOP/s)\n", ms,
                2.0 * static_cast<double>(macs_v<v3>) * batch / (ms * 1e6));
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

int summary(int argc, char** argv) {
    if (argc < 3) return usage(2);
    const std::string_view model = argv[2];
    const bool no_aux = argc > 3 && std::string_view{argv[3]} == "--no-aux";
    if (argc > 3 + (no_aux ? 1 : 0)) return usage(2);
    if (model == "inception_v3") no_aux ? print_summary<v3_noaux>(std::cout, model) : print_summary<v3>(std::cout, model);
    else if (model == "inception_v2") no_aux ? print_summary<v2_noaux>(std::cout, model) : print_summary<v2>(std::cout, model);
    else {
        std::fprintf(stderr, "ctnet summary: unknown model '%s' (known: inception_v3, inception_v2)\n", argv[2]);
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
        if (cmd == "help" || cmd == "--help" || cmd == "-h") return usage(0);
        std::fprintf(stderr, "ctnet: unknown command '%s'\n", argv[1]);
        return usage(2);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
