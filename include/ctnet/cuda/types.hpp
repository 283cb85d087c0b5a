// ctnet/cuda/types.hpp — the plain structs shared by the host interface (cuda/launch.hpp), the
// kernels (src/cuda/*.cuh) and the kernels' element functions (cuda/operands.hpp).
//
// No CUDA syntax and no CUDA header: a host compiler takes it alone, so the element functions
// the kernels are built from can be tested on a machine without a GPU or a CUDA toolkit.
#pragma once

#include "../core/hd.hpp"  // CTNET_HD

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
    fp16,  // NHWC engines only: weights and activations stored as IEEE half, float32 accumulation
    bf16,  // NHWC engines only: weights and activations stored as bfloat16, float32 accumulation
};

// Which kernels run a pass (runner<Net, backend::cuda>::options::engine).
enum class engine : unsigned char {
    nchw,   // the first engine: NCHW float activations, ctnet's conv GEMMs (fp32 / tf32 only)
    ctnet,  // NHWC activations in the precision's storage type, ctnet's own kernels throughout
    cudnn,  // NHWC, cuDNN's fused conv + bias + ReLU (loaded at run time), ctnet's kernels for the rest
    automatic,  // NHWC: cudnn where libcudnn loads (cuda::cudnn_available()), else ctnet
};

[[nodiscard]] constexpr const char* to_string(precision p) {
    return p == precision::tf32 ? "tf32" : p == precision::fp32 ? "fp32" : p == precision::fp16 ? "fp16" : "bf16";
}
[[nodiscard]] constexpr const char* to_string(engine e) {
    return e == engine::nchw ? "nchw" : e == engine::ctnet ? "ctnet" : e == engine::cudnn ? "cudnn" : "automatic";
}
// Bytes of one stored activation or weight: 4 (fp32, tf32) or 2 (fp16, bf16).
[[nodiscard]] constexpr int storage_bytes(precision p) { return p == precision::fp16 || p == precision::bf16 ? 2 : 4; }

}  // namespace ctnet::cuda
