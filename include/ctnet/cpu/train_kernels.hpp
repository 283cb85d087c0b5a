// ctnet/cpu/train_kernels.hpp — the two kernel sets of the CPU trainer, as policies with the same
// functions: reference_kernels (plain loops, the oracle) and simd_kernels (packed GEMMs, SIMD
// pooling planes that record where each maximum is, lane-wise batch-norm sums, on the thread
// pool). cpu/trainer.hpp runs the passes and calls K::conv_forward, K::max_pool_backward, ...
//
// Each policy: constructed from the thread pool; plan(op) once per program op at construction
// (sizes workspaces), resize(n) when the batch size changes; `threaded` says whether the
// trainer's own loops (ReLU, linear, batch-norm channel ranges) split over the pool;
// `max_pool_reads_input` whether max_pool_backward needs the pool's input (the trainer keeps a
// copy where a later op overwrites it). Views are exec/view.hpp's; batch-norm parameters are
// passed as pointers already offset to the channel range.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../exec/view.hpp"
#include "../graph/program.hpp"
#include "backward.hpp"
#include "batch_norm_fast.hpp"
#include "conv_train.hpp"
#include "gemm.hpp"
#include "pool_fast.hpp"
#include "reference.hpp"
#include "thread_pool.hpp"
#include "winograd.hpp"

namespace ctnet::cpu {

struct reference_kernels {
    static constexpr bool threaded = false;
    static constexpr bool max_pool_reads_input = true;  // finds the maxima again in x

    explicit reference_kernels(thread_pool&, bool = true) {}
    void plan(int, const op&) {}
    void allocate() {}
    void resize(int, const op*, int) {}

    void conv_forward(int, exec::in_view x, exec::out_view y, int n, const float* w, const float* bias, const window& g) {
        ref::conv2d(x, y, n, w, bias, g);
    }
    void conv_backward(int, exec::in_view x, exec::in_view dy, exec::out_view dx, int n, const float* w, float* dw,
                       float* db, const window& g) {
        ref::conv2d_backward(x, dy, dx, n, w, dw, db, g);
    }
    // Batch statistics of channels [c0, c1) (views and pointers already offset to c0): mean, and the
    // biased variance in var.
    void bn_forward(exec::in_view x, exec::out_view y, int n, const float* gamma, const float* beta, double eps,
                    float* mean, float* var) {
        ref::batch_norm_train(x, y, n, gamma, beta, eps, mean, var);
    }
    // xhat is formed in tmp (the shape of x, contiguous) from mean and invstd.
    void bn_backward(exec::in_view x, exec::in_view dy, exec::out_view dx, int n, const float* gamma, const float* mean,
                     const float* invstd, float* dgamma, float* dbeta, float* tmp) {
        const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w, k = x.s.size();
        for (int s = 0; s < n; ++s)
            for (std::size_t ch = 0; ch < static_cast<std::size_t>(x.s.c); ++ch)
                for (std::size_t j = 0; j < plane; ++j)
                    tmp[s * k + ch * plane + j] = (x.sample(s)[ch * plane + j] - mean[ch]) * invstd[ch];
        ref::batch_norm_train_backward({tmp, k, x.s}, dy, dx, n, gamma, invstd, dgamma, dbeta);
    }
    void max_pool_forward(int, exec::in_view x, exec::out_view y, int n, const op& o) { ref::max_pool(x, y, n, o.win); }
    void max_pool_backward(int, exec::in_view x, exec::in_view dy, exec::out_view dx, int n, const op& o) {
        ref::max_pool_backward(x, dy, dx, n, o.win);
    }
    void avg_pool_forward(exec::in_view x, exec::out_view y, int n, const op& o) {
        ref::avg_pool(x, y, n, o.win, o.count_pad);
    }
    void avg_pool_backward(exec::in_view dy, exec::out_view dx, int n, const op& o) {
        ref::avg_pool_backward(dy, dx, n, o.win, o.count_pad);
    }
};

class simd_kernels {
public:
    static constexpr bool threaded = true;
    static constexpr bool max_pool_reads_input = false;  // the forward pass records where the maxima are

    // winograd: stride-1 convs with a Winograd variant run as Winograd (forward and dX).
    explicit simd_kernels(thread_pool& pool, bool winograd = true) : pool_{&pool}, winograd_{winograd} {}

