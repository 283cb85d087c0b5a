// ctnet/exec/view.hpp — a batch of tensors as every kernel sees it: n samples of one shape, sample
// i at data + i * stride. The stride may exceed the shape's size: a value can be a channel slice
// of a wider buffer (how concat costs nothing).
#pragma once

#include <cstddef>

#include "../core/shape.hpp"

namespace ctnet::exec {

template <class T>
struct batch_view {
    T* data;
    std::size_t stride;
    shape s;
    [[nodiscard]] T* sample(int i) const { return data + static_cast<std::size_t>(i) * stride; }
};
using in_view = batch_view<const float>;
using out_view = batch_view<float>;

// The samples from i0 on (a null view stays null).
template <class V>
[[nodiscard]] V from_sample(V v, int i0) {
    return v.data ? V{v.sample(i0), v.stride, v.s} : v;
}
// Channels [c0, c1) of every sample (a null view stays null, with the narrower shape).
template <class V>
[[nodiscard]] V channels(V v, int c0, int c1) {
    const std::size_t plane = static_cast<std::size_t>(v.s.h) * v.s.w;
    return {v.data ? v.data + static_cast<std::size_t>(c0) * plane : v.data, v.stride, shape{c1 - c0, v.s.h, v.s.w}};
}

}  // namespace ctnet::exec
