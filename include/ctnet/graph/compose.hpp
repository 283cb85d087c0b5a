// ctnet/graph/compose.hpp — composition of layers into graphs.
//
//   seq<A, B, C>                 A then B then C
//   concat<B1, B2, ...>          every branch reads the same input; outputs are joined along
//                                channels. Each branch writes straight into its channel slice
//                                of the output: no concat copy ever runs.
//   node<"name", L>              names L: the name becomes a component of every parameter path
//                                (torchvision's state_dict keys); a top-level node is a row of
//                                the summary
//   aux<"name", Head>            a tap: Head reads the current activation in training mode only
//                                (the auxiliary classifier); the main path passes through
//   require_input<"model", C, H, W>  rejects inputs smaller than a model's minimum
//
// Requires: concat branches agree in spatial size; nothing else beyond each layer's own rules.
#pragma once

#include <cstddef>
#include <string_view>

#include "../core/fixed_string.hpp"
#include "program.hpp"

namespace ctnet {

namespace detail {

// The first layer of a seq (or the seq itself when it is not one) that produces a new
// tensor gets the destination; the elementwise layers after it then work in place.
template <class... L>
consteval int destination_index() {
    constexpr bool ew[] = {L::elementwise...};
    int last = static_cast<int>(sizeof...(L)) - 1;
    for (int i = last; i >= 0; --i)
        if (!ew[i]) return i;
    return last;
}

template <class L>
struct branch_label {
    static constexpr std::string_view value{};
};

}  // namespace detail

template <class... L>
struct seq {
    static_assert(sizeof...(L) > 0, "ctnet::seq needs at least one layer");
    static constexpr ir_size size = (L::size + ...);
    static constexpr bool elementwise = (L::elementwise && ...);

    static constexpr shape infer(shape in) {
        ((in = L::infer(in)), ...);
        return in;
    }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        constexpr int dest = detail::destination_index<L...>();
        int i = 0;
        ((in = L::lower(p, in, i++ == dest ? t : target::anywhere())), ...);
        return in;
    }
};

template <class... B>
struct concat {
    static_assert(sizeof...(B) > 0, "ctnet::concat needs at least one branch");
    static constexpr ir_size size = (B::size + ...) + ir_size{0, 1, 0};
    static constexpr bool elementwise = false;

    static constexpr shape infer(shape in) {
        const shape outs[] = {B::infer(in)...};
        shape r = outs[0];
        r.c = 0;
        for (const shape& s : outs) r.c += s.c;
        return r;
    }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        const shape outs[] = {B::infer(in.s)...};
        constexpr std::string_view labels[] = {detail::branch_label<B>::value...};
        bool all_valid = true;
        for (const shape& s : outs) all_valid = all_valid && s.valid();
        for (std::size_t i = 1; all_valid && i < sizeof...(B); ++i) {
            if (outs[i].h != outs[0].h || outs[i].w != outs[0].w) {
                p.reject("concat", "branch ", static_cast<int>(i + 1), " [", labels[i], "] outputs ", outs[i],
                         " but branch 1 [", labels[0], "] outputs ", outs[0],
                         "; spatial sizes must agree");
                break;
            }
        }
        const value out = p.place(infer(in.s), t, "concat");
        value shared = in;
        shared.owned = shared.owned && sizeof...(B) == 1;
        int offset = out.offset;
        std::size_t i = 0;
        (
            [&] {
                const value slice{out.buf, offset, outs[i], true};
                offset += static_cast<int>(outs[i++].size());
                B::lower(p, shared, target::into(slice));
            }(),
            ...);
        return out;
    }
};

template <fixed_string Name, class L>
struct node {
    static_assert(Name.size() > 0 && Name.size() < 40, "ctnet::node: a name has 1 to 39 characters");
    static constexpr ir_size size = L::size + ir_size{0, 0, 1};
    static constexpr bool elementwise = L::elementwise;
    static constexpr std::string_view name = Name.view();

    static constexpr shape infer(shape in) { return L::infer(in); }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        const name_text saved = p.prefix;
        if (p.prefix.len) p.prefix += ".";
        p.prefix += name;
        const bool top = p.depth++ == 0;
        const int first = p.n_ops;
        const value out = L::lower(p, in, t);
        if (top) {
            block& b = p.blocks[p.n_blocks++];
            b = {p.prefix, out, first, p.n_ops, p.train_only};
        }
        --p.depth;
        p.prefix = saved;
        return out;
    }
};

template <fixed_string Name, class Head>
struct aux {
    static constexpr ir_size size = node<Name, Head>::size;
    static constexpr bool elementwise = true;
    static constexpr shape infer(shape in) { return in; }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        if (!t.any) p.reject("aux", "a tap cannot end a concat branch");
        if (p.has_aux) p.reject("aux", "a network has at most one auxiliary tap");
        value head_in = in;
        head_in.owned = false;  // the main path still reads it
        const bool saved = p.train_only;
        p.train_only = true;
        p.aux = node<Name, Head>::lower(p, head_in, target::anywhere());
        p.has_aux = true;
        p.train_only = saved;
        return in;
    }
};

// Passes its input through; the "nothing here" of an optional layer.
struct identity {
    static constexpr ir_size size{};
    static constexpr bool elementwise = true;
    static constexpr shape infer(shape in) { return in; }

    template <class P>
    static constexpr value lower(P& p, value in, target t) {
        if (!t.any) p.reject("identity", "cannot be the only layer of a concat branch");
        return in;
    }
};

template <fixed_string Model, int C, int H, int W>
struct require_input {
    static constexpr ir_size size{};
    static constexpr bool elementwise = true;
    static constexpr shape infer(shape in) { return in; }

    template <class P>
    static constexpr value lower(P& p, value in, target) {
        if (in.s.c != C || in.s.h < H || in.s.w < W)
            p.reject("input", Model.view(), " needs an input of ", C, " channels and at least ", H, "x", W,
                     " but got ", in.s);
        return in;
    }
};

namespace detail {

template <fixed_string Name, class L>
struct branch_label<node<Name, L>> {
    static constexpr std::string_view value = Name.view();
};
template <class First, class... Rest>
struct branch_label<seq<First, Rest...>> : branch_label<First> {};

}  // namespace detail

}  // namespace ctnet
