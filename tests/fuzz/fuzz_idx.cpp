// libFuzzer target: any bytes as an IDX file, plain and through gunzip. gunzip's limit is 64 KiB
// here, so that inputs of a hundred bytes reach it (deflate expands up to 1032:1); the check is the
// same code as with the default 1 GiB.
#include <cstdint>
#include <span>
#include <vector>

#include <ctnet/io/idx.hpp>

namespace {

constexpr std::size_t gunzip_limit = std::size_t{1} << 16;

void check(const ctnet::io::idx_array& a) {
    std::size_t count = 1;
    for (const int d : a.dims) {
        if (d < 1) __builtin_trap();
        count *= static_cast<std::size_t>(d);
    }
    if (a.dims.empty() || a.dims.size() > 4 || count != a.data.size()) __builtin_trap();  // the parser's promise
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::uint8_t> bytes{data, size};
    try {
        check(ctnet::io::parse_idx("fuzz", bytes));
    } catch (const ctnet::error&) {
    }
    try {
        const std::vector<std::uint8_t> plain = ctnet::io::gunzip("fuzz.gz", bytes, gunzip_limit);
        if (plain.size() > gunzip_limit) __builtin_trap();
        check(ctnet::io::parse_idx("fuzz.gz", plain));
    } catch (const ctnet::error&) {
    }
    return 0;
}
