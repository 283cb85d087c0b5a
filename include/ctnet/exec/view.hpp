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

}  // namespace ctnet::exec
