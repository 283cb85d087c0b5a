// Image decoding and the ImageNet preprocessing of `ctnet classify` against torchvision 0.14.1 /
// Pillow 9.4, and hand-computed resize and crop cases.
//
// Reference files come from `/usr/bin/python3 tools/image_reference.py DIR`; this file is built
// with -DCTNET_IMAGE_REFERENCE_DIR="\"DIR\"" and linked with -lstb.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <ctnet/io/image.hpp>
#include "check.hpp"
#include <zlib.h>

#ifndef CTNET_IMAGE_REFERENCE_DIR
#error "define CTNET_IMAGE_REFERENCE_DIR (a string literal): the output folder of tools/image_reference.py"
#endif

using ctnet::io::rgb_image;

namespace {

std::string ref(const std::string& name) { return std::string(CTNET_IMAGE_REFERENCE_DIR) + "/" + name; }

// A minimal .npy reader: format 1.x / 2.x, little-endian '<f4' or '|u1', C order.
struct npy {
    std::vector<std::size_t> shape;
    std::string descr;
    std::vector<char> data;

    template <class T>
    std::vector<T> as() const {
        std::vector<T> v(data.size() / sizeof(T));
        std::memcpy(v.data(), data.data(), v.size() * sizeof(T));
        return v;
    }
};

npy read_npy(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f, "cannot open " << path << " (run tools/image_reference.py)");
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    REQUIRE_MESSAGE((bytes.size() >= 10 && std::memcmp(bytes.data(), "\x93NUMPY", 6) == 0), path);
    const auto byte = [&](std::size_t i) { return static_cast<std::size_t>(static_cast<unsigned char>(bytes[i])); };
    const bool v1 = bytes[6] == 1;
    const std::size_t header_len = v1 ? byte(8) | byte(9) << 8
                                      : byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24;
    const std::size_t start = (v1 ? 10 : 12) + header_len;
    REQUIRE(bytes.size() >= start);
    const std::string header(bytes.data() + (v1 ? 10 : 12), header_len);
    npy out;
    const auto descr_at = header.find("'descr': '") + 10;
    out.descr = header.substr(descr_at, header.find('\'', descr_at) - descr_at);
    REQUIRE_MESSAGE(header.find("'fortran_order': False") != std::string::npos, path);
    REQUIRE_MESSAGE((out.descr == "<f4" || out.descr == "|u1"), path << ": " << out.descr);
    std::size_t pos = header.find('(', header.find("'shape'")) + 1, count = 1;
    while (header[pos] != ')') {
        if (header[pos] >= '0' && header[pos] <= '9') {
            std::size_t end = pos;
            out.shape.push_back(std::stoul(header.substr(pos), &end));
            count *= out.shape.back();
            pos += end;
        } else {
            ++pos;
        }
    }
    const std::size_t item = out.descr == "<f4" ? 4 : 1;
    REQUIRE_MESSAGE(bytes.size() - start == count * item, path);
    out.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(start), bytes.end());
    return out;
}

rgb_image read_pixels(const std::string& name) {
    const npy a = read_npy(ref(name));
    REQUIRE(a.descr == "|u1");
    REQUIRE(a.shape.size() == 3);
    REQUIRE(a.shape[2] == 3);
    return {static_cast<int>(a.shape[1]), static_cast<int>(a.shape[0]), a.as<std::uint8_t>()};
}

std::vector<float> read_tensor(const std::string& name) {
    const npy a = read_npy(ref(name));
    REQUIRE(a.descr == "<f4");
    REQUIRE(a.shape == std::vector<std::size_t>{3, 299, 299});
    return a.as<float>();
}

int max_abs_diff(const rgb_image& a, const rgb_image& b) {
    REQUIRE(a.width == b.width);
    REQUIRE(a.height == b.height);
    int m = 0;
    for (std::size_t i = 0; i < a.pixels.size(); ++i) m = std::max(m, std::abs(a.pixels[i] - b.pixels[i]));
    return m;
}

// Infinite on a NaN, an infinity or sizes that differ (tests/check.hpp).
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) { return ctnet::test::max_abs_error(a, b); }

std::vector<float> normalized(const rgb_image& img) {
    std::vector<float> out(std::size_t{3} * img.width * img.height);
    ctnet::io::to_normalized_chw(img, out.data());
    return out;
}

// The message of the ctnet::error that `f` throws ("" if none).
template <class F>
std::string error_of(F f) {
    try {
        f();
    } catch (const ctnet::error& e) {
        return e.what();
    }
    return "";
}

