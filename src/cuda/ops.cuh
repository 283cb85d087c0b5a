// src/cuda/ops.cuh — the kernels besides convolution (nvcc only; see cuda/launch.hpp). Each
// follows the reference kernel (cpu/reference.hpp) operation for operation: the same window
// bounds, divisors, NaN handling and accumulation order within one output.
#pragma once

#include <cmath>

#include <ctnet/cuda/launch.hpp>

namespace ctnet::cuda::kernels {

// Element e of n samples of v's shape, e = ((i * c + ch) * h + y) * w + x.
__device__ __forceinline__ float* at(const view& v, long long e) {
    const long long per = static_cast<long long>(v.c) * v.h * v.w;
    return v.data + (e / per) * v.stride + e % per;
}

__device__ __forceinline__ long long first_index() { return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ long long grid_step() { return static_cast<long long>(gridDim.x) * blockDim.x; }

__global__ void max_pool(geometry g, view x, view y, long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int ow = static_cast<int>(e % y.w), oh = static_cast<int>(e / y.w % y.h);
        const long long plane = e / (static_cast<long long>(y.w) * y.h);  // sample * c + channel
        const int ch = static_cast<int>(plane % y.c);
        const float* xc = x.data + plane / y.c * x.stride + static_cast<long long>(ch) * x.h * x.w;
        float m = -INFINITY;
        for (int kh = 0; kh < g.kh; ++kh)
            for (int kw = 0; kw < g.kw; ++kw) {
                const int ih = oh * g.sh - g.pt + kh, iw = ow * g.sw - g.pl + kw;
                if (ih >= 0 && ih < x.h && iw >= 0 && iw < x.w) {
                    const float v = xc[ih * x.w + iw];
                    if (v > m || isnan(v)) m = v;  // NaN propagates, as in torch
                }
            }
        *at(y, e) = m;
    }
}

__global__ void avg_pool(geometry g, bool count_pad, view x, view y, long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int ow = static_cast<int>(e % y.w), oh = static_cast<int>(e / y.w % y.h);
        const long long plane = e / (static_cast<long long>(y.w) * y.h);
        const int ch = static_cast<int>(plane % y.c);
        const float* xc = x.data + plane / y.c * x.stride + static_cast<long long>(ch) * x.h * x.w;
        const int h0 = oh * g.sh - g.pt, w0 = ow * g.sw - g.pl;
        const int h1 = min(h0 + g.kh, x.h + g.pb), w1 = min(w0 + g.kw, x.w + g.pr);
        float sum = 0.0F;
        int inside = 0;
        for (int ih = max(h0, 0); ih < min(h1, x.h); ++ih)
            for (int iw = max(w0, 0); iw < min(w1, x.w); ++iw) {
                sum += xc[ih * x.w + iw];
                ++inside;
            }
        const int divisor = count_pad ? (h1 - h0) * (w1 - w0) : inside;
        *at(y, e) = sum / static_cast<float>(divisor);
    }
}

// One thread per (sample, channel); the plane is summed in order, as the reference does.
__global__ void global_avg_pool(view x, view y, long long total) {
    const int plane = x.h * x.w;
    for (long long e = first_index(); e < total; e += grid_step()) {
        const float* xc = x.data + e / x.c * x.stride + (e % x.c) * plane;
        float sum = 0.0F;
        for (int j = 0; j < plane; ++j) sum += xc[j];
        y.data[e / x.c * y.stride + e % x.c] = sum / static_cast<float>(plane);
    }
}

// One warp per output: lanes take strided features, then a shuffle tree.
__global__ void linear(const float* w, const float* bias, view x, view y, int n) {
    const int in = x.c * x.h * x.w, out = y.c;
    const long long warp = first_index() / 32;
    const int lane = static_cast<int>(threadIdx.x % 32);
    if (warp >= static_cast<long long>(n) * out) return;
    const int i = static_cast<int>(warp / out), o = static_cast<int>(warp % out);
    const float* xs = x.data + i * x.stride;
    const float* wo = w + static_cast<long long>(o) * in;
    float acc = 0.0F;
    for (int j = lane; j < in; j += 32) acc = fmaf(wo[j], xs[j], acc);
    for (int d = 16; d > 0; d /= 2) acc += __shfl_down_sync(0xffffffffU, acc, d);
    if (lane == 0) y.data[i * y.stride + o] = acc + (bias != nullptr ? bias[o] : 0.0F);
}

// One block of 256 threads per sample: max, then the sum of exponentials in double.
__global__ void softmax(view x, view y) {
    __shared__ float red_max[256];
    __shared__ double red_sum[256];
    const int k = x.c * x.h * x.w, t = static_cast<int>(threadIdx.x);
    const float* xs = x.data + static_cast<long long>(blockIdx.x) * x.stride;
    float* ys = y.data + static_cast<long long>(blockIdx.x) * y.stride;
    float m = -INFINITY;
    for (int j = t; j < k; j += 256) m = fmaxf(m, xs[j]);
    red_max[t] = m;
    __syncthreads();
    for (int d = 128; d > 0; d /= 2) {
        if (t < d) red_max[t] = fmaxf(red_max[t], red_max[t + d]);
        __syncthreads();
    }
    m = red_max[0];
    double s = 0.0;
    for (int j = t; j < k; j += 256) {
        const float v = expf(xs[j] - m);
        ys[j] = v;
        s += v;
    }
    red_sum[t] = s;
    __syncthreads();
    for (int d = 128; d > 0; d /= 2) {
        if (t < d) red_sum[t] += red_sum[t + d];
        __syncthreads();
    }
    const double sum = red_sum[0];
    for (int j = t; j < k; j += 256) ys[j] = static_cast<float>(ys[j] / sum);
}

// y = x * a[c] + b[c], a and b computed per channel as the reference does (in double, then float).
__global__ void batch_norm(bn_tensors p, double eps, view x, view y, long long total) {
    const int plane = x.h * x.w;
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int c = static_cast<int>(e / plane % x.c);
        const double inv = 1.0 / sqrt(static_cast<double>(p.var[c]) + eps);
        const auto a = static_cast<float>(p.gamma[c] * inv);
        const auto b = static_cast<float>(p.beta[c] - p.mean[c] * (p.gamma[c] * inv));
        *at(y, e) = *at(x, e) * a + b;
    }
}

__global__ void relu(view x, view y, long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) {
        const float v = *at(x, e);
        *at(y, e) = v < 0.0F ? 0.0F : v;  // std::max(v, 0): NaN and -0 pass, as in the reference
    }
}

__global__ void channel_affine(const float* scale, const float* shift, view x, view y, long long total) {
    const int plane = x.h * x.w;
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int c = static_cast<int>(e / plane % x.c);
        *at(y, e) = *at(x, e) * scale[c] + shift[c];
    }
}

__global__ void copy(view x, view y, long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) *at(y, e) = *at(x, e);
}

}  // namespace ctnet::cuda::kernels
