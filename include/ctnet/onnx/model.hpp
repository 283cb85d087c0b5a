// ctnet/onnx/model.hpp — a neutral, protobuf-free description of an ONNX model.
//
//   ctnet::onnx::model_desc m = ctnet::onnx::parse_model(bytes);    // ONNX bytes -> description (ctnet::onnx)
//   std::vector<std::uint8_t> b = ctnet::onnx::serialize_model(m);  // description -> ONNX bytes
//
// What export.hpp builds from a network type, and what the importer reads: one graph of nodes
// (op type, name, tensor names in and out, attributes) over float initializers. Only what ctnet
// imports and exports is represented: float32 and int64 tensors, int / float / ints / string /
// tensor attributes. Constant nodes become initializers when parsed.
// Requires: nothing (plain data). The compiled part (link ctnet::onnx) converts to and from
// libonnx's protobuf classes.
// Guarantees: parse_model never crashes on hostile bytes: it throws ctnet::error naming what is
// wrong (truncated file, a tensor whose data does not match its dims, dims past the limits below).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ctnet::onnx {

struct tensor_desc {
    std::string name;
    std::vector<std::int64_t> dims;
    std::vector<float> data;          // float32 tensors
    std::vector<std::int64_t> ints;   // int64 tensors (e.g. Reshape's target shape)
    bool is_int = false;
};

struct attribute_desc {
    enum class kind : unsigned char { i, f, ints, s, tensor };
    std::string name;
    kind type = kind::i;
    std::int64_t i = 0;
    float f = 0.0F;
    std::vector<std::int64_t> ints;
    std::string s;
    tensor_desc t;  // kind::tensor
};

struct node_desc {
    std::string op_type;
    std::string name;
    std::vector<std::string> inputs;   // "" for an absent optional input
    std::vector<std::string> outputs;
    std::vector<attribute_desc> attrs;

    [[nodiscard]] const attribute_desc* attr(std::string_view n) const {
        for (const attribute_desc& a : attrs)
            if (a.name == n) return &a;
        return nullptr;
    }
};

// A graph input or output: float32, dims (-1 for a symbolic dimension, e.g. the batch).
struct value_desc {
    std::string name;
    std::vector<std::int64_t> dims;
    bool is_float = true;
};

struct model_desc {
    std::string graph_name = "ctnet";
    std::string producer = "ctnet";
    std::int64_t opset = 13;
    std::vector<value_desc> inputs;    // initializers excluded
    std::vector<value_desc> outputs;
    std::vector<node_desc> nodes;      // in the file's order (export: execution order)
    std::vector<tensor_desc> initializers;
};

// Limits parse_model enforces on untrusted files.
struct parse_limits {
    std::size_t max_bytes = (std::size_t{1} << 31) - 1;  // protobuf's own limit
    std::size_t max_nodes = 100000;
    std::size_t max_dims = 8;                            // rank of any tensor
    std::int64_t max_dim = std::int64_t{1} << 31;        // any one dimension
    std::size_t max_elements = std::size_t{1} << 30;     // elements of one tensor
};

// Parses ONNX bytes (a ModelProto). Throws ctnet::error; `what` names the file in messages.
model_desc parse_model(std::span<const std::uint8_t> bytes, const std::string& what = "model.onnx",
                       const parse_limits& limits = {});
model_desc read_model(const std::string& path, const parse_limits& limits = {});

// Serializes a description as ONNX bytes (ir_version 8, the default domain at `opset`).
std::vector<std::uint8_t> serialize_model(const model_desc& m);
// Writes serialize_model(m) to path atomically.
void write_model(const model_desc& m, const std::string& path);

}  // namespace ctnet::onnx
