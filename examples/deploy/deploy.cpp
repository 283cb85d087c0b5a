// A self-contained deployment: the model is a type, its weights are inside this executable
// (embedded at build time with the assembler's .incbin), so it needs no file at run time.
//   deploy                   classifies the built-in sample
//   deploy --stdin < x.txt   classifies 784 whitespace-separated floats read from standard input
#include <cstdio>
#include <iostream>
#include <vector>

#include <ctnet/io/safetensors.hpp>

#include "model.hpp"

extern "C" const unsigned char ctnet_embedded_weights[];
extern "C" const unsigned char ctnet_embedded_weights_end[];

int main(int argc, char**) {
    try {
        static ctnet::weights<deploy::model> w;
        ctnet::io::load_safetensors(
            ctnet::io::safetensors_file{"embedded weights",
                                        {ctnet_embedded_weights, ctnet_embedded_weights_end}},
            w);
        ctnet::runner<deploy::model> run{w};
        std::vector<float> x = deploy::sample();
        if (argc > 1) {  // any argument: read the image from standard input
            for (float& v : x)
                if (!(std::cin >> v)) throw ctnet::error("deploy: standard input ended before 784 numbers");
        }
        for (float v : run(x)) std::printf("%.6f\n", v);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
