// ctnet/cpu/runner.hpp — runs a network type on the reference CPU kernels.
//
//   weights<net> w;  init_seeded(w, 1);
//   runner<net> run{w};                              // backend::reference
//   std::vector<float> logits = run(image);          // image: N x C x H x W floats, N from its size
//   run.forward(x, y, mode::train, aux_logits);      // batch-norm batch statistics, dropout, aux head
//
// Requires: the weights outlive the runner; input size a multiple of the per-sample input size.
// Guarantees: activations live in one arena laid out by the network's static memory plan,
// allocated when the batch size changes and reused otherwise. With keep_activations every
// activation keeps its own buffer, so block_output("Mixed_5b") can be read after a forward.
// A wrong buffer size throws ctnet::error naming both sizes. With options::check_finite the
// input and every op's output are scanned, and the first non-finite value is reported with the
// layer that produced it (a slower, diagnostic mode). Training mode here is the forward
// pass only: running statistics are not updated.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../exec/arena.hpp"
#include "../exec/backend.hpp"
#include "../graph/network.hpp"
#include "../graph/params.hpp"
#include "reference.hpp"

namespace ctnet {

template <class Net>
class runner<Net, backend::reference> {
public:
    struct options {
        bool keep_activations = false;  // give every activation its own buffer (debugging, parity)
        std::uint64_t seed = 0;         // dropout masks in training mode
        bool check_finite = false;      // stop at the first layer whose output is not finite
    };

    using network_type = Net;
    static constexpr shape input = input_shape_v<Net>;
    static constexpr shape output = output_shape_v<Net>;

    explicit runner(const weights<Net>& w) : runner(w, options{}) {}
    runner(const weights<Net>& w, options o) : w_{&w}, opt_{o}, rng_{o.seed}, arena_{o.keep_activations} {}

    // Batch size is x.size() / input.size(). Returns N x output.size() floats.
    [[nodiscard]] std::vector<float> operator()(std::span<const float> x, mode m = mode::eval) {
        std::vector<float> y(arena::batch_of(x) * output.size());
        forward(x, y, m);
        return y;
    }

    // y: N x output.size(); aux (training mode, networks with an aux tap): N x aux size.
    void forward(std::span<const float> x, std::span<float> y, mode m = mode::eval, std::span<float> aux = {}) {
        const auto& p = Net::program;
        const std::size_t n = arena::batch_of(x);
        arena::expect_size("output", y.size(), n * output.size());
        if (!aux.empty()) {
            if (!p.has_aux) throw error("ctnet: runner: aux output requested but the network has no aux tap");
            if (m != mode::train) throw error("ctnet: runner: the aux output exists only in training mode");
            arena::expect_size("aux output", aux.size(), n * p.aux.s.size());
        }
        arena_.bind(x);
        n_ = arena_.batch();
        const int batch = n_;
        if (opt_.check_finite) check_finite("the input", "", in_view(p.input));
        for (int i = 0; i < p.n_ops; ++i) {
            const op& o = p.ops[i];
            if (o.train_only && m != mode::train) continue;
            run_op(o, m);
            if (opt_.check_finite) check_finite(o.path.view(), to_string(o.kind), in_view(o.out));
        }
        cpu::ref::copy(in_view(p.output), {y.data(), output.size(), output}, batch);
        if (!aux.empty()) cpu::ref::copy(in_view(p.aux), {aux.data(), p.aux.s.size(), p.aux.s}, batch);
    }

    // The output of a top-level block (a summary row, e.g. "Mixed_6e") from the last forward, for
    // all N samples; needs keep_activations.
    [[nodiscard]] std::vector<float> block_output(std::string_view name) const {
        if (!opt_.keep_activations)
            throw error("ctnet: runner: block_output needs options{.keep_activations = true}");
        const auto& p = Net::program;
        for (int b = 0; b < p.n_blocks; ++b) {
            if (p.blocks[b].name.view() != name) continue;
            const value v = p.blocks[b].out;
            std::vector<float> out(static_cast<std::size_t>(n_) * v.s.size());
            cpu::ref::copy(in_view(v), {out.data(), v.s.size(), v.s}, n_);
            return out;
        }
        throw error("ctnet: runner: no block named '" + std::string{name} + "'");
    }

