// tests/onnx/onnx_tool.cpp — a small driver for `ctnet import` / `ctnet export` (onnx_commands.cpp),
// so that the ONNX tests do not depend on the ctnet tool's command line.
//   onnx_tool import MODEL.onnx --name NAME -o OUT.hpp --weights OUT.safetensors
//   onnx_tool export --model M [--weights W] -o OUT.onnx [--fold-bn] [--batch N] [--seed S]
//   onnx_tool run --model M --seed S --input X.npy --output Y.npy   ctnet's logits (reference
//             kernels) with the seeded weights `export` uses without --weights
//   onnx_tool compare GOT.npy WANT.npy MAX_RELATIVE     tests/check.hpp's relative_error; exit 1 above
#include <cstdio>
#include <cstdlib>
#include <string>

#include <ctnet/ctnet.hpp>
#include <ctnet/io/npy.hpp>

#include "check.hpp"
#include "fashion_net.hpp"
#include "onnx_commands.hpp"

namespace {

template <class Net>
int run_model(unsigned long long seed, const std::string& in, const std::string& out) {
    ctnet::weights<Net> w;
    ctnet::init_seeded(w, seed, true);
    const ctnet::io::npy_array x = ctnet::io::read_npy(in);
    ctnet::runner<Net> run{w};
    const std::vector<float> y = run(x.data);
    const std::size_t k = ctnet::output_shape_v<Net>.size();
    ctnet::io::write_npy(out, {y.size() / k, k}, y.data());
    return 0;
}

int run_command(const std::string& model, unsigned long long seed, const std::string& in, const std::string& out) {
    using v3 = ctnet::models::inception_v3<1000, 299, ctnet::models::inception_options{.aux_logits = false}>;
    if (model == "inception_v3") return run_model<v3>(seed, in, out);
    if (model == "fashion") return run_model<fashion::fashion_net<>>(seed, in, out);
    if (model == "fashion_wide") return run_model<fashion::fashion_net<fashion::fashion_options{.wide = true}>>(seed, in, out);
    std::fprintf(stderr, "onnx_tool run: unknown model %s\n", model.c_str());
    return 2;
}

int compare(const std::string& got, const std::string& want, double bound) {
    const ctnet::io::npy_array g = ctnet::io::read_npy(got), w = ctnet::io::read_npy(want);
    const double e = g.shape == w.shape ? ctnet::test::relative_error(g.data, w.data) : 1.0 / 0.0;
    std::printf("compare %s with %s: relative error %.3g (max |got - want| / max |want|, bound %.3g)\n", got.c_str(),
                want.c_str(), e, bound);
    return e <= bound ? 0 : 1;
}

}  // namespace

namespace {
int usage() {
    std::fprintf(stderr, "usage: onnx_tool import MODEL.onnx --name NAME -o OUT.hpp --weights OUT.safetensors\n"
                         "       onnx_tool export --model M [--weights W] -o OUT.onnx [--fold-bn] [--batch N] [--seed S]\n");
    return 2;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return usage();
    const std::string cmd = argv[1];
    auto value = [&](int& i) -> std::string {
        if (i + 1 >= argc) {
            std::fprintf(stderr, "onnx_tool: %s needs a value\n", argv[i]);
            std::exit(2);
        }
        return argv[++i];
    };
    if (cmd == "import") {
        onnx_cli::import_args a;
        for (int i = 2; i < argc; ++i) {
            const std::string s = argv[i];
            if (s == "--name") a.name = value(i);
            else if (s == "-o") a.header_out = value(i);
            else if (s == "--weights") a.weights_out = value(i);
            else if (a.onnx_path.empty() && s[0] != '-') a.onnx_path = s;
            else return usage();
        }
        if (a.onnx_path.empty() || a.name.empty() || a.header_out.empty() || a.weights_out.empty()) return usage();
        return onnx_cli::import_onnx(a);
    }
    if (cmd == "export") {
        onnx_cli::export_args a;
        for (int i = 2; i < argc; ++i) {
            const std::string s = argv[i];
            if (s == "--model") a.model = value(i);
            else if (s == "--weights") a.weights_path = value(i);
            else if (s == "-o") a.output = value(i);
            else if (s == "--fold-bn") a.fold_bn = true;
            else if (s == "--batch") a.batch = std::atoi(value(i).c_str());
            else if (s == "--seed") a.seed = std::strtoull(value(i).c_str(), nullptr, 10);
            else return usage();
        }
        if (a.model.empty() || a.output.empty()) return usage();
        return onnx_cli::export_onnx(a);
    }
    try {
        if (cmd == "run" && argc == 10) {
            std::string model, in, out;
            unsigned long long seed = 42;
            for (int i = 2; i + 1 < argc; i += 2) {
                const std::string k = argv[i], v = argv[i + 1];
                if (k == "--model") model = v;
                else if (k == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
                else if (k == "--input") in = v;
                else if (k == "--output") out = v;
                else return usage();
            }
            return run_command(model, seed, in, out);
        }
        if (cmd == "compare" && argc == 5) return compare(argv[2], argv[3], std::strtod(argv[4], nullptr));
    } catch (const ctnet::error& e) {
        std::fprintf(stderr, "onnx_tool %s: %s\n", cmd.c_str(), e.what());
        return 1;
    }
    return usage();
}
