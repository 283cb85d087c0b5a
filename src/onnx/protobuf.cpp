// src/onnx/protobuf.cpp — model_desc to and from ONNX bytes, with libonnx's protobuf classes.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include <google/protobuf/io/coded_stream.h>
#include <onnx/onnx_pb.h>

#include <ctnet/core/error.hpp>
#include <ctnet/io/file.hpp>
#include <ctnet/onnx/model.hpp>

namespace ctnet::onnx {

namespace {

using ::onnx::AttributeProto;
using ::onnx::ModelProto;
using ::onnx::TensorProto;
using ::onnx::ValueInfoProto;

[[noreturn]] void fail(const std::string& what, const std::string& msg) { throw error("onnx: " + what + ": " + msg); }

std::size_t checked_count(const std::string& what, const std::string& tensor, const std::vector<std::int64_t>& dims,
                          const parse_limits& lim) {
    if (dims.size() > lim.max_dims)
        fail(what, "tensor '" + tensor + "' has " + std::to_string(dims.size()) + " dimensions, at most " +
                       std::to_string(lim.max_dims) + " are read");
    std::size_t n = 1;
    for (std::int64_t d : dims) {
        if (d < 0 || d > lim.max_dim)
            fail(what, "tensor '" + tensor + "' has dimension " + std::to_string(d) + ", outside [0, " +
                           std::to_string(lim.max_dim) + "]");
        if (d != 0 && n > lim.max_elements / static_cast<std::size_t>(d))
            fail(what, "tensor '" + tensor + "' has more than " + std::to_string(lim.max_elements) + " elements");
        n *= static_cast<std::size_t>(d);
    }
    return n;
}

tensor_desc from_proto(const std::string& what, const TensorProto& t, const parse_limits& lim) {
    tensor_desc out;
    out.name = t.name();
    out.dims.assign(t.dims().begin(), t.dims().end());
    const std::size_t n = checked_count(what, out.name, out.dims, lim);
    if (t.data_location() == ::onnx::TensorProto_DataLocation_EXTERNAL || t.external_data_size() > 0)
        fail(what, "tensor '" + out.name + "' keeps its data in an external file, which ctnet does not read");
    if (t.has_segment()) fail(what, "tensor '" + out.name + "' is segmented, which ctnet does not read");
    const std::string& raw = t.raw_data();
    if (t.data_type() == TensorProto::FLOAT) {
        if (t.has_raw_data()) {
            if (raw.size() != n * 4)
                fail(what, "tensor '" + out.name + "' has " + std::to_string(raw.size()) + " bytes of data but its dims " +
                               "need " + std::to_string(n * 4));
            out.data.resize(n);
            if (n) std::memcpy(out.data.data(), raw.data(), n * 4);
        } else {
            if (static_cast<std::size_t>(t.float_data_size()) != n)
                fail(what, "tensor '" + out.name + "' has " + std::to_string(t.float_data_size()) +
                               " float values but its dims need " + std::to_string(n));
            out.data.assign(t.float_data().begin(), t.float_data().end());
        }
    } else if (t.data_type() == TensorProto::INT64) {
        out.is_int = true;
        if (t.has_raw_data()) {
            if (raw.size() != n * 8)
                fail(what, "tensor '" + out.name + "' has " + std::to_string(raw.size()) + " bytes of data but its dims " +
                               "need " + std::to_string(n * 8));
            out.ints.resize(n);
            if (n) std::memcpy(out.ints.data(), raw.data(), n * 8);
        } else {
            if (static_cast<std::size_t>(t.int64_data_size()) != n)
                fail(what, "tensor '" + out.name + "' has " + std::to_string(t.int64_data_size()) +
                               " int64 values but its dims need " + std::to_string(n));
            out.ints.assign(t.int64_data().begin(), t.int64_data().end());
        }
    } else {
        fail(what, "tensor '" + out.name + "' has data type " + std::to_string(t.data_type()) +
                       "; ctnet reads float32 (1) and int64 (7) tensors only");
    }
    return out;
}

value_desc from_proto(const std::string& what, const ValueInfoProto& v, const parse_limits& lim) {
    value_desc out;
    out.name = v.name();
    if (!v.type().has_tensor_type()) fail(what, "graph input/output '" + out.name + "' is not a tensor");
    const auto& tt = v.type().tensor_type();
    out.is_float = tt.elem_type() == TensorProto::FLOAT;
    if (!tt.has_shape()) return out;  // no dims: checked by the importer
    if (static_cast<std::size_t>(tt.shape().dim_size()) > lim.max_dims)
        fail(what, "graph input/output '" + out.name + "' has " + std::to_string(tt.shape().dim_size()) + " dimensions");
    for (const auto& d : tt.shape().dim()) {
        if (d.has_dim_value()) {
            if (d.dim_value() < 0 || d.dim_value() > lim.max_dim)
                fail(what, "graph input/output '" + out.name + "' has dimension " + std::to_string(d.dim_value()));
            out.dims.push_back(d.dim_value());
        } else {
            out.dims.push_back(-1);
        }
    }
    return out;
}

attribute_desc from_proto(const std::string& what, const AttributeProto& a, const parse_limits& lim) {
    attribute_desc out;
    out.name = a.name();
    switch (a.type()) {
        case AttributeProto::INT: out.type = attribute_desc::kind::i; out.i = a.i(); break;
        case AttributeProto::FLOAT: out.type = attribute_desc::kind::f; out.f = a.f(); break;
        case AttributeProto::INTS:
            out.type = attribute_desc::kind::ints;
            if (static_cast<std::size_t>(a.ints_size()) > 64)
                fail(what, "attribute '" + out.name + "' has " + std::to_string(a.ints_size()) + " values");
            out.ints.assign(a.ints().begin(), a.ints().end());
            break;
        case AttributeProto::STRING: out.type = attribute_desc::kind::s; out.s = a.s(); break;
        case AttributeProto::TENSOR: out.type = attribute_desc::kind::tensor; out.t = from_proto(what, a.t(), lim); break;
        default:
            // Kept by name with no value: the importer refuses it where it matters.
            out.type = attribute_desc::kind::s;
            out.s = "<unsupported attribute type " + std::to_string(static_cast<int>(a.type())) + ">";
            break;
    }
    return out;
}

void to_proto(const tensor_desc& t, TensorProto& p) {
    p.set_name(t.name);
    for (std::int64_t d : t.dims) p.add_dims(d);
    if (t.is_int) {
        p.set_data_type(TensorProto::INT64);
        p.set_raw_data(std::string(reinterpret_cast<const char*>(t.ints.data()), t.ints.size() * 8));
    } else {
        p.set_data_type(TensorProto::FLOAT);
        p.set_raw_data(std::string(reinterpret_cast<const char*>(t.data.data()), t.data.size() * 4));
    }
}

void to_proto(const value_desc& v, ValueInfoProto& p) {
    p.set_name(v.name);
    auto* tt = p.mutable_type()->mutable_tensor_type();
    tt->set_elem_type(TensorProto::FLOAT);
    auto* s = tt->mutable_shape();
    for (std::int64_t d : v.dims) {
        auto* dim = s->add_dim();
        if (d < 0) dim->set_dim_param("N");
        else dim->set_dim_value(d);
    }
}

}  // namespace

model_desc parse_model(std::span<const std::uint8_t> bytes, const std::string& what, const parse_limits& lim) {
    if (bytes.size() > lim.max_bytes)
        fail(what, "the file has " + std::to_string(bytes.size()) + " bytes, at most " + std::to_string(lim.max_bytes) +
                       " are read");
    ModelProto proto;
    google::protobuf::io::CodedInputStream in(bytes.data(), static_cast<int>(bytes.size()));
    in.SetTotalBytesLimit(std::numeric_limits<int>::max());
    in.SetRecursionLimit(64);
    if (!proto.ParseFromCodedStream(&in) || !in.ConsumedEntireMessage())
        fail(what, "not a valid ONNX model (the protobuf does not parse: truncated or not ONNX)");
    if (!proto.has_graph()) fail(what, "the model has no graph");
    model_desc m;
    m.producer = proto.producer_name();
    m.opset = 0;
    for (const auto& o : proto.opset_import())
        if (o.domain().empty() || o.domain() == "ai.onnx") m.opset = o.version();
    const auto& g = proto.graph();
    m.graph_name = g.name();
    if (static_cast<std::size_t>(g.node_size()) > lim.max_nodes)
        fail(what, "the graph has " + std::to_string(g.node_size()) + " nodes, at most " + std::to_string(lim.max_nodes) +
                       " are read");
    std::size_t total = 0;
    for (const TensorProto& t : g.initializer()) {
        m.initializers.push_back(from_proto(what, t, lim));
        total += m.initializers.back().data.size() + m.initializers.back().ints.size();
        if (total > lim.max_elements) fail(what, "the initializers hold more than " + std::to_string(lim.max_elements) +
                                                     " elements");
    }
    std::vector<std::string> init_names;
    for (const tensor_desc& t : m.initializers) init_names.push_back(t.name);
    std::sort(init_names.begin(), init_names.end());
    for (const ValueInfoProto& v : g.input())
        if (!std::binary_search(init_names.begin(), init_names.end(), v.name()))
            m.inputs.push_back(from_proto(what, v, lim));
    for (const ValueInfoProto& v : g.output()) m.outputs.push_back(from_proto(what, v, lim));
    for (const auto& n : g.node()) {
        if (!n.domain().empty() && n.domain() != "ai.onnx")
            fail(what, "node '" + n.name() + "' (" + n.op_type() + ") is in domain '" + n.domain() +
                           "'; ctnet reads the default ONNX domain only");
        if (n.op_type() == "Constant") {  // an initializer by another name
            if (n.output_size() != 1 || n.attribute_size() != 1 || n.attribute(0).name() != "value" ||
                n.attribute(0).type() != AttributeProto::TENSOR)
                fail(what, "node '" + n.name() + "' (Constant): only a 'value' tensor attribute is supported");
            tensor_desc t = from_proto(what, n.attribute(0).t(), lim);
            t.name = n.output(0);
            total += t.data.size() + t.ints.size();
            if (total > lim.max_elements) fail(what, "the constants hold more than " + std::to_string(lim.max_elements) +
                                                         " elements");
            m.initializers.push_back(std::move(t));
            continue;
        }
        node_desc d;
        d.op_type = n.op_type();
        d.name = n.name();
        d.inputs.assign(n.input().begin(), n.input().end());
        d.outputs.assign(n.output().begin(), n.output().end());
        for (const AttributeProto& a : n.attribute()) d.attrs.push_back(from_proto(what, a, lim));
        m.nodes.push_back(std::move(d));
    }
    return m;
}

model_desc read_model(const std::string& path, const parse_limits& lim) {
    const std::vector<std::uint8_t> bytes = io::read_file(path, lim.max_bytes);
    return parse_model(bytes, path, lim);
}

std::vector<std::uint8_t> serialize_model(const model_desc& m) {
    ModelProto proto;
    proto.set_ir_version(8);
    proto.set_producer_name(m.producer);
    auto* op = proto.add_opset_import();
    op->set_domain("");
    op->set_version(m.opset);
    auto* g = proto.mutable_graph();
    g->set_name(m.graph_name);
    for (const tensor_desc& t : m.initializers) to_proto(t, *g->add_initializer());
    for (const value_desc& v : m.inputs) to_proto(v, *g->add_input());
    for (const value_desc& v : m.outputs) to_proto(v, *g->add_output());
    for (const node_desc& n : m.nodes) {
        auto* p = g->add_node();
        p->set_op_type(n.op_type);
        p->set_name(n.name);
        for (const std::string& s : n.inputs) p->add_input(s);
        for (const std::string& s : n.outputs) p->add_output(s);
        for (const attribute_desc& a : n.attrs) {
            auto* pa = p->add_attribute();
            pa->set_name(a.name);
            switch (a.type) {
                case attribute_desc::kind::i: pa->set_type(AttributeProto::INT); pa->set_i(a.i); break;
                case attribute_desc::kind::f: pa->set_type(AttributeProto::FLOAT); pa->set_f(a.f); break;
                case attribute_desc::kind::ints:
                    pa->set_type(AttributeProto::INTS);
                    for (std::int64_t v : a.ints) pa->add_ints(v);
                    break;
                case attribute_desc::kind::s: pa->set_type(AttributeProto::STRING); pa->set_s(a.s); break;
                case attribute_desc::kind::tensor: pa->set_type(AttributeProto::TENSOR); to_proto(a.t, *pa->mutable_t()); break;
            }
        }
    }
    std::string out;
    if (!proto.SerializeToString(&out)) throw error("onnx: the model does not serialize (over 2 GiB?)");
    return {out.begin(), out.end()};
}

void write_model(const model_desc& m, const std::string& path) { io::write_file_atomic(path, serialize_model(m)); }

}  // namespace ctnet::onnx
