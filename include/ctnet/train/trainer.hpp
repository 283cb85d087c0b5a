// ctnet/train/trainer.hpp — backpropagation through a network type.
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
// batch norm input, a ReLU output), the trainer keeps a copy. A value read by several branches
// collects one gradient contribution per reader; concat slices route gradients by construction.
// Backends: backend::reference runs cpu/reference.hpp + cpu/backward.hpp loops (the oracle);
// backend::cpu runs convolutions as packed GEMMs (cpu/gemm.hpp) on a thread pool.
// Requires: the weights outlive the trainer; more than one value per channel at every batch norm.
// Guarantees: gradients are those of the forward pass just run (tested against finite
// differences and torch autograd); allocation only when the batch size changes.
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
#include "../cpu/backward.hpp"
#include "../cpu/gemm.hpp"
#include "../cpu/reference.hpp"
#include "../cpu/runner.hpp"
#include "../cpu/thread_pool.hpp"
#include "../graph/network.hpp"
#include "../graph/params.hpp"

namespace ctnet {

template <class Net, class Backend = backend::reference>
class trainer {
    static_assert(std::is_same_v<Backend, backend::reference> || std::is_same_v<Backend, backend::cpu>,
                  "ctnet::trainer: Backend must be backend::reference or backend::cpu");

public:
    struct options {
        int threads = 1;            // backend::cpu: threads of the GEMMs
        std::uint64_t seed = 0;     // dropout masks
        double bn_momentum = 0.1;   // running = (1 - m) * running + m * batch (torch's default)
    };

    using network_type = Net;
    static constexpr const auto& program = Net::program;
    static constexpr shape input = input_shape_v<Net>;
    static constexpr shape output = output_shape_v<Net>;
    static constexpr shape aux_output = Net::program.has_aux ? Net::program.aux.s : shape{};

    explicit trainer(weights<Net>& w) : trainer(w, options{}) {}
    trainer(weights<Net>& w, options o) : w_{&w}, opt_{o}, rng_{o.seed}, pool_{o.threads} {
        const auto& p = program;
        offsets_.assign(static_cast<std::size_t>(p.n_bufs), 0);
        for (int b = 0; b < p.n_bufs; ++b) {
            if (p.bufs[b].input) continue;
            offsets_[b] = per_sample_;
            per_sample_ += p.bufs[b].s.size();
        }
        grads_.assign(p.storage, 0.0F);
        saved_.resize(static_cast<std::size_t>(p.n_ops));
        keep_.assign(static_cast<std::size_t>(p.n_ops), keep::none);
        mean_.resize(static_cast<std::size_t>(p.n_ops));
        invstd_.resize(static_cast<std::size_t>(p.n_ops));
        std::size_t col = 0, packed = 0, act = 0;
        for (int i = 0; i < p.n_ops; ++i) {
            const op& q = p.ops[i];
            act = std::max(act, q.out.s.size());
            switch (q.kind) {
                case op_kind::conv: {
                    const int k = q.in.s.c * q.win.kh * q.win.kw, hw = q.out.s.h * q.out.s.w;
                    if (!cpu::is_pointwise(q.win)) col = std::max(col, static_cast<std::size_t>(k) * hw);
                    packed = std::max({packed, cpu::gemm_packed_a_floats(q.out.s.c, k),
                                       cpu::gemm_packed_a_floats(q.out.s.c, hw), cpu::gemm_packed_a_floats(k, q.out.s.c)});
                    if (clobbered(q.in, i, true)) keep_[i] = keep::input;
                    break;
                }
                case op_kind::linear:
                case op_kind::max_pool:
                case op_kind::batch_norm:
                    if (clobbered(q.in, i, true)) keep_[i] = keep::input;
                    if (q.kind == op_kind::batch_norm) {
                        mean_[i].assign(static_cast<std::size_t>(q.out.s.c), 0.0F);
                        invstd_[i].assign(static_cast<std::size_t>(q.out.s.c), 0.0F);
                    }
                    break;
                case op_kind::relu:
                case op_kind::softmax:
                    if (clobbered(q.out, i, false)) keep_[i] = keep::output;
                    break;
                default: break;
            }
        }
        if constexpr (fast) {
            col_.assign(col, 0.0F);
            packed_.assign(packed, 0.0F);
            scratch_.assign(static_cast<std::size_t>(pool_.size()) * cpu::gemm_thread_scratch, 0.0F);
        }
        per_op_scratch_ = act;
    }

