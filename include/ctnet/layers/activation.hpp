// ctnet/layers/activation.hpp — elementwise and per-sample activations.
//
//   relu                 max(x, 0), in place when allowed
//   softmax              over the features of a flat (K,) input
//   dropout<P>           identity in eval; in training zeroes with probability P and scales by
//                        1 / (1 - P) (P a ratio<>, default 1/2)
//   transform_input      y = x * scale[c] + shift[c] with torchvision's constants (a channel_affine op)
// Requires: softmax a flat input; transform_input 3 channels (compile errors otherwise).
// Guarantees: the output has the input's shape, and works in place when the input is not shared.

#pragma once

#include "../graph/program.hpp"
#include "options.hpp"

namespace ctnet {

namespace detail {

template <op_kind Kind>
struct elementwise_layer {
    static constexpr ir_size size{1, 1, 0};
    static constexpr bool elementwise = true;
    static constexpr shape infer(shape in) { return in; }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        const value out = p.place_elementwise(in, t, to_string(Kind));
        p.emit(Kind, in, out);
        return out;
    }
};

}  // namespace detail

struct relu : detail::elementwise_layer<op_kind::relu> {};

struct softmax {
    static constexpr ir_size size{1, 1, 0};
    static constexpr bool elementwise = true;
    static constexpr shape infer(shape in) { return in; }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        if (!in.s.flat()) p.reject("softmax", "expects a flat input (K,) but got ", in.s, "; insert flatten first");
        const value out = p.place_elementwise(in, t, "softmax");
        p.emit(op_kind::softmax, in, out);
        return out;
    }
};

template <class Prob = ratio<1, 2>>
struct dropout {
    static_assert(Prob::value >= 0.0 && Prob::value < 1.0, "ctnet::dropout: p must be in [0, 1)");
    static constexpr ir_size size{1, 1, 0};
    static constexpr bool elementwise = true;
    static constexpr shape infer(shape in) { return in; }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        const value out = p.place_elementwise(in, t, "dropout");
        p.emit(op_kind::dropout, in, out).drop = Prob::value;
        return out;
    }
};

// torchvision's transform_input: re-normalises an ImageNet-normalised image to the [-1, 1]
// scaling of the original TF weights: x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5, computed in
// double as torch does. The op points at these arrays (any number of channels).
struct transform_input {
    static constexpr ir_size size{1, 1, 0};
    static constexpr bool elementwise = true;
    static constexpr shape infer(shape in) { return in; }
    static constexpr float scale[3] = {static_cast<float>(0.229 / 0.5), static_cast<float>(0.224 / 0.5),
                                       static_cast<float>(0.225 / 0.5)};
    static constexpr float shift[3] = {static_cast<float>((0.485 - 0.5) / 0.5), static_cast<float>((0.456 - 0.5) / 0.5),
                                       static_cast<float>((0.406 - 0.5) / 0.5)};

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        if (in.s.c != 3) p.reject("transform_input", "expects 3 (RGB) channels but got ", in.s);
        const value out = p.place_elementwise(in, t, "transform_input");
        op& o = p.emit(op_kind::channel_affine, in, out);
        o.scale = scale;
        o.shift = shift;
        return out;
    }
};

}  // namespace ctnet
