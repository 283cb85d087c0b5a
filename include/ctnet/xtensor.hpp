// ctnet/xtensor.hpp — runners on xtensor containers and adaptors.
//
//   xt::xtensor<float, 4> x = ...;                        // (N, 3, 299, 299)
//   xt::xtensor<float, 2> logits = ctnet::run(r, x);       // (N, 1000)
//
//   xt::xtensor_fixed<float, xt::xshape<2, 3, 299, 299>> xf;
//   auto yf = ctnet::run(r, xf);                           // xtensor_fixed<float, xshape<2, 1000>>
//                                                          // a wrong C, H or W does not compile
//   auto in = xt::adapt(user_ptr, n * 3 * 299 * 299, xt::no_ownership(), std::array{n, 3, 299, 299});
//   auto out = xt::adapt(out_ptr, n * 1000, xt::no_ownership(), std::array{n, 1000});
//   ctnet::run_into(r, in, out);                           // no copy in or out
//
// Requires: xtensor (Debian's libxtensor-dev); float containers or adaptors in row-major
// layout (the runner reads and writes their memory directly). Input rank 4 (N, C, H, W);
// output rank 2 (N, K) for a flat output, else 4.
// Guarantees: a container whose shape is static (xtensor_fixed) is checked against the
// network's input shape at compile time; dynamic shapes are checked at run time and a mismatch
// throws ctnet::error naming both shapes.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>

#include <xtensor/xadapt.hpp>
#include <xtensor/xfixed.hpp>
#include <xtensor/xtensor.hpp>

#include "core/error.hpp"
#include "graph/network.hpp"

namespace ctnet {

namespace detail {

template <class S>
struct fixed_dims : std::false_type {};
template <std::size_t... D>
struct fixed_dims<xt::fixed_shape<D...>> : std::true_type {
    static constexpr std::array<std::size_t, sizeof...(D)> dims{D...};
};

// Instantiated when a fixed-shape container does not match: the arguments name both shapes.
template <std::size_t N, std::size_t C, std::size_t H, std::size_t W, int NetC, int NetH, int NetW>
struct xtensor_input_shape_mismatch {
    static constexpr bool ok = C == static_cast<std::size_t>(NetC) && H == static_cast<std::size_t>(NetH) &&
                               W == static_cast<std::size_t>(NetW);
    static_assert(ok, "ctnet::run: the fixed xtensor shape (N, C, H, W) does not match the network's input "
                      "(C, H, W); both are the template arguments above");
};

template <class X>
constexpr void require_row_major_float() {
    static_assert(std::is_same_v<typename std::decay_t<X>::value_type, float>, "ctnet::run: containers of float");
}

template <class X>
std::string shape_string(const X& x) {
    std::string s = "(";
    for (std::size_t i = 0; i < x.dimension(); ++i) s += (i ? ", " : "") + std::to_string(x.shape()[i]);
    return s + ")";
}

template <class Net, class X>
std::size_t checked_batch(const X& x) {
    constexpr shape in = input_shape_v<Net>;
    if (x.layout() != xt::layout_type::row_major)
        throw error("ctnet::run: the input must be row-major (C order)");
    if (x.dimension() != 4 || x.shape()[1] != static_cast<std::size_t>(in.c) ||
        x.shape()[2] != static_cast<std::size_t>(in.h) || x.shape()[3] != static_cast<std::size_t>(in.w))
        throw error("ctnet::run: input has shape " + shape_string(x) + " but the network takes (N, " +
                    std::to_string(in.c) + ", " + std::to_string(in.h) + ", " + std::to_string(in.w) + ")");
    return x.shape()[0];
}

template <class Net>
constexpr std::size_t output_rank = output_shape_v<Net>.flat() ? 2 : 4;

template <class Net>
std::array<std::size_t, output_rank<Net>> output_dims(std::size_t n) {
    constexpr shape o = output_shape_v<Net>;
    if constexpr (o.flat()) return {n, static_cast<std::size_t>(o.c)};
    else return {n, static_cast<std::size_t>(o.c), static_cast<std::size_t>(o.h), static_cast<std::size_t>(o.w)};
}

}  // namespace detail

// Runs x through r into y, both containers or adaptors; y must already have the output shape.
template <class R, class X, class Y>
void run_into(R& r, const X& x, Y& y) {
    detail::require_row_major_float<X>();
    detail::require_row_major_float<Y>();
    using net = typename R::network_type;
    const std::size_t n = detail::checked_batch<net>(x);
    const auto want = detail::output_dims<net>(n);
    bool same = y.dimension() == want.size() && y.layout() == xt::layout_type::row_major;
    for (std::size_t i = 0; same && i < want.size(); ++i) same = y.shape()[i] == want[i];
    if (!same) throw error("ctnet::run_into: output has shape " + detail::shape_string(y) + ", expected " +
                           detail::shape_string(xt::xtensor<float, detail::output_rank<net>>(want)) + " row-major");
    r.forward(std::span<const float>{x.data(), x.size()}, std::span<float>{y.data(), y.size()});
}

// Runs x through r; returns an xtensor_fixed when x's shape is static, else an xtensor.
template <class R, class X>
auto run(R& r, const X& x) {
    detail::require_row_major_float<X>();
    using net = typename R::network_type;
    using dims = detail::fixed_dims<typename std::decay_t<X>::shape_type>;
    if constexpr (dims::value) {
        constexpr auto d = dims::dims;
        static_assert(d.size() == 4, "ctnet::run: a fixed input has rank 4 (N, C, H, W)");
        constexpr shape in = input_shape_v<net>;
        static_assert(detail::xtensor_input_shape_mismatch<d[0], d[1], d[2], d[3], in.c, in.h, in.w>::ok);
        constexpr shape o = output_shape_v<net>;
        using out_t = std::conditional_t<o.flat(), xt::xtensor_fixed<float, xt::xshape<d[0], o.c>>,
                                         xt::xtensor_fixed<float, xt::xshape<d[0], o.c, o.h, o.w>>>;
        out_t y;
        run_into(r, x, y);
        return y;
    } else {
        xt::xtensor<float, detail::output_rank<net>> y(detail::output_dims<net>(detail::checked_batch<net>(x)));
        run_into(r, x, y);
        return y;
    }
}

}  // namespace ctnet
