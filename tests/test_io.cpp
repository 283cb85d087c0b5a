// File formats: .npy and safetensors round trips, half-precision conversion against hand-made
// bit patterns, and every malformed file we could think of giving a clear error that names
// the file, the tensor or field, and leaves already-loaded weights untouched.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

#include <ctnet/ctnet.hpp>
#include <ctnet/io/npy.hpp>
#include <ctnet/io/safetensors.hpp>

using namespace ctnet;
namespace fs = std::filesystem;

namespace {

using small = network<shape{2, 5, 5}, seq<node<"conv", conv<3, k<3>>>, node<"bn", batch_norm<>>, relu, global_avg_pool,
                                          flatten, node<"fc", linear<3, 4>>>>;

fs::path temp_dir() {
    static const fs::path d = [] {
        fs::path p = fs::temp_directory_path() / ("ctnet_test_io_" + std::to_string(::getpid()));
        fs::create_directories(p);
        return p;
    }();
    return d;
}

std::string temp_file(const std::string& name) { return (temp_dir() / name).string(); }

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    REQUIRE(f);
    std::fwrite(b.data(), 1, b.size(), f);
    std::fclose(f);
}

// A safetensors file from a header text and a data section.
std::vector<std::uint8_t> st_bytes(const std::string& header, const std::vector<std::uint8_t>& data) {
    std::vector<std::uint8_t> b(8 + header.size() + data.size());
    const std::uint64_t n = header.size();
    std::memcpy(b.data(), &n, 8);
    std::memcpy(b.data() + 8, header.data(), header.size());
    if (!data.empty()) std::memcpy(b.data() + 8 + header.size(), data.data(), data.size());
    return b;
}

}  // namespace

TEST_CASE("npy: round trip and the header numpy writes") {
    const std::vector<float> v = {1.5F, -2.0F, 3.25F, 0.0F, 7.0F, 8.5F};
    io::write_npy(temp_file("a.npy"), {2, 3}, v.data());
    const io::npy_array a = io::read_npy(temp_file("a.npy"));
    CHECK(a.shape == std::vector<std::size_t>{2, 3});
    CHECK(a.data == v);
    io::write_npy(temp_file("b.npy"), {6}, v.data());
    CHECK(io::read_npy(temp_file("b.npy")).shape == std::vector<std::size_t>{6});
    const std::vector<std::uint8_t> raw = io::read_file(temp_file("a.npy"));
    CHECK((raw.size() - v.size() * 4) % 64 == 0);  // data 64-byte aligned, as numpy writes
}

TEST_CASE("npy: malformed files are clear errors") {
    auto npy = [](const std::string& header, std::size_t data_bytes) {
        std::vector<std::uint8_t> b(10 + header.size() + data_bytes, 0);
        const std::uint8_t start[] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<std::uint8_t>(header.size()), 0};
        std::memcpy(b.data(), start, sizeof start);
        std::memcpy(b.data() + 10, header.data(), header.size());
        return b;
    };
    struct bad_case {
        std::vector<std::uint8_t> bytes;
        const char* message;
    };
    const bad_case cases[] = {
        {npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16), "dtype is '<f8', expected '<f4'"},
        {npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16), "fortran_order is True"},
        {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20), "needs 24 bytes of data but the file has 20 (truncated)"},
        {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28), "(trailing bytes)"},
        {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (100000000, 100000000), }", 0), "more than 2^40 elements"},
        {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", 8), "is malformed"},
        {npy("{'descr': '<f4', 'shape': (2,), }", 8), "no 'fortran_order' field"},
        {{'n', 'o', 't', ' ', 'n', 'p', 'y', '!', '!', '!', '!'}, "magic string"},
        {{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 200, 0, '{'}, "runs past the end of the file"},
    };
    int i = 0;
    for (const bad_case& c : cases) {
        const std::string path = temp_file("bad" + std::to_string(i++) + ".npy");
        write_bytes(path, c.bytes);
        CHECK_THROWS_WITH_AS(io::read_npy(path), doctest::Contains(c.message), error);
        CHECK_THROWS_WITH_AS(io::read_npy(path), doctest::Contains(path.c_str()), error);
    }
    CHECK_THROWS_WITH_AS(io::read_npy(temp_file("missing.npy")), doctest::Contains("cannot open"), error);
}

