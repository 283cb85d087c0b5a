// ctnet/cuda/types.hpp — the plain structs shared by the host interface (cuda/launch.hpp), the
// kernels (src/cuda/*.cuh) and the kernels' element functions (cuda/operands.hpp).
//
// No CUDA syntax and no CUDA header: a host compiler takes it alone, so the element functions
// the kernels are built from can be tested on a machine without a GPU or a CUDA toolkit.
#pragma once

// A function for the host and the device: nvcc compiles it for both, a host compiler as inline.
#if defined(__CUDACC__)
#define CTNET_HD __host__ __device__ __forceinline__
#else
#define CTNET_HD inline
#endif

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

// A batch norm's four tensors in device memory, C floats each (the layer's parameter block:
// graph/program.hpp's bn_params on the device).
struct bn_tensors {
    const float* gamma = nullptr;
    const float* beta = nullptr;
    const float* mean = nullptr;
    const float* var = nullptr;
};

enum class precision : unsigned char {
    tf32,  // tensor cores (mma via WMMA), 10-bit mantissa inputs, float32 accumulation
    fp32,  // CUDA cores, float32 throughout: the reference-accuracy path
};

}  // namespace ctnet::cuda
