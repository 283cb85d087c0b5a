// apps/ctnet/bench_batch.hpp — the seeded random batch that `ctnet bench --train` times on every
// backend (main.cpp's CPU step, bench_cuda.hpp's device step): the same images and labels.
#pragma once

#include <cstddef>
#include <vector>

#include <ctnet/ctnet.hpp>

namespace ctnet_tool {

struct train_batch {
    std::vector<float> x;    // batch x the input shape, standard normal
    std::vector<int> labels;  // uniform over the classes
};

template <class Net>
train_batch random_train_batch(int batch) {
    using namespace ctnet;
    constexpr int classes = static_cast<int>(output_shape_v<Net>.size());
    train_batch b{std::vector<float>(static_cast<std::size_t>(batch) * input_shape_v<Net>.size()),
                  std::vector<int>(static_cast<std::size_t>(batch))};
    rng g{2};
    for (float& v : b.x) v = static_cast<float>(g.normal());
    for (int& l : b.labels) l = static_cast<int>(g.next() % classes);
    return b;
}

}  // namespace ctnet_tool
