// examples/fashion_net.hpp — a small Inception-style network for Fashion-MNIST (1 x 28 x 28),
// defined as a type from the paper's ideas:
//   - a grid reduction as parallel stride-2 conv and stride-2 max pool (28 -> 14 and 14 -> 7);
//   - a 35x35-style block whose 5x5 is two 3x3s, and a 17x17-style block whose 7x7 is 1x7 + 7x1
//     (fashion_options::factorized; false gives the unfactorized 5x5 and 7x7 of the ablation);
//   - an auxiliary classifier on the 14x14 grid, with a batch-normalised fc (bn_aux) or a plain one.
// Tensor names follow torchvision's conventions (BLOCK.BRANCH.conv/bn).
#pragma once

#include <ctnet/ctnet.hpp>

namespace fashion {

using namespace ctnet;
using models::basic_conv;

struct fashion_options {
    bool factorized = true;  // 5x5 -> two 3x3, 7x7 -> 1x7 + 7x1
    bool bn_aux = true;      // batch norm after the aux head's fc
    constexpr bool operator==(const fashion_options&) const = default;
};

// 14x14 grid, 64 -> 112 channels.
template <bool Factorized>
struct block_a
    : concat<node<"branch1x1", basic_conv<32, k<1>>>,
             seq<node<"branch3x3_1", basic_conv<24, k<1>>>, node<"branch3x3_2", basic_conv<32, k<3>, pad<1>>>>,
             seq<node<"branch5x5_1", basic_conv<24, k<1>>>, node<"branch5x5_2", basic_conv<32, k<5>, pad<2>>>>,
             seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"branch_pool", basic_conv<16, k<1>>>>> {};
template <>
struct block_a<true>
    : concat<node<"branch1x1", basic_conv<32, k<1>>>,
             seq<node<"branch3x3_1", basic_conv<24, k<1>>>, node<"branch3x3_2", basic_conv<32, k<3>, pad<1>>>>,
             seq<node<"branch3x3dbl_1", basic_conv<24, k<1>>>, node<"branch3x3dbl_2", basic_conv<24, k<3>, pad<1>>>,
                 node<"branch3x3dbl_3", basic_conv<32, k<3>, pad<1>>>>,
             seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"branch_pool", basic_conv<16, k<1>>>>> {};

// 7x7 grid, 208 -> 160 channels.
template <bool Factorized>
struct block_c
    : concat<node<"branch1x1", basic_conv<64, k<1>>>,
             seq<node<"branch7x7_1", basic_conv<48, k<1>>>, node<"branch7x7_2", basic_conv<64, k<7>, pad<3>>>>,
             seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"branch_pool", basic_conv<32, k<1>>>>> {};
template <>
struct block_c<true>
    : concat<node<"branch1x1", basic_conv<64, k<1>>>,
             seq<node<"branch7x7_1", basic_conv<48, k<1>>>, node<"branch7x7_2", basic_conv<48, k<1, 7>, pad<0, 3>>>,
                 node<"branch7x7_3", basic_conv<64, k<7, 1>, pad<3, 0>>>>,
             seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"branch_pool", basic_conv<32, k<1>>>>> {};

// Grid reductions: stride-2 conv branch(es) beside a stride-2 max pool.
struct reduction_a : concat<node<"branch3x3", basic_conv<40, k<3>, stride<2>, pad<1>>>, max_pool<k<3>, stride<2>, pad<1>>> {};
struct reduction_b
    : concat<seq<node<"branch3x3_1", basic_conv<64, k<1>>>, node<"branch3x3_2", basic_conv<96, k<3>, stride<2>, pad<1>>>>,
             max_pool<k<3>, stride<2>, pad<1>>> {};

template <bool Bn>
struct aux_head : seq<avg_pool<k<5>, stride<3>>, node<"conv0", basic_conv<64, k<1>>>, node<"conv1", basic_conv<128, k<4>>>,
                      flatten, node<"fc", linear<128, 10>>> {};
template <>
struct aux_head<true> : seq<avg_pool<k<5>, stride<3>>, node<"conv0", basic_conv<64, k<1>>>,
                            node<"conv1", basic_conv<128, k<4>>>, flatten, node<"fc", linear<128, 10, bias<false>>>,
                            node<"fc_bn", batch_norm<>>> {};

template <fashion_options O = fashion_options{}>
struct fashion_net
    : network<shape{1, 28, 28},
              seq<node<"stem", basic_conv<24, k<3>, pad<1>>>, node<"reduce_28_14", reduction_a>,
                  node<"mixed_14", block_a<O.factorized>>, aux<"aux", aux_head<O.bn_aux>>,
                  node<"reduce_14_7", reduction_b>, node<"mixed_7", block_c<O.factorized>>, node<"avgpool", global_avg_pool>,
                  node<"dropout", dropout<ratio<1, 5>>>, flatten, node<"fc", linear<160, 10>>>> {
    static constexpr std::string_view name = "fashion_net";
};

}  // namespace fashion
