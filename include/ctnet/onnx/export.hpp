// ctnet/onnx/export.hpp — any network type to ONNX.
//
//   weights<net> w;  init_seeded(w, 42);
//   ctnet::onnx::export_model(w, "net.onnx", {.fold_bn = true, .batch = 1});    // link ctnet::onnx
//   ctnet::onnx::model_desc m = ctnet::onnx::describe(w, {});                  // header-only part
//
// describe() walks the network's lowered program (eval path: the auxiliary head is left out)
// into a neutral node list: Conv, BatchNormalization (or folded into the conv / linear layer
// before it with fold_bn), Relu, MaxPool (ceil mode as ctnet lowers it: extra bottom / right
// padding, floor mode), AveragePool (count_include_pad), GlobalAveragePool, Gemm (transB = 1),
// Softmax, Dropout, Mul + Add (transform_input). Concat nodes are rebuilt from the channel slices
// the branches write, Flatten from the views linear layers read. Initializers carry ctnet's
// tensor names ("Mixed_5b.branch1x1.conv.weight"), so `ctnet import` gives the same paths back.
// Requires: opset 13 (ONNX Runtime 1.8 and later). Guarantees: the graph computes what
// runner<Net> computes in eval mode (fold_bn in double precision, rounded once to float).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../graph/params.hpp"
#include "../graph/program.hpp"
#include "model.hpp"

namespace ctnet::onnx {

struct export_options {
    bool fold_bn = false;          // batch norm folded into the conv / linear layer before it
    int batch = 1;                 // the input's batch dimension; 0: symbolic ("N")
    std::string input_name = "input";
    std::string output_name = "output";
    std::string graph_name = "ctnet";
};

namespace detail {

struct slice_entry {
    int offset = 0;
    std::size_t size = 0;
    std::string name;
    int rank = 4;
    shape s{};
};

class export_walk {
public:
    export_walk(std::span<const float> storage, const export_options& o) : storage_(storage), o_(o) {
        m_.graph_name = o.graph_name;
        m_.opset = 13;
    }

    template <class P>
    model_desc run(const P& p) {
        bufs_.resize(static_cast<std::size_t>(p.n_bufs));
        const std::int64_t n = o_.batch > 0 ? o_.batch : -1;
        const shape in = p.bufs[p.input.buf].s;
        m_.inputs.push_back({o_.input_name, {n, in.c, in.h, in.w}, true});
        write(p.input, o_.input_name, 4);
        std::vector<bool> skip(static_cast<std::size_t>(p.n_ops), false);
        for (int i = 0; i < p.n_ops; ++i) {
            const op& o = p.ops[i];
            if (o.train_only || skip[static_cast<std::size_t>(i)]) continue;
            const op* next = nullptr;
            if (o_.fold_bn && (o.kind == op_kind::conv || o.kind == op_kind::linear)) {
                for (int j = i + 1; j < p.n_ops; ++j) {
                    if (p.ops[j].train_only) continue;
                    const op& b = p.ops[j];
                    if (b.kind == op_kind::batch_norm && same(b.in, o.out)) {
                        next = &b;
                        skip[static_cast<std::size_t>(j)] = true;
                    }
                    break;
                }
            }
            emit(o, next);
        }
        std::string last = read(p.output, 0);
        const int rank = rank_of_;
        // The graph output is the last node's output, renamed.
        bool renamed = false;
        for (auto it = m_.nodes.rbegin(); it != m_.nodes.rend() && !renamed; ++it)
            for (std::string& out : it->outputs)
                if (out == last) {
                    out = o_.output_name;
                    renamed = true;
                }
        if (!renamed) {  // the output is the input: an Identity
            m_.nodes.push_back({"Identity", "/output/Identity", {last}, {o_.output_name}, {}});
        } else {
            for (node_desc& nd : m_.nodes)
                for (std::string& s : nd.inputs)
                    if (s == last) s = o_.output_name;
        }
        const shape os = p.output.s;
        if (rank == 2) m_.outputs.push_back({o_.output_name, {n, os.c}, true});
        else m_.outputs.push_back({o_.output_name, {n, os.c, os.h, os.w}, true});
        return std::move(m_);
    }

private:
    std::span<const float> storage_;
    const export_options& o_;
    model_desc m_;
    std::vector<std::vector<slice_entry>> bufs_;
    std::set<std::string> used_;
    int rank_of_ = 4;  // the rank of the last read

