// ctnet/models/inception_v3.hpp — Inception v3 (Szegedy et al. 2015), torchvision's topology.
//
//   using net = models::inception_v3<>;                       // 1000 classes, 299x299, aux head
//   using tiny = models::inception_v3<10, 75, {.aux_logits = false}>;
//
// Branch order, layer names and parameter shapes are torchvision's (`Mixed_5b.branch5x5_2.conv.weight`),
// so its state_dict loads by name. Requires an input of at least 75x75; the auxiliary head
// (training mode only) needs at least 299x299 — smaller inputs with aux_logits fail to compile
// at the head's 5x5 conv.
#pragma once

#include <string_view>
#include <type_traits>

#include "../graph/compose.hpp"
#include "../graph/network.hpp"
#include "../layers/activation.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv.hpp"
#include "../layers/linear.hpp"
#include "../layers/pool.hpp"

namespace ctnet::models {

// torchvision's BasicConv2d: conv (no bias) -> batch_norm(eps = 0.001) -> relu.
template <int Out, class... Opts>
struct basic_conv : seq<node<"conv", conv<Out, Opts...>>, node<"bn", batch_norm<>>, relu> {};

// The 3x3 stride-1 average pool inside the blocks: torchvision counts padded zeros
// (count_include_pad=True), TF-slim and Keras do not.
template <bool CountPad>
using block_avg_pool = avg_pool<k<3>, stride<1>, pad<1>, count_pad<CountPad>>;

// 35x35 grid: 1x1, 5x5 (kept as in torchvision), double 3x3 (the factorized 5x5), pool.
template <int PoolFeatures, bool CountPad = true>
struct inception_a
    : concat<node<"branch1x1", basic_conv<64, k<1>>>,
             seq<node<"branch5x5_1", basic_conv<48, k<1>>>, node<"branch5x5_2", basic_conv<64, k<5>, pad<2>>>>,
             seq<node<"branch3x3dbl_1", basic_conv<64, k<1>>>,
                 node<"branch3x3dbl_2", basic_conv<96, k<3>, pad<1>>>,
                 node<"branch3x3dbl_3", basic_conv<96, k<3>, pad<1>>>>,
             seq<block_avg_pool<CountPad>, node<"branch_pool", basic_conv<PoolFeatures, k<1>>>>> {};

// Grid reduction 35 -> 17: stride-2 conv and stride-2 pool in parallel.
struct inception_b
    : concat<node<"branch3x3", basic_conv<384, k<3>, stride<2>>>,
             seq<node<"branch3x3dbl_1", basic_conv<64, k<1>>>,
                 node<"branch3x3dbl_2", basic_conv<96, k<3>, pad<1>>>,
                 node<"branch3x3dbl_3", basic_conv<96, k<3>, stride<2>>>>,
             max_pool<k<3>, stride<2>>> {};

// 17x17 grid: 7x7 convolutions factorized into 1x7 and 7x1.
template <int C7, bool CountPad = true>
struct inception_c
    : concat<node<"branch1x1", basic_conv<192, k<1>>>,
             seq<node<"branch7x7_1", basic_conv<C7, k<1>>>,
                 node<"branch7x7_2", basic_conv<C7, k<1, 7>, pad<0, 3>>>,
                 node<"branch7x7_3", basic_conv<192, k<7, 1>, pad<3, 0>>>>,
             seq<node<"branch7x7dbl_1", basic_conv<C7, k<1>>>,
                 node<"branch7x7dbl_2", basic_conv<C7, k<7, 1>, pad<3, 0>>>,
                 node<"branch7x7dbl_3", basic_conv<C7, k<1, 7>, pad<0, 3>>>,
                 node<"branch7x7dbl_4", basic_conv<C7, k<7, 1>, pad<3, 0>>>,
                 node<"branch7x7dbl_5", basic_conv<192, k<1, 7>, pad<0, 3>>>>,
             seq<block_avg_pool<CountPad>, node<"branch_pool", basic_conv<192, k<1>>>>> {};

// Grid reduction 17 -> 8.
struct inception_d
    : concat<seq<node<"branch3x3_1", basic_conv<192, k<1>>>, node<"branch3x3_2", basic_conv<320, k<3>, stride<2>>>>,
             seq<node<"branch7x7x3_1", basic_conv<192, k<1>>>,
                 node<"branch7x7x3_2", basic_conv<192, k<1, 7>, pad<0, 3>>>,
                 node<"branch7x7x3_3", basic_conv<192, k<7, 1>, pad<3, 0>>>,
                 node<"branch7x7x3_4", basic_conv<192, k<3>, stride<2>>>>,
             max_pool<k<3>, stride<2>>> {};

// 8x8 grid: expanded filter banks, 3x3 split into parallel 1x3 and 3x1 (nested concat).
template <bool CountPad = true>
struct inception_e
    : concat<node<"branch1x1", basic_conv<320, k<1>>>,
             seq<node<"branch3x3_1", basic_conv<384, k<1>>>,
                 concat<node<"branch3x3_2a", basic_conv<384, k<1, 3>, pad<0, 1>>>,
                        node<"branch3x3_2b", basic_conv<384, k<3, 1>, pad<1, 0>>>>>,
             seq<node<"branch3x3dbl_1", basic_conv<448, k<1>>>,
                 node<"branch3x3dbl_2", basic_conv<384, k<3>, pad<1>>>,
                 concat<node<"branch3x3dbl_3a", basic_conv<384, k<1, 3>, pad<0, 1>>>,
                        node<"branch3x3dbl_3b", basic_conv<384, k<3, 1>, pad<1, 0>>>>>,
             seq<block_avg_pool<CountPad>, node<"branch_pool", basic_conv<192, k<1>>>>> {};

// Auxiliary classifier on the 17x17 grid. BnFc: the paper's "BN-auxiliary" — the fully
// connected layer is batch-normalised too (torchvision's head has it off).
template <int Classes, bool BnFc = false>
struct inception_aux
    : seq<avg_pool<k<5>, stride<3>>, node<"conv0", basic_conv<128, k<1>>>, node<"conv1", basic_conv<768, k<5>>>,
          global_avg_pool, flatten, node<"fc", linear<768, Classes>>> {};
template <int Classes>
struct inception_aux<Classes, true>
    : seq<avg_pool<k<5>, stride<3>>, node<"conv0", basic_conv<128, k<1>>>, node<"conv1", basic_conv<768, k<5>>>,
          global_avg_pool, flatten, node<"fc", linear<768, Classes, bias<false>>>, node<"fc_bn", batch_norm<>>> {};

struct inception_options {
    bool aux_logits = true;        // the auxiliary head (training mode only)
    bool transform_input = false;  // torchvision's transform_input (ImageNet -> [-1, 1] scaling)
    bool count_include_pad = true; // block avg pools count padded zeros (torchvision); false = TF-slim
    bool bn_aux = false;           // batch-normalised aux fc (the paper's BN-auxiliary)
    constexpr bool operator==(const inception_options&) const = default;
};

namespace detail {

template <bool On, class L>
struct maybe {
    using type = L;
};
template <class L>
struct maybe<false, L> {
    using type = identity;
};

// Everything after the stem, shared by v3 and v2.
// FirstPool: the stem's first max pool (false in the 79x79 variant of the paper's section 9).
template <int Classes, inception_options O, bool FirstPool = true>
struct inception_tail
    : seq<typename maybe<FirstPool, node<"maxpool1", max_pool<k<3>, stride<2>>>>::type, node<"Conv2d_3b_1x1", basic_conv<80, k<1>>>,
          node<"Conv2d_4a_3x3", basic_conv<192, k<3>>>, node<"maxpool2", max_pool<k<3>, stride<2>>>,
          node<"Mixed_5b", inception_a<32, O.count_include_pad>>, node<"Mixed_5c", inception_a<64, O.count_include_pad>>,
          node<"Mixed_5d", inception_a<64, O.count_include_pad>>, node<"Mixed_6a", inception_b>,
          node<"Mixed_6b", inception_c<128, O.count_include_pad>>, node<"Mixed_6c", inception_c<160, O.count_include_pad>>,
          node<"Mixed_6d", inception_c<160, O.count_include_pad>>, node<"Mixed_6e", inception_c<192, O.count_include_pad>>,
          typename maybe<O.aux_logits, aux<"AuxLogits", inception_aux<Classes, O.bn_aux>>>::type,
          node<"Mixed_7a", inception_d>, node<"Mixed_7b", inception_e<O.count_include_pad>>,
          node<"Mixed_7c", inception_e<O.count_include_pad>>, node<"avgpool", global_avg_pool>,
          node<"dropout", dropout<>>, flatten, node<"fc", linear<2048, Classes>>> {};

template <bool On>
using maybe_transform_input = typename maybe<On, transform_input>::type;

}  // namespace detail

template <int Classes = 1000, int Size = 299, inception_options O = inception_options{}>
struct inception_v3
    : network<shape{3, Size, Size},
              seq<require_input<"inception_v3", 3, 75, 75>, detail::maybe_transform_input<O.transform_input>,
                  node<"Conv2d_1a_3x3", basic_conv<32, k<3>, stride<2>>>, node<"Conv2d_2a_3x3", basic_conv<32, k<3>>>,
                  node<"Conv2d_2b_3x3", basic_conv<64, k<3>, pad<1>>>, detail::inception_tail<Classes, O>>> {
    static constexpr std::string_view name = "inception_v3";
};

// Section 9 of the paper ("Performance on lower resolution input", Table 2): networks whose
// receptive field is 151x151 or 79x79 at about the compute of the 299x299 one.
//   151: the first conv at stride 1 (input 151x151); every map from there on has the 299x299
//        network's size, so the MACs are equal (macs_v).
//   79:  the first conv at stride 1 and the first max pool removed (input 79x79); the 35x35
//        grid becomes 36x36 and the stem runs at 77x77 instead of 149x149 (MACs in
//        docs/training.md).
// Layer names and parameter shapes are inception_v3's, so its weights load into both.
//   using low = models::inception_v3_lowres<151>;   // or <79>; <Field, Classes, options>
namespace detail {

template <int Field, int Classes, inception_options O>
using lowres_network =
    network<shape{3, Field, Field},
            seq<maybe_transform_input<O.transform_input>, node<"Conv2d_1a_3x3", basic_conv<32, k<3>>>,
                node<"Conv2d_2a_3x3", basic_conv<32, k<3>>>, node<"Conv2d_2b_3x3", basic_conv<64, k<3>, pad<1>>>,
                inception_tail<Classes, O, Field != 79>>>;

// In place of the network for any other Field (so that the network's own shape errors do not
// come first).
template <int Field>
struct lowres_field_check {
    static_assert(Field == 151 || Field == 79,
                  "ctnet::models::inception_v3_lowres: the paper's section 9 variants have a 151x151 or a 79x79 "
                  "receptive field (Field = 151 or 79)");
};

}  // namespace detail

template <int Field, int Classes = 1000, inception_options O = inception_options{}>
struct inception_v3_lowres : std::conditional_t<Field == 151 || Field == 79, detail::lowres_network<Field, Classes, O>,
                                                detail::lowres_field_check<Field>> {
    static constexpr std::string_view name = Field == 151 ? "inception_v3_lowres151" : "inception_v3_lowres79";
};

}  // namespace ctnet::models
