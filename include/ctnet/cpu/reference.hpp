// ctnet/cpu/reference.hpp — reference CPU kernels: plain loops, obviously correct.
//
// These are the oracle every fast kernel is tested against. Each takes raw pointers, the
// per-sample shapes, the batch size n, and batch strides (floats between two samples), so an
// input or output can be a channel slice of a larger buffer (how concat avoids copies).
// Layout NCHW. Accumulation is in float, in the loop order written, except where noted.
// Requires: pointers to n samples of the given shapes; inputs and outputs either identical (in
// place, elementwise kernels only) or disjoint. Guarantees: no allocation, no state.

#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>

#include "../core/shape.hpp"
#include "../exec/view.hpp"
#include "../graph/program.hpp"

namespace ctnet::cpu::ref {

// A tensor of n samples: sample i starts at data + i * stride (exec/view.hpp).
template <class T>
using batch_view = exec::batch_view<T>;
using in_view = exec::in_view;
using out_view = exec::out_view;

// y[o] = bias[o] + sum over c, kh, kw of w[o][c][kh][kw] * x[c][oh*sh - pt + kh][ow*sw - pl + kw],
// taps outside the input are zero padding.
inline void conv2d(in_view x, out_view y, int n, const float* weight, const float* bias, const window& g) {
    const shape in = x.s, out = y.s;
    for (int i = 0; i < n; ++i) {
        const float* xs = x.sample(i);
        float* ys = y.sample(i);
        for (int o = 0; o < out.c; ++o) {
            float* yo = ys + static_cast<std::size_t>(o) * out.h * out.w;
            std::fill(yo, yo + static_cast<std::size_t>(out.h) * out.w, bias ? bias[o] : 0.0F);
            for (int c = 0; c < in.c; ++c) {
                const float* xc = xs + static_cast<std::size_t>(c) * in.h * in.w;
                const float* wc = weight + (static_cast<std::size_t>(o) * in.c + c) * g.kh * g.kw;
                for (int kh = 0; kh < g.kh; ++kh) {
                    for (int kw = 0; kw < g.kw; ++kw) {
                        const float wv = wc[kh * g.kw + kw];
                        for (int oh = 0; oh < out.h; ++oh) {
                            const int ih = oh * g.sh - g.pt + kh;
                            if (ih < 0 || ih >= in.h) continue;
                            const float* xrow = xc + static_cast<std::size_t>(ih) * in.w;
                            float* yrow = yo + static_cast<std::size_t>(oh) * out.w;
                            for (int ow = 0; ow < out.w; ++ow) {
                                const int iw = ow * g.sw - g.pl + kw;
                                if (iw >= 0 && iw < in.w) yrow[ow] += wv * xrow[iw];
                            }
                        }
                    }
                }
            }
        }
    }
}

// Eval mode: y = (x - mean) * (weight / sqrt(var + eps)) + bias; the per-channel factors are
// computed in double (pretrained weights have running_var channels near zero).
inline void batch_norm(in_view x, out_view y, int n, const float* weight, const float* bias, const float* mean,
                       const float* var, double eps) {
    const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
    for (int c = 0; c < x.s.c; ++c) {
        const double inv = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
        const auto a = static_cast<float>(weight[c] * inv);
        const auto b = static_cast<float>(bias[c] - mean[c] * (weight[c] * inv));
        for (int i = 0; i < n; ++i) {
            const float* xc = x.sample(i) + c * plane;
            float* yc = y.sample(i) + c * plane;
            for (std::size_t j = 0; j < plane; ++j) yc[j] = xc[j] * a + b;
        }
    }
}

// Training mode: statistics of this batch (mean and biased variance over N, H, W, accumulated
// in double). Then, as torch does, the per-channel affine y = x * a + b with a = invstd * weight
// and b = bias - mean * a in float: with few values per channel (the aux head's 1x1 maps) the
// result is ill-conditioned, and the same formula keeps us within rounding of torch.
// Writes the statistics to batch_mean / batch_var when given (for running-statistics updates).
inline void batch_norm_train(in_view x, out_view y, int n, const float* weight, const float* bias, double eps,
                             float* batch_mean = nullptr, float* batch_var = nullptr) {
    const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
    const double count = static_cast<double>(plane) * n;
    for (int c = 0; c < x.s.c; ++c) {
        double sum = 0.0;
        for (int i = 0; i < n; ++i)
            for (std::size_t j = 0; j < plane; ++j) sum += x.sample(i)[c * plane + j];
        const double mean = sum / count;
        double sq = 0.0;
        for (int i = 0; i < n; ++i)
            for (std::size_t j = 0; j < plane; ++j) {
                const double d = x.sample(i)[c * plane + j] - mean;
                sq += d * d;
            }
        const auto var = static_cast<float>(sq / count);
        if (batch_mean) batch_mean[c] = static_cast<float>(mean);
        if (batch_var) batch_var[c] = var;
        const auto invstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var) + eps));
        const float a = invstd * weight[c];
        const float b = bias[c] - static_cast<float>(mean) * a;
        for (int i = 0; i < n; ++i) {
            const float* xc = x.sample(i) + c * plane;
            float* yc = y.sample(i) + c * plane;
            for (std::size_t j = 0; j < plane; ++j) yc[j] = xc[j] * a + b;
        }
    }
}