    static bool same(const value& a, const value& b) { return a.buf == b.buf && a.offset == b.offset && a.s == b.s; }

    std::string fresh(std::string base) {
        if (used_.insert(base).second) return base;
        for (int i = 1;; ++i) {
            std::string t = base + "_" + std::to_string(i);
            if (used_.insert(t).second) return t;
        }
    }

    static std::string scope(const op& o) {
        std::string s = "/";
        for (char c : o.path.view()) s += c == '.' ? '/' : c;
        if (s.size() > 1) s += "/";
        return s;
    }

    void write(const value& v, const std::string& name, int rank) {
        auto& es = bufs_[static_cast<std::size_t>(v.buf)];
        const std::size_t lo = static_cast<std::size_t>(v.offset), hi = lo + v.s.size();
        std::erase_if(es, [&](const slice_entry& e) {
            const std::size_t a = static_cast<std::size_t>(e.offset), b = a + e.size;
            return a < hi && lo < b;
        });
        es.push_back({v.offset, v.s.size(), name, rank, v.s});
    }

    // The tensor holding value v; need: 0 any rank, 2 flat (N, K), 4 (N, C, H, W).
    std::string read(const value& v, int need) {
        auto& es = bufs_[static_cast<std::size_t>(v.buf)];
        const std::size_t lo = static_cast<std::size_t>(v.offset), hi = lo + v.s.size();
        std::vector<slice_entry> parts;
        for (const slice_entry& e : es)
            if (static_cast<std::size_t>(e.offset) >= lo && static_cast<std::size_t>(e.offset) + e.size <= hi) parts.push_back(e);
        std::sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) { return a.offset < b.offset; });
        std::size_t at = lo;
        for (const slice_entry& e : parts) {
            if (static_cast<std::size_t>(e.offset) != at) break;
            at += e.size;
        }
        if (parts.empty() || at != hi) throw error("onnx export: internal: a value is read before it is written");
        std::string name;
        int rank = 4;
        if (parts.size() == 1) {
            name = parts[0].name;
            rank = parts[0].rank;
        } else {
            std::vector<std::string> ins;
            for (const slice_entry& e : parts) {
                if (e.rank != 4 || e.s.h != v.s.h || e.s.w != v.s.w)
                    throw error("onnx export: a concat of flat tensors is not supported");
                ins.push_back(e.name);
            }
            name = fresh("/concat_" + std::to_string(m_.nodes.size()) + "/Concat_output_0");
            m_.nodes.push_back({"Concat", name.substr(0, name.size() - 9), ins, {name}, {int1("axis", 1)}});
            write(v, name, 4);
        }
        if (need == 2 && rank == 4) {
            const std::string f = fresh(name + "/Flatten_output_0");
            m_.nodes.push_back({"Flatten", name + "/Flatten", {name}, {f}, {int1("axis", 1)}});
            name = f;
            rank = 2;
        } else if (need == 4 && rank == 2) {
            const std::string r = fresh(name + "/Reshape_output_0");
            const std::string s = fresh(name + "/Reshape_shape");
            tensor_desc t{s, {4}, {}, {0, v.s.c, v.s.h, v.s.w}, true};
            m_.initializers.push_back(std::move(t));
            m_.nodes.push_back({"Reshape", name + "/Reshape", {name, s}, {r}, {}});
            name = r;
            rank = 4;
        }
        rank_of_ = rank;
        return name;
    }

