// ctnet/layers/batch_norm.hpp — batch normalisation over channels.
//
//   batch_norm<Eps = ratio<1, 1000>>        (torchvision's BasicConv2d uses eps = 0.001)
//
// Requires: any (C, H, W) input; a flat (K,) input is normalised per feature (BatchNorm1d).
// Guarantees: y = (x - mean) / sqrt(var + eps) * weight + bias, in place when allowed.
// Tensors "PATH.weight", "PATH.bias" (trainable) and "PATH.running_mean", "PATH.running_var",
// each of shape (C). In eval the running statistics are used, in training the batch's.
#pragma once

#include "../graph/program.hpp"
#include "options.hpp"

namespace ctnet {

template <class Eps = ratio<1, 1000>>
struct batch_norm {
    static_assert(Eps::value > 0.0, "ctnet::batch_norm: eps must be positive");
    static constexpr ir_size size{1, 1, 0};
    static constexpr bool elementwise = true;

    static constexpr shape infer(shape in) { return in; }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        const value out = p.place_elementwise(in, t, "batch_norm");
        op& o = p.emit(op_kind::batch_norm, in, out);
        o.eps = Eps::value;
        const auto c = static_cast<std::size_t>(in.s.c);
        p.add_storage(o, 4 * c, 2 * c);
        return out;
    }
};

}  // namespace ctnet
