// src/cuda/backward.cuh — the training kernels besides the conv GEMMs (nvcc only; see
// cuda/launch.hpp): batch norm with batch statistics and its gradient, the gradients of ReLU,
// pooling, linear, softmax, dropout's scale and the input affine, the smoothed cross-entropy,
// the weight-gradient chunk sum, and the optimizer's pieces (sum of squares, scale, every optimizer's update).
//
// Each gradient kernel ADDS into dx (and into the parameter gradients) as cpu/backward.hpp does;
// those marked "in place" also take dx == dy. Reductions run in a fixed tree order (no atomics),
// so a run repeats its bits; per-channel statistics are summed in double as on the CPU.
#pragma once

#include <cmath>

#include <ctnet/cuda/launch.hpp>
#include <ctnet/cuda/operands.hpp>

#include "ops.cuh"

namespace ctnet::cuda::kernels {

inline constexpr int reduce_threads = 256;

// The sum over the block of each thread's v, in a fixed tree order; every thread gets it.
// red: reduce_threads doubles of shared memory. Ends with a barrier (red may be reused).
__device__ __forceinline__ double block_sum(double v, double* red) {
    const int t = static_cast<int>(threadIdx.x);
    red[t] = v;
    __syncthreads();
    for (int d = reduce_threads / 2; d > 0; d /= 2) {
        if (t < d) red[t] += red[t + d];
        __syncthreads();
    }
    const double s = red[0];
    __syncthreads();
    return s;
}

// Element e = (sample, j) of channel c of n samples of v: j < h * w.
__device__ __forceinline__ long long channel_at(const view& v, int c, long long e) {
    const long long plane = static_cast<long long>(v.h) * v.w;
    return e / plane * v.stride + c * plane + e % plane;
}

// Training-mode batch norm in passes over a grid of (channels, blocks), blocks =
// operands::bn_blocks(n * h * w): each block reduces its slice of its channel (bn_slice_of) to
// partial sums in double, written to part[c * blocks + b]; the next pass adds a channel's
// partials in block order. A sync BN all-reduces the partials between the passes (the sums of
// every rank's blocks b, then over b: the same order on every rank, and on one rank exactly the
// local arithmetic). `ranks` multiplies the local count (equal shards). cpu/sync_batch_norm.hpp's
// arithmetic: the mean, then the squared deviations from it, then y = x * a + b with
// a = invstd * weight, b = bias - mean * a (cpu::ref::batch_norm_train).
__device__ __forceinline__ double channel_total(const double* part, int blocks, long long row) {
    double s = 0.0;
    for (int b = 0; b < blocks; ++b) s += part[row * blocks + b];
    return s;
}

static_assert(operands::bn_threads == reduce_threads, "batch norm's blocks reduce with block_sum");

// f(w) for each value w of this block's slice (blockIdx.y) of its channel (blockIdx.x), walked with a stride
// of the block's threads (the order every run keeps).
template <class F>
__device__ __forceinline__ void over_slice(int n, int plane, F f) {
    const operands::bn_slice sl =
        operands::bn_slice_of(static_cast<long long>(n) * plane, static_cast<int>(gridDim.y), static_cast<int>(blockIdx.y));
    operands::channel_walk w{sl.begin + threadIdx.x, plane, reduce_threads};
    for (long long e = sl.begin + threadIdx.x; e < sl.end; e += reduce_threads, w.advance()) f(w);
}

__global__ void bn_sums(view x, int n, double* part) {
    __shared__ double red[reduce_threads];
    const int blocks = static_cast<int>(gridDim.y), c = static_cast<int>(blockIdx.x);
    double s = 0.0;
    over_slice(n, x.h * x.w, [&](const operands::channel_walk& w) { s += x.data[w.offset(x, c)]; });
    const double total = block_sum(s, red);
    if (threadIdx.x == 0) part[static_cast<long long>(c) * blocks + blockIdx.y] = total;
}

__global__ void bn_squared_deviations(view x, int n, int ranks, const double* part, double* sq) {
    __shared__ double red[reduce_threads];
    const int blocks = static_cast<int>(gridDim.y), c = static_cast<int>(blockIdx.x);
    const double m = static_cast<double>(n) * x.h * x.w * ranks;
    const double mean = channel_total(part, blocks, c) / m;
    double q = 0.0;
    over_slice(n, x.h * x.w, [&](const operands::channel_walk& w) {
        const double d = x.data[w.offset(x, c)] - mean;
        q += d * d;
    });
    const double total = block_sum(q, red);
    if (threadIdx.x == 0) sq[static_cast<long long>(c) * blocks + blockIdx.y] = total;
}

// y = x * a + b over this block's slice; block 0 of each channel writes mean and invstd and
// updates the running statistics (unbiased variance, the global count) as the CPU trainer.
__global__ void bn_apply(const float* weight, const float* bias, double eps, float momentum, int ranks, const double* part,
                         const double* sq, view x, view y, int n, float* mean_out, float* invstd_out, float* running_mean,
                         float* running_var) {
    const int blocks = static_cast<int>(gridDim.y), b = static_cast<int>(blockIdx.y), c = static_cast<int>(blockIdx.x);
    const int plane = x.h * x.w;
    const double m = static_cast<double>(n) * plane * ranks, mean = channel_total(part, blocks, c) / m;
    const auto var = static_cast<float>(channel_total(sq, blocks, c) / m);
    const auto invstd = static_cast<float>(1.0 / sqrt(static_cast<double>(var) + eps));
    const float a = invstd * weight[c];
    const float shift = bias[c] - static_cast<float>(mean) * a;
    over_slice(n, plane, [&](const operands::channel_walk& w) { y.data[w.offset(y, c)] = x.data[w.offset(x, c)] * a + shift; });
    if (b == 0 && threadIdx.x == 0) {
        mean_out[c] = static_cast<float>(mean);
        invstd_out[c] = invstd;
        if (running_mean != nullptr) {
            const float unbias = static_cast<float>(m) / static_cast<float>(m - 1.0);
            running_mean[c] = (1.0F - momentum) * running_mean[c] + momentum * static_cast<float>(mean);
            running_var[c] = (1.0F - momentum) * running_var[c] + momentum * var * unbias;
        }
    }
}

// The gradient's partial sums: sum(dy) into part[c * blocks + b], sum(dy * xhat) into
// part[(C + c) * blocks + b], xhat = (x - mean) * invstd in float.
__global__ void bn_grad_sums(const float* mean, const float* invstd, view x, view dy, int n, double* part) {
    __shared__ double red[reduce_threads];
    const int blocks = static_cast<int>(gridDim.y), b = static_cast<int>(blockIdx.y), c = static_cast<int>(blockIdx.x);
    const float mc = mean[c], ic = invstd[c];
    double s = 0.0, d = 0.0;
    over_slice(n, x.h * x.w, [&](const operands::channel_walk& w) {
        const double g = dy.data[w.offset(dy, c)];
        const float xhat = (x.data[w.offset(x, c)] - mc) * ic;
        s += g;
        d += g * xhat;
    });
    const double sum = block_sum(s, red), dot = block_sum(d, red);
    if (threadIdx.x == 0) {
        part[static_cast<long long>(c) * blocks + b] = sum;
        part[(static_cast<long long>(x.c) + c) * blocks + b] = dot;
    }
}

// dweight += dot and dbias += sum from this rank's partials (`local`: the gradient all-reduce
// averages them), by block 0 of each channel; then over the block's slice dx (+)= weight *
// invstd / m * (m * dy - sum - xhat * dot) with every rank's sums (`global`; the same memory
// without sync BN) and the global count. In place allowed; dx.data may be null.
__global__ void bn_input_grad(const float* weight, const float* mean, const float* invstd, int ranks, const double* local,
                              const double* global, view x, view dy, view dx, int n, float* dweight, float* dbias) {
    const int blocks = static_cast<int>(gridDim.y), b = static_cast<int>(blockIdx.y), c = static_cast<int>(blockIdx.x);
    if (b == 0 && threadIdx.x == 0) {
        dweight[c] += static_cast<float>(channel_total(local, blocks, static_cast<long long>(x.c) + c));
        dbias[c] += static_cast<float>(channel_total(local, blocks, c));
    }
    if (dx.data == nullptr) return;
    const int plane = x.h * x.w;
    const double m = static_cast<double>(n) * plane * ranks;
    const double sum = channel_total(global, blocks, c), dot = channel_total(global, blocks, static_cast<long long>(x.c) + c);
    const float mc = mean[c], ic = invstd[c];
    const double k = static_cast<double>(weight[c]) * ic / m;
    const bool in_place = dx.data == dy.data;
    over_slice(n, plane, [&](const operands::channel_walk& w) {
        const float xhat = (x.data[w.offset(x, c)] - mc) * ic;
        float* out = dx.data + w.offset(dx, c);
        const auto v = static_cast<float>(k * (m * dy.data[w.offset(dy, c)] - sum - xhat * dot));
        *out = in_place ? v : *out + v;
    });
}

// dx (+)= dy where y > 0. In place allowed.
__global__ void relu_backward(view y, view dy, view dx, long long total) {
    const bool in_place = dx.data == dy.data;
    for (long long e = first_index(); e < total; e += grid_step()) {
        const float v = *at(y, e) > 0.0F ? *at(dy, e) : 0.0F;
        float* out = at(dx, e);
        *out = in_place ? v : *out + v;
    }
}

// One thread per input element (a gather over the windows covering it, cuda/operands.hpp).
__global__ void max_pool_backward(geometry g, view x, view dy, view dx, long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int ix = static_cast<int>(e % dx.w), iy = static_cast<int>(e / dx.w % dx.h);
        const long long plane = e / (static_cast<long long>(dx.w) * dx.h);  // sample * c + channel
        const long long i = plane / dx.c, ch = plane % dx.c;
        const float* xc = x.data + i * x.stride + ch * x.h * x.w;
        const float* gc = dy.data + i * dy.stride + ch * dy.h * dy.w;
        float* out = at(dx, e);
        *out = operands::max_pool_grad(g, xc, x.h, x.w, gc, dy.h, dy.w, iy, ix, *out);
    }
}