rgb_image image(int w, int h, std::vector<std::uint8_t> pixels) { return {w, h, std::move(pixels)}; }

const char* const png_cases[] = {"landscape_500x375.png", "portrait_375x500.png", "square_299x299.png",
                                 "wide_640x427.png",      "gray_400x301.png",     "rgba_333x250.png",
                                 "palette_345x520.png"};
const char* const jpeg_cases[] = {"landscape_500x375.jpg", "wide_640x427.jpg", "portrait_375x500_progressive.jpg",
                                  "square_299x299_444.jpg", "odd_343x301.jpg", "gray_400x301.jpg"};

}  // namespace

TEST_CASE("resize_shorter_side: a 4x2 image to shorter side 1, by hand") {
    // New size 2x1 (int(1 * 4 / 2) = 2). Horizontal 4 -> 2: scale 2, so the triangle filter is
    // stretched to support 2; output 0 (centre 1.0) reads columns 0..2 at distances 0.5, 0.5, 1.5
    // (in filter units 0.25, 0.25, 0.75), weights 3/7, 3/7, 1/7; output 1 (centre 3.0) reads
    // columns 1..3 with 1/7, 3/7, 3/7. Vertical 2 -> 1: both rows weigh 1/2. Each pass rounds
    // half up to uint8.
    //   R: row 0 (10 20 30 40) -> 120/7 = 17.14 -> 17, 230/7 = 32.86 -> 33
    //      row 1 (50 60 70 80) -> 400/7 = 57.14 -> 57, 510/7 = 72.86 -> 73;  vertical 37, 53
    //   G: rows 0 and 7 -> (0 + 7) / 2 = 3.5 -> 4;   B: 255 stays 255
    std::vector<std::uint8_t> px;
    const int r[2][4] = {{10, 20, 30, 40}, {50, 60, 70, 80}};
    for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 4; ++x) px.insert(px.end(), {std::uint8_t(r[y][x]), std::uint8_t(y * 7), 255});
    const rgb_image out = ctnet::io::resize_shorter_side(image(4, 2, px), 1);
    CHECK(out.width == 2);
    CHECK(out.height == 1);
    CHECK(out.pixels == std::vector<std::uint8_t>{37, 4, 255, 53, 4, 255});
}

TEST_CASE("resize_bilinear: upsampling 2 -> 4 columns, by hand") {
    // Scale 1/2, support 1. Centres 0.25, 0.75, 1.25, 1.75: the outer outputs see one column
    // only (Pillow never extrapolates), the inner ones weigh 3/4 and 1/4.
    // Values 0 and 102: 0, 25.5 -> 26, 76.5 -> 77, 102.
    const rgb_image out = ctnet::io::resize_bilinear(image(2, 1, {0, 0, 0, 102, 102, 102}), 4, 1);
    CHECK(out.pixels == std::vector<std::uint8_t>{0, 0, 0, 26, 26, 26, 77, 77, 77, 102, 102, 102});
}

TEST_CASE("resize_shorter_side: output sizes as torchvision computes them") {
    const auto size_of = [](int w, int h, int s) {
        const rgb_image out = ctnet::io::resize_shorter_side(image(w, h, std::vector<std::uint8_t>(std::size_t(w) * h * 3)), s);
        return std::pair{out.width, out.height};
    };
    CHECK(size_of(500, 375, 342) == std::pair{456, 342});
    CHECK(size_of(375, 500, 342) == std::pair{342, 456});
    CHECK(size_of(299, 299, 342) == std::pair{342, 342});
    CHECK(size_of(640, 427, 342) == std::pair{512, 342});  // 512.59 truncated
    CHECK(size_of(3, 7, 2) == std::pair{2, 4});            // 4.67 truncated
    CHECK(size_of(342, 500, 342) == std::pair{342, 500});  // already there: unchanged
    CHECK(error_of([&] { size_of(1, 1000, 342); }).find("30000") != std::string::npos);
    CHECK(error_of([&] { size_of(4, 4, 0); }).find("shorter side 0") != std::string::npos);
}

