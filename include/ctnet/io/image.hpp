// ctnet/io/image.hpp — image decoding and torchvision's ImageNet preprocessing, bit-exact.
//
// What `ctnet classify` feeds Inception v3 is what torchvision 0.14.1 computes on a PIL image:
//   Compose([Resize(342), CenterCrop(299), ToTensor(),
//            Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
// applied to PIL.Image.open(path).convert("RGB").
//
// Requires: Debian's libstb-dev for decoding and zlib for checking PNG data first; link with
// `-lstb -lz` (the CMake target ctnet::io does). Debian's compiled stb_image keeps this header
// header-only: nobody has to define STB_IMAGE_IMPLEMENTATION.
// Guarantees:
//   - load_image decodes JPEG and PNG (and whatever else stb_image reads) to 8-bit RGB; gray is
//     replicated and alpha dropped, as PIL's convert("RGB"). PNG pixels equal PIL's exactly; JPEG
//     pixels may differ from libjpeg-turbo's by a few levels (another IDCT / colour conversion).
//   - resize_bilinear / resize_shorter_side equal Pillow 9.4's Image.resize(..., BILINEAR)
//     byte for byte (same coefficients, same fixed-point arithmetic, same pass order).
//   - center_crop and to_normalized_chw equal torchvision's CenterCrop, ToTensor and Normalize
//     bit for bit (the same float32 operations in the same order).
//   - every failure on user input throws ctnet::error naming the file or argument and the values.
// Length: about 410 lines: decoding with its hostile-input checks, then Pillow's fixed-point
// resampling and torchvision's crop and normalisation, each rounding step commented; they are
// one pipeline, tested end to end against Pillow, and read best in order.
#pragma once

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <stb/stb_image.h>
#include <zlib.h>

#include "../core/error.hpp"
#include "file.hpp"

