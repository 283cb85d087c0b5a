// libFuzzer target: any bytes as an ONNX file, parsed (libonnx's protobuf classes) and imported
// (checks, series-parallel recovery, code generation). Built by run_fuzzers.sh with the sources of
// ctnet::onnx compiled in (a unity build) and -lonnx_proto -lprotobuf.
#include <cstdint>
#include <span>

#include "../../src/onnx/import.cpp"
#include "../../src/onnx/protobuf.cpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const ctnet::onnx::model_desc m = ctnet::onnx::parse_model(std::span<const std::uint8_t>(data, size), "fuzz.onnx");
        const ctnet::onnx::import_result r = ctnet::onnx::import_model(m, {.name = "fuzz_net"});
        if (r.header.empty() || r.layers <= 0) __builtin_trap();  // the importer's promise
    } catch (const ctnet::error&) {
    }
    return 0;
}
