// src/onnx/import.cpp — ONNX graph to a ctnet network type: checks, series-parallel recovery,
// code generation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <ctnet/core/error.hpp>
#include <ctnet/io/file.hpp>
#include <ctnet/io/safetensors.hpp>
#include <ctnet/layers/pool.hpp>
#include <ctnet/onnx/import.hpp>

namespace ctnet::onnx {

namespace {

constexpr int max_spatial = 1 << 16;       // any one of C, H, W
constexpr std::size_t max_sample = std::size_t{1} << 28;  // floats of one sample's tensor
constexpr int max_kernel = 1 << 12;
constexpr int max_nesting = 64;            // nested concats

enum class lk : unsigned char { conv, bn, relu, max_pool, avg_pool, gap, flatten, linear, dropout, softmax, concat };

struct tinfo {
    shape s{};
    int rank = 4;  // 4: (N, C, H, W); 2: (N, K)
};

struct layer {
    lk kind{};
    const node_desc* node = nullptr;
    std::string in, out;
    std::vector<std::string> ins;  // concat
    shape in_s{}, out_s{};
    window win{};
    bool bias = false, ceil = false, count_pad = true;
    double eps = 0.0, drop = 0.0;
    std::vector<float> w, b, mean, var;  // parameters in ctnet's layout
    std::string path;                    // node name for layers with parameters
    bool visited = false;
};

std::string describe(const node_desc& n) {
    return "node '" + n.name + "' (" + n.op_type + ")";
}

[[noreturn]] void fail_node(const node_desc& n, const std::string& why) {
    throw error("onnx import: " + describe(n) + ": " + why);
}
[[noreturn]] void fail(const std::string& why) { throw error("onnx import: " + why); }

std::string shape_text(const tinfo& t) {
    std::ostringstream s;
    if (t.rank == 2) s << "(N, " << t.s.c << ")";
    else s << "(N, " << t.s.c << ", " << t.s.h << ", " << t.s.w << ")";
    return s.str();
}

std::string dims_text(const std::vector<std::int64_t>& d) {
    std::string s = "(";
    for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + (d.size() == 1 ? ",)" : ")");
}

// Reduces a float epsilon to a small ratio<N, D> (decimal denominators): 0.001f -> 1/1000.
std::pair<long long, long long> to_ratio(const node_desc& n, double v, const char* what) {
    if (!(v >= 0.0) || v >= 1.0) fail_node(n, std::string(what) + " must be in [0, 1), got " + std::to_string(v));
    if (v == 0.0) return {0, 1};
    long long d = 10;
    for (int k = 1; k <= 12; ++k, d *= 10) {
        const double num = std::round(v * static_cast<double>(d));
        if (num >= 1.0 && std::fabs(num / static_cast<double>(d) - v) <= v * 1e-6) {
            const auto ni = static_cast<long long>(num);
            const long long g = std::gcd(ni, d);
            return {ni / g, d / g};
        }
    }
    fail_node(n, std::string(what) + " " + std::to_string(v) + " has no short decimal form");
}

class importer {
public:
    importer(const model_desc& m, const import_options& o) : m_(m), o_(o) {}

    import_result run() {
        check_name();
        index_tensors();
        topo_order();
        build_layers();
        recover_structure();
        return generate();
    }

private:
    const model_desc& m_;
    const import_options& o_;
    std::unordered_map<std::string, const tensor_desc*> init_;
    std::unordered_map<std::string, int> producer_;  // tensor -> node index
    std::vector<int> order_;
    std::string input_name_, output_name_;
    tinfo input_{};
    std::unordered_map<std::string, tinfo> info_;
    std::unordered_map<std::string, std::string> alias_;
    std::vector<layer> layers_;
    std::unordered_map<std::string, std::vector<int>> consumers_;
    std::unordered_map<std::string, int> readers_;
    std::set<std::string> names_;
    struct pending_pad {
        const node_desc* node;
        std::string in;
        int t, b, l, r;
        bool used = false;
    };
    std::unordered_map<std::string, pending_pad> pads_;  // Pad outputs, folded into their reader

    struct item {
        int layer = -1;                       // a layer, or a concat of branches
        std::vector<std::vector<item>> branches;
        std::string struct_name;
    };
    std::vector<item> top_;

    void check_name() {
        const std::string& n = o_.name;
        bool ok = !n.empty() && n.size() <= 64 && (std::isalpha(static_cast<unsigned char>(n[0])) || n[0] == '_');
        for (char c : n) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
        if (!ok) fail("the type name '" + n + "' is not a C++ identifier ([A-Za-z_][A-Za-z0-9_]*, at most 64 characters)");
    }

    std::string resolve(std::string t) const {
        for (int i = 0; i < 100000; ++i) {
            auto it = alias_.find(t);
            if (it == alias_.end()) return t;
            t = it->second;
        }
        fail("an alias chain does not end");
    }

    void index_tensors() {
        for (const tensor_desc& t : m_.initializers)
            if (!init_.emplace(t.name, &t).second) fail("two initializers are named '" + t.name + "'");
        if (m_.inputs.size() != 1)
            fail("the graph has " + std::to_string(m_.inputs.size()) +
                 " inputs besides its initializers; ctnet imports a graph of one image input");
        if (m_.outputs.size() != 1)
            fail("the graph has " + std::to_string(m_.outputs.size()) + " outputs; ctnet imports a graph of one output");
        const value_desc& in = m_.inputs[0];
        input_name_ = in.name;
        output_name_ = m_.outputs[0].name;
        if (!in.is_float) fail("the graph input '" + in.name + "' is not float32");
        if (in.dims.size() != 4)
            fail("the graph input '" + in.name + "' has " + std::to_string(in.dims.size()) +
                 " dimensions; ctnet imports an (N, C, H, W) image input");
        if (in.dims[0] == 0) fail("the graph input '" + in.name + "' has batch size 0");
        for (int i = 1; i < 4; ++i)
            if (in.dims[i] < 1 || in.dims[i] > max_spatial)
                fail("the graph input '" + in.name + "' has dims " + dims_text(in.dims) + "; C, H and W must be in [1, " +
                     std::to_string(max_spatial) + "]");
        input_ = {{static_cast<int>(in.dims[1]), static_cast<int>(in.dims[2]), static_cast<int>(in.dims[3])}, 4};
        if (input_.s.size() > max_sample) fail("the graph input '" + in.name + "' is larger than 2^28 floats per sample");
        if (init_.count(input_name_)) fail("the graph input '" + in.name + "' is also an initializer");
        for (std::size_t i = 0; i < m_.nodes.size(); ++i) {
            const node_desc& n = m_.nodes[i];
            for (const std::string& out : n.outputs) {
                if (out.empty()) continue;
                if (out == input_name_ || init_.count(out))
                    fail_node(n, "writes '" + out + "', which is the graph input or an initializer");
                if (!producer_.emplace(out, static_cast<int>(i)).second)
                    fail_node(n, "writes '" + out + "', which another node writes too (not SSA)");
            }
        }
        if (!producer_.count(output_name_)) fail("no node writes the graph output '" + output_name_ + "'");
    }

