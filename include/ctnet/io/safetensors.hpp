// ctnet/io/safetensors.hpp — weights in the safetensors format, by the names the model carries.
//
//   weights<net> w;
//   io::load_safetensors("inception_v3.safetensors", w);     // torchvision's state_dict names
//   io::save_safetensors("copy.safetensors", w);             // reads back bit for bit
//   io::load_safetensors(io::safetensors_file{"embedded", bytes}, w);   // from memory
//
// Format: 8-byte little-endian header length, a JSON header (parsed with nlohmann::json)
// mapping each name to {dtype, shape, data_offsets}, then the raw little-endian data.
// Requires: tensors of dtype F32, F16 or BF16 (converted to float on load); "num_batches_tracked"
// (an I64 counter torch keeps per batch norm) may be present or not and is ignored.
// Guarantees: every tensor the model has must be in the file with exactly the model's shape; a
// tensor the model lacks is an error unless load_options::allow_unused. Every error names the
// file, the tensor and both values. Every check (header, names, shapes, dtypes, sizes) runs
// before the first value is written, so a bad file leaves the weights untouched; only a read
// that fails after that (an I/O error, a file truncated while it is read) can leave them partly
// loaded. A file on disk is read tensor by tensor into the weights: loading holds no second copy
// of the model (neither the file's bytes nor a staging copy). Saving writes F32 plus a
// num_batches_tracked of 0 per batch norm (so torch's load_state_dict(strict=True) accepts the
// file), atomically.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../graph/params.hpp"
#include "file.hpp"

namespace ctnet::io {

static_assert(std::endian::native == std::endian::little, "ctnet's file formats assume a little-endian host");

struct load_options {
    bool allow_unused = false;      // ignore any tensor the model does not have
    std::string_view ignore_prefix{};  // ignore the tensors under this path, e.g. "AuxLogits." for a
                                       // model built without the aux head; others must match
};

struct load_report {
    std::vector<std::string> unused;  // tensors in the file the model does not have
    std::size_t loaded = 0;
};

namespace detail {

inline constexpr std::size_t max_header_bytes = 100u << 20;
// A safetensors header nests three levels ({name: {shape: [...]}}); a hostile one could nest
// millions, which costs memory per level. Deeper than this is refused while parsing.
inline constexpr int max_header_depth = 8;

[[noreturn]] inline void st_fail(const std::string& path, const std::string& what) {
    throw error("ctnet: safetensors file '" + path + "': " + what);
}

// The dtypes read_f32 converts; any other is an error naming the tensor.
inline void require_float_dtype(const std::string& path, const std::string& name, const std::string& dtype) {
    if (dtype != "F32" && dtype != "F16" && dtype != "BF16")
        st_fail(path, "tensor '" + name + "' has dtype " + dtype + ", expected F32, F16 or BF16");
}

inline std::string dims_text(const std::vector<std::int64_t>& d) {
    std::string s = "(";
    for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + (d.size() == 1 ? ",)" : ")");
}

inline float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
    std::uint32_t bits = 0;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant != 0) {  // subnormal: renormalise
        int e = -1;
        std::uint32_t m = mant;
        do { ++e; m <<= 1; } while ((m & 0x400u) == 0);
        bits = sign | (static_cast<std::uint32_t>(112 - e) << 23) | ((m & 0x3ffu) << 13);
    } else {
        bits = sign;
    }
    return std::bit_cast<float>(bits);
}

struct st_entry {
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::size_t begin = 0, end = 0;
};

}  // namespace detail

// A parsed safetensors file: the header's entries and the data section, validated.
class safetensors_file {
public:
    // A file on disk: only its header is read now; read_f32 reads each tensor from the file
    // straight into its destination, so loading never holds the file in memory as well.
    explicit safetensors_file(const std::string& path) : path_{path}, file_{std::make_shared<open_file>(path)} {
        const std::uint64_t size = file_->size();
        std::uint8_t head[8]{};
        if (size >= 8) file_->read_at(0, head, 8);
        const std::size_t n = header_length(head, size);
        std::vector<std::uint8_t> header(n);
        file_->read_at(8, header.data(), n);
        parse(header, size);
    }