__global__ void avg_pool_backward(geometry g, bool count_pad, view dy, view dx, long long total) {
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int ix = static_cast<int>(e % dx.w), iy = static_cast<int>(e / dx.w % dx.h);
        const long long plane = e / (static_cast<long long>(dx.w) * dx.h);
        const long long i = plane / dx.c, ch = plane % dx.c;
        const float* gc = dy.data + i * dy.stride + ch * dy.h * dy.w;
        float* out = at(dx, e);
        *out = operands::avg_pool_grad(g, count_pad, dx.h, dx.w, gc, dy.h, dy.w, iy, ix, *out);
    }
}

__global__ void global_avg_pool_backward(view dy, view dx, long long total) {
    const int plane = dx.h * dx.w;
    for (long long e = first_index(); e < total; e += grid_step()) {
        const long long sc = e / plane;  // sample * c + channel
        *at(dx, e) += dy.data[sc / dx.c * dy.stride + sc % dx.c] / static_cast<float>(plane);
    }
}

// y = W x + b. dx[i][j] += sum_o dy[i][o] w[o][j]: one thread per (i, j), o in order.
__global__ void linear_input_grad(const float* w, view dy, view dx, int n) {
    const int in = dx.c * dx.h * dx.w, out = dy.c;
    for (long long e = first_index(); e < static_cast<long long>(n) * in; e += grid_step()) {
        const long long i = e / in, j = e % in;
        const float* g = dy.data + i * dy.stride;
        float acc = dx.data[i * dx.stride + j];
        for (int o = 0; o < out; ++o) acc += g[o] * w[static_cast<long long>(o) * in + j];
        dx.data[i * dx.stride + j] = acc;
    }
}

