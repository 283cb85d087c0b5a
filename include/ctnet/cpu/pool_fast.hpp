// ctnet/cpu/pool_fast.hpp — pooling on one channel plane, separably: a vertical pass over each
// output row's input rows into a row buffer (contiguous, vectorised by the compiler), then a
// horizontal pass over the buffer. Training adds its own kernels (below): max pooling's
// backward, which gives each window's gradient to its first maximum in scan order, and an
// average pooling pair (forward and backward) that makes the reference's additions in the
// reference's order, vectorised across outputs, so that backend::cpu trains bit-identically to
// the reference there.
//
// Requires: plane pointers of the given shapes; tmp: at least w + pl + pr floats for inference's
// kernels, the size its helper names for each training kernel.
// Guarantees: max pooling equals the reference exactly (NaN propagates, as in torch), and so
// does its backward (the same window element receives the gradient); inference's average
// pooling sums in another order than the reference (within float rounding; the divisor is the
// same: the window clipped to the padded input, or to the input when count_pad is off); the
// training pair equals the reference bit for bit (a -0 gradient may come out +0).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "../graph/program.hpp"

namespace ctnet::cpu {

namespace detail {
// max that keeps a NaN from either side, as torch's max pooling does (a if equal, so -0 and +0
// keep their order). Written so that the scalar remainders of the vectorised loops branch only
// on a NaN, not on every comparison as `b > a || b != b` did (with the one-task-per-thread pools
// of fast_runner.hpp, Inception's stride-2 max pools 1.2-2.2x faster, bench/RESULTS.md).
inline float nan_max(float a, float b) { return b != b ? b : std::max(a, b); }
}  // namespace detail

// The horizontal pass of max pooling at a stride known to the compiler (so that it vectorises
// the strided reads): yr[ow] = max over d of tmp[ow * S + d], tmp padded with -inf.
template <int S>
void max_pool_row(const float* tmp, float* yr, int ow_n, int kw) {
    for (int ow = 0; ow < ow_n; ++ow) yr[ow] = tmp[static_cast<std::ptrdiff_t>(ow) * S];
    for (int d = 1; d < kw; ++d)
        for (int ow = 0; ow < ow_n; ++ow) yr[ow] = detail::nan_max(yr[ow], tmp[static_cast<std::ptrdiff_t>(ow) * S + d]);
}

inline void max_pool_plane(const float* x, int h, int w, float* y, int oh_n, int ow_n, const window& g, float* tmp) {
    if (g.sw == 1 || g.sw == 2) {  // every Inception pool: a -inf padded row, fixed-stride passes
        constexpr float lowest = -std::numeric_limits<float>::infinity();
        std::fill(tmp, tmp + g.pl, lowest);
        std::fill(tmp + g.pl + w, tmp + w + g.pl + g.pr, lowest);
        float* mid = tmp + g.pl;
        for (int oh = 0; oh < oh_n; ++oh) {
            const int h0 = oh * g.sh - g.pt, ha = std::max(h0, 0), hb = std::min(h0 + g.kh, h);
            float* yr = y + static_cast<std::ptrdiff_t>(oh) * ow_n;
            std::fill(mid, mid + w, lowest);
            for (int ih = ha; ih < hb; ++ih) {
                const float* row = x + static_cast<std::ptrdiff_t>(ih) * w;
                for (int iw = 0; iw < w; ++iw) mid[iw] = detail::nan_max(mid[iw], row[iw]);
            }
            if (g.sw == 1) max_pool_row<1>(tmp, yr, ow_n, g.kw);
            else max_pool_row<2>(tmp, yr, ow_n, g.kw);
        }
        return;
    }
    for (int oh = 0; oh < oh_n; ++oh) {
        const int h0 = oh * g.sh - g.pt, ha = std::max(h0, 0), hb = std::min(h0 + g.kh, h);
        std::fill(tmp, tmp + w, -std::numeric_limits<float>::infinity());
        for (int ih = ha; ih < hb; ++ih) {
            const float* row = x + static_cast<std::ptrdiff_t>(ih) * w;
            for (int iw = 0; iw < w; ++iw) tmp[iw] = detail::nan_max(tmp[iw], row[iw]);
        }
        for (int ow = 0; ow < ow_n; ++ow) {
            const int w0 = ow * g.sw - g.pl, wa = std::max(w0, 0), wb = std::min(w0 + g.kw, w);
            float m = -std::numeric_limits<float>::infinity();
            for (int iw = wa; iw < wb; ++iw) m = detail::nan_max(m, tmp[iw]);
            y[oh * ow_n + ow] = m;
        }
    }
}

// Average pooling at horizontal stride 1 counting the padding (torch's default, and every
// Inception v3 avg pool): the horizontal divisor is kw at every output, so the horizontal pass
// is kw shifted adds over a zero-padded row buffer, vectorised by the compiler, and one
// division per output instead of a clipped window per output. A 3-row window sums its rows in
// one pass and a 3-wide one its columns and divides in one: on Inception's short rows (35, 17,
// 8 floats) each pass costs mostly its loop overhead and scalar remainder (bench/RESULTS.md).
inline void avg_pool_plane_s1(const float* x, int h, int w, float* y, int oh_n, int ow_n, const window& g, float* tmp) {
    const int wp = w + g.pl + g.pr;
    std::fill(tmp, tmp + g.pl, 0.0F);
    std::fill(tmp + g.pl + w, tmp + wp, 0.0F);
    float* mid = tmp + g.pl;
    for (int oh = 0; oh < oh_n; ++oh) {
        const int h0 = oh * g.sh - g.pt, h1 = std::min(h0 + g.kh, h + g.pb);
        const int ha = std::max(h0, 0), hb = std::min(h1, h);
        const float* r = x + static_cast<std::ptrdiff_t>(ha) * w;
        int ih = ha;
        if (hb - ha >= 3) {
            for (int iw = 0; iw < w; ++iw) mid[iw] = r[iw] + r[iw + w] + r[iw + 2 * w];
            ih += 3;
        } else {
            std::fill(mid, mid + w, 0.0F);
        }
        for (; ih < hb; ++ih) {
            const float* row = x + static_cast<std::ptrdiff_t>(ih) * w;
            for (int iw = 0; iw < w; ++iw) mid[iw] += row[iw];
        }
        float* yr = y + static_cast<std::ptrdiff_t>(oh) * ow_n;
        const auto divisor = static_cast<float>((h1 - h0) * g.kw);
        if (g.kw == 3) {
            for (int ow = 0; ow < ow_n; ++ow) yr[ow] = (tmp[ow] + tmp[ow + 1] + tmp[ow + 2]) / divisor;
            continue;
        }
        std::copy(tmp, tmp + ow_n, yr);
        for (int d = 1; d < g.kw; ++d)
            for (int ow = 0; ow < ow_n; ++ow) yr[ow] += tmp[ow + d];
        for (int ow = 0; ow < ow_n; ++ow) yr[ow] /= divisor;
    }
}

inline void avg_pool_plane(const float* x, int h, int w, float* y, int oh_n, int ow_n, const window& g, bool count_pad,
                           float* tmp) {
    // Stride 1 and the last window inside the padded row: every horizontal divisor is kw.
    if (count_pad && g.sw == 1 && ow_n + g.kw - 1 <= w + g.pl + g.pr) {
        avg_pool_plane_s1(x, h, w, y, oh_n, ow_n, g, tmp);
        return;
    }
    for (int oh = 0; oh < oh_n; ++oh) {
        const int h0 = oh * g.sh - g.pt, h1 = std::min(h0 + g.kh, h + g.pb);
        const int ha = std::max(h0, 0), hb = std::min(h1, h);
        std::fill(tmp, tmp + w, 0.0F);
        for (int ih = ha; ih < hb; ++ih) {
            const float* row = x + static_cast<std::ptrdiff_t>(ih) * w;
            for (int iw = 0; iw < w; ++iw) tmp[iw] += row[iw];
        }
        for (int ow = 0; ow < ow_n; ++ow) {
            const int w0 = ow * g.sw - g.pl, w1 = std::min(w0 + g.kw, w + g.pr);
            const int wa = std::max(w0, 0), wb = std::min(w1, w);
            float sum = 0.0F;
            for (int iw = wa; iw < wb; ++iw) sum += tmp[iw];
            const int divisor = count_pad ? (h1 - h0) * (w1 - w0) : (hb - ha) * (wb - wa);
            y[oh * ow_n + ow] = sum / static_cast<float>(divisor);
        }
    }
}

// Max pooling for training works on whole output rows in chunks of pool_lanes outputs (loops
// of a fixed length, which the compiler turns into SIMD with masks): each input row of a
// window is split by column phase (column j * sw + r goes to phase r), so that a tap reads
// consecutive floats for consecutive outputs, and the running maximum and its position are
// kept by selects. The floats and int32s of scratch it needs:
inline constexpr int pool_lanes = 16;
[[nodiscard]] constexpr int max_pool_train_ints(int out_w) { return (out_w + pool_lanes - 1) / pool_lanes * pool_lanes; }
[[nodiscard]] constexpr int max_pool_train_floats(int out_w, const window& g) {
    const int r = max_pool_train_ints(out_w);
    return g.sw * (r + g.kw) + r;  // the phases, then the running maximum
}

// y = the max of each window, and arg = the index in the plane (ih * w + iw) of its first
// maximum in scan order, the element cpu::ref::max_pool_backward gives the gradient to (the
// first that is the largest, or the first NaN); -1 for a window wholly in the padding, whose y
// is -inf as the reference's. tmp, at: max_pool_train_floats(ow_n, g) and
// max_pool_train_ints(ow_n) of scratch.
inline void max_pool_train_plane(const float* x, int h, int w, float* y, std::int32_t* arg, int oh_n, int ow_n,
                                 const window& g, float* tmp, std::int32_t* at) {
    constexpr int lanes = pool_lanes;
    const int r = max_pool_train_ints(ow_n), ql = r + g.kw, s = g.sw;
    float* phases = tmp;
    float* m = tmp + static_cast<std::ptrdiff_t>(s) * ql;
    constexpr float lowest = -std::numeric_limits<float>::infinity();
    for (int oh = 0; oh < oh_n; ++oh) {
        const int h0 = oh * g.sh - g.pt, ha = std::max(h0, 0), hb = std::min(h0 + g.kh, h);
        std::fill(m, m + r, lowest);
        std::fill(at, at + r, -1);
        for (int ih = ha; ih < hb; ++ih) {
            const float* row = x + static_cast<std::ptrdiff_t>(ih) * w;
            for (int ph = 0; ph < s; ++ph) {  // slot j of phase ph: column j * s + ph - pl
                float* dst = phases + static_cast<std::ptrdiff_t>(ph) * ql;
                const int off = ph - g.pl;
                const auto [a, b] = inside_columns(off, s, w, ql);
                std::fill(dst, dst + a, lowest);
                if (s == 1) {
                    std::copy(row + (a + off), row + (b + off), dst + a);
                } else {
                    for (int j = a; j < b; ++j) dst[j] = row[j * s + off];
                }
                std::fill(dst + b, dst + ql, lowest);
            }
            for (int dw = 0; dw < g.kw; ++dw) {
                const float* __restrict q = phases + static_cast<std::ptrdiff_t>(dw % s) * ql + dw / s;
                float* __restrict mm = m;
                std::int32_t* __restrict aa = at;
                const int off = dw - g.pl, base = ih * w + off;
                for (int j0 = 0; j0 < r; j0 += lanes)
                    for (int l = 0; l < lanes; ++l) {
                        const int j = j0 + l, iw = j * s + off;
                        const float v = q[j], cur = mm[j];
                        const bool take = (iw >= 0) & (iw < w) &
                                          ((aa[j] < 0) | (v > cur) | ((v != v) & (cur == cur)));
                        mm[j] = take ? v : cur;
                        aa[j] = take ? base + j * s : aa[j];
                    }
            }
        }
        std::copy(m, m + ow_n, y + static_cast<std::ptrdiff_t>(oh) * ow_n);
        std::copy(at, at + ow_n, arg + static_cast<std::ptrdiff_t>(oh) * ow_n);
    }
}

// dx[arg] += dy for each output of a plane (arg from max_pool_train_plane), in output order:
// cpu::ref::max_pool_backward's additions, in its order.
inline void max_pool_backward_plane(const std::int32_t* arg, const float* dy, int outputs, float* dx) {
    for (int o = 0; o < outputs; ++o)
        if (arg[o] >= 0) dx[arg[o]] += dy[o];
}

// Training's average pooling at stride 1 works on whole planes padded with zeros, flattened:
// output q = oh * W' + ow (W' the padded width; columns past the output row are computed and
// dropped) reads P[q + dh * W' + dw], so each tap is one long vectorised loop however small the
// plane. The floats of the padded plane (plus the reach of the last tap) and of the output plane:
[[nodiscard]] constexpr int pool_flat_floats(int in_h, int in_w, int out_h, const window& g) {
    const int wp = in_w + g.pl + g.pr;
    return (in_h + g.pt + g.pb) * wp + g.kw + out_h * wp;
}

// Otherwise a row at a time: a padded input row (as far as the last tap reaches), then a row of
// outputs.
[[nodiscard]] constexpr int pool_row_floats(int in_w, int out_w, const window& g) {
    const int padded = in_w + g.pl + g.pr, reach = (out_w - 1) * g.sw + g.kw;
    return (padded > reach ? padded : reach) + out_w;
}

// The floats of scratch the training kernels below need for one plane.
[[nodiscard]] constexpr int pool_scratch_floats(int in_h, int in_w, int out_h, int out_w, const window& g) {
    return g.sh == 1 && g.sw == 1 ? pool_flat_floats(in_h, in_w, out_h, g) : pool_row_floats(in_w, out_w, g);
}

// The divisor of output column ow of a row whose clipped window spans rows [ha, hb) of [h0, h1)
// (cpu::ref::avg_pool's: the window clipped to the padded input, or to the input).
inline int avg_divisor(int ow, int w, const window& g, bool count_pad, int h0, int h1, int ha, int hb) {
    const int w0 = ow * g.sw - g.pl, w1 = std::min(w0 + g.kw, w + g.pr);
    return count_pad ? (h1 - h0) * (w1 - w0) : (hb - ha) * (std::min(w1, w) - std::max(w0, 0));
}

// Copies a plane into tmp padded with zeros (pt, pb rows; pl, pr columns), followed by the
// kw floats the last tap reads past it; returns the first float after those.
inline float* pad_plane(const float* src, int h, int w, const window& g, float* tmp) {
    const int wp = w + g.pl + g.pr;
    float* end = tmp + static_cast<std::ptrdiff_t>(h + g.pt + g.pb) * wp + g.kw;
    std::fill(tmp, end, 0.0F);
    for (int ih = 0; ih < h; ++ih)
        std::copy(src + static_cast<std::ptrdiff_t>(ih) * w, src + static_cast<std::ptrdiff_t>(ih + 1) * w,
                  tmp + static_cast<std::ptrdiff_t>(ih + g.pt) * wp + g.pl);
    return end;
}

// Average pooling for training: the additions of cpu::ref::avg_pool in its order (each output
// sums its window row by row, left to right; a padded tap adds an exact zero), vectorised across
// the outputs of a row, so bit-identical to the reference (the training backends are compared
// bit for bit on Inception v3, where batch norm over 1x1 maps magnifies any rounding).
// tmp: pool_scratch_floats(h, w, oh_n, ow_n, g) floats.
inline void avg_pool_train_plane(const float* x, int h, int w, float* y, int oh_n, int ow_n, const window& g,
                                 bool count_pad, float* tmp) {
    if (g.sh == 1 && g.sw == 1) {
        const int wp = w + g.pl + g.pr, taps = g.kh * g.kw, q_n = oh_n * wp;
        const float* plane = tmp;
        float* out = pad_plane(x, h, w, g, tmp);
        std::fill(out, out + q_n, 0.0F);
        for (int t = 0; t < taps; ++t) {  // row by row, left to right: the reference's order
            const float* src = plane + static_cast<std::ptrdiff_t>(t / g.kw) * wp + t % g.kw;
            for (int q = 0; q < q_n; ++q) out[q] += src[q];
        }
        for (int oh = 0; oh < oh_n; ++oh) {
            const int h0 = oh - g.pt, h1 = std::min(h0 + g.kh, h + g.pb), ha = std::max(h0, 0), hb = std::min(h1, h);
            float* yr = y + static_cast<std::ptrdiff_t>(oh) * ow_n;
            for (int ow = 0; ow < ow_n; ++ow)
                yr[ow] = out[oh * wp + ow] / static_cast<float>(avg_divisor(ow, w, g, count_pad, h0, h1, ha, hb));
        }
        return;
    }
    const int padded = pool_row_floats(w, ow_n, g) - ow_n;
    std::fill(tmp, tmp + padded, 0.0F);
    float* mid = tmp + g.pl;
    for (int oh = 0; oh < oh_n; ++oh) {
        const int h0 = oh * g.sh - g.pt, h1 = std::min(h0 + g.kh, h + g.pb);
        const int ha = std::max(h0, 0), hb = std::min(h1, h);
        float* yr = y + static_cast<std::ptrdiff_t>(oh) * ow_n;
        std::fill(yr, yr + ow_n, 0.0F);
        for (int ih = ha; ih < hb; ++ih) {
            std::copy(x + static_cast<std::ptrdiff_t>(ih) * w, x + static_cast<std::ptrdiff_t>(ih + 1) * w, mid);
            for (int d = 0; d < g.kw; ++d) {
                if (g.sw == 1) {
                    for (int ow = 0; ow < ow_n; ++ow) yr[ow] += tmp[ow + d];
                } else {
                    for (int ow = 0; ow < ow_n; ++ow) yr[ow] += tmp[ow * g.sw + d];
                }
            }
        }
        for (int ow = 0; ow < ow_n; ++ow) yr[ow] /= static_cast<float>(avg_divisor(ow, w, g, count_pad, h0, h1, ha, hb));
    }
}

// dx[window of each output] += dy / divisor, bit-identical to cpu::ref::avg_pool_backward: every
// element of dx receives its outputs' shares in the reference's order (outputs row by row, left
// to right), vectorised across the outputs of a row. tmp: pool_scratch_floats(h, w, oh_n, ow_n, g) floats.
inline void avg_pool_backward_plane(const float* dy, int h, int w, float* dx, int oh_n, int ow_n, const window& g,
                                    bool count_pad, float* tmp) {
    if (g.sh == 1 && g.sw == 1) {
        // dx padded and flattened, each output's share v (zero in the dropped columns) added by
        // tap, last tap first, so that an element sees its outputs in the reference's order. The
        // zeros added at dropped columns leave every value equal (a -0 may become +0).
        const int wp = w + g.pl + g.pr, taps = g.kh * g.kw, q_n = oh_n * wp;
        float* plane = tmp;
        float* v = pad_plane(dx, h, w, g, tmp);
        std::fill(v, v + q_n, 0.0F);
        for (int oh = 0; oh < oh_n; ++oh) {
            const int h0 = oh - g.pt, h1 = std::min(h0 + g.kh, h + g.pb), ha = std::max(h0, 0), hb = std::min(h1, h);
            const float* gr = dy + static_cast<std::ptrdiff_t>(oh) * ow_n;
            for (int ow = 0; ow < ow_n; ++ow)
                v[oh * wp + ow] = gr[ow] / static_cast<float>(avg_divisor(ow, w, g, count_pad, h0, h1, ha, hb));
        }
        for (int t = taps - 1; t >= 0; --t) {
            float* dst = plane + static_cast<std::ptrdiff_t>(t / g.kw) * wp + t % g.kw;
            for (int q = 0; q < q_n; ++q) dst[q] += v[q];
        }
        for (int ih = 0; ih < h; ++ih) {
            const float* src = plane + static_cast<std::ptrdiff_t>(ih + g.pt) * wp + g.pl;
            std::copy(src, src + w, dx + static_cast<std::ptrdiff_t>(ih) * w);
        }
        return;
    }
    float* v = tmp + (pool_row_floats(w, ow_n, g) - ow_n);
    for (int oh = 0; oh < oh_n; ++oh) {
        const int h0 = oh * g.sh - g.pt, h1 = std::min(h0 + g.kh, h + g.pb);
        const int ha = std::max(h0, 0), hb = std::min(h1, h);
        const float* gr = dy + static_cast<std::ptrdiff_t>(oh) * ow_n;
        for (int ow = 0; ow < ow_n; ++ow)
            v[ow] = gr[ow] / static_cast<float>(avg_divisor(ow, w, g, count_pad, h0, h1, ha, hb));
        for (int ih = ha; ih < hb; ++ih) {
            float* row = dx + static_cast<std::ptrdiff_t>(ih) * w;
            // Taps right to left, so that an element sees its outputs left to right.
            for (int d = g.kw - 1; d >= 0; --d) {
                const int off = d - g.pl;
                const auto [a, b] = inside_columns(off, g.sw, w, ow_n);
                if (g.sw == 1) {
                    float* r = row + (a + off);
                    for (int ow = a; ow < b; ++ow) r[ow - a] += v[ow];
                } else {
                    for (int ow = a; ow < b; ++ow) row[ow * g.sw + off] += v[ow];
                }
            }
        }
    }
}

}  // namespace ctnet::cpu
