// The deployed model: a small Inception-style classifier for 1x28x28 images (10 classes),
// with the paper's ideas in miniature — a factorized 7x7 (1x7 then 7x1), a grid reduction by a
// stride-2 conv and a stride-2 pool in parallel, and batch norm everywhere.
#pragma once

#include <ctnet/ctnet.hpp>

namespace deploy {

using namespace ctnet;

template <int Out, class... Opts>
struct conv_bn_relu : seq<node<"conv", conv<Out, Opts...>>, node<"bn", batch_norm<>>, relu> {};

using model = network<shape{1, 28, 28},
    seq<node<"stem", conv_bn_relu<16, k<3>, pad<1>>>,
        node<"reduce", concat<node<"conv", conv_bn_relu<16, k<3>, stride<2>, pad<1>>>,
                              max_pool<k<3>, stride<2>, pad<1>>>>,                                     // 32 x 14 x 14
        node<"mixed", concat<node<"b1x1", conv_bn_relu<16, k<1>>>,
                             seq<node<"b7_1", conv_bn_relu<16, k<1, 7>, pad<0, 3>>>,
                                 node<"b7_2", conv_bn_relu<16, k<7, 1>, pad<3, 0>>>>,
                             seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"bpool", conv_bn_relu<16, k<1>>>>>>,  // 48 x 14 x 14
        global_avg_pool, flatten, node<"fc", linear<48, 10>>>>;

// The sample the deployed binary classifies when given no input: a stroke drawn by a formula.
inline std::vector<float> sample() {
    std::vector<float> x(28 * 28);
    for (int h = 0; h < 28; ++h)
        for (int w = 0; w < 28; ++w) x[h * 28 + w] = (w > 8 && w < 12 && h > 4 && h < 24) || (h > 20 && h < 24 && w > 8 && w < 20) ? 1.0F : 0.0F;
    return x;
}

}  // namespace deploy
