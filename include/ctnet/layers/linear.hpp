// ctnet/layers/linear.hpp — fully connected layer and flatten.
//
//   flatten                 (C, H, W) -> (C*H*W,), a view: no op runs
//   linear<In, Out, bias<true>>
//
// Requires (linear): a flat input of exactly In features, as torch.nn.Linear(In, Out).
// Guarantees: tensors "PATH.weight" (Out, In) and "PATH.bias" (Out).
#pragma once

#include "../graph/program.hpp"
#include "options.hpp"

namespace ctnet {

struct flatten {
    static constexpr ir_size size{0, 0, 0};
    static constexpr bool elementwise = true;
    static constexpr shape infer(shape in) { return {static_cast<int>(in.size()), 1, 1}; }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        value out = in;
        out.s = infer(in.s);
        if (!t.any) p.reject("flatten", "is a view and cannot be the only layer of a concat branch");
        return out;
    }
};

template <int In, int Out, class... Opts>
struct linear {
    static_assert(In > 0 && Out > 0, "ctnet::linear: feature counts must be positive");
    static_assert((detail::allowed_option<Opts, bias_tag> && ...), "ctnet::linear: the only option is bias<>");
    static constexpr bool has_bias = pick_t<bias_tag, bias<true>, Opts...>::value;
    static constexpr ir_size size{1, 1, 0};
    static constexpr bool elementwise = false;
    static constexpr shape infer(shape) { return {Out, 1, 1}; }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        if (!in.s.flat())
            p.reject("linear", "expects a flat input (", In, ",) but got ", in.s, "; insert flatten first");
        else if (in.s.c != In)
            p.reject("linear", "expects ", shape{In}, " but got ", in.s);
        const value out = p.place(infer(in.s), t, "linear");
        op& o = p.emit(op_kind::linear, in, out);
        o.bias = has_bias;
        const std::size_t n = static_cast<std::size_t>(In) * Out + (has_bias ? Out : 0);
        p.add_storage(o, n, n);
        o.macs = static_cast<std::size_t>(In) * Out;
        return out;
    }
};

}  // namespace ctnet
