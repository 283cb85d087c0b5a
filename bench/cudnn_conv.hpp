// bench/cudnn_conv.hpp — cuDNN as a conv engine for runner<Net, backend::cuda> (options::conv),
// so the GPU benchmark compares ctnet's kernels with cuDNN on the same folded graph, the same
// pooling kernels and the same memory plan. Per conv: cudnnConvolutionBiasActivationForward
// (ReLU fused) or cudnnConvolutionForward + cudnnAddTensor, the algorithm cuDNN's heuristics
// rank first, one shared workspace. tf32 = CUDNN_DEFAULT_MATH (tensor cores allowed),
// otherwise CUDNN_FMA_MATH (float32 only). Descriptors are made on a layer's first call, so run
// one pass before timing, and use graphs = false (set-up allocates).
#pragma once

#include <map>
#include <string>

#include <cudnn.h>

#include <ctnet/cuda/launch.hpp>
#include <ctnet/cuda/runtime.hpp>

namespace bench {

#define CTNET_CUDNN(call)                                                                                    \
    do {                                                                                                     \
        const cudnnStatus_t st_ = (call);                                                                    \
        if (st_ != CUDNN_STATUS_SUCCESS)                                                                     \
            throw ctnet::error(std::string{"cudnn: "} + #call + " failed: " + cudnnGetErrorString(st_));    \
    } while (false)

class cudnn_conv {
public:
    explicit cudnn_conv(bool tf32) : tf32_{tf32} { CTNET_CUDNN(cudnnCreate(&h_)); }
    cudnn_conv(const cudnn_conv&) = delete;
    cudnn_conv& operator=(const cudnn_conv&) = delete;
    ~cudnn_conv() {
        for (auto& [key, l] : layers_) {
            cudnnDestroyTensorDescriptor(l.x);
            cudnnDestroyTensorDescriptor(l.y);
            cudnnDestroyTensorDescriptor(l.b);
            cudnnDestroyFilterDescriptor(l.w);
            cudnnDestroyConvolutionDescriptor(l.c);
            cudnnDestroyActivationDescriptor(l.act);
        }
        cudnnDestroy(h_);
    }

    void operator()(const ctnet::cuda::conv_call& k) {
        layer& l = layers_[{k.w, k.n}];
        if (l.x == nullptr) setup(l, k);
        CTNET_CUDNN(cudnnSetStream(h_, k.stream));
        const float one = 1.0F, zero = 0.0F;
        if (k.relu) {
            CTNET_CUDNN(cudnnConvolutionBiasActivationForward(h_, &one, l.x, k.x.data, l.w, k.w, l.c, l.algo, ws_.data(),
                                                              ws_.size(), &zero, l.y, k.y.data, l.b, k.bias, l.act, l.y,
                                                              k.y.data));
        } else {
            CTNET_CUDNN(cudnnConvolutionForward(h_, &one, l.x, k.x.data, l.w, k.w, l.c, l.algo, ws_.data(), ws_.size(), &zero,
                                                l.y, k.y.data));
            CTNET_CUDNN(cudnnAddTensor(h_, &one, l.b, k.bias, &one, l.y, k.y.data));
        }
    }

private:
    struct layer {
        cudnnTensorDescriptor_t x = nullptr, y = nullptr, b = nullptr;
        cudnnFilterDescriptor_t w = nullptr;
        cudnnConvolutionDescriptor_t c = nullptr;
        cudnnActivationDescriptor_t act = nullptr;
        cudnnConvolutionFwdAlgo_t algo{};
    };

    void setup(layer& l, const ctnet::cuda::conv_call& k) {
        if (k.g.pt != k.g.pb || k.g.pl != k.g.pr) throw ctnet::error("cudnn: asymmetric padding is not supported");
        CTNET_CUDNN(cudnnCreateTensorDescriptor(&l.x));
        CTNET_CUDNN(cudnnCreateTensorDescriptor(&l.y));
        CTNET_CUDNN(cudnnCreateTensorDescriptor(&l.b));
        CTNET_CUDNN(cudnnCreateFilterDescriptor(&l.w));
        CTNET_CUDNN(cudnnCreateConvolutionDescriptor(&l.c));
        CTNET_CUDNN(cudnnCreateActivationDescriptor(&l.act));
        // Strided views: a concat branch writes into its channel slice of a wider buffer.
        CTNET_CUDNN(cudnnSetTensor4dDescriptorEx(l.x, CUDNN_DATA_FLOAT, k.n, k.x.c, k.x.h, k.x.w, static_cast<int>(k.x.stride),
                                                 k.x.h * k.x.w, k.x.w, 1));
        CTNET_CUDNN(cudnnSetTensor4dDescriptorEx(l.y, CUDNN_DATA_FLOAT, k.n, k.y.c, k.y.h, k.y.w, static_cast<int>(k.y.stride),
                                                 k.y.h * k.y.w, k.y.w, 1));
        CTNET_CUDNN(cudnnSetTensor4dDescriptor(l.b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, k.y.c, 1, 1));
        CTNET_CUDNN(cudnnSetFilter4dDescriptor(l.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, k.y.c, k.x.c, k.g.kh, k.g.kw));
        CTNET_CUDNN(cudnnSetConvolution2dDescriptor(l.c, k.g.pt, k.g.pl, k.g.sh, k.g.sw, 1, 1, CUDNN_CROSS_CORRELATION,
                                                    CUDNN_DATA_FLOAT));
        CTNET_CUDNN(cudnnSetConvolutionMathType(l.c, tf32_ ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
        CTNET_CUDNN(cudnnSetActivationDescriptor(l.act, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
        cudnnConvolutionFwdAlgoPerf_t perf[8];
        int found = 0;
        CTNET_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(h_, l.x, l.w, l.c, l.y, 8, &found, perf));
        l.algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
        for (int i = 0; i < found; ++i)
            if (perf[i].status == CUDNN_STATUS_SUCCESS) {
                l.algo = perf[i].algo;
                break;
            }
        std::size_t bytes = 0;
        CTNET_CUDNN(cudnnGetConvolutionForwardWorkspaceSize(h_, l.x, l.w, l.c, l.y, l.algo, &bytes));
        if (bytes > ws_.size()) {
            CTNET_CUDA(cudaDeviceSynchronize());  // the old workspace may be in use
            ws_ = ctnet::cuda::device_buffer<unsigned char>{bytes};
        }
    }

    bool tf32_;
    cudnnHandle_t h_ = nullptr;
    std::map<std::pair<const float*, int>, layer> layers_;
    ctnet::cuda::device_buffer<unsigned char> ws_;
};

}  // namespace bench
