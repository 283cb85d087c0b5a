// Networks the training tests share (tests/test_train.cpp, tests/test_cuda_trainer.cpp).
#pragma once

#include <ctnet/ctnet.hpp>

namespace ctnet::test_nets {

template <int Out, class... Opts>
struct cbr : seq<node<"conv", conv<Out, Opts...>>, node<"bn", batch_norm<>>, relu> {};

// Every op kind: transform_input (channel affine), strided / padded / factorized convs with and
// without bias, batch norm (2-D and 1-D), relu, max and avg pools (with and without padded
// zeros counted), a concat whose input feeds four branches, an aux head, dropout, linear, and
// (every_layer) a softmax; every_layer_logits ends at the logits, as train_step wants;
// every_layer_no_dropout is every_layer_logits without its dropout (data-parallel ranks each draw
// their own masks, so a run with dropout differs from one rank's: train/distributed.hpp).
template <class Drop, class... Tail>
using every_layer_t = network<shape{3, 9, 8},
    seq<transform_input,
        node<"stem", seq<node<"conv", conv<5, k<3>, stride<2>, pad<1>, bias<true>>>, node<"bn", batch_norm<>>, relu>>,
        node<"mix", concat<node<"a", conv<4, k<1>>>,
                           seq<node<"b1", cbr<3, k<1, 3>, pad<0, 1>>>, node<"b2", cbr<4, k<3, 1>, pad<1, 0>>>>,
                           max_pool<k<3>, stride<1>, pad<1>>,
                           seq<avg_pool<k<3>, stride<1>, pad<1>, count_pad<false>>, node<"p", conv<2, k<1>>>>>>,
        aux<"aux", seq<avg_pool<k<2>, stride<2>>, node<"c", cbr<3, k<1>>>, global_avg_pool, flatten,
                       node<"fc", linear<3, 4>>>>,
        avg_pool<k<2>, stride<1>>, node<"down", cbr<6, k<2>, stride<2>>>, global_avg_pool, flatten,
        Drop, node<"fc1", linear<6, 7>>, node<"bnf", batch_norm<>>, relu,
        node<"fc2", linear<7, 4, bias<false>>>, Tail...>>;
using every_layer = every_layer_t<node<"drop", dropout<>>, softmax>;
using every_layer_logits = every_layer_t<node<"drop", dropout<>>>;
using every_layer_no_dropout = every_layer_t<identity>;

// Batch norms over enough values per channel (16,384 at batch 4) that the GPU's training-mode
// batch norm splits each channel over several blocks (cuda/operands.hpp's bn_blocks: 4 at batch
// 4, 5 at 5, 8 at 8), so the sync-BN tests cover its partial sums too.
using wide_bn = network<shape{3, 64, 64},
    seq<node<"conv", conv<6, k<3>, pad<1>>>, node<"bn", batch_norm<>>, relu, node<"c2", cbr<8, k<3>, pad<1>>>,
        global_avg_pool, flatten, node<"fc", linear<8, 4>>>>;

}  // namespace ctnet::test_nets
