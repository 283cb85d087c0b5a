// Define a network as a type, check it at compile time, run it. (The README's example.)
//
//   ./build/examples/define_a_network
#include <cstdio>
#include <iostream>
#include <vector>

#include <ctnet/ctnet.hpp>

using namespace ctnet;

template <int Out, class... Opts>  // named structs keep type names short
struct conv_bn_relu : seq<node<"conv", conv<Out, Opts...>>, node<"bn", batch_norm<>>, relu> {};

using toy = network<shape{1, 28, 28},
    seq<node<"stem", conv_bn_relu<16, k<3>, pad<1>>>,
        node<"mixed", concat<node<"b1x1", conv_bn_relu<8, k<1>>>,
                             seq<node<"b7_1", conv_bn_relu<8, k<1, 7>, pad<0, 3>>>,  // factorized 7x7
                                 node<"b7_2", conv_bn_relu<8, k<7, 1>, pad<3, 0>>>>,
                             seq<max_pool<k<3>, stride<1>, pad<1>>, node<"bpool", conv_bn_relu<8, k<1>>>>>>,
        global_avg_pool, flatten, node<"fc", linear<24, 10>>>>;

static_assert(output_shape_v<toy> == shape{10});
// stem 16*9 + 32; b1x1 8*16 + 16; b7_1 8*16*7 + 16; b7_2 8*8*7 + 16; bpool 8*16 + 16; fc 24*10 + 10
static_assert(param_count_v<toy> == (144 + 32) + (128 + 16) + (896 + 16) + (448 + 16) + (128 + 16) + 250);

int main() {
    print_summary<toy>(std::cout, "toy");
    weights<toy> w;
    init_seeded(w, 1);
    runner<toy> run{w};
    const std::vector<float> image(std::size_t{28} * 28, 0.5F);
    const std::vector<float> logits = run(image);
    std::printf("logits:");
    for (float v : logits) std::printf(" %.4f", v);
    std::printf("\n");
}
