// ctnet/cuda/operands.hpp — what the CUDA kernels compute, element by element, in functions a
// host compiler takes too (CTNET_HD), so tests/test_cuda_operands.cpp checks every index formula
// against the reference kernels (cpu/reference.hpp, cpu/backward.hpp) on machines without a GPU.
//
// A convolution and both of its gradients are one tiled GEMM each (src/cuda/conv.cuh runs any of
// them): C[z] (rows x cols) = A[z] (rows x depth) * B[z] (depth x cols) for every slice z of the
// grid, with the operands read through a(z, m, k) and b(z, k, j) and the result written by
// store(z, m, j, acc). The engine calls them only for m < rows, k < depth, j < cols.
//   conv_forward      y = W * im2col(x) + bias (ReLU)      z: sample
//   conv_input_grad   dx += W^T * dY, gathered              z: sample
//   conv_weight_grad  partial[z] = dY * im2col(x)^T         z: a chunk of samples (summed later in z order)
// The pooling gradients are gathers too (one thread per input element, no atomics), so every
// run gives the same bits.
// Requires: views into memory the caller's side can read (device memory on the GPU, host memory
// in the tests). Guarantees: no state; pooling gradients add in the reference's order (the same
// bits); GEMM results differ from the reference loops only by summation order.
#pragma once

#include "types.hpp"

namespace ctnet::cuda::operands {

CTNET_HD int imin(int a, int b) { return a < b ? a : b; }
CTNET_HD int imax(int a, int b) { return a > b ? a : b; }
CTNET_HD bool is_nan(float v) { return v != v; }
CTNET_HD bool is_finite(float v) { return v - v == 0.0F; }  // inf - inf and NaN are NaN

// Element (kk, j) of sample xs's im2col matrix for output width out_w: kk = (channel, ky, kx) in
// torch's (C, KH, KW) order, j = (oy, ox); zero in the padding.
CTNET_HD float im2col(const geometry& g, const view& x, const float* xs, int out_w, int kk, int j) {
    const int taps = g.kh * g.kw;
    const int c = kk / taps, r = kk - c * taps;
    const int ky = r / g.kw, kx = r - ky * g.kw;
    const int oy = j / out_w, ox = j - oy * out_w;
    const int iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx;
    if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) return 0.0F;
    return xs[(static_cast<long long>(c) * x.h + iy) * x.w + ix];
}

// y = relu?(W * im2col(x) + bias): rows = out channels, cols = out pixels, depth = c * kh * kw;
// w is (rows, depth) row-major. Writes into y's channel slice (concat without a copy).
struct conv_forward {
    const float* w;
    const float* bias;
    bool relu;
    geometry g;
    view x, y;
    int rows, cols, depth;

    conv_forward(const float* w_, const float* bias_, bool relu_, geometry g_, view x_, view y_)
        : w{w_}, bias{bias_}, relu{relu_}, g{g_}, x{x_}, y{y_}, rows{y_.c}, cols{y_.h * y_.w}, depth{x_.c * g_.kh * g_.kw} {}

    CTNET_HD float a(int, int m, int k) const { return w[static_cast<long long>(m) * depth + k]; }
    CTNET_HD float b(int z, int k, int j) const { return im2col(g, x, x.data + z * x.stride, y.w, k, j); }
    CTNET_HD void store(int z, int m, int j, float acc) const {
        float v = acc + bias[m];
        if (relu && v <= 0.0F) v = 0.0F;  // not fmaxf: NaN stays NaN, as in torch and backend::cpu
        y.data[z * y.stride + static_cast<long long>(m) * cols + j] = v;
    }
};

// dx += W^T * dY as a gather: rows = input channels, cols = input pixels, depth = the conv's
// out channels * kh * kw, t = (o, ky, kx). Input pixel (iy, ix) takes tap (ky, kx) of output
// (oy, ox) when iy = oy * sh - pt + ky (and so for x): a stride leaves the other taps zero.
struct conv_input_grad {
    const float* w;  // the conv's (out, in, kh, kw) weights
    geometry g;
    view dy, dx;
    int rows, cols, depth;

