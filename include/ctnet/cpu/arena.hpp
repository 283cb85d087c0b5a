// ctnet/cpu/arena.hpp — the activation memory of one runner, laid out by the static plan.
//
// Requires: a network type. Guarantees: one allocation per batch size (N times the planned
// per-sample arena; with `unplanned`, every activation keeps a buffer of its own so all of them
// can be read after a pass). Views of the network input point at the caller's memory.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../graph/network.hpp"
#include "reference.hpp"

namespace ctnet::cpu {

template <class Net>
class activation_arena {
public:
    static constexpr shape input = input_shape_v<Net>;

    explicit activation_arena(bool unplanned) {
        const auto& p = Net::program;
        offsets_.assign(static_cast<std::size_t>(p.n_bufs), 0);
        std::size_t total = 0;
        for (int b = 0; b < p.n_bufs; ++b) {
            if (p.bufs[b].input) continue;
            offsets_[b] = unplanned ? total : p.bufs[b].offset;
            total += p.bufs[b].s.size();
        }
        per_sample_ = unplanned ? total : p.arena;
    }

    // Points the input at x (N samples) and sizes the arena for N (allocating only when N changes).
    void bind(std::span<const float> x) {
        n_ = batch_of(x);
        x_ = x.data();
        if (floats_.size() != n_ * per_sample_) floats_.assign(n_ * per_sample_, 0.0F);
    }

    [[nodiscard]] ref::out_view view(const value& v) const {
        const buffer& b = Net::program.bufs[v.buf];
        float* base = b.input ? const_cast<float*>(x_)  // read only: ops never write the input
                              : const_cast<float*>(floats_.data()) + offsets_[v.buf] * n_;
        return {base + v.offset, b.s.size(), v.s};
    }
    [[nodiscard]] ref::in_view in_view(const value& v) const {
        const ref::out_view o = view(v);
        return {o.data, o.stride, o.s};
    }

    [[nodiscard]] int batch() const { return static_cast<int>(n_); }
    [[nodiscard]] std::size_t floats() const { return floats_.size(); }

    static std::size_t batch_of(std::span<const float> x) {
        if (x.empty() || x.size() % input.size() != 0)
            throw error("ctnet: runner: input has " + std::to_string(x.size()) +
                        " floats, not a positive multiple of one sample's " + std::to_string(input.size()) + " (" +
                        std::to_string(input.c) + "x" + std::to_string(input.h) + "x" + std::to_string(input.w) + ")");
        return x.size() / input.size();
    }
    static void expect_size(const char* what, std::size_t got, std::size_t want) {
        if (got != want)
            throw error(std::string{"ctnet: runner: "} + what + " has " + std::to_string(got) + " floats, expected " +
                        std::to_string(want));
    }

private:
    std::vector<std::size_t> offsets_;
    std::size_t per_sample_ = 0;
    std::vector<float> floats_;
    const float* x_ = nullptr;
    std::size_t n_ = 0;
};

}  // namespace ctnet::cpu