    // Training-mode forward pass over x.size() / input.size() samples.
    void forward(std::span<const float> x) {
        const auto& p = program;
        if (x.empty() || x.size() % input.size() != 0)
            throw error("ctnet: trainer: input has " + std::to_string(x.size()) +
                        " floats, not a positive multiple of one sample's " + std::to_string(input.size()));
        const auto n = static_cast<int>(x.size() / input.size());
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
        const auto& p = program;
        if (!backward_ready_) throw error("ctnet: trainer: backward() needs a forward() first");
        expect("output gradient", dlogits.size(), static_cast<std::size_t>(n_) * output.size());
        std::fill(dact_.begin(), dact_.end(), 0.0F);
        add_into(p.output, dlogits);
        if (!daux.empty()) {
            if (!p.has_aux) throw error("ctnet: trainer: an aux gradient was given but the network has no aux head");
            expect("aux gradient", daux.size(), static_cast<std::size_t>(n_) * p.aux.s.size());
            add_into(p.aux, daux);
        }
        for (int i = p.n_ops - 1; i >= 0; --i) run_backward(i);
    }

    [[nodiscard]] std::span<float> grads() { return grads_; }
    [[nodiscard]] std::span<const float> grads() const { return grads_; }
    void zero_grads() { std::fill(grads_.begin(), grads_.end(), 0.0F); }
    [[nodiscard]] weights<Net>& params() { return *w_; }
    [[nodiscard]] int threads() const { return pool_.size(); }
    // The generator of the dropout masks (its state is part of a checkpoint).
    [[nodiscard]] rng& generator() { return rng_; }

private:
    static constexpr bool fast = std::is_same_v<Backend, backend::cpu>;
    enum class keep : unsigned char { none, input, output };
    using in_view = cpu::ref::in_view;
    using out_view = cpu::ref::out_view;

    // Does an op after `after` (or `after` itself, when `self`) overwrite v in place?
    static constexpr bool clobbered(const value& v, int after, bool self) {
        const auto& p = program;
        if (p.bufs[v.buf].input) return false;
        for (int j = self ? after : after + 1; j < p.n_ops; ++j) {
            const op& q = p.ops[j];
            if (q.out.buf != v.buf || q.in.buf != q.out.buf) continue;  // only in-place ops overwrite
            const std::size_t a0 = static_cast<std::size_t>(q.out.offset), a1 = a0 + q.out.s.size();
            const std::size_t b0 = static_cast<std::size_t>(v.offset), b1 = b0 + v.s.size();
            if (a0 < b1 && b0 < a1) return true;
        }
        return false;
    }

    void resize(int n) {
        n_ = n;
        const auto nn = static_cast<std::size_t>(n);
        act_.assign(nn * per_sample_, 0.0F);
        dact_.assign(nn * per_sample_, 0.0F);
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
        out_.assign(nn * output.size(), 0.0F);
        if constexpr (Net::program.has_aux) aux_.assign(nn * Net::program.aux.s.size(), 0.0F);
    }