    conv_input_grad(const float* w_, geometry g_, view dy_, view dx_)
        : w{w_}, g{g_}, dy{dy_}, dx{dx_}, rows{dx_.c}, cols{dx_.h * dx_.w}, depth{dy_.c * g_.kh * g_.kw} {}

    CTNET_HD float a(int, int c, int t) const {
        const int taps = g.kh * g.kw, o = t / taps;
        return w[(static_cast<long long>(o) * rows + c) * taps + (t - o * taps)];
    }
    CTNET_HD float b(int z, int t, int q) const {
        const int taps = g.kh * g.kw, o = t / taps, r = t - o * taps;
        const int ky = r / g.kw, kx = r - ky * g.kw;
        const int iy = q / dx.w, ix = q - iy * dx.w;
        const int ty = iy + g.pt - ky, tx = ix + g.pl - kx;  // oy * sh, ox * sw
        if (ty < 0 || tx < 0 || ty % g.sh != 0 || tx % g.sw != 0) return 0.0F;
        const int oy = ty / g.sh, ox = tx / g.sw;
        if (oy >= dy.h || ox >= dy.w) return 0.0F;
        return dy.data[z * dy.stride + (static_cast<long long>(o) * dy.h + oy) * dy.w + ox];
    }
    CTNET_HD void store(int z, int c, int q, float acc) const {
        dx.data[z * dx.stride + static_cast<long long>(c) * cols + q] += acc;
    }
};

// The weight gradient of chunk z of the batch: partial[z] = sum over its samples and output
// pixels of dY * im2col(x)^T; rows = out channels, cols = c * kh * kw, depth = per * out pixels.
// Samples [z * per, min(n, (z + 1) * per)); the rest of the last chunk reads as zero.
struct conv_weight_grad {
    geometry g;
    view x, dy;
    float* partial;  // [chunks][rows][cols]
    int n, per;
    int rows, cols, depth;

    conv_weight_grad(geometry g_, view x_, view dy_, int n_, int per_, float* partial_)
        : g{g_}, x{x_}, dy{dy_}, partial{partial_}, n{n_}, per{per_}, rows{dy_.c}, cols{x_.c * g_.kh * g_.kw},
          depth{per_ * dy_.h * dy_.w} {}

    CTNET_HD float a(int z, int m, int k) const {
        const int pixels = dy.h * dy.w, s = z * per + k / pixels;
        if (s >= n) return 0.0F;
        return dy.data[s * dy.stride + static_cast<long long>(m) * pixels + (k - k / pixels * pixels)];
    }
    CTNET_HD float b(int z, int k, int j) const {
        const int pixels = dy.h * dy.w, s = z * per + k / pixels;
        if (s >= n) return 0.0F;
        return im2col(g, x, x.data + s * x.stride, dy.w, j, k - k / pixels * pixels);
    }
    CTNET_HD void store(int z, int m, int j, float acc) const {
        partial[(static_cast<long long>(z) * rows + m) * cols + j] = acc;
    }
};

// Output rows (or columns) whose window covers input row i: [first, last], empty when first > last.
struct covering {
    int first, last;
};
CTNET_HD covering windows_over(int i, int k, int s, int pad, int out) {
    // o * s - pad <= i <= o * s - pad + k - 1
    const int hi = i + pad, lo = hi - k + 1;
    const int first = lo <= 0 ? 0 : (lo + s - 1) / s;
    return {first, imin(out - 1, hi / s)};
}