// Training mode in pieces, for batch statistics gathered across processes (sync batch norm,
// train/distributed.hpp): per-channel sums of x, then sums of squared deviations from a given
// mean (both over this process's N, H, W, in double), then the affine of batch_norm_train from
// the combined mean and 1 / sqrt(var + eps). On one process the three give batch_norm_train's
// arithmetic exactly (batch_norm_train itself stays fused for locality).
inline void channel_sums(in_view x, int n, double* sum) {
    const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
    for (int c = 0; c < x.s.c; ++c) {
        double s = 0.0;
        for (int i = 0; i < n; ++i)
            for (std::size_t j = 0; j < plane; ++j) s += x.sample(i)[c * plane + j];
        sum[c] = s;
    }
}

inline void channel_squared_deviations(in_view x, int n, const double* mean, double* sq) {
    const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
    for (int c = 0; c < x.s.c; ++c) {
        double s = 0.0;
        for (int i = 0; i < n; ++i)
            for (std::size_t j = 0; j < plane; ++j) {
                const double d = x.sample(i)[c * plane + j] - mean[c];
                s += d * d;
            }
        sq[c] = s;
    }
}

inline void batch_norm_normalise(in_view x, out_view y, int n, const float* weight, const float* bias,
                                 const float* mean, const float* invstd) {
    const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
    for (int c = 0; c < x.s.c; ++c) {
        const float a = invstd[c] * weight[c];
        const float b = bias[c] - mean[c] * a;
        for (int i = 0; i < n; ++i) {
            const float* xc = x.sample(i) + c * plane;
            float* yc = y.sample(i) + c * plane;
            for (std::size_t j = 0; j < plane; ++j) yc[j] = xc[j] * a + b;
        }
    }
}

inline void relu(in_view x, out_view y, int n) {
    for (int i = 0; i < n; ++i)
        for (std::size_t j = 0; j < x.s.size(); ++j) y.sample(i)[j] = std::max(x.sample(i)[j], 0.0F);
}

// Max over the window; padded positions never win (they are -inf, as in torch).
inline void max_pool(in_view x, out_view y, int n, const window& g) {
    const shape in = x.s, out = y.s;
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < out.c; ++c) {
            const float* xc = x.sample(i) + static_cast<std::size_t>(c) * in.h * in.w;
            float* yc = y.sample(i) + static_cast<std::size_t>(c) * out.h * out.w;
            for (int oh = 0; oh < out.h; ++oh)
                for (int ow = 0; ow < out.w; ++ow) {
                    float m = -std::numeric_limits<float>::infinity();
                    for (int kh = 0; kh < g.kh; ++kh)
                        for (int kw = 0; kw < g.kw; ++kw) {
                            const int ih = oh * g.sh - g.pt + kh, iw = ow * g.sw - g.pl + kw;
                            if (ih >= 0 && ih < in.h && iw >= 0 && iw < in.w) {
                                const float v = xc[ih * in.w + iw];
                                if (v > m || std::isnan(v)) m = v;  // NaN propagates, as in torch
                            }
                        }
                    yc[oh * out.w + ow] = m;
                }
        }
}

