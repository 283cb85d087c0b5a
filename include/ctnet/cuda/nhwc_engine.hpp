// ctnet/cuda/nhwc_engine.hpp — the NHWC engines of runner<Net, backend::cuda> (options::engine =
// engine::ctnet or engine::cudnn), compiled once into ctnet::cuda (src/cuda/nhwc.cu); the runner
// hands over the plan (cuda/nhwc_plan.hpp) as plain data and the parameters as one float image.
//
// At construction: the parameters are converted once to the precision's storage type (fp16 /
// bf16 / float) and uploaded. Per batch size (prepare(n) or its first pass): the arena (the
// program's memory plan, in storage elements), cuDNN's descriptors, an algorithm per conv
// (cudnnFindConvolutionForwardAlgorithmEx timed over the candidates that run fused with bias +
// ReLU, or the v7 heuristic when options::find is off; searched once per batch size and kept)
// and one workspace. With graphs, the second pass at a size is captured whole (copies, input
// transform, every step, output conversion) as one CUDA graph and later passes launch it
// (forward_device: one graph per pointer pair, up to four).
// cuDNN is loaded at run time (dlopen of libcudnn.so.9): the library links no cuDNN, a program
// that never asks for engine::cudnn needs none, and engine::cudnn without a loadable libcudnn
// throws at construction saying so (cudnn_available() tells beforehand).
// Requires: a CUDA device (construction throws ctnet::error otherwise). Host C++; link ctnet::cuda.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "nhwc.hpp"
#include "types.hpp"

namespace ctnet::cuda {

struct nhwc_options {
    engine eng = engine::cudnn;
    precision prec = precision::tf32;
    bool graphs = true;
    int device = 0;
    bool find = true;                               // time cuDNN's candidate algorithms at each batch size
    std::size_t workspace_limit = std::size_t{256} << 20;  // bytes of cuDNN workspace an algorithm may use
};

// What the runner hands over: the plan's steps (w / bias: offsets into params), the memory plan.
struct nhwc_model {
    std::vector<nhwc::step> steps;
    std::vector<long long> offsets;  // per program buffer: element offset per sample in the arena
    long long arena = 0;             // elements per sample
    nhwc::tensor in{}, out{};
    long long temp_in = 0, temp_out = 0, temp_pool = 0;  // per sample: cuDNN's packed temporaries, the pooled convs' output
    std::vector<float> params;       // conv weights KRSC + bias, linear weights (NHWC feature order) + bias, affine scale + shift
};

class nhwc_engine {
public:
    nhwc_engine(nhwc_model m, nhwc_options o);
    ~nhwc_engine();
    nhwc_engine(const nhwc_engine&) = delete;
    nhwc_engine& operator=(const nhwc_engine&) = delete;
    nhwc_engine(nhwc_engine&&) noexcept;
    nhwc_engine& operator=(nhwc_engine&&) noexcept;

    // n samples: x NCHW floats, y the output's floats (NCHW), both host memory (pinned staging).
    void forward_host(const float* x, float* y, int n);
    // The same with x and y in device memory of the engine's device (no host copies).
    void forward_device(const float* x, float* y, int n);
    // Sets up batch size n now (memory, cuDNN's descriptors and algorithm search) instead of at
    // its first pass. The algorithms found for a batch size are kept for the engine's lifetime,
    // so coming back to a size repeats no search.
    void prepare(int n);
    // Convs cuDNN runs at the current batch size, the algorithm of each, whether passes are graphs.
    [[nodiscard]] std::string describe() const;
    [[nodiscard]] std::size_t workspace_bytes() const;

    struct impl;  // per storage type, in src/cuda/nhwc.cu

private:
    std::unique_ptr<impl> p_;
};

// Whether ctnet::cuda was built with cuDNN support (CTNET_CUDNN) and libcudnn loads now.
[[nodiscard]] bool cudnn_available();
// Why not, when it is not ("" when it is).
[[nodiscard]] std::string cudnn_unavailable_reason();

}  // namespace ctnet::cuda