TEST_CASE("safetensors: save and load round-trip bit for bit") {
    weights<small> w;
    init_seeded(w, 77, true);
    io::save_safetensors(temp_file("w.safetensors"), w);
    weights<small> back;
    const io::load_report rep = io::load_safetensors(temp_file("w.safetensors"), back);
    CHECK(rep.loaded == weights<small>::tensors().size());
    CHECK(rep.unused.empty());
    REQUIRE(back.data().size() == w.data().size());
    CHECK(std::memcmp(back.data().data(), w.data().data(), w.data().size_bytes()) == 0);
    // the file has torch's num_batches_tracked counter for the batch norm
    const io::safetensors_file f{temp_file("w.safetensors")};
    CHECK(f.entries().count("bn.num_batches_tracked") == 1);
    CHECK(f.entries().at("bn.num_batches_tracked").dtype == "I64");
}

TEST_CASE("safetensors: F16 and BF16 are converted on load") {
    using tiny = network<shape{1}, node<"fc", linear<1, 6, bias<false>>>>;
    // F16 bit patterns: 1.0, -2.0, 65504 (largest), 2^-24 (smallest subnormal), 0.5 + 2^-11, -0
    const std::uint16_t half[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3801, 0x8000};
    std::vector<std::uint8_t> data(12);
    std::memcpy(data.data(), half, 12);
    write_bytes(temp_file("h.safetensors"),
                st_bytes(R"({"fc.weight":{"dtype":"F16","shape":[6,1],"data_offsets":[0,12]}})", data));
    weights<tiny> w;
    io::load_safetensors(temp_file("h.safetensors"), w);
    const std::vector<float> got(w.data().begin(), w.data().end());
    CHECK(got == std::vector<float>{1.0F, -2.0F, 65504.0F, 0x1.0p-24F, 0.5F + 0x1.0p-11F, -0.0F});
    CHECK(std::signbit(got[5]));

    // BF16: the upper 16 bits of a float32.
    const std::uint16_t bf[] = {0x3F80, 0xC040, 0x4049, 0x0000, 0x7F80, 0xBF00};
    std::memcpy(data.data(), bf, 12);
    write_bytes(temp_file("b.safetensors"),
                st_bytes(R"({"fc.weight":{"dtype":"BF16","shape":[6,1],"data_offsets":[0,12]}})", data));
    io::load_safetensors(temp_file("b.safetensors"), w);
    CHECK(w.data()[0] == 1.0F);
    CHECK(w.data()[1] == -3.0F);
    CHECK(w.data()[2] == 3.140625F);
    CHECK(w.data()[4] == std::numeric_limits<float>::infinity());
    CHECK(w.data()[5] == -0.5F);
}

