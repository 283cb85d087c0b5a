// tests/onnx/roundtrip.hpp — the generated network types, each compiled in its own translation
// unit (roundtrip_model.cpp), registered by name for test_onnx.cpp.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <ctnet/core/shape.hpp>

namespace onnx_test {

struct model_run {
    std::vector<float> logits;
};

struct model_entry {
    std::string name;
    std::size_t params = 0, macs = 0, storage = 0;
    ctnet::shape input{}, output{};
    // Loads the weights (every tensor must match by name and shape) and runs the reference kernels.
    model_run (*run)(const std::string& weights, const std::vector<float>& input) = nullptr;
    // Loads the weights and writes the type back out as ONNX (ctnet::onnx::export_model), batch n.
    void (*export_onnx)(const std::string& weights, const std::string& onnx_path, int n) = nullptr;
};

std::vector<model_entry>& registry();
bool add_model(const model_entry& e);
const model_entry* find_model(const std::string& name);

}  // namespace onnx_test