// The max-pool gradient of input element (iy, ix) of one plane, added to `start` (its gradient
// so far): each window passes its whole gradient to its first maximum in scan order (NaN wins),
// as cpu::ref::max_pool_backward, windows in the same (oy, ox) order.
CTNET_HD float max_pool_grad(const geometry& g, const float* xc, int in_h, int in_w, const float* gc, int out_h,
                             int out_w, int iy, int ix, float start) {
    const covering ys = windows_over(iy, g.kh, g.sh, g.pt, out_h), xs = windows_over(ix, g.kw, g.sw, g.pl, out_w);
    float acc = start;
    for (int oy = ys.first; oy <= ys.last; ++oy)
        for (int ox = xs.first; ox <= xs.last; ++ox) {
            float m = 0.0F;
            int at = -1;
            for (int ky = 0; ky < g.kh; ++ky)
                for (int kx = 0; kx < g.kw; ++kx) {
                    const int y = oy * g.sh - g.pt + ky, x = ox * g.sw - g.pl + kx;
                    if (y < 0 || y >= in_h || x < 0 || x >= in_w) continue;
                    const float v = xc[y * in_w + x];
                    if (at < 0 || v > m || (is_nan(v) && !is_nan(m))) {
                        m = v;
                        at = y * in_w + x;
                    }
                }
            if (at == iy * in_w + ix) acc += gc[oy * out_w + ox];
        }
    return acc;
}

// The average-pool gradient of input element (iy, ix), added to `start`: dy / divisor of every
// window over it, the divisor as in the forward pass (cpu::ref::avg_pool_backward's order).
CTNET_HD float avg_pool_grad(const geometry& g, bool count_pad, int in_h, int in_w, const float* gc, int out_h,
                             int out_w, int iy, int ix, float start) {
    const covering ys = windows_over(iy, g.kh, g.sh, g.pt, out_h), xs = windows_over(ix, g.kw, g.sw, g.pl, out_w);
    float acc = start;
    for (int oy = ys.first; oy <= ys.last; ++oy)
        for (int ox = xs.first; ox <= xs.last; ++ox) {
            const int h0 = oy * g.sh - g.pt, w0 = ox * g.sw - g.pl;
            const int h1 = imin(h0 + g.kh, in_h + g.pb), w1 = imin(w0 + g.kw, in_w + g.pr);
            const int inside = (imin(h1, in_h) - imax(h0, 0)) * (imin(w1, in_w) - imax(w0, 0));
            const int divisor = count_pad ? (h1 - h0) * (w1 - w0) : inside;
            acc += gc[oy * out_w + ox] / static_cast<float>(divisor);
        }
    return acc;
}

// Training-mode batch norm reduces each channel's count = n * h * w values over bn_blocks(count)
// blocks (a grid of blocks x channels), so a large early layer (Inception v3 at batch 128: 64
// channels of 2.8 M values) fills the GPU instead of 64 of its SMs. Block b takes the slice
// [begin, end) of the channel's values in (sample, pixel) order; the blocks' partial sums are
// then added in block order, so every run gives the same bits.
inline constexpr int bn_threads = 256;
inline constexpr int bn_max_blocks = 32;
CTNET_HD int bn_blocks(long long count) {
    const long long per = static_cast<long long>(bn_threads) * 16;  // at least 16 values per thread
    const long long b = (count + per - 1) / per;
    return b < 1 ? 1 : b > bn_max_blocks ? bn_max_blocks : static_cast<int>(b);
}
struct bn_slice {
    long long begin = 0, end = 0;
};
CTNET_HD bn_slice bn_slice_of(long long count, int blocks, int b) {
    const long long per = (count + blocks - 1) / blocks;
    const long long begin = per * b < count ? per * b : count;
    return {begin, begin + per < count ? begin + per : count};
}

// Walks channel c's values e, e + step, ... of a view: value e is pixel e % plane of sample
// e / plane, found with divisions at the start and none per step.
struct channel_walk {
    long long sample;
    int pixel, plane, step_samples, step_pixels;
    CTNET_HD channel_walk(long long e, int plane_, int step)
        : sample{e / plane_}, pixel{static_cast<int>(e % plane_)}, plane{plane_}, step_samples{step / plane_},
          step_pixels{step % plane_} {}
    CTNET_HD long long offset(const view& v, int c) const {
        return sample * v.stride + static_cast<long long>(c) * plane + pixel;
    }
    CTNET_HD void advance() {
        sample += step_samples;
        pixel += step_pixels;
        if (pixel >= plane) {
            pixel -= plane;
            ++sample;
        }
    }
};

}  // namespace ctnet::cuda::operands
