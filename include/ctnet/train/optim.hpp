// ctnet/train/optim.hpp — optimizers, the learning-rate schedule, gradient clipping and a moving
// average of the parameters: the paper's training recipe.
//
//   auto ranges = trainable_ranges<net>();                       // skips running statistics
//   optimizer opt = optimizer::rmsprop({.decay = 0.9, .momentum = 0.9, .eps = 1.0});
//   double norm = clip_by_global_norm(t.grads(), ranges, 2.0);   // the paper's threshold
//   opt.step(w.data(), t.grads(), ranges, schedule.at(epoch), weight_decay);
//   average.update(w.data());                                   // ema: evaluate with its shadow
//
// Semantics (each as the framework named, tested step by step in tests/test_train.cpp):
//   sgd              torch.optim.SGD: g += wd * p; buf = g (first step) or momentum * buf + g;
//                    p -= lr * (nesterov ? g + momentum * buf : buf)
//   rmsprop, tensorflow   tf.train.RMSPropOptimizer: ms starts at 1; ms = decay * ms + (1 - decay) * g^2;
//                    mom = momentum * mom + lr * g / sqrt(ms + eps); p -= mom  (the paper: decay 0.9,
//                    momentum 0.9, eps 1.0)
//   rmsprop, pytorch torch.optim.RMSprop: ms starts at 0; ms = alpha * ms + (1 - alpha) * g^2;
//                    buf = momentum * buf + g / (sqrt(ms) + eps); p -= lr * buf
//   moving_average   tf.train.ExponentialMovingAverage(decay, num_updates): shadow = d * shadow +
//                    (1 - d) * p, d = min(decay, (1 + n) / (10 + n)), n = averaging updates before
//                    this one; {.warmup = false}: d = decay (TF without num_updates)
// Weight decay is added to the gradient inside step(), after clipping, as torch does. The
// per-element arithmetic of the three rules is train/update.hpp's, which the GPU trainer runs too.
// Requires: params / grads of one network's storage, ranges from trainable_ranges<Net>().
// Guarantees: entries outside the ranges (running statistics) are never touched; state is plain
// float vectors with names, so checkpoints save and restore it exactly.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../graph/params.hpp"
#include "update.hpp"

namespace ctnet {

struct param_range {
    std::size_t offset = 0, count = 0;
};

// The trainable tensors of a network (conv / linear weights and biases, batch-norm weight and bias).
template <class Net>
std::vector<param_range> trainable_ranges() {
    std::vector<param_range> r;
    for (const tensor_info& t : weights<Net>::tensors())
        if (t.trainable) r.push_back({t.offset, t.count});
    return r;
}

// sqrt(sum of g^2) over the ranges, in double: 8 running sums (element j into sum j mod 8 of its
// range, a fixed order the compiler vectorises), added at the end.
inline double global_norm(std::span<const float> g, std::span<const param_range> ranges) {
    double lane[8] = {};
    for (const param_range& r : ranges) {
        const float* v = g.data() + r.offset;
        std::size_t j = 0;
        for (; j + 8 <= r.count; j += 8)
            for (std::size_t k = 0; k < 8; ++k) lane[k] += static_cast<double>(v[j + k]) * v[j + k];
        for (; j < r.count; ++j) lane[j % 8] += static_cast<double>(v[j]) * v[j];
    }
    double s = 0.0;
    for (const double l : lane) s += l;
    return std::sqrt(s);
}

// Scales the gradients by max_norm / (norm + 1e-6) when the norm exceeds max_norm (torch's
// clip_grad_norm_). Returns the norm before clipping. `norm`: the gradients' global norm when
// the caller has it already (negative: computed here).
inline double clip_by_global_norm(std::span<float> g, std::span<const param_range> ranges, double max_norm,
                                  double norm = -1.0) {
    if (norm < 0.0) norm = global_norm(g, ranges);
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
        for (const param_range& r : ranges)
            for (std::size_t j = r.offset; j < r.offset + r.count; ++j) g[j] = static_cast<float>(g[j] * coef);
    return norm;
}

// Clamps every gradient to [-limit, limit] (torch's clip_grad_value_).
inline void clip_by_value(std::span<float> g, std::span<const param_range> ranges, double limit) {
    const auto l = static_cast<float>(limit);
    for (const param_range& r : ranges)
        for (std::size_t j = r.offset; j < r.offset + r.count; ++j) g[j] = std::clamp(g[j], -l, l);
}

// lr(epoch) = base * rate ^ floor(epoch / every) (staircase) or rate ^ (epoch / every) (smooth):
// the paper's "decayed every two epochs using an exponential rate of 0.94".
struct exponential_decay {
    double base = 0.045;
    double rate = 0.94;
    double every = 2.0;  // epochs
    bool staircase = true;
    [[nodiscard]] double at(double epoch) const {
        const double e = epoch / every;
        return base * std::pow(rate, staircase ? std::floor(e) : e);
    }
};

// Cosine annealing without restarts (Loshchilov & Hutter, SGDR): base at t = 0, falling along
// half a cosine to `floor` at t = total (t in steps or epochs, as the caller counts), then flat.
struct cosine_decay {
    double base = 0.045;
    double total = 1.0;
    double floor = 0.0;
    [[nodiscard]] double at(double t) const {
        const double f = std::clamp(t / total, 0.0, 1.0);
        return floor + (base - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * f));
    }
};

