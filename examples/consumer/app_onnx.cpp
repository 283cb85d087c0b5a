// A user's program on ctnet::onnx (the compiled ONNX import/export library, over libonnx and
// protobuf): a one-node model description through ONNX bytes and back. Exits 1 on a mismatch.
#include <cstdio>
#include <cstdint>
#include <vector>

#include <ctnet/core/error.hpp>
#include <ctnet/onnx/model.hpp>

int main() {
    namespace onnx = ctnet::onnx;
    onnx::model_desc m;
    m.graph_name = "consumer";
    onnx::value_desc x, y;
    x.name = "x";
    x.dims = {1, 4};
    y.name = "y";
    y.dims = {1, 4};
    m.inputs.push_back(x);
    m.outputs.push_back(y);
    onnx::node_desc relu;
    relu.op_type = "Relu";
    relu.name = "relu";
    relu.inputs = {"x"};
    relu.outputs = {"y"};
    m.nodes.push_back(relu);
    try {
        const std::vector<std::uint8_t> bytes = onnx::serialize_model(m);
        const onnx::model_desc back = onnx::parse_model(bytes, "consumer.onnx");
        const bool same = back.graph_name == "consumer" && back.nodes.size() == 1 && back.nodes[0].op_type == "Relu" &&
                          back.inputs.size() == 1 && back.inputs[0].dims == x.dims;
        std::printf("consumer (onnx): %zu bytes of ONNX, %s\n", bytes.size(), same ? "read back" : "did NOT read back");
        return same ? 0 : 1;
    } catch (const ctnet::error& e) {
        std::printf("consumer (onnx): %s\n", e.what());
        return 1;
    }
}
