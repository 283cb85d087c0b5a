// ctnet/cpu/pool_fast.hpp — pooling on one channel plane, separably: a vertical pass over each
// output row's input rows into a row buffer (contiguous, vectorised by the compiler), then a
// horizontal pass over the buffer.
//
// Requires: plane pointers of the given shapes; tmp: at least w floats.
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

inline void max_pool_plane(const float* x, int h, int w, float* y, int oh_n, int ow_n, const window& g, float* tmp) {
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

inline void avg_pool_plane(const float* x, int h, int w, float* y, int oh_n, int ow_n, const window& g, bool count_pad,
                           float* tmp) {
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
