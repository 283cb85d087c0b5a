// src/cuda/kernels.cu — the one nvcc translation unit: ctnet's CUDA kernels and the host
// launchers declared in ctnet/cuda/launch.hpp. The CMake target ctnet::cuda compiles it (for sm_80
// and sm_90); without CMake: nvcc -std=c++17 -arch=sm_80 -I include -c src/cuda/kernels.cu.
#include <algorithm>
#include <string>
#include <utility>

#include <cuda_runtime.h>

#include <ctnet/core/error.hpp>
#include <ctnet/cuda/launch.hpp>

#include "backward.cuh"
#include "conv.cuh"
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

// Launches a grid-stride kernel over `total` elements (nothing for none: a grid of zero blocks
// is a launch error) and checks the launch.
template <class... Params, class... Args>
void over(void (*kernel)(Params...), const char* name, long long total, int threads, cudaStream_t s, Args&&... args) {
    if (total == 0) return;
    kernel<<<blocks_for(total, threads), threads, 0, s>>>(std::forward<Args>(args)...);
    check_launch(name);
}

}  // namespace

// One GEMM problem (cuda/operands.hpp) over `slices` grid slices.
template <class P>
void run_gemm(const P& p, int slices, precision pr, cudaStream_t s, const char* name) {
    if (p.rows == 0 || p.cols == 0 || slices <= 0) return;
    if (slices > 65535)
        throw error(std::string{"ctnet: cuda: "} + name + ": " + std::to_string(slices) +
                    " grid slices (samples or chunks), at most 65535");
    const dim3 grid(static_cast<unsigned>((p.cols + kernels::tile_n - 1) / kernels::tile_n),
                    static_cast<unsigned>((p.rows + kernels::tile_m - 1) / kernels::tile_m), static_cast<unsigned>(slices));
    if (pr == precision::tf32) kernels::gemm_tf32<<<grid, kernels::conv_threads, 0, s>>>(p);
    else kernels::gemm_fp32<<<grid, kernels::conv_threads, 0, s>>>(p);
    check_launch(name);
}

// Samples per weight-gradient chunk: enough chunks for about two waves of blocks on a large GPU
// (264 blocks), never more than the batch.
int weight_grad_per_chunk(int rows, int cols, int n) {
    if (n <= 0) return 1;
    const long long tiles = static_cast<long long>((rows + kernels::tile_m - 1) / kernels::tile_m) *
                            ((cols + kernels::tile_n - 1) / kernels::tile_n);
    const long long chunks = std::clamp<long long>((264 + tiles - 1) / tiles, 1, n);
    return static_cast<int>((n + chunks - 1) / chunks);
}

void conv2d(const float* w, const float* bias, bool relu, geometry g, view x, view y, int n, precision p, cudaStream_t s) {
    run_gemm(operands::conv_forward{w, bias, relu, g, x, y}, n, p, s, p == precision::tf32 ? "conv_tf32" : "conv_fp32");
}

void conv2d_input_grad(const float* w, geometry g, view dy, view dx, int n, precision p, cudaStream_t s) {
    if (dx.data == nullptr) return;
    run_gemm(operands::conv_input_grad{w, g, dy, dx}, n, p, s, "conv2d_input_grad");
}

long long conv2d_weight_grad_workspace(geometry g, view x, view dy, int n) {
    const int rows = dy.c, cols = x.c * g.kh * g.kw, per = weight_grad_per_chunk(rows, cols, n);
    return static_cast<long long>((n + per - 1) / per) * rows * cols;
}

void conv2d_weight_grad(geometry g, view x, view dy, int n, float* dw, float* db, float* workspace, precision p,
                        cudaStream_t s) {
    if (n <= 0 || dy.c == 0) return;
    const int rows = dy.c, cols = x.c * g.kh * g.kw, per = weight_grad_per_chunk(rows, cols, n);
    const int chunks = (n + per - 1) / per;
    run_gemm(operands::conv_weight_grad{g, x, dy, n, per, workspace}, chunks, p, s, "conv2d_weight_grad");
    const long long count = static_cast<long long>(rows) * cols;
    over(kernels::add_chunks, "add_chunks", count, 256, s, workspace, chunks, count, dw);
    if (db != nullptr) {
        kernels::channel_grad_sum<<<static_cast<unsigned>(dy.c), kernels::reduce_threads, 0, s>>>(dy, n, db);
        check_launch("channel_grad_sum");
    }
}

void max_pool(geometry g, view x, view y, int n, cudaStream_t s) {
    const long long total = elements(y, n);
    over(kernels::max_pool, "max_pool", total, 256, s, g, x, y, total);
}

void avg_pool(geometry g, bool count_pad, view x, view y, int n, cudaStream_t s) {
    const long long total = elements(y, n);
    over(kernels::avg_pool, "avg_pool", total, 256, s, g, count_pad, x, y, total);
}