    // Kahn's algorithm: every input known (graph input, initializer, or a node's output), no cycle.
    void topo_order() {
        const std::size_t n = m_.nodes.size();
        std::vector<int> missing(n, 0);
        std::unordered_map<std::string, std::vector<int>> readers;
        for (std::size_t i = 0; i < n; ++i) {
            for (const std::string& in : m_.nodes[i].inputs) {
                if (in.empty() || in == input_name_ || init_.count(in)) continue;
                if (!producer_.count(in))
                    fail_node(m_.nodes[i], "reads '" + in + "', which is neither the graph input, an initializer nor "
                                                            "any node's output (a dangling input)");
                ++missing[i];
                readers[in].push_back(static_cast<int>(i));
            }
        }
        std::vector<int> ready;
        for (std::size_t i = 0; i < n; ++i)
            if (missing[i] == 0) ready.push_back(static_cast<int>(i));
        while (!ready.empty()) {
            const int i = ready.back();
            ready.pop_back();
            order_.push_back(i);
            for (const std::string& out : m_.nodes[static_cast<std::size_t>(i)].outputs) {
                auto it = readers.find(out);
                if (it == readers.end()) continue;
                for (int r : it->second)
                    if (--missing[static_cast<std::size_t>(r)] == 0) ready.push_back(r);
            }
        }
        if (order_.size() != n) {
            for (std::size_t i = 0; i < n; ++i)
                if (missing[i] > 0) fail_node(m_.nodes[i], "is part of a cycle (the graph is not a DAG)");
        }
        // Kahn's order pops from the back; the file's order is the nicer one when it is valid.
        std::sort(order_.begin(), order_.end());
        std::vector<char> done(n, 0);
        bool file_order_ok = true;
        for (std::size_t i = 0; i < n && file_order_ok; ++i) {
            for (const std::string& in : m_.nodes[i].inputs) {
                auto it = producer_.find(in);
                if (it != producer_.end() && !done[static_cast<std::size_t>(it->second)]) file_order_ok = false;
            }
            done[i] = 1;
        }
        if (!file_order_ok) {  // recompute a topological order that prefers the file's
            order_.clear();
            std::fill(missing.begin(), missing.end(), 0);
            for (auto& [t, rs] : readers)
                for (int r : rs) ++missing[static_cast<std::size_t>(r)];
            std::set<int> rs;
            for (std::size_t i = 0; i < n; ++i)
                if (missing[i] == 0) rs.insert(static_cast<int>(i));
            while (!rs.empty()) {
                const int i = *rs.begin();
                rs.erase(rs.begin());
                order_.push_back(i);
                for (const std::string& out : m_.nodes[static_cast<std::size_t>(i)].outputs) {
                    auto it = readers.find(out);
                    if (it == readers.end()) continue;
                    for (int r : it->second)
                        if (--missing[static_cast<std::size_t>(r)] == 0) rs.insert(r);
                }
            }
        }
    }

    // ---- attribute and tensor helpers ----
    static std::int64_t attr_i(const node_desc& n, const char* name, std::int64_t def) {
        const attribute_desc* a = n.attr(name);
        if (!a) return def;
        if (a->type != attribute_desc::kind::i) fail_node(n, std::string("attribute '") + name + "' is not an integer");
        return a->i;
    }
    static double attr_f(const node_desc& n, const char* name, double def) {
        const attribute_desc* a = n.attr(name);
        if (!a) return def;
        if (a->type != attribute_desc::kind::f) fail_node(n, std::string("attribute '") + name + "' is not a float");
        return a->f;
    }
    static std::vector<std::int64_t> attr_ints(const node_desc& n, const char* name, std::vector<std::int64_t> def,
                                               std::size_t size) {
        const attribute_desc* a = n.attr(name);
        if (!a) return def;
        if (a->type != attribute_desc::kind::ints) fail_node(n, std::string("attribute '") + name + "' is not a list");
        if (a->ints.size() != size)
            fail_node(n, std::string("attribute '") + name + "' has " + std::to_string(a->ints.size()) + " values, want " +
                             std::to_string(size) + " (2-D only)");
        return a->ints;
    }
    static void only_attrs(const node_desc& n, std::initializer_list<const char*> allowed) {
        for (const attribute_desc& a : n.attrs) {
            bool ok = false;
            for (const char* s : allowed) ok = ok || a.name == s;
            if (!ok) fail_node(n, "attribute '" + a.name + "' is not supported");
        }
    }
    const tensor_desc& param(const node_desc& n, std::size_t i, const char* role) const {
        if (i >= n.inputs.size() || n.inputs[i].empty()) fail_node(n, std::string("has no ") + role + " input");
        auto it = init_.find(n.inputs[i]);
        if (it == init_.end())
            fail_node(n, std::string("its ") + role + " '" + n.inputs[i] +
                             "' is not an initializer (ctnet imports constant parameters only)");
        if (it->second->is_int) fail_node(n, std::string("its ") + role + " '" + n.inputs[i] + "' is not float32");
        return *it->second;
    }
    const tensor_desc& param_dims(const node_desc& n, std::size_t i, const char* role,
                                  const std::vector<std::int64_t>& want) const {
        const tensor_desc& t = param(n, i, role);
        if (t.dims != want)
            fail_node(n, std::string("its ") + role + " '" + t.name + "' has dims " + dims_text(t.dims) + ", want " +
                             dims_text(want));
        return t;
    }
    tinfo data_in(const node_desc& n, std::size_t i = 0) const {
        if (i >= n.inputs.size() || n.inputs[i].empty()) fail_node(n, "has no data input");
        const std::string t = resolve(n.inputs[i]);
        if (init_.count(t)) fail_node(n, "its data input '" + t + "' is a constant; ctnet layers read activations");
        auto it = info_.find(t);
        if (it == info_.end()) fail_node(n, "its data input '" + t + "' has no known shape");
        return it->second;
    }
    static void one_output(const node_desc& n, std::size_t max_outputs = 1) {
        if (n.outputs.empty() || n.outputs[0].empty()) fail_node(n, "has no output");
        if (n.outputs.size() > max_outputs) fail_node(n, "has " + std::to_string(n.outputs.size()) + " outputs, want 1");
    }
    window window_of(const node_desc& n, int kh_def, int kw_def, bool kernel_attr) const {
        std::vector<std::int64_t> ks;
        if (kernel_attr) {
            if (!n.attr("kernel_shape")) fail_node(n, "has no kernel_shape");
            ks = attr_ints(n, "kernel_shape", {}, 2);
        } else {
            ks = attr_ints(n, "kernel_shape", {kh_def, kw_def}, 2);
        }
        const auto st = attr_ints(n, "strides", {1, 1}, 2);
        const auto pads = attr_ints(n, "pads", {0, 0, 0, 0}, 4);
        const auto dil = attr_ints(n, "dilations", {1, 1}, 2);
        if (dil[0] != 1 || dil[1] != 1) fail_node(n, "dilation " + dims_text(dil) + " is not supported (1 only)");
        if (const attribute_desc* a = n.attr("auto_pad"); a && a->s != "NOTSET" && a->s != "VALID")
            fail_node(n, "auto_pad '" + a->s + "' is not supported (explicit pads only)");
        for (std::int64_t k : ks)
            if (k < 1 || k > max_kernel) fail_node(n, "kernel " + dims_text(ks) + " is outside [1, 4096]");
        for (std::int64_t s : st)
            if (s < 1 || s > max_kernel) fail_node(n, "stride " + dims_text(st) + " is outside [1, 4096]");
        for (std::int64_t p : pads)
            if (p < 0 || p > max_kernel) fail_node(n, "pads " + dims_text(pads) + " must be in [0, 4096]");
        window w;
        w.kh = static_cast<int>(ks[0]);
        w.kw = static_cast<int>(ks[1]);
        w.sh = static_cast<int>(st[0]);
        w.sw = static_cast<int>(st[1]);
        w.pt = static_cast<int>(pads[0]);
        w.pl = static_cast<int>(pads[1]);
        w.pb = static_cast<int>(pads[2]);
        w.pr = static_cast<int>(pads[3]);
        return w;
    }
    static shape window_out(const node_desc& n, shape in, const window& w, int c) {
        const int ph = in.h + w.pt + w.pb, pw = in.w + w.pl + w.pr;
        if (ph < w.kh || pw < w.kw)
            fail_node(n, "kernel " + std::to_string(w.kh) + "x" + std::to_string(w.kw) + " is larger than the padded input " +
                             std::to_string(ph) + "x" + std::to_string(pw));
        return detail::window_shape(in, w, c);
    }
    void set_out(const node_desc& n, const std::string& out, tinfo t) {
        if (!t.s.valid() || t.s.c > (1 << 28) || t.s.h > max_spatial || t.s.w > max_spatial || t.s.size() > max_sample)
            fail_node(n, "its output " + shape_text(t) + " is empty or too large");
        info_[out] = t;
    }

