// apps/ctnet/onnx_commands.cpp — `ctnet import` and `ctnet export` over ctnet::onnx.
#include "onnx_commands.hpp"

#include <cstdio>
#include <string>

#include <ctnet/ctnet.hpp>
#include <ctnet/io/safetensors.hpp>
#include <ctnet/onnx/export.hpp>
#include <ctnet/onnx/import.hpp>

#include "fashion_net.hpp"

namespace onnx_cli {

namespace {

using namespace ctnet;

// The aux head is training-only and never exported; a weights file with or without it loads.
using inception_v3_eval = models::inception_v3<1000, 299, models::inception_options{.aux_logits = false}>;
using fashion_wide_net = fashion::fashion_net<fashion::fashion_options{.wide = true}>;

template <class Net>
int export_as(const export_args& a, const char* name, std::string_view ignore_prefix) {
    weights<Net> w;
    if (a.weights_path.empty()) init_seeded(w, a.seed, true);
    else io::load_safetensors(a.weights_path, w, {.ignore_prefix = ignore_prefix});
    const onnx::model_desc m = onnx::describe(w, {.fold_bn = a.fold_bn, .batch = a.batch, .graph_name = name});
    onnx::write_model(m, a.output);
    std::printf("wrote %s: %s, %zu nodes, %zu initializers, batch norm %s, batch %s\n", a.output.c_str(), name,
                m.nodes.size(), m.initializers.size(), a.fold_bn ? "folded" : "kept",
                a.batch > 0 ? std::to_string(a.batch).c_str() : "symbolic");
    return 0;
}

}  // namespace

int import_onnx(const import_args& a) {
    try {
        const ctnet::onnx::model_desc m = ctnet::onnx::read_model(a.onnx_path);
        const ctnet::onnx::import_result r = ctnet::onnx::import_model(m, {.name = a.name});
        ctnet::onnx::write_import(r, a.header_out, a.weights_out);
        std::printf("wrote %s and %s: %s, input (%d, %d, %d), %d layers, %zu parameters, %zu MACs\n", a.header_out.c_str(),
                    a.weights_out.c_str(), a.name.c_str(), r.input.c, r.input.h, r.input.w, r.layers, r.params, r.macs);
        return 0;
    } catch (const ctnet::error& e) {
        std::fprintf(stderr, "ctnet import: %s\n", e.what());
        return 1;
    }
}

int export_onnx(const export_args& a) {
    try {
        if (a.batch < 0) throw ctnet::error("--batch must be positive (or 0 for a symbolic batch)");
        if (a.model == "inception_v3") return export_as<inception_v3_eval>(a, "inception_v3", "AuxLogits.");
        if (a.model == "fashion") return export_as<fashion::fashion_net<>>(a, "fashion", "");
        if (a.model == "fashion_wide") return export_as<fashion_wide_net>(a, "fashion_wide", "");
        std::fprintf(stderr, "ctnet export: unknown model '%s' (known: inception_v3, fashion, fashion_wide)\n",
                     a.model.c_str());
        return 2;
    } catch (const ctnet::error& e) {
        std::fprintf(stderr, "ctnet export: %s\n", e.what());
        return 1;
    }
}

}  // namespace onnx_cli