// dw[o][j] += sum_i dy[i][o] x[i][j]: one thread per (o, j), samples in order; db[o] += sum_i dy[i][o].
__global__ void linear_weight_grad(view x, view dy, int n, float* dw, float* db) {
    const int in = x.c * x.h * x.w, out = dy.c;
    for (long long e = first_index(); e < static_cast<long long>(out) * in; e += grid_step()) {
        const long long o = e / in, j = e % in;
        float acc = dw[e];
        for (int i = 0; i < n; ++i) acc += dy.data[i * dy.stride + o] * x.data[i * x.stride + j];
        dw[e] = acc;
        if (db != nullptr && j == 0) {
            float b = db[o];
            for (int i = 0; i < n; ++i) b += dy.data[i * dy.stride + o];
            db[o] = b;
        }
    }
}

// One block per sample: dx (+)= y * (dy - sum(dy * y)), the sum in double. In place allowed.
__global__ void softmax_backward(view y, view dy, view dx) {
    __shared__ double red[reduce_threads];
    const int k = y.c * y.h * y.w, t = static_cast<int>(threadIdx.x);
    const long long i = blockIdx.x;
    const float* ys = y.data + i * y.stride;
    const float* gs = dy.data + i * dy.stride;
    float* ds = dx.data + i * dx.stride;
    double d = 0.0;
    for (int j = t; j < k; j += reduce_threads) d += static_cast<double>(gs[j]) * ys[j];
    const double dot = block_sum(d, red);  // every read of dy is done before dx is written
    const bool in_place = dx.data == dy.data;
    for (int j = t; j < k; j += reduce_threads) {
        const auto v = static_cast<float>(ys[j] * (gs[j] - dot));
        ds[j] = in_place ? v : ds[j] + v;
    }
}

