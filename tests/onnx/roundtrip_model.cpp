// tests/onnx/roundtrip_model.cpp — one generated header (CTNET_ONNX_HEADER, type CTNET_ONNX_NET),
// compiled here and registered for test_onnx.cpp.
#include CTNET_ONNX_HEADER

#include <ctnet/cpu/runner.hpp>
#include <ctnet/io/safetensors.hpp>
#include <ctnet/onnx/export.hpp>

#include "roundtrip.hpp"

namespace {

using net = CTNET_ONNX_NET;

void load(const std::string& weights_path, ctnet::weights<net>& w) {
    const ctnet::io::load_report rep = ctnet::io::load_safetensors(weights_path, w);
    if (rep.loaded != ctnet::weights<net>::tensors().size() || !rep.unused.empty())
        throw ctnet::error("roundtrip: " + weights_path + " does not hold exactly the tensors of the generated type");
}

onnx_test::model_run run(const std::string& weights_path, const std::vector<float>& input) {
    ctnet::weights<net> w;
    load(weights_path, w);
    ctnet::runner<net> r{w};
    return {r(input)};
}

void export_onnx(const std::string& weights_path, const std::string& onnx_path, int n) {
    ctnet::weights<net> w;
    load(weights_path, w);
    ctnet::onnx::export_model(w, onnx_path, {.batch = n});
}

#define CTNET_ONNX_STR2(x) #x
#define CTNET_ONNX_STR(x) CTNET_ONNX_STR2(x)
const bool registered = onnx_test::add_model({CTNET_ONNX_STR(CTNET_ONNX_NET), ctnet::param_count_v<net>, ctnet::macs_v<net>,
                                              ctnet::storage_count_v<net>, ctnet::input_shape_v<net>,
                                              ctnet::output_shape_v<net>, &run, &export_onnx});

}  // namespace
