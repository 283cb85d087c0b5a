// IDX files (MNIST, Fashion-MNIST): hand-built arrays with known values, gzip round trips made
// with zlib here, every malformed header, size and gzip stream giving an error that names the
// file and the field, and the real Fashion-MNIST as Debian's dataset-fashion-mnist installs it
// (missing, that test fails: tools/install_deps.sh installs it).
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include <unistd.h>
#include <zlib.h>

#include <ctnet/io/idx.hpp>

using namespace ctnet;
namespace fs = std::filesystem;

namespace {

fs::path idx_temp_dir() {
    static const fs::path d = [] {
        fs::path p = fs::temp_directory_path() / (std::string{"ctnet_test_idx_"} + std::to_string(::getpid()));
        fs::create_directories(p);
        return p;
    }();
    return d;
}

std::string idx_temp(const std::string& name) { return (idx_temp_dir() / name).string(); }

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    REQUIRE(f);
    std::fwrite(b.data(), 1, b.size(), f);
    std::fclose(f);
}

// An IDX file: header (type 0x08 unless told) with big-endian dims, then `data`.
std::vector<std::uint8_t> idx_bytes(const std::vector<std::uint32_t>& dims, const std::vector<std::uint8_t>& data,
                                    std::uint8_t type = 0x08) {
    std::vector<std::uint8_t> b{0, 0, type, static_cast<std::uint8_t>(dims.size())};
    for (const std::uint32_t d : dims)
        for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<std::uint8_t>(d >> shift));
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

std::vector<std::uint8_t> iota_bytes(std::size_t n) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 7 + 3);
    return v;
}

// gzip-compresses with zlib itself (not through the code under test).
std::vector<std::uint8_t> gzip(const std::vector<std::uint8_t>& in, int level = Z_DEFAULT_COMPRESSION) {
    z_stream zs{};
    REQUIRE(deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::vector<std::uint8_t> out(deflateBound(&zs, static_cast<uLong>(in.size())) + 64);
    zs.next_in = const_cast<Bytef*>(in.data());
    zs.avail_in = static_cast<uInt>(in.size());
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

// The message of the ctnet::error that f throws ("" and a failed check when it throws none).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const ctnet::error& e) {
        return e.what();
    }
    FAIL_CHECK("no ctnet::error thrown");
    return "";
}

}  // namespace

TEST_CASE("idx: hand-built arrays of 1 to 4 dimensions") {
    const io::idx_array a = io::parse_idx("a", idx_bytes({5}, {9, 8, 7, 6, 5}));
    CHECK(a.dims == std::vector<int>{5});
    CHECK(a.data == std::vector<std::uint8_t>{9, 8, 7, 6, 5});

    // the MNIST images header, with 2 images of 3 x 4: dims are big-endian
    const std::vector<std::uint8_t> header{0x00, 0x00, 0x08, 0x03, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4};
    std::vector<std::uint8_t> file = header;
    const std::vector<std::uint8_t> pixels = iota_bytes(24);
    file.insert(file.end(), pixels.begin(), pixels.end());
    const io::idx_array b = io::parse_idx("b", file);
    CHECK(b.dims == std::vector<int>{2, 3, 4});
    CHECK(b.data == pixels);
    CHECK(b.data[1 * 12 + 2 * 4 + 3] == static_cast<std::uint8_t>(23 * 7 + 3));  // image 1, row 2, col 3

    // a dimension above 2^16 read big-endian: 0x00010203 = 66051
    const io::idx_array c = io::parse_idx("c", idx_bytes({0x00010203}, iota_bytes(66051)));
    CHECK(c.dims == std::vector<int>{66051});
    CHECK(c.data.size() == 66051);

    const io::idx_array d = io::parse_idx("d", idx_bytes({1, 2, 1, 3}, iota_bytes(6)));
    CHECK(d.dims == std::vector<int>{1, 2, 1, 3});
    CHECK(d.data == iota_bytes(6));
}

