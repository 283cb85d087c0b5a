// ctnet/cpu/trainer.hpp — backpropagation through a network type on the CPU: trainer<Net,
// backend::reference> and trainer<Net, backend::cpu>.
//
//   weights<net> w;  init_seeded(w, 1);
//   trainer<net, backend::cpu> t{w, {.threads = 2, .seed = 7}};
//   t.forward(images);                            // training mode: batch statistics, dropout, aux head
//   ... loss gradients dlogits (N x K) and daux from t.logits(), t.aux_logits() (train/loss.hpp) ...
//   t.zero_grads();  t.backward(dlogits, daux);   // t.grads(): one float per float of w.data()
//
// Training mode as torch's module.train(): batch norm normalises with the batch's statistics and
// updates the running ones (momentum, unbiased running variance, as torchvision); dropout draws
// its masks from a seeded generator; the ops of an aux<> head run and its logits are an output.
// Every activation keeps its own buffer (the inference memory plan reuses them, training cannot),
// and where a later op overwrites a value in place that a backward kernel needs (a conv input, a
// batch norm input, a ReLU output), the trainer keeps a copy (exec/keep.hpp). A value read by several branches
// collects one gradient contribution per reader; concat slices route gradients by construction.
// Backends: one executor (cpu::train_executor) over two kernel sets (cpu/train_kernels.hpp):
// backend::reference runs cpu/reference.hpp + cpu/backward.hpp loops (the oracle);
// backend::cpu runs convolutions as packed GEMMs (cpu/conv_train.hpp), pooling on SIMD planes
// (cpu/pool_fast.hpp; max pools record where each maximum is) and batch norm with lane-wise
// sums (cpu/batch_norm_fast.hpp), on a thread pool.
// Sync batch norm (options::sync_bn, train/distributed.hpp): the batch statistics are those of
// the union of every rank's batch (cpu/sync_batch_norm.hpp). Off (null, the default): each
// process normalises with its own batch, and nothing changes.
// Requires: the weights outlive the trainer; more than one value per channel at every batch norm
// (over all ranks' batches with sync_bn).
// Guarantees: gradients are those of the forward pass just run (tested against finite
// differences and torch autograd); allocation only when the batch size changes.
// Length: about 470 lines, kept in one file on purpose: the forward and the backward switch
// read the same bookkeeping (the kept copies, the gradient buffers cleared on first use), and
// side by side each op's two halves can be checked against each other.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../exec/arena.hpp"
#include "../exec/backend.hpp"
#include "../exec/communicator.hpp"
#include "../exec/keep.hpp"
#include "../graph/network.hpp"
#include "../graph/params.hpp"
#include "backward.hpp"
#include "reference.hpp"
#include "sync_batch_norm.hpp"
#include "thread_pool.hpp"
#include "train_kernels.hpp"

namespace ctnet {

namespace cpu {

// The training executor over kernel set K (reference_kernels or simd_kernels).
template <class Net, class K>
class train_executor {
public:
    struct options {
        int threads = 1;            // backend::cpu: threads of the GEMMs
        std::uint64_t seed = 0;     // dropout masks
        double bn_momentum = 0.1;   // running = (1 - m) * running + m * batch (torch's default)
        communicator* sync_bn = nullptr;  // batch statistics over all its ranks; null: this process's batch
        bool winograd = true;       // backend::cpu: stride-1 3x3, 5x5, 1x7, 7x1 convs (forward and dX) as Winograd
    };

    using network_type = Net;
    static constexpr const auto& program = Net::program;
    static constexpr shape input = input_shape_v<Net>;
    static constexpr shape output = output_shape_v<Net>;
    static constexpr shape aux_output = Net::program.has_aux ? Net::program.aux.s : shape{};

