// src/cuda/nhwc_ops.cuh — ctnet's NHWC kernels besides the conv (which is the tiled GEMM of
// conv.cuh over cuda/nhwc_operands.hpp's conv_forward), over a storage type S (float, __half,
// __nv_bfloat16; float arithmetic): the input transform (NCHW float -> NHWC storage, a
// channel_affine fused), the output conversion, pooling, linear, softmax and one pointwise kernel
// (affine, ReLU, copy, and the copy of a packed conv output into its concat slice). Each thread
// runs the element function the host tests check (tests/test_nhwc_plan.cpp, test_nhwc_exec.cpp);
// threads in NHWC order, channel fastest, so loads and stores are contiguous. nvcc only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <ctnet/cuda/nhwc_operands.hpp>

namespace ctnet::cuda {

namespace nk {  // the NHWC kernels

struct d_f32 {
    using type = float;
    __host__ __device__ static float load(float v) { return v; }
    __host__ __device__ static float store(float v) { return v; }
};
struct d_f16 {
    using type = __half;
    __host__ __device__ static float load(__half v) { return __half2float(v); }
    __host__ __device__ static __half store(float v) { return __float2half_rn(v); }
};
struct d_bf16 {
    using type = __nv_bfloat16;
    __host__ __device__ static float load(__nv_bfloat16 v) { return __bfloat162float(v); }
    __host__ __device__ static __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

__device__ __forceinline__ long long first_index() { return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ long long grid_step() { return static_cast<long long>(gridDim.x) * blockDim.x; }

// NCHW float input -> NHWC storage, y = x * scale[c] + shift[c] when scale is given. Threads in
// NHWC order (channel fastest), so the stores are contiguous.
template <class S>
__global__ void input_transform(const float* x, const float* scale, const float* shift, nhwc::view<typename S::type> y,
                                long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int ch = static_cast<int>(e % y.c);
        const long long p = e / y.c;
        const int xx = static_cast<int>(p % y.w), yy = static_cast<int>(p / y.w % y.h);
        const long long i = p / (static_cast<long long>(y.w) * y.h);
        float v = x[((i * y.c + ch) * y.h + yy) * y.w + xx];
        if (scale != nullptr) v = v * scale[ch] + shift[ch];
        y.at(i, ch, yy, xx) = S::store(v);
    }
}

// NHWC storage -> NCHW float (the logits).
template <class S>
__global__ void output_transform(nhwc::view<const typename S::type> x, float* y, long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int xx = static_cast<int>(e % x.w), yy = static_cast<int>(e / x.w % x.h);
        const long long plane = e / (static_cast<long long>(x.w) * x.h);
        const int ch = static_cast<int>(plane % x.c);
        y[e] = S::load(x.at(plane / x.c, ch, yy, xx));
    }
}

template <class S>
__global__ void max_pool(geometry g, nhwc::view<const typename S::type> x, nhwc::view<typename S::type> y, long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int ch = static_cast<int>(e % y.c);
        const long long p = e / y.c;
        const int ox = static_cast<int>(p % y.w), oy = static_cast<int>(p / y.w % y.h);
        const long long i = p / (static_cast<long long>(y.w) * y.h);
        y.at(i, ch, oy, ox) = S::store(nhwc::max_pool_at<S>(g, x, i, ch, oy, ox));
    }
}

// A pooled one (after its 1x1 conv): y = relu?(pool(x) + bias[c]), the conv's bias and ReLU.
template <class S>
__global__ void avg_pool(geometry g, bool count_pad, const float* bias, bool relu, nhwc::view<const typename S::type> x,
                         nhwc::view<typename S::type> y, long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int ch = static_cast<int>(e % y.c);
        const long long p = e / y.c;
        const int ox = static_cast<int>(p % y.w), oy = static_cast<int>(p / y.w % y.h);
        const long long i = p / (static_cast<long long>(y.w) * y.h);
        y.at(i, ch, oy, ox) = S::store(nhwc::pooled_at<S>(g, count_pad, bias, relu, x, i, ch, oy, ox));
    }
}

