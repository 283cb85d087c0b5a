// ctnet/exec/plan.hpp — the one fused-step plan every inference backend consumes.
//
//   constexpr auto& plan = exec::plan_v<net>;          // compile time: which ops fuse
//   for (const exec::step& s : plan.steps()) ...        // s.op, s.last, s.out, s.relu, s.pool
//   exec::folded f = exec::fold(Net::program, params, s);   // load time: a conv's weights and bias
//
// The program (graph/program.hpp) lists ops one by one; inference runs fewer, larger steps:
//   - a conv followed by an in-place batch norm becomes one conv, the batch norm folded into its
//     weights and bias, and an in-place ReLU after them moves into the conv's epilogue;
//   - an average pool read only by a 1x1 stride-1 conv (every Inception branch_pool) runs after
//     that conv, on its output: both are linear and the pool treats every channel alike, so
//     conv(pool(x)) = pool(conv(x)) before the bias and ReLU, and the pool then handles the
//     conv's Cout channels instead of the block input's Cin (32-192 instead of 192-2048);
//   - concat needs nothing: each branch writes into its channel slice;
//   - training-only ops (the auxiliary head) are left out.
// A backend that has no pooled step asks for plan_v<Net, {.pools_into_pointwise = false}>.
// Requires: eval-mode semantics (running statistics). Guarantees: every eval op is covered by
// exactly one step, in program order; fold() computes in double what every backend folds, so
// backends agree on the folded weights bit for bit.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "../graph/network.hpp"

namespace ctnet::exec {

struct plan_options {
    bool pools_into_pointwise = true;
};

struct step {
    int op = 0;     // the program op it runs (a pooled step: the 1x1 conv)
    int last = 0;   // the last program op it covers (a folded batch norm, a fused ReLU)
    int pool = -1;  // an average pool run after this 1x1 conv, on its output (see above)
    value out{};    // where the result goes (a pooled step: the pool's output)
    bool bn = false;    // conv: the batch norm at op + 1 is folded into it
    bool relu = false;  // conv: ReLU fused (in the epilogue; after the pool in a pooled step)
};

[[nodiscard]] constexpr bool same_value(const value& a, const value& b) {
    return a.buf == b.buf && a.offset == b.offset && a.s == b.s;
}

// Op j of p is an eval op of `kind` working in place on v.
template <class P>
[[nodiscard]] constexpr bool in_place(const P& p, int j, op_kind kind, const value& v) {
    return j < p.n_ops && p.ops[j].kind == kind && same_value(p.ops[j].in, v) && same_value(p.ops[j].out, v) &&
           !p.ops[j].train_only;
}

// Op i is an average pool whose output only the 1x1 stride-1 conv at i + 1 reads.
template <class P>
[[nodiscard]] constexpr bool pools_into_pointwise(const P& p, int i) {
    if (i + 1 >= p.n_ops) return false;
    const op& pool = p.ops[i];
    const op& c = p.ops[i + 1];
    return pool.kind == op_kind::avg_pool && !pool.train_only && c.kind == op_kind::conv && !c.train_only &&
           is_pointwise(c.win) && same_value(c.in, pool.out) && p.bufs[pool.out.buf].last == i + 1;
}

template <std::size_t Cap>
struct fused_plan {
    std::array<step, Cap> all{};
    int n = 0;
    [[nodiscard]] constexpr std::span<const step> steps() const { return {all.data(), static_cast<std::size_t>(n)}; }
};

template <class Net, plan_options O>
constexpr auto make_plan() {
    const auto& p = Net::program;
    fused_plan<p.ops.size()> plan;
    for (int i = 0; i < p.n_ops; ++i) {
        const op& o = p.ops[i];
        if (o.train_only) continue;
        step s{.op = i, .last = i, .out = o.out};
        int conv = o.kind == op_kind::conv ? i : -1;
        if (O.pools_into_pointwise && pools_into_pointwise(p, i)) {
            s = step{.op = i + 1, .last = i + 1, .pool = i, .out = p.ops[i + 1].out};
            conv = i + 1;
        }
        if (conv >= 0) {
            const value y = p.ops[conv].out;
            if (in_place(p, conv + 1, op_kind::batch_norm, y)) {
                s.bn = true;
                s.last = conv + 1;
                if (in_place(p, conv + 2, op_kind::relu, y)) {
                    s.relu = true;
                    s.last = conv + 2;
                }
            }
        }
        plan.all[plan.n++] = s;
        i = s.last;  // skip the ops folded into this one
    }
    return plan;
}

template <class Net, plan_options O = plan_options{}>
inline constexpr auto plan_v = make_plan<Net, O>();

// A conv's weights (O, I*KH*KW) row-major and bias (O; zeros when the conv has none), with the
// step's batch norm folded in.
struct folded {
    std::vector<float> w, bias;
};

template <class P>
folded fold(const P& p, std::span<const float> params, const step& s) {
    const op& c = p.ops[s.op];
    const int m = c.out.s.c, k = c.in.s.c * c.win.kh * c.win.kw;
    folded f;
    f.w.assign(params.begin() + static_cast<std::ptrdiff_t>(c.param_offset),
               params.begin() + static_cast<std::ptrdiff_t>(c.param_offset + static_cast<std::size_t>(m) * k));
    f.bias.assign(static_cast<std::size_t>(m), 0.0F);
    if (c.bias)
        for (int o = 0; o < m; ++o) f.bias[o] = params[c.param_offset + static_cast<std::size_t>(m) * k + o];
    if (!s.bn) return f;
    const op& bn = p.ops[s.op + 1];
    const bn_params<const float> g = bn_params<const float>::of(bn, params.data());
    for (int o = 0; o < m; ++o) {  // y = (conv + b - mean) * gamma / sqrt(var + eps) + beta
        const double a = g.gamma[o] / std::sqrt(static_cast<double>(g.var[o]) + bn.eps);
        for (int kk = 0; kk < k; ++kk) {
            float& wv = f.w[static_cast<std::size_t>(o) * k + kk];
            wv = static_cast<float>(wv * a);
        }
        f.bias[o] = static_cast<float>((f.bias[o] - g.mean[o]) * a + g.beta[o]);
    }
    return f;
}

}  // namespace ctnet::exec