    // A file already in memory (weights embedded in a binary, a download); `name` is what
    // error messages call it.
    safetensors_file(std::string name, std::vector<std::uint8_t> bytes) : path_{std::move(name)}, bytes_{std::move(bytes)} {
        const std::size_t n = header_length(bytes_.data(), bytes_.size());
        parse(std::span<const std::uint8_t>{bytes_}.subspan(8, n), bytes_.size());
    }

    [[nodiscard]] const std::map<std::string, detail::st_entry>& entries() const { return entries_; }
    [[nodiscard]] const std::string& path() const { return path_; }
    // The header's "__metadata__" (string to string), empty when absent.
    [[nodiscard]] const std::map<std::string, std::string>& metadata() const { return metadata_; }

    // Converts tensor `name` to float32 into `out` (which must have its element count). From a
    // file on disk it reads the tensor's bytes there (a read error or a file that shrank since
    // it was opened throws, naming the file and the tensor).
    void read_f32(const std::string& name, float* out) const {
        const detail::st_entry& e = entries_.at(name);
        detail::require_float_dtype(path_, name, e.dtype);
        const std::size_t esize = e.dtype == "F32" ? 4 : 2, n = (e.end - e.begin) / esize;
        if (!file_) {
            convert(e.dtype, bytes_.data() + data_at_ + e.begin, n, out);
            return;
        }
        try {
            if (esize == 4) {  // straight into the destination
                file_->read_at(data_at_ + e.begin, out, n * 4);
                return;
            }
            constexpr std::size_t chunk = 1 << 15;  // elements per read
            std::vector<std::uint8_t> buf(std::min(n, chunk) * 2);
            for (std::size_t i = 0; i < n; i += chunk) {
                const std::size_t m = std::min(chunk, n - i);
                file_->read_at(data_at_ + e.begin + i * 2, buf.data(), m * 2);
                convert(e.dtype, buf.data(), m, out + i);
            }
        } catch (const error& x) {
            detail::st_fail(path_, "tensor '" + name + "': " + x.what());
        }
    }

private:
    // The 8-byte little-endian header length, checked against the limit and the file's size.
    [[nodiscard]] std::size_t header_length(const std::uint8_t* head, std::uint64_t size) const {
        if (size < 8) detail::st_fail(path_, "shorter than the 8-byte header length");
        std::uint64_t n = 0;
        std::memcpy(&n, head, 8);
        if (n > detail::max_header_bytes)
            detail::st_fail(path_, "header length " + std::to_string(n) + " exceeds the limit of " +
                                       std::to_string(detail::max_header_bytes) + " bytes");
        if (n > size - 8)
            detail::st_fail(path_, "header length " + std::to_string(n) + " runs past the end of the file (" +
                                       std::to_string(size) + " bytes)");
        return static_cast<std::size_t>(n);
    }

    // The JSON header (the bytes after the length) of a file of `size` bytes.
    void parse(std::span<const std::uint8_t> text, std::uint64_t size) {
        data_at_ = 8 + text.size();
        nlohmann::json header;
        try {
            const auto depth_guard = [this](int depth, nlohmann::json::parse_event_t event, const nlohmann::json&) {
                if (event == nlohmann::json::parse_event_t::object_start ||
                    event == nlohmann::json::parse_event_t::array_start) {
                    if (depth >= detail::max_header_depth)
                        detail::st_fail(path_, "header nests deeper than " + std::to_string(detail::max_header_depth) +
                                                   " levels of objects and arrays");
                }
                return true;
            };
            header = nlohmann::json::parse(text.begin(), text.end(), depth_guard);
        } catch (const nlohmann::json::exception& e) {
            detail::st_fail(path_, std::string{"header is not valid JSON: "} + e.what());
        }
        if (!header.is_object()) detail::st_fail(path_, "header is not a JSON object");
        const auto data_size = static_cast<std::size_t>(size - data_at_);
        for (const auto& [name, v] : header.items()) {
            if (name == "__metadata__") {
                if (!v.is_object()) detail::st_fail(path_, "__metadata__ is not a JSON object");
                for (const auto& [key, text] : v.items()) {
                    if (!text.is_string()) detail::st_fail(path_, "__metadata__ entry '" + key + "' is not a string");
                    metadata_[key] = text.get<std::string>();
                }
                continue;
            }
            entries_[name] = parse_entry(name, v, data_size);
        }
        // Tensors must not overlap.
        std::vector<std::pair<std::size_t, std::size_t>> spans;
        for (const auto& [name, e] : entries_)
            if (e.end > e.begin) spans.emplace_back(e.begin, e.end);
        std::sort(spans.begin(), spans.end());
        for (std::size_t i = 1; i < spans.size(); ++i)
            if (spans[i].first < spans[i - 1].second)
                detail::st_fail(path_, "tensor data ranges overlap at byte " + std::to_string(spans[i].first));
    }

