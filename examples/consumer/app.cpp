// A user's program: define a network type, check it at compile time, run it once.
#include <cstdio>
#include <vector>

#include <ctnet/ctnet.hpp>

using namespace ctnet;

using net = network<shape{3, 32, 32},
                    seq<node<"conv", conv<8, k<3>, stride<2>, pad<1>>>, node<"bn", batch_norm<>>, relu,
                        global_avg_pool, flatten, node<"fc", linear<8, 4>>>>;
static_assert(output_shape_v<net> == shape{4});
static_assert(param_count_v<net> == 8 * 3 * 9 + 16 + 8 * 4 + 4);

int main() {
    weights<net> w;
    init_seeded(w, 3);
    runner<net> run{w};
    const std::vector<float> y = run(std::vector<float>(3 * 32 * 32, 1.0F));
    std::printf("consumer: %zu outputs, %zu parameters\n", y.size(), param_count_v<net>);
    return y.size() == 4 ? 0 : 1;
}