struct sgd_options {
    double momentum = 0.9;
    bool nesterov = false;
};

enum class rmsprop_style : unsigned char { tensorflow, pytorch };

struct rmsprop_options {
    double decay = 0.9;     // TF's decay, torch's alpha
    double momentum = 0.9;
    double eps = 1.0;       // the paper's epsilon (inside the square root for TF, outside for torch)
    rmsprop_style style = rmsprop_style::tensorflow;
};

class optimizer {
public:
    enum class kind : unsigned char { sgd, rmsprop };

    static optimizer sgd(sgd_options o = {}) {
        optimizer r{kind::sgd};
        r.sgd_ = o;
        return r;
    }
    static optimizer rmsprop(rmsprop_options o = {}) {
        optimizer r{kind::rmsprop};
        r.rms_ = o;
        return r;
    }

    // One update of params from grads over the ranges, with learning rate lr. Returns whether
    // every updated parameter is finite (checked in the same pass).
    bool step(std::span<float> params, std::span<const float> grads, std::span<const param_range> ranges, double lr,
              double weight_decay = 0.0) {
        if (params.size() != grads.size())
            throw error("ctnet: optimizer: " + std::to_string(params.size()) + " parameters but " +
                        std::to_string(grads.size()) + " gradients");
        if (momentum_.empty() && square_.empty()) {
            momentum_.assign(params.size(), 0.0F);
            square_.assign(params.size(), initial_mean_square(update()));
        } else if (momentum_.size() != params.size() || square_.size() != params.size()) {
            throw error("ctnet: optimizer: state for " + std::to_string(momentum_.size()) + " parameters (mean square " +
                        std::to_string(square_.size()) + "), given " + std::to_string(params.size()));
        }
        const update_rule u = rule(lr, weight_decay);
        unsigned bad = 0;  // an integer OR: a reduction the compiler may vectorise (a float sum it may not reorder)
        // One loop per rule (train/update.hpp, which the GPU trainer's kernel runs too), each
        // branch-free per element so the compiler vectorises it (the project's programs build
        // with -fno-math-errno, which lets sqrt vectorise).
        const auto over = [&]<update_kind K>() {
            for (const param_range& r : ranges) {
                float* p = params.data() + r.offset;
                const float* g = grads.data() + r.offset;
                float* mom = momentum_.data() + r.offset;
                float* ms = square_.data() + r.offset;
                for (std::size_t j = 0; j < r.count; ++j) {
                    p[j] = update_one<K>(u, p[j], g[j], ms[j], mom[j]);
                    bad |= static_cast<unsigned>(!(std::fabs(p[j]) <= std::numeric_limits<float>::max()));
                }
            }
        };
        switch (update()) {
            case update_kind::sgd: over.template operator()<update_kind::sgd>(); break;
            case update_kind::rmsprop_tf: over.template operator()<update_kind::rmsprop_tf>(); break;
            case update_kind::rmsprop_torch: over.template operator()<update_kind::rmsprop_torch>(); break;
        }
        ++steps_;
        return bad == 0;
    }