// dx (+)= dy * factor (sample-major, c * h * w per sample). In place allowed.
__global__ void scale_backward(const float* factor, view dy, view dx, long long total) {
    const bool in_place = dx.data == dy.data;
    for (long long e = first_index(); e < total; e += grid_step()) {
        const float v = __fmul_rn(*at(dy, e), factor[e]);  // rounded before the add, as on the host
        float* out = at(dx, e);
        *out = in_place ? v : *out + v;
    }
}

// y = x * scale[c] + shift[c]: dx (+)= dy * scale[c]. In place allowed.
__global__ void channel_affine_backward(const float* scale, view dy, view dx, long long total) {
    const bool in_place = dx.data == dy.data;
    const int plane = dx.h * dx.w;
    for (long long e = first_index(); e < total; e += grid_step()) {
        const int c = static_cast<int>(e / plane % dx.c);
        const float v = __fmul_rn(*at(dy, e), scale[c]);
        float* out = at(dx, e);
        *out = in_place ? v : *out + v;
    }
}

// One block per sample: the smoothed cross-entropy of its logits (train/loss.hpp's formula, in
// double with a stable log-sum-exp): loss[i] = -sum_k q_k log softmax_k (times weight; NaN when
// a logit is not finite, and then dlogits is left alone), correct[i] = 1 when the first largest
// logit is the label, and dlogits += weight * (softmax - q) / n when dlogits.data is given.
__global__ void softmax_cross_entropy(view x, const int* labels, int n, double smoothing, double weight, double* loss,
                                      int* correct, view dlogits) {
    __shared__ double red[reduce_threads];
    __shared__ float best[reduce_threads];
    __shared__ int best_at[reduce_threads];
    const int k = x.c * x.h * x.w, t = static_cast<int>(threadIdx.x);
    const long long i = blockIdx.x;
    const float* xs = x.data + i * x.stride;
    float m = -INFINITY;
    int arg = k;
    double bad = 0.0;
    for (int j = t; j < k; j += reduce_threads) {
        if (!operands::is_finite(xs[j])) bad = 1.0;
        if (xs[j] > m || arg == k) {  // strictly larger: the first largest of this thread's classes
            m = xs[j];
            arg = j;
        }
    }
    best[t] = m;
    best_at[t] = arg;
    __syncthreads();
    for (int d = reduce_threads / 2; d > 0; d /= 2) {
        if (t < d && (best[t + d] > best[t] || (best[t + d] == best[t] && best_at[t + d] < best_at[t]))) {
            best[t] = best[t + d];
            best_at[t] = best_at[t + d];
        }
        __syncthreads();
    }
    const double mx = best[0];
    const int label = labels[i];
    const bool any_bad = block_sum(bad, red) > 0.0;
    double s = 0.0;
    for (int j = t; j < k; j += reduce_threads) s += exp(static_cast<double>(xs[j]) - mx);
    const double lse = mx + log(block_sum(s, red));
    const double off = smoothing / static_cast<double>(k), on = 1.0 - smoothing + off;
    double l = 0.0;
    for (int j = t; j < k; j += reduce_threads) {
        const double q = j == label ? on : off;
        l -= q * (static_cast<double>(xs[j]) - lse);
        if (dlogits.data != nullptr && !any_bad)
            dlogits.data[i * dlogits.stride + j] += static_cast<float>(weight * (exp(static_cast<double>(xs[j]) - lse) - q) /
                                                                       static_cast<double>(n));
    }
    const double li = block_sum(l, red);
    if (t == 0) {
        loss[i] = any_bad ? NAN : weight * li;
        correct[i] = best_at[0] == label ? 1 : 0;
    }
}

