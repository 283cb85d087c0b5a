// ctnet/exec/keep.hpp — what a training pass must keep for its backward pass, shared by the
// trainers of every backend (cpu/trainer.hpp, cuda/trainer.hpp).
//
//   exec::keep k = exec::keep_of(Net::program, i, max_pool_reads_input);  // none, input or output of op i
//   for (auto [offset, count] : exec::trainable_runs<Net>()) ...          // what an optimizer updates
//
// A trainer gives every activation its own buffer, but an op may still work in place on a value
// that a backward kernel needs later (a conv input that a ReLU overwrites, a batch norm input, a
// ReLU output a later in-place op changes). Then the trainer keeps a copy of that value when
// op i runs. Which copies are needed is a property of the program alone, so it is a constant.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "../graph/network.hpp"
#include "../graph/params.hpp"

namespace ctnet::exec {

enum class keep : unsigned char { none, input, output };

// Does an op after `after` (or `after` itself, when `self`) overwrite v in place?
template <class P>
[[nodiscard]] constexpr bool clobbered(const P& p, const value& v, int after, bool self) {
    if (p.bufs[v.buf].input) return false;
    for (int j = self ? after : after + 1; j < p.n_ops; ++j) {
        const op& q = p.ops[j];
        if (q.out.buf != v.buf || q.in.buf != q.out.buf) continue;  // only in-place ops overwrite
        const std::size_t a0 = static_cast<std::size_t>(q.out.offset), a1 = a0 + q.out.s.size();
        const std::size_t b0 = static_cast<std::size_t>(v.offset), b1 = b0 + v.s.size();
        if (a0 < b1 && b0 < a1) return true;
    }
    return false;
}

// The copy op i of p keeps: the input of a conv, linear or batch norm (and of a max pool whose
// backward finds the maxima again in x) that is overwritten later, the output of a ReLU or
// softmax that is.
template <class P>
[[nodiscard]] constexpr keep keep_of(const P& p, int i, bool max_pool_reads_input) {
    const op& q = p.ops[i];
    switch (q.kind) {
        case op_kind::conv:
        case op_kind::linear:
        case op_kind::batch_norm: return clobbered(p, q.in, i, true) ? keep::input : keep::none;
        case op_kind::max_pool: return max_pool_reads_input && clobbered(p, q.in, i, true) ? keep::input : keep::none;
        case op_kind::relu:
        case op_kind::softmax: return clobbered(p, q.out, i, false) ? keep::output : keep::none;
        default: return keep::none;
    }
}

// Contiguous runs (offset, count) of the trainable floats of a network's storage: a conv's
// weights and the batch norm's gamma and beta after it form one run; the running statistics are
// left out. What an optimizer on a device updates, one launch per run.
template <class Net>
std::vector<std::pair<std::size_t, std::size_t>> trainable_runs() {
    std::vector<std::pair<std::size_t, std::size_t>> r;
    for (const tensor_info& t : weights<Net>::tensors()) {
        if (!t.trainable || t.count == 0) continue;
        if (!r.empty() && r.back().first + r.back().second == t.offset) r.back().second += t.count;
        else r.emplace_back(t.offset, t.count);
    }
    return r;
}

}  // namespace ctnet::exec