TEST_CASE("center_crop: Python's round-half-to-even offsets") {
    // Pixels carry their own coordinates (R = x, G = y, mod 256) so the crop's origin is visible.
    const auto origin = [](int w, int h, int size) {
        std::vector<std::uint8_t> px;
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x) px.insert(px.end(), {std::uint8_t(x), std::uint8_t(y), 0});
        const rgb_image out = ctnet::io::center_crop(image(w, h, px), size);
        REQUIRE(out.width == size);
        REQUIRE(out.height == size);
        return std::pair{int(out.pixels[0]), int(out.pixels[1])};  // (left, top)
    };
    CHECK(origin(342, 342, 299) == std::pair{22, 22});  // 21.5 -> 22
    CHECK(origin(343, 343, 299) == std::pair{22, 22});  // 22 exactly
    CHECK(origin(456, 342, 299) == std::pair{78, 22});  // 78.5 -> 78
    CHECK(origin(300, 302, 299) == std::pair{0, 2});    // 0.5 -> 0, 1.5 -> 2
    CHECK(origin(299, 299, 299) == std::pair{0, 0});
    const std::string e = error_of([&] { origin(298, 400, 299); });
    CHECK(e.find("299") != std::string::npos);
    CHECK(e.find("298 x 400") != std::string::npos);
}

TEST_CASE("to_normalized_chw: planar layout and ImageNet statistics") {
    // 2x1 image: black then white. CHW: channel c holds (pixel0, pixel1).
    std::vector<float> out(6);
    ctnet::io::to_normalized_chw(image(2, 1, {0, 0, 0, 255, 255, 255}), out.data());
    const double mean[3] = {0.485, 0.456, 0.406}, sd[3] = {0.229, 0.224, 0.225};
    for (int c = 0; c < 3; ++c) {
        CHECK(out[2 * c] == doctest::Approx(-mean[c] / sd[c]).epsilon(1e-6));
        CHECK(out[2 * c + 1] == doctest::Approx((1 - mean[c]) / sd[c]).epsilon(1e-6));
    }
}

TEST_CASE("resize_bilinear equals Pillow's BILINEAR on random images") {
    for (int i = 0; i < 7; ++i) {
        const std::string stem = "resize_" + std::to_string(i);
        INFO(stem);
        const rgb_image src = read_pixels(stem + ".src.npy");
        const rgb_image want = read_pixels(stem + ".dst.npy");
        const rgb_image got = ctnet::io::resize_bilinear(src, want.width, want.height);
        CHECK(max_abs_diff(got, want) == 0);
    }
}

TEST_CASE("resize + crop + normalize on PIL's pixels equal torchvision exactly") {
    std::vector<const char*> all(std::begin(png_cases), std::end(png_cases));
    all.insert(all.end(), std::begin(jpeg_cases), std::end(jpeg_cases));
    for (const std::string name : all) {
        INFO(name);
        const rgb_image pil = read_pixels(name + ".pixels.npy");
        const rgb_image resized = ctnet::io::resize_shorter_side(pil, 342);
        CHECK(max_abs_diff(resized, read_pixels(name + ".resized.npy")) == 0);
        const double d = max_abs_diff(normalized(ctnet::io::center_crop(resized, 299)), read_tensor(name + ".tensor.npy"));
        CHECK(d <= 1e-6);
        if (d != 0) MESSAGE(name << ": max |difference| from torchvision " << d);
    }
}

TEST_CASE("PNG: decoding equals PIL and the whole pipeline equals torchvision") {
    for (const std::string name : png_cases) {
        INFO(name);
        const rgb_image img = ctnet::io::load_image(ref(name));
        CHECK(max_abs_diff(img, read_pixels(name + ".pixels.npy")) == 0);
        const double d = max_abs_diff(ctnet::io::imagenet_preprocess(ref(name)), read_tensor(name + ".tensor.npy"));
        CHECK(d <= 1e-6);
    }
}