TEST_CASE("idx: gzip round trip, plain and compressed files read alike") {
    const std::vector<std::uint8_t> plain = idx_bytes({10, 7, 9}, iota_bytes(630));
    const std::vector<std::uint8_t> gz = gzip(plain);
    REQUIRE(gz.size() > 2);
    CHECK(gz[0] == 0x1f);
    CHECK(gz[1] == 0x8b);
    CHECK(io::gunzip("g", gz) == plain);

    write_bytes(idx_temp("x-idx3-ubyte"), plain);
    write_bytes(idx_temp("x-idx3-ubyte.gz"), gz);
    const io::idx_array from_plain = io::read_idx(idx_temp("x-idx3-ubyte"));
    const io::idx_array from_gz = io::read_idx(idx_temp("x-idx3-ubyte.gz"));
    CHECK(from_plain.dims == std::vector<int>{10, 7, 9});
    CHECK(from_gz.dims == from_plain.dims);
    CHECK(from_gz.data == from_plain.data);
    CHECK(from_gz.data == iota_bytes(630));

    // larger than one 64 KiB output chunk, stored and compressed at every level
    const std::vector<std::uint8_t> big = iota_bytes(300'000);
    for (int level : {0, 1, 9}) CHECK(io::gunzip("big", gzip(big, level)) == big);

    // concatenated members are one stream, as gzip -d reads them
    std::vector<std::uint8_t> two = gzip({1, 2, 3});
    const std::vector<std::uint8_t> second = gzip({4, 5});
    two.insert(two.end(), second.begin(), second.end());
    CHECK(io::gunzip("two", two) == std::vector<std::uint8_t>{1, 2, 3, 4, 5});

    // empty content is not an IDX file, but it is a valid gzip stream
    CHECK(io::gunzip("empty", gzip({})).empty());
}

TEST_CASE("idx: malformed headers and sizes are clear errors naming the field") {
    struct bad_case {
        std::vector<std::uint8_t> bytes;
        std::vector<std::string> expected;  // each must appear in the message
    };
    const std::vector<bad_case> cases = {
        {{}, {"truncated header", "0 bytes"}},
        {{0, 0, 8}, {"truncated header", "3 bytes"}},
        {{0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3}, {"truncated header", "3 dimensions need 16 bytes", "has 12"}},
        {{0x1f, 0x00, 0x08, 0x01, 0, 0, 0, 1, 0}, {"magic number", "0x1F 0x00", "expected 0x00 0x00"}},
        {{0x00, 0x01, 0x08, 0x01, 0, 0, 0, 1, 0}, {"magic number", "0x00 0x01"}},
        {idx_bytes({2}, {0, 0}, 0x09), {"type code 0x09", "signed byte", "only 0x08"}},
        {idx_bytes({2}, {0, 0, 0, 0}, 0x0B), {"type code 0x0B", "int16", "only 0x08"}},
        {idx_bytes({2}, iota_bytes(8), 0x0C), {"type code 0x0C", "int32", "only 0x08"}},
        {idx_bytes({2}, iota_bytes(8), 0x0D), {"type code 0x0D", "float32", "only 0x08"}},
        {idx_bytes({2}, iota_bytes(16), 0x0E), {"type code 0x0E", "float64", "only 0x08"}},
        {idx_bytes({2}, {0, 0}, 0x07), {"type code 0x07", "not an IDX type"}},
        {idx_bytes({2}, {0, 0}, 0xFF), {"type code 0xFF", "not an IDX type"}},
        {{0, 0, 8, 0}, {"number of dimensions", "is 0", "expected 1 to 4"}},
        {idx_bytes({1, 1, 1, 1, 1}, {7}), {"number of dimensions", "is 5", "expected 1 to 4"}},
        {{0, 0, 8, 255}, {"number of dimensions", "is 255"}},
        {idx_bytes({3, 0, 4}, {}), {"dimension 1 is 0"}},
        {idx_bytes({0}, {}), {"dimension 0 is 0"}},
        {idx_bytes({65536, 65536}, {}), {"dimensions 65536 x 65536", "more than the limit of 2147483647 bytes"}},
        {idx_bytes({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {}),
         {"dimensions 4294967295 x 4294967295 x 4294967295 x 4294967295", "limit"}},
        {idx_bytes({0x80000000}, {}), {"dimensions 2147483648", "limit"}},
        {idx_bytes({2, 3}, iota_bytes(5)), {"dimensions 2 x 3 need 6 bytes", "has 5", "(truncated)"}},
        {idx_bytes({2, 3}, {}), {"need 6 bytes", "has 0", "(truncated)"}},
        {idx_bytes({2, 3}, iota_bytes(7)), {"dimensions 2 x 3 need 6 bytes", "has 7", "(trailing bytes)"}},
        {idx_bytes({60000, 28, 28}, iota_bytes(100)), {"60000 x 28 x 28 need 47040000 bytes", "has 100"}},
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
        CAPTURE(i);
        const std::string msg = error_of([&] { (void)io::parse_idx("bad.idx", cases[i].bytes); });
        CAPTURE(msg);
        CHECK(msg.find("idx file 'bad.idx'") != std::string::npos);
        for (const std::string& e : cases[i].expected) CHECK(msg.find(e) != std::string::npos);
    }
    // the largest array allowed passes the size check (and fails only on its missing data)
    const std::string msg = error_of([] { (void)io::parse_idx("max", idx_bytes({0x7FFFFFFF}, {1})); });
    CHECK(msg.find("need 2147483647 bytes of data but the file has 1 (truncated)") != std::string::npos);
}

TEST_CASE("idx: corrupted, truncated and oversized gzip streams are clear errors") {
    const std::vector<std::uint8_t> plain = idx_bytes({100, 50}, iota_bytes(5000));
    const std::vector<std::uint8_t> gz = gzip(plain);
    auto message = [](std::vector<std::uint8_t> bytes, std::size_t max = io::gunzip_max_bytes) {
        return error_of([&] { (void)io::gunzip("data.gz", bytes, max); });
    };
    auto has = [](const std::string& msg, const std::string& what) {
        CAPTURE(msg);
        CHECK(msg.find("gzip file 'data.gz'") != std::string::npos);
        CHECK(msg.find(what) != std::string::npos);
    };

    has(message({0x1f}), "magic bytes 1f 8b");
    has(message(plain), "magic bytes 1f 8b");
    has(message({0x1f, 0x8b}), "truncated");
    for (const std::size_t keep : {std::size_t{10}, gz.size() / 2, gz.size() - 8, gz.size() - 1}) {
        CAPTURE(keep);
        has(message({gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(keep)}), "truncated");
    }
    {  // another compression method than deflate in the header
        std::vector<std::uint8_t> b = gz;
        b[2] = 7;
        has(message(b), "corrupted");
    }
    {  // the CRC of the trailer
        std::vector<std::uint8_t> b = gz;
        b[b.size() - 6] ^= 0x55;
        has(message(b), "incorrect data check");
    }
    {  // the length of the trailer
        std::vector<std::uint8_t> b = gz;
        b[b.size() - 3] ^= 0x01;
        has(message(b), "incorrect length check");
    }
    {  // a block header in the middle of the deflate stream: every flip is an error, never a crash
        for (std::size_t at = 10; at < gz.size() - 8; at += 7) {
            std::vector<std::uint8_t> b = gz;
            b[at] ^= 0xA5;
            CAPTURE(at);
            const std::string msg = message(b);
            CHECK(msg.find("gzip file 'data.gz'") != std::string::npos);
        }
    }
    {  // bytes after the stream that are not another member
        std::vector<std::uint8_t> b = gz;
        b.insert(b.end(), {0, 0, 0});
        has(message(b), "3 bytes after the end of the gzip stream");
    }
    // a gzip bomb: 64 MiB of zeros in about 64 KiB, with the limit at 1 MiB
    const std::vector<std::uint8_t> bomb = gzip(std::vector<std::uint8_t>(std::size_t{64} << 20), 9);
    CHECK(bomb.size() < (std::size_t{1} << 17));
    has(message(bomb, std::size_t{1} << 20), "decompresses to more than the limit of 1048576 bytes");
    CHECK(io::gunzip("ok", bomb, std::size_t{64} << 20).size() == std::size_t{64} << 20);  // exactly the limit is fine
    CHECK(io::gunzip_max_bytes == std::size_t{1} << 30);

    // read_idx: the path is in the message, for gzip and IDX errors alike
    write_bytes(idx_temp("cut.gz"), {gz.begin(), gz.begin() + 20});
    CHECK(error_of([] { (void)io::read_idx(idx_temp("cut.gz")); }).find(idx_temp("cut.gz")) != std::string::npos);
    write_bytes(idx_temp("short.gz"), gzip(idx_bytes({4}, {1, 2})));
    const std::string msg = error_of([] { (void)io::read_idx(idx_temp("short.gz")); });
    CHECK(msg.find(std::string{"idx file '"} + idx_temp("short.gz") + "'") != std::string::npos);
    CHECK(msg.find("need 4 bytes of data but the file has 2") != std::string::npos);
    CHECK(error_of([] { (void)io::read_idx(idx_temp("absent")); }).find("cannot open") != std::string::npos);
}

TEST_CASE("idx: load_idx_pair checks ranks, counts and labels") {
    const std::string images = idx_temp("pair-images.gz"), labels = idx_temp("pair-labels");
    write_bytes(images, gzip(idx_bytes({3, 2, 2}, iota_bytes(12))));
    write_bytes(labels, idx_bytes({3}, {2, 0, 1}));
    const io::labelled_images s = io::load_idx_pair(images, labels, 3);
    CHECK(s.count == 3);
    CHECK(s.rows == 2);
    CHECK(s.cols == 2);
    CHECK(s.pixels == iota_bytes(12));
    CHECK(s.labels == std::vector<std::uint8_t>{2, 0, 1});

    auto message = [&](const std::string& img, const std::string& lbl, int classes) {
        return error_of([&] { (void)io::load_idx_pair(img, lbl, classes); });
    };
    // a label not below the number of classes: its index and value
    std::string msg = message(images, labels, 2);
    CHECK(msg.find(labels) != std::string::npos);
    CHECK(msg.find("label at index 0 is 2, expected below 2") != std::string::npos);
    write_bytes(idx_temp("pair-labels-bad"), idx_bytes({3}, {0, 1, 200}));
    msg = message(images, idx_temp("pair-labels-bad"), 10);
    CHECK(msg.find("label at index 2 is 200, expected below 10") != std::string::npos);

    write_bytes(idx_temp("flat-images"), idx_bytes({3, 4}, iota_bytes(12)));
    msg = message(idx_temp("flat-images"), labels, 3);
    CHECK(msg.find(idx_temp("flat-images")) != std::string::npos);
    CHECK(msg.find("images have 2 dimensions, expected 3") != std::string::npos);

    write_bytes(idx_temp("labels-2d"), idx_bytes({3, 1}, {0, 1, 2}));
    msg = message(images, idx_temp("labels-2d"), 3);
    CHECK(msg.find("labels have 2 dimensions, expected 1") != std::string::npos);

    write_bytes(idx_temp("labels-4"), idx_bytes({4}, {0, 1, 2, 0}));
    msg = message(images, idx_temp("labels-4"), 3);
    CHECK(msg.find(std::string{"has 4 labels but '"} + images + "' has 3 images") != std::string::npos);

    CHECK(message(images, labels, 0).find("classes is 0, expected 1 to 256") != std::string::npos);
    CHECK(message(images, labels, 300).find("classes is 300") != std::string::npos);
}

TEST_CASE("idx: load_fashion_mnist says what is missing and how to install it") {
    std::string msg = error_of([] { (void)io::load_fashion_mnist(idx_temp("no-such-dir")); });
    CHECK(msg.find(std::string{"directory '"} + idx_temp("no-such-dir") + "' does not exist") != std::string::npos);
    CHECK(msg.find("apt-get install dataset-fashion-mnist") != std::string::npos);

    const std::string dir = idx_temp("fm-partial");
    fs::create_directories(dir);
    write_bytes(dir + "/train-images-idx3-ubyte.gz", gzip(idx_bytes({2, 28, 28}, iota_bytes(1568))));
    msg = error_of([&] { (void)io::load_fashion_mnist(dir); });
    CHECK(msg.find("train-labels-idx1-ubyte.gz' is missing") != std::string::npos);
    CHECK(msg.find("apt-get install dataset-fashion-mnist") != std::string::npos);

    // a complete small set, labels plain (uncompressed files are found too)
    write_bytes(dir + "/train-labels-idx1-ubyte", idx_bytes({2}, {9, 0}));
    write_bytes(dir + "/t10k-images-idx3-ubyte.gz", gzip(idx_bytes({1, 28, 28}, iota_bytes(784))));
    write_bytes(dir + "/t10k-labels-idx1-ubyte.gz", gzip(idx_bytes({1}, {3})));
    const io::fashion_mnist fm = io::load_fashion_mnist(dir);
    CHECK(fm.train.count == 2);
    CHECK(fm.train.labels == std::vector<std::uint8_t>{9, 0});
    CHECK(fm.test.count == 1);
    CHECK(fm.test.labels == std::vector<std::uint8_t>{3});

    // not 28 x 28
    write_bytes(dir + "/t10k-images-idx3-ubyte.gz", gzip(idx_bytes({1, 2, 2}, iota_bytes(4))));
    msg = error_of([&] { (void)io::load_fashion_mnist(dir); });
    CHECK(msg.find("images are 2 x 2, Fashion-MNIST's are 28 x 28") != std::string::npos);
}

TEST_CASE("idx: the real Fashion-MNIST (Debian's dataset-fashion-mnist)") {
    // No skip: a missing dataset fails here with load_fashion_mnist's message, which names the
    // package (tools/install_deps.sh installs it).
    io::fashion_mnist fm;
    try {
        fm = io::load_fashion_mnist();
    } catch (const ctnet::error& e) {
        FAIL(std::string{e.what()});
    }
    CHECK(fm.train.count == 60000);
    CHECK(fm.test.count == 10000);
    for (const io::labelled_images* s : {&fm.train, &fm.test}) {
        CHECK(s->rows == 28);
        CHECK(s->cols == 28);
        CHECK(s->pixels.size() == static_cast<std::size_t>(s->count) * 28 * 28);
        REQUIRE(s->labels.size() == static_cast<std::size_t>(s->count));
        std::array<int, 256> per_class{};
        for (const std::uint8_t l : s->labels) ++per_class[l];
        CHECK(std::accumulate(per_class.begin() + 10, per_class.end(), 0) == 0);  // every label below 10
        for (int c = 0; c < 10; ++c) {
            CAPTURE(c);
            CHECK(per_class[static_cast<std::size_t>(c)] == s->count / 10);  // 6000 train, 1000 test each
        }
    }
    // known values, as Python's gzip module reads the files
    CHECK(std::vector<std::uint8_t>(fm.train.labels.begin(), fm.train.labels.begin() + 10) ==
          std::vector<std::uint8_t>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5});
    CHECK(std::vector<std::uint8_t>(fm.test.labels.begin(), fm.test.labels.begin() + 10) ==
          std::vector<std::uint8_t>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7});
    auto sum = [](const std::vector<std::uint8_t>& v, std::size_t n) {
        return std::accumulate(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n), std::uint64_t{0});
    };
    CHECK(sum(fm.train.pixels, 784) == 76247);  // the first image
    CHECK(sum(fm.test.pixels, 784) == 33456);
    CHECK(sum(fm.train.pixels, fm.train.pixels.size()) == 3431114169ULL);
    CHECK(sum(fm.test.pixels, fm.test.pixels.size()) == 573469082ULL);
}