    // Workspace sizes over every op (called once per op i, then allocate()).
    void plan(int i, const op& q) {
        switch (q.kind) {
            case op_kind::conv: {
                plan_winograd(i, q);
                const int k = q.in.s.c * q.win.kh * q.win.kw, hw = q.out.s.h * q.out.s.w;
                col_ = std::max(col_, conv_col_floats(k, hw, is_pointwise(q.win)));
                group_ = std::max(group_, conv_group_floats(q.out.s.c, hw));
                packed_w_ = std::max({packed_w_, gemm_packed_a_floats(q.out.s.c, k), gemm_packed_a_floats(k, q.out.s.c)});
                packed_dy_ = std::max(packed_dy_, gemm_packed_a_floats(q.out.s.c, conv_group(hw) * hw));
                partial_ = std::max(partial_, static_cast<std::size_t>(q.out.s.c) * (k + 1));
                break;
            }
            case op_kind::max_pool:
                pool_row_ = std::max(pool_row_, static_cast<std::size_t>(max_pool_train_floats(q.out.s.w, q.win)));
                pool_int_ = std::max(pool_int_, static_cast<std::size_t>(max_pool_train_ints(q.out.s.w)));
                break;
            case op_kind::avg_pool:
                pool_row_ = std::max(pool_row_, static_cast<std::size_t>(pool_scratch_floats(q.in.s.h, q.in.s.w, q.out.s.h,
                                                                                              q.out.s.w, q.win)));
                break;
            default: break;
        }
    }
    void allocate() {
        const auto t = static_cast<std::size_t>(pool_->size());
        col_mem_.assign(t * col_, 0.0F);
        packed_.assign(packed_w_ + t * packed_dy_, 0.0F);
        scratch_.assign(t * gemm_thread_scratch, 0.0F);
        partial_mem_.assign(t * partial_, 0.0F);
        group_mem_.assign(t * group_, 0.0F);
        ws_ = {.col = col_mem_.data(), .col_stride = col_, .packed_w = packed_.data(), .packed_a = packed_.data() + packed_w_,
               .packed_stride = packed_dy_, .scratch = scratch_.data(), .partial = partial_mem_.data(),
               .partial_stride = partial_, .group = group_mem_.data(), .group_stride = group_};
        pool_rows_.assign(t * pool_row_, 0.0F);
        pool_ints_.assign(t * pool_int_, 0);
        wino_u_.assign(wino_u_floats_, 0.0F);
        wino_flipped_.assign(wino_flipped_floats_, 0.0F);
        wino_scratch_.assign(t * wino_scratch_floats_, 0.0F);
        wino_dx_.assign(t * wino_dx_floats_, 0.0F);
    }
    // Where each max pool's maxima are, for a batch of n (ops: the program's, count of them).
    void resize(int n, const op* ops, int count) {
        arg_.resize(static_cast<std::size_t>(count));
        for (int i = 0; i < count; ++i)
            arg_[i].assign(ops[i].kind == op_kind::max_pool ? static_cast<std::size_t>(n) * ops[i].out.s.size() : 0, -1);
    }

