// ctnet/models/inception_v2.hpp — Inception v2 as the paper's ablation defines it.
//
// "Inception-v2" of Szegedy et al. 2015 (Table 3) is v3 without the factorized stem: the first
// three 3x3 convolutions are one 7x7 stride-2 convolution (64 channels, no padding, so a
// 299x299 input still reaches 147x147x64). Every later layer is v3's, with v3's names.
// Requires: input at least 75x75 (299x299 with the aux head). Guarantees: v3's parameter names.

#pragma once

#include "inception_v3.hpp"

namespace ctnet::models {

template <int Classes = 1000, int Size = 299, inception_options O = inception_options{}>
struct inception_v2
    : network<shape{3, Size, Size},
              seq<require_input<"inception_v2", 3, 75, 75>, detail::maybe_transform_input<O.transform_input>,
                  node<"Conv2d_1a_7x7", basic_conv<64, k<7>, stride<2>>>, detail::inception_tail<Classes, O>>> {
    static constexpr std::string_view name = "inception_v2";
};

}  // namespace ctnet::models