TEST_CASE("JPEG: stb_image against libjpeg-turbo, within a few levels") {
    // stb_image's IDCT, chroma upsampling and YCbCr conversion round differently from
    // libjpeg-turbo's (PIL). One uint8 level is 1 / 255 / std = 0.017 .. 0.018 after Normalize.
    // Measured with libjpeg-turbo 2.1.5 / stb_image 2.27: at most 3 levels, about 7% of values off
    // by one or more; the limits leave one level of margin and bound the mean as well.
    constexpr int pixel_tolerance = 4;
    constexpr double tensor_tolerance = pixel_tolerance / 255.0 / 0.224 + 1e-6;
    constexpr double mean_tolerance = 0.005;  // a third of one level
    int worst_pixel = 0;
    double worst_tensor = 0;
    for (const std::string name : jpeg_cases) {
        INFO(name);
        const rgb_image img = ctnet::io::load_image(ref(name));
        const rgb_image pil = read_pixels(name + ".pixels.npy");
        const int dp = max_abs_diff(img, pil);
        std::size_t differing = 0;
        for (std::size_t i = 0; i < img.pixels.size(); ++i) differing += img.pixels[i] != pil.pixels[i];
        const std::vector<float> got = ctnet::io::imagenet_preprocess(ref(name));
        const std::vector<float> want = read_tensor(name + ".tensor.npy");
        const double dt = max_abs_diff(got, want);
        double sum = 0;
        for (std::size_t i = 0; i < got.size(); ++i) sum += std::abs(double(got[i]) - double(want[i]));
        const double mean_dt = sum / double(got.size());
        MESSAGE(name << ": decoded pixels max |diff| " << dp << " levels (" << differing << " of "
                     << img.pixels.size() << " values differ); preprocessed tensor max |diff| " << dt
                     << ", mean |diff| " << mean_dt);
        CHECK(mean_dt <= mean_tolerance);
        CHECK(dp <= pixel_tolerance);
        CHECK(dt <= tensor_tolerance);
        worst_pixel = std::max(worst_pixel, dp);
        worst_tensor = std::max(worst_tensor, dt);
    }
    MESSAGE("JPEG worst case: " << worst_pixel << " levels, tensor " << worst_tensor);
}

TEST_CASE("load_image: failures name the file and the reason") {
    const auto fails = [](const std::string& path, const std::string& reason) {
        INFO(path);
        const std::string e = error_of([&] { ctnet::io::load_image(path); });
        CHECK(e.find(path) != std::string::npos);
        CHECK(e.find(reason) != std::string::npos);
        MESSAGE(e);
    };
    fails(ref("does_not_exist.png"), "No such file");
    fails(ref("truncated.png"), "stb_image:");
    fails(ref("truncated.jpg"), "stb_image:");
    fails(ref("not_an_image.txt"), "unknown image type");
    fails(ref("too_wide_30001x1.png"), "30001 x 1");
    CHECK_THROWS_AS(ctnet::io::imagenet_preprocess(ref("truncated.png")), ctnet::error);
}

namespace {

// PNG files built here, byte by byte: chunks with zero CRCs (stb_image does not check them).
void put32(std::vector<std::uint8_t>& v, std::uint32_t x) {
    for (int i = 3; i >= 0; --i) v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}
void chunk(std::vector<std::uint8_t>& png, const char* type, const std::vector<std::uint8_t>& data) {
    put32(png, static_cast<std::uint32_t>(data.size()));
    png.insert(png.end(), type, type + 4);
    png.insert(png.end(), data.begin(), data.end());
    put32(png, 0);
}
std::vector<std::uint8_t> make_png(std::uint32_t w, std::uint32_t h, int depth, int colour, bool interlaced,
                                   const std::vector<std::uint8_t>& filtered) {
    std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    std::vector<std::uint8_t> ihdr;
    put32(ihdr, w);
    put32(ihdr, h);
    ihdr.insert(ihdr.end(), {static_cast<std::uint8_t>(depth), static_cast<std::uint8_t>(colour), 0, 0,
                             static_cast<std::uint8_t>(interlaced)});
    chunk(png, "IHDR", ihdr);
    uLongf n = compressBound(static_cast<uLong>(filtered.size()));
    std::vector<std::uint8_t> z(n);
    REQUIRE(compress(z.data(), &n, filtered.data(), static_cast<uLong>(filtered.size())) == Z_OK);
    z.resize(n);
    chunk(png, "IDAT", z);
    chunk(png, "IEND", {});
    return png;
}

}  // namespace

