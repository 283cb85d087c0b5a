// libFuzzer target: any bytes as an image file, decoded and preprocessed as `ctnet classify` does.
// The pixel budget is 4 Mpx rather than the default 64: a JPEG header may declare 64 Mpx that
// stb_image then decodes from padding: seconds and hundreds of MB per input, which would slow
// the search down and could pass -timeout.
#include <cstdint>
#include <vector>

#include <ctnet/io/image.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const ctnet::io::rgb_image img = ctnet::io::decode_image("fuzz", std::vector<std::uint8_t>(data, data + size), 1 << 22);
        if (img.pixels.size() != static_cast<std::size_t>(img.width) * img.height * 3) __builtin_trap();
        if (img.width <= 2000 && img.height <= 2000) {  // keep each run short
            const ctnet::io::rgb_image small = ctnet::io::resize_shorter_side(img, 16);
            if (small.width >= 8 && small.height >= 8) static_cast<void>(ctnet::io::center_crop(small, 8));
        }
    } catch (const ctnet::error&) {
    }
    return 0;
}
