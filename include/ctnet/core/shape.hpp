// ctnet/core/shape.hpp — per-sample tensor shapes, known at compile time.
//
// A shape is (channels, height, width) of one sample; the batch size is a run-time number.
// A flat vector of K features is shape{K} == (K, 1, 1) and prints as "(K,)".
// Layout of an activation is NCHW (PyTorch's default), so a channel slice of one sample is
// contiguous — this is what lets concat branches write straight into their slice.
// Requires: nothing. Guarantees: size() never overflows for valid shapes (it is computed in size_t).

#pragma once

#include <cstddef>

namespace ctnet {

struct shape {
    int c = 0, h = 1, w = 1;

    [[nodiscard]] constexpr std::size_t size() const {
        return static_cast<std::size_t>(c) * static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
    }
    [[nodiscard]] constexpr bool flat() const { return h == 1 && w == 1; }
    [[nodiscard]] constexpr bool valid() const { return c > 0 && h > 0 && w > 0; }
    constexpr bool operator==(const shape&) const = default;
};

}  // namespace ctnet
