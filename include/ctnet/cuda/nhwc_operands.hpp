// ctnet/cuda/nhwc_operands.hpp — what ctnet's NHWC kernels compute, element by element, for the
// host and the device (CTNET_HD), over a storage type S (float, or fp16 / bf16 bit patterns):
// the conv as a GEMM problem for the tiled engine of src/cuda/conv.cuh, and the pooling windows.
// tests/test_nhwc_plan.cpp runs them as plain loops against the reference kernels without a GPU
// (float storage, and fp16 / bf16 storage through cuda/half.hpp); src/cuda/nhwc.cu runs the same
// functions on the device with storage types whose conversions are CUDA's intrinsics.
//
// Storage S: S::type (what memory holds), S::load(type) -> float, S::store(float) -> type.
// Accumulation is always float; a stored result is rounded once (round to nearest even).
#pragma once

#include <cstdint>

#include "half.hpp"
#include "types.hpp"

namespace ctnet::cuda::nhwc {

struct f32 {
    using type = float;
    CTNET_HD static float load(float v) { return v; }
    CTNET_HD static float store(float v) { return v; }
};
struct f16_bits {  // IEEE half as its bit pattern (the host's view of __half)
    using type = std::uint16_t;
    CTNET_HD static float load(std::uint16_t v) { return half::to_float(v); }
    CTNET_HD static std::uint16_t store(float v) { return half::from_float(v); }
};
struct bf16_bits {
    using type = std::uint16_t;
    CTNET_HD static float load(std::uint16_t v) { return bf16::to_float(v); }
    CTNET_HD static std::uint16_t store(float v) { return bf16::from_float(v); }
};

// n samples of a c x h x w channel slice of an NHWC buffer of `channels` channels: element
// (i, ch, y, x) at data[i * sn + (y * w + x) * channels + ch]; data already points at channel c0.
template <class T>
struct view {
    T* data = nullptr;
    long long sn = 0;
    int channels = 0;
    int c = 0, h = 0, w = 0;
    CTNET_HD T& at(long long i, int ch, int y, int x) const {
        return data[i * sn + (static_cast<long long>(y) * w + x) * channels + ch];
    }
};

// y = relu?(conv(x) + bias) as C[z] (rows x cols) = A[z] (rows x depth) * B (depth x cols) for
// sample z: rows = output pixels (oy, ox), cols = output channels, depth = kh * kw * cin in
// (ky, kx, ci) order, so consecutive k read consecutive channels of one input pixel and
// consecutive j write consecutive channels of one output pixel. wt: the folded weights as
// [depth][cout] (KRSC transposed at load), bias: cout floats, or null for none.
template <class S>
struct conv_forward {
    using T = typename S::type;
    const T* wt;
    const float* bias;
    bool relu;
    geometry g;
    view<const T> x;
    view<T> y;
    int rows, cols, depth;

    conv_forward(const T* wt_, const float* bias_, bool relu_, geometry g_, view<const T> x_, view<T> y_)
        : wt{wt_}, bias{bias_}, relu{relu_}, g{g_}, x{x_}, y{y_}, rows{y_.h * y_.w}, cols{y_.c},
          depth{g_.kh * g_.kw * x_.c} {}

    CTNET_HD float a(int z, int m, int k) const {
        const int ci = k % x.c, t = k / x.c;
        const int kx = t % g.kw, ky = t / g.kw;
        const int oy = m / y.w, ox = m - oy * y.w;
        const int iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx;
        if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) return 0.0F;
        return S::load(x.at(z, ci, iy, ix));
    }
    CTNET_HD float b(int, int k, int j) const { return S::load(wt[static_cast<long long>(k) * cols + j]); }
    CTNET_HD void store(int z, int m, int j, float acc) const {
        float v = bias != nullptr ? acc + bias[j] : acc;  // no bias: a pooled conv (the pool adds it)
        if (relu && v <= 0.0F) v = 0.0F;  // not fmaxf: NaN stays NaN, as in torch and backend::cpu
        const int oy = m / y.w, ox = m - oy * y.w;
        y.at(z, j, oy, ox) = S::store(v);
    }
};