    [[nodiscard]] out_view view(const value& v, std::vector<float>& mem) const {
        const buffer& b = program.bufs[v.buf];
        float* base = b.input ? const_cast<float*>(x_) : mem.data() + offsets_[v.buf] * static_cast<std::size_t>(n_);
        return {base + v.offset, b.s.size(), v.s};
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
    void add_into(const value& v, std::span<const float> g) {
        const out_view d = grad(v);
        for (int i = 0; i < n_; ++i)
            for (std::size_t j = 0; j < v.s.size(); ++j) d.sample(i)[j] += g[static_cast<std::size_t>(i) * v.s.size() + j];
    }
    static void expect(const char* what, std::size_t got, std::size_t want) {
        if (got != want)
            throw error(std::string{"ctnet: trainer: "} + what + " has " + std::to_string(got) + " floats, expected " +
                        std::to_string(want));
    }
    [[nodiscard]] cpu::conv_workspace workspace() { return {col_.data(), packed_.data(), scratch_.data()}; }

    void run_forward(int i) {
        const op& o = program.ops[i];
        if (keep_[i] == keep::input) keep_copy(i, cact(o.in));
        const in_view x = cact(o.in);
        const out_view y = act(o.out);
        float* w = w_->data().data() + o.param_offset;
        const int c_out = o.out.s.c;
        switch (o.kind) {
            case op_kind::conv: {
                const std::size_t nw = static_cast<std::size_t>(c_out) * o.in.s.c * o.win.kh * o.win.kw;
                const float* bias = o.bias ? w + nw : nullptr;
                if constexpr (fast) {
                    cpu::conv_forward_gemm(x.data, x.stride, x.s, y.data, y.stride, y.s, n_, w, bias, o.win, workspace(),
                                           pool_);
                } else {
                    cpu::ref::conv2d(x, y, n_, w, bias, o.win);
                }
                break;
            }
            case op_kind::batch_norm: {
                const auto c = static_cast<std::size_t>(c_out);
                const std::size_t m = static_cast<std::size_t>(n_) * o.in.s.h * o.in.s.w;
                if (m < 2)
                    throw error("ctnet: trainer: batch_norm '" + std::string{o.path.view()} +
                                "' needs more than one value per channel (batch " + std::to_string(n_) + ", input " +
                                std::to_string(o.in.s.h) + "x" + std::to_string(o.in.s.w) + ")");
                float* mean = mean_[i].data();
                float* var = invstd_[i].data();  // the batch variance, then 1 / sqrt(var + eps)
                cpu::ref::batch_norm_train(x, y, n_, w, w + c, o.eps, mean, var);
                const auto mom = static_cast<float>(opt_.bn_momentum);
                const float unbias = static_cast<float>(m) / static_cast<float>(m - 1);
                for (std::size_t k = 0; k < c; ++k) {
                    w[2 * c + k] = (1.0F - mom) * w[2 * c + k] + mom * mean[k];
                    w[3 * c + k] = (1.0F - mom) * w[3 * c + k] + mom * var[k] * unbias;
                    var[k] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[k]) + o.eps));
                }
                break;
            }
            case op_kind::relu: cpu::ref::relu(x, y, n_); break;
            case op_kind::max_pool: cpu::ref::max_pool(x, y, n_, o.win); break;
            case op_kind::avg_pool: cpu::ref::avg_pool(x, y, n_, o.win, o.count_pad); break;
            case op_kind::global_avg_pool: cpu::ref::global_avg_pool(x, y, n_); break;
            case op_kind::linear: {
                const std::size_t nw = static_cast<std::size_t>(c_out) * o.in.s.size();
                cpu::ref::linear(x, y, n_, w, o.bias ? w + nw : nullptr);
                break;
            }
            case op_kind::softmax: cpu::ref::softmax(x, y, n_); break;
            case op_kind::dropout: {
                const auto scale = static_cast<float>(1.0 / (1.0 - o.eps));
                float* mask = saved_[i].data();
                const std::size_t k = o.out.s.size();
                for (int s = 0; s < n_; ++s)
                    for (std::size_t j = 0; j < k; ++j) {
                        const float f = rng_.uniform() < o.eps ? 0.0F : scale;
                        mask[static_cast<std::size_t>(s) * k + j] = f;
                        y.sample(s)[j] = x.sample(s)[j] * f;
                    }
                break;
            }
            case op_kind::channel_affine: cpu::ref::channel_affine(x, y, n_, o.scale, o.shift); break;
        }
        if (keep_[i] == keep::output) keep_copy(i, cact(o.out));
    }

    void run_backward(int i) {
        const op& o = program.ops[i];
        const out_view gy = grad(o.out);
        const in_view dy{gy.data, gy.stride, gy.s};
        const out_view dx = grad(o.in);
        const float* w = w_->data().data() + o.param_offset;
        float* dw = grads_.data() + o.param_offset;
        const int c_out = o.out.s.c;
        switch (o.kind) {
            case op_kind::conv: {
                const std::size_t nw = static_cast<std::size_t>(c_out) * o.in.s.c * o.win.kh * o.win.kw;
                const in_view x = needed_in(i);
                float* db = o.bias ? dw + nw : nullptr;
                if constexpr (fast) {
                    cpu::conv_backward_gemm(x.data, x.stride, x.s, dy.data, dy.stride, dy.s, dx.data, dx.stride, n_, w,
                                            dw, db, o.win, workspace(), pool_);
                } else {
                    cpu::ref::conv2d_backward(x, dy, dx, n_, w, dw, db, o.win);
                }
                break;
            }
            case op_kind::batch_norm: {
                const in_view x = needed_in(i);
                const auto c = static_cast<std::size_t>(c_out);
                const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
                const std::size_t k = x.s.size();
                for (int s = 0; s < n_; ++s)
                    for (std::size_t ch = 0; ch < c; ++ch)
                        for (std::size_t j = 0; j < plane; ++j)
                            tmp_[s * k + ch * plane + j] = (x.sample(s)[ch * plane + j] - mean_[i][ch]) * invstd_[i][ch];
                cpu::ref::batch_norm_train_backward({tmp_.data(), k, x.s}, dy, dx, n_, w, invstd_[i].data(), dw, dw + c);
                break;
            }
            case op_kind::relu: cpu::ref::relu_backward(needed_out(i), dy, dx, n_); break;
            case op_kind::max_pool: cpu::ref::max_pool_backward(needed_in(i), dy, dx, n_, o.win); break;
            case op_kind::avg_pool:
                if (dx.data) cpu::ref::avg_pool_backward(dy, dx, n_, o.win, o.count_pad);
                break;
            case op_kind::global_avg_pool:
                if (dx.data) cpu::ref::global_avg_pool_backward(dy, dx, n_);
                break;
            case op_kind::linear: {
                const std::size_t nw = static_cast<std::size_t>(c_out) * o.in.s.size();
                cpu::ref::linear_backward(needed_in(i), dy, dx, n_, w, dw, o.bias ? dw + nw : nullptr);
                break;
            }
            case op_kind::softmax:
                if (dx.data) cpu::ref::softmax_backward(needed_out(i), dy, dx, n_);
                break;
            case op_kind::dropout:
                if (dx.data) cpu::ref::scale_backward(saved_[i].data(), dy, dx, n_);
                break;
            case op_kind::channel_affine:
                if (dx.data) cpu::ref::channel_affine_backward(dy, dx, n_, o.scale);
                break;
        }
    }

    weights<Net>* w_;
    options opt_;
    rng rng_;
    cpu::thread_pool pool_;
    std::vector<std::size_t> offsets_;
    std::size_t per_sample_ = 0, per_op_scratch_ = 0;
    std::vector<float> act_, dact_, tmp_, grads_, out_, aux_;
    std::vector<std::vector<float>> saved_, mean_, invstd_;
    std::vector<keep> keep_;
    std::vector<float> col_, packed_, scratch_;
    const float* x_ = nullptr;
    int n_ = 0;
    bool backward_ready_ = false;
};

}  // namespace ctnet