    explicit train_executor(weights<Net>& w) : train_executor(w, options{}) {}
    train_executor(weights<Net>& w, options o) : w_{&w}, opt_{o}, rng_{o.seed}, pool_{o.threads}, k_{pool_, o.winograd} {
        const auto& p = program;
        grads_.assign(p.storage, 0.0F);
        zeroed_.assign(static_cast<std::size_t>(p.n_bufs), 0);
        saved_.resize(static_cast<std::size_t>(p.n_ops));
        keep_.assign(static_cast<std::size_t>(p.n_ops), keep::none);
        mean_.resize(static_cast<std::size_t>(p.n_ops));
        invstd_.resize(static_cast<std::size_t>(p.n_ops));
        std::size_t act = 0, bn_channels = 0;
        for (int i = 0; i < p.n_ops; ++i) {
            const op& q = p.ops[i];
            act = std::max(act, q.out.s.size());
            k_.plan(i, q);
            keep_[i] = exec::keep_of(p, i, K::max_pool_reads_input);
            if (q.kind == op_kind::batch_norm) {
                mean_[i].assign(static_cast<std::size_t>(q.out.s.c), 0.0F);
                invstd_[i].assign(static_cast<std::size_t>(q.out.s.c), 0.0F);
                bn_channels = std::max(bn_channels, static_cast<std::size_t>(q.out.s.c));
            }
        }
        k_.allocate();
        per_op_scratch_ = act;
        if (opt_.sync_bn) {
            sync_bn_ = sync_batch_norm{*opt_.sync_bn, bn_channels};
            bn_count_.assign(static_cast<std::size_t>(p.n_ops), 0.0);
        }
    }

    // Training-mode forward pass over x.size() / input.size() samples.
    void forward(std::span<const float> x) {
        const auto& p = program;
        const auto n = static_cast<int>(exec::batch_of(x, input, "trainer"));
        backward_ready_ = false;  // a forward pass that throws leaves nothing to differentiate
        if (n != n_) resize(n);
        x_ = x.data();
        for (int i = 0; i < p.n_ops; ++i) run_forward(i);
        backward_ready_ = true;
    }

    [[nodiscard]] int batch() const { return n_; }
    // The outputs of the last forward pass: N x output.size(), N x aux_output.size().
    [[nodiscard]] std::span<const float> logits() const { return copy_out(program.output, out_); }
    [[nodiscard]] std::span<const float> aux_logits() const {
        if constexpr (!Net::program.has_aux) {
            throw error("ctnet: trainer: the network has no aux head");
        } else {
            return copy_out(program.aux, aux_);
        }
    }

    // Adds the parameter gradients of the last forward pass, given d loss / d output (N x
    // output.size()) and, for networks with an aux head, d loss / d aux output (may be empty).
    void backward(std::span<const float> dlogits, std::span<const float> daux = {}) {
        backward(dlogits, daux, [](int) {});
    }
    // As above, calling after_op(i) once op i's backward has run (ops run last to first). From
    // then on the pass writes no gradient of ops i, i + 1, ...: where the storage is in op order
    // (see distributed.hpp), grads() from program.ops[i].param_offset to the end are final.
    template <class F>
    void backward(std::span<const float> dlogits, std::span<const float> daux, F&& after_op) {
        const auto& p = program;
        if (!backward_ready_) throw error("ctnet: trainer: backward() needs a forward() first");
        expect("output gradient", dlogits.size(), static_cast<std::size_t>(n_) * output.size());
        std::fill(zeroed_.begin(), zeroed_.end(), char{0});
        add_into(p.output, dlogits);
        if (!daux.empty()) {
            if (!p.has_aux) throw error("ctnet: trainer: an aux gradient was given but the network has no aux head");
            expect("aux gradient", daux.size(), static_cast<std::size_t>(n_) * p.aux.s.size());
            add_into(p.aux, daux);
        }
        for (int i = p.n_ops - 1; i >= 0; --i) {
            run_backward(i);
            after_op(i);
        }
    }

    [[nodiscard]] std::span<float> grads() { return grads_; }
    [[nodiscard]] std::span<const float> grads() const { return grads_; }
    void zero_grads() { std::fill(grads_.begin(), grads_.end(), 0.0F); }
    [[nodiscard]] weights<Net>& params() { return *w_; }
    [[nodiscard]] int threads() const { return pool_.size(); }
    // The generator of the dropout masks (its state is part of a checkpoint).
    [[nodiscard]] rng& generator() { return rng_; }

private:
    using keep = exec::keep;
    using in_view = exec::in_view;
    using out_view = exec::out_view;

    void resize(int n) {
        n_ = n;
        const auto nn = static_cast<std::size_t>(n);
        act_.assign(nn * layout_.per_sample, 0.0F);
        dact_.assign(nn * layout_.per_sample, 0.0F);
        tmp_.assign(nn * per_op_scratch_, 0.0F);
        const auto& p = program;
        for (int i = 0; i < p.n_ops; ++i) {
            const op& q = p.ops[i];
            std::size_t need = 0;
            if (keep_[i] == keep::input) need = q.in.s.size();
            if (keep_[i] == keep::output) need = q.out.s.size();
            if (q.kind == op_kind::dropout) need = q.out.s.size();  // the mask
            saved_[i].assign(nn * need, 0.0F);
        }
        k_.resize(n, p.ops.data(), p.n_ops);
        out_.assign(nn * output.size(), 0.0F);
        if constexpr (Net::program.has_aux) aux_.assign(nn * Net::program.aux.s.size(), 0.0F);
    }

