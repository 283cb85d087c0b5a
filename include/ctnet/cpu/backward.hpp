// ctnet/cpu/backward.hpp — reference backward kernels: plain loops, the oracle for training.
//
// Each kernel takes the views its forward kernel took (cpu/reference.hpp) plus the gradient of
// the output (dy) and ADDS the gradient of the input into dx (a value read by several branches
// collects one contribution per reader; the trainer zeroes gradients before a backward pass).
// Parameter gradients are added too (a batch is one sum). Kernels marked "in place" also accept
// dx == dy (an op the forward pass ran in place) and then replace dy by dx.
// Requires: the views of the forward pass; dx may be null (no gradient wanted, e.g. the image).
// Guarantees: no allocation, no state; results are the exact derivatives of the forward kernels
// (checked against finite differences and torch autograd in tests/test_train.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "reference.hpp"

namespace ctnet::cpu::ref {

// dW[o][c][kh][kw] += sum dy[o][oh][ow] * x[c][ih][iw]; db[o] += sum dy[o]; dx[c][ih][iw] += sum dy * w.
inline void conv2d_backward(in_view x, in_view dy, out_view dx, int n, const float* weight, float* dweight,
                            float* dbias, const window& g) {
    const shape in = x.s, out = dy.s;
    const std::size_t in_plane = static_cast<std::size_t>(in.h) * in.w, out_plane = static_cast<std::size_t>(out.h) * out.w;
    for (int i = 0; i < n; ++i) {
        const float* xs = x.sample(i);
        const float* gs = dy.sample(i);
        float* dxs = dx.data ? dx.sample(i) : nullptr;
        for (int o = 0; o < out.c; ++o) {
            const float* go = gs + o * out_plane;
            if (dbias)
                for (std::size_t j = 0; j < out_plane; ++j) dbias[o] += go[j];
            for (int c = 0; c < in.c; ++c) {
                const float* xc = xs + c * in_plane;
                float* dxc = dxs ? dxs + c * in_plane : nullptr;
                const std::size_t wbase = (static_cast<std::size_t>(o) * in.c + c) * g.kh * g.kw;
                for (int kh = 0; kh < g.kh; ++kh)
                    for (int kw = 0; kw < g.kw; ++kw) {
                        const float wv = weight[wbase + static_cast<std::size_t>(kh) * g.kw + kw];
                        float acc = 0.0F;
                        for (int oh = 0; oh < out.h; ++oh) {
                            const int ih = oh * g.sh - g.pt + kh;
                            if (ih < 0 || ih >= in.h) continue;
                            for (int ow = 0; ow < out.w; ++ow) {
                                const int iw = ow * g.sw - g.pl + kw;
                                if (iw < 0 || iw >= in.w) continue;
                                const float gv = go[oh * out.w + ow];
                                acc += gv * xc[ih * in.w + iw];
                                if (dxc) dxc[ih * in.w + iw] += gv * wv;
                            }
                        }
                        dweight[wbase + static_cast<std::size_t>(kh) * g.kw + kw] += acc;
                    }
            }
        }
    }
}

// batch_norm_train_backward in two halves, for sums combined across processes (sync batch norm):
// per-channel sum(dy) and sum(dy * xhat) over this process's values (double), then
// dx = weight * invstd / m * (m * dy - sum - xhat * dot) with the combined sums and count m.
// The parameter gradients are the caller's (from the local sums). In place (dx == dy) allowed.
inline void batch_norm_grad_sums(in_view xhat, in_view dy, int n, double* sum, double* dot) {
    const std::size_t plane = static_cast<std::size_t>(xhat.s.h) * xhat.s.w;
    for (int c = 0; c < xhat.s.c; ++c) {
        double s = 0.0, d = 0.0;
        for (int i = 0; i < n; ++i)
            for (std::size_t j = 0; j < plane; ++j) {
                const double g = dy.sample(i)[c * plane + j];
                s += g;
                d += g * xhat.sample(i)[c * plane + j];
            }
        sum[c] = s;
        dot[c] = d;
    }
}

inline void batch_norm_input_grad(in_view xhat, in_view dy, out_view dx, int n, const float* weight,
                                  const float* invstd, double m, const double* sum, const double* dot) {
    const std::size_t plane = static_cast<std::size_t>(xhat.s.h) * xhat.s.w;
    const bool in_place = dx.data == dy.data;
    for (int c = 0; c < xhat.s.c; ++c) {
        const double k = static_cast<double>(weight[c]) * invstd[c] / m;
        for (int i = 0; i < n; ++i)
            for (std::size_t j = 0; j < plane; ++j) {
                const std::size_t at = c * plane + j;
                const auto d = static_cast<float>(k * (m * dy.sample(i)[at] - sum[c] - xhat.sample(i)[at] * dot[c]));
                dx.sample(i)[at] = in_place ? d : dx.sample(i)[at] + d;
            }
    }
}

// Training-mode batch norm, given the normalised input xhat = (x - mean) * invstd of the forward
// pass: dx = weight * invstd / m * (m * dy - sum(dy) - xhat * sum(dy * xhat)), m = N * H * W;
// dweight += sum(dy * xhat), dbias += sum(dy). In place (dx == dy) allowed. One process's
// sums: the two halves above, channel by channel.
inline void batch_norm_train_backward(in_view xhat, in_view dy, out_view dx, int n, const float* weight,
                                      const float* invstd, float* dweight, float* dbias) {
    const std::size_t plane = static_cast<std::size_t>(xhat.s.h) * xhat.s.w;
    const shape one{1, xhat.s.h, xhat.s.w};
    for (int c = 0; c < xhat.s.c; ++c) {
        const std::size_t at = static_cast<std::size_t>(c) * plane;
        const in_view xc{xhat.data + at, xhat.stride, one}, gc{dy.data + at, dy.stride, one};
        double sum = 0.0, dot = 0.0;
        batch_norm_grad_sums(xc, gc, n, &sum, &dot);
        dweight[c] += static_cast<float>(dot);
        dbias[c] += static_cast<float>(sum);
        if (dx.data)
            batch_norm_input_grad(xc, gc, {dx.data + at, dx.stride, one}, n, weight + c, invstd + c,
                                  static_cast<double>(plane) * n, &sum, &dot);
    }
}

// Eval-mode batch norm (running statistics, a fixed affine): dx = dy * weight / sqrt(var + eps).
// The statistics are constants here, so only weight and bias receive gradients. In place allowed.
inline void batch_norm_eval_backward(in_view x, in_view dy, out_view dx, int n, const float* weight,
                                     const float* mean, const float* var, double eps, float* dweight, float* dbias) {
    const std::size_t plane = static_cast<std::size_t>(x.s.h) * x.s.w;
    const bool in_place = dx.data == dy.data;
    for (int c = 0; c < x.s.c; ++c) {
        const double inv = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
        double dw = 0.0, db = 0.0;
        for (int i = 0; i < n; ++i)
            for (std::size_t j = 0; j < plane; ++j) {
                const std::size_t at = c * plane + j;
                const float g = dy.sample(i)[at];
                db += g;
                dw += g * (x.sample(i)[at] - mean[c]) * inv;
                if (!dx.data) continue;
                const auto d = static_cast<float>(g * weight[c] * inv);
                dx.sample(i)[at] = in_place ? d : dx.sample(i)[at] + d;
            }
        dweight[c] += static_cast<float>(dw);
        dbias[c] += static_cast<float>(db);
    }
}

// y = max(x, 0): dx = dy where y > 0. In place allowed.
inline void relu_backward(in_view y, in_view dy, out_view dx, int n) {
    if (!dx.data) return;  // the network input: no gradient wanted
    const bool in_place = dx.data == dy.data;
    for (int i = 0; i < n; ++i)
        for (std::size_t j = 0; j < y.s.size(); ++j) {
            const float d = y.sample(i)[j] > 0.0F ? dy.sample(i)[j] : 0.0F;
            dx.sample(i)[j] = in_place ? d : dx.sample(i)[j] + d;
        }
}

// The whole gradient of a window goes to its maximum (the first one in scan order, as torch).
inline void max_pool_backward(in_view x, in_view dy, out_view dx, int n, const window& g) {
    const shape in = x.s, out = dy.s;
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < out.c; ++c) {
            const float* xc = x.sample(i) + static_cast<std::size_t>(c) * in.h * in.w;
            const float* gc = dy.sample(i) + static_cast<std::size_t>(c) * out.h * out.w;
            float* dc = dx.sample(i) + static_cast<std::size_t>(c) * in.h * in.w;
            for (int oh = 0; oh < out.h; ++oh)
                for (int ow = 0; ow < out.w; ++ow) {
                    float m = -std::numeric_limits<float>::infinity();
                    int at = -1;
                    for (int kh = 0; kh < g.kh; ++kh)
                        for (int kw = 0; kw < g.kw; ++kw) {
                            const int ih = oh * g.sh - g.pt + kh, iw = ow * g.sw - g.pl + kw;
                            if (ih < 0 || ih >= in.h || iw < 0 || iw >= in.w) continue;
                            const float v = xc[ih * in.w + iw];
                            if (at < 0 || v > m || (std::isnan(v) && !std::isnan(m))) {
                                m = v;
                                at = ih * in.w + iw;
                            }
                        }
                    if (at >= 0) dc[at] += gc[oh * out.w + ow];
                }
        }
}

