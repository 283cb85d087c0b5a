// ctnet/train/loss.hpp — softmax cross-entropy with label smoothing.
//
//   loss_value l = softmax_cross_entropy(logits, labels, classes, {.smoothing = 0.1}, dlogits);
//
// With K classes and smoothing e the target of a sample with label y is q = (1 - e) * onehot(y)
// + e / K (the paper's label-smoothing regularisation; torch's CrossEntropyLoss(label_smoothing=e)).
// The loss is the batch mean of -sum_k q_k log softmax(x)_k, times `weight` (the aux head's 0.4).
// Requires: logits N x K, labels N, dlogits N x K or empty. Guarantees: d loss / d logits
// (= weight * (softmax - q) / N) is ADDED to dlogits; computed in double with a stable log-sum-exp;
// a label outside [0, K) or a non-finite logit throws ctnet::error naming the sample.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>

#include "../core/error.hpp"

namespace ctnet {

struct loss_options {
    double smoothing = 0.0;  // e in [0, 1)
    double weight = 1.0;     // multiplies the loss and its gradient
};

struct loss_value {
    double loss = 0.0;  // weighted batch mean
    int correct = 0;    // samples whose largest logit is the label (first largest on ties)
};

inline loss_value softmax_cross_entropy(std::span<const float> logits, std::span<const int> labels, int classes,
                                        loss_options o, std::span<float> dlogits) {
    const std::size_t k = static_cast<std::size_t>(classes), n = labels.size();
    if (classes < 1 || logits.size() != n * k)
        throw error("ctnet: softmax_cross_entropy: " + std::to_string(logits.size()) + " logits for " +
                    std::to_string(n) + " labels of " + std::to_string(classes) + " classes");
    if (!dlogits.empty() && dlogits.size() != logits.size())
        throw error("ctnet: softmax_cross_entropy: the gradient has " + std::to_string(dlogits.size()) +
                    " floats, expected " + std::to_string(logits.size()));
    if (!(o.smoothing >= 0.0 && o.smoothing < 1.0))
        throw error("ctnet: softmax_cross_entropy: label smoothing must be in [0, 1), got " + std::to_string(o.smoothing));
    loss_value r;
    for (std::size_t i = 0; i < n; ++i) {
        const float* x = logits.data() + i * k;
        const int y = labels[i];
        if (y < 0 || y >= classes)
            throw error("ctnet: softmax_cross_entropy: sample " + std::to_string(i) + " has label " + std::to_string(y) +
                        ", expected 0.." + std::to_string(classes - 1));
        double m = x[0];
        std::size_t arg = 0;
        for (std::size_t j = 0; j < k; ++j) {
            if (!std::isfinite(x[j]))
                throw error("ctnet: softmax_cross_entropy: sample " + std::to_string(i) + " has a non-finite logit (" +
                            std::to_string(x[j]) + ") at class " + std::to_string(j));
            if (x[j] > m) {
                m = x[j];
                arg = j;
            }
        }
        if (static_cast<int>(arg) == y) ++r.correct;
        double sum = 0.0;
        for (std::size_t j = 0; j < k; ++j) sum += std::exp(x[j] - m);
        const double lse = m + std::log(sum);
        const double off = o.smoothing / static_cast<double>(k), on = 1.0 - o.smoothing + off;
        double li = 0.0;
        for (std::size_t j = 0; j < k; ++j) {
            const double q = static_cast<int>(j) == y ? on : off;
            li -= q * (x[j] - lse);
            if (!dlogits.empty())
                dlogits[i * k + j] += static_cast<float>(o.weight * (std::exp(x[j] - lse) - q) / static_cast<double>(n));
        }
        r.loss += li;
    }
    r.loss = o.weight * r.loss / static_cast<double>(n);
    return r;
}

}  // namespace ctnet
