// A user's program on backend::cpu and io/ (link ctnet::cpu and ctnet::io): the weights go
// through a safetensors file and the input through a .npy file, then the SIMD runner's output
// is checked against the reference runner's. Exits 1 when anything does not match.
// Usage: app_cpu_io [DIR]  (the folder for its two files; default: the current one)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <ctnet/cpu/fast_runner.hpp>
#include <ctnet/ctnet.hpp>
#include <ctnet/io/npy.hpp>
#include <ctnet/io/safetensors.hpp>

using namespace ctnet;

using net = network<shape{3, 32, 32},
                    seq<node<"conv", conv<8, k<3>, stride<2>, pad<1>>>, node<"bn", batch_norm<>>, relu,
                        node<"conv2", conv<16, k<3>, pad<1>>>, node<"bn2", batch_norm<>>, relu,
                        global_avg_pool, flatten, node<"fc", linear<16, 4>>>>;

int main(int argc, char** argv) {
    const std::string dir = argc > 1 ? argv[1] : ".";
    try {
        // weights: seeded, saved, loaded into a second set; must read back bit for bit
        weights<net> saved;
        init_seeded(saved, 7, /*randomize_bn=*/true);
        io::save_safetensors(dir + "/consumer.safetensors", saved);
        weights<net> w;
        const io::load_report report = io::load_safetensors(dir + "/consumer.safetensors", w);
        if (!report.unused.empty() || !std::equal(w.data().begin(), w.data().end(), saved.data().begin())) {
            std::puts("consumer (cpu, io): the weights did not read back bit for bit");
            return 1;
        }

        // input: a ramp, through a .npy file
        std::vector<float> x(3 * 32 * 32);
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.01F * static_cast<float>(i));
        io::write_npy(dir + "/consumer_x.npy", {3, 32, 32}, x.data());
        const io::npy_array in = io::read_npy(dir + "/consumer_x.npy");
        if (in.shape != std::vector<std::size_t>{3, 32, 32} || in.data != x) {
            std::puts("consumer (cpu, io): the .npy input did not read back");
            return 1;
        }

        // backend::cpu (folded batch norm, packed SIMD convs, 2 threads) against the reference
        runner<net, backend::cpu> fast{w, {.threads = 2}};
        const std::vector<float> y = fast(in.data), want = runner<net>{w}(in.data);
        double err = 0.0, scale = 0.0;
        for (std::size_t i = 0; i < want.size(); ++i) {
            err = std::max(err, static_cast<double>(std::fabs(y[i] - want[i])));
            scale = std::max(scale, static_cast<double>(std::fabs(want[i])));
        }
        std::printf("consumer (cpu, io): %zu outputs, |reference| up to %.3g, max difference %.2e\n", y.size(),
                    scale, err);
        return y.size() == 4 && scale > 0.0 && err <= 1e-4 * std::max(1.0, scale) ? 0 : 1;
    } catch (const ctnet::error& e) {
        std::printf("consumer (cpu, io): %s\n", e.what());
        return 1;
    }
}
