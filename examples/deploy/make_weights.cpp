// Build step of the deployment example: writes the model's weights as safetensors.
//   make_weights OUT.safetensors            (seeded; a real project exports trained weights)
//   make_weights IN.safetensors --logits    prints the logits of the sample, from the file
//   make_weights --sample                   prints the sample: 784 numbers for deploy --stdin
#include <cstdio>
#include <string_view>

#include <ctnet/io/safetensors.hpp>

#include "model.hpp"

int main(int argc, char** argv) {
    try {
        if (argc < 2) {
            std::fputs("usage: make_weights FILE [--logits] | make_weights --sample\n", stderr);
            return 2;
        }
        if (std::string_view{argv[1]} == "--sample") {
            for (float v : deploy::sample()) std::printf("%.9g\n", static_cast<double>(v));
            return 0;
        }
        ctnet::weights<deploy::model> w;
        if (argc > 2 && std::string_view{argv[2]} == "--logits") {
            ctnet::io::load_safetensors(argv[1], w);
            ctnet::runner<deploy::model> run{w};
            for (float v : run(deploy::sample())) std::printf("%.6f\n", v);
            return 0;
        }
        ctnet::init_seeded(w, 2015, true);
        ctnet::io::save_safetensors(argv[1], w);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
