// ctnet/graph/fold.hpp — the load-time transform every fast backend shares: a conv followed by
// an in-place batch norm (and ReLU) becomes one conv with the batch norm folded into its weights
// and bias and the ReLU left to its epilogue.
//
// Requires: eval-mode semantics (running statistics). Guarantees: w is (O, I*KH*KW) row-major,
// bias has O entries (the conv's own bias, or zeros, folded with the batch norm), `last` is the
// last program op covered and `out` where its result goes; backend::cpu packs the result for its
// GEMM, backend::cuda uploads it.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "program.hpp"

namespace ctnet {

struct folded_conv {
    std::vector<float> w, bias;
    bool relu = false;
    int last = 0;  // last program op covered (the conv itself, its batch norm, or its ReLU)
    value out{};
};

template <class P>
folded_conv fold_conv(const P& p, std::span<const float> params, int i) {
    const op& c = p.ops[i];
    const int m = c.out.s.c, k = c.in.s.c * c.win.kh * c.win.kw;
    folded_conv f;
    f.w.assign(params.begin() + static_cast<std::ptrdiff_t>(c.param_offset),
               params.begin() + static_cast<std::ptrdiff_t>(c.param_offset + static_cast<std::size_t>(m) * k));
    f.bias.assign(static_cast<std::size_t>(m), 0.0F);
    if (c.bias)
        for (int o = 0; o < m; ++o) f.bias[o] = params[c.param_offset + static_cast<std::size_t>(m) * k + o];
    f.last = i;
    f.out = c.out;
    auto same = [](const value& a, const value& b) { return a.buf == b.buf && a.offset == b.offset && a.s == b.s; };
    auto in_place = [&](int j, op_kind kind) {
        return j < p.n_ops && p.ops[j].kind == kind && same(p.ops[j].in, c.out) && same(p.ops[j].out, c.out) &&
               !p.ops[j].train_only;
    };
    if (!in_place(i + 1, op_kind::batch_norm)) return f;
    const op& bn = p.ops[i + 1];
    const float* g = params.data() + bn.param_offset;
    const auto mc = static_cast<std::size_t>(m);
    for (int o = 0; o < m; ++o) {  // y = (conv + b - mean) * gamma / sqrt(var + eps) + beta
        const double a = g[o] / std::sqrt(static_cast<double>(g[3 * mc + o]) + bn.eps);
        for (int kk = 0; kk < k; ++kk) {
            float& wv = f.w[static_cast<std::size_t>(o) * k + kk];
            wv = static_cast<float>(wv * a);
        }
        f.bias[o] = static_cast<float>((f.bias[o] - g[2 * mc + o]) * a + g[mc + o]);
    }
    f.last = i + 1;
    if (in_place(i + 2, op_kind::relu)) {
        f.relu = true;
        f.last = i + 2;
    }
    return f;
}

}  // namespace ctnet