// dst[e] += sum over z < chunks of src[z * count + e], z in order (the weight-gradient chunks).
__global__ void add_chunks(const float* src, int chunks, long long count, float* dst) {
    for (long long e = first_index(); e < count; e += grid_step()) {
        float acc = 0.0F;
        for (int z = 0; z < chunks; ++z) acc += src[z * count + e];
        dst[e] += acc;
    }
}

// One block per channel: db[c] += the sum of dy's channel c over the batch (in double).
__global__ void channel_grad_sum(view dy, int n, float* db) {
    __shared__ double red[reduce_threads];
    const int c = static_cast<int>(blockIdx.x), t = static_cast<int>(threadIdx.x);
    const long long count = static_cast<long long>(n) * dy.h * dy.w;
    double s = 0.0;
    for (long long e = t; e < count; e += reduce_threads) s += dy.data[channel_at(dy, c, e)];
    const double sum = block_sum(s, red);
    if (t == 0) db[c] += static_cast<float>(sum);
}

// partial[block] = the sum of g^2 over the block's grid-stride share (double); then one block
// adds the partials in order into out[0].
__global__ void sum_squares_partial(const float* g, long long count, double* partial) {
    __shared__ double red[reduce_threads];
    double s = 0.0;
    for (long long e = first_index(); e < count; e += grid_step()) s += static_cast<double>(g[e]) * g[e];
    const double sum = block_sum(s, red);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

__global__ void sum_partials(const double* partial, int blocks, double* out) {
    __shared__ double red[reduce_threads];
    double s = 0.0;
    for (int b = static_cast<int>(threadIdx.x); b < blocks; b += reduce_threads) s += partial[b];
    const double sum = block_sum(s, red);
    if (threadIdx.x == 0) out[0] = sum;
}

__global__ void scale(float* g, long long count, double factor) {
    for (long long e = first_index(); e < count; e += grid_step()) g[e] = static_cast<float>(g[e] * factor);
}

// One optimizer step over count parameters: train/update.hpp's rule K (optimizer::step's arithmetic).
template <update_kind K>
__global__ void update(float* p, const float* grad, float* ms, float* mom, long long count, update_rule u) {
    for (long long e = first_index(); e < count; e += grid_step()) p[e] = update_one<K>(u, p[e], grad[e], ms[e], mom[e]);
}

// The moving average's update, in float as on the host: shadow = d * shadow + (1 - d) * p.
__global__ void moving_average(float* shadow, const float* p, long long count, float d) {
    for (long long e = first_index(); e < count; e += grid_step()) shadow[e] = __fadd_rn(__fmul_rn(d, shadow[e]), __fmul_rn(1.0F - d, p[e]));
}

}  // namespace ctnet::cuda::kernels