TEST_CASE("decode_image: PNG data is checked before stb_image inflates it") {
    // An input found by tests/fuzz/fuzz_image: a 10 x 4 gray PNG whose deflate stream runs past
    // its data, which made stb_image 2.27 grow its output buffer to 2-4 GB.
    const std::vector<std::uint8_t> fuzz_oom = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x0a, 0x00, 0x00, 0x00, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x7e, 0x00, 0x73, 0x7c, 0x00, 0x00, 0x00,
        0x1c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x64, 0x64, 0x86, 0x01, 0x16, 0x39, 0x2a, 0x32, 0x19, 0x3f,
        0x32, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x04, 0x08, 0x00, 0x00, 0x00,
        0x00, 0x7e, 0x00, 0x73, 0x7c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x64, 0x64, 0x86, 0x01, 0x16, 0x39,
        0x2a, 0x32, 0x19, 0x3f, 0x32, 0x33, 0x3f, 0x53, 0x85, 0x30, 0x45, 0x08, 0xa8, 0x05, 0x00, 0xfd, 0x83, 0x04,
        0x00, 0x85, 0xce, 0xc0, 0x8e, 0xc5, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0x4e, 0x47, 0x0d, 0x0a,
        0x1a, 0x0a, 0x00, 0x00, 0x00, 0x33, 0x3f, 0x53, 0x85, 0x30, 0x45, 0x08, 0xa8, 0x05, 0x00, 0xfd, 0x83, 0x04,
        0x00, 0x85, 0xce, 0xc0, 0x8e, 0xc5, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0x4e, 0x47, 0x0d, 0x0a,
        0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x04,
        0x08, 0x00, 0x00, 0x00, 0x00, 0x7e, 0x00, 0x73, 0x7c, 0x00, 0x00, 0x00, 0x1c, 0x49, 0x44, 0x41, 0x54, 0x78,
        0x9c, 0x63, 0x64, 0x64, 0x86, 0x01, 0x16, 0x39, 0x2a, 0x32, 0x19, 0x3f, 0x32, 0x33, 0x3f, 0x53, 0x00, 0x00,
        0x00, 0x1c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x64, 0x64, 0x86, 0x01, 0x16, 0x39, 0x2a, 0x32, 0x19,
        0x3f, 0x32, 0x33, 0x3f, 0x53, 0x85, 0x30, 0x45, 0x08, 0xa8, 0x05, 0x00, 0xfd, 0x83, 0x04, 0x00, 0x85, 0xce,
        0xc0, 0x8e, 0xc5, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x82};
    const std::string e = error_of([&] { ctnet::io::decode_image("oom.png", fuzz_oom); });
    MESSAGE(e);
    CHECK(e.find("oom.png") != std::string::npos);
    CHECK(e.find("PNG") != std::string::npos);

    // More data than the declared size needs, and a stream cut short.
    const std::vector<std::uint8_t> rows(3 * (1 + 2), 7);  // 2 x 3 gray: 3 rows of filter byte + 2
    std::vector<std::uint8_t> more(rows.size() + 5000, 0);
    std::copy(rows.begin(), rows.end(), more.begin());
    CHECK(error_of([&] { ctnet::io::decode_image("big.png", make_png(2, 3, 8, 0, false, more)); })
              .find("more than the 9 bytes a 2 x 3 image needs") != std::string::npos);
    std::vector<std::uint8_t> cut = make_png(2, 3, 8, 0, false, rows);
    cut.erase(cut.end() - 12 - 6, cut.end() - 12);  // the IDAT's last 6 bytes (before IEND's 12)
    cut[33 + 3] = static_cast<std::uint8_t>(cut[33 + 3] - 6);  // ... and its length field
    CHECK(error_of([&] { ctnet::io::decode_image("cut.png", cut); }).find("cut.png") != std::string::npos);

    // A pixel budget: a 8192 x 8192 header is refused before anything is decoded.
    const std::string big = error_of([&] { ctnet::io::decode_image("8k.png", make_png(8192, 8192, 16, 6, false, rows), 1 << 20); });
    CHECK(big.find("8192 x 8192") != std::string::npos);
    CHECK(big.find("1048576") != std::string::npos);
}

TEST_CASE("decode_image: valid PNGs still decode, interlaced ones included (hand-made pixels)") {
    // 2 x 3 gray, filter 0 (none): rows {10, 20}, {30, 40}, {50, 60}.
    const rgb_image plain = ctnet::io::decode_image("p.png", make_png(2, 3, 8, 0, false, {0, 10, 20, 0, 30, 40, 0, 50, 60}));
    REQUIRE(plain.width == 2);
    REQUIRE(plain.height == 3);
    for (int i = 0; i < 6; ++i)
        for (int c = 0; c < 3; ++c) CHECK(plain.pixels[static_cast<std::size_t>(i) * 3 + c] == 10 * (i + 1));
    // 3 x 3 gray, Adam7: pass 1 holds (0,0); 4 (2,0); 5 (0,2) (2,2); 6 (1,0) (1,2); 7 row 1.
    // Each pass row starts with its filter byte; the pixel at (x, y) has the value 10 * (3y + x + 1).
    const std::vector<std::uint8_t> adam7 = {0, 10,  0, 30,  0, 70, 90,  0, 20, 0, 80,  0, 40, 50, 60};
    const rgb_image inter = ctnet::io::decode_image("i.png", make_png(3, 3, 8, 0, true, adam7));
    REQUIRE(inter.width == 3);
    for (int i = 0; i < 9; ++i) CHECK(inter.pixels[static_cast<std::size_t>(i) * 3] == 10 * (i + 1));
}
