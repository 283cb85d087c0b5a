// ctnet/graph/program.hpp — the lowered form of a network type.
//
// A network type (seq / concat / node / layers) is lowered during constant evaluation into a
// `program`: a flat list of ops in execution order, the activation buffers they read and
// write, the named blocks for the summary, and the layout of the parameter storage. Every
// shape rule is checked while lowering; the first violation is kept as a diagnostic that
// names the layer path and both shapes (see network.hpp for how it becomes a compile error).
//
// Everything here is plain constexpr data, so introspection (parameter count, MACs, shapes,
// the memory plan) is a compile-time constant, and executors are ordinary loops over ops.
// Requires: nothing at run time; lowering is done by network<> during constant evaluation.
// Guarantees: ops are in execution order, each reads only values written before it (or the input).

#pragma once

#include <array>
#include <cstddef>
#include <string_view>

#include "../core/shape.hpp"
#include "../core/text.hpp"

namespace ctnet {

enum class op_kind : unsigned char {
    conv,             // 2-D convolution, optional bias
    batch_norm,       // per-channel affine from running statistics (eval) or batch statistics (train)
    relu,
    max_pool,
    avg_pool,
    global_avg_pool,  // adaptive average pool to 1x1
    linear,           // fully connected on a flat input, optional bias
    softmax,          // over the features of a flat input
    dropout,          // identity in eval
    channel_affine,   // y = x * scale[c] + shift[c] with constants (torchvision's transform_input)
};

[[nodiscard]] constexpr std::string_view to_string(op_kind k) {
    switch (k) {
        case op_kind::conv: return "conv";
        case op_kind::batch_norm: return "batch_norm";
        case op_kind::relu: return "relu";
        case op_kind::max_pool: return "max_pool";
        case op_kind::avg_pool: return "avg_pool";
        case op_kind::global_avg_pool: return "global_avg_pool";
        case op_kind::linear: return "linear";
        case op_kind::softmax: return "softmax";
        case op_kind::dropout: return "dropout";
        case op_kind::channel_affine: return "channel_affine";
    }
    return "?";
}

// A tensor as ops see it: a view of buffer `buf`.
// Buffers are NCHW, so a value's batch stride is its buffer's per-sample size, and a value may
// be a channel slice of a concat output, starting `offset` floats into each sample.
struct value {
    int buf = -1;
    int offset = 0;  // floats from the start of one sample of the buffer
    shape s{};
    bool owned = false;  // the consumer may overwrite it in place (it is the only reader)
};

// Where a layer must put its result: anywhere (a fresh buffer or in place), or a given slice.
struct target {
    bool any = true;
    value v{};
    static constexpr target anywhere() { return {}; }
    static constexpr target into(value v) { return {false, v}; }
};

// Sliding-window geometry shared by conv and pooling: kernel, stride, padding (top, bottom,
// left, right).
struct window {
    int kh = 1, kw = 1, sh = 1, sw = 1, pt = 0, pb = 0, pl = 0, pr = 0;
    constexpr bool operator==(const window&) const = default;
};

// A 1x1 window at stride 1 without padding: a conv's im2col matrix is its input.
[[nodiscard]] constexpr bool is_pointwise(const window& g) {
    return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pb == 0 && g.pl == 0 && g.pr == 0;
}

// The output columns [a, b) of a row whose tap at horizontal offset off (= kw - pl, the tap's
// column minus the left padding) reads inside the input row: column ow reads ow * sw + off.
struct tap_columns {
    int a, b;
};
[[nodiscard]] constexpr tap_columns inside_columns(int off, int sw, int in_w, int out_w) {
    const int a = off >= 0 ? 0 : (-off + sw - 1) / sw;
    const int b = in_w - off > 0 ? (in_w - off + sw - 1) / sw : 0;
    const int ca = a < out_w ? a : out_w, cb = b < out_w ? b : out_w;
    return {ca, cb > ca ? cb : ca};
}

struct op {
    op_kind kind{};
    name_text path{};     // dotted torchvision-style path, e.g. "Mixed_5b.branch1x1.conv"
    value in{}, out{};
    window win{};
    bool bias = false;          // conv / linear
    bool count_pad = true;      // avg_pool: padded zeros count in the divisor (torch's default)
    bool train_only = false;    // part of the auxiliary head: runs in training mode only
    double eps = 0.0;           // batch_norm epsilon
    double drop = 0.0;          // dropout probability
    const float* scale = nullptr;  // channel_affine: one constant per channel (static storage of the layer type)
    const float* shift = nullptr;
    std::size_t param_offset = 0;  // first float of this op's tensors in the parameter storage
    std::size_t storage = 0;       // floats of parameter storage (weights and running statistics)
    std::size_t params = 0;        // trainable parameters (what torch's parameters() counts)
    std::size_t macs = 0;          // multiply-accumulates per sample (conv and linear)
};

// A conv's or a linear layer's parameter storage, from its op's param_offset: the weights
// (Cout x Cin*KH*KW, or Cout x the flat input), then the bias when it has one.
template <class T>
struct weight_params {
    T* w;
    T* bias;  // null without one
    [[nodiscard]] static constexpr weight_params of(const op& o, T* storage) {
        T* w = storage + o.param_offset;
        const std::size_t per_out = o.kind == op_kind::conv ? static_cast<std::size_t>(o.in.s.c) * o.win.kh * o.win.kw
                                                            : o.in.s.size();
        return {w, o.bias ? w + static_cast<std::size_t>(o.out.s.c) * per_out : nullptr};
    }
};

// A batch norm's parameter storage, from its op's param_offset: gamma and beta (trainable), then
// the running mean and variance, C floats each (layers/batch_norm.hpp lays it out).
template <class T>
struct bn_params {
    T* gamma;
    T* beta;
    T* mean;
    T* var;
    [[nodiscard]] static constexpr bn_params of(const op& o, T* storage) {
        T* w = storage + o.param_offset;
        const auto c = static_cast<std::size_t>(o.out.s.c);
        return {w, w + c, w + 2 * c, w + 3 * c};
    }
};

struct buffer {
    shape s{};
    bool input = false;       // the network input: read-only, owned by the caller
    bool train_only = false;  // only written in training mode
    int first = -1, last = -1;  // first op writing it, last op reading it (liveness)
    std::size_t offset = 0;     // per-sample float offset in the activation arena (memory plan)
};

// A top-level named node: a row of the summary table.
struct block {
    name_text name{};
    value out{};
    int first_op = 0, end_op = 0;  // ops [first_op, end_op)
    bool train_only = false;
};

// Upper bounds on a network's lowered size, summed over its type tree.
struct ir_size {
    int ops = 0, bufs = 0, nodes = 0;
    constexpr ir_size operator+(ir_size o) const { return {ops + o.ops, bufs + o.bufs, nodes + o.nodes}; }
};

template <ir_size Cap>
struct program {
    std::array<op, Cap.ops> ops{};
    std::array<buffer, Cap.bufs + 1> bufs{};
    std::array<block, Cap.nodes + 1> blocks{};
    int n_ops = 0, n_bufs = 0, n_blocks = 0;
    value input{}, output{}, aux{};
    bool has_aux = false;
    std::size_t storage = 0;  // floats of parameter storage
    diag_text error{};        // first shape rule violated, empty when the network type-checks
    std::size_t arena = 0;    // floats of activation arena per sample (after planning)

