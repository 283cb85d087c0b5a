// ctnet/graph/graphviz.hpp — a Graphviz drawing of a network, from its compile-time program.
//
//   write_dot<models::inception_v3<>>(std::cout, "inception_v3");              // one box per block
//   write_dot<models::inception_v3<>>(std::cout, "inception_v3", {.expand = true});  // every op
//   write_dot<models::inception_v3<>>(std::cout, "inception_v3", {.expanded = {"Mixed_7b"}});
//
// Guarantees: valid DOT (`dot -Tsvg`). Edges carry the per-sample shape of the tensor that flows
// along them; the auxiliary head (training only) is drawn dashed. With expand, every top-level
// block is a cluster of its ops; without, a block is one node. Edges are found from the ops'
// reads and writes, so a concat's output has one edge from each branch.
#pragma once

#include <map>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "network.hpp"
#include "summary.hpp"  // detail::shape_string

namespace ctnet {

struct dot_options {
    bool expand = false;                // draw every block's ops (a cluster per block)
    std::vector<std::string> expanded;  // or only these blocks' ops; the others stay one node
};

namespace detail {

inline std::string op_label(const op& o) {
    std::string s{to_string(o.kind)};
    const window& w = o.win;
    if (o.kind == op_kind::conv || o.kind == op_kind::max_pool || o.kind == op_kind::avg_pool) {
        // appended piece by piece: g++ 12 warns falsely (-Wrestrict) on "literal" + std::string
        s += ' ';
        s += std::to_string(w.kh);
        s += 'x';
        s += std::to_string(w.kw);
        if (w.sh != 1 || w.sw != 1) {
            s += " /";
            s += std::to_string(w.sh);
        }
    }
    if (o.kind == op_kind::conv || o.kind == op_kind::linear) {
        s += ' ';
        s += std::to_string(o.out.s.c);
    }
    return s;
}

// "b7", "op12"
inline std::string dot_id(const char* prefix, int n) {
    std::string s{prefix};
    s += std::to_string(n);
    return s;
}

}  // namespace detail

template <class Net>
void write_dot(std::ostream& os, std::string_view title, const dot_options& opt = {}) {
    const auto& p = Net::program;
    // Which block each op belongs to (-1: none); blocks do not nest at the top level.
    std::vector<int> block_of(static_cast<std::size_t>(p.n_ops), -1);
    for (int b = 0; b < p.n_blocks; ++b)
        for (int i = p.blocks[b].first_op; i < p.blocks[b].end_op; ++i) block_of[i] = b;
    std::vector<bool> open(static_cast<std::size_t>(p.n_blocks), opt.expand);
    for (int b = 0; b < p.n_blocks; ++b)
        for (const std::string& name : opt.expanded) open[b] = open[b] || p.blocks[b].name.view() == name;
    auto node_id = [&](int i) -> std::string {
        if (i < 0) return "input";
        if (block_of[i] >= 0 && !open[block_of[i]]) return detail::dot_id("b", block_of[i]);
        return detail::dot_id("op", i);
    };

    // What flows out of a node: a closed block's output, else the writing op's (a concat slice).
    auto produced = [&](int writer) -> shape {
        if (writer < 0) return p.input.s;
        if (block_of[writer] >= 0 && !open[block_of[writer]]) return p.blocks[block_of[writer]].out.s;
        return p.ops[writer].out.s;
    };

    // Producers: per buffer, the ranges of floats and the op that last wrote each (-1: the input).
    struct range {
        int begin, end, writer;
    };
    std::map<int, std::vector<range>> written;
    written[p.input.buf].push_back({0, static_cast<int>(p.input.s.size()), -1});
    std::set<std::tuple<std::string, std::string, std::string>> edges;
    std::set<std::string> dashed;  // nodes of the aux head
    for (int i = 0; i < p.n_ops; ++i) {
        const op& o = p.ops[i];
        const int lo = o.in.offset, hi = lo + static_cast<int>(o.in.s.size());
        for (const range& r : written[o.in.buf])
            if (r.begin < hi && lo < r.end && node_id(r.writer) != node_id(i))
                edges.emplace(node_id(r.writer), node_id(i), detail::shape_string(produced(r.writer)));
        std::vector<range>& w = written[o.out.buf];
        const int olo = o.out.offset, ohi = olo + static_cast<int>(o.out.s.size());
        std::erase_if(w, [&](const range& r) { return r.begin >= olo && r.end <= ohi; });
        w.push_back({olo, ohi, i});
        if (o.train_only) dashed.insert(node_id(i));
    }
    std::string output_writer, aux_writer;
    for (const auto& [buf, ranges] : written)
        for (const range& r : ranges) {
            if (buf == p.output.buf) edges.emplace(node_id(r.writer), "output", detail::shape_string(p.output.s));
            if (p.has_aux && buf == p.aux.buf) edges.emplace(node_id(r.writer), "aux_output", detail::shape_string(p.aux.s));
        }

    os << "digraph \"" << title << "\" {\n"
       << "  graph [rankdir=TB, fontname=Helvetica, label=\"" << title << "  input " << detail::shape_string(p.input.s)
       << "\", labelloc=t];\n"
       << "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eef3fb\", fontname=Helvetica, fontsize=10];\n"
       << "  edge [fontname=Helvetica, fontsize=8, color=\"#555555\"];\n"
       << "  input [shape=oval, fillcolor=\"#ffffff\"];\n  output [shape=oval, fillcolor=\"#ffffff\"];\n";
    if (p.has_aux) os << "  aux_output [shape=oval, fillcolor=\"#ffffff\", style=dashed, label=\"aux output (train)\"];\n";
    auto style = [&](const std::string& id) { return dashed.count(id) ? ", style=\"rounded,dashed\"" : ""; };
    for (int b = 0; b < p.n_blocks; ++b) {
        if (!open[b]) {
            const std::string id = detail::dot_id("b", b);
            os << "  " << id << " [label=\"" << p.blocks[b].name.view() << "\\n" << detail::shape_string(p.blocks[b].out.s)
               << "\"" << style(id) << "];\n";
        }
    }
    for (int b = -1; b < p.n_blocks; ++b) {
        if (b >= 0 && !open[b]) continue;
        if (b >= 0) os << "  subgraph cluster_" << b << " {\n    label=\"" << p.blocks[b].name.view() << "\";\n";
        for (int i = 0; i < p.n_ops; ++i) {
            if (block_of[i] != b) continue;
            const std::string id = detail::dot_id("op", i);
            os << "    " << id << " [label=\"" << detail::op_label(p.ops[i]) << "\"" << style(id) << "];\n";
        }
        if (b >= 0) os << "  }\n";
    }
    for (const auto& [from, to, label] : edges)
        os << "  " << from << " -> " << to << " [label=\"" << label << "\"" << (dashed.count(to) ? ", style=dashed" : "")
           << "];\n";
    os << "}\n";
}

}  // namespace ctnet
