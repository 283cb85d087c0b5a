// ctnet/cuda/dnn_conv.hpp — the GPU trainer's convolutions by cuDNN: forward, backward data and
// backward filter (cuDNN's legacy API, loaded at run time as the NHWC engine's), on the trainer's
// NCHW float activations where they lie.
//
//   cuda::dnn_convs d{stream, precision::tf32};          // throws when cuDNN cannot be used
//   const int k = d.add(g, x, y, bias);                   // each conv, once per batch size (ids 0, 1, ...)
//   d.prepare(n);                                         // descriptors, algorithms, workspace
//   if (!d.forward(k, w, b, x, y)) /* ctnet's kernel */;  // false: cuDNN refused this conv
//
// Descriptors (cuda/dnn_plan.hpp, tested on the host): a batch of n samples of a view as NCHW
// with the view's sample stride, so a channel slice of a concat buffer is read and written in
// place; a conv cuDNN cannot express (asymmetric padding) stays on ctnet's kernels. Algorithms: cuDNN's heuristic (the _v7 queries), the first candidate
// that is deterministic — a run repeats its bits, as with ctnet's kernels — and fits the
// workspace limit; a conv with none, or whose first call cuDNN refuses, falls back to ctnet's
// kernels for that pass (the call returns false). fp32 sets CUDNN_FMA_MATH (no tensor cores),
// tf32 the default math (TF32 tensor cores on sm_80+). bf16 (mixed precision): each conv's
// operands — x, dy and the weights (refresh_weights) — are rounded to packed bf16 copies, cuDNN
// runs on those with float accumulation (compute type float), and y, dx and dw come back as
// floats (dx and dw added): activations, gradients and master weights stay float.
// Accumulation: backward_data adds into dx and backward_filter into dw / db (beta = 1), as the
// ctnet kernels and the CPU trainer do; forward overwrites y.
// Requires: ctnet::cuda built with cuDNN (CTNET_CUDNN) and libcudnn.so.9 loadable
// (cudnn_available()); the views' data is device memory on the stream's device.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include <cuda_runtime_api.h>

#include "dnn_plan.hpp"
#include "nhwc_engine.hpp"  // cudnn_available, cudnn_unavailable_reason
#include "types.hpp"

namespace ctnet::cuda {

class dnn_convs {
public:
    // workspace_limit: the most device memory one cuDNN call may use as workspace.
    dnn_convs(cudaStream_t s, precision p, std::size_t workspace_limit = std::size_t{256} << 20);
    dnn_convs(const dnn_convs&) = delete;
    dnn_convs& operator=(const dnn_convs&) = delete;
    ~dnn_convs();

    // Forgets every conv (before adding them again for another batch size).
    void clear();
    // A conv from x to y (views with their sample strides; data not read), with or without bias;
    // xb: the input backward_filter reads (a saved copy may have another sample stride).
    int add(geometry g, view x, view y, bool bias);
    int add(geometry g, view x, view y, view xb, bool bias);
    // Descriptors and algorithms for a batch of n, and the workspace.
    void prepare(int n);
    // bf16: the weights' bf16 copy from the float parameters (count floats from params; every w
    // later given points into them), after each update. A no-op in fp32 and tf32.
    void refresh_weights(const float* params, std::size_t count);

    // Each returns false when cuDNN does not run conv k (the caller runs ctnet's kernel).
    bool forward(int k, const float* w, const float* b, view x, view y);        // y = conv(x) + b
    bool backward_data(int k, const float* w, view dy, view dx);                // dx += conv^T(dy)
    bool backward_filter(int k, view x, view dy, float* dw, float* db);         // dw += ..., db += sum(dy) (db may be null)

    // How many convs cuDNN runs in each pass (forward, backward data, backward filter), and the
    // number of convs.
    [[nodiscard]] std::string summary() const;

private:
    struct impl;
    std::unique_ptr<impl> p_;
};

}  // namespace ctnet::cuda