    // n elements of dtype F32, F16 or BF16 (little-endian) at p, as floats.
    static void convert(const std::string& dtype, const std::uint8_t* p, std::size_t n, float* out) {
        if (dtype == "F32") {
            std::memcpy(out, p, n * 4);
        } else if (dtype == "F16") {
            for (std::size_t i = 0; i < n; ++i) out[i] = detail::half_to_float(static_cast<std::uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
        } else {
            for (std::size_t i = 0; i < n; ++i)
                out[i] = std::bit_cast<float>(static_cast<std::uint32_t>(p[2 * i] | (p[2 * i + 1] << 8)) << 16);
        }
    }

    static std::size_t element_size(const std::string& dtype) {
        if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
        if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
        if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
        if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
        return 0;
    }

    detail::st_entry parse_entry(const std::string& name, const nlohmann::json& v, std::size_t data_size) const {
        const std::string where = "tensor '" + name + "': ";
        if (!v.is_object()) detail::st_fail(path_, where + "entry is not a JSON object");
        detail::st_entry e;
        const auto dt = v.find("dtype");
        if (dt == v.end() || !dt->is_string()) detail::st_fail(path_, where + "missing string field 'dtype'");
        e.dtype = dt->get<std::string>();
        const std::size_t esize = element_size(e.dtype);
        if (esize == 0) detail::st_fail(path_, where + "unknown dtype '" + e.dtype + "'");
        const auto sh = v.find("shape");
        if (sh == v.end() || !sh->is_array() || sh->size() > 8)
            detail::st_fail(path_, where + "field 'shape' must be an array of at most 8 dimensions");
        std::size_t count = 1;
        for (const auto& d : *sh) {
            if (!d.is_number_unsigned()) detail::st_fail(path_, where + "shape entries must be non-negative integers");
            const std::uint64_t dim = d.get<std::uint64_t>();
            if (dim != 0 && count > (std::uint64_t{1} << 40) / dim)
                detail::st_fail(path_, where + "shape has more than 2^40 elements");
            count *= dim;
            e.shape.push_back(static_cast<std::int64_t>(dim));
        }
        const auto off = v.find("data_offsets");
        if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
            !(*off)[1].is_number_unsigned())
            detail::st_fail(path_, where + "field 'data_offsets' must be two non-negative integers");
        const std::uint64_t b = (*off)[0].get<std::uint64_t>(), en = (*off)[1].get<std::uint64_t>();
        if (b > en || en > data_size)
            detail::st_fail(path_, where + "data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                                       "] are outside the data section of " + std::to_string(data_size) + " bytes");
        if (en - b != count * esize)
            detail::st_fail(path_, where + "shape " + detail::dims_text(e.shape) + " of " + e.dtype + " needs " +
                                       std::to_string(count * esize) + " bytes but data_offsets span " +
                                       std::to_string(en - b));
        e.begin = static_cast<std::size_t>(b);
        e.end = static_cast<std::size_t>(en);
        return e;
    }

    std::string path_;
    std::shared_ptr<const open_file> file_;  // on disk; null for a file in memory (bytes_)
    std::vector<std::uint8_t> bytes_;
    std::size_t data_at_ = 0;
    std::map<std::string, detail::st_entry> entries_;
    std::map<std::string, std::string> metadata_;
};

