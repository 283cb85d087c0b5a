// ctnet/train/update.hpp — the optimizers' arithmetic for one parameter, written once for both
// backends: optimizer::step (train/optim.hpp) runs it over the host's ranges, and the GPU
// trainer's update kernel (src/cuda/backward.cuh) over the device's storage, so the two cannot
// drift apart. Each rule in double per element, rounded to float when stored:
//   sgd            torch.optim.SGD: g += wd * p; buf = g (first step) or momentum * buf + g;
//                  p -= lr * (nesterov ? g + momentum * buf : buf)        (momentum 0: p -= lr * g)
//   rmsprop_tf     tf.train.RMSPropOptimizer: g += wd * p; ms = decay * ms + (1 - decay) g^2;
//                  mom = momentum * mom + lr * g / sqrt(ms + eps); p -= mom   (ms starts at 1)
//   rmsprop_torch  torch.optim.RMSprop: g += wd * p; ms = alpha * ms + (1 - alpha) g^2;
//                  buf = momentum * buf + g / (sqrt(ms) + eps); p -= lr * buf (momentum 0: by q)
// Requires: the optimizer state as initial_mean_square() and 0 (momentum) before the first step.
// Guarantees: no CUDA header, no state; branch-free per element within a rule (a host loop over
// one rule vectorises).
#pragma once

#include <cmath>

#include "../core/hd.hpp"

namespace ctnet {

enum class update_kind : unsigned char { sgd, rmsprop_tf, rmsprop_torch };

// One step's settings as plain numbers (optimizer::rule fills them).
struct update_rule {
    double lr = 0.0;
    double weight_decay = 0.0;
    double momentum = 0.9;
    double decay = 0.9;  // RMSProp: TF's decay, torch's alpha
    double eps = 1.0;    // RMSProp: inside the square root (TF), outside (torch)
    bool nesterov = false;  // sgd
    bool first = false;     // sgd: this is the optimizer's first step (buf = g)
};

// The mean square's value before the first step: TF's is 1, torch's 0 (SGD keeps none: 0).
CTNET_HD float initial_mean_square(update_kind k) { return k == update_kind::rmsprop_tf ? 1.0F : 0.0F; }

// One parameter's update: returns the new p, updates ms and mom in place.
template <update_kind K>
CTNET_HD float update_one(const update_rule& u, float p, float grad, float& ms, float& mom) {
    const double g = static_cast<double>(grad) + u.weight_decay * p;
    if constexpr (K == update_kind::sgd) {
        const double buf = u.first ? g : u.momentum * mom + g;
        mom = static_cast<float>(buf);
        const double d = u.momentum == 0.0 ? g : u.nesterov ? g + u.momentum * buf : buf;
        return static_cast<float>(p - u.lr * d);
    } else if constexpr (K == update_kind::rmsprop_tf) {
        const double s = u.decay * ms + (1.0 - u.decay) * g * g;
        ms = static_cast<float>(s);
        const double m = u.momentum * mom + u.lr * g / ::sqrt(s + u.eps);
        mom = static_cast<float>(m);
        return static_cast<float>(p - m);
    } else {
        const double s = u.decay * ms + (1.0 - u.decay) * g * g;
        ms = static_cast<float>(s);
        const double q = g / (::sqrt(s) + u.eps);
        const double buf = u.momentum * mom + q;
        mom = static_cast<float>(buf);
        return static_cast<float>(p - u.lr * (u.momentum > 0.0 ? buf : q));
    }
}

}  // namespace ctnet
