// ctnet/cuda/launch.hpp — the host-side interface of ctnet's CUDA kernels.
//
// The kernels (src/cuda/*.cuh) are compiled by nvcc once, in src/cuda/kernels.cu (the CMake
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

#include <cstddef>

#include <cuda_runtime_api.h>

#include "../train/update.hpp"
#include "types.hpp"

namespace ctnet::cuda {

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
// Eval-mode batch norm from the running statistics.
void batch_norm(bn_tensors p, double eps, view x, view y, int n, cudaStream_t s);
void relu(view x, view y, int n, cudaStream_t s);
// y = x * scale[c] + shift[c] (torchvision's transform_input); scale, shift: c floats in device memory.
void channel_affine(const float* scale, const float* shift, view x, view y, int n, cudaStream_t s);
void copy(view x, view y, int n, cudaStream_t s);

// ---- Training --------------------------------------------------------------------------------
// The gradients ADD into dx and into the parameter gradients, as cpu/backward.hpp does (a value
// read by several branches collects one contribution per reader); those marked "in place" also
// take dx == dy. Every reduction has a fixed order, so a run repeats its bits.

// dx += the input gradient of y = conv(x, w): W^T * dY gathered back onto the input pixels
// (cuda/operands.hpp conv_input_grad); w is the conv's (out, in, kh, kw) weights.
void conv2d_input_grad(const float* w, geometry g, view dy, view dx, int n, precision p, cudaStream_t s);
// Floats of device workspace conv2d_weight_grad needs for these shapes.
long long conv2d_weight_grad_workspace(geometry g, view x, view dy, int n);
// dw += sum over the batch of dY * im2col(x)^T (dw (out, in, kh, kw)); db += sum of dY per
// channel (db may be null). The batch is cut into chunks, each one GEMM into the workspace,
// and the chunks are added in order.
void conv2d_weight_grad(geometry g, view x, view dy, int n, float* dw, float* db, float* workspace, precision p,
                        cudaStream_t s);
// Training-mode batch norm in passes over a grid of operands::bn_blocks(n * h * w) blocks per
// channel, each pass leaving per-block partial sums in double (C x blocks of them, channel-major)
// that the next pass adds in block order. A sync BN (trainer options::comm with sync_bn)
// all-reduces the partials between passes — every rank's block b summed, then over b: the same
// order on every rank, and on one rank the local arithmetic bit for bit; `ranks` multiplies the
// local count (the shards are equal). cpu/sync_batch_norm.hpp's arithmetic:
//   forward   bn_sums (part: C x blocks) -> bn_squared_deviations from the mean (sq: C x blocks)
//             -> bn_apply: y = x * a + b (cpu::ref::batch_norm_train), the batch mean and invstd =
//             1 / sqrt(var + eps) (C floats each), and with running_mean / running_var given the
//             running statistics updated with `momentum` (unbiased variance, the global count).
//   backward  bn_grad_sums (part: sums of dy, then of dy * xhat: 2C x blocks) -> bn_input_grad:
//             dweight / dbias += this rank's (`local`; the gradient average combines them), dx
//             (+)= from every rank's (`global`: the same memory without sync BN); in place; dx.data
//             may be null.
// bn_partials(c, n * h * w): the partials of one sum, C x blocks; a layer's scratch is 4 x that
// (part, sq; the backward's local and global copies of its two sums).
std::size_t bn_partials(int c, long long count);
void bn_sums(view x, int n, double* part, cudaStream_t s);
void bn_squared_deviations(view x, int n, int ranks, const double* part, double* sq, cudaStream_t s);
void bn_apply(const float* weight, const float* bias, double eps, float momentum, int ranks, const double* part, const double* sq,
              view x, view y, int n, float* mean, float* invstd, float* running_mean, float* running_var, cudaStream_t s);
void bn_grad_sums(const float* mean, const float* invstd, view x, view dy, int n, double* part, cudaStream_t s);
void bn_input_grad(const float* weight, const float* mean, const float* invstd, int ranks, const double* local,
                   const double* global, view x, view dy, view dx, int n, float* dweight, float* dbias, cudaStream_t s);
// One process's passes in a row (scratch: 4 x bn_partials).
void batch_norm_train(const float* weight, const float* bias, double eps, float momentum, view x, view y, int n,
                      float* mean, float* invstd, float* running_mean, float* running_var, double* scratch, cudaStream_t s);
void batch_norm_train_backward(const float* weight, const float* mean, const float* invstd, view x, view dy, view dx,
                               int n, float* dweight, float* dbias, double* scratch, cudaStream_t s);
void relu_backward(view y, view dy, view dx, int n, cudaStream_t s);  // in place
// The whole gradient of a window goes to its first maximum (NaN wins), as the reference.
void max_pool_backward(geometry g, view x, view dy, view dx, int n, cudaStream_t s);
void avg_pool_backward(geometry g, bool count_pad, view dy, view dx, int n, cudaStream_t s);
void global_avg_pool_backward(view dy, view dx, int n, cudaStream_t s);
// y = W x + b: dw += dy x^T, db += dy (db may be null), dx += W^T dy (dx.data may be null).
void linear_backward(const float* w, view x, view dy, view dx, int n, float* dw, float* db, cudaStream_t s);
void softmax_backward(view y, view dy, view dx, int n, cudaStream_t s);  // in place
// dx += dy * factor, factor n * c * h * w floats (dropout's mask / (1 - p)). In place.
void scale_backward(const float* factor, view dy, view dx, int n, cudaStream_t s);
void channel_affine_backward(const float* scale, view dy, view dx, int n, cudaStream_t s);  // in place
// The smoothed cross-entropy of n samples' logits (train/loss.hpp): loss[i] (double, times
// weight; NaN when a logit is not finite), correct[i] (1 when the first largest logit is the
// label), and dlogits += weight * (softmax - q) / n when dlogits.data is given. labels: device
// ints the caller has checked to lie in [0, classes).
void softmax_cross_entropy(view logits, const int* labels, int n, double smoothing, double weight, double* loss,
                           int* correct, view dlogits, cudaStream_t s);
inline constexpr int sum_squares_blocks = 256;
// out[0] = sum of g[e]^2 over count floats, in double (partial: sum_squares_blocks doubles).
void sum_squares(const float* g, long long count, double* partial, double* out, cudaStream_t s);
void scale(float* g, long long count, double factor, cudaStream_t s);  // g *= factor (gradient clipping)
// One optimizer step over count parameters: train/update.hpp's rule k with u's settings (the
// arithmetic of the CPU's optimizer::step; ms and mom start at initial_mean_square(k) and 0).
void optimizer_update(update_kind k, const update_rule& u, float* p, const float* g, float* ms, float* mom, long long count,
                      cudaStream_t s);
// shadow = d * shadow + (1 - d) * p over count floats, in float (train/optim.hpp's moving_average).
void moving_average(float* shadow, const float* p, long long count, float d, cudaStream_t s);

}  // namespace ctnet::cuda
