// libFuzzer target: any bytes as a training checkpoint (safetensors + the counters in its
// metadata + optimizer and moving-average state) of a small model. The only acceptable failure
// is ctnet::error; a crash, a sanitizer report or another exception (std::out_of_range from a
// number parser, say) is a bug. A failed load must leave the model and the optimizer untouched.
// Seeds: tests/fuzz/corpus/checkpoint (written by this file built with -DCTNET_FUZZ_WRITE_SEEDS).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <ctnet/cpu/trainer.hpp>
#include <ctnet/ctnet.hpp>
#include <ctnet/train/checkpoint.hpp>
#include <ctnet/train/step.hpp>

using namespace ctnet;
using net = network<shape{2, 4, 4}, seq<node<"conv", conv<3, k<3>>>, node<"bn", batch_norm<>>, relu, global_avg_pool,
                                        flatten, node<"fc", linear<3, 2>>>>;

#ifndef CTNET_FUZZ_WRITE_SEEDS
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const weights<net> initial = [] {
        weights<net> w;
        init_seeded(w, 1, true);
        return w;
    }();
    weights<net> w = initial;
    optimizer opt = optimizer::rmsprop();
    moving_average ema{0.9};
    try {
        (void)load_checkpoint(io::safetensors_file{"fuzz", std::vector<std::uint8_t>(data, data + size)}, w, opt,
                              (size % 2) == 1 ? &ema : nullptr);
        return 0;
    } catch (const error&) {
    }
    if (std::memcmp(initial.data().data(), w.data().data(), w.data().size_bytes()) != 0 || !opt.momentum().empty() ||
        opt.steps() != 0 || !ema.shadow().empty())
        std::abort();  // a rejected file changed the model, the optimizer or the moving average
    return 0;
}
#else
// Writes two seeds into the current directory: a checkpoint saved before the first step (empty
// state tensors) and one after two RMSProp steps with a moving average.
#include <cstdio>
int main() {
    weights<net> w;
    init_seeded(w, 3, true);
    optimizer opt = optimizer::rmsprop();
    moving_average ema{0.9};
    train_state s{.epoch = 0, .step = 0, .dropout_rng = 7, .config = "seed"};
    io::write_file_atomic("fresh.safetensors", checkpoint_bytes(w, opt, &ema, s));
    trainer<net> t{w};
    std::vector<float> x(2 * 2 * 4 * 4);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.0F;
    const auto ranges = trainable_ranges<net>();
    for (int i = 0; i < 2; ++i) (void)train_step(t, opt, ranges, x, std::vector<int>{0, 1}, recipe{}, 0.01, &ema);
    s = {.epoch = 1, .step = 2, .dropout_rng = t.generator().state(), .config = "seed"};
    io::write_file_atomic("trained.safetensors", checkpoint_bytes(w, opt, &ema, s));
    std::puts("wrote fresh.safetensors, trained.safetensors");
}
#endif
