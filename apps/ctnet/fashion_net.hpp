// apps/ctnet/fashion_net.hpp — a small Inception-style network for Fashion-MNIST (1 x 28 x 28),
// defined as a type from the paper's ideas:
//   - a stem of two 3x3 convs (32 channels) at full 28x28 resolution; the first version had one
//     24-channel conv there and under-fitted (train 93.0 %, test 92.5 % after 20 epochs);
//   - a grid reduction as parallel stride-2 conv and stride-2 max pool (28 -> 14 and 14 -> 7);
//   - a 35x35-style block whose 5x5 is two 3x3s, and a 17x17-style block whose 7x7 is 1x7 + 7x1
//     (fashion_options::factorized; false gives the unfactorized 5x5 and 7x7 of the ablation);
//   - fashion_options::wide: 1.5x the channels after the stem (`ctnet train --wide`);
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
    bool wide = false;       // 1.5x the channels of the 14x14 and 7x7 blocks and of the reductions
    constexpr bool operator==(const fashion_options&) const = default;
};

// Channel counts scale with W halves: W = 2 is the network as described, W = 3 is `wide`.
template <int C, int W>
inline constexpr int ch = C * W / 2;

// 14x14 grid, 80 -> 112 channels (wide: 104 -> 168).
template <bool Factorized, int W>
struct block_a
    : concat<node<"branch1x1", basic_conv<ch<32, W>, k<1>>>,
             seq<node<"branch3x3_1", basic_conv<ch<24, W>, k<1>>>, node<"branch3x3_2", basic_conv<ch<32, W>, k<3>, pad<1>>>>,
             seq<node<"branch5x5_1", basic_conv<ch<24, W>, k<1>>>, node<"branch5x5_2", basic_conv<ch<32, W>, k<5>, pad<2>>>>,
             seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"branch_pool", basic_conv<ch<16, W>, k<1>>>>> {};
template <int W>
struct block_a<true, W>
    : concat<node<"branch1x1", basic_conv<ch<32, W>, k<1>>>,
             seq<node<"branch3x3_1", basic_conv<ch<24, W>, k<1>>>, node<"branch3x3_2", basic_conv<ch<32, W>, k<3>, pad<1>>>>,
             seq<node<"branch3x3dbl_1", basic_conv<ch<24, W>, k<1>>>, node<"branch3x3dbl_2", basic_conv<ch<24, W>, k<3>, pad<1>>>,
                 node<"branch3x3dbl_3", basic_conv<ch<32, W>, k<3>, pad<1>>>>,
             seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"branch_pool", basic_conv<ch<16, W>, k<1>>>>> {};

// 7x7 grid, 208 -> 160 channels (wide: 312 -> 240).
template <bool Factorized, int W>
struct block_c
    : concat<node<"branch1x1", basic_conv<ch<64, W>, k<1>>>,
             seq<node<"branch7x7_1", basic_conv<ch<48, W>, k<1>>>, node<"branch7x7_2", basic_conv<ch<64, W>, k<7>, pad<3>>>>,
             seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"branch_pool", basic_conv<ch<32, W>, k<1>>>>> {};
template <int W>
struct block_c<true, W>
    : concat<node<"branch1x1", basic_conv<ch<64, W>, k<1>>>,
             seq<node<"branch7x7_1", basic_conv<ch<48, W>, k<1>>>, node<"branch7x7_2", basic_conv<ch<48, W>, k<1, 7>, pad<0, 3>>>,
                 node<"branch7x7_3", basic_conv<ch<64, W>, k<7, 1>, pad<3, 0>>>>,
             seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"branch_pool", basic_conv<ch<32, W>, k<1>>>>> {};

// Grid reductions: stride-2 conv branch(es) beside a stride-2 max pool.
template <int W>
struct reduction_a : concat<node<"branch3x3", basic_conv<ch<48, W>, k<3>, stride<2>, pad<1>>>, max_pool<k<3>, stride<2>, pad<1>>> {};
template <int W>
struct reduction_b
    : concat<seq<node<"branch3x3_1", basic_conv<ch<64, W>, k<1>>>, node<"branch3x3_2", basic_conv<ch<96, W>, k<3>, stride<2>, pad<1>>>>,
             max_pool<k<3>, stride<2>, pad<1>>> {};

template <bool Bn>
struct aux_head : seq<avg_pool<k<5>, stride<3>>, node<"conv0", basic_conv<64, k<1>>>, node<"conv1", basic_conv<128, k<4>>>,
                      flatten, node<"fc", linear<128, 10>>> {};
template <>
struct aux_head<true> : seq<avg_pool<k<5>, stride<3>>, node<"conv0", basic_conv<64, k<1>>>,
                            node<"conv1", basic_conv<128, k<4>>>, flatten, node<"fc", linear<128, 10, bias<false>>>,
                            node<"fc_bn", batch_norm<>>> {};

template <fashion_options O = fashion_options{}, int W = O.wide ? 3 : 2>
struct fashion_net
    : network<shape{1, 28, 28},
              seq<node<"stem", basic_conv<32, k<3>, pad<1>>>, node<"stem2", basic_conv<32, k<3>, pad<1>>>,
                  node<"reduce_28_14", reduction_a<W>>,
                  node<"mixed_14", block_a<O.factorized, W>>, aux<"aux", aux_head<O.bn_aux>>,
                  node<"reduce_14_7", reduction_b<W>>, node<"mixed_7", block_c<O.factorized, W>>, node<"avgpool", global_avg_pool>,
                  node<"dropout", dropout<ratio<1, 5>>>, flatten, node<"fc", linear<ch<160, W>, 10>>>> {
    static constexpr std::string_view name = "fashion_net";
};

}  // namespace fashion