    [[nodiscard]] std::size_t arena_floats() const { return arena_.floats(); }

private:
    using arena = exec::activation_arena<Net>;

    void check_finite(std::string_view where, std::string_view kind, const cpu::ref::in_view& v) const {
        const std::string bad = cpu::ref::first_non_finite(v, n_);
        if (bad.empty()) return;
        throw error(kind.empty() ? "ctnet: check-finite: " + std::string{where} + " is not finite at " + bad
                                 : "ctnet: check-finite: layer " + std::string{where} + " (" + std::string{kind} +
                                       ") first produced a non-finite value, at " + bad);
    }
    [[nodiscard]] cpu::ref::out_view view(const value& v) const { return arena_.view(v); }
    [[nodiscard]] cpu::ref::in_view in_view(const value& v) const { return arena_.in_view(v); }

    // One line per op: the reference kernel that runs it (cpu/reference.hpp).
    void run_op(const op& o, mode m) {
        const cpu::ref::in_view x = in_view(o.in);
        const cpu::ref::out_view y = view(o.out);
        const float* params = w_->data().data();
        const auto wb = weight_params<const float>::of(o, params);
        switch (o.kind) {
            case op_kind::conv: cpu::ref::conv2d(x, y, n_, wb.w, wb.bias, o.win); break;
            case op_kind::batch_norm: batch_norm(o, x, y, bn_params<const float>::of(o, params), m); break;
            case op_kind::relu: cpu::ref::relu(x, y, n_); break;
            case op_kind::max_pool: cpu::ref::max_pool(x, y, n_, o.win); break;
            case op_kind::avg_pool: cpu::ref::avg_pool(x, y, n_, o.win, o.count_pad); break;
            case op_kind::global_avg_pool: cpu::ref::global_avg_pool(x, y, n_); break;
            case op_kind::linear: cpu::ref::linear(x, y, n_, wb.w, wb.bias); break;
            case op_kind::softmax: cpu::ref::softmax(x, y, n_); break;
            case op_kind::dropout: dropout(o, x, y, m); break;
            case op_kind::channel_affine: cpu::ref::channel_affine(x, y, n_, o.scale, o.shift); break;
        }
    }

    // Running statistics in eval mode; the batch's in training mode (which this runner does not update).
    void batch_norm(const op& o, cpu::ref::in_view x, cpu::ref::out_view y, bn_params<const float> bn, mode m) const {
        if (m != mode::train) {
            cpu::ref::batch_norm(x, y, n_, bn.gamma, bn.beta, bn.mean, bn.var, o.eps);
            return;
        }
        if (static_cast<std::size_t>(n_) * o.in.s.h * o.in.s.w < 2)
            throw error("ctnet: runner: batch_norm '" + std::string{o.path.view()} +
                        "' in training mode needs more than one value per channel (batch " + std::to_string(n_) +
                        ", input " + std::to_string(o.in.s.h) + "x" + std::to_string(o.in.s.w) + ")");
        cpu::ref::batch_norm_train(x, y, n_, bn.gamma, bn.beta, o.eps);
    }

    // Identity in eval; in training, zero with probability o.drop and scale the rest by 1 / (1 - drop).
    void dropout(const op& o, cpu::ref::in_view x, cpu::ref::out_view y, mode m) {
        if (m == mode::train) {
            const auto keep = static_cast<float>(1.0 / (1.0 - o.drop));
            for (int i = 0; i < n_; ++i)
                for (std::size_t j = 0; j < x.s.size(); ++j)
                    y.sample(i)[j] = rng_.uniform() < o.drop ? 0.0F : x.sample(i)[j] * keep;
        } else if (x.data != y.data) {
            cpu::ref::copy(x, y, n_);
        }
    }

    const weights<Net>* w_;
    options opt_;
    rng rng_;
    arena arena_;
    int n_ = 0;
};

}  // namespace ctnet
