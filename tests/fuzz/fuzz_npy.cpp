// libFuzzer target: any bytes as a .npy file.
#include <cstdint>
#include <vector>

#include <ctnet/io/npy.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const ctnet::io::npy_array a = ctnet::io::parse_npy("fuzz", std::vector<std::uint8_t>(data, data + size));
        std::size_t count = 1;
        for (std::size_t d : a.shape) count *= d;
        if (count != a.data.size()) __builtin_trap();  // the parser's promise
    } catch (const ctnet::error&) {
    }
    return 0;
}
