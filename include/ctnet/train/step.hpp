// ctnet/train/step.hpp — one step of the paper's recipe on a trainer.
//
//   recipe r{.label_smoothing = 0.1, .aux_weight = 0.4, .weight_decay = 4e-5, .clip_norm = 2.0};
//   step_result s = train_step(t, opt, ranges, images, labels, r, lr, &ema);
//
// forward (training mode) -> label-smoothed cross-entropy on the logits plus aux_weight times the
// same on the aux logits (networks with an aux head) -> backward -> clipping (by global norm,
// then by value, when set) -> optimizer step with weight decay -> moving average.
// Requires: labels in [0, classes); the network's output is its logits (no softmax layer).
// Guarantees: a non-finite logit or gradient throws ctnet::error naming the first sample (or
// tensor) that is not finite, before the parameters, the optimizer state or the moving average
// change (the forward pass has already updated the BN running statistics and drawn dropout
// masks). Parameters that are no longer finite after the update throw too, naming the tensor:
// that state is unusable and must not be saved; keep the last checkpoint.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../exec/backend.hpp"
#include "../graph/network.hpp"
#include "loss.hpp"
#include "optim.hpp"

namespace ctnet {

struct recipe {
    double label_smoothing = 0.1;  // the paper's e = 0.1
    double aux_weight = 0.4;       // weight of the aux head's loss (0: head unused)
    double weight_decay = 4e-5;
    double clip_norm = 2.0;        // global-norm clipping threshold, 0: off
    double clip_value = 0.0;       // per-value clipping, 0: off
};

struct step_result {
    double loss = 0.0;       // main + aux_weight * aux
    double main_loss = 0.0;
    double aux_loss = 0.0;   // unweighted
    double grad_norm = 0.0;  // global norm before clipping
    int correct = 0;         // main-head top-1 hits in the batch
    double comm_seconds = 0.0;  // data_parallel_step: time blocked in collectives after backward
};

// The first trainable tensor with a non-finite value in g (gradients or parameters, laid out as
// weights<Net>), or an empty string.
template <class Net>
std::string first_non_finite(std::span<const float> g) {
    for (const tensor_info& t : weights<Net>::tensors()) {
        if (!t.trainable) continue;
        for (std::size_t j = t.offset; j < t.offset + t.count; ++j)
            if (!std::isfinite(g[j])) return t.name + " (element " + std::to_string(j - t.offset) + ", value " +
                                             std::to_string(g[j]) + ")";
    }
    return {};
}

// The halves of train_step, shared with data_parallel_step (train/distributed.hpp).
// step_forward: forward pass, losses and their gradients (dlogits, daux: resized here).
template <class Net, class B>
step_result step_forward(trainer<Net, B>& t, std::span<const float> x, std::span<const int> labels, const recipe& r,
                         std::vector<float>& dlogits, std::vector<float>& daux) {
    constexpr int classes = static_cast<int>(output_shape_v<Net>.size());
    t.forward(x);
    const std::size_t n = static_cast<std::size_t>(t.batch());
    if (labels.size() != n)
        throw error("ctnet: train_step: " + std::to_string(labels.size()) + " labels for a batch of " + std::to_string(n));
    step_result s;
    dlogits.assign(n * classes, 0.0F);
    daux.clear();
    const loss_value main = softmax_cross_entropy(t.logits(), labels, classes, {.smoothing = r.label_smoothing}, dlogits);
    s.main_loss = main.loss;
    s.correct = main.correct;
    s.loss = main.loss;
    if constexpr (Net::program.has_aux) {
        if (r.aux_weight > 0.0) {
            constexpr int aux_classes = static_cast<int>(Net::program.aux.s.size());
            daux.assign(n * aux_classes, 0.0F);
            const loss_value aux = softmax_cross_entropy(t.aux_logits(), labels, aux_classes,
                                                         {.smoothing = r.label_smoothing, .weight = r.aux_weight}, daux);
            s.aux_loss = aux.loss / r.aux_weight;
            s.loss += aux.loss;
        }
    }
    return s;
}

// step_update: given the gradients in t.grads(), their norm into s, the finiteness checks,
// clipping, the optimizer step and the moving average.
template <class Net, class B>
void step_update(trainer<Net, B>& t, optimizer& opt, std::span<const param_range> ranges, const recipe& r, double lr,
                 moving_average* ema, step_result& s) {
    s.grad_norm = global_norm(t.grads(), ranges);
    if (!std::isfinite(s.grad_norm)) {
        const std::string where = first_non_finite<Net>(t.grads());
        throw error("ctnet: train_step: non-finite gradient" + (where.empty() ? std::string{} : " in " + where) +
                    "; parameters left unchanged");
    }
    if (r.clip_norm > 0.0) clip_by_global_norm(t.grads(), ranges, r.clip_norm, s.grad_norm);
    if (r.clip_value > 0.0) clip_by_value(t.grads(), ranges, r.clip_value);
    if (!opt.step(t.params().data(), t.grads(), ranges, lr, r.weight_decay))  // a parameter became non-finite
        throw error("ctnet: train_step: the update made a parameter non-finite: " + first_non_finite<Net>(t.params().data()) +
                    "; this state must not be saved");
    if (ema) ema->update(t.params().data());
}

template <class Net, class B>
step_result train_step(trainer<Net, B>& t, optimizer& opt, std::span<const param_range> ranges,
                       std::span<const float> x, std::span<const int> labels, const recipe& r, double lr,
                       moving_average* ema = nullptr) {
    std::vector<float> dlogits, daux;
    step_result s = step_forward(t, x, labels, r, dlogits, daux);
    t.zero_grads();
    t.backward(dlogits, daux);
    step_update(t, opt, ranges, r, lr, ema, s);
    return s;
}

// A trainer whose parameters, gradients, optimizer state and moving average live on a device
// (trainer<Net, backend::cuda>): train_step hands it the whole step (its step_settings), and
// sync_host copies the state back for a checkpoint or an evaluation.
template <class T>
concept device_trainer = T::device_resident;

// The same step on the device (with options::comm, data parallel: the gradients averaged over the
// ranks and the losses and hits their means and sum, as data_parallel_step). The optimizer's and
// the average's host vectors are the device state's shadows: set from them on the first step (a
// resumed run), stale until sync_host. Every optimizer runs there (train/update.hpp's arithmetic);
// clipping by global norm, not by value; over every trainable tensor (ranges must be
// trainable_ranges<Net>()).
template <class Net, class B>
    requires device_trainer<trainer<Net, B>>
step_result train_step(trainer<Net, B>& t, optimizer& opt, std::span<const param_range> ranges, std::span<const float> x,
                       std::span<const int> labels, const recipe& r, double lr, moving_average* ema = nullptr) {
    const std::vector<param_range> all = trainable_ranges<Net>();
    if (!std::equal(ranges.begin(), ranges.end(), all.begin(), all.end(),
                    [](const param_range& a, const param_range& b) { return a.offset == b.offset && a.count == b.count; }))
        throw error("ctnet: train_step: on the GPU every trainable tensor is updated (trainable_ranges<Net>()); "
                    "other ranges (frozen layers) are not supported there yet");
    if (r.clip_value > 0.0) throw error("ctnet: train_step: clipping by value does not run on the GPU yet");
    if (!t.has_optimizer_state() && !opt.momentum().empty()) t.set_optimizer_state(opt.momentum(), opt.mean_square());
    if (ema != nullptr && !t.has_average() && !ema->shadow().empty()) t.set_average(ema->shadow());
    const bool counted = ema != nullptr && !ema->shadow().empty();  // the first update copies and is not counted
    const typename trainer<Net, B>::step_settings st{
        .smoothing = r.label_smoothing, .aux_weight = Net::program.has_aux ? r.aux_weight : 0.0,
        .clip_norm = r.clip_norm, .update = opt.update(), .rule = opt.rule(lr, r.weight_decay), .average = ema != nullptr,
        .average_decay = counted ? static_cast<float>(ema->decay_at(ema->updates())) : 0.0F};
    const auto d = t.step(x, labels, st);
    if (d.bad_sample >= 0)
        throw error("ctnet: softmax_cross_entropy: sample " + std::to_string(d.bad_sample) +
                    " has a non-finite logit; parameters left unchanged");
    if (d.bad_elsewhere)
        throw error("ctnet: softmax_cross_entropy: another rank's shard has a sample with a non-finite logit; "
                    "parameters left unchanged");
    if (!d.grads_finite) {
        const std::string where = first_non_finite<Net>(t.grads());
        throw error("ctnet: train_step: non-finite gradient" + (where.empty() ? std::string{} : " in " + where) +
                    "; parameters left unchanged");
    }
    if (opt.momentum().empty()) {  // the host shadows now exist; to_host fills them
        opt.momentum().assign(Net::program.storage, 0.0F);
        opt.mean_square().assign(Net::program.storage, initial_mean_square(opt.update()));
    }
    opt.set_steps(opt.steps() + 1);
    if (!d.params_finite) {
        t.params_to_host();
        throw error("ctnet: train_step: the update made a parameter non-finite: " + first_non_finite<Net>(t.params().data()) +
                    "; this state must not be saved");
    }
    if (ema != nullptr) {
        if (counted) ema->set_updates(ema->updates() + 1);
        else ema->shadow().assign(Net::program.storage, 0.0F);
    }
    step_result s;
    s.main_loss = d.main_loss;
    s.aux_loss = st.aux_weight > 0.0 ? d.aux_loss / st.aux_weight : 0.0;
    s.loss = d.main_loss + d.aux_loss;
    s.grad_norm = d.grad_norm;
    s.correct = d.correct;
    s.comm_seconds = d.comm_seconds;
    return s;
}

// The trainer's state to the host: a no-op for host trainers; a device trainer copies its
// parameters (into t.params()), the optimizer state and the moving average back.
template <class Net, class B>
void sync_host(trainer<Net, B>& t, optimizer& opt, moving_average* ema) {
    if constexpr (device_trainer<trainer<Net, B>>) t.to_host(&opt.momentum(), &opt.mean_square(), ema ? &ema->shadow() : nullptr);
}

}  // namespace ctnet