void global_avg_pool(view x, view y, int n, cudaStream_t s) {
    const long long total = static_cast<long long>(n) * x.c;
    over(kernels::global_avg_pool, "global_avg_pool", total, 128, s, x, y, total);
}

void linear(const float* w, const float* bias, view x, view y, int n, cudaStream_t s) {
    const long long threads = static_cast<long long>(n) * y.c * 32;
    if (threads == 0) return;
    kernels::linear<<<static_cast<unsigned>((threads + 255) / 256), 256, 0, s>>>(w, bias, x, y, n);
    check_launch("linear");
}

void softmax(view x, view y, int n, cudaStream_t s) {
    kernels::softmax<<<static_cast<unsigned>(n), 256, 0, s>>>(x, y);
    check_launch("softmax");
}

void batch_norm(bn_tensors p, double eps, view x, view y, int n, cudaStream_t s) {
    const long long total = elements(x, n);
    over(kernels::batch_norm, "batch_norm", total, 256, s, p, eps, x, y, total);
}

void relu(view x, view y, int n, cudaStream_t s) {
    const long long total = elements(x, n);
    over(kernels::relu, "relu", total, 256, s, x, y, total);
}

void channel_affine(const float* scale, const float* shift, view x, view y, int n, cudaStream_t s) {
    const long long total = elements(x, n);
    over(kernels::channel_affine, "channel_affine", total, 256, s, scale, shift, x, y, total);
}

void copy(view x, view y, int n, cudaStream_t s) {
    const long long total = elements(x, n);
    over(kernels::copy, "copy", total, 256, s, x, y, total);
}

namespace {
dim3 bn_grid(view x, int n) {
    // Channels on x (up to 2^31 - 1: a 1-D batch norm may have many), blocks on y (at most 32).
    return {static_cast<unsigned>(x.c), static_cast<unsigned>(operands::bn_blocks(static_cast<long long>(n) * x.h * x.w))};
}
}  // namespace

std::size_t bn_partials(int c, long long count) {
    return static_cast<std::size_t>(c) * static_cast<std::size_t>(operands::bn_blocks(count));
}

void bn_sums(view x, int n, double* part, cudaStream_t s) {
    if (n <= 0 || x.c == 0) return;
    kernels::bn_sums<<<bn_grid(x, n), kernels::reduce_threads, 0, s>>>(x, n, part);
    check_launch("bn_sums");
}

void bn_squared_deviations(view x, int n, int ranks, const double* part, double* sq, cudaStream_t s) {
    if (n <= 0 || x.c == 0) return;
    kernels::bn_squared_deviations<<<bn_grid(x, n), kernels::reduce_threads, 0, s>>>(x, n, ranks, part, sq);
    check_launch("bn_squared_deviations");
}

void bn_apply(const float* weight, const float* bias, double eps, float momentum, int ranks, const double* part, const double* sq,
              view x, view y, int n, float* mean, float* invstd, float* running_mean, float* running_var, cudaStream_t s) {
    if (static_cast<long long>(n) * x.h * x.w * ranks < 2)  // the variance of one value (and its unbiased form) is undefined
        throw error("ctnet: cuda: batch norm in training mode needs more than one value per channel (batch " +
                    std::to_string(n) + ", input " + std::to_string(x.h) + "x" + std::to_string(x.w) + ")");
    if (x.c == 0) return;
    kernels::bn_apply<<<bn_grid(x, n), kernels::reduce_threads, 0, s>>>(weight, bias, eps, momentum, ranks, part, sq, x, y, n,
                                                                        mean, invstd, running_mean, running_var);
    check_launch("bn_apply");
}

void bn_grad_sums(const float* mean, const float* invstd, view x, view dy, int n, double* part, cudaStream_t s) {
    if (n <= 0 || x.c == 0) return;
    kernels::bn_grad_sums<<<bn_grid(x, n), kernels::reduce_threads, 0, s>>>(mean, invstd, x, dy, n, part);
    check_launch("bn_grad_sums");
}

void bn_input_grad(const float* weight, const float* mean, const float* invstd, int ranks, const double* local,
                   const double* global, view x, view dy, view dx, int n, float* dweight, float* dbias, cudaStream_t s) {
    if (n <= 0 || x.c == 0) return;
    kernels::bn_input_grad<<<bn_grid(x, n), kernels::reduce_threads, 0, s>>>(weight, mean, invstd, ranks, local, global, x, dy,
                                                                             dx, n, dweight, dbias);
    check_launch("bn_input_grad");
}

void batch_norm_train(const float* weight, const float* bias, double eps, float momentum, view x, view y, int n,
                      float* mean, float* invstd, float* running_mean, float* running_var, double* scratch, cudaStream_t s) {
    const std::size_t part = bn_partials(x.c, static_cast<long long>(n) * x.h * x.w);
    bn_sums(x, n, scratch, s);
    bn_squared_deviations(x, n, 1, scratch, scratch + part, s);
    bn_apply(weight, bias, eps, momentum, 1, scratch, scratch + part, x, y, n, mean, invstd, running_mean, running_var, s);
}