    // ---- lowering state ----
    name_text prefix{};
    int depth = 0;
    bool train_only = false;

    [[nodiscard]] constexpr bool ok() const { return error.len == 0; }

    // Records the first violated rule: "layer PATH (WHAT): DETAIL". No quote characters: g++
    // prints the message inside a template argument, where it would escape them.
    template <class... Parts>
    constexpr void reject(std::string_view what, const Parts&... parts) {
        if (!ok()) return;
        error += "layer ";
        error += prefix.len ? prefix.view() : std::string_view{"<input>"};
        error += " (";
        error += what;
        error += "): ";
        ((error += parts), ...);
    }

    constexpr value new_buffer(shape s) {
        buffer& b = bufs[n_bufs];
        b.s = s;
        b.train_only = train_only;
        return value{n_bufs++, 0, s, true};
    }

    // Resolves where an op producing `s` writes: the requested slice, or a fresh buffer.
    constexpr value place(shape s, target t, std::string_view what) {
        if (t.any) return new_buffer(s);
        if (!(t.v.s == s) && ok()) reject(what, "produces ", s, " but its destination slice is ", t.v.s);
        return t.v;
    }

    // Where an elementwise op writes: in place when allowed, else as `place`.
    constexpr value place_elementwise(value in, target t, std::string_view what) {
        if (t.any && in.owned && !bufs[in.buf].input) return in;
        return place(in.s, t, what);
    }

    constexpr op& emit(op_kind k, value in, value out) {
        op& o = ops[n_ops++];
        o.kind = k;
        o.path = prefix;
        o.in = in;
        o.out = out;
        o.train_only = train_only;
        o.param_offset = storage;
        return o;
    }
    constexpr void add_storage(op& o, std::size_t floats, std::size_t trainable) {
        o.storage = floats;
        o.params = trainable;
        storage += floats;
    }
};

}  // namespace ctnet