    [[nodiscard]] out_view view(const value& v, std::vector<float>& mem) const {
        return layout_.view(v, mem.data(), const_cast<float*>(x_), static_cast<std::size_t>(n_));
    }
    [[nodiscard]] out_view act(const value& v) { return view(v, act_); }
    [[nodiscard]] in_view cact(const value& v) {
        const out_view o = view(v, act_);
        return {o.data, o.stride, o.s};
    }
    [[nodiscard]] out_view grad(const value& v) {
        if (program.bufs[v.buf].input) return {nullptr, 0, v.s};
        return view(v, dact_);
    }
    [[nodiscard]] in_view saved(int i, shape s) const { return {saved_[i].data(), s.size(), s}; }
    // The input (or output) a backward kernel needs: the live buffer, or the copy kept for it.
    [[nodiscard]] in_view needed_in(int i) {
        const op& q = program.ops[i];
        return keep_[i] == keep::input ? saved(i, q.in.s) : cact(q.in);
    }
    [[nodiscard]] in_view needed_out(int i) {
        const op& q = program.ops[i];
        return keep_[i] == keep::output ? saved(i, q.out.s) : cact(q.out);
    }
    void keep_copy(int i, in_view v) {
        cpu::ref::copy(v, {saved_[i].data(), v.s.size(), v.s}, n_);
    }

    std::span<const float> copy_out(const value& v, const std::vector<float>& dst) const {
        auto& d = const_cast<std::vector<float>&>(dst);
        const out_view o = view(v, const_cast<std::vector<float>&>(act_));
        cpu::ref::copy({o.data, o.stride, o.s}, {d.data(), v.s.size(), v.s}, n_);
        return d;
    }
    // A gradient buffer is cleared when the backward pass first reaches it (its last reader), not
    // all at once: the clearing then happens while the buffer is about to be used, in cache.
    void ensure_zeroed(int buf) {
        if (program.bufs[buf].input || zeroed_[buf]) return;
        zeroed_[buf] = 1;
        const std::size_t size = program.bufs[buf].s.size() * static_cast<std::size_t>(n_);
        float* base = dact_.data() + layout_.offsets[static_cast<std::size_t>(buf)] * static_cast<std::size_t>(n_);
        std::fill(base, base + size, 0.0F);
    }
    void add_into(const value& v, std::span<const float> g) {
        ensure_zeroed(v.buf);
        const out_view d = grad(v);
        for (int i = 0; i < n_; ++i)
            for (std::size_t j = 0; j < v.s.size(); ++j) d.sample(i)[j] += g[static_cast<std::size_t>(i) * v.s.size() + j];
    }
    static void expect(const char* what, std::size_t got, std::size_t want) { exec::expect_size("trainer", what, got, want); }

    // Runs f(i0, i1) over chunks of the batch on the pool (threaded kernels), or once over all of it.
    template <class F>
    void split_batch(F&& f) {
        if constexpr (K::threaded) {
            if (pool_.size() > 1 && n_ > 1) {
                pool_.run_ranges(n_, std::min(n_, pool_.size()), [&](int i0, int i1, int, int) { f(i0, i1); });
                return;
            }
        }
        f(0, n_);
    }
    // Runs f(c0, c1) over chunks of `count` channels.
    template <class F>
    void split_channels(int count, F&& f) {
        if constexpr (K::threaded) {
            const int tasks = std::min(count, pool_.size());
            if (tasks > 1) {
                pool_.run_ranges(count, tasks, [&](int c0, int c1, int, int) { f(c0, c1); });
                return;
            }
        }
        f(0, count);
    }
    template <class V>
    static V from(V v, int i0) {
        return exec::from_sample(v, i0);
    }
    template <class V>
    static V channels(V v, int c0, int c1) {
        return exec::channels(v, c0, c1);
    }
    // Runs f(c0, c1) over channel ranges (the sync batch norm's splitter).
    [[nodiscard]] auto channel_splitter() {
        return [this](int count, auto&& f) { split_channels(count, f); };
    }