    // The rule of train/update.hpp this optimizer runs, and its settings for one step (lr,
    // weight decay); the GPU trainer's update kernel takes the same two.
    [[nodiscard]] update_kind update() const {
        if (kind_ == kind::sgd) return update_kind::sgd;
        return rms_.style == rmsprop_style::tensorflow ? update_kind::rmsprop_tf : update_kind::rmsprop_torch;
    }
    [[nodiscard]] update_rule rule(double lr, double weight_decay) const {
        update_rule u{.lr = lr, .weight_decay = weight_decay};
        if (kind_ == kind::sgd) {
            u.momentum = sgd_.momentum;
            u.nesterov = sgd_.nesterov;
            u.first = steps_ == 0;
        } else {
            u.momentum = rms_.momentum;
            u.decay = rms_.decay;
            u.eps = rms_.eps;
        }
        return u;
    }
    [[nodiscard]] kind type() const { return kind_; }
    [[nodiscard]] rmsprop_options rmsprop_settings() const { return rms_; }
    [[nodiscard]] sgd_options sgd_settings() const { return sgd_; }
    [[nodiscard]] std::int64_t steps() const { return steps_; }
    // State for checkpoints: the momentum buffer and (RMSProp) the mean square, one float per parameter.
    [[nodiscard]] std::vector<float>& momentum() { return momentum_; }
    [[nodiscard]] std::vector<float>& mean_square() { return square_; }
    void set_steps(std::int64_t s) { steps_ = s; }

private:
    explicit optimizer(kind k) : kind_{k} {}
    kind kind_;
    sgd_options sgd_{};
    rmsprop_options rms_{};
    std::vector<float> momentum_, square_;
    std::int64_t steps_ = 0;
};

struct moving_average_options {
    // TF's num_updates warm-up (tf.train.ExponentialMovingAverage(decay, num_updates)): the decay
    // of an update is min(decay, (1 + n) / (10 + n)), so the average follows early training
    // instead of remembering the initial weights for ~1 / (1 - decay) steps. false: the fixed decay.
    bool warmup = true;
};

// shadow = d * shadow + (1 - d) * params over the whole storage (trainable tensors and running
// statistics, as TF's ExponentialMovingAverage over variables and moving averages).
//
//   moving_average ema{0.999};                        // warm-up on (TF with num_updates)
//   moving_average fixed{0.999, {.warmup = false}};   // d = 0.999 from the first update on
//
// The first update() copies params into the empty shadow (TF's shadow starts at the variable's
// initial value) and is not counted. Every later update is an averaging update; the k-th of them
// (k = 1, 2, ...) uses n = k - 1, the number of averaging updates applied before it (updates()):
//     d_k = warmup ? min(decay, (1 + n) / (10 + n)) : decay
// so d_1 = 0.1 (the first update keeps 10 % of the initial weights), d_2 = 2/11, d_3 = 3/12, ...,
// reaching decay = 0.999 at n = 8990 (9.6 epochs of ctnet train's 937 steps at batch 64). This
// is TF's formula with num_updates = the global step read before the training step increments
// it (train_step updates the average once per optimizer step). d is computed in double and
// applied in float. The count is state: checkpoints save it as the metadata field "ema_updates"
// (train/checkpoint.hpp).
class moving_average {
public:
    explicit moving_average(double decay = 0.9999, moving_average_options o = {}) : decay_{decay}, opts_{o} {}
    void update(std::span<const float> params) {
        if (shadow_.empty()) {
            shadow_.assign(params.begin(), params.end());
            return;
        }
        if (shadow_.size() != params.size())
            throw error("ctnet: moving_average: " + std::to_string(shadow_.size()) + " floats, given " +
                        std::to_string(params.size()));
        const auto d = static_cast<float>(decay_at(updates_));
        for (std::size_t j = 0; j < shadow_.size(); ++j) shadow_[j] = d * shadow_[j] + (1.0F - d) * params[j];
        ++updates_;
    }
    // The decay of the averaging update that has n averaging updates before it.
    [[nodiscard]] double decay_at(std::int64_t n) const {
        if (!opts_.warmup) return decay_;
        const auto x = static_cast<double>(n);
        return std::min(decay_, (1.0 + x) / (10.0 + x));
    }
    [[nodiscard]] std::vector<float>& shadow() { return shadow_; }
    [[nodiscard]] const std::vector<float>& shadow() const { return shadow_; }
    [[nodiscard]] double decay() const { return decay_; }  // the configured (largest) decay
    [[nodiscard]] bool warmup() const { return opts_.warmup; }
    // Averaging updates applied so far (the initialising copy not counted); checkpoints restore it.
    [[nodiscard]] std::int64_t updates() const { return updates_; }
    void set_updates(std::int64_t n) { updates_ = n; }

private:
    double decay_;
    moving_average_options opts_;
    std::vector<float> shadow_;
    std::int64_t updates_ = 0;
};

}  // namespace ctnet
