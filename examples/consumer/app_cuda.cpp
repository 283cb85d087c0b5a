// A user's program on the GPU: the same kind of network type, run by backend::cuda (link
// ctnet::cuda). Without a usable device it prints the runner's error and exits 0, so it also
// shows on a machine without a GPU that the installed kernels library links.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include <ctnet/ctnet.hpp>
#include <ctnet/cuda/runner.hpp>

using namespace ctnet;

using net = network<shape{3, 32, 32},
                    seq<node<"conv", conv<8, k<3>, stride<2>, pad<1>>>, node<"bn", batch_norm<>>, relu,
                        global_avg_pool, flatten, node<"fc", linear<8, 4>>>>;

int main() {
    weights<net> w;
    init_seeded(w, 3);
    const std::vector<float> x(3 * 32 * 32, 1.0F);
    try {
        runner<net, backend::cuda> gpu{w};
        const std::vector<float> y = gpu(x), want = runner<net>{w}(x);
        double err = 0.0;
        for (std::size_t i = 0; i < y.size(); ++i) err = std::max(err, static_cast<double>(std::fabs(y[i] - want[i])));
        std::printf("consumer (cuda): %zu outputs, max difference from the CPU %.2e\n", y.size(), err);
        return y.size() == 4 && err < 1e-2 ? 0 : 1;
    } catch (const ctnet::error& e) {
        std::printf("consumer (cuda): linked; no GPU here: %s\n", e.what());
        return 0;
    }
}