    // Each op's forward and backward: one line per kind, the kernel set's function or a
    // reference kernel over chunks of the batch (batch norm and dropout below).
    void run_forward(int i) {
        const op& o = program.ops[i];
        if (keep_[i] == keep::input) keep_copy(i, cact(o.in));
        const in_view x = cact(o.in);
        const out_view y = act(o.out);
        const auto wb = weight_params<const float>::of(o, w_->data().data());
        // f(x, y, m) over chunks of the batch: samples [a, a + m)
        const auto rows = [&](auto&& f) { split_batch([&](int a, int b) { f(from(x, a), from(y, a), b - a); }); };
        switch (o.kind) {
            case op_kind::conv: k_.conv_forward(i, x, y, n_, wb.w, wb.bias, o.win); break;
            case op_kind::batch_norm: forward_batch_norm(i, x, y); break;
            case op_kind::relu: rows([](auto xs, auto ys, int m) { cpu::ref::relu(xs, ys, m); }); break;
            case op_kind::max_pool: k_.max_pool_forward(i, x, y, n_, o); break;
            case op_kind::avg_pool: k_.avg_pool_forward(x, y, n_, o); break;
            case op_kind::global_avg_pool: rows([](auto xs, auto ys, int m) { cpu::ref::global_avg_pool(xs, ys, m); }); break;
            case op_kind::linear: rows([&](auto xs, auto ys, int m) { cpu::ref::linear(xs, ys, m, wb.w, wb.bias); }); break;
            case op_kind::softmax: rows([](auto xs, auto ys, int m) { cpu::ref::softmax(xs, ys, m); }); break;
            case op_kind::dropout: forward_dropout(i, x, y); break;
            case op_kind::channel_affine: cpu::ref::channel_affine(x, y, n_, o.scale, o.shift); break;
        }
        if (keep_[i] == keep::output) keep_copy(i, cact(o.out));
    }

    void run_backward(int i) {
        const op& o = program.ops[i];
        ensure_zeroed(o.out.buf);
        if (o.in.buf != o.out.buf) ensure_zeroed(o.in.buf);
        const out_view gy = grad(o.out);
        const in_view dy{gy.data, gy.stride, gy.s};
        const out_view dx = grad(o.in);  // null at the network input: nothing upstream to pass on
        const auto wb = weight_params<const float>::of(o, w_->data().data());
        const auto dwb = weight_params<float>::of(o, grads_.data());
        // f(dy, dx, a, m) over chunks of the batch: samples [a, a + m); nothing when dx is null
        const auto rows = [&](auto&& f) {
            if (dx.data) split_batch([&](int a, int b) { f(from(dy, a), from(dx, a), a, b - a); });
        };
        switch (o.kind) {
            case op_kind::conv: k_.conv_backward(i, needed_in(i), dy, dx, n_, wb.w, dwb.w, dwb.bias, o.win); break;
            case op_kind::batch_norm: backward_batch_norm(i, dy, dx); break;
            case op_kind::relu: rows([y = needed_out(i)](auto g, auto d, int a, int m) { cpu::ref::relu_backward(from(y, a), g, d, m); }); break;
            case op_kind::max_pool: if (dx.data) k_.max_pool_backward(i, needed_in(i), dy, dx, n_, o); break;
            case op_kind::avg_pool: if (dx.data) k_.avg_pool_backward(dy, dx, n_, o); break;
            case op_kind::global_avg_pool: rows([](auto g, auto d, int, int m) { cpu::ref::global_avg_pool_backward(g, d, m); }); break;
            case op_kind::linear: cpu::ref::linear_backward(needed_in(i), dy, dx, n_, wb.w, dwb.w, dwb.bias); break;
            case op_kind::softmax: if (dx.data) cpu::ref::softmax_backward(needed_out(i), dy, dx, n_); break;
            case op_kind::dropout: rows([&](auto g, auto d, int a, int m) { cpu::ref::scale_backward(mask(i, a), g, d, m); }); break;
            case op_kind::channel_affine: if (dx.data) cpu::ref::channel_affine_backward(dy, dx, n_, o.scale); break;
        }
    }