// Each input of a window receives dy / divisor (the divisor of the forward pass).
inline void avg_pool_backward(in_view dy, out_view dx, int n, const window& g, bool count_pad) {
    const shape in = dx.s, out = dy.s;
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < out.c; ++c) {
            const float* gc = dy.sample(i) + static_cast<std::size_t>(c) * out.h * out.w;
            float* dc = dx.sample(i) + static_cast<std::size_t>(c) * in.h * in.w;
            for (int oh = 0; oh < out.h; ++oh)
                for (int ow = 0; ow < out.w; ++ow) {
                    const int h0 = oh * g.sh - g.pt, w0 = ow * g.sw - g.pl;
                    const int h1 = std::min(h0 + g.kh, in.h + g.pb), w1 = std::min(w0 + g.kw, in.w + g.pr);
                    const int ha = std::max(h0, 0), hb = std::min(h1, in.h), wa = std::max(w0, 0), wb = std::min(w1, in.w);
                    const int divisor = count_pad ? (h1 - h0) * (w1 - w0) : (hb - ha) * (wb - wa);
                    const float v = gc[oh * out.w + ow] / static_cast<float>(divisor);
                    for (int ih = ha; ih < hb; ++ih)
                        for (int iw = wa; iw < wb; ++iw) dc[ih * in.w + iw] += v;
                }
        }
}

