// ctnet/layers/pool.hpp — pooling.
//
//   max_pool<k<KH, KW>, stride<S> = kernel, pad<P>, ceil_mode>   padding is -inf, as torch's
//   avg_pool<k<KH, KW>, stride<S> = kernel, pad<P>, count_pad<true>>
//        count_pad<true>: padded zeros count in the divisor (torch's count_include_pad=True,
//        torchvision's Inception); count_pad<false>: they do not (TF-slim / Keras)
//   global_avg_pool                                        adaptive average pool to (C, 1, 1)
//
// ceil_mode (max_pool only) is torch's ceil_mode=True: per axis, with T / B the top / bottom
// padding (left / right for the width),
//     out = ceil((H + T + B - K) / S) + 1, then out -= 1 if (out - 1) * S >= H + T
// (the last window must start inside the input or the top padding). It lowers to plain floor-mode
// pooling with extra bottom / right padding, (out - 1) * S + K - (H + T + B) when positive (at
// most S - 1): the op's window is that padded one, so every max-pool kernel (which treats padded
// taps as absent) runs it unchanged, and floor mode on it gives the ceil-mode size.
//
// Requires: the kernel fits the padded input, and padding is at most half the kernel (as torch;
// checked on the padding written, before ceil_mode adds its own).
// Guarantees: floor-mode output sizes, as torch's default ceil_mode=False, unless ceil_mode.
#pragma once

#include "conv.hpp"

namespace ctnet {

namespace detail {

// The padding ceil mode adds after `hi` on one axis (input n, kernel k, stride s, padding lo, hi):
// 0 in floor mode's cases, at most s - 1. 0 too when the kernel does not fit (lowering rejects it).
[[nodiscard]] constexpr int ceil_mode_extra(int n, int k, int s, int lo, int hi) {
    const int span = n + lo + hi - k;
    if (span < 0) return 0;
    int out = (span + s - 1) / s + 1;
    if ((out - 1) * s >= n + lo) --out;
    const int extra = (out - 1) * s + k - (n + lo + hi);
    return extra > 0 ? extra : 0;
}

// A pooling window for input `in` with ceil mode's extra bottom and right padding.
[[nodiscard]] constexpr window ceil_mode_window(window w, shape in) {
    w.pb += ceil_mode_extra(in.h, w.kh, w.sh, w.pt, w.pb);
    w.pr += ceil_mode_extra(in.w, w.kw, w.sw, w.pl, w.pr);
    return w;
}

template <op_kind Kind, class... Opts>
struct pool_layer {
    static_assert((allowed_option<Opts, kernel_tag, stride_tag, pad_tag, count_pad_tag, ceil_mode_tag> && ...),
                  "ctnet pooling: options are k<>, stride<>, pad<> or pad4<>, count_pad<>, ceil_mode");
    using kernel_t = pick_t<kernel_tag, k<1>, Opts...>;
    using stride_t = pick_t<stride_tag, stride<kernel_t::h, kernel_t::w>, Opts...>;
    using pad_t = pick_t<pad_tag, pad<0>, Opts...>;
    static_assert(valid_window<kernel_t, stride_t, pad_t>(),
                  "ctnet pooling: kernel and stride must be positive, padding non-negative");
    static_assert(2 * pad_t::top <= kernel_t::h && 2 * pad_t::bottom <= kernel_t::h &&
                      2 * pad_t::left <= kernel_t::w && 2 * pad_t::right <= kernel_t::w,
                  "ctnet pooling: padding must be at most half the kernel (as in torch)");

    static constexpr bool ceil = (std::is_same_v<typename Opts::tag, ceil_mode_tag> || ...);
    static_assert(Kind == op_kind::max_pool || !ceil,
                  "ctnet::avg_pool: ceil_mode is for max_pool only (torch divides the last average-pool "
                  "windows of ceil mode by a size clipped to the padding written, not yet supported)");

    static constexpr window win = make_window<kernel_t, stride_t, pad_t>;  // as written
    static constexpr bool count_pad = pick_t<count_pad_tag, ctnet::count_pad<true>, Opts...>::value;
    static constexpr ir_size size{1, 1, 0};
    static constexpr bool elementwise = false;

    // The window the op runs for input `in`: as written, or with ceil mode's extra padding.
    static constexpr window window_for(shape in) { return ceil ? ceil_mode_window(win, in) : win; }

    static constexpr shape infer(shape in) { return window_shape(in, window_for(in), in.c); }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        check_window(p, in.s, win, to_string(Kind));
        const value out = p.place(infer(in.s), t, to_string(Kind));
        op& o = p.emit(Kind, in, out);
        o.win = window_for(in.s);
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
