// ctnet/exec/arena.hpp — where activations live, and the batch checks every executor makes.
//
//   exec::layout<Net> l{false};         // the static memory plan: offsets per buffer, floats per sample
//   exec::activation_arena<Net> a{false};
//   a.bind(x);  a.view(v);               // v: a program value, as an out_view of the arena (or of x)
//
// Requires: a network type. Guarantees: host arenas allocate once per batch size (N times the
// planned per-sample size; `unplanned` gives every activation a buffer of its own, so all of
// them can be read after a pass, as debugging and training need). Views of the network input
// point at the caller's memory. Buffers are laid out sample-major: buffer b of sample i starts
// at offsets[b] * N + i * (b's per-sample size), so a value's batch stride is its buffer's size.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../graph/network.hpp"
#include "view.hpp"

namespace ctnet::exec {

// N from an input of N samples of `input`; throws, naming `who` and both sizes, otherwise.
inline std::size_t batch_of(std::span<const float> x, shape input, std::string_view who) {
    if (x.empty() || x.size() % input.size() != 0)
        throw error("ctnet: " + std::string{who} + ": input has " + std::to_string(x.size()) +
                    " floats, not a positive multiple of one sample's " + std::to_string(input.size()) + " (" +
                    std::to_string(input.c) + "x" + std::to_string(input.h) + "x" + std::to_string(input.w) + ")");
    return x.size() / input.size();
}

inline void expect_size(std::string_view who, std::string_view what, std::size_t got, std::size_t want) {
    if (got != want)
        throw error("ctnet: " + std::string{who} + ": " + std::string{what} + " has " + std::to_string(got) +
                    " floats, expected " + std::to_string(want));
}

// Per-sample float offset of each buffer (the network input has none: it is the caller's).
template <class Net>
struct layout {
    std::vector<std::size_t> offsets;
    std::size_t per_sample = 0;

    explicit layout(bool unplanned) {
        const auto& p = Net::program;
        offsets.assign(static_cast<std::size_t>(p.n_bufs), 0);
        std::size_t total = 0;
        for (int b = 0; b < p.n_bufs; ++b) {
            if (p.bufs[b].input) continue;
            offsets[static_cast<std::size_t>(b)] = unplanned ? total : p.bufs[b].offset;
            total += p.bufs[b].s.size();
        }
        per_sample = unplanned ? total : p.arena;
    }
    // Value v of a batch of n whose arena starts at `base` and whose input is `x`.
    template <class T>
    [[nodiscard]] batch_view<T> view(const value& v, T* base, T* x, std::size_t n) const {
        const buffer& b = Net::program.bufs[v.buf];
        T* start = b.input ? x : base + offsets[static_cast<std::size_t>(v.buf)] * n;
        return {start + v.offset, b.s.size(), v.s};
    }
};

// The activations of one host executor.
template <class Net>
class activation_arena {
public:
    static constexpr shape input = input_shape_v<Net>;

    explicit activation_arena(bool unplanned) : layout_{unplanned} {}

    // Points the input at x (N samples) and sizes the arena for N (allocating only when N changes).
    void bind(std::span<const float> x) {
        n_ = batch_of(x);
        x_ = x.data();
        if (floats_.size() != n_ * layout_.per_sample) floats_.assign(n_ * layout_.per_sample, 0.0F);
    }

    [[nodiscard]] exec::out_view view(const value& v) const {
        // The input is read only: ops never write it.
        return layout_.view(v, const_cast<float*>(floats_.data()), const_cast<float*>(x_), n_);
    }
    [[nodiscard]] exec::in_view in_view(const value& v) const {
        const out_view o = view(v);
        return {o.data, o.stride, o.s};
    }

    [[nodiscard]] int batch() const { return static_cast<int>(n_); }
    [[nodiscard]] std::size_t floats() const { return floats_.size(); }

    static std::size_t batch_of(std::span<const float> x) { return exec::batch_of(x, input, "runner"); }
    static void expect_size(const char* what, std::size_t got, std::size_t want) {
        exec::expect_size("runner", what, got, want);
    }

private:
    layout<Net> layout_;
    std::vector<float> floats_;
    const float* x_ = nullptr;
    std::size_t n_ = 0;
};

}  // namespace ctnet::exec