    void conv_forward(int i, exec::in_view x, exec::out_view y, int n, const float* w, const float* bias,
                      const window& g) {
        if (packed_conv* cv = winograd_of(i, false)) {
            if (bias) std::copy(bias, bias + cv->m, cv->bias.begin());
            transform(*cv, w);
            winograd_run(*cv, x, n, [&](int s) { return y.sample(s); }, [](int, const float*) {});
            return;
        }
        conv_forward_gemm(x.data, x.stride, x.s, y.data, y.stride, y.s, n, w, bias, g, ws_, *pool_);
    }
    // dW and db by the GEMM; dX by the GEMM (col2im of W^T dY) or, for a stride-1 conv with a
    // Winograd variant, as the convolution of dY with the flipped, transposed weights
    // (winograd_of), through a per-thread sample buffer added to dX.
    void conv_backward(int i, exec::in_view x, exec::in_view dy, exec::out_view dx, int n, const float* w, float* dw,
                       float* db, const window& g) {
        packed_conv* cv = dx.data ? winograd_of(i, true) : nullptr;
        conv_backward_gemm(x.data, x.stride, x.s, dy.data, dy.stride, dy.s, cv ? nullptr : dx.data, dx.stride, n, w, dw, db,
                           g, ws_, *pool_);
        if (!cv) return;
        const int cout = cv->in.c, cin = cv->m, kh = g.kh, kw = g.kw, taps = kh * kw;
        for (int o = 0; o < cout; ++o)  // flipped[c][o][a][b] = w[o][c][kh-1-a][kw-1-b]
            for (int c = 0; c < cin; ++c) {
                const float* src = w + (static_cast<std::size_t>(o) * cin + c) * taps;
                float* dst = wino_flipped_.data() + (static_cast<std::size_t>(c) * cout + o) * taps;
                for (int t = 0; t < taps; ++t) dst[t] = src[taps - 1 - t];
            }
        transform(*cv, wino_flipped_.data());
        const std::size_t per_sample = cv->out.size();
        winograd_run(
            *cv, dy, n, [&](int) { return static_cast<float*>(nullptr); },
            [&](int s, const float* sample_dx) { add_row(dx.sample(s), sample_dx, static_cast<int>(per_sample)); });
    }
    void bn_forward(exec::in_view x, exec::out_view y, int n, const float* gamma, const float* beta, double eps,
                    float* mean, float* var) {
        batch_norm_train_lanes(x, y, n, gamma, beta, eps, mean, var);
    }
    void bn_backward(exec::in_view x, exec::in_view dy, exec::out_view dx, int n, const float* gamma, const float* mean,
                     const float* invstd, float* dgamma, float* dbeta, float*) {
        batch_norm_train_backward_lanes(x, dy, dx, n, gamma, mean, invstd, dgamma, dbeta);
    }
    void max_pool_forward(int i, exec::in_view x, exec::out_view y, int n, const op& o) {
        std::int32_t* arg = arg_[static_cast<std::size_t>(i)].data();
        const std::size_t per_sample = o.out.s.size();
        for_planes(o, n, [&](int s, std::size_t in_at, std::size_t out_at, float* tmp, std::int32_t* at) {
            max_pool_train_plane(x.sample(s) + in_at, o.in.s.h, o.in.s.w, y.sample(s) + out_at,
                                 arg + static_cast<std::size_t>(s) * per_sample + out_at, o.out.s.h, o.out.s.w, o.win, tmp,
                                 at);
        });
    }
    void max_pool_backward(int i, exec::in_view, exec::in_view dy, exec::out_view dx, int n, const op& o) {
        const std::int32_t* arg = arg_[static_cast<std::size_t>(i)].data();
        const std::size_t per_sample = o.out.s.size();
        const int outputs = o.out.s.h * o.out.s.w;
        for_planes(o, n, [&](int s, std::size_t in_at, std::size_t out_at, float*, std::int32_t*) {
            max_pool_backward_plane(arg + static_cast<std::size_t>(s) * per_sample + out_at, dy.sample(s) + out_at, outputs,
                                    dx.sample(s) + in_at);
        });
    }
    void avg_pool_forward(exec::in_view x, exec::out_view y, int n, const op& o) {
        for_planes(o, n, [&](int s, std::size_t in_at, std::size_t out_at, float* tmp, std::int32_t*) {
            avg_pool_train_plane(x.sample(s) + in_at, o.in.s.h, o.in.s.w, y.sample(s) + out_at, o.out.s.h, o.out.s.w, o.win,
                                 o.count_pad, tmp);
        });
    }
    void avg_pool_backward(exec::in_view dy, exec::out_view dx, int n, const op& o) {
        for_planes(o, n, [&](int s, std::size_t in_at, std::size_t out_at, float* tmp, std::int32_t*) {
            avg_pool_backward_plane(dy.sample(s) + out_at, o.in.s.h, o.in.s.w, dx.sample(s) + in_at, o.out.s.h, o.out.s.w,
                                    o.win, o.count_pad, tmp);
        });
    }

private:
    // Winograd in training (cpu/winograd.hpp): for conv op i, the forward conv (fwd) and the
    // conv that gives dX (bwd: dY, Cout channels, convolved with the flipped, transposed
    // weights at padding k - 1 - p, giving Cin channels at the input's size), where
    // winograd_tiling_for picks a variant for them. Their U is transformed from the current
    // weights at each call into one shared buffer (the weights change every step), split over
    // the threads by output channel.
    struct winograd_pair {
        packed_conv fwd, bwd;  // tiling.h == 0: the GEMM
    };

    void plan_winograd(int i, const op& q) {
        if (!winograd_) return;
        if (static_cast<std::size_t>(i) >= wino_.size()) wino_.resize(static_cast<std::size_t>(i) + 1);
        const window& g = q.win;
        const auto setup = [&](packed_conv& cv, const window& win, shape in, shape out) {
            const winograd_tiling t = winograd_tiling_for(win, in, out);
            if (t.h == 0) return;
            cv.m = out.c;
            cv.k = in.c * win.kh * win.kw;
            cv.tiling = t;
            cv.win = win;
            cv.in = in;
            cv.out = out;
            cv.bias.assign(static_cast<std::size_t>(out.c), 0.0F);
            wino_u_floats_ = std::max(wino_u_floats_, winograd_weight_floats(out.c, in.c, t, win.kh, win.kw));
            wino_scratch_floats_ = std::max(wino_scratch_floats_, winograd_scratch_floats(in.c, t, win.kh, win.kw));
        };
        winograd_pair& p = wino_[static_cast<std::size_t>(i)];
        setup(p.fwd, g, q.in.s, q.out.s);
        if (g.sh == 1 && g.sw == 1 && g.pt < g.kh && g.pb < g.kh && g.pl < g.kw && g.pr < g.kw) {
            const window flipped{.kh = g.kh, .kw = g.kw, .pt = g.kh - 1 - g.pt, .pb = g.kh - 1 - g.pb,
                                 .pl = g.kw - 1 - g.pl, .pr = g.kw - 1 - g.pr};
            setup(p.bwd, flipped, q.out.s, q.in.s);
            if (p.bwd.tiling.h != 0) {
                wino_flipped_floats_ = std::max(wino_flipped_floats_, static_cast<std::size_t>(q.in.s.c) * q.out.s.c * g.kh * g.kw);
                wino_dx_floats_ = std::max(wino_dx_floats_, q.in.s.size());
            }
        }
    }

