// src/cuda/dnn_api.cuh — cuDNN 9, loaded at run time (dlopen of libcudnn.so.9), for the nvcc
// translation units of ctnet::cuda that call it: the NHWC inference engine (nhwc.cu) and the
// trainer's convolutions (dnn_train.cu). dnn() loads it once per process (an inline function's
// static: one table for both units); dnn().why says why it cannot be used, empty when it can.
// Nothing here when ctnet::cuda is built without cuDNN (CTNET_HAVE_CUDNN unset).
#pragma once

#if defined(CTNET_HAVE_CUDNN)
#include <string>

#include <cudnn.h>
#include <dlfcn.h>

#include <ctnet/core/error.hpp>

namespace ctnet::cuda::dnn_api {

#define CTNET_CUDNN_FUNCTIONS(X)                                                                                     \
    X(cudnnCreate) X(cudnnDestroy) X(cudnnSetStream) X(cudnnGetErrorString) X(cudnnGetVersion)                     \
    X(cudnnCreateTensorDescriptor) X(cudnnDestroyTensorDescriptor) X(cudnnSetTensor4dDescriptorEx)                 \
    X(cudnnSetTensor4dDescriptor) X(cudnnCreateFilterDescriptor) X(cudnnDestroyFilterDescriptor)                   \
    X(cudnnSetFilter4dDescriptor) X(cudnnCreateConvolutionDescriptor) X(cudnnDestroyConvolutionDescriptor)         \
    X(cudnnSetConvolution2dDescriptor) X(cudnnSetConvolutionMathType) X(cudnnCreateActivationDescriptor)           \
    X(cudnnDestroyActivationDescriptor) X(cudnnSetActivationDescriptor) X(cudnnFindConvolutionForwardAlgorithmEx)  \
    X(cudnnGetConvolutionForwardAlgorithm_v7) X(cudnnGetConvolutionForwardWorkspaceSize)                          \
    X(cudnnConvolutionBiasActivationForward) X(cudnnConvolutionForward) X(cudnnAddTensor)                         \
    X(cudnnGetConvolutionBackwardDataAlgorithm_v7) X(cudnnGetConvolutionBackwardDataWorkspaceSize)                \
    X(cudnnConvolutionBackwardData) X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                              \
    X(cudnnGetConvolutionBackwardFilterWorkspaceSize) X(cudnnConvolutionBackwardFilter)                           \
    X(cudnnConvolutionBackwardBias)

struct table {
#define CTNET_DECLARE(f) decltype(&::f) f = nullptr;
    CTNET_CUDNN_FUNCTIONS(CTNET_DECLARE)
#undef CTNET_DECLARE
    std::string why;  // empty when loaded
    void* lib = nullptr;
    table() {
        for (const char* name : {"libcudnn.so.9", "libcudnn.so"}) {
            lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
            if (lib != nullptr) break;
        }
        if (lib == nullptr) {
            const char* e = dlerror();
            why = std::string{"cannot load libcudnn.so.9 ("} + (e != nullptr ? e : "?") + "); put cuDNN 9's lib folder on LD_LIBRARY_PATH";
            return;
        }
#define CTNET_LOAD(f)                                                                    \
    f = reinterpret_cast<decltype(&::f)>(dlsym(lib, #f));                                \
    if (f == nullptr && why.empty()) why = std::string{"libcudnn lacks "} + #f;
        CTNET_CUDNN_FUNCTIONS(CTNET_LOAD)
#undef CTNET_LOAD
        if (why.empty() && cudnnGetVersion() < 90000)
            why = "libcudnn " + std::to_string(cudnnGetVersion()) + " is older than cuDNN 9";
    }
};

inline const table& dnn() {
    static const table api;
    return api;
}

inline void dnn_check(cudnnStatus_t st, const char* call) {
    if (st != CUDNN_STATUS_SUCCESS)
        throw error(std::string{"ctnet: cudnn: "} + call + " failed: " + dnn().cudnnGetErrorString(st));
}

}  // namespace ctnet::cuda::dnn_api

#define CTNET_DNN(f, ...) ::ctnet::cuda::dnn_api::dnn_check(::ctnet::cuda::dnn_api::dnn().f(__VA_ARGS__), #f)
#endif
