// Prints hashes of what the CPU backends compute, so that a change meant to move code and not
// results can be shown bit-identical: Inception v3's logits on backend::reference and
// backend::cpu (batch 1 and 3, 1 and 2 threads), and one training step of the paper's recipe on
// both trainers (two steps: loss, gradients, updated parameters and moving average; Inception v3
// at 75x75 without the aux head, batch 2), and on backend::cpu at 299x299 with the aux head.
//   g++ -O3 -march=native -std=c++20 -I include tools/output_hash.cpp -o /tmp/output_hash -pthread
//   /tmp/output_hash            # one line per case: name, FNV-1a of the float bits
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include <ctnet/cpu/fast_runner.hpp>
#include <ctnet/ctnet.hpp>
#if __has_include(<ctnet/cpu/trainer.hpp>)
#include <ctnet/cpu/trainer.hpp>
#endif
#include <ctnet/train/step.hpp>

using namespace ctnet;

namespace {

std::uint64_t fnv(std::span<const float> v, std::uint64_t h = 1469598103934665603ULL) {
    for (float f : v) {
        std::uint32_t b = 0;
        std::memcpy(&b, &f, 4);
        for (int k = 0; k < 4; ++k) h = (h ^ ((b >> (8 * k)) & 0xFFU)) * 1099511628211ULL;
    }
    return h;
}

std::vector<float> input(std::size_t n, std::uint64_t seed) {
    rng g{seed};
    std::vector<float> x(n);
    for (float& v : x) v = static_cast<float>(g.normal());
    return x;
}

template <class Net, class B>
void train_case(const char* name, const weights<Net>& w0) {
    auto w = std::make_unique<weights<Net>>(w0);
    trainer<Net, B> t{*w, {.threads = 2, .seed = 5}};
    optimizer opt = optimizer::rmsprop({});
    moving_average ema{0.999, {.warmup = false}};  // the fixed decay: comparable with hashes made before the warm-up
    ema.update(w->data());
    const auto ranges = trainable_ranges<Net>();
    const std::vector<float> x = input(2 * input_shape_v<Net>.size(), 11);
    const std::vector<int> labels = {3, 7};
    step_result s{};
    for (int step = 0; step < 2; ++step) s = train_step(t, opt, ranges, x, labels, recipe{}, 0.045, &ema);
    std::printf("%-28s loss %.9g grads %016llx params %016llx ema %016llx\n", name, s.loss,
                static_cast<unsigned long long>(fnv(t.grads())), static_cast<unsigned long long>(fnv(w->data())),
                static_cast<unsigned long long>(fnv(ema.shadow())));
}

}  // namespace

int main() {
    using net = models::inception_v3<>;
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 42, true);
    for (const int n : {1, 3}) {
        const std::vector<float> x = input(n * input_shape_v<net>.size(), 7);
        runner<net> ref{*w};
        std::printf("reference batch %d            %016llx\n", n, static_cast<unsigned long long>(fnv(ref(x))));
        for (const int t : {1, 2}) {
            runner<net, backend::cpu> fast{*w, {.threads = t}};
            std::printf("cpu batch %d threads %d         %016llx\n", n, t, static_cast<unsigned long long>(fnv(fast(x))));
        }
    }
    using small = models::inception_v3<10, 75, models::inception_options{.aux_logits = false}>;
    auto ws = std::make_unique<weights<small>>();
    init_seeded(*ws, 3, true);
    train_case<small, backend::reference>("train reference 75x75 b2", *ws);
    train_case<small, backend::cpu>("train cpu 75x75 b2", *ws);
    train_case<net, backend::cpu>("train cpu 299x299 aux b2", *w);
}