    layer& add(lk kind, const node_desc& n, const tinfo& in, const tinfo& out) {
        layer l;
        l.kind = kind;
        l.node = &n;
        l.in = resolve(n.inputs[0]);
        l.out = n.outputs[0];
        l.in_s = in.s;
        l.out_s = out.s;
        layers_.push_back(std::move(l));
        set_out(n, n.outputs[0], out);
        if (static_cast<int>(layers_.size()) > o_.max_ops)
            fail("the graph has more than " + std::to_string(o_.max_ops) + " layers");
        return layers_.back();
    }

    // ---- one ONNX node to one ctnet layer ----
    void build_layers() {
        info_[input_name_] = input_;
        for (int idx : order_) {
            const node_desc& n = m_.nodes[static_cast<std::size_t>(idx)];
            const std::string& op = n.op_type;
            if (op == "Identity") {
                one_output(n);
                only_attrs(n, {});
                const tinfo t = data_in(n);
                alias_[n.outputs[0]] = resolve(n.inputs[0]);
                (void)t;
            } else if (op == "Conv") {
                conv(n);
            } else if (op == "BatchNormalization") {
                batch_norm(n);
            } else if (op == "Relu") {
                one_output(n);
                only_attrs(n, {});
                const tinfo t = data_in(n);
                add(lk::relu, n, t, t);
            } else if (op == "MaxPool" || op == "AveragePool") {
                pool(n);
            } else if (op == "GlobalAveragePool") {
                one_output(n);
                only_attrs(n, {});
                const tinfo t = data_in(n);
                if (t.rank != 4) fail_node(n, "expects (N, C, H, W) but got " + shape_text(t));
                add(lk::gap, n, t, {{t.s.c, 1, 1}, 4});
            } else if (op == "Flatten") {
                one_output(n);
                only_attrs(n, {"axis"});
                const tinfo t = data_in(n);
                if (attr_i(n, "axis", 1) != 1) fail_node(n, "axis must be 1 (one flat vector per sample)");
                flatten(n, t);
            } else if (op == "Reshape") {
                one_output(n);
                only_attrs(n, {"allowzero"});
                const tinfo t = data_in(n);
                reshape(n, t);
            } else if (op == "Gemm") {
                gemm(n);
            } else if (op == "MatMul") {
                matmul(n);
            } else if (op == "Add") {
                add_bias(n);
            } else if (op == "Dropout") {
                dropout(n);
            } else if (op == "Softmax") {
                one_output(n);
                only_attrs(n, {"axis"});
                const tinfo t = data_in(n);
                const std::int64_t axis = attr_i(n, "axis", m_.opset >= 13 ? -1 : 1);
                if (t.rank != 2 || (axis != 1 && axis != -1))
                    fail_node(n, "ctnet's softmax is over the features of a flat (N, K) input; got " + shape_text(t) +
                                     " with axis " + std::to_string(axis));
                add(lk::softmax, n, t, t);
            } else if (op == "Concat") {
                concat(n);
            } else if (op == "Pad") {
                pad(n);
            } else {
                fail_node(n, "op '" + op + "' is not supported by ctnet (supported: Conv, BatchNormalization, Relu, "
                             "MaxPool, AveragePool, GlobalAveragePool, Concat, Flatten, Reshape, Gemm, MatMul, Add "
                             "(a MatMul's bias), Dropout, Softmax, Identity)");
            }
        }
        for (const auto& [t, p] : pads_)
            if (!p.used) fail_node(*p.node, "ctnet imports Pad only folded into the one Conv or AveragePool that reads it");
        output_name_ = resolve(output_name_);
        if (output_name_ == input_name_) fail("the graph output is its input: there is no layer");
        if (!info_.count(output_name_)) fail("the graph output '" + output_name_ + "' is not written by any layer");
    }

