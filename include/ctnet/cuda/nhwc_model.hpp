// ctnet/cuda/nhwc_model.hpp — what runner<Net, backend::cuda> hands an NHWC engine: the plan's
// steps (cuda/nhwc_plan.hpp) with offsets into one float image of the parameters as the engines
// read them, built once at load:
//   - conv: the folded weights (exec::fold: batch norm in, computed in double) in KRSC order
//     ([out][kh][kw][in], cuDNN's NHWC filter layout), then the folded bias (a pooled conv's
//     bias belongs to the avg_pool step after it: that step's `bias`, the conv's is -1);
//   - linear: weights [out][features] with the features in NHWC order (a flattened H x W > 1
//     buffer's columns permuted), then the bias when it has one;
//   - affine: scale then shift per channel (a batch norm that could not be folded: its factors in
//     double then float, as cpu::ref::batch_norm); the input transform's fused channel_affine.
// Host C++ without CUDA headers (tests/test_nhwc_plan.cpp checks the layout on the host).
#pragma once

#include <cmath>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../exec/plan.hpp"
#include "../graph/params.hpp"
#include "nhwc_engine.hpp"
#include "nhwc_operands.hpp"
#include "nhwc_plan.hpp"

namespace ctnet::cuda {

template <class Net>
nhwc_model make_nhwc_model(std::span<const float> params) {
    const auto& pl = nhwc_plan_v<Net>;
    if (!pl.ok) throw error(std::string{"ctnet: cuda: the NHWC engines cannot run this network: "} + pl.why);
    const auto& p = Net::program;
    nhwc_model m;
    m.offsets.assign(pl.offset.begin(), pl.offset.begin() + pl.n_bufs);
    m.arena = pl.arena;
    m.in = pl.in;
    m.out = pl.out;
    m.temp_in = pl.temp_in;
    m.temp_out = pl.temp_out;
    m.temp_pool = pl.temp_pool;
    long long pooled_bias = -1;  // a pooled conv's bias, for the avg_pool step after it
    std::vector<float>& img = m.params;
    const auto here = [&] { return static_cast<long long>(img.size()); };
    for (nhwc::step s : pl.steps()) {
        if (s.k == nhwc::kind::input && s.op >= 0) {
            const op& o = p.ops[s.op];
            const auto c = static_cast<std::size_t>(o.in.s.c);
            s.w = here();
            img.insert(img.end(), o.scale, o.scale + c);
            s.bias = here();
            img.insert(img.end(), o.shift, o.shift + c);
        } else if (s.k == nhwc::kind::conv) {
            exec::step e{};
            e.op = s.op;
            e.last = s.last;
            e.bn = s.bn;
            e.relu = s.relu;
            const exec::folded f = exec::fold(p, params, e);
            const int cout = s.y.c, cin = s.x.c, kh = s.g.kh, kw = s.g.kw;
            s.w = here();
            img.resize(img.size() + f.w.size());
            float* w = img.data() + s.w;
            for (int o = 0; o < cout; ++o)
                for (int ci = 0; ci < cin; ++ci)
                    for (int ky = 0; ky < kh; ++ky)
                        for (int kx = 0; kx < kw; ++kx)
                            w[nhwc::krsc_index(o, ci, ky, kx, cin, kh, kw)] =
                                f.w[((static_cast<std::size_t>(o) * cin + ci) * kh + ky) * kw + kx];
            s.bias = here();
            img.insert(img.end(), f.bias.begin(), f.bias.end());
            if (s.pooled) {
                pooled_bias = s.bias;
                s.bias = -1;
            }
        } else if (s.k == nhwc::kind::avg_pool && s.pooled) {
            s.bias = pooled_bias;
        } else if (s.k == nhwc::kind::linear) {
            const op& o = p.ops[s.op];
            const weight_params<const float> wp = weight_params<const float>::of(o, params.data());
            const int out = s.y.c, in = s.x.c;
            s.w = here();
            img.resize(img.size() + static_cast<std::size_t>(out) * in);
            float* w = img.data() + s.w;
            for (int r = 0; r < out; ++r)
                for (int f = 0; f < in; ++f) {
                    long long to = f;
                    if (s.flat_c > 0) {  // NCHW feature f = (c, y, x) of the flattened buffer
                        const int c = f / (s.flat_h * s.flat_w), rem = f % (s.flat_h * s.flat_w);
                        to = nhwc::nhwc_feature(c, rem / s.flat_w, rem % s.flat_w, s.flat_c, s.flat_w);
                    }
                    w[static_cast<std::size_t>(r) * in + static_cast<std::size_t>(to)] = wp.w[static_cast<std::size_t>(r) * in + f];
                }
            if (wp.bias != nullptr) {
                s.bias = here();
                img.insert(img.end(), wp.bias, wp.bias + out);
            }
        } else if (s.k == nhwc::kind::affine) {
            const op& o = p.ops[s.op];
            const auto c = static_cast<std::size_t>(s.x.c);
            s.w = here();
            if (s.bn) {
                const bn_params<const float> g = bn_params<const float>::of(o, params.data());
                std::vector<float> shift(c);
                for (std::size_t k = 0; k < c; ++k) {
                    const double inv = 1.0 / std::sqrt(static_cast<double>(g.var[k]) + o.eps);
                    img.push_back(static_cast<float>(g.gamma[k] * inv));
                    shift[k] = static_cast<float>(g.beta[k] - g.mean[k] * (g.gamma[k] * inv));
                }
                s.bias = here();
                img.insert(img.end(), shift.begin(), shift.end());
            } else {
                img.insert(img.end(), o.scale, o.scale + c);
                s.bias = here();
                img.insert(img.end(), o.shift, o.shift + c);
            }
        }
        m.steps.push_back(s);
    }
    return m;
}

}  // namespace ctnet::cuda
