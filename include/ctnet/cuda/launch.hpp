// ctnet/cuda/launch.hpp — the host-side interface of ctnet's CUDA kernels.
//
// The kernels (ctnet/cuda/*.cuh) are compiled by nvcc once, in ctnet/cuda/kernels.cu (the CMake
// target ctnet::cuda); everything that knows a network type (cuda/runner.hpp) is ordinary C++
// for the host compiler. nvcc's front end does not take the constexpr lowering of the network
// types (it misreads a range-for over a braced list in graph/network.hpp, for one), and keeping
// those templates away from it also keeps a model's translation unit as fast to build as on the
// CPU. So this header has no CUDA syntax: plain structs and functions that enqueue work on a
// stream and return at once.
//
// Requires: the CUDA runtime API (cuda_runtime_api.h, link CUDA::cudart) and the kernels
// library. Guarantees: every launcher checks its launch (cudaGetLastError) and throws
// ctnet::error naming the kernel and the CUDA error; errors during execution surface at the next
// checked synchronisation (cuda/runtime.hpp).
#pragma once

#include <cuda_runtime_api.h>

namespace ctnet::cuda {

// n samples of c x h x w floats in device memory; sample i starts at data + i * stride (a channel
// slice of a concat output has a stride larger than c * h * w).
struct view {
    float* data = nullptr;
    long long stride = 0;
    int c = 0, h = 0, w = 0;
};

struct geometry {  // a conv's or a pooling layer's window
    int kh = 1, kw = 1, sh = 1, sw = 1, pt = 0, pb = 0, pl = 0, pr = 0;
};

enum class precision : unsigned char {
    tf32,  // tensor cores (mma via WMMA), 10-bit mantissa inputs, float32 accumulation
    fp32,  // CUDA cores, float32 throughout: the reference-accuracy path
};

// y = relu?(conv(x, w) + bias): implicit GEMM, M = out channels, N = out pixels, K = c*kh*kw;
// w is (M, K) row-major in device memory.
void conv2d(const float* w, const float* bias, bool relu, geometry g, view x, view y, int n, precision p,
            cudaStream_t s);
// One conv as the runner enqueues it, for a replacement engine (runner options::conv; the GPU
// benchmark plugs cuDNN in here to compare against it).
struct conv_call {
    const float* w;
    const float* bias;
    bool relu;
    geometry g;
    view x, y;
    int n;
    cudaStream_t stream;
};
void max_pool(geometry g, view x, view y, int n, cudaStream_t s);
void avg_pool(geometry g, bool count_pad, view x, view y, int n, cudaStream_t s);
void global_avg_pool(view x, view y, int n, cudaStream_t s);
// y[i][o] = b[o] + sum_j w[o][j] x[i][j] over the flat features of x (bias may be null).
void linear(const float* w, const float* bias, view x, view y, int n, cudaStream_t s);
void softmax(view x, view y, int n, cudaStream_t s);
// Eval-mode batch norm: gamma, beta, running mean, running var, consecutive (c floats each).
void batch_norm(const float* params, double eps, view x, view y, int n, cudaStream_t s);
void relu(view x, view y, int n, cudaStream_t s);
struct affine4 {  // torchvision's transform_input: y = x * scale[c] + shift[c], up to 4 channels
    float scale[4]{}, shift[4]{};
};
void channel_affine(affine4 a, view x, view y, int n, cudaStream_t s);
void copy(view x, view y, int n, cudaStream_t s);

}  // namespace ctnet::cuda
