// ctnet/graph/network.hpp — a network: an input shape and a body, checked at compile time.
//
//   using net = network<shape{1, 28, 28}, seq<node<"conv1", conv<8, k<3>>>, relu, ...>>;
//   static_assert(output_shape_v<net> == shape{10});
//   static_assert(param_count_v<net> == ...);
//
// Requires: Body is a layer (see layers/) or a composition of layers (compose.hpp).
// Guarantees: when the body breaks a shape rule, instantiating the network fails to compile
// with `network_does_not_type_check<"layer PATH (KIND): ... SHAPE ... SHAPE">`, naming the
// first offending layer and both shapes. Otherwise `program` holds the lowered ops, the
// parameter layout and a static activation memory plan, all as compile-time constants.
#pragma once

#include <cstddef>
#include <tuple>

#include "compose.hpp"
#include "program.hpp"

namespace ctnet {

namespace detail {

// Liveness of each activation buffer: from the first op that touches it to the last. The
// network output and the auxiliary output stay live to the end.
template <class P>
constexpr void compute_liveness(P& p) {
    for (int i = 0; i < p.n_ops; ++i) {
        for (const int b : {p.ops[i].in.buf, p.ops[i].out.buf}) {
            buffer& buf = p.bufs[b];
            if (buf.first < 0) buf.first = i;
            buf.last = i;
        }
    }
    for (const value* v : {&p.output, &p.aux})
        if (v->buf >= 0) p.bufs[v->buf].last = p.n_ops;
}

// Static memory plan: buffers are placed largest first at the lowest offset that does not
// overlap any already placed buffer alive at the same time (greedy by size, as in TFLite's
// arena planner). Gives per-sample float offsets; the arena for batch N is N times larger.
template <class P>
constexpr void plan_memory(P& p) {
    int order[std::tuple_size_v<decltype(P::bufs)>]{};
    int n = 0;
    for (int b = 0; b < p.n_bufs; ++b)
        if (!p.bufs[b].input && p.bufs[b].first >= 0) order[n++] = b;
    for (int i = 1; i < n; ++i)  // insertion sort, largest first, stable
        for (int j = i; j > 0 && p.bufs[order[j]].s.size() > p.bufs[order[j - 1]].s.size(); --j) {
            const int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    p.arena = 0;
    for (int i = 0; i < n; ++i) {
        buffer& b = p.bufs[order[i]];
        const std::size_t size = b.s.size();
        std::size_t offset = 0;
        for (bool moved = true; moved;) {  // bump past every conflict until none is left
            moved = false;
            for (int j = 0; j < i; ++j) {
                const buffer& o = p.bufs[order[j]];
                const bool same_time = o.first <= b.last && b.first <= o.last;
                const bool same_space = o.offset < offset + size && offset < o.offset + o.s.size();
                if (same_time && same_space) {
                    offset = o.offset + o.s.size();
                    moved = true;
                }
            }
        }
        b.offset = offset;
        if (offset + size > p.arena) p.arena = offset + size;
    }
}

// Parameter tensors get their names from paths; two layers with parameters on one path would
// give two tensors the same name.
template <class P>
constexpr void check_unique_paths(P& p) {
    for (int i = 0; i < p.n_ops; ++i) {
        if (p.ops[i].storage == 0) continue;
        for (int j = 0; j < i; ++j) {
            if (p.ops[j].storage != 0 && p.ops[j].path == p.ops[i].path) {
                p.prefix = p.ops[i].path;
                p.reject(to_string(p.ops[i].kind), "this path already names the parameters of a ",
                         to_string(p.ops[j].kind), "; wrap one of them in node<\"...\">");
                return;
            }
        }
    }
}

template <class Body, shape In>
constexpr auto lower_network() {
    program<Body::size + ir_size{0, 1, 0}> p{};
    p.input = p.new_buffer(In);
    p.bufs[p.input.buf].input = true;
    p.input.owned = false;
    if (!In.valid()) p.reject("input", "every dimension must be positive, got ", In);
    p.output = Body::lower(p, p.input, target::anywhere());
    if (!p.ok()) return p;
    check_unique_paths(p);
    compute_liveness(p);
    plan_memory(p);
    p.prefix = {};
    return p;
}

}  // namespace detail

// Instantiated with the first violated rule; g++ prints the whole message as the argument.
template <diag_text Error>
struct network_does_not_type_check {
    static_assert(Error.len == 0, "ctnet: the network does not type-check; the message in "
                                  "network_does_not_type_check<...> above names the layer and both shapes");
    static constexpr bool value = Error.len == 0;
};

template <shape In, class Body>
struct network {
    using body = Body;
    static constexpr shape input = In;
    static constexpr auto program = detail::lower_network<Body, In>();
    static_assert(network_does_not_type_check<program.error>::value);
};

template <class Net>
inline constexpr shape input_shape_v = Net::input;

template <class Net>
inline constexpr shape output_shape_v = Net::program.output.s;

namespace detail {

template <class Net>
constexpr std::size_t sum_ops(std::size_t op::*field, bool with_train_only) {
    std::size_t total = 0;
    for (int i = 0; i < Net::program.n_ops; ++i)
        if (with_train_only || !Net::program.ops[i].train_only) total += Net::program.ops[i].*field;
    return total;
}

}  // namespace detail

// Trainable parameters, the auxiliary head included (what torch's parameters() counts).
template <class Net>
inline constexpr std::size_t param_count_v = detail::sum_ops<Net>(&op::params, true);

// Floats of parameter storage: parameters plus batch-norm running statistics.
template <class Net>
inline constexpr std::size_t storage_count_v = Net::program.storage;

// Multiply-accumulates per sample of the eval path (conv and linear layers).
template <class Net>
inline constexpr std::size_t macs_v = detail::sum_ops<Net>(&op::macs, false);

// Multiply-accumulates per sample in training mode (the auxiliary head included).
template <class Net>
inline constexpr std::size_t train_macs_v = detail::sum_ops<Net>(&op::macs, true);

// Bytes of activation memory per sample under the static plan (the input excluded).
template <class Net>
inline constexpr std::size_t activation_bytes_v = Net::program.arena * sizeof(float);

// Bytes per sample if every activation had a buffer of its own (what the plan saves against).
template <class Net>
inline constexpr std::size_t unplanned_activation_bytes_v = [] {
    std::size_t total = 0;
    for (int b = 0; b < Net::program.n_bufs; ++b)
        if (!Net::program.bufs[b].input) total += Net::program.bufs[b].s.size();
    return total * sizeof(float);
}();

}  // namespace ctnet
