// ctnet/io/idx.hpp — IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.
//
//   io::idx_array a = io::read_idx("train-images-idx3-ubyte.gz");   // a.dims = {60000, 28, 28}
//   io::fashion_mnist fm = io::load_fashion_mnist();                 // Debian's dataset-fashion-mnist
//
// Requires: zlib (link ZLIB::ZLIB, or -lz; the CMake target ctnet::io does). IDX element type
// 0x08 (unsigned byte) only, 1 to 4 dimensions. A file starting with 1f 8b is gzip, anything
// else plain IDX.
// Guarantees: anything else throws ctnet::error naming the file, the field and what was
// expected — a truncated header, a magic number not starting with two zero bytes, another type
// code (named), 0 or more than 4 dimensions, a dimension of 0, dimensions holding more than
// idx_max_bytes, data shorter or longer than the dimensions say (both sizes named); for gzip, a
// corrupted or truncated stream, bytes after it, or more than gunzip_max_bytes (default 1 GiB)
// of output, so a gzip bomb is an error before it fills memory. Loaders check ranks, counts and
// labels (the index and value of a bad one).
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <zlib.h>

#include "../core/error.hpp"
#include "file.hpp"

namespace ctnet::io {

// The most data one IDX array may hold: 2^31 - 1 bytes, so every count fits an int.
inline constexpr std::size_t idx_max_bytes = INT_MAX;
// The most bytes gunzip produces by default (1 GiB); more is an error, not an allocation.
inline constexpr std::size_t gunzip_max_bytes = std::size_t{1} << 30;

struct idx_array {
    std::vector<int> dims;            // 1 to 4 dimensions, each at least 1
    std::vector<std::uint8_t> data;   // product of dims bytes, row-major
};

namespace detail {

[[noreturn]] inline void idx_fail(std::string_view name, const std::string& what) {
    throw error(std::string{"ctnet: idx file '"} + std::string{name} + "': " + what);
}

[[noreturn]] inline void gzip_fail(std::string_view name, const std::string& what) {
    throw error(std::string{"ctnet: gzip file '"} + std::string{name} + "': " + what);
}

inline std::string idx_hex(unsigned v) {
    static constexpr char digits[] = "0123456789ABCDEF";
    return std::string{"0x"} + digits[(v >> 4) & 0xF] + digits[v & 0xF];
}

inline std::string idx_dims_text(const std::vector<std::uint32_t>& dims) {
    std::string s;
    for (std::size_t i = 0; i < dims.size(); ++i) s += std::string{i ? " x " : ""} + std::to_string(dims[i]);
    return s;
}

// What an IDX type code means, for the message refusing it.
inline std::string idx_type_name(unsigned code) {
    switch (code) {
        case 0x09: return "signed byte";
        case 0x0B: return "int16";
        case 0x0C: return "int32";
        case 0x0D: return "float32";
        case 0x0E: return "float64";
        default: return "";
    }
}

inline bool is_gzip(std::span<const std::uint8_t> bytes) {
    return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

}  // namespace detail

// Parses the bytes of an uncompressed IDX file; `name` is what error messages call it.
inline idx_array parse_idx(std::string_view name, std::span<const std::uint8_t> bytes) {
    if (bytes.size() < 4)
        detail::idx_fail(name, std::string{"truncated header: "} + std::to_string(bytes.size()) +
                                   " bytes, the magic number needs 4");
    if (bytes[0] != 0 || bytes[1] != 0)
        detail::idx_fail(name, std::string{"magic number starts with "} + detail::idx_hex(bytes[0]) + " " +
                                   detail::idx_hex(bytes[1]) + ", expected 0x00 0x00 (not an IDX file)");
    const unsigned type = bytes[2];
    if (type != 0x08) {
        const std::string known = detail::idx_type_name(type);
        if (!known.empty())
            detail::idx_fail(name, std::string{"type code "} + detail::idx_hex(type) + " (" + known +
                                       ") is not supported, only 0x08 (unsigned byte)");
        detail::idx_fail(name, std::string{"type code "} + detail::idx_hex(type) +
                                   " is not an IDX type, expected 0x08 (unsigned byte)");
    }
    const std::size_t ndim = bytes[3];
    if (ndim == 0 || ndim > 4)
        detail::idx_fail(name, std::string{"number of dimensions (byte 3) is "} + std::to_string(ndim) +
                                   ", expected 1 to 4");
    const std::size_t header = 4 + 4 * ndim;
    if (bytes.size() < header)
        detail::idx_fail(name, std::string{"truncated header: "} + std::to_string(ndim) + " dimensions need " +
                                   std::to_string(header) + " bytes, the file has " + std::to_string(bytes.size()));

    std::vector<std::uint32_t> dims(ndim);
    std::uint64_t count = 1;
    for (std::size_t i = 0; i < ndim; ++i) {
        const std::uint8_t* p = bytes.data() + 4 + 4 * i;  // big-endian
        dims[i] = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
    }
    for (std::size_t i = 0; i < ndim; ++i) {
        if (dims[i] == 0) detail::idx_fail(name, std::string{"dimension "} + std::to_string(i) + " is 0");
        if (dims[i] > idx_max_bytes / count)  // count <= idx_max_bytes: no overflow
            detail::idx_fail(name, std::string{"dimensions "} + detail::idx_dims_text(dims) +
                                       " hold more than the limit of " + std::to_string(idx_max_bytes) + " bytes");
        count *= dims[i];
    }

    const std::size_t have = bytes.size() - header;
    if (have != count)
        detail::idx_fail(name, std::string{"dimensions "} + detail::idx_dims_text(dims) + " need " +
                                   std::to_string(count) + " bytes of data but the file has " + std::to_string(have) +
                                   (have < count ? " (truncated)" : " (trailing bytes)"));
    idx_array a;
    a.dims.assign(dims.begin(), dims.end());
    a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
    return a;
}

// The decompressed contents of a gzip file (several members are concatenated, as gzip -d
// does). A corrupted or truncated stream, bytes after it that are not another member, or more
// than max_bytes of output throw ctnet::error naming `name`.
inline std::vector<std::uint8_t> gunzip(std::string_view name, std::span<const std::uint8_t> in,
                                        std::size_t max_bytes = gunzip_max_bytes) {
    if (!detail::is_gzip(in)) detail::gzip_fail(name, "not gzip data (the magic bytes 1f 8b are missing)");
    z_stream zs{};
    if (inflateInit2(&zs, 15 + 16) != Z_OK)  // 15: the largest window; +16: gzip wrapper only
        detail::gzip_fail(name, "zlib could not start: out of memory");
    struct guard {
        z_stream* z;
        ~guard() { inflateEnd(z); }
    } const end_inflate{&zs};

    std::vector<std::uint8_t> out;
    // A hint from the trailer (size mod 2^32 of the last member), bounded by deflate's ratio
    // of at most 1032:1, so a lying trailer cannot make a large allocation.
    if (in.size() >= 18) {
        const std::uint8_t* t = in.data() + in.size() - 4;
        const std::size_t isize =
            t[0] | (std::size_t{t[1]} << 8) | (std::size_t{t[2]} << 16) | (std::size_t{t[3]} << 24);
        out.reserve(std::min({isize, max_bytes, in.size() / 1024 * 1032 + 65536}));
    }

    std::size_t pos = 0;  // bytes of `in` given to zlib so far
    std::uint8_t chunk[1 << 16];
    for (;;) {
        if (zs.avail_in == 0 && pos < in.size()) {
            const std::size_t n = std::min<std::size_t>(in.size() - pos, std::size_t{1} << 30);  // avail_in is 32 bits
            zs.next_in = const_cast<Bytef*>(in.data() + pos);  // zlib's API is not const; it only reads
            zs.avail_in = static_cast<uInt>(n);
            pos += n;
        }
        zs.next_out = chunk;
        zs.avail_out = sizeof chunk;
        const int rc = inflate(&zs, Z_NO_FLUSH);
        const std::size_t got = sizeof chunk - zs.avail_out;
        if (got > max_bytes - out.size())
            detail::gzip_fail(name, std::string{"decompresses to more than the limit of "} + std::to_string(max_bytes) +
                                        " bytes");
        out.insert(out.end(), chunk, chunk + got);

        if (rc == Z_STREAM_END) {
            const std::size_t consumed = pos - zs.avail_in;
            if (consumed == in.size()) return out;
            if (!detail::is_gzip(in.subspan(consumed)))
                detail::gzip_fail(name, std::to_string(in.size() - consumed) +
                                            " bytes after the end of the gzip stream (at byte " +
                                            std::to_string(consumed) + ")");
            if (inflateReset(&zs) != Z_OK) detail::gzip_fail(name, "zlib could not restart for the next member");
            continue;
        }
        if (rc == Z_OK) continue;
        if (rc == Z_BUF_ERROR && zs.avail_in == 0 && pos == in.size())
            detail::gzip_fail(name, std::string{"truncated: the compressed stream ends early ("} +
                                        std::to_string(in.size()) + " bytes, " + std::to_string(out.size()) +
                                        " decompressed)");
        if (rc == Z_BUF_ERROR) continue;  // no progress possible with this output chunk; more comes
        if (rc == Z_MEM_ERROR) detail::gzip_fail(name, "zlib ran out of memory");
        detail::gzip_fail(name, std::string{"corrupted at byte "} + std::to_string(pos - zs.avail_in) + ": " +
                                    (zs.msg ? zs.msg : "invalid data"));
    }
}

// An IDX file from disk, gzip-compressed (by its magic bytes 1f 8b) or plain.
inline idx_array read_idx(const std::string& path) {
    const std::vector<std::uint8_t> bytes = read_file(path, idx_max_bytes + 64);
    if (detail::is_gzip(bytes)) return parse_idx(path, gunzip(path, bytes));
    return parse_idx(path, bytes);
}

struct labelled_images {
    int count = 0, rows = 0, cols = 0;
    std::vector<std::uint8_t> pixels;  // count x rows x cols, row-major
    std::vector<std::uint8_t> labels;  // count, each below the number of classes
};

// Images (count x rows x cols) and their labels (count); every label must be below `classes`.
inline labelled_images load_idx_pair(const std::string& images_path, const std::string& labels_path, int classes) {
    if (classes < 1 || classes > 256)
        throw error(std::string{"ctnet: load_idx_pair: classes is "} + std::to_string(classes) + ", expected 1 to 256");
    idx_array images = read_idx(images_path);
    if (images.dims.size() != 3)
        detail::idx_fail(images_path, std::string{"images have "} + std::to_string(images.dims.size()) +
                                          " dimensions, expected 3 (count x rows x cols)");
    idx_array labels = read_idx(labels_path);
    if (labels.dims.size() != 1)
        detail::idx_fail(labels_path, std::string{"labels have "} + std::to_string(labels.dims.size()) +
                                          " dimensions, expected 1 (count)");
    if (labels.dims[0] != images.dims[0])
        detail::idx_fail(labels_path, std::string{"has "} + std::to_string(labels.dims[0]) + " labels but '" +
                                          images_path + "' has " + std::to_string(images.dims[0]) + " images");
    for (std::size_t i = 0; i < labels.data.size(); ++i)
        if (labels.data[i] >= classes)
            detail::idx_fail(labels_path, std::string{"label at index "} + std::to_string(i) + " is " +
                                              std::to_string(labels.data[i]) + ", expected below " +
                                              std::to_string(classes) + " (the number of classes)");
    return {images.dims[0], images.dims[1], images.dims[2], std::move(images.data), std::move(labels.data)};
}

struct fashion_mnist {
    labelled_images train, test;  // 60000 and 10000 images of 28 x 28, labels 0 to 9
};

// Fashion-MNIST from `dir`: Debian's dataset-fashion-mnist installs it in the default place.
// Each file is NAME.gz or, failing that, NAME uncompressed.
inline fashion_mnist load_fashion_mnist(const std::string& dir = "/usr/share/datasets/fashion-mnist") {
    namespace fs = std::filesystem;
    static constexpr char hint[] =
        "install it with `apt-get install dataset-fashion-mnist` (Debian) or give the directory holding "
        "train-images-idx3-ubyte.gz and the three other files";
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        throw error(std::string{"ctnet: Fashion-MNIST directory '"} + dir + "' does not exist: " + hint);
    auto file = [&](const std::string& stem) {
        std::string gz = (fs::path{dir} / (stem + ".gz")).string();
        if (fs::exists(gz, ec)) return gz;
        std::string plain = (fs::path{dir} / stem).string();
        if (fs::exists(plain, ec)) return plain;
        throw error(std::string{"ctnet: Fashion-MNIST file '"} + gz + "' is missing: " + hint);
    };
    auto load = [&](const std::string& prefix) {
        const std::string images_path = file(prefix + "-images-idx3-ubyte");
        labelled_images s = load_idx_pair(images_path, file(prefix + "-labels-idx1-ubyte"), 10);
        if (s.rows != 28 || s.cols != 28)
            detail::idx_fail(images_path, std::string{"images are "} + std::to_string(s.rows) + " x " +
                                              std::to_string(s.cols) + ", Fashion-MNIST's are 28 x 28");
        return s;
    };
    fashion_mnist fm;
    fm.train = load("train");
    fm.test = load("t10k");
    return fm;
}

}  // namespace ctnet::io