template <class Net>
load_report load_safetensors(const safetensors_file& f, weights<Net>& w, load_options opt = {}) {
    const std::string& path = f.path();
    load_report report;
    // Everything is checked before the first value is written.
    for (const tensor_info& t : weights<Net>::tensors()) {
        const auto it = f.entries().find(t.name);
        if (it == f.entries().end()) detail::st_fail(path, "missing tensor '" + t.name + "'");
        const std::vector<std::int64_t> want(t.dims.begin(), t.dims.end());
        if (it->second.shape != want)
            detail::st_fail(path, "tensor '" + t.name + "' has shape " + detail::dims_text(it->second.shape) +
                                      " but the model expects " + detail::dims_text(want));
        detail::require_float_dtype(path, t.name, it->second.dtype);
    }
    for (const auto& [name, e] : f.entries()) {
        if (name.ends_with(".num_batches_tracked")) continue;
        bool known = false;
        for (const tensor_info& t : weights<Net>::tensors()) known = known || t.name == name;
        if (known) continue;
        const bool ignored = !opt.ignore_prefix.empty() && name.starts_with(opt.ignore_prefix);
        if (!opt.allow_unused && !ignored) detail::st_fail(path, "tensor '" + name + "' is not a parameter of the model");
        report.unused.push_back(name);
    }
    for (const tensor_info& t : weights<Net>::tensors()) {
        f.read_f32(t.name, w.data().data() + t.offset);
        ++report.loaded;
    }
    return report;
}

template <class Net>
load_report load_safetensors(const std::string& path, weights<Net>& w, load_options opt = {}) {
    return load_safetensors(safetensors_file{path}, w, opt);
}

// Any float tensors plus string metadata, as one safetensors file (written atomically).
struct named_tensor {
    std::string name;
    std::vector<std::int64_t> dims;
    std::span<const float> data;
};

inline std::vector<std::uint8_t> safetensors_bytes(const std::vector<named_tensor>& tensors,
                                                   const std::map<std::string, std::string>& metadata) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::size_t at = 0;
    for (const named_tensor& t : tensors) {
        header[t.name] = {{"dtype", "F32"}, {"shape", t.dims}, {"data_offsets", {at, at + t.data.size() * 4}}};
        at += t.data.size() * 4;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::vector<std::uint8_t> bytes(8 + text.size() + at, 0);
    const std::uint64_t n = text.size();
    std::memcpy(bytes.data(), &n, 8);
    std::memcpy(bytes.data() + 8, text.data(), text.size());
    std::size_t pos = 8 + text.size();
    for (const named_tensor& t : tensors) {
        if (!t.data.empty()) std::memcpy(bytes.data() + pos, t.data.data(), t.data.size() * 4);
        pos += t.data.size() * 4;
    }
    return bytes;
}

template <class Net>
void save_safetensors(const std::string& path, const weights<Net>& w) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    std::size_t at = 0;
    std::vector<std::string> counters;
    for (const tensor_info& t : weights<Net>::tensors()) {
        header[t.name] = {{"dtype", "F32"}, {"shape", t.dims}, {"data_offsets", {at, at + t.count * 4}}};
        at += t.count * 4;
        if (t.kind == op_kind::batch_norm && t.role == tensor_role::running_var) {
            const std::string c = t.name.substr(0, t.name.size() - std::string_view{"running_var"}.size()) +
                                  "num_batches_tracked";
            header[c] = {{"dtype", "I64"}, {"shape", nlohmann::ordered_json::array()}, {"data_offsets", {at, at + 8}}};
            at += 8;
            counters.push_back(c);
        }
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
    std::vector<std::uint8_t> bytes(8 + text.size() + at, 0);
    const std::uint64_t n = text.size();
    std::memcpy(bytes.data(), &n, 8);
    std::memcpy(bytes.data() + 8, text.data(), text.size());
    std::uint8_t* data = bytes.data() + 8 + text.size();
    std::size_t pos = 0;
    for (const tensor_info& t : weights<Net>::tensors()) {
        std::memcpy(data + pos, w.data().data() + t.offset, t.count * 4);
        pos += t.count * 4;
        if (t.kind == op_kind::batch_norm && t.role == tensor_role::running_var) pos += 8;  // counter stays 0
    }
    write_file_atomic(path, bytes);
}

}  // namespace ctnet::io