template <class S>
__global__ void global_avg_pool(nhwc::view<const typename S::type> x, nhwc::view<typename S::type> y, long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int ch = static_cast<int>(e % x.c);
        const long long i = e / x.c;
        y.at(i, ch, 0, 0) = S::store(nhwc::global_avg_at<S>(x, i, ch));
    }
}

// y = relu?(x * scale[c] + shift[c]) (scale null: y = relu?(x)); also the copy of a packed
// temporary into its concat slice.
template <class S>
__global__ void pointwise(const float* scale, const float* shift, bool relu, nhwc::view<const typename S::type> x,
                          nhwc::view<typename S::type> y, long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int ch = static_cast<int>(e % x.c);
        const long long p = e / x.c;
        const int xx = static_cast<int>(p % x.w), yy = static_cast<int>(p / x.w % x.h);
        const long long i = p / (static_cast<long long>(x.w) * x.h);
        float v = S::load(x.at(i, ch, yy, xx));
        if (scale != nullptr) v = v * scale[ch] + shift[ch];
        if (relu && v < 0.0F) v = 0.0F;  // NaN passes, as the reference's std::max(v, 0)
        y.at(i, ch, yy, xx) = S::store(v);
    }
}

// One warp per output (sample, feature): lanes take strided inputs, then a shuffle tree.
template <class S>
__global__ void linear(const typename S::type* w, const float* bias, nhwc::view<const typename S::type> x,
                       nhwc::view<typename S::type> y, int n) {
    const int in = x.c, out = y.c;
    const long long warp = first_index() / 32;
    const int lane = static_cast<int>(threadIdx.x % 32);
    if (warp >= static_cast<long long>(n) * out) return;
    const int i = static_cast<int>(warp / out), o = static_cast<int>(warp % out);
    const typename S::type* xs = x.data + i * x.sn;
    const typename S::type* wo = w + static_cast<long long>(o) * in;
    float acc = 0.0F;
    for (int j = lane; j < in; j += 32) acc = fmaf(S::load(wo[j]), S::load(xs[j]), acc);
    for (int d = 16; d > 0; d /= 2) acc += __shfl_down_sync(0xffffffffU, acc, d);
    if (lane == 0) y.data[i * y.sn + o] = S::store(acc + (bias != nullptr ? bias[o] : 0.0F));
}

// One block of 256 threads per sample: max, then the sum of exponentials in double.
template <class S>
__global__ void softmax(nhwc::view<const typename S::type> x, nhwc::view<typename S::type> y) {
    __shared__ float red_max[256];
    __shared__ double red_sum[256];
    const int k = x.c, t = static_cast<int>(threadIdx.x);
    const typename S::type* xs = x.data + static_cast<long long>(blockIdx.x) * x.sn;
    typename S::type* ys = y.data + static_cast<long long>(blockIdx.x) * y.sn;
    float m = -INFINITY;
    for (int j = t; j < k; j += 256) m = fmaxf(m, S::load(xs[j]));
    red_max[t] = m;
    __syncthreads();
    for (int d = 128; d > 0; d /= 2) {
        if (t < d) red_max[t] = fmaxf(red_max[t], red_max[t + d]);
        __syncthreads();
    }
    m = red_max[0];
    double s = 0.0;
    for (int j = t; j < k; j += 256) s += expf(S::load(xs[j]) - m);
    red_sum[t] = s;
    __syncthreads();
    for (int d = 128; d > 0; d /= 2) {
        if (t < d) red_sum[t] += red_sum[t + d];
        __syncthreads();
    }
    const double sum = red_sum[0];
    for (int j = t; j < k; j += 256) ys[j] = S::store(static_cast<float>(expf(S::load(xs[j]) - m) / sum));
}

}  // namespace nk

}  // namespace ctnet::cuda
