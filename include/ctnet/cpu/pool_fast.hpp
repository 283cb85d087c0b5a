// ctnet/cpu/pool_fast.hpp — pooling on one channel plane, separably: a vertical pass over each
// output row's input rows into a row buffer (contiguous, vectorised by the compiler), then a
// horizontal pass over the buffer.
//
// Requires: plane pointers of the given shapes; tmp: at least w + pl + pr floats.
// Guarantees: max pooling equals the reference exactly (NaN propagates, as in torch); average
// pooling sums in another order than the reference (within float rounding; the divisor is the
// same: the window clipped to the padded input, or to the input when count_pad is off).
#pragma once

#include <algorithm>
#include <limits>

#include "../graph/program.hpp"

namespace ctnet::cpu {

namespace detail {
// max that keeps a NaN from either side, as torch's max pooling does
inline float nan_max(float a, float b) { return (b > a || b != b) ? b : a; }
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
// division per output instead of a clipped window per output.
inline void avg_pool_plane_s1(const float* x, int h, int w, float* y, int oh_n, int ow_n, const window& g, float* tmp) {
    const int wp = w + g.pl + g.pr;
    std::fill(tmp, tmp + g.pl, 0.0F);
    std::fill(tmp + g.pl + w, tmp + wp, 0.0F);
    float* mid = tmp + g.pl;
    for (int oh = 0; oh < oh_n; ++oh) {
        const int h0 = oh * g.sh - g.pt, h1 = std::min(h0 + g.kh, h + g.pb);
        const int ha = std::max(h0, 0), hb = std::min(h1, h);
        std::fill(mid, mid + w, 0.0F);
        for (int ih = ha; ih < hb; ++ih) {
            const float* row = x + static_cast<std::ptrdiff_t>(ih) * w;
            for (int iw = 0; iw < w; ++iw) mid[iw] += row[iw];
        }
        float* yr = y + static_cast<std::ptrdiff_t>(oh) * ow_n;
        std::copy(tmp, tmp + ow_n, yr);
        for (int d = 1; d < g.kw; ++d)
            for (int ow = 0; ow < ow_n; ++ow) yr[ow] += tmp[ow + d];
        const auto divisor = static_cast<float>((h1 - h0) * g.kw);
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

}  // namespace ctnet::cpu
