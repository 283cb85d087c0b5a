// ctnet/graph/params.hpp — the parameters of a network type, by torchvision's names.
//
//   weights<net> w;                         // zero-filled storage of storage_count_v<net> floats
//   init_seeded(w, 42);                     // reproducible random init
//   std::span<float> k = w["Mixed_5b.branch1x1.conv.weight"];
//   for (const tensor_info& t : w.tensors()) ...   // names, shapes, offsets, in state_dict order
//
// Guarantees: one contiguous float array; tensors in the order of torchvision's state_dict
// (num_batches_tracked, an int64 counter, is not stored). An unknown name throws ctnet::error.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "program.hpp"

namespace ctnet {

enum class tensor_role : unsigned char { weight, bias, running_mean, running_var };

struct tensor_info {
    std::string name;        // "Mixed_5b.branch1x1.conv.weight"
    std::vector<int> dims;   // torch's shape: conv (O, I, KH, KW), linear (O, I), others (C)
    std::size_t offset = 0;  // first float in the storage
    std::size_t count = 0;
    tensor_role role{};
    op_kind kind{};
    bool trainable = true;
};

// The tensors of a lowered program, in execution order (= torchvision's state_dict order).
template <class P>
std::vector<tensor_info> tensors_of(const P& p) {
    std::vector<tensor_info> out;
    for (int i = 0; i < p.n_ops; ++i) {
        const op& o = p.ops[i];
        if (o.storage == 0) continue;
        std::size_t at = o.param_offset;
        const std::string base{o.path.view()};
        auto add = [&](const char* suffix, std::vector<int> dims, tensor_role role, bool trainable) {
            std::size_t count = 1;
            for (int d : dims) count *= static_cast<std::size_t>(d);
            out.push_back({base + suffix, std::move(dims), at, count, role, o.kind, trainable});
            at += count;
        };
        const int c_in = o.in.s.c, c_out = o.out.s.c;
        switch (o.kind) {
            case op_kind::conv:
                add(".weight", {c_out, c_in, o.win.kh, o.win.kw}, tensor_role::weight, true);
                if (o.bias) add(".bias", {c_out}, tensor_role::bias, true);
                break;
            case op_kind::linear:
                add(".weight", {c_out, c_in}, tensor_role::weight, true);
                if (o.bias) add(".bias", {c_out}, tensor_role::bias, true);
                break;
            case op_kind::batch_norm:
                add(".weight", {c_out}, tensor_role::weight, true);
                add(".bias", {c_out}, tensor_role::bias, true);
                add(".running_mean", {c_out}, tensor_role::running_mean, false);
                add(".running_var", {c_out}, tensor_role::running_var, false);
                break;
            default:
                throw error("ctnet: internal: op '" + base + "' has storage but no tensor layout");
        }
    }
    return out;
}

template <class Net>
class weights {
public:
    weights() : data_(Net::program.storage, 0.0F) {}

    [[nodiscard]] static const std::vector<tensor_info>& tensors() {
        static const std::vector<tensor_info> list = tensors_of(Net::program);
        return list;
    }
    [[nodiscard]] static const tensor_info& info(std::string_view name) {
        for (const tensor_info& t : tensors())
            if (t.name == name) return t;
        throw error("ctnet: the network has no tensor named '" + std::string{name} + "'");
    }
    [[nodiscard]] std::span<float> operator[](std::string_view name) {
        const tensor_info& t = info(name);
        return {data_.data() + t.offset, t.count};
    }
    [[nodiscard]] std::span<const float> operator[](std::string_view name) const {
        const tensor_info& t = info(name);
        return {data_.data() + t.offset, t.count};
    }
    [[nodiscard]] std::span<float> data() { return data_; }
    [[nodiscard]] std::span<const float> data() const { return data_; }
    // The storage itself, moved out for a new owner (runner<Net, backend::cpu>(weights&&));
    // these weights are empty afterwards.
    [[nodiscard]] std::vector<float> release() && { return std::move(data_); }

private:
    std::vector<float> data_;
};

// Reproducible random init: conv and linear weights ~ N(0, 2 / fan_in) (He), biases 0, batch
// norm weight 1 and bias 0. With randomize_bn the batch-norm tensors are random instead
// (weight in [0.5, 1.5), bias and running_mean ~ N(0, 0.1²), running_var in [0.5, 1.5)): what
// parity tests need so that folding and statistics are exercised.
template <class Net>
void init_seeded(weights<Net>& w, std::uint64_t seed, bool randomize_bn = false) {
    rng g{seed};
    std::span<float> data = w.data();
    for (const tensor_info& t : w.tensors()) {
        float* p = data.data() + t.offset;
        const bool bn = t.kind == op_kind::batch_norm;
        for (std::size_t j = 0; j < t.count; ++j) {
            float v = 0.0F;
            if (!bn && t.role == tensor_role::weight) {
                const std::size_t fan_in = t.count / static_cast<std::size_t>(t.dims[0]);
                v = static_cast<float>(g.normal() * std::sqrt(2.0 / static_cast<double>(fan_in)));
            } else if (bn && (t.role == tensor_role::weight || t.role == tensor_role::running_var)) {
                v = randomize_bn ? static_cast<float>(0.5 + g.uniform()) : 1.0F;
            } else if (bn) {
                v = randomize_bn ? static_cast<float>(0.1 * g.normal()) : 0.0F;
            }
            p[j] = v;
        }
    }
}

}  // namespace ctnet
