// libFuzzer target: any bytes as a safetensors file, loaded into a small model. The only
// acceptable failure is ctnet::error; a crash, a sanitizer report or another exception is a bug.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <ctnet/ctnet.hpp>
#include <ctnet/io/safetensors.hpp>

using namespace ctnet;
using net = network<shape{2, 4, 4}, seq<node<"conv", conv<3, k<3>>>, node<"bn", batch_norm<>>, relu, global_avg_pool,
                                        flatten, node<"fc", linear<3, 2>>>>;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static weights<net> w;
    try {
        io::load_safetensors(io::safetensors_file{"fuzz", std::vector<std::uint8_t>(data, data + size)}, w,
                             {.allow_unused = (size % 2) == 1});
    } catch (const error&) {
    }
    return 0;
}