inline void global_avg_pool_backward(in_view dy, out_view dx, int n) {
    const std::size_t plane = static_cast<std::size_t>(dx.s.h) * dx.s.w;
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < dx.s.c; ++c) {
            const float v = dy.sample(i)[c] / static_cast<float>(plane);
            float* dc = dx.sample(i) + c * plane;
            for (std::size_t j = 0; j < plane; ++j) dc[j] += v;
        }
}

// y = W x + b: dW += dy x^T, db += dy, dx += W^T dy.
inline void linear_backward(in_view x, in_view dy, out_view dx, int n, const float* weight, float* dweight,
                            float* dbias) {
    const auto in = static_cast<std::size_t>(x.s.size());
    for (int i = 0; i < n; ++i)
        for (int o = 0; o < dy.s.c; ++o) {
            const float g = dy.sample(i)[o];
            if (dbias) dbias[o] += g;
            const float* xs = x.sample(i);
            float* dwo = dweight + o * in;
            for (std::size_t j = 0; j < in; ++j) dwo[j] += g * xs[j];
            if (dx.data) {
                const float* wo = weight + o * in;
                for (std::size_t j = 0; j < in; ++j) dx.sample(i)[j] += g * wo[j];
            }
        }
}

// y = softmax(x): dx = y * (dy - sum(dy * y)). In place allowed.
inline void softmax_backward(in_view y, in_view dy, out_view dx, int n) {
    const bool in_place = dx.data == dy.data;
    for (int i = 0; i < n; ++i) {
        double dot = 0.0;
        for (std::size_t j = 0; j < y.s.size(); ++j) dot += static_cast<double>(dy.sample(i)[j]) * y.sample(i)[j];
        for (std::size_t j = 0; j < y.s.size(); ++j) {
            const auto d = static_cast<float>(y.sample(i)[j] * (dy.sample(i)[j] - dot));
            dx.sample(i)[j] = in_place ? d : dx.sample(i)[j] + d;
        }
    }
}

// Elementwise scale: dx = dy * factor[j] (dropout: the mask times 1 / (1 - p)). In place allowed.
inline void scale_backward(const float* factor, in_view dy, out_view dx, int n) {
    const bool in_place = dx.data == dy.data;
    const std::size_t k = dy.s.size();
    for (int i = 0; i < n; ++i)
        for (std::size_t j = 0; j < k; ++j) {
            const float d = dy.sample(i)[j] * factor[static_cast<std::size_t>(i) * k + j];
            dx.sample(i)[j] = in_place ? d : dx.sample(i)[j] + d;
        }
}

// y = x * scale[c] + shift[c]: dx = dy * scale[c]. In place allowed.
inline void channel_affine_backward(in_view dy, out_view dx, int n, const float* scale) {
    const bool in_place = dx.data == dy.data;
    const std::size_t plane = static_cast<std::size_t>(dy.s.h) * dy.s.w;
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < dy.s.c; ++c)
            for (std::size_t j = 0; j < plane; ++j) {
                const float d = dy.sample(i)[c * plane + j] * scale[c];
                float& t = dx.sample(i)[c * plane + j];
                t = in_place ? d : t + d;
            }
}

}  // namespace ctnet::cpu::ref