    std::string add_init(const std::string& name, std::vector<std::int64_t> dims, std::vector<float> data) {
        const std::string n = fresh(name);
        m_.initializers.push_back({n, std::move(dims), std::move(data), {}, false});
        return n;
    }

    static attribute_desc ints(const char* name, std::vector<std::int64_t> v) {
        attribute_desc a;
        a.name = name;
        a.type = attribute_desc::kind::ints;
        a.ints = std::move(v);
        return a;
    }
    static attribute_desc int1(const char* name, std::int64_t v) {
        attribute_desc a;
        a.name = name;
        a.i = v;
        return a;
    }
    static attribute_desc float1(const char* name, float v) {
        attribute_desc a;
        a.name = name;
        a.type = attribute_desc::kind::f;
        a.f = v;
        return a;
    }

    void node(const op& o, const char* type, std::vector<std::string> ins, std::vector<attribute_desc> attrs, int rank) {
        const std::string nm = fresh(scope(o) + type);
        const std::string out = fresh(nm + "_output_0");
        m_.nodes.push_back({type, nm, std::move(ins), {out}, std::move(attrs)});
        write(o.out, out, rank);
    }

    std::vector<attribute_desc> window_attrs(const window& w) {
        return {ints("kernel_shape", {w.kh, w.kw}), ints("strides", {w.sh, w.sw}), ints("pads", {w.pt, w.pl, w.pb, w.pr})};
    }

    // Folds batch norm `bn` into per-output-channel weights (rows of `per` floats) and a bias.
    void fold(const op& bn, std::vector<float>& w, std::vector<float>& b, std::size_t per) {
        const auto q = bn_params<const float>::of(bn, storage_.data());
        const auto c = static_cast<std::size_t>(bn.out.s.c);
        for (std::size_t j = 0; j < c; ++j) {
            const double s = static_cast<double>(q.gamma[j]) / std::sqrt(static_cast<double>(q.var[j]) + bn.eps);
            for (std::size_t k = 0; k < per; ++k) w[j * per + k] = static_cast<float>(static_cast<double>(w[j * per + k]) * s);
            b[j] = static_cast<float>((static_cast<double>(b[j]) - static_cast<double>(q.mean[j])) * s +
                                      static_cast<double>(q.beta[j]));
        }
    }