    void conv(const node_desc& n) {
        one_output(n);
        only_attrs(n, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"});
        const tinfo t = data_in(n);
        if (t.rank != 4) fail_node(n, "expects (N, C, H, W) but got " + shape_text(t));
        if (attr_i(n, "group", 1) != 1) fail_node(n, "group " + std::to_string(attr_i(n, "group", 1)) +
                                                        " is not supported (ctnet's conv has group 1)");
        const tensor_desc& w = param(n, 1, "weight");
        if (w.dims.size() != 4) fail_node(n, "its weight '" + w.name + "' has dims " + dims_text(w.dims) + ", want 4-D");
        if (w.dims[1] != t.s.c)
            fail_node(n, "its weight '" + w.name + "' has dims " + dims_text(w.dims) + " but the input has " +
                             std::to_string(t.s.c) + " channels");
        if (w.dims[0] < 1 || w.dims[0] > (1 << 20)) fail_node(n, "its weight has " + std::to_string(w.dims[0]) + " filters");
        window win = window_of(n, static_cast<int>(std::min<std::int64_t>(w.dims[2], max_kernel + 1)),
                               static_cast<int>(std::min<std::int64_t>(w.dims[3], max_kernel + 1)), false);
        if (w.dims[2] != win.kh || w.dims[3] != win.kw)
            fail_node(n, "its weight '" + w.name + "' has dims " + dims_text(w.dims) + " but kernel_shape is " +
                             std::to_string(win.kh) + "x" + std::to_string(win.kw));
        const int out_c = static_cast<int>(w.dims[0]);
        const shape os = window_out(n, t.s, win, out_c);
        const bool has_bias = n.inputs.size() > 2 && !n.inputs[2].empty();
        std::vector<float> b;
        if (has_bias) b = param_dims(n, 2, "bias", {w.dims[0]}).data;
        if (n.inputs.size() > 3) fail_node(n, "has more than 3 inputs");
        layer& l = add(lk::conv, n, t, {os, 4});
        l.win = win;
        l.bias = has_bias;
        l.w = w.data;
        l.b = std::move(b);
        l.path = name_for(n, w.name);
        tinfo tt = t;
        fold_pad(n, l.win, tt, l);
    }

    void batch_norm(const node_desc& n) {
        if (n.outputs.empty() || n.outputs[0].empty()) fail_node(n, "has no output");
        for (std::size_t i = 1; i < n.outputs.size(); ++i)
            if (!n.outputs[i].empty())
                fail_node(n, "has training-mode outputs (running statistics); export the model in eval mode");
        only_attrs(n, {"epsilon", "momentum", "training_mode", "spatial"});
        if (attr_i(n, "training_mode", 0) != 0) fail_node(n, "training_mode=1 is not supported (inference only)");
        if (attr_i(n, "spatial", 1) != 1) fail_node(n, "spatial=0 is not supported");
        const tinfo t = data_in(n);
        const std::vector<std::int64_t> c{t.s.c};
        const tensor_desc& g = param_dims(n, 1, "scale", c);
        const tensor_desc& b = param_dims(n, 2, "bias", c);
        const tensor_desc& mean = param_dims(n, 3, "mean", c);
        const tensor_desc& var = param_dims(n, 4, "variance", c);
        if (n.inputs.size() > 5) fail_node(n, "has more than 5 inputs");
        for (float v : var.data)
            if (!(v >= 0.0F)) fail_node(n, "its variance '" + var.name + "' has a negative or NaN value");
        const double eps = attr_f(n, "epsilon", 1e-5);
        if (!(eps > 0.0)) fail_node(n, "epsilon must be positive, got " + std::to_string(eps));
        layer& l = add(lk::bn, n, t, t);
        l.eps = eps;
        l.w = g.data;
        l.b = b.data;
        l.mean = mean.data;
        l.var = var.data;
        l.path = name_for(n, g.name);
    }

    void pool(const node_desc& n) {
        const bool mx = n.op_type == "MaxPool";
        if (mx) {
            if (n.outputs.size() > 1 && !n.outputs[1].empty()) fail_node(n, "its Indices output is not supported");
            if (n.outputs.empty() || n.outputs[0].empty()) fail_node(n, "has no output");
            only_attrs(n, {"kernel_shape", "strides", "pads", "dilations", "auto_pad", "ceil_mode", "storage_order"});
            if (attr_i(n, "storage_order", 0) != 0) fail_node(n, "storage_order=1 is not supported");
        } else {
            one_output(n);
            only_attrs(n, {"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "count_include_pad"});
        }
        const tinfo t = data_in(n);
        if (t.rank != 4) fail_node(n, "expects (N, C, H, W) but got " + shape_text(t));
        const window win = window_of(n, 1, 1, true);
        if (2 * win.pt > win.kh || 2 * win.pb > win.kh || 2 * win.pl > win.kw || 2 * win.pr > win.kw)
            fail_node(n, "padding must be at most half the kernel (as torch's pooling)");
        const std::int64_t ceil = attr_i(n, "ceil_mode", 0);
        if (ceil != 0 && ceil != 1) fail_node(n, "ceil_mode must be 0 or 1");
        window_out(n, t.s, win, t.s.c);  // the kernel fits
        window run = win;
        if (ceil) run = detail::ceil_mode_window(win, t.s);
        if (!mx && !(run == win))
            fail_node(n, "ceil_mode=1 changes the output size here, which ctnet's avg_pool does not support");
        const shape os = window_out(n, t.s, run, t.s.c);
        layer& l = add(mx ? lk::max_pool : lk::avg_pool, n, t, {os, 4});
        l.win = win;
        l.ceil = mx && ceil && !(run == win);
        const std::int64_t cip = mx ? 1 : attr_i(n, "count_include_pad", 0);
        l.count_pad = cip != 0;
        if (!mx && (cip != 0 && cip != 1)) fail_node(n, "count_include_pad must be 0 or 1");
        // Without padding the divisor is the kernel either way: keep ctnet's default.
        if (!mx && win.pt == 0 && win.pb == 0 && win.pl == 0 && win.pr == 0) l.count_pad = true;
        if (pads_.count(resolve(n.inputs[0]))) {
            if (mx) fail_node(n, "reads a zero Pad; max pooling pads with -inf, so ctnet cannot fold it");
            if (l.ceil) fail_node(n, "ceil_mode after a Pad is not supported");
            if (!l.count_pad) fail_node(n, "count_include_pad=0 with padding of its own after a Pad is not supported");
            tinfo tt = t;
            fold_pad(n, l.win, tt, l);
            l.count_pad = true;  // the padded zeros are real input to the pool: they count
            const window& w = l.win;
            if (2 * w.pt > w.kh || 2 * w.pb > w.kh || 2 * w.pl > w.kw || 2 * w.pr > w.kw)
                fail_node(n, "padding (with the Pad before it) must be at most half the kernel (as torch's pooling)");
        }
    }

    // Zero padding of H and W, folded into the Conv or AveragePool (count_include_pad) reading it.
    void pad(const node_desc& n) {
        one_output(n);
        only_attrs(n, {"mode", "pads", "value"});
        const tinfo t = data_in(n);
        if (t.rank != 4) fail_node(n, "expects (N, C, H, W) but got " + shape_text(t));
        if (const attribute_desc* a = n.attr("mode"); a && a->s != "constant")
            fail_node(n, "mode '" + a->s + "' is not supported (constant zero padding only)");
        std::vector<std::int64_t> p;
        double value = attr_f(n, "value", 0.0);
        if (n.attr("pads")) {
            p = attr_ints(n, "pads", {}, 8);
        } else {
            if (n.inputs.size() < 2) fail_node(n, "has no pads");
            auto it = init_.find(n.inputs[1]);
            if (it == init_.end() || !it->second->is_int || it->second->ints.size() != 8)
                fail_node(n, "its pads '" + n.inputs[1] + "' are not a constant int64 tensor of 8 values");
            p = it->second->ints;
            if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
                auto v = init_.find(n.inputs[2]);
                if (v == init_.end() || v->second->is_int || v->second->data.size() != 1)
                    fail_node(n, "its constant_value is not a constant float scalar");
                value = v->second->data[0];
            }
            if (n.inputs.size() > 3) fail_node(n, "has more than 3 inputs");
        }
        if (value != 0.0) fail_node(n, "pads with " + std::to_string(value) + "; ctnet folds zero padding only");
        if (p[0] || p[1] || p[4] || p[5]) fail_node(n, "pads the batch or channel axis: " + dims_text(p));
        for (std::int64_t v : p)
            if (v < 0 || v > max_kernel) fail_node(n, "pads " + dims_text(p) + " must be in [0, 4096]");
        pending_pad pp{&n, resolve(n.inputs[0]), static_cast<int>(p[2]), static_cast<int>(p[6]), static_cast<int>(p[3]),
                       static_cast<int>(p[7])};
        tinfo o = t;
        o.s.h += pp.t + pp.b;
        o.s.w += pp.l + pp.r;
        set_out(n, n.outputs[0], o);
        pads_[n.outputs[0]] = pp;
    }

    // A Pad before node n's data input: folds it into win (once) and makes the layer read the Pad's input.
    void fold_pad(const node_desc& n, window& win, tinfo& t, layer& l) {
        auto it = pads_.find(resolve(n.inputs[0]));
        if (it == pads_.end()) return;
        pending_pad& p = it->second;
        if (p.used) fail_node(*p.node, "is read by more than one layer; ctnet folds a Pad into its one reader");
        p.used = true;
        win.pt += p.t;
        win.pb += p.b;
        win.pl += p.l;
        win.pr += p.r;
        l.in = p.in;
        l.in_s = info_[p.in].s;
        t.s = l.in_s;
    }

    void flatten(const node_desc& n, const tinfo& t) {
        add(lk::flatten, n, t, {{static_cast<int>(t.s.size()), 1, 1}, 2});
    }

    void reshape(const node_desc& n, const tinfo& t) {
        if (n.inputs.size() != 2) fail_node(n, "needs a data and a shape input");
        auto it = init_.find(n.inputs[1]);
        if (it == init_.end() || !it->second->is_int)
            fail_node(n, "its shape '" + n.inputs[1] + "' is not a constant int64 tensor");
        const std::vector<std::int64_t>& s = it->second->ints;
        const auto k = static_cast<std::int64_t>(t.s.size());
        const std::int64_t batch = m_.inputs[0].dims[0];
        const bool first_ok = s.size() == 2 && (s[0] == 0 || s[0] == -1 || (batch > 0 && s[0] == batch));
        const bool second_ok = s.size() == 2 && (s[1] == -1 || s[1] == k) && !(s[0] == -1 && s[1] == -1);
        if (!first_ok || !second_ok)
            fail_node(n, "reshapes " + shape_text(t) + " to " + dims_text(s) +
                             "; ctnet imports a Reshape to one flat vector per sample, (N, -1), only");
        if (attr_i(n, "allowzero", 0) != 0 && s[0] == 0) fail_node(n, "allowzero with a 0 dimension is not supported");
        flatten(n, t);
    }

    void linear_from(const node_desc& n, const tinfo& t, const tensor_desc& w, bool transposed, float alpha,
                     const tensor_desc* bias, float beta) {
        if (t.rank != 2) fail_node(n, "expects a flat (N, K) input but got " + shape_text(t) + "; flatten first");
        if (w.dims.size() != 2) fail_node(n, "its weight '" + w.name + "' has dims " + dims_text(w.dims) + ", want 2-D");
        const std::int64_t in = transposed ? w.dims[1] : w.dims[0], out = transposed ? w.dims[0] : w.dims[1];
        if (in != t.s.c)
            fail_node(n, "its weight '" + w.name + "' has dims " + dims_text(w.dims) + " but the input is " + shape_text(t));
        if (out < 1 || out > (1 << 24)) fail_node(n, "its weight '" + w.name + "' has " + std::to_string(out) + " outputs");
        layer& l = add(lk::linear, n, t, {{static_cast<int>(out), 1, 1}, 2});
        l.w.resize(w.data.size());
        const auto I = static_cast<std::size_t>(in), O = static_cast<std::size_t>(out);
        for (std::size_t o = 0; o < O; ++o)
            for (std::size_t i = 0; i < I; ++i)
                l.w[o * I + i] = alpha * (transposed ? w.data[o * I + i] : w.data[i * O + o]);
        if (bias) {
            const bool ok = (bias->dims.size() == 1 && bias->dims[0] == out) ||
                            (bias->dims.size() == 2 && bias->dims[0] == 1 && bias->dims[1] == out);
            if (!ok)
                fail_node(n, "its bias '" + bias->name + "' has dims " + dims_text(bias->dims) + ", want (" +
                                 std::to_string(out) + ",)");
            l.bias = true;
            l.b = bias->data;
            for (float& v : l.b) v *= beta;
        }
        l.path = name_for(n, w.name);
    }

    void gemm(const node_desc& n) {
        one_output(n);
        only_attrs(n, {"alpha", "beta", "transA", "transB"});
        const tinfo t = data_in(n);
        if (attr_i(n, "transA", 0) != 0) fail_node(n, "transA=1 is not supported");
        const tensor_desc& w = param(n, 1, "weight");
        const bool has_c = n.inputs.size() > 2 && !n.inputs[2].empty();
        if (n.inputs.size() > 3) fail_node(n, "has more than 3 inputs");
        const tensor_desc* c = has_c ? &param(n, 2, "bias") : nullptr;
        linear_from(n, t, w, attr_i(n, "transB", 0) != 0, static_cast<float>(attr_f(n, "alpha", 1.0)), c,
                    static_cast<float>(attr_f(n, "beta", 1.0)));
    }

    void matmul(const node_desc& n) {
        one_output(n);
        only_attrs(n, {});
        if (n.inputs.size() != 2) fail_node(n, "needs 2 inputs");
        const tinfo t = data_in(n);
        linear_from(n, t, param(n, 1, "weight"), false, 1.0F, nullptr, 1.0F);
    }

    // Add(MatMul(x, W), b): the bias of the linear layer just made from the MatMul.
    void add_bias(const node_desc& n) {
        one_output(n);
        only_attrs(n, {});
        if (n.inputs.size() != 2) fail_node(n, "needs 2 inputs");
        const int data = init_.count(n.inputs[0]) ? 1 : 0;
        const std::string x = resolve(n.inputs[static_cast<std::size_t>(data)]);
        layer* mm = nullptr;
        if (!layers_.empty() && layers_.back().kind == lk::linear && layers_.back().out == x && !layers_.back().bias &&
            layers_.back().node->op_type == "MatMul")
            mm = &layers_.back();
        if (!mm || !init_.count(n.inputs[static_cast<std::size_t>(1 - data)]))
            fail_node(n, "ctnet imports Add only as the bias of the MatMul just before it (a linear layer)");
        if (readers_.empty())  // how many node inputs name each tensor (counted once, on the first Add)
            for (const node_desc& o : m_.nodes)
                for (const std::string& in : o.inputs) ++readers_[in];
        if (readers_[x] != 1 || x == output_name_) fail_node(n, "the MatMul's output '" + x + "' is read elsewhere too");
        const tensor_desc& b = param(n, static_cast<std::size_t>(1 - data), "bias");
        const auto out = static_cast<std::int64_t>(mm->out_s.c);
        const bool ok = (b.dims.size() == 1 && b.dims[0] == out) || (b.dims.size() == 2 && b.dims[0] == 1 && b.dims[1] == out);
        if (!ok) fail_node(n, "its bias '" + b.name + "' has dims " + dims_text(b.dims) + ", want (" + std::to_string(out) + ",)");
        mm->bias = true;
        mm->b = b.data;
        alias_[n.outputs[0]] = x;
    }

    void dropout(const node_desc& n) {
        if (n.outputs.empty() || n.outputs[0].empty()) fail_node(n, "has no output");
        for (std::size_t i = 1; i < n.outputs.size(); ++i)
            if (!n.outputs[i].empty()) fail_node(n, "its mask output is not supported");
        only_attrs(n, {"ratio", "seed", "is_test"});
        const tinfo t = data_in(n);
        double p = attr_f(n, "ratio", 0.5);
        if (n.inputs.size() > 1 && !n.inputs[1].empty()) {
            auto it = init_.find(n.inputs[1]);
            if (it == init_.end() || it->second->is_int || it->second->data.size() != 1)
                fail_node(n, "its ratio is not a constant float scalar");
            p = it->second->data[0];
        }
        if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
            auto it = init_.find(n.inputs[2]);
            if (it == init_.end()) fail_node(n, "its training_mode input is not a constant");
            const tensor_desc& tm = *it->second;
            const bool on = tm.is_int ? (!tm.ints.empty() && tm.ints[0] != 0) : (!tm.data.empty() && tm.data[0] != 0.0F);
            if (on) fail_node(n, "training_mode is on; ctnet imports inference graphs");
        }
        layer& l = add(lk::dropout, n, t, t);
        l.drop = p;
        to_ratio(n, p, "ratio");
    }

    void concat(const node_desc& n) {
        one_output(n);
        only_attrs(n, {"axis"});
        if (n.inputs.empty()) fail_node(n, "has no inputs");
        const tinfo first = data_in(n, 0);
        const std::int64_t axis = attr_i(n, "axis", 1);
        if (first.rank != 4 || (axis != 1 && axis != -3))
            fail_node(n, "ctnet imports Concat on the channels of (N, C, H, W) tensors (axis 1); got axis " +
                             std::to_string(axis) + " on " + shape_text(first));
        shape os = first.s;
        os.c = 0;
        layer l;
        l.kind = lk::concat;
        l.node = &n;
        l.out = n.outputs[0];
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
            const tinfo t = data_in(n, i);
            if (t.rank != 4 || t.s.h != first.s.h || t.s.w != first.s.w)
                fail_node(n, "input " + std::to_string(i + 1) + " '" + n.inputs[i] + "' is " + shape_text(t) +
                                 " but input 1 is " + shape_text(first) + "; spatial sizes must agree");
            os.c += t.s.c;
            if (os.c > (1 << 28)) fail_node(n, "too many channels");
            l.ins.push_back(resolve(n.inputs[i]));
        }
        l.out_s = os;
        layers_.push_back(std::move(l));
        set_out(n, n.outputs[0], {os, 4});
        if (static_cast<int>(layers_.size()) > o_.max_ops)
            fail("the graph has more than " + std::to_string(o_.max_ops) + " layers");
    }