// Mean over the window. count_pad: divide by the whole window (clipped to the padded input, as
// torch), else by the taps inside the input.
inline void avg_pool(in_view x, out_view y, int n, const window& g, bool count_pad) {
    const shape in = x.s, out = y.s;
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < out.c; ++c) {
            const float* xc = x.sample(i) + static_cast<std::size_t>(c) * in.h * in.w;
            float* yc = y.sample(i) + static_cast<std::size_t>(c) * out.h * out.w;
            for (int oh = 0; oh < out.h; ++oh)
                for (int ow = 0; ow < out.w; ++ow) {
                    const int h0 = oh * g.sh - g.pt, w0 = ow * g.sw - g.pl;
                    const int h1 = std::min(h0 + g.kh, in.h + g.pb), w1 = std::min(w0 + g.kw, in.w + g.pr);
                    float sum = 0.0F;
                    int inside = 0;
                    for (int ih = std::max(h0, 0); ih < std::min(h1, in.h); ++ih)
                        for (int iw = std::max(w0, 0); iw < std::min(w1, in.w); ++iw) {
                            sum += xc[ih * in.w + iw];
                            ++inside;
                        }
                    const int divisor = count_pad ? (h1 - h0) * (w1 - w0) : inside;
                    yc[oh * out.w + ow] = sum / static_cast<float>(divisor);
                }
        }
}

inline void global_avg_pool(in_view x, out_view y, int n) {
    const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < x.s.c; ++c) {
            const float* xc = x.sample(i) + c * plane;
            float sum = 0.0F;
            for (std::size_t j = 0; j < plane; ++j) sum += xc[j];
            y.sample(i)[c] = sum / static_cast<float>(plane);
        }
}

// y[o] = bias[o] + sum_i w[o][i] * x[i]   (weight is (Out, In), as torch.nn.Linear)
inline void linear(in_view x, out_view y, int n, const float* weight, const float* bias) {
    const auto in = static_cast<std::size_t>(x.s.c);
    for (int i = 0; i < n; ++i)
        for (int o = 0; o < y.s.c; ++o) {
            float acc = bias ? bias[o] : 0.0F;
            const float* wo = weight + o * in;
            for (std::size_t j = 0; j < in; ++j) acc += wo[j] * x.sample(i)[j];
            y.sample(i)[o] = acc;
        }
}

// Numerically stable: exp(x - max) / sum.
inline void softmax(in_view x, out_view y, int n) {
    const std::size_t k = x.s.size();
    for (int i = 0; i < n; ++i) {
        const float* xs = x.sample(i);
        float* ys = y.sample(i);
        const float m = *std::max_element(xs, xs + k);
        double sum = 0.0;
        for (std::size_t j = 0; j < k; ++j) {
            ys[j] = std::exp(xs[j] - m);
            sum += ys[j];
        }
        for (std::size_t j = 0; j < k; ++j) ys[j] = static_cast<float>(ys[j] / sum);
    }
}

inline void channel_affine(in_view x, out_view y, int n, const float* scale, const float* shift) {
    const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < x.s.c; ++c)
            for (std::size_t j = 0; j < plane; ++j)
                y.sample(i)[c * plane + j] = x.sample(i)[c * plane + j] * scale[c] + shift[c];
}

// The first non-finite value of n samples, as "sample S, channel C, position (H, W): VALUE", or an
// empty string when all are finite (the --check-finite diagnostics).
inline std::string first_non_finite(in_view x, int n) {
    for (int i = 0; i < n; ++i)
        for (std::size_t j = 0; j < x.s.size(); ++j) {
            const float v = x.sample(i)[j];
            if (std::isfinite(v)) continue;
            const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
            const std::size_t c = j / plane, hw = j % plane;
            return "sample " + std::to_string(i) + ", channel " + std::to_string(c) + ", position (" +
                   std::to_string(hw / static_cast<std::size_t>(x.s.w)) + ", " +
                   std::to_string(hw % static_cast<std::size_t>(x.s.w)) + "): " + (std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
        }
    return {};
}

inline void copy(in_view x, out_view y, int n) {
    for (int i = 0; i < n; ++i) std::copy(x.sample(i), x.sample(i) + x.s.size(), y.sample(i));
}

}  // namespace ctnet::cpu::ref