    void emit(const op& o, const op* bn) {
        const std::string path{o.path.view()};
        switch (o.kind) {
            case op_kind::conv:
            case op_kind::linear: {
                const bool conv = o.kind == op_kind::conv;
                const std::string in = read(o.in, conv ? 4 : 2);
                const auto wp = weight_params<const float>::of(o, storage_.data());
                const auto cout = static_cast<std::size_t>(o.out.s.c);
                const std::size_t per = conv ? static_cast<std::size_t>(o.in.s.c) * o.win.kh * o.win.kw : o.in.s.size();
                std::vector<float> w(wp.w, wp.w + cout * per), b;
                if (o.bias) b.assign(wp.bias, wp.bias + cout);
                if (bn) {
                    if (!o.bias) b.assign(cout, 0.0F);
                    fold(*bn, w, b, per);
                }
                std::vector<std::int64_t> wd{static_cast<std::int64_t>(cout), o.in.s.c};
                if (conv) wd.insert(wd.end(), {o.win.kh, o.win.kw});
                else wd[1] = static_cast<std::int64_t>(per);
                std::vector<std::string> ins{in, add_init(path + ".weight", wd, std::move(w))};
                if (!b.empty()) ins.push_back(add_init(path + ".bias", {static_cast<std::int64_t>(cout)}, std::move(b)));
                if (conv) node(o, "Conv", ins, window_attrs(o.win), 4);
                else node(o, "Gemm", ins, {float1("alpha", 1.0F), float1("beta", 1.0F), int1("transB", 1)}, 2);
                if (bn) write(bn->out, m_.nodes.back().outputs[0], conv ? 4 : 2);
                break;
            }
            case op_kind::batch_norm: {
                const std::string in = read(o.in, 0);
                const int rank = rank_of_;
                const auto q = bn_params<const float>::of(o, storage_.data());
                const auto c = static_cast<std::size_t>(o.out.s.c);
                const std::vector<std::int64_t> d{static_cast<std::int64_t>(c)};
                std::vector<std::string> ins{in, add_init(path + ".weight", d, {q.gamma, q.gamma + c}),
                                             add_init(path + ".bias", d, {q.beta, q.beta + c}),
                                             add_init(path + ".running_mean", d, {q.mean, q.mean + c}),
                                             add_init(path + ".running_var", d, {q.var, q.var + c})};
                node(o, "BatchNormalization", ins, {float1("epsilon", static_cast<float>(o.eps))}, rank);
                break;
            }
            case op_kind::relu: {
                const std::string in = read(o.in, 0);
                node(o, "Relu", {in}, {}, rank_of_);
                break;
            }
            case op_kind::max_pool:
            case op_kind::avg_pool: {
                const std::string in = read(o.in, 4);
                auto a = window_attrs(o.win);
                if (o.kind == op_kind::avg_pool) a.push_back(int1("count_include_pad", o.count_pad ? 1 : 0));
                node(o, o.kind == op_kind::max_pool ? "MaxPool" : "AveragePool", {in}, a, 4);
                break;
            }
            case op_kind::global_avg_pool: {
                const std::string in = read(o.in, 4);
                node(o, "GlobalAveragePool", {in}, {}, 4);
                break;
            }
            case op_kind::softmax: {
                const std::string in = read(o.in, 2);
                node(o, "Softmax", {in}, {int1("axis", 1)}, 2);
                break;
            }
            case op_kind::dropout: {
                const std::string in = read(o.in, 0);
                const int rank = rank_of_;
                const std::string r = add_init(path + (path.empty() ? "dropout.ratio" : ".ratio"), {},
                                               {static_cast<float>(o.drop)});
                node(o, "Dropout", {in, r}, {}, rank);
                break;
            }
            case op_kind::channel_affine: {
                const std::string in = read(o.in, 4);
                const auto c = static_cast<std::size_t>(o.out.s.c);
                const std::vector<std::int64_t> d{1, static_cast<std::int64_t>(c), 1, 1};
                const std::string s = add_init(path + (path.empty() ? "" : ".") + "transform_input.scale", d, {o.scale, o.scale + c});
                const std::string sh = add_init(path + (path.empty() ? "" : ".") + "transform_input.shift", d, {o.shift, o.shift + c});
                const std::string nm = fresh(scope(o) + "Mul");
                const std::string mid = fresh(nm + "_output_0");
                m_.nodes.push_back({"Mul", nm, {in, s}, {mid}, {}});
                node(o, "Add", {mid, sh}, {}, 4);
                break;
            }
        }
    }
};

}  // namespace detail

// The ONNX description of a lowered program with its parameter storage (header-only).
template <class P>
model_desc describe_program(const P& p, std::span<const float> storage, const export_options& o = {}) {
    if (storage.size() != p.storage)
        throw error("onnx export: the storage has " + std::to_string(storage.size()) + " floats, the network needs " +
                    std::to_string(p.storage));
    if (o.batch < 0) throw error("onnx export: batch must be 0 (symbolic) or positive, got " + std::to_string(o.batch));
    return detail::export_walk{storage, o}.run(p);
}

template <class Net>
model_desc describe(const weights<Net>& w, const export_options& o = {}) {
    return describe_program(Net::program, w.data(), o);
}

// Writes the network with its weights as an ONNX file (atomically). Link ctnet::onnx.
template <class Net>
void export_model(const weights<Net>& w, const std::string& path, const export_options& o = {}) {
    write_model(describe(w, o), path);
}

}  // namespace ctnet::onnx