TEST_CASE("safetensors: bad files are clear errors and leave the weights untouched") {
    using tiny = network<shape{2}, node<"fc", linear<2, 1>>>;  // fc.weight (1, 2), fc.bias (1,)
    const std::string ok_tensors = R"("fc.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},)"
                                   R"("fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[8,12]})";
    const std::vector<std::uint8_t> data(12, 0);
    struct bad_case {
        std::vector<std::uint8_t> bytes;
        const char* message;
    };
    std::vector<std::uint8_t> huge = st_bytes("{}", {});
    const std::uint64_t big = std::uint64_t{1} << 40;
    std::memcpy(huge.data(), &big, 8);
    std::vector<std::uint8_t> past = st_bytes("{}", {});
    const std::uint64_t n = 1000;
    std::memcpy(past.data(), &n, 8);
    const bad_case cases[] = {
        {{1, 2, 3}, "shorter than the 8-byte header length"},
        {huge, "exceeds the limit"},
        {past, "runs past the end of the file"},
        {st_bytes("{not json", data), "header is not valid JSON"},
        {st_bytes("[1, 2]", data), "header is not a JSON object"},
        {st_bytes(std::string(100000, '[') + std::string(100000, ']'), data), "header nests deeper than 8 levels"},
        {st_bytes(R"({"__metadata__":{"a":[[[[[[[[[1]]]]]]]]]}})", data), "header nests deeper than 8 levels"},
        {st_bytes("{" + ok_tensors.substr(0, ok_tensors.find(",\"fc.bias")) + "}", data), "missing tensor 'fc.bias'"},
        {st_bytes(R"({"fc.weight":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]},)"
                  R"("fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                  data),
         "tensor 'fc.weight' has shape (2, 1) but the model expects (1, 2)"},
        {st_bytes("{" + ok_tensors + R"(,"fc2.weight":{"dtype":"F32","shape":[0],"data_offsets":[12,12]}})", data),
         "tensor 'fc2.weight' is not a parameter of the model"},
        {st_bytes(R"({"fc.weight":{"dtype":"Q4","shape":[1,2],"data_offsets":[0,8]}})", data), "unknown dtype 'Q4'"},
        {st_bytes(R"({"fc.weight":{"dtype":"I32","shape":[1,2],"data_offsets":[0,8]},)"
                  R"("fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                  data),
         "has dtype I32, expected F32, F16 or BF16"},
        {st_bytes(R"({"fc.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[0,800]}})", data),
         "are outside the data section of 12 bytes"},
        {st_bytes(R"({"fc.weight":{"dtype":"F32","shape":[1,3],"data_offsets":[0,8]}})", data),
         "needs 12 bytes but data_offsets span 8"},
        {st_bytes(R"({"fc.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},)"
                  R"("fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  data),
         "tensor data ranges overlap"},
        {st_bytes(R"({"fc.weight":{"dtype":"F32","shape":[1,-2],"data_offsets":[0,8]}})", data),
         "shape entries must be non-negative integers"},
        {st_bytes(R"({"fc.weight":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data),
         "more than 2^40 elements"},
        {st_bytes(R"({"fc.weight":{"dtype":"F32","shape":[1,2]}})", data), "field 'data_offsets' must be"},
    };
    weights<tiny> w;
    w.data()[0] = 42.0F;
    int i = 0;
    for (const bad_case& c : cases) {
        const std::string path = temp_file("bad" + std::to_string(i++) + ".safetensors");
        write_bytes(path, c.bytes);
        INFO(c.message);
        CHECK_THROWS_WITH_AS(io::load_safetensors(path, w), doctest::Contains(c.message), error);
        CHECK_THROWS_WITH_AS(io::load_safetensors(path, w), doctest::Contains(path.c_str()), error);
        CHECK(w.data()[0] == 42.0F);
    }
    // allow_unused accepts the extra tensor and reports it
    write_bytes(temp_file("extra.safetensors"),
                st_bytes("{" + ok_tensors + R"(,"fc2.weight":{"dtype":"F32","shape":[0],"data_offsets":[12,12]}})", data));
    const io::load_report rep = io::load_safetensors(temp_file("extra.safetensors"), w, {.allow_unused = true});
    CHECK(rep.unused == std::vector<std::string>{"fc2.weight"});
    CHECK(w.data()[0] == 0.0F);
    // ignore_prefix accepts only the extra tensors under that path
    CHECK(io::load_safetensors(temp_file("extra.safetensors"), w, {.ignore_prefix = "fc2."}).unused.size() == 1);
    CHECK_THROWS_WITH_AS(io::load_safetensors(temp_file("extra.safetensors"), w, {.ignore_prefix = "AuxLogits."}),
                         doctest::Contains("tensor 'fc2.weight' is not a parameter of the model"), error);
}

TEST_CASE("safetensors: saving over a file replaces it whole") {
    weights<small> a, b;
    init_seeded(a, 1);
    init_seeded(b, 2);
    const std::string path = temp_file("replace.safetensors");
    io::save_safetensors(path, a);
    io::save_safetensors(path, b);
    weights<small> back;
    io::load_safetensors(path, back);
    CHECK(std::memcmp(back.data().data(), b.data().data(), b.data().size_bytes()) == 0);
    for (const auto& e : fs::directory_iterator(temp_dir()))
        CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);  // no temporary left behind
}