// Max over the window of output (i, ch, oy, ox); NaN propagates; -inf for an empty window.
template <class S>
CTNET_HD float max_pool_at(const geometry& g, const view<const typename S::type>& x, long long i, int ch, int oy, int ox) {
    float m = -__builtin_huge_valf();
    for (int ky = 0; ky < g.kh; ++ky)
        for (int kx = 0; kx < g.kw; ++kx) {
            const int iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx;
            if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) continue;
            const float v = S::load(x.at(i, ch, iy, ix));
            if (v > m || v != v) m = v;
        }
    return m;
}

// Average over the window, the divisor as the reference: with count_pad the window clipped to
// the padded input, else the pixels inside.
template <class S>
CTNET_HD float avg_pool_at(const geometry& g, bool count_pad, const view<const typename S::type>& x, long long i, int ch,
                           int oy, int ox) {
    const int h0 = oy * g.sh - g.pt, w0 = ox * g.sw - g.pl;
    const int h1 = (h0 + g.kh < x.h + g.pb) ? h0 + g.kh : x.h + g.pb, w1 = (w0 + g.kw < x.w + g.pr) ? w0 + g.kw : x.w + g.pr;
    float sum = 0.0F;
    int inside = 0;
    for (int iy = h0 < 0 ? 0 : h0; iy < (h1 < x.h ? h1 : x.h); ++iy)
        for (int ix = w0 < 0 ? 0 : w0; ix < (w1 < x.w ? w1 : x.w); ++ix) {
            sum += S::load(x.at(i, ch, iy, ix));
            ++inside;
        }
    const int divisor = count_pad ? (h1 - h0) * (w1 - w0) : inside;
    return sum / static_cast<float>(divisor);
}

// The average pool of a pooled 1x1 conv's output (nhwc::step::pooled): relu?(pool + bias[ch]),
// the conv's bias and ReLU after the pool (bias null: a plain average pool, relu false).
template <class S>
CTNET_HD float pooled_at(const geometry& g, bool count_pad, const float* bias, bool relu, const view<const typename S::type>& x,
                         long long i, int ch, int oy, int ox) {
    float v = avg_pool_at<S>(g, count_pad, x, i, ch, oy, ox);
    if (bias != nullptr) v += bias[ch];
    if (relu && v <= 0.0F) v = 0.0F;  // NaN stays NaN, as conv_forward's epilogue
    return v;
}

// Mean of one channel's plane, summed in (y, x) order as the reference.
template <class S>
CTNET_HD float global_avg_at(const view<const typename S::type>& x, long long i, int ch) {
    float sum = 0.0F;
    for (int y = 0; y < x.h; ++y)
        for (int xx = 0; xx < x.w; ++xx) sum += S::load(x.at(i, ch, y, xx));
    return sum / static_cast<float>(x.h * x.w);
}

// Where weight (o, ci, ky, kx) of a torch (O, I, KH, KW) conv goes: in KRSC order ([out][kh][kw][in],
// cuDNN's NHWC filter layout, what the runner uploads) and in the transposed [(ky, kx, ci)][out]
// order ctnet's NHWC GEMM reads (conv_forward::wt): KC[k][o] = KRSC[o][k].
CTNET_HD long long krsc_index(int o, int ci, int ky, int kx, int cin, int kh, int kw) {
    return ((static_cast<long long>(o) * kh + ky) * kw + kx) * cin + ci;
}
CTNET_HD long long kc_index(int o, int ci, int ky, int kx, int cin, int kw, int cout) {
    return ((static_cast<long long>(ky) * kw + kx) * cin + ci) * cout + o;
}

// Feature f of a linear layer's NHWC input that NCHW feature (c, y, x) of a flattened (C, H, W)
// buffer becomes: the load-time permutation of the weights' columns.
CTNET_HD long long nhwc_feature(int c, int y, int x, int channels, int w) {
    return (static_cast<long long>(y) * w + x) * channels + c;
}

}  // namespace ctnet::cuda::nhwc
