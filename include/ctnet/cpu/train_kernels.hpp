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

namespace ctnet::cpu {

struct reference_kernels {
    static constexpr bool threaded = false;
    static constexpr bool max_pool_reads_input = true;  // finds the maxima again in x

    explicit reference_kernels(thread_pool&) {}
    void plan(const op&) {}
    void allocate() {}
    void resize(int, const op*, int) {}

    void conv_forward(exec::in_view x, exec::out_view y, int n, const float* w, const float* bias, const window& g) {
        ref::conv2d(x, y, n, w, bias, g);
    }
    void conv_backward(exec::in_view x, exec::in_view dy, exec::out_view dx, int n, const float* w, float* dw, float* db,
                       const window& g) {
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

    explicit simd_kernels(thread_pool& pool) : pool_{&pool} {}

    // Workspace sizes over every op (called once per op, then allocate()).
    void plan(const op& q) {
        switch (q.kind) {
            case op_kind::conv: {
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
    }
    // Where each max pool's maxima are, for a batch of n (ops: the program's, count of them).
    void resize(int n, const op* ops, int count) {
        arg_.resize(static_cast<std::size_t>(count));
        for (int i = 0; i < count; ++i)
            arg_[i].assign(ops[i].kind == op_kind::max_pool ? static_cast<std::size_t>(n) * ops[i].out.s.size() : 0, -1);
    }

    void conv_forward(exec::in_view x, exec::out_view y, int n, const float* w, const float* bias, const window& g) {
        conv_forward_gemm(x.data, x.stride, x.s, y.data, y.stride, y.s, n, w, bias, g, ws_, *pool_);
    }
    void conv_backward(exec::in_view x, exec::in_view dy, exec::out_view dx, int n, const float* w, float* dw, float* db,
                       const window& g) {
        conv_backward_gemm(x.data, x.stride, x.s, dy.data, dy.stride, dy.s, dx.data, dx.stride, n, w, dw, db, g, ws_, *pool_);
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
    std::size_t col_ = 0, group_ = 0, packed_w_ = 0, packed_dy_ = 0, partial_ = 0, pool_row_ = 0, pool_int_ = 0;
    std::vector<float> col_mem_, packed_, scratch_, partial_mem_, group_mem_, pool_rows_;
    std::vector<std::int32_t> pool_ints_;
    std::vector<std::vector<std::int32_t>> arg_;  // max pools: where each window's maximum is
    conv_workspace ws_{};
};

}  // namespace ctnet::cpu