    [[nodiscard]] packed_conv* winograd_of(int i, bool backward) {
        if (static_cast<std::size_t>(i) >= wino_.size()) return nullptr;
        packed_conv& cv = backward ? wino_[static_cast<std::size_t>(i)].bwd : wino_[static_cast<std::size_t>(i)].fwd;
        return cv.tiling.h != 0 ? &cv : nullptr;
    }

    // U of weights w (cv.m x cv.in.c x kh x kw) into wino_u_.
    void transform(const packed_conv& cv, const float* w) {
        pool_->run_ranges(cv.m, std::min(cv.m, pool_->size()), [&](int m0, int m1, int, int) {
            winograd_transform_weights(w, cv.m, cv.in.c, cv.tiling, cv.win, wino_u_.data(), m0, m1);
        });
    }

    // Each sample's output through cv: into out(s), or (out(s) null) into the thread's sample
    // buffer, then done(s, buffer). Samples split over the threads; each sample's tiles in turn.
    template <class Out, class Done>
    void winograd_run(const packed_conv& cv, exec::in_view x, int n, Out&& out, Done&& done) {
        const int tiles = winograd_tiles(cv.out, cv.tiling);
        pool_->run_ranges(n, std::min(n, pool_->size()), [&](int s0, int s1, int thread, int) {
            float* scratch = wino_scratch_.data() + static_cast<std::size_t>(thread) * wino_scratch_floats_;
            for (int s = s0; s < s1; ++s) {
                float* y = out(s);
                float* buf = y ? y : wino_dx_.data() + static_cast<std::size_t>(thread) * wino_dx_floats_;
                for (int t0 = 0; t0 < tiles; t0 += gemm_nr)
                    winograd_block(cv, wino_u_.data(), x.sample(s), buf, 0, cv.m, t0, scratch);
                if (!y) done(s, buf);
            }
        });
    }

    // Runs f(sample, input plane offset, output plane offset, per-thread float and int32 scratch)
    // for every (sample, channel) plane of a pooling op, in 8 tasks per thread (planes are
    // independent, so any thread count gives the same values).
    template <class F>
    void for_planes(const op& o, int n, F&& f) {
        const std::size_t ip = static_cast<std::size_t>(o.in.s.h) * o.in.s.w;
        const std::size_t opl = static_cast<std::size_t>(o.out.s.h) * o.out.s.w;
        const int c = o.in.s.c, planes = n * c, tasks = std::min(planes, 8 * pool_->size());
        pool_->run_ranges(planes, tasks, [&](int p0, int p1, int thread, int) {
            float* tmp = pool_rows_.data() + static_cast<std::size_t>(thread) * pool_row_;
            std::int32_t* at = pool_ints_.data() + static_cast<std::size_t>(thread) * pool_int_;
            for (int p = p0; p < p1; ++p) {
                const int ch = p % c;
                f(p / c, ch * ip, ch * opl, tmp, at);
            }
        });
    }

    thread_pool* pool_;
    bool winograd_ = true;
    std::size_t col_ = 0, group_ = 0, packed_w_ = 0, packed_dy_ = 0, partial_ = 0, pool_row_ = 0, pool_int_ = 0;
    std::vector<float> col_mem_, packed_, scratch_, partial_mem_, group_mem_, pool_rows_;
    std::vector<std::int32_t> pool_ints_;
    std::vector<std::vector<std::int32_t>> arg_;  // max pools: where each window's maximum is
    conv_workspace ws_{};
    std::vector<winograd_pair> wino_;
    std::size_t wino_u_floats_ = 0, wino_flipped_floats_ = 0, wino_scratch_floats_ = 0, wino_dx_floats_ = 0;
    std::vector<float> wino_u_, wino_flipped_, wino_scratch_, wino_dx_;
};

}  // namespace ctnet::cpu
