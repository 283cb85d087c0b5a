// ctnet/cpu/sync_batch_norm.hpp — training-mode batch norm over every rank's batch, for the CPU
// trainer's options::sync_bn (train/distributed.hpp).
//
// Forward: the mean from all ranks' per-channel sums and value count, the biased variance from
// all ranks' squared deviations (two passes, as cpu::ref::batch_norm_train), the running
// statistics from those (unbiased with the global count): the same arithmetic as the local
// path. Backward: each batch norm's own weight / bias gradients stay this rank's sums of
// dy * xhat and dy (the gradient all-reduce adds them); the input gradient combines those sums
// over all ranks with the global count.
// Requires: every rank runs the same ops in the same order (the collectives run on the calling
// thread, between the pool's tasks); `split(count, f)` runs f(c0, c1) over channel ranges.
// Guarantees: 2 ranks on two halves of a batch compute what 1 rank computes on all of it, up to
// float rounding (tests/test_distributed.cpp).
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../exec/communicator.hpp"
#include "../exec/view.hpp"
#include "../graph/program.hpp"
#include "backward.hpp"
#include "reference.hpp"

namespace ctnet::cpu {

class sync_batch_norm {
public:
    sync_batch_norm() = default;
    sync_batch_norm(communicator& comm, std::size_t max_channels)
        : comm_{&comm}, stats_(2 * max_channels + 1, 0.0) {}  // sums and count, then squared deviations

    // op o's forward over this rank's n samples: y, the batch mean and invstd, the running
    // statistics in bn; count: the global number of values per channel (kept for backward).
    template <class Split>
    void forward(const op& o, exec::in_view x, exec::out_view y, int n, bn_params<float> bn, float* bmean,
                 float* invstd, double momentum, double& count, Split&& split) {
        const int c_out = o.out.s.c;
        const auto c = static_cast<std::size_t>(c_out);
        double* mean = stats_.data();  // c sums, then the count; later the means
        double* sq = mean + c + 1;
        split(c_out, [&](int c0, int c1) { ref::channel_sums(exec::channels(x, c0, c1), n, mean + c0); });
        mean[c] = static_cast<double>(n) * o.in.s.h * o.in.s.w;
        comm_->allreduce_sum(std::span<double>{mean, c + 1});
        const double m = mean[c];
        if (m < 2.0)
            throw error("ctnet: trainer: batch_norm '" + std::string{o.path.view()} +
                        "' needs more than one value per channel over all ranks (got " + std::to_string(m) + ")");
        count = m;
        for (std::size_t k = 0; k < c; ++k) mean[k] /= m;
        split(c_out, [&](int c0, int c1) {
            ref::channel_squared_deviations(exec::channels(x, c0, c1), n, mean + c0, sq + c0);
        });
        comm_->allreduce_sum(std::span<double>{sq, c});
        const auto mom = static_cast<float>(momentum);
        const float unbias = static_cast<float>(m) / static_cast<float>(m - 1.0);
        for (std::size_t k = 0; k < c; ++k) {
            bmean[k] = static_cast<float>(mean[k]);
            const auto var = static_cast<float>(sq[k] / m);
            bn.mean[k] = (1.0F - mom) * bn.mean[k] + mom * bmean[k];
            bn.var[k] = (1.0F - mom) * bn.var[k] + mom * var * unbias;
            invstd[k] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var) + o.eps));
        }
        split(c_out, [&](int c0, int c1) {
            ref::batch_norm_normalise(exec::channels(x, c0, c1), exec::channels(y, c0, c1), n, bn.gamma + c0,
                                      bn.beta + c0, bmean + c0, invstd + c0);
        });
    }

    // Adds dgamma, dbeta (this rank's sums) and dx (all ranks' sums; dx.data null at the network
    // input, where every rank skips the collective alike). tmp: x's size, for xhat.
    template <class Split>
    void backward(exec::in_view x, exec::in_view dy, exec::out_view dx, int n, const float* gamma, const float* mean,
                  const float* invstd, double count, float* dgamma, float* dbeta, float* tmp, Split&& split) {
        const int c_out = x.s.c;
        const auto c = static_cast<std::size_t>(c_out);
        double* sum = stats_.data();
        double* dot = sum + c;
        const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w, k = x.s.size();
        const exec::in_view xhat{tmp, k, x.s};
        split(c_out, [&](int c0, int c1) {
            for (int s = 0; s < n; ++s)  // xhat = (x - mean) * invstd of channels [c0, c1)
                for (auto ch = static_cast<std::size_t>(c0); ch < static_cast<std::size_t>(c1); ++ch)
                    for (std::size_t j = 0; j < plane; ++j)
                        tmp[s * k + ch * plane + j] = (x.sample(s)[ch * plane + j] - mean[ch]) * invstd[ch];
            ref::batch_norm_grad_sums(exec::channels(xhat, c0, c1), exec::channels(dy, c0, c1), n, sum + c0, dot + c0);
        });
        for (std::size_t j = 0; j < c; ++j) {
            dgamma[j] += static_cast<float>(dot[j]);
            dbeta[j] += static_cast<float>(sum[j]);
        }
        if (!dx.data) return;
        comm_->allreduce_sum(std::span<double>{sum, 2 * c});
        split(c_out, [&](int c0, int c1) {
            ref::batch_norm_input_grad(exec::channels(xhat, c0, c1), exec::channels(dy, c0, c1), exec::channels(dx, c0, c1),
                                       n, gamma + c0, invstd + c0, count, sum + c0, dot + c0);
        });
    }

private:
    communicator* comm_ = nullptr;
    std::vector<double> stats_;
};

}  // namespace ctnet::cpu
