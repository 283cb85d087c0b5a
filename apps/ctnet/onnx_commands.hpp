// apps/ctnet/onnx_commands.hpp — `ctnet import` and `ctnet export` (onnx_commands.cpp, built when
// ctnet::onnx is: CTNET_WITH_ONNX). main.cpp parses the options and calls these.
#pragma once

#include <string>

namespace onnx_cli {

// ctnet import MODEL.onnx --name NAME -o NAME.hpp --weights NAME.safetensors
struct import_args {
    std::string onnx_path;     // the ONNX file to read
    std::string name;          // C++ name of the generated network type
    std::string header_out;    // the header to write
    std::string weights_out;   // the safetensors file to write (parameters by the ONNX graph's names)
};
int import_onnx(const import_args& a);

// ctnet export --model MODEL --weights W.safetensors -o MODEL.onnx [--fold-bn] [--batch N]
struct export_args {
    std::string model;         // inception_v3 | fashion | fashion_wide | ...
    std::string weights_path;  // safetensors; empty: seeded random weights (--seed)
    std::string output;        // the ONNX file to write
    bool fold_bn = false;      // batch norm folded into the convolutions
    int batch = 1;             // the static batch dimension of the ONNX input
    unsigned long long seed = 42;
};
int export_onnx(const export_args& a);

}  // namespace onnx_cli
