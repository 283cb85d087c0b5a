// ctnet/cuda/nhwc.hpp — the plain data of the NHWC execution plan (cuda/nhwc_plan.hpp builds it
// from a network's program; the NHWC engines in src/cuda/nhwc.cu run it). C++17, no CUDA header
// and no network type, so nvcc, the host compiler and a test without a GPU all read it.
//
// NHWC layout of a buffer of C channels, H x W pixels: element (i, c, y, x) of the buffer lies at
// i * C*H*W + (y * W + x) * C + c. A value of the program is a channel slice [c0, c0 + c) of such
// a buffer (a concat branch writes into its slice): strides n = C*H*W, h = W*C, w = C, c = 1 —
// the same for every slice, only the first element moves (by c0).
#pragma once

#include <cstdint>

#include "types.hpp"

namespace ctnet::cuda::nhwc {

// tensor::buf of the engines' pool temporary: the output of a 1x1 conv that runs before the
// average pool feeding it (step::pooled), packed, `temp_pool` elements per sample at most.
inline constexpr int pool_temp = -2;

// One sample's view of a program buffer in NHWC.
struct tensor {
    int buf = -1;           // program buffer; -1: the engine's own (input / output staging); pool_temp
    int c = 0, h = 0, w = 0;
    int channels = 0;       // C of the whole buffer: the pixel stride
    int c0 = 0;             // first channel of the view within the buffer
    bool input = false;     // the network input buffer

    [[nodiscard]] constexpr long long sample() const {  // elements per sample of the buffer: the n stride
        return static_cast<long long>(channels) * h * w;
    }
    [[nodiscard]] constexpr long long size() const { return static_cast<long long>(c) * h * w; }
    [[nodiscard]] constexpr bool packed() const { return c0 == 0 && c == channels; }
    // Element (i, ch, y, x) relative to the buffer's first element.
    [[nodiscard]] constexpr long long at(long long i, int ch, int y, int x) const {
        return i * sample() + (static_cast<long long>(y) * w + x) * channels + c0 + ch;
    }
};

// A 4-d tensor descriptor as cuDNN's cudnnSetTensor4dDescriptorEx takes it (dims and strides in
// elements, n c h w order), for n samples of a view. Every value fits an int for the networks
// the tests cover (asserted there); strides never include c0 (that moves the pointer).
struct dims4 {
    long long n = 0, c = 0, h = 0, w = 0;
    long long sn = 0, sc = 0, sh = 0, sw = 0;
};
[[nodiscard]] constexpr dims4 dims(const tensor& t, int n) {
    return {n, t.c, t.h, t.w, t.sample(), 1, static_cast<long long>(t.w) * t.channels, t.channels};
}
// The NHWC engines' arena: the program's per-sample memory plan (buffer offsets in elements)
// scaled by the batch rounded up so every buffer starts 32-byte aligned (cuDNN's vectorised
// kernels want aligned operands; a per-sample offset times an odd batch would not be). Buffers
// alive together still never overlap: [off * s, off * s + size * n) lies within [off, off + size) * s.
[[nodiscard]] constexpr long long arena_scale(int n, int element_bytes) {
    const long long per = 32 / element_bytes;
    return (n + per - 1) / per * per;
}

// The same n samples packed (a temporary of exactly c channels).
[[nodiscard]] constexpr tensor packed_like(const tensor& t) { return {-1, t.c, t.h, t.w, t.c, 0, false}; }

enum class kind : unsigned char {
    input,     // NCHW float input -> NHWC storage (a channel_affine on the input fused in: scale/shift)
    conv,      // folded conv: bias and ReLU (when `relu`) fused; a pooled conv: neither (the pool adds them)
    max_pool,
    avg_pool,  // a pooled one: then the bias (`bias`) and ReLU of the 1x1 conv before it
    global_avg_pool,
    linear,    // x flat features in NHWC order (weights permuted at load when x is a flattened H x W > 1 buffer)
    softmax,
    affine,    // y = relu?(x * scale[c] + shift[c]): channel_affine, or a batch norm that could not be folded
    relu,
    copy,      // dropout (identity in eval) into another place
    output,    // NHWC storage -> NCHW float (the logits)
};

[[nodiscard]] constexpr const char* to_string(kind k) {
    switch (k) {
        case kind::input: return "input";
        case kind::conv: return "conv";
        case kind::max_pool: return "max_pool";
        case kind::avg_pool: return "avg_pool";
        case kind::global_avg_pool: return "global_avg_pool";
        case kind::linear: return "linear";
        case kind::softmax: return "softmax";
        case kind::affine: return "affine";
        case kind::relu: return "relu";
        case kind::copy: return "copy";
        case kind::output: return "output";
    }
    return "?";
}

// How the cuDNN engine runs a conv (ctnet's own NHWC kernels read and write any slice directly).
enum class route : unsigned char {
    direct,        // x and y are whole buffers: cuDNN reads and writes them in place
    packed_out,    // y is a channel slice: cuDNN writes a packed temporary, a copy kernel moves it into the slice
    packed_in,     // x is a channel slice: copied to a packed temporary first
    packed_both,
};

struct step {
    kind k = kind::copy;
    int op = -1, last = -1;  // program ops covered (input / output: -1, or the fused channel_affine)
    tensor x, y;
    geometry g{};            // conv and pooling windows
    bool relu = false;       // conv / affine: ReLU fused
    bool bn = false;         // conv: a batch norm folded into it; affine: it is a batch norm
    bool count_pad = true;   // avg_pool
    // An average pool read only by a 1x1 stride-1 conv (every Inception branch_pool) runs after
    // that conv, as on the CPU (exec/plan.hpp): both are linear and the pool treats every channel
    // alike, so conv(pool(x)) = pool(conv(x)) before the bias and ReLU. The conv step (pooled)
    // reads the pool's input and writes the packed pool temporary without bias or ReLU; the
    // avg_pool step after it (pooled) pools the temporary into the conv's destination and adds
    // the conv's bias and ReLU. The pool then reads the conv's output channels instead of its
    // input channels (192 instead of 768 in Mixed_6b..6e), and writes the concat slice itself.
    bool pooled = false;
    route r = route::direct; // conv: how the cuDNN engine runs it
    // Flattened input of a linear: the (C, H, W) of the buffer whose NCHW flat order the weights
    // assume (0 when no permutation is needed: H = W = 1 or not a linear).
    int flat_c = 0, flat_h = 0, flat_w = 0;
    // Offsets (floats) into the host parameter image the runner builds: weights (conv: KRSC,
    // i.e. [out][kh][kw][in]; linear: [out][features in NHWC order]; affine: scale) and bias
    // (conv / linear bias; affine: shift). -1: none.
    long long w = -1, bias = -1;
};

// The legacy cuDNN API pads both sides alike: a conv with pt != pb or pl != pr runs on ctnet's
// NHWC kernel in the cuDNN engine too.
[[nodiscard]] constexpr bool cudnn_ok(const step& s) {
    return s.k == kind::conv && s.g.pt == s.g.pb && s.g.pl == s.g.pr;
}

}  // namespace ctnet::cuda::nhwc