    // Batch statistics (this process's batch, or every rank's with sync_bn); the running ones
    // updated with momentum and the unbiased variance, as torchvision; mean_ and invstd_ kept.
    void forward_batch_norm(int i, in_view x, out_view y) {
        const op& o = program.ops[i];
        const int c_out = o.out.s.c;
        const bn_params<float> bn = bn_params<float>::of(o, w_->data().data());
        if (opt_.sync_bn) {
            sync_bn_.forward(o, x, y, n_, bn, mean_[i].data(), invstd_[i].data(), opt_.bn_momentum, bn_count_[i],
                             channel_splitter());
            return;
        }
        const auto c = static_cast<std::size_t>(c_out);
        const std::size_t m = static_cast<std::size_t>(n_) * o.in.s.h * o.in.s.w;
        if (m < 2)
            throw error("ctnet: trainer: batch_norm '" + std::string{o.path.view()} +
                        "' needs more than one value per channel (batch " + std::to_string(n_) + ", input " +
                        std::to_string(o.in.s.h) + "x" + std::to_string(o.in.s.w) + ")");
        float* mean = mean_[i].data();
        float* var = invstd_[i].data();  // the batch variance, then 1 / sqrt(var + eps)
        split_channels(c_out, [&](int c0, int c1) {
            k_.bn_forward(channels(x, c0, c1), channels(y, c0, c1), n_, bn.gamma + c0, bn.beta + c0, o.eps, mean + c0,
                          var + c0);
        });
        const auto mom = static_cast<float>(opt_.bn_momentum);
        const float unbias = static_cast<float>(m) / static_cast<float>(m - 1);
        for (std::size_t k = 0; k < c; ++k) {
            bn.mean[k] = (1.0F - mom) * bn.mean[k] + mom * mean[k];
            bn.var[k] = (1.0F - mom) * bn.var[k] + mom * var[k] * unbias;
            var[k] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[k]) + o.eps));
        }
    }

    void backward_batch_norm(int i, in_view dy, out_view dx) {
        const op& o = program.ops[i];
        const int c_out = o.out.s.c;
        const in_view x = needed_in(i);
        const bn_params<const float> bn = bn_params<const float>::of(o, w_->data().data());
        float* dgamma = grads_.data() + o.param_offset;  // then dbeta: the layout of bn_params
        float* dbeta = dgamma + c_out;
        if (opt_.sync_bn) {
            sync_bn_.backward(x, dy, dx, n_, bn.gamma, mean_[i].data(), invstd_[i].data(), bn_count_[i], dgamma, dbeta,
                              tmp_.data(), channel_splitter());
            return;
        }
        split_channels(c_out, [&](int c0, int c1) {
            k_.bn_backward(channels(x, c0, c1), channels(dy, c0, c1), channels(dx, c0, c1), n_, bn.gamma + c0,
                           mean_[i].data() + c0, invstd_[i].data() + c0, dgamma + c0, dbeta + c0, tmp_.data());
        });
    }

    // Dropout's kept mask (the factors 0 or 1 / (1 - drop)) from sample a on.
    [[nodiscard]] const float* mask(int i, int a) const {
        return saved_[i].data() + static_cast<std::size_t>(a) * program.ops[i].out.s.size();
    }

    // Zero with probability o.drop, scale the rest by 1 / (1 - drop); the mask is kept for backward.
    void forward_dropout(int i, in_view x, out_view y) {
        const op& o = program.ops[i];
        const auto scale = static_cast<float>(1.0 / (1.0 - o.drop));
        float* mask = saved_[i].data();
        const std::size_t k = o.out.s.size();
        for (int s = 0; s < n_; ++s)
            for (std::size_t j = 0; j < k; ++j) {
                const float f = rng_.uniform() < o.drop ? 0.0F : scale;
                mask[static_cast<std::size_t>(s) * k + j] = f;
                y.sample(s)[j] = x.sample(s)[j] * f;
            }
    }

    weights<Net>* w_;
    options opt_;
    rng rng_;
    cpu::thread_pool pool_;
    K k_;
    exec::layout<Net> layout_{true};  // every activation its own buffer
    std::size_t per_op_scratch_ = 0;
    std::vector<float> act_, dact_, tmp_, grads_, out_, aux_;
    std::vector<std::vector<float>> saved_, mean_, invstd_;
    std::vector<keep> keep_;
    std::vector<char> zeroed_;
    sync_batch_norm sync_bn_;      // options::sync_bn: the collectives
    std::vector<double> bn_count_;  // sync batch norm: each op's global value count
    const float* x_ = nullptr;
    int n_ = 0;
    bool backward_ready_ = false;
};

}  // namespace cpu

template <class Net>
class trainer<Net, backend::reference> : public cpu::train_executor<Net, cpu::reference_kernels> {
public:
    using cpu::train_executor<Net, cpu::reference_kernels>::train_executor;
};

template <class Net>
class trainer<Net, backend::cpu> : public cpu::train_executor<Net, cpu::simd_kernels> {
public:
    using cpu::train_executor<Net, cpu::simd_kernels>::train_executor;
};

}  // namespace ctnet
