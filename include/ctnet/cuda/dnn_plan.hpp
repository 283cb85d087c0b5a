// ctnet/cuda/dnn_plan.hpp — how the GPU trainer describes its convolutions to cuDNN
// (cuda/dnn_conv.hpp): plain arithmetic, with no CUDA toolkit, so CI checks it on the host
// (tests/test_cuda_operands.cpp).
#pragma once

#include "types.hpp"

namespace ctnet::cuda {

// A 4-D cuDNN tensor: dims (n, c, h, w) and their strides in elements.
struct dnn_tensor {
    long long dims[4] = {};
    long long strides[4] = {};
};

// n samples of v, NCHW with v's sample stride.
[[nodiscard]] constexpr dnn_tensor dnn_tensor_of(view v, int n) {
    return {{n, v.c, v.h, v.w}, {v.stride, static_cast<long long>(v.h) * v.w, v.w, 1}};
}

// The convolution and filter descriptors of conv g from x to y: padding (cuDNN's is symmetric:
// top and left), strides, and the filter (out, in, kh, kw), ctnet's weight layout.
struct dnn_conv_desc {
    int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1;
    int filter[4] = {};
};
[[nodiscard]] constexpr dnn_conv_desc dnn_conv_of(geometry g, view x, view y) {
    return {g.pt, g.pl, g.sh, g.sw, {y.c, x.c, g.kh, g.kw}};
}

// Whether cuDNN can run conv g from x to y at batch n: symmetric padding, cuDNN's output size
// equal to the op's, every tensor within cuDNN's int indexing.
[[nodiscard]] constexpr bool dnn_can_run(geometry g, view x, view y, int n) {
    if (g.pt != g.pb || g.pl != g.pr) return false;
    if ((x.h + 2 * g.pt - g.kh) / g.sh + 1 != y.h || (x.w + 2 * g.pl - g.kw) / g.sw + 1 != y.w) return false;
    constexpr long long int_max = 2147483647;
    return static_cast<long long>(n) * x.stride <= int_max && static_cast<long long>(n) * y.stride <= int_max &&
           static_cast<long long>(y.c) * x.c * g.kh * g.kw <= int_max;
}

}  // namespace ctnet::cuda
