// ctnet/io/npy.hpp — NumPy .npy files of float32 (read and write).
//
//   io::npy_array a = io::read_npy("x.npy");      // a.shape = {N, 3, 299, 299}, a.data
//   io::write_npy("y.npy", {N, 1000}, logits);
//
// Requires: format version 1, 2 or 3; dtype little-endian float32 ('<f4'); C order.
// Guarantees: anything else — another dtype, Fortran order, a malformed header, a shape whose
// size overflows, data shorter or longer than the shape says — throws ctnet::error naming the
// file, the field and what was expected. Writes are atomic (io/file.hpp).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "file.hpp"

namespace ctnet::io {

static_assert(std::endian::native == std::endian::little, "ctnet's file formats assume a little-endian host");

struct npy_array {
    std::vector<std::size_t> shape;
    std::vector<float> data;
};

namespace detail {

[[noreturn]] inline void npy_fail(const std::string& path, const std::string& what) {
    throw error("ctnet: npy file '" + path + "': " + what);
}

// The value of `key` in the header dict: the text between "'key':" and the next top-level
// ',' or '}' (a tuple's commas are inside parentheses).
inline std::string_view npy_field(std::string_view header, std::string_view key, const std::string& path) {
    std::string quoted(key.size() + 2, '\'');  // 'key'
    key.copy(quoted.data() + 1, key.size());
    const std::size_t k = header.find(quoted);
    if (k == std::string_view::npos) npy_fail(path, "header has no '" + std::string{key} + "' field");
    std::size_t i = header.find(':', k + quoted.size());
    if (i == std::string_view::npos) npy_fail(path, "header field '" + std::string{key} + "' has no value");
    ++i;
    while (i < header.size() && header[i] == ' ') ++i;
    int depth = 0;
    std::size_t j = i;
    for (; j < header.size(); ++j) {
        const char c = header[j];
        if (c == '(') ++depth;
        else if (c == ')') --depth;
        else if ((c == ',' || c == '}') && depth == 0) break;
    }
    return header.substr(i, j - i);
}

}  // namespace detail

// Parses the bytes of a .npy file; `path` is what error messages call it.
inline npy_array parse_npy(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    static constexpr char magic[] = "\x93NUMPY";
    if (bytes.size() < 10 || std::memcmp(bytes.data(), magic, 6) != 0)
        detail::npy_fail(path, "not a .npy file (the magic string \\x93NUMPY is missing)");
    const int major = bytes[6];
    std::size_t header_len = 0, header_at = 0;
    if (major == 1) {
        header_len = bytes[8] | (std::size_t{bytes[9]} << 8);
        header_at = 10;
    } else if (major == 2 || major == 3) {
        if (bytes.size() < 12) detail::npy_fail(path, "truncated header");
        header_len = bytes[8] | (std::size_t{bytes[9]} << 8) | (std::size_t{bytes[10]} << 16) |
                     (std::size_t{bytes[11]} << 24);
        header_at = 12;
    } else {
        detail::npy_fail(path, "format version " + std::to_string(major) + " is not 1, 2 or 3");
    }
    if (header_len > bytes.size() - header_at)
        detail::npy_fail(path, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                                   std::to_string(bytes.size()) + " bytes)");
    const std::string_view header{reinterpret_cast<const char*>(bytes.data() + header_at), header_len};

    const std::string_view descr = detail::npy_field(header, "descr", path);
    if (descr != "'<f4'")
        detail::npy_fail(path, "dtype is " + std::string{descr} + ", expected '<f4' (little-endian float32)");
    const std::string_view order = detail::npy_field(header, "fortran_order", path);
    if (order != "False") detail::npy_fail(path, "fortran_order is " + std::string{order} + ", expected False (C order)");

    const std::string_view sh = detail::npy_field(header, "shape", path);
    if (sh.size() < 2 || sh.front() != '(' || sh.back() != ')')
        detail::npy_fail(path, "shape " + std::string{sh} + " is not a tuple");
    npy_array a;
    std::size_t count = 1;
    std::string digits;
    auto flush = [&] {
        if (digits.empty()) return;
        if (digits.size() > 12) detail::npy_fail(path, "dimension " + digits + " is too large");
        const std::size_t d = std::stoull(digits);
        if (d != 0 && count > (std::size_t{1} << 40) / d)
            detail::npy_fail(path, "shape " + std::string{sh} + " has more than 2^40 elements");
        count *= d;
        a.shape.push_back(d);
        digits.clear();
    };
    for (const char c : sh.substr(1, sh.size() - 2)) {
        if (c >= '0' && c <= '9') digits += c;
        else if (c == ',') {
            if (digits.empty()) detail::npy_fail(path, "shape " + std::string{sh} + " is malformed");
            flush();
        } else if (c != ' ' && c != 'L') {
            detail::npy_fail(path, "shape " + std::string{sh} + " is malformed");
        }
    }
    flush();

    const std::size_t data_at = header_at + header_len, have = bytes.size() - data_at;
    if (have != count * sizeof(float))
        detail::npy_fail(path, "shape " + std::string{sh} + " needs " + std::to_string(count * sizeof(float)) +
                                   " bytes of data but the file has " + std::to_string(have) +
                                   (have < count * sizeof(float) ? " (truncated)" : " (trailing bytes)"));
    a.data.resize(count);
    if (count) std::memcpy(a.data.data(), bytes.data() + data_at, count * sizeof(float));
    return a;
}

inline npy_array read_npy(const std::string& path) { return parse_npy(path, read_file(path)); }

inline void write_npy(const std::string& path, const std::vector<std::size_t>& shape, const float* data) {
    std::string dims;
    std::size_t count = 1;
    for (const std::size_t d : shape) {
        dims += std::to_string(d) + ", ";
        count *= d;
    }
    if (shape.size() > 1) dims.resize(dims.size() - 1);  // "(2, 3)"; a 1-tuple keeps its comma: "(3,)"
    if (shape.size() > 1) dims.pop_back();
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    const std::size_t unpadded = 10 + header.size() + 1;
    header.append((64 - unpadded % 64) % 64, ' ');
    header += '\n';
    std::vector<std::uint8_t> bytes{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    bytes.push_back(static_cast<std::uint8_t>(header.size() & 0xff));
    bytes.push_back(static_cast<std::uint8_t>(header.size() >> 8));
    bytes.insert(bytes.end(), header.begin(), header.end());
    const auto* p = reinterpret_cast<const std::uint8_t*>(data);
    bytes.insert(bytes.end(), p, p + count * sizeof(float));
    write_file_atomic(path, bytes);
}

}  // namespace ctnet::io
