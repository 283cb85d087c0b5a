// ctnet/cuda/kernels.cu — the one nvcc translation unit: ctnet's CUDA kernels and the host
// launchers declared in cuda/launch.hpp. The CMake target ctnet::cuda compiles it (for sm_80 and
// sm_90); without CMake: nvcc -std=c++17 -arch=sm_80 -c ctnet/cuda/kernels.cu.
#include <algorithm>
#include <string>

#include <cuda_runtime.h>

#include "../core/error.hpp"
#include "conv.cuh"
#include "launch.hpp"
#include "ops.cuh"

namespace ctnet::cuda {

namespace {

void check_launch(const char* kernel) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        throw error(std::string{"ctnet: cuda: launching "} + kernel + " failed: " + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ")");
}

// Blocks for a grid-stride loop over `total` elements.
unsigned blocks_for(long long total, int threads) {
    return static_cast<unsigned>(std::min<long long>((total + threads - 1) / threads, 65535LL * 8));
}

long long elements(view v, int n) { return static_cast<long long>(n) * v.c * v.h * v.w; }

}  // namespace

void conv2d(const float* w, const float* bias, bool relu, geometry g, view x, view y, int n, precision p, cudaStream_t s) {
    const kernels::conv_args a{w, bias, relu, g, x, y, x.c * g.kh * g.kw};
    const dim3 grid((y.h * y.w + kernels::tile_n - 1) / kernels::tile_n, (y.c + kernels::tile_m - 1) / kernels::tile_m,
                    static_cast<unsigned>(n));
    if (p == precision::tf32) {
        kernels::conv_tf32<<<grid, kernels::conv_threads, 0, s>>>(a);
        check_launch("conv_tf32");
    } else {
        kernels::conv_fp32<<<grid, kernels::conv_threads, 0, s>>>(a);
        check_launch("conv_fp32");
    }
}

void max_pool(geometry g, view x, view y, int n, cudaStream_t s) {
    const long long total = elements(y, n);
    kernels::max_pool<<<blocks_for(total, 256), 256, 0, s>>>(g, x, y, total);
    check_launch("max_pool");
}

void avg_pool(geometry g, bool count_pad, view x, view y, int n, cudaStream_t s) {
    const long long total = elements(y, n);
    kernels::avg_pool<<<blocks_for(total, 256), 256, 0, s>>>(g, count_pad, x, y, total);
    check_launch("avg_pool");
}

void global_avg_pool(view x, view y, int n, cudaStream_t s) {
    const long long total = static_cast<long long>(n) * x.c;
    kernels::global_avg_pool<<<blocks_for(total, 128), 128, 0, s>>>(x, y, total);
    check_launch("global_avg_pool");
}

void linear(const float* w, const float* bias, view x, view y, int n, cudaStream_t s) {
    const long long threads = static_cast<long long>(n) * y.c * 32;
    kernels::linear<<<static_cast<unsigned>((threads + 255) / 256), 256, 0, s>>>(w, bias, x, y, n);
    check_launch("linear");
}

void softmax(view x, view y, int n, cudaStream_t s) {
    kernels::softmax<<<static_cast<unsigned>(n), 256, 0, s>>>(x, y);
    check_launch("softmax");
}

void batch_norm(const float* params, double eps, view x, view y, int n, cudaStream_t s) {
    const long long total = elements(x, n);
    kernels::batch_norm<<<blocks_for(total, 256), 256, 0, s>>>(params, eps, x, y, total);
    check_launch("batch_norm");
}

void relu(view x, view y, int n, cudaStream_t s) {
    const long long total = elements(x, n);
    kernels::relu<<<blocks_for(total, 256), 256, 0, s>>>(x, y, total);
    check_launch("relu");
}

void channel_affine(affine4 a, view x, view y, int n, cudaStream_t s) {
    const long long total = elements(x, n);
    kernels::channel_affine<<<blocks_for(total, 256), 256, 0, s>>>(a, x, y, total);
    check_launch("channel_affine");
}

void copy(view x, view y, int n, cudaStream_t s) {
    const long long total = elements(x, n);
    kernels::copy<<<blocks_for(total, 256), 256, 0, s>>>(x, y, total);
    check_launch("copy");
}

}  // namespace ctnet::cuda
