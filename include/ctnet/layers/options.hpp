// ctnet/layers/options.hpp — the option vocabulary of layer templates.
//
//   conv<64, k<3>, stride<2>, pad<1>>         kernel, stride, padding in any order
//   conv<192, k<1, 7>, pad<0, 3>>              1x7 kernel, (h, w) padding
//   conv<8, k<2>, pad4<0, 1, 0, 1>>            asymmetric padding (top, bottom, left, right)
//   avg_pool<k<3>, stride<1>, pad<1>, count_pad<false>>
//   max_pool<k<3>, stride<2>, ceil_mode>           torch's ceil_mode=True (max pooling only)
//
// Options are small tag types; an option not allowed for a layer is a compile error.
// Requires: positive kernels and strides, non-negative padding (static_asserts).
// Guarantees: a missing option takes the layer's default (torch's defaults).

#pragma once

#include <type_traits>

namespace ctnet {

struct kernel_tag {};
struct stride_tag {};
struct pad_tag {};
struct bias_tag {};
struct count_pad_tag {};
struct ceil_mode_tag {};

template <int KH, int KW = KH>
struct k {
    using tag = kernel_tag;
    static constexpr int h = KH, w = KW;
};

template <int SH, int SW = SH>
struct stride {
    using tag = stride_tag;
    static constexpr int h = SH, w = SW;
};

template <int PH, int PW = PH>
struct pad {
    using tag = pad_tag;
    static constexpr int top = PH, bottom = PH, left = PW, right = PW;
};

template <int Top, int Bottom, int Left, int Right>
struct pad4 {
    using tag = pad_tag;
    static constexpr int top = Top, bottom = Bottom, left = Left, right = Right;
};

template <bool On>
struct bias {
    using tag = bias_tag;
    static constexpr bool value = On;
};

template <bool On>
struct count_pad {
    using tag = count_pad_tag;
    static constexpr bool value = On;
};

// Output sizes rounded up instead of down, as torch's MaxPool2d(ceil_mode=True): a last, partial
// window is kept when it starts inside the input or the top/left padding. Absent: floor mode.
struct ceil_mode {
    using tag = ceil_mode_tag;
    static constexpr bool value = true;
};

// A rational constant (class-type and floating-point template arguments are not portable to
// clang 14): batch_norm<ratio<1, 1000>> is eps = 1e-3, dropout<ratio<1, 2>> is p = 0.5.
template <long long Num, long long Den = 1>
struct ratio {
    static_assert(Den > 0, "ctnet::ratio: the denominator must be positive");
    static constexpr double value = static_cast<double>(Num) / static_cast<double>(Den);
};

namespace detail {

template <class Tag, class Default, class... Opts>
struct pick {
    using type = Default;
};
template <class Tag, class Default, class First, class... Rest>
struct pick<Tag, Default, First, Rest...> {
    using type = std::conditional_t<std::is_same_v<typename First::tag, Tag>, First,
                                    typename pick<Tag, Default, Rest...>::type>;
};

template <class Opt, class... Allowed>
inline constexpr bool allowed_option = (std::is_same_v<typename Opt::tag, Allowed> || ...);

}  // namespace detail

// The option with tag `Tag` among `Opts`, else `Default`.
template <class Tag, class Default, class... Opts>
using pick_t = typename detail::pick<Tag, Default, Opts...>::type;

}  // namespace ctnet
