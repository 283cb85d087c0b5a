// ctnet/layers/conv.hpp — 2-D convolution.
//
//   conv<Out, k<KH, KW>, stride<SH, SW>, pad<PH, PW> | pad4<T, B, L, R>, bias<bool>>
//
// Requires: a (C, H, W) input whose padded size is at least the kernel.
// Guarantees: output (Out, (H + T + B - KH) / SH + 1, (W + L + R - KW) / SW + 1), as torch's
// floor mode; weight tensor "PATH.weight" of shape (Out, C, KH, KW), optional "PATH.bias" (Out).
#pragma once

#include "../graph/program.hpp"
#include "options.hpp"

namespace ctnet {

namespace detail {

[[nodiscard]] constexpr shape window_shape(shape in, const window& w, int channels) {
    return {channels, (in.h + w.pt + w.pb - w.kh) / w.sh + 1, (in.w + w.pl + w.pr - w.kw) / w.sw + 1};
}

// Shared by conv and pooling: the kernel must fit in the padded input.
template <class P>
constexpr void check_window(P& p, shape in, const window& w, std::string_view what) {
    const int ph = in.h + w.pt + w.pb, pw = in.w + w.pl + w.pr;
    if (ph < w.kh || pw < w.kw)
        p.reject(what, "kernel ", w.kh, "x", w.kw, " is larger than the padded input ", ph, "x", pw,
                 " (input ", in, ")");
}

template <class K, class S, class P>
inline constexpr window make_window{K::h, K::w, S::h, S::w, P::top, P::bottom, P::left, P::right};

template <class K, class S, class P>
consteval bool valid_window() {
    return K::h > 0 && K::w > 0 && S::h > 0 && S::w > 0 && P::top >= 0 && P::bottom >= 0 &&
           P::left >= 0 && P::right >= 0;
}

}  // namespace detail

template <int Out, class... Opts>
struct conv {
    static_assert(Out > 0, "ctnet::conv: the number of output channels must be positive");
    static_assert((detail::allowed_option<Opts, kernel_tag, stride_tag, pad_tag, bias_tag> && ...),
                  "ctnet::conv: options are k<>, stride<>, pad<> or pad4<>, bias<>");
    using kernel_t = pick_t<kernel_tag, k<1>, Opts...>;
    using stride_t = pick_t<stride_tag, stride<1>, Opts...>;
    using pad_t = pick_t<pad_tag, pad<0>, Opts...>;
    static_assert(detail::valid_window<kernel_t, stride_t, pad_t>(),
                  "ctnet::conv: kernel and stride must be positive, padding non-negative");

    static constexpr window win = detail::make_window<kernel_t, stride_t, pad_t>;
    static constexpr bool has_bias = pick_t<bias_tag, bias<false>, Opts...>::value;
    static constexpr ir_size size{1, 1, 0};
    static constexpr bool elementwise = false;

    static constexpr shape infer(shape in) { return detail::window_shape(in, win, Out); }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        detail::check_window(p, in.s, win, "conv");
        const shape os = infer(in.s);
        const value out = p.place(os, t, "conv");
        op& o = p.emit(op_kind::conv, in, out);
        o.win = win;
        o.bias = has_bias;
        const std::size_t weights = static_cast<std::size_t>(Out) * static_cast<std::size_t>(in.s.c) *
                                    static_cast<std::size_t>(win.kh * win.kw);
        const std::size_t n = weights + (has_bias ? Out : 0);
        p.add_storage(o, n, n);
        o.macs = os.size() * static_cast<std::size_t>(in.s.c) * static_cast<std::size_t>(win.kh * win.kw);
        return out;
    }
};

}  // namespace ctnet
