// ctnet/graph/summary.hpp — the per-block table of a network type, from its compile-time program.
//
//   print_summary<models::inception_v3<>>(std::cout, "inception_v3");
//
// One row per top-level named node (torchvision's child modules): name, output shape (C, H, W),
// trainable parameters and multiply-accumulates per sample; then the totals. Rows of the
// auxiliary head are marked "(train)", and its MACs are not in the eval total.
// Requires: a network type. Guarantees: the figures are the compile-time constants
// (param_count_v, macs_v, ...), so the table and the static_asserts never disagree.

#pragma once

#include <cstdio>
#include <ostream>
#include <string>
#include <string_view>

#include "network.hpp"

namespace ctnet {

namespace detail {

inline std::string grouped(std::size_t v) {
    const std::string digits = std::to_string(v);
    std::string s;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i != 0 && (digits.size() - i) % 3 == 0) s += ',';
        s += digits[i];
    }
    return s;
}

inline std::string shape_string(shape s) {
    text<40> t;
    t += s;
    return std::string{t.view()};
}

}  // namespace detail

template <class Net>
void print_summary(std::ostream& os, std::string_view title) {
    const auto& p = Net::program;
    char line[160];
    std::snprintf(line, sizeof line, "%s  input %s\n", std::string{title}.c_str(),
                  detail::shape_string(Net::input).c_str());
    os << line;
    std::snprintf(line, sizeof line, "%-18s %-14s %14s %16s\n", "block", "output", "params", "MACs");
    os << line << std::string(66, '-') << '\n';
    for (int b = 0; b < p.n_blocks; ++b) {
        const block& blk = p.blocks[b];
        std::size_t params = 0, macs = 0;
        for (int i = blk.first_op; i < blk.end_op; ++i) {
            params += p.ops[i].params;
            macs += p.ops[i].macs;
        }
        std::string name{blk.name.view()};
        if (blk.train_only) name += " (train)";
        std::snprintf(line, sizeof line, "%-18s %-14s %14s %16s\n", name.c_str(),
                      detail::shape_string(blk.out.s).c_str(), detail::grouped(params).c_str(),
                      detail::grouped(macs).c_str());
        os << line;
    }
    os << std::string(66, '-') << '\n';
    std::size_t eval_params = 0;
    for (int i = 0; i < p.n_ops; ++i)
        if (!p.ops[i].train_only) eval_params += p.ops[i].params;
    os << "params          " << detail::grouped(param_count_v<Net>) << " (eval path "
       << detail::grouped(eval_params) << ")\n";
    os << "MACs / sample   " << detail::grouped(macs_v<Net>) << " eval, " << detail::grouped(train_macs_v<Net>)
       << " training\n";
    os << "activations     " << detail::grouped(activation_bytes_v<Net>) << " bytes / sample planned ("
       << detail::grouped(unplanned_activation_bytes_v<Net>) << " unplanned)\n";
}

}  // namespace ctnet
