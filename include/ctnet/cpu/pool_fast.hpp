// ctnet/cpu/pool_fast.hpp — pooling on one channel plane, without per-tap bounds checks inside.
//
// Requires: plane pointers of the given shapes; the window geometry of a pooling op.
// Guarantees: the reference kernels' results (same operations in the same order for each
// output, so bit-identical); NaN propagates through max pooling as in torch.
#pragma once

#include <algorithm>
#include <limits>

#include "../graph/program.hpp"

namespace ctnet::cpu {

inline void max_pool_plane(const float* x, int h, int w, float* y, int oh_n, int ow_n, const window& g) {
    for (int oh = 0; oh < oh_n; ++oh) {
        const int h0 = oh * g.sh - g.pt, ha = std::max(h0, 0), hb = std::min(h0 + g.kh, h);
        for (int ow = 0; ow < ow_n; ++ow) {
            const int w0 = ow * g.sw - g.pl, wa = std::max(w0, 0), wb = std::min(w0 + g.kw, w);
            float m = -std::numeric_limits<float>::infinity();
            for (int ih = ha; ih < hb; ++ih) {
                const float* row = x + static_cast<std::ptrdiff_t>(ih) * w;
                for (int iw = wa; iw < wb; ++iw) {
                    const float v = row[iw];
                    m = (v > m || v != v) ? v : m;
                }
            }
            y[oh * ow_n + ow] = m;
        }
    }
}

inline void avg_pool_plane(const float* x, int h, int w, float* y, int oh_n, int ow_n, const window& g, bool count_pad) {
    for (int oh = 0; oh < oh_n; ++oh) {
        const int h0 = oh * g.sh - g.pt, h1 = std::min(h0 + g.kh, h + g.pb);
        const int ha = std::max(h0, 0), hb = std::min(h1, h);
        for (int ow = 0; ow < ow_n; ++ow) {
            const int w0 = ow * g.sw - g.pl, w1 = std::min(w0 + g.kw, w + g.pr);
            const int wa = std::max(w0, 0), wb = std::min(w1, w);
            float sum = 0.0F;
            for (int ih = ha; ih < hb; ++ih) {
                const float* row = x + static_cast<std::ptrdiff_t>(ih) * w;
                for (int iw = wa; iw < wb; ++iw) sum += row[iw];
            }
            const int divisor = count_pad ? (h1 - h0) * (w1 - w0) : (hb - ha) * (wb - wa);
            y[oh * ow_n + ow] = sum / static_cast<float>(divisor);
        }
    }
}

}  // namespace ctnet::cpu
