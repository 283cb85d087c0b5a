// ctnet/layers/pool.hpp — pooling.
//
//   max_pool<k<KH, KW>, stride<S> = kernel, pad<P>>       padding is -inf, as torch's
//   avg_pool<k<KH, KW>, stride<S> = kernel, pad<P>, count_pad<true>>
//        count_pad<true>: padded zeros count in the divisor (torch's count_include_pad=True,
//        torchvision's Inception); count_pad<false>: they do not (TF-slim / Keras)
//   global_avg_pool                                        adaptive average pool to (C, 1, 1)
//
// Requires: the kernel fits the padded input, and padding is at most half the kernel (as torch).
// Guarantees: floor-mode output sizes, as torch's default ceil_mode=False.
#pragma once

#include "conv.hpp"

namespace ctnet {

namespace detail {

template <op_kind Kind, class... Opts>
struct pool_layer {
    static_assert((allowed_option<Opts, kernel_tag, stride_tag, pad_tag, count_pad_tag> && ...),
                  "ctnet pooling: options are k<>, stride<>, pad<> or pad4<>, count_pad<>");
    using kernel_t = pick_t<kernel_tag, k<1>, Opts...>;
    using stride_t = pick_t<stride_tag, stride<kernel_t::h, kernel_t::w>, Opts...>;
    using pad_t = pick_t<pad_tag, pad<0>, Opts...>;
    static_assert(valid_window<kernel_t, stride_t, pad_t>(),
                  "ctnet pooling: kernel and stride must be positive, padding non-negative");
    static_assert(2 * pad_t::top <= kernel_t::h && 2 * pad_t::bottom <= kernel_t::h &&
                      2 * pad_t::left <= kernel_t::w && 2 * pad_t::right <= kernel_t::w,
                  "ctnet pooling: padding must be at most half the kernel (as in torch)");

    static constexpr window win = make_window<kernel_t, stride_t, pad_t>;
    static constexpr bool count_pad = pick_t<count_pad_tag, ctnet::count_pad<true>, Opts...>::value;
    static constexpr ir_size size{1, 1, 0};
    static constexpr bool elementwise = false;

    static constexpr shape infer(shape in) { return window_shape(in, win, in.c); }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        check_window(p, in.s, win, to_string(Kind));
        const value out = p.place(infer(in.s), t, to_string(Kind));
        op& o = p.emit(Kind, in, out);
        o.win = win;
        o.count_pad = count_pad;
        return out;
    }
};

}  // namespace detail

template <class... Opts>
struct max_pool : detail::pool_layer<op_kind::max_pool, Opts...> {};

template <class... Opts>
struct avg_pool : detail::pool_layer<op_kind::avg_pool, Opts...> {};

struct global_avg_pool {
    static constexpr ir_size size{1, 1, 0};
    static constexpr bool elementwise = false;
    static constexpr shape infer(shape in) { return {in.c, 1, 1}; }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        const value out = p.place(infer(in.s), t, "global_avg_pool");
        p.emit(op_kind::global_avg_pool, in, out);
        return out;
    }
};

}  // namespace ctnet