namespace ctnet::io {

// 8-bit RGB, rows top to bottom, pixels interleaved (HWC): pixels[(y * width + x) * 3 + c].
struct rgb_image {
    int width = 0;
    int height = 0;
    std::vector<std::uint8_t> pixels;
};

// Larger sides are refused before decoding: a 30000 x 30000 RGB image is already 2.7 GB.
inline constexpr int max_image_side = 30000;
// The default pixel budget of decode_image / load_image: 64 Mpx, 192 MB of RGB. Decoding needs
// more than the result while it runs: stb_image keeps the inflated PNG data (up to 8 bytes a pixel
// for 16-bit RGBA), the decoded image at its own depth and the 8-bit RGB copy alive together, so a
// file of a few kilobytes that declares 64 Mpx of 16-bit RGBA makes the decoder allocate about
// 1.3 GB before it finds the data missing. A service decoding untrusted uploads passes a smaller
// budget (peak memory is about 20 bytes per allowed pixel).
inline constexpr long long max_image_pixels = 1LL << 26;

namespace detail {

inline void check_image(const rgb_image& img, const char* fn) {
    if (img.width <= 0 || img.height <= 0 ||
        img.pixels.size() != static_cast<std::size_t>(img.width) * img.height * 3) {
        throw error(std::string(fn) + ": image is " + std::to_string(img.width) + " x " +
                    std::to_string(img.height) + " with " + std::to_string(img.pixels.size()) +
                    " bytes; expected a non-empty image of width * height * 3 bytes");
    }
}

// stb_image 2.27 (Debian's) reads zero bits once a PNG's deflate stream runs past the end of its
// data, and with some Huffman tables those decode as back-references forever: a 150-byte PNG made
// it grow its output buffer to 4 GB (found by tests/fuzz/fuzz_image). So a PNG's image data is
// inflated here first with zlib, into no buffer at all, and must end (Z_STREAM_END, checksum
// included) within the bytes its header's size needs; only then is stb_image given the file.
// A file that is not a PNG, or whose chunk layout stb_image would reject anyway, passes through.
inline void check_png_stream(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    static constexpr std::uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (bytes.size() < 8 || !std::equal(signature, signature + 8, bytes.begin())) return;
    const auto be32 = [&](std::size_t at) {
        return (std::uint32_t{bytes[at]} << 24) | (std::uint32_t{bytes[at + 1]} << 16) |
               (std::uint32_t{bytes[at + 2]} << 8) | std::uint32_t{bytes[at + 3]};
    };
    std::uint64_t width = 0, height = 0, depth = 0, channels = 0;
    bool interlaced = false, apple = false, have_header = false;
    std::vector<std::pair<std::size_t, std::size_t>> idat;  // (offset, length) of each IDAT chunk
    for (std::size_t at = 8; at + 8 <= bytes.size();) {
        const std::size_t len = be32(at);
        const std::uint32_t type = be32(at + 4);
        if (len > bytes.size() - at - 8) break;  // stb_image reports the truncated chunk
        const std::size_t data = at + 8;
        if (type == 0x43674249) apple = true;  // "CgBI": Apple's PNG, raw deflate without zlib header
        if (type == 0x49484452 && len >= 13) {  // "IHDR"
            have_header = true;
            width = be32(data);
            height = be32(data + 4);
            depth = bytes[data + 8];
            const std::uint8_t colour = bytes[data + 9];
            channels = colour == 2 ? 3 : colour == 4 ? 2 : colour == 6 ? 4 : 1;
            interlaced = bytes[data + 12] != 0;
        }
        if (type == 0x49444154) idat.emplace_back(data, len);  // "IDAT"
        if (type == 0x49454E44) break;                          // "IEND"
        at = data + len + 4;                                    // + CRC
    }
    if (!have_header || idat.empty() || depth == 0 || depth > 16) return;
    // Filtered bytes the image needs: a filter byte per row, per Adam7 pass when interlaced.
    const auto scanlines = [&](std::uint64_t w, std::uint64_t h) {
        return w == 0 || h == 0 ? 0 : h * (1 + (w * channels * depth + 7) / 8);
    };
    std::uint64_t needed = 0;
    if (!interlaced) {
        needed = scanlines(width, height);
    } else {
        static constexpr int x0[7] = {0, 4, 0, 2, 0, 1, 0}, y0[7] = {0, 0, 4, 0, 2, 0, 1};
        static constexpr int dx[7] = {8, 8, 4, 4, 2, 2, 1}, dy[7] = {8, 8, 8, 4, 4, 2, 2};
        for (int p = 0; p < 7; ++p) {
            const std::uint64_t w = width > static_cast<std::uint64_t>(x0[p]) ? (width - x0[p] + dx[p] - 1) / dx[p] : 0;
            const std::uint64_t h = height > static_cast<std::uint64_t>(y0[p]) ? (height - y0[p] + dy[p] - 1) / dy[p] : 0;
            needed += scanlines(w, h);
        }
    }
    z_stream zs{};
    if (inflateInit2(&zs, apple ? -15 : 15) != Z_OK)
        throw error("load_image: " + path + ": zlib could not start (out of memory)");
    struct guard {
        z_stream* z;
        ~guard() { inflateEnd(z); }
    } const end_inflate{&zs};
    std::uint8_t sink[16384];
    std::uint64_t produced = 0;
    int rc = Z_OK;
    for (const auto& [offset, length] : idat) {
        zs.next_in = const_cast<Bytef*>(bytes.data() + offset);  // zlib's API is not const; it only reads
        zs.avail_in = static_cast<uInt>(length);
        while (zs.avail_in > 0 && rc != Z_STREAM_END) {
            zs.next_out = sink;
            zs.avail_out = sizeof sink;
            rc = inflate(&zs, Z_NO_FLUSH);
            produced += sizeof sink - zs.avail_out;
            if (rc != Z_OK && rc != Z_STREAM_END)
                throw error("load_image: " + path + ": corrupt PNG image data (zlib: " +
                            (zs.msg != nullptr ? zs.msg : "error " + std::to_string(rc)) + ")");
            if (produced > needed)
                throw error("load_image: " + path + ": corrupt PNG: the image data inflates to more than the " +
                            std::to_string(needed) + " bytes a " + std::to_string(width) + " x " +
                            std::to_string(height) + " image needs");
        }
        if (rc == Z_STREAM_END) break;
    }
    if (rc != Z_STREAM_END)
        throw error("load_image: " + path + ": truncated PNG: the image data stream stops after " +
                    std::to_string(produced) + " of " + std::to_string(needed) + " bytes");
}

// Pillow's fixed-point resampling: coefficients have PRECISION_BITS fractional bits, and the
// accumulator is a 32-bit int (8 bits of result, 2 for overshoot of filters with negative lobes).
inline constexpr int precision_bits = 32 - 8 - 2;

// One axis of Pillow's precompute_coeffs + normalize_coeffs_8bpc for the BILINEAR (triangle)
// filter over the box [0, in_size): output i reads `count[i]` input samples from `first[i]`,
// weighted by k[i * ksize + j].
struct axis_coeffs {
    int ksize = 0;
    std::vector<int> first, count;
    std::vector<std::int32_t> k;
};

inline double triangle(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

inline axis_coeffs bilinear_coeffs(int in_size, int out_size) {
    constexpr double filter_support = 1.0;
    // Pillow computes (double)(float(in1) - float(in0)) / out; exact for sides below 2^24.
    const double scale = static_cast<double>(in_size) / out_size;
    // Downsampling stretches the filter over `scale` input pixels ("antialiasing").
    const double filterscale = std::max(scale, 1.0);
    const double support = filter_support * filterscale;
    axis_coeffs a;
    a.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    a.first.resize(out_size);
    a.count.resize(out_size);
    a.k.assign(static_cast<std::size_t>(out_size) * a.ksize, 0);
    std::vector<double> w(a.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        // Every expression below keeps Pillow's operation order: the coefficients must round the
        // same way, or a pixel near a .5 boundary comes out one level off.
        const double center = (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;  // multiplied, not divided, as Pillow does
        // Pillow truncates (x + 0.5), it does not round: keep it (NOLINTs below).
        const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);  // NOLINT(bugprone-incorrect-roundings)
        const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;  // NOLINT(bugprone-incorrect-roundings)
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            w[x] = triangle((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        for (int x = 0; x < xmax; ++x) {
            const double kx = ww != 0.0 ? w[x] / ww : w[x];
            // normalize_coeffs_8bpc: to fixed point, rounding half away from zero.
            const double scaled = kx * (1 << precision_bits);
            a.k[static_cast<std::size_t>(xx) * a.ksize + x] =
                static_cast<std::int32_t>(kx < 0 ? -0.5 + scaled : 0.5 + scaled);
        }
        a.first[xx] = xmin;
        a.count[xx] = xmax;
    }
    return a;
}

// The accumulator starts at one half (1 << 21), so the shift rounds to nearest; then clamp.
inline std::uint8_t clip8(std::int32_t acc) {
    return static_cast<std::uint8_t>(std::clamp(acc >> precision_bits, 0, 255));
}

inline constexpr std::int32_t half = std::int32_t{1} << (precision_bits - 1);

}  // namespace detail

// Decodes an image file (or its bytes, decode_image) to 8-bit RGB. Throws ctnet::error naming
// the file and stb_image's reason (missing file, not an image, truncated data) or the size (a
// side above max_image_side, or more than max_pixels pixels), the size being read from the header
// before anything is decoded.
inline rgb_image decode_image(const std::string& path, const std::vector<std::uint8_t>& bytes,
                              long long max_pixels = max_image_pixels) {
    if (bytes.size() > static_cast<std::size_t>(INT_MAX))  // stb takes an int length
        throw error("load_image: " + path + " is larger than " + std::to_string(INT_MAX) + " bytes");
    const int len = static_cast<int>(bytes.size());
    int w = 0, h = 0, channels = 0;
    // Read the header first, so that an absurd size is refused before anything is allocated.
    if (!stbi_info_from_memory(bytes.data(), len, &w, &h, &channels)) {
        throw error("load_image: cannot decode " + path + " (stb_image: " +
                    stbi_failure_reason() + ")");
    }
    if (w <= 0 || h <= 0 || w > max_image_side || h > max_image_side ||
        static_cast<long long>(w) * h > max_pixels) {
        throw error("load_image: " + path + " is " + std::to_string(w) + " x " +
                    std::to_string(h) + " pixels; each side must be between 1 and " +
                    std::to_string(max_image_side) + ", and at most " + std::to_string(max_pixels) +
                    " pixels in all");
    }
    detail::check_png_stream(path, bytes);
    struct stb_free {
        void operator()(unsigned char* p) const { stbi_image_free(p); }
    };
    std::unique_ptr<unsigned char, stb_free> data{
        stbi_load_from_memory(bytes.data(), len, &w, &h, &channels, 3)};
    if (!data) {
        throw error("load_image: cannot decode " + path + " (stb_image: " +
                    stbi_failure_reason() + ")");
    }
    rgb_image img{w, h, {}};
    img.pixels.assign(data.get(), data.get() + static_cast<std::size_t>(w) * h * 3);
    return img;
}

inline rgb_image load_image(const std::string& path, long long max_pixels = max_image_pixels) {
    return decode_image(path, read_file(path, static_cast<std::size_t>(INT_MAX) + 1), max_pixels);
}

// Pillow's Image.resize((width, height), Image.BILINEAR) for an RGB image, byte-exact.
// Two separable passes as Resample.c: horizontal first, into a temporary holding only the rows
// the vertical pass reads, then vertical; a pass is skipped when its side does not change.
inline rgb_image resize_bilinear(const rgb_image& in, int width, int height) {
    detail::check_image(in, "resize_bilinear");
    if (width <= 0 || height <= 0 || width > max_image_side || height > max_image_side) {
        throw error("resize_bilinear: target size " + std::to_string(width) + " x " +
                    std::to_string(height) + " must have sides between 1 and " +
                    std::to_string(max_image_side));
    }
    const bool need_horizontal = width != in.width;
    const bool need_vertical = height != in.height;
    const detail::axis_coeffs vert = detail::bilinear_coeffs(in.height, height);
    // Rows of the input the vertical pass reads: [row0, row1).
    const int row0 = vert.first.front();
    const int row1 = vert.first.back() + vert.count.back();

    rgb_image tmp;
    const rgb_image* src = &in;
    int src_row0 = 0;  // input row held in src's row 0
    if (need_horizontal) {
        const detail::axis_coeffs horiz = detail::bilinear_coeffs(in.width, width);
        tmp.width = width;
        tmp.height = row1 - row0;
        tmp.pixels.resize(static_cast<std::size_t>(tmp.width) * tmp.height * 3);
        for (int y = 0; y < tmp.height; ++y) {
            const std::uint8_t* row = &in.pixels[static_cast<std::size_t>(y + row0) * in.width * 3];
            std::uint8_t* out = &tmp.pixels[static_cast<std::size_t>(y) * width * 3];
            for (int x = 0; x < width; ++x) {
                const std::int32_t* k = &horiz.k[static_cast<std::size_t>(x) * horiz.ksize];
                const std::uint8_t* p = row + static_cast<std::size_t>(horiz.first[x]) * 3;
                std::int32_t r = detail::half, g = detail::half, b = detail::half;
                for (int j = 0; j < horiz.count[x]; ++j) {
                    r += p[j * 3 + 0] * k[j];
                    g += p[j * 3 + 1] * k[j];
                    b += p[j * 3 + 2] * k[j];
                }
                out[x * 3 + 0] = detail::clip8(r);
                out[x * 3 + 1] = detail::clip8(g);
                out[x * 3 + 2] = detail::clip8(b);
            }
        }
        src = &tmp;
        src_row0 = row0;
    }
    if (!need_vertical) {
        if (need_horizontal) return tmp;
        return in;  // neither side changes: a copy, as Pillow
    }

    rgb_image out{src->width, height, {}};
    out.pixels.resize(static_cast<std::size_t>(out.width) * height * 3);
    const std::size_t stride = static_cast<std::size_t>(src->width) * 3;
    for (int y = 0; y < height; ++y) {
        const std::int32_t* k = &vert.k[static_cast<std::size_t>(y) * vert.ksize];
        const std::uint8_t* col = &src->pixels[(vert.first[y] - src_row0) * stride];
        std::uint8_t* dst = &out.pixels[static_cast<std::size_t>(y) * stride];
        for (std::size_t i = 0; i < stride; ++i) {  // the three channels alike
            std::int32_t acc = detail::half;
            for (int j = 0; j < vert.count[y]; ++j) acc += col[j * stride + i] * k[j];
            dst[i] = detail::clip8(acc);
        }
    }
    return out;
}

// torchvision 0.14's Resize(shorter) on a PIL image: the shorter side becomes `shorter`, the
// longer int(shorter * long / short) (a float division, truncated, as Python computes it); a
// square counts as portrait. The pixels are Pillow's BILINEAR (resize_bilinear).
inline rgb_image resize_shorter_side(const rgb_image& in, int shorter) {
    detail::check_image(in, "resize_shorter_side");
    if (shorter <= 0 || shorter > max_image_side) {
        throw error("resize_shorter_side: shorter side " + std::to_string(shorter) +
                    " must be between 1 and " + std::to_string(max_image_side));
    }
    const bool portrait = in.width <= in.height;
    const int short_side = portrait ? in.width : in.height;
    const int long_side = portrait ? in.height : in.width;
    const double new_long_exact =
        static_cast<double>(static_cast<std::int64_t>(shorter) * long_side) / short_side;
    if (new_long_exact > max_image_side) {
        throw error("resize_shorter_side: resizing " + std::to_string(in.width) + " x " +
                    std::to_string(in.height) + " to shorter side " + std::to_string(shorter) +
                    " gives a longer side above " + std::to_string(max_image_side));
    }
    const int new_long = static_cast<int>(new_long_exact);
    const int new_w = portrait ? shorter : new_long;
    const int new_h = portrait ? new_long : shorter;
    if (new_w == in.width && new_h == in.height) {
        return in;  // torchvision returns the image itself
    }
    return resize_bilinear(in, new_w, new_h);
}

// torchvision's CenterCrop(size): top = int(round((h - size) / 2.0)), left likewise, where
// Python's round() sends halves to even (21.5 -> 22, 78.5 -> 78). Unlike torchvision, an image
// smaller than the crop is an error rather than zero-padded.
inline rgb_image center_crop(const rgb_image& in, int size) {
    detail::check_image(in, "center_crop");
    if (size <= 0 || size > in.width || size > in.height) {
        throw error("center_crop: crop size " + std::to_string(size) + " does not fit in a " +
                    std::to_string(in.width) + " x " + std::to_string(in.height) + " image");
    }
    const auto offset = [](int extra) {  // round(extra / 2.0), halves to even
        const int q = extra / 2;
        return extra % 2 == 0 || q % 2 == 0 ? q : q + 1;
    };
    const int top = offset(in.height - size);
    const int left = offset(in.width - size);
    rgb_image out{size, size, {}};
    out.pixels.resize(static_cast<std::size_t>(size) * size * 3);
    for (int y = 0; y < size; ++y) {
        const auto* row = &in.pixels[(static_cast<std::size_t>(top + y) * in.width + left) * 3];
        std::copy(row, row + static_cast<std::size_t>(size) * 3,
                  &out.pixels[static_cast<std::size_t>(y) * size * 3]);
    }
    return out;
}

// ImageNet statistics as torchvision holds them: Python floats (doubles) cast to float32.
inline constexpr float imagenet_mean[3] = {static_cast<float>(0.485), static_cast<float>(0.456),
                                           static_cast<float>(0.406)};
inline constexpr float imagenet_std[3] = {static_cast<float>(0.229), static_cast<float>(0.224),
                                          static_cast<float>(0.225)};

// ToTensor then Normalize: out[c][y][x] = (float(p) / 255 - mean[c]) / std[c], planar CHW.
// Each step is one correctly rounded float32 operation, as in torch (true division, not a
// multiplication by the reciprocal), so the result is bit-identical. `out` holds 3 * h * w floats.
inline void to_normalized_chw(const rgb_image& in, float* out) {
    detail::check_image(in, "to_normalized_chw");
    const std::size_t plane = static_cast<std::size_t>(in.width) * in.height;
    for (int c = 0; c < 3; ++c) {
        for (std::size_t i = 0; i < plane; ++i) {
            const float x = static_cast<float>(in.pixels[i * 3 + c]) / 255.0F;
            out[c * plane + i] = (x - imagenet_mean[c]) / imagenet_std[c];
        }
    }
}

inline constexpr int imagenet_resize = 342;
inline constexpr int imagenet_crop = 299;

// The whole pipeline of `ctnet classify`: 3 x 299 x 299 floats, CHW, ready for inception_v3.
inline std::vector<float> imagenet_preprocess(const std::string& path) {
    const rgb_image crop =
        center_crop(resize_shorter_side(load_image(path), imagenet_resize), imagenet_crop);
    std::vector<float> out(static_cast<std::size_t>(3) * imagenet_crop * imagenet_crop);
    to_normalized_chw(crop, out.data());
    return out;
}

}  // namespace ctnet::io