    // ---- names ----
    std::string unique(std::string s, const std::string& fallback) {
        if (s.empty() || s.size() > 39) s = fallback;
        if (names_.insert(s).second) return s;
        for (int i = 2;; ++i) {
            std::string t = s.substr(0, std::min<std::size_t>(s.size(), 32)) + "_" + std::to_string(i);
            if (names_.insert(t).second) return t;
        }
    }

    // PATH: torch's parameter path when the weight is named PATH.weight, else the node name
    // ("/Mixed_5b/branch1x1/conv/Conv" -> "Mixed_5b.branch1x1.conv"), else OP_INDEX.
    std::string name_for(const node_desc& n, const std::string& weight_name) {
        std::string base;
        const std::string suffix = ".weight";
        if (weight_name.size() > suffix.size() &&
            weight_name.compare(weight_name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            const std::string p = weight_name.substr(0, weight_name.size() - suffix.size());
            if (sanitize_name(p) == p) base = p;
        }
        if (base.empty()) {
            std::vector<std::string> parts;
            std::string cur;
            for (char c : n.name + "/") {
                if (c == '/') {
                    if (!cur.empty()) parts.push_back(cur);
                    cur.clear();
                } else {
                    cur += c;
                }
            }
            if (!parts.empty() && parts.size() > 1 &&
                (parts.back() == n.op_type || parts.back().rfind(n.op_type + "_", 0) == 0))
                parts.pop_back();
            std::string joined;
            for (const std::string& p : parts) joined += (joined.empty() ? "" : ".") + p;
            base = sanitize_name(joined);
        }
        std::string op = n.op_type;
        std::transform(op.begin(), op.end(), op.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        return unique(base, op + "_" + std::to_string(layers_.size() + 1));
    }

    // ---- series-parallel recovery ----
    void recover_structure() {
        for (std::size_t i = 0; i < layers_.size(); ++i) {
            const layer& l = layers_[i];
            if (l.kind == lk::concat)
                for (const std::string& in : l.ins) consumers_[in].push_back(static_cast<int>(i));
            else
                consumers_[l.in].push_back(static_cast<int>(i));
        }
        walk_end end;
        top_ = walk(input_name_, 0, end);
        if (!end.output)
            fail_node(*layers_[static_cast<std::size_t>(end.concat)].node,
                      "joins tensors that do not all leave one tensor (not series-parallel)");
        for (const layer& l : layers_)
            if (!l.visited) fail_node(*l.node, "is not on the path from the input to the output");
    }

    // Where a walk stopped: the graph output, or inputs [lo, hi) of Concat `concat`.
    struct walk_end {
        bool output = false;
        int concat = -1, lo = 0, hi = 0;
    };

    // Follows the layers from tensor t until the graph output or a Concat input. Branches that
    // leave one tensor become a concat item: joined by one Concat that reads exactly them, or
    // (torch flattens nested torch.cat calls) a contiguous run of the inputs of a Concat further
    // on, which then ends this walk too.
    std::vector<item> walk(std::string t, int depth, walk_end& end) {
        if (depth > max_nesting) fail("concats are nested more than " + std::to_string(max_nesting) + " deep");
        std::vector<item> items;
        for (;;) {
            if (t == output_name_) {
                if (consumers_.count(t))
                    fail("the graph output '" + t + "' is also read by " + describe(*layers_[static_cast<std::size_t>(consumers_[t][0])].node));
                end = {true, -1, 0, 0};
                return items;
            }
            auto it = consumers_.find(t);
            if (it == consumers_.end() || it->second.empty())
                fail("tensor '" + t + "' is not read by any layer and is not the graph output");
            const std::vector<int> cons = it->second;
            if (cons.size() == 1) {
                layer& l = layers_[static_cast<std::size_t>(cons[0])];
                if (l.kind == lk::concat && l.ins.size() > 1) {  // ends a branch; the caller joins
                    const auto at = std::find(l.ins.begin(), l.ins.end(), t) - l.ins.begin();
                    end = {false, cons[0], static_cast<int>(at), static_cast<int>(at) + 1};
                    return items;
                }
                if (l.visited) fail_node(*l.node, "is reached twice");
                l.visited = true;
                if (l.kind != lk::concat) items.push_back({cons[0], {}, {}});  // a one-input concat is nothing
                t = l.out;
                continue;
            }
            // A fan-out: every branch must end in the same Concat, on a contiguous run of its inputs.
            struct branch {
                walk_end end;
                std::vector<item> items;
            };
            std::vector<branch> branches;
            int join = -1;
            for (int c : cons) {
                layer& l = layers_[static_cast<std::size_t>(c)];
                if (l.kind == lk::concat)
                    fail_node(*l.node, "reads tensor '" + t + "' directly while other layers read it too; a ctnet "
                                       "concat branch starts with a layer");
                if (l.visited) fail_node(*l.node, "is reached twice");
                l.visited = true;
                branch b;
                b.items.push_back({c, {}, {}});
                std::vector<item> rest = walk(l.out, depth + 1, b.end);
                if (b.end.output)
                    fail("the branch from '" + t + "' through " + describe(*l.node) +
                         " reaches the graph output without a Concat (not series-parallel)");
                b.items.insert(b.items.end(), rest.begin(), rest.end());
                if (join >= 0 && b.end.concat != join)
                    fail("the branches leaving tensor '" + t + "' end in different Concats (" +
                         describe(*layers_[static_cast<std::size_t>(join)].node) + " and " +
                         describe(*layers_[static_cast<std::size_t>(b.end.concat)].node) +
                         "); ctnet needs them joined in one");
                join = b.end.concat;
                branches.push_back(std::move(b));
            }
            std::sort(branches.begin(), branches.end(), [](const branch& a, const branch& b) { return a.end.lo < b.end.lo; });
            layer& kl = layers_[static_cast<std::size_t>(join)];
            for (std::size_t i = 1; i < branches.size(); ++i)
                if (branches[i].end.lo != branches[i - 1].end.hi)
                    fail_node(*kl.node, "the branches leaving tensor '" + t + "' are not a contiguous run of its inputs "
                                        "(not series-parallel)");
            item cat;
            for (branch& b : branches) {
                check_branch(kl, b.items);
                cat.branches.push_back(std::move(b.items));
            }
            cat.layer = join;
            items.push_back(std::move(cat));
            const int lo = branches.front().end.lo, hi = branches.back().end.hi;
            if (lo == 0 && hi == static_cast<int>(kl.ins.size())) {  // the Concat joins exactly these branches
                if (kl.visited) fail_node(*kl.node, "is reached twice");
                kl.visited = true;
                t = kl.out;
                continue;
            }
            end = {false, join, lo, hi};  // a nested concat that torch flattened into kl
            return items;
        }
    }

    void check_branch(const layer& k, const std::vector<item>& b) {
        bool producing = false;
        for (const item& i : b)
            if (i.layer >= 0 && !i.branches.empty()) producing = true;
            else if (layers_[static_cast<std::size_t>(i.layer)].kind != lk::flatten) producing = true;
        if (!producing) fail_node(*k.node, "a branch of this Concat has no layer that writes a tensor");
    }

    // ---- code generation ----
    static std::string ratio_text(std::pair<long long, long long> r) {
        return "ctnet::ratio<" + std::to_string(r.first) + ", " + std::to_string(r.second) + ">";
    }
    static std::string window_opts(const window& w, bool pool) {
        std::string s = "ctnet::k<" + std::to_string(w.kh) + (w.kw != w.kh ? ", " + std::to_string(w.kw) : "") + ">";
        if (pool || w.sh != 1 || w.sw != 1)
            s += ", ctnet::stride<" + std::to_string(w.sh) + (w.sw != w.sh ? ", " + std::to_string(w.sw) : "") + ">";
        if (w.pt == w.pb && w.pl == w.pr) {
            if (w.pt || w.pl)
                s += ", ctnet::pad<" + std::to_string(w.pt) + (w.pl != w.pt ? ", " + std::to_string(w.pl) : "") + ">";
        } else {
            s += ", ctnet::pad4<" + std::to_string(w.pt) + ", " + std::to_string(w.pb) + ", " + std::to_string(w.pl) +
                 ", " + std::to_string(w.pr) + ">";
        }
        return s;
    }
    std::string layer_text(const layer& l) const {
        auto named = [&](const std::string& body) { return "ctnet::node<\"" + l.path + "\", " + body + ">"; };
        switch (l.kind) {
            case lk::conv:
                return named("ctnet::conv<" + std::to_string(l.out_s.c) + ", " + window_opts(l.win, false) +
                             (l.bias ? ", ctnet::bias<true>" : "") + ">");
            case lk::bn: {
                const auto r = to_ratio(*l.node, l.eps, "epsilon");
                return named(r == std::pair<long long, long long>{1, 1000} ? "ctnet::batch_norm<>"
                                                                            : "ctnet::batch_norm<" + ratio_text(r) + ">");
            }
            case lk::relu: return "ctnet::relu";
            case lk::max_pool: return "ctnet::max_pool<" + window_opts(l.win, true) + (l.ceil ? ", ctnet::ceil_mode" : "") + ">";
            case lk::avg_pool:
                return "ctnet::avg_pool<" + window_opts(l.win, true) + (l.count_pad ? "" : ", ctnet::count_pad<false>") + ">";
            case lk::gap: return "ctnet::global_avg_pool";
            case lk::flatten: return "ctnet::flatten";
            case lk::linear:
                return named("ctnet::linear<" + std::to_string(l.in_s.c) + ", " + std::to_string(l.out_s.c) +
                             (l.bias ? "" : ", ctnet::bias<false>") + ">");
            case lk::dropout: return "ctnet::dropout<" + ratio_text(to_ratio(*l.node, l.drop, "ratio")) + ">";
            case lk::softmax: return "ctnet::softmax";
            case lk::concat: break;
        }
        return "?";
    }

    std::string seq_text(const std::vector<item>& items, const std::string& indent, std::vector<std::string>& structs,
                         std::set<std::string>& struct_names) {
        std::vector<std::string> parts;
        for (const item& i : items) {
            if (i.branches.empty()) {
                parts.push_back(layer_text(layers_[static_cast<std::size_t>(i.layer)]));
                continue;
            }
            std::vector<std::string> bs;
            for (const auto& b : i.branches) bs.push_back(seq_text(b, "                    ", structs, struct_names));
            const layer& k = layers_[static_cast<std::size_t>(i.layer)];
            std::string sname;  // "/Mixed_5b/Concat" -> "Mixed_5b_Concat": no leading or doubled underscore
            for (char c : k.node->name) {
                const bool ok = std::isalnum(static_cast<unsigned char>(c)) != 0;
                if (ok) sname += c;
                else if (!sname.empty() && sname.back() != '_') sname += '_';
            }
            while (!sname.empty() && sname.back() == '_') sname.pop_back();
            if (sname.empty() || sname.size() > 60 || std::isdigit(static_cast<unsigned char>(sname[0])))
                sname = "concat_" + sname.substr(0, 40);
            std::string unique_name = sname;
            for (int n = 2; !struct_names.insert(unique_name).second; ++n) unique_name = sname + "_" + std::to_string(n);
            std::string def = "// " + describe(*k.node) + ": " + std::to_string(bs.size()) + " branches, output (" +
                              std::to_string(k.out_s.c) + ", " + std::to_string(k.out_s.h) + ", " +
                              std::to_string(k.out_s.w) + ")\nstruct " + unique_name + "\n    : ctnet::concat<";
            for (std::size_t j = 0; j < bs.size(); ++j) def += (j ? ",\n                    " : "") + bs[j];
            def += "> {};\n";
            structs.push_back(def);
            parts.push_back(o_.name + "_blocks::" + unique_name);
        }
        if (parts.size() == 1) return parts[0];
        std::string s = "ctnet::seq<";
        for (std::size_t j = 0; j < parts.size(); ++j) s += (j ? ",\n" + indent + "           " : "") + parts[j];
        return s + ">";
    }

    void collect(const std::vector<item>& items, import_result& r) {
        for (const item& i : items) {
            if (!i.branches.empty()) {
                for (const auto& b : i.branches) collect(b, r);
                continue;
            }
            const layer& l = layers_[static_cast<std::size_t>(i.layer)];
            ++r.layers;
            const auto c_out = static_cast<std::int64_t>(l.out_s.c), c_in = static_cast<std::int64_t>(l.in_s.c);
            auto put = [&](const char* suffix, std::vector<std::int64_t> dims, const std::vector<float>& data) {
                r.tensors.push_back({l.path + suffix, std::move(dims), data, {}, false});
                r.storage += data.size();
            };
            if (l.kind == lk::conv) {
                put(".weight", {c_out, c_in, l.win.kh, l.win.kw}, l.w);
                if (l.bias) put(".bias", {c_out}, l.b);
                r.params += l.w.size() + l.b.size();
                r.macs += l.out_s.size() * static_cast<std::size_t>(c_in) * static_cast<std::size_t>(l.win.kh * l.win.kw);
            } else if (l.kind == lk::linear) {
                put(".weight", {c_out, c_in}, l.w);
                if (l.bias) put(".bias", {c_out}, l.b);
                r.params += l.w.size() + l.b.size();
                r.macs += static_cast<std::size_t>(c_in) * static_cast<std::size_t>(c_out);
            } else if (l.kind == lk::bn) {
                put(".weight", {c_out}, l.w);
                put(".bias", {c_out}, l.b);
                put(".running_mean", {c_out}, l.mean);
                put(".running_var", {c_out}, l.var);
                r.params += 2 * static_cast<std::size_t>(c_out);
            }
        }
    }

    import_result generate() {
        import_result r;
        r.input = input_.s;
        r.output = info_[output_name_].s;
        collect(top_, r);
        std::vector<std::string> structs;
        std::set<std::string> struct_names;
        const std::string body = seq_text(top_, std::string(21, ' '), structs, struct_names);
        const std::string& name = o_.name;
        std::ostringstream h;
        h << "// " << name << ".hpp — generated by `ctnet import` (ctnet::onnx::import_model) from an ONNX graph";
        if (!m_.producer.empty()) h << " written by " << sanitize_name(m_.producer);
        h << " (opset " << m_.opset << "); do not edit.\n"
          << "// Input (" << r.input.c << ", " << r.input.h << ", " << r.input.w << ") -> output ("
          << r.output.c << (r.output.flat() ? ",)" : ", " + std::to_string(r.output.h) + ", " + std::to_string(r.output.w) + ")")
          << "; " << r.layers << " layers, " << r.params << " parameters, " << r.macs << " MACs per sample.\n"
          << "// Weights by name: weights<" << name << ">, io::load_safetensors(\"" << name << ".safetensors\", w).\n"
          << "#pragma once\n\n#include <string_view>\n\n"
          << "#include <ctnet/graph/compose.hpp>\n#include <ctnet/graph/network.hpp>\n"
          << "#include <ctnet/layers/activation.hpp>\n#include <ctnet/layers/batch_norm.hpp>\n"
          << "#include <ctnet/layers/conv.hpp>\n#include <ctnet/layers/linear.hpp>\n#include <ctnet/layers/pool.hpp>\n\n"
          << "namespace " << name << "_blocks {\n\n";
        for (const std::string& s : structs) h << s << "\n";
        h << "}  // namespace " << name << "_blocks\n\n"
          << "struct " << name << "\n    : ctnet::network<ctnet::shape{" << r.input.c << ", " << r.input.h << ", "
          << r.input.w << "},\n";
        h << "                     " << body << "> {\n"
          << "    static constexpr std::string_view name = \"" << name << "\";\n};\n\n"
          << "static_assert(ctnet::output_shape_v<" << name << "> == ctnet::shape{" << r.output.c << ", " << r.output.h
          << ", " << r.output.w << "});\n"
          << "static_assert(ctnet::param_count_v<" << name << "> == " << r.params << "U);\n"
          << "static_assert(ctnet::storage_count_v<" << name << "> == " << r.storage << "U);\n"
          << "static_assert(ctnet::macs_v<" << name << "> == " << r.macs << "U);\n";
        r.header = h.str();
        return r;
    }
};

}  // namespace

std::string sanitize_name(const std::string& s) {
    std::string out;
    for (char c : s) {
        const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
        out += ok ? c : '_';
    }
    // no empty dot-separated part, no leading digit in a part
    std::string clean, part;
    auto flush = [&] {
        if (part.empty()) return;
        if (std::isdigit(static_cast<unsigned char>(part[0]))) part = "_" + part;
        clean += (clean.empty() ? "" : ".") + part;
        part.clear();
    };
    for (char c : out) {
        if (c == '.') flush();
        else part += c;
    }
    flush();
    // trim underscores at both ends (torch's "onnx::Conv_5" -> "onnx__Conv_5")
    return clean;
}

import_result import_model(const model_desc& m, const import_options& o) { return importer{m, o}.run(); }

void write_import(const import_result& r, const std::string& header_path, const std::string& weights_path) {
    std::vector<io::named_tensor> ts;
    for (const tensor_desc& t : r.tensors) ts.push_back({t.name, t.dims, t.data});
    const std::vector<std::uint8_t> weights = io::safetensors_bytes(ts, {{"format", "pt"}, {"producer", "ctnet import"}});
    io::write_file_atomic(weights_path, weights);
    io::write_file_atomic(header_path, std::vector<std::uint8_t>(r.header.begin(), r.header.end()));
}

}  // namespace ctnet::onnx
