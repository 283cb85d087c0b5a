// apps/ctnet/fashion_lowres.hpp — the pattern of the paper's section 9 (Table 2) at Fashion-MNIST's
// scale: three networks with the same trunk and almost the same compute, fed the images at 28x28,
// 14x14 and 7x7 (box-averaged), like the 299 / 151 / 79 receptive fields (4 : 2 : 1).
//   28: the first conv at stride 2 (28 -> 14), then the grid reduction to 7x7 (the "299" form);
//   14: the first conv at stride 1 (14 -> 14), then the same reduction (the "151" form): every
//       map from the first conv's output on has the 28 form's size, so the MACs are equal;
//   7:  the first conv at stride 1 and the reduction at stride 1 (7 -> 7, no pooling: the "79"
//       form); only the two stem convs run on smaller maps.
// The trunk is fashion_net's (fashion_net.hpp) after its stem, on a 7x7 and then a 4x4 grid,
// without the aux head (its 5x5 pool needs the 14x14 grid). `ctnet train --resolution 28|14|7`.
#pragma once

#include "fashion_net.hpp"

namespace fashion {

// fashion_net's reduction_a with the stride a parameter (1: no grid reduction).
template <int S>
struct reduction_lowres
    : concat<node<"branch3x3", basic_conv<ch<48, 2>, k<3>, stride<S>, pad<1>>>, max_pool<k<3>, stride<S>, pad<1>>> {};

template <int Res>
struct fashion_lowres
    : network<shape{1, Res, Res},
              seq<node<"stem", basic_conv<32, k<3>, stride<Res == 28 ? 2 : 1>, pad<1>>>,
                  node<"stem2", basic_conv<32, k<3>, pad<1>>>, node<"reduce", reduction_lowres<Res == 7 ? 1 : 2>>,
                  node<"mixed_a", block_a<true, 2>>, node<"reduce_b", reduction_b<2>>, node<"mixed_c", block_c<true, 2>>,
                  node<"avgpool", global_avg_pool>, node<"dropout", dropout<ratio<1, 5>>>, flatten,
                  node<"fc", linear<ch<160, 2>, 10>>>> {
    static_assert(Res == 28 || Res == 14 || Res == 7, "fashion_lowres: the input is 28x28, 14x14 or 7x7");
    static constexpr std::string_view name = "fashion_lowres";
};

}  // namespace fashion
