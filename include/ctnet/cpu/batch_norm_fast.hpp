// ctnet/cpu/batch_norm_fast.hpp — training-mode batch norm for backend::cpu: the arithmetic of
// cpu::ref::batch_norm_train and cpu::ref::batch_norm_train_backward (sums in double, the same
// float affine and the same double input-gradient formula), with every per-channel sum kept in
// bn_lanes lane-wise partial sums, added in one fixed order at the end, so that the compiler can
// vectorise it (the reference's single running sum waits on each addition). The backward pass
// also works out xhat = (x - mean) * invstd as it goes instead of from a stored copy.
//
// Requires: views of one channel range (the caller splits channels over threads); more than
// one value per channel.
// Guarantees: deterministic (one order of additions for a given shape); the sums differ from
// the reference's only by double rounding (about 1e-16 relative), so the float results are the
// reference's except where a double lies within that of a float rounding boundary (tested
// against the reference in tests/test_train.cpp).
#pragma once

#include <cmath>
#include <cstddef>

#include "reference.hpp"

namespace ctnet::cpu {

inline constexpr int bn_lanes = 16;

namespace detail {

// acc[l] += f(j) over j in [0, len), j going to lane j % bn_lanes.
template <class F>
void lane_sums(std::size_t len, double (&acc)[bn_lanes], F&& f) {
    constexpr auto lanes = static_cast<std::size_t>(bn_lanes);
    std::size_t j = 0;
    for (; j + lanes <= len; j += lanes)
        for (std::size_t l = 0; l < lanes; ++l) acc[l] += f(j + l);
    for (std::size_t l = 0; j + l < len; ++l) acc[l] += f(j + l);
}

[[nodiscard]] inline double total(const double (&acc)[bn_lanes]) {
    double s = 0.0;
    for (const double a : acc) s += a;
    return s;
}

}  // namespace detail

// cpu::ref::batch_norm_train, channel by channel: mean, biased variance (two passes, double),
// then y = x * a + b with a = invstd * weight, b = bias - mean * a in float.
inline void batch_norm_train_lanes(ref::in_view x, ref::out_view y, int n, const float* weight, const float* bias,
                                   double eps, float* batch_mean, float* batch_var) {
    const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
    const double count = static_cast<double>(plane) * n;
    for (int c = 0; c < x.s.c; ++c) {
        const std::size_t at = static_cast<std::size_t>(c) * plane;
        double acc[bn_lanes]{};
        for (int i = 0; i < n; ++i) {
            const float* xc = x.sample(i) + at;
            detail::lane_sums(plane, acc, [&](std::size_t j) { return static_cast<double>(xc[j]); });
        }
        const double mean = detail::total(acc) / count;
        double sq[bn_lanes]{};
        for (int i = 0; i < n; ++i) {
            const float* xc = x.sample(i) + at;
            detail::lane_sums(plane, sq, [&](std::size_t j) {
                const double d = xc[j] - mean;
                return d * d;
            });
        }
        const auto var = static_cast<float>(detail::total(sq) / count);
        batch_mean[c] = static_cast<float>(mean);
        batch_var[c] = var;
        const auto invstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var) + eps));
        const float a = invstd * weight[c];
        const float b = bias[c] - static_cast<float>(mean) * a;
        for (int i = 0; i < n; ++i) {
            const float* xc = x.sample(i) + at;
            float* yc = y.sample(i) + at;
            for (std::size_t j = 0; j < plane; ++j) yc[j] = xc[j] * a + b;
        }
    }
}

// cpu::ref::batch_norm_train_backward given x and the batch's mean and invstd (float, as the
// forward pass stored them): dweight += sum(dy * xhat), dbias += sum(dy) and, when dx is given,
// dx = weight * invstd / m * (m * dy - sum(dy) - xhat * sum(dy * xhat)). In place (dx == dy) allowed.
inline void batch_norm_train_backward_lanes(ref::in_view x, ref::in_view dy, ref::out_view dx, int n,
                                            const float* weight, const float* mean, const float* invstd,
                                            float* dweight, float* dbias) {
    const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
    const double m = static_cast<double>(plane) * n;
    const bool in_place = dx.data == dy.data;
    for (int c = 0; c < x.s.c; ++c) {
        const std::size_t at = static_cast<std::size_t>(c) * plane;
        const float mu = mean[c], is = invstd[c];
        double sums[bn_lanes]{}, dots[bn_lanes]{};
        for (int i = 0; i < n; ++i) {
            const float* xc = x.sample(i) + at;
            const float* gc = dy.sample(i) + at;
            detail::lane_sums(plane, sums, [&](std::size_t j) { return static_cast<double>(gc[j]); });
            detail::lane_sums(plane, dots, [&](std::size_t j) {
                const float xhat = (xc[j] - mu) * is;
                return static_cast<double>(gc[j]) * xhat;
            });
        }
        const double sum = detail::total(sums), dot = detail::total(dots);
        dweight[c] += static_cast<float>(dot);
        dbias[c] += static_cast<float>(sum);
        if (!dx.data) continue;
        const double k = static_cast<double>(weight[c]) * is / m;
        for (int i = 0; i < n; ++i) {
            const float* xc = x.sample(i) + at;
            const float* gc = dy.sample(i) + at;
            float* dc = dx.sample(i) + at;
            for (std::size_t j = 0; j < plane; ++j) {
                const float xhat = (xc[j] - mu) * is;
                const auto d = static_cast<float>(k * (m * gc[j] - sum - xhat * dot));
                dc[j] = in_place ? d : dc[j] + d;
            }
        }
    }
}

}  // namespace ctnet::cpu
