// ctnet/onnx/import.hpp — ONNX to a ctnet network type (C++ source) and its weights.
//
//   auto r = ctnet::onnx::import_model(ctnet::onnx::read_model("net.onnx"), {.name = "my_net"});
//   ctnet::onnx::write_import(r, "my_net.hpp", "my_net.safetensors");
//   // then: #include "my_net.hpp"; weights<my_net> w; io::load_safetensors("my_net.safetensors", w);
//
// The graph is recovered as ctnet's seq / concat structure (series-parallel: the branches that
// leave one tensor end in one Concat on channels) and written as a header that defines
// `struct NAME : ctnet::network<shape{C, H, W}, seq<...>>`, with static_asserts on its output
// shape, parameter count and MACs. Layers with parameters become node<"PATH", ...>, PATH taken
// from the ONNX initializer names (torch's state_dict paths) or node names, sanitised.
// Supported ops: Conv (group 1, dilation 1, explicit pads), BatchNormalization (inference),
// Relu, MaxPool (ceil_mode), AveragePool (count_include_pad), GlobalAveragePool, Concat (axis 1),
// Flatten (axis 1) / Reshape to (N, -1), Gemm, MatMul (+ Add), Dropout, Softmax (last axis),
// Identity. See docs/onnx.md.
// Requires: link ctnet::onnx. Guarantees: anything else (another op, attribute, topology, a
// hostile file) throws ctnet::error naming the node, its op and why; nothing is written then.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/shape.hpp"
#include "model.hpp"

namespace ctnet::onnx {

struct import_options {
    std::string name = "imported_net";  // the C++ type name: [A-Za-z_][A-Za-z0-9_]*
    int max_ops = 4000;                  // layers in one network (compile time grows with them)
};

struct import_result {
    std::string header;               // the C++ header text
    std::vector<tensor_desc> tensors; // parameters by ctnet path ("conv1.weight"), ctnet's shapes
    shape input{}, output{};
    std::size_t params = 0, storage = 0, macs = 0;
    int layers = 0;
};

// Recovers the structure and generates the header; throws ctnet::error on anything unsupported.
import_result import_model(const model_desc& m, const import_options& o);

// Writes the header and the weights (safetensors, F32) — both, or neither when either fails
// before writing (each file is written atomically).
void write_import(const import_result& r, const std::string& header_path, const std::string& weights_path);

// A C++ identifier / ctnet node name from any text: [A-Za-z0-9_.], no leading digit, no empty
// dot-separated part; "" when nothing usable is left.
std::string sanitize_name(const std::string& s);

}  // namespace ctnet::onnx