void batch_norm_train_backward(const float* weight, const float* mean, const float* invstd, view x, view dy, view dx,
                               int n, float* dweight, float* dbias, double* scratch, cudaStream_t s) {
    bn_grad_sums(mean, invstd, x, dy, n, scratch, s);
    bn_input_grad(weight, mean, invstd, 1, scratch, scratch, x, dy, dx, n, dweight, dbias, s);
}

void relu_backward(view y, view dy, view dx, int n, cudaStream_t s) {
    if (dx.data == nullptr) return;
    const long long total = elements(y, n);
    over(kernels::relu_backward, "relu_backward", total, 256, s, y, dy, dx, total);
}

void max_pool_backward(geometry g, view x, view dy, view dx, int n, cudaStream_t s) {
    const long long total = elements(dx, n);
    over(kernels::max_pool_backward, "max_pool_backward", total, 256, s, g, x, dy, dx, total);
}

void avg_pool_backward(geometry g, bool count_pad, view dy, view dx, int n, cudaStream_t s) {
    const long long total = elements(dx, n);
    over(kernels::avg_pool_backward, "avg_pool_backward", total, 256, s, g, count_pad, dy, dx, total);
}

void global_avg_pool_backward(view dy, view dx, int n, cudaStream_t s) {
    const long long total = elements(dx, n);
    over(kernels::global_avg_pool_backward, "global_avg_pool_backward", total, 256, s, dy, dx, total);
}

void linear_backward(const float* w, view x, view dy, view dx, int n, float* dw, float* db, cudaStream_t s) {
    const long long in = static_cast<long long>(x.c) * x.h * x.w;
    if (n <= 0 || in == 0 || dy.c == 0) return;
    over(kernels::linear_weight_grad, "linear_weight_grad", in * dy.c, 256, s, x, dy, n, dw, db);
    if (dx.data == nullptr) return;
    over(kernels::linear_input_grad, "linear_input_grad", in * n, 256, s, w, dy, dx, n);
}

void softmax_backward(view y, view dy, view dx, int n, cudaStream_t s) {
    if (n <= 0) return;
    kernels::softmax_backward<<<static_cast<unsigned>(n), kernels::reduce_threads, 0, s>>>(y, dy, dx);
    check_launch("softmax_backward");
}

void scale_backward(const float* factor, view dy, view dx, int n, cudaStream_t s) {
    const long long total = elements(dy, n);
    over(kernels::scale_backward, "scale_backward", total, 256, s, factor, dy, dx, total);
}

void channel_affine_backward(const float* scale, view dy, view dx, int n, cudaStream_t s) {
    if (dx.data == nullptr) return;
    const long long total = elements(dy, n);
    over(kernels::channel_affine_backward, "channel_affine_backward", total, 256, s, scale, dy, dx, total);
}

void softmax_cross_entropy(view logits, const int* labels, int n, double smoothing, double weight, double* loss,
                           int* correct, view dlogits, cudaStream_t s) {
    if (n <= 0) return;
    kernels::softmax_cross_entropy<<<static_cast<unsigned>(n), kernels::reduce_threads, 0, s>>>(
        logits, labels, n, smoothing, weight, loss, correct, dlogits);
    check_launch("softmax_cross_entropy");
}

void sum_squares(const float* g, long long count, double* partial, double* out, cudaStream_t s) {
    kernels::sum_squares_partial<<<sum_squares_blocks, kernels::reduce_threads, 0, s>>>(g, count, partial);
    check_launch("sum_squares_partial");
    kernels::sum_partials<<<1, kernels::reduce_threads, 0, s>>>(partial, sum_squares_blocks, out);
    check_launch("sum_partials");
}

void scale(float* g, long long count, double factor, cudaStream_t s) {
    over(kernels::scale, "scale", count, 256, s, g, count, factor);
}

void optimizer_update(update_kind k, const update_rule& u, float* p, const float* g, float* ms, float* mom, long long count,
                      cudaStream_t s) {
    switch (k) {
        case update_kind::sgd: over(kernels::update<update_kind::sgd>, "update (sgd)", count, 256, s, p, g, ms, mom, count, u); break;
        case update_kind::rmsprop_tf:
            over(kernels::update<update_kind::rmsprop_tf>, "update (rmsprop)", count, 256, s, p, g, ms, mom, count, u);
            break;
        case update_kind::rmsprop_torch:
            over(kernels::update<update_kind::rmsprop_torch>, "update (rmsprop-torch)", count, 256, s, p, g, ms, mom, count, u);
            break;
    }
}

void moving_average(float* shadow, const float* p, long long count, float d, cudaStream_t s) {
    over(kernels::moving_average, "moving_average", count, 256, s, shadow, p, count, d);
}

}  // namespace ctnet::cuda
