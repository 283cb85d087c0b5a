// tests/onnx/test_onnx.cpp — ONNX import and export.
//
// Round trips against torchvision (tools/onnx_reference.py runs first, as a ctest fixture): torch
// 1.13 exports inception_v3 / googlenet with weights from a fresh seed; `ctnet import` made the
// headers compiled into this program at build time (from another seed: the header depends on the
// architecture only, and the fixture checks that a fresh import gives the same text) and the
// weights at test time. The generated type's logits (reference kernels) must equal torch's within
// 1e-4 relative (max |ctnet - torch| / max |torch|, tests/check.hpp), and its param_count_v and
// macs_v must equal what torch counts for the same graph (stats.json: sum of parameters(), and
// the MACs of every Conv2d and Linear from forward hooks; folded BN: the fused graph's).
// Then hostile files: every one refused with a ctnet::error naming what is wrong.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <ctnet/ctnet.hpp>
#include <ctnet/io/npy.hpp>
#include <ctnet/onnx/export.hpp>
#include <ctnet/onnx/import.hpp>

#include "check.hpp"
#include "roundtrip.hpp"

namespace onnx_test {

std::vector<model_entry>& registry() {
    static std::vector<model_entry> r;
    return r;
}
bool add_model(const model_entry& e) {
    registry().push_back(e);
    return true;
}
const model_entry* find_model(const std::string& name) {
    for (const model_entry& e : registry())
        if (e.name == name) return &e;
    return nullptr;
}

}  // namespace onnx_test

using namespace ctnet;

namespace {

const std::string dir = CTNET_ONNX_DIR;
constexpr double tolerance = 1e-4;

void check_roundtrip(const std::string& name) {
    const onnx_test::model_entry* e = onnx_test::find_model(name);
    REQUIRE_MESSAGE(e != nullptr, "the generated type " << name << " is not compiled in");
    const std::string d = dir + "/" + name;
    std::ifstream f(d + "/stats.json");
    REQUIRE_MESSAGE(f.good(), d << "/stats.json is missing: tools/onnx_reference.py did not run");
    const nlohmann::json stats = nlohmann::json::parse(f);
    const io::npy_array x = io::read_npy(d + "/input.npy");
    const io::npy_array want = io::read_npy(d + "/logits.npy");
    const onnx_test::model_run r = e->run(d + "/weights.safetensors", x.data);
    const double err = test::relative_error(r.logits, want.data);
    std::printf("onnx round trip %-26s seed %lld: relative error %.3g; params %zu (torch %lld), MACs %zu (torch %lld)\n",
                name.c_str(), stats["seed"].get<long long>(), err, e->params, stats["params"].get<long long>(), e->macs,
                stats["macs"].get<long long>());
    CHECK(err <= tolerance);
    CHECK(e->params == stats["params"].get<std::size_t>());
    CHECK(e->macs == stats["macs"].get<std::size_t>());
    CHECK(e->input == shape{3, static_cast<int>(x.shape[2]), static_cast<int>(x.shape[3])});
    CHECK(e->output == shape{1000});
}

// A small network with every kind of layer the importer maps.
using tiny = network<shape{3, 12, 12},
                     seq<node<"c1", conv<4, k<3>, pad4<1, 1, 0, 2>, bias<true>>>, node<"bn", batch_norm<ratio<1, 100000>>>,
                         relu,
                         concat<node<"a", conv<2, k<1>>>,
                                seq<max_pool<k<3>, stride<1>, pad<1>>, node<"b", conv<3, k<1, 3>, pad<0, 1>>>>>,
                         max_pool<k<3>, stride<2>, ceil_mode>, avg_pool<k<3>, stride<1>, pad<1>, count_pad<false>>,
                         node<"d", dropout<ratio<1, 5>>>, global_avg_pool, flatten, node<"fc", linear<5, 3>>, softmax>>;

onnx::model_desc tiny_desc(bool fold = false) {
    weights<tiny> w;
    init_seeded(w, 7, true);
    return onnx::describe(w, {.fold_bn = fold});
}

std::string import_error(const onnx::model_desc& m) {
    try {
        const std::vector<std::uint8_t> bytes = onnx::serialize_model(m);
        onnx::import_model(onnx::parse_model(bytes, "hostile.onnx"), {.name = "hostile"});
    } catch (const ctnet::error& e) {
        return e.what();
    }
    return "";
}

onnx::node_desc& find(onnx::model_desc& m, const std::string& op) {
    for (onnx::node_desc& n : m.nodes)
        if (n.op_type == op) return n;
    throw std::runtime_error("no " + op);
}

}  // namespace

TEST_CASE("onnx: torchvision inception_v3 round trip, batch norm kept") { check_roundtrip("tv_inception_v3"); }
TEST_CASE("onnx: torchvision inception_v3 round trip, batch norm folded by torch") {
    check_roundtrip("tv_inception_v3_folded");
}
TEST_CASE("onnx: torchvision googlenet round trip") {
    if (!onnx_test::find_model("tv_googlenet")) return;  // CTNET_ONNX_GOOGLENET=OFF
    check_roundtrip("tv_googlenet");
}

// The other way back: each imported torchvision type, exported by ctnet (batch 1) and run by ONNX
// Runtime (tools/ort: npm's onnxruntime-node, installed on first use; a failed install fails the
// test), gives torch's logits within 1e-4.
TEST_CASE("onnx: torchvision inception_v3 and googlenet, imported, exported by ctnet, run by ONNX Runtime = torch") {
    const std::string src = CTNET_SOURCE_DIR;
    REQUIRE_MESSAGE(std::system(("bash " + src + "/tools/ort/install.sh > /dev/null").c_str()) == 0,
                    "tools/ort/install.sh could not install ONNX Runtime (npm's onnxruntime-node)");
    for (const std::string name : {"tv_inception_v3", "tv_googlenet"}) {
        const onnx_test::model_entry* e = onnx_test::find_model(name);
        if (!e) continue;  // googlenet: CTNET_ONNX_GOOGLENET off
        INFO(name);
        const std::string d = dir + "/" + name;
        const io::npy_array x = io::read_npy(d + "/input.npy");
        const io::npy_array want = io::read_npy(d + "/logits.npy");
        REQUIRE(x.shape.size() == 4);
        const std::string out = d + "/ctnet_export.onnx", y = d + "/ctnet_export_ort.npy";
        e->export_onnx(d + "/weights.safetensors", out, static_cast<int>(x.shape[0]));
        std::remove(y.c_str());
        const std::string cmd = "node " + src + "/tools/ort/run.js " + out + " " + d + "/input.npy " + y + " --threads 2";
        REQUIRE(std::system(cmd.c_str()) == 0);
        const io::npy_array got = io::read_npy(y);
        const double err = test::relative_error(got.data, want.data);
        std::printf("onnx %s exported by ctnet, run by ONNX Runtime: relative error %.3g to torch\n", name.c_str(), err);
        CHECK(err <= tolerance);
    }
}

TEST_CASE("onnx: export then import gives the same network and weights") {
    weights<tiny> w;
    init_seeded(w, 7, true);
    const onnx::model_desc m = onnx::describe(w);
    const onnx::import_result r =
        onnx::import_model(onnx::parse_model(onnx::serialize_model(m)), {.name = "tiny_again"});
    CHECK(r.params == param_count_v<tiny>);
    CHECK(r.macs == macs_v<tiny>);
    CHECK(r.storage == storage_count_v<tiny>);
    CHECK(r.output == output_shape_v<tiny>);
    for (const char* part : {"ctnet::node<\"c1\", ctnet::conv<4, ctnet::k<3>, ctnet::pad4<1, 1, 0, 2>, ctnet::bias<true>>>",
                             "ctnet::batch_norm<ctnet::ratio<1, 100000>>", "ctnet::count_pad<false>", "ctnet::softmax",
                             "ctnet::dropout<ctnet::ratio<1, 5>>", "ctnet::concat<",
                             "ctnet::conv<3, ctnet::k<1, 3>, ctnet::pad<0, 1>>", "ctnet::node<\"fc\", ctnet::linear<5, 3>>"})
        CHECK_MESSAGE(r.header.find(part) != std::string::npos, part);
    // ceil mode comes back as the padding ctnet lowers it to
    CHECK(r.header.find("ctnet::max_pool<ctnet::k<3>, ctnet::stride<2>, ctnet::pad4<0, 1, 0, 1>>") != std::string::npos);
    for (const onnx::tensor_desc& t : r.tensors) {
        const std::span<const float> want = std::as_const(w)[t.name];
        CHECK_MESSAGE(test::max_abs_error(t.data, want) == 0.0, t.name);
    }
}

TEST_CASE("onnx: export with folded batch norm") {
    const onnx::model_desc m = tiny_desc(true);
    int bn = 0, conv = 0, concat = 0, flatten = 0;
    for (const onnx::node_desc& n : m.nodes) {
        bn += n.op_type == "BatchNormalization";
        conv += n.op_type == "Conv";
        concat += n.op_type == "Concat";
        flatten += n.op_type == "Flatten";
    }
    CHECK(bn == 0);
    CHECK(conv == 3);
    CHECK(concat == 1);
    CHECK(flatten == 1);
    const onnx::model_desc u = tiny_desc(false);
    int bn_u = 0;
    for (const onnx::node_desc& n : u.nodes) bn_u += n.op_type == "BatchNormalization";
    CHECK(bn_u == 1);
    CHECK(m.outputs[0].dims == std::vector<std::int64_t>{1, 3});
}

TEST_CASE("onnx: hostile files are refused with a clear error") {
    // truncated
    std::vector<std::uint8_t> bytes = onnx::serialize_model(tiny_desc());
    bytes.resize(bytes.size() / 2);
    try {
        onnx::parse_model(bytes, "cut.onnx");
        FAIL("a truncated file parsed");
    } catch (const ctnet::error& e) {
        CHECK(std::string(e.what()).find("cut.onnx: not a valid ONNX model") != std::string::npos);
    }
    // garbage
    const std::vector<std::uint8_t> junk(1000, 0xff);
    CHECK_THROWS_AS(onnx::parse_model(junk), ctnet::error);

    auto expect = [](onnx::model_desc m, const std::string& want) {
        const std::string got = import_error(m);
        INFO("want: " << want << "\ngot: " << got);
        CHECK(got.find(want) != std::string::npos);
    };
    {  // huge dims
        onnx::model_desc m = tiny_desc();
        m.initializers[0].dims = {std::int64_t{1} << 40, 1};
        expect(m, "has dimension 1099511627776");
    }
    {  // huge element count from modest dims
        onnx::model_desc m = tiny_desc();
        m.initializers[0].dims = {1 << 20, 1 << 20};
        expect(m, "elements");
    }
    {  // wrong initializer size: fewer bytes than the dims say
        onnx::model_desc m = tiny_desc();
        m.initializers[0].data.pop_back();
        expect(m, "bytes of data but its dims need");
    }
    {  // wrong initializer dims for the layer
        onnx::model_desc m = tiny_desc();
        onnx::tensor_desc& t = m.initializers[0];  // c1.weight (4, 3, 3, 3)
        t.dims = {4, 27};
        expect(m, "node '/c1/Conv' (Conv): its weight 'c1.weight' has dims (4, 27), want 4-D");
    }
    {  // missing initializer
        onnx::model_desc m = tiny_desc();
        m.initializers.erase(m.initializers.begin());
        expect(m, "node '/c1/Conv' (Conv): reads 'c1.weight', which is neither the graph input");
    }
    {  // dangling input
        onnx::model_desc m = tiny_desc();
        find(m, "Relu").inputs[0] = "nowhere";
        expect(m, "(Relu): reads 'nowhere'");
    }
    {  // a cycle
        onnx::model_desc m = tiny_desc();
        find(m, "Conv").inputs[0] = find(m, "Relu").outputs[0];
        expect(m, "is part of a cycle");
    }
    {  // negative pads
        onnx::model_desc m = tiny_desc();
        for (onnx::attribute_desc& a : find(m, "Conv").attrs)
            if (a.name == "pads") a.ints = {-1, 1, 1, 1};
        expect(m, "(Conv): pads (-1, 1, 1, 1) must be in [0, 4096]");
    }
    {  // an op ctnet does not have
        onnx::model_desc m = tiny_desc();
        find(m, "Relu").op_type = "Tanh";
        expect(m, "(Tanh): op 'Tanh' is not supported");
    }
    {  // grouped convolution
        onnx::model_desc m = tiny_desc();
        onnx::attribute_desc g;
        g.name = "group";
        g.i = 2;
        find(m, "Conv").attrs.push_back(g);
        expect(m, "(Conv): group 2 is not supported");
    }
    {  // two writers of one tensor
        onnx::model_desc m = tiny_desc();
        find(m, "Relu").outputs[0] = find(m, "Conv").outputs[0];
        expect(m, "which another node writes too");
    }
    {  // huge input
        onnx::model_desc m = tiny_desc();
        m.inputs[0].dims = {1, 3, 1 << 20, 12};
        expect(m, "C, H and W must be in [1, 65536]");
    }
    {  // a branch that skips its Concat: not series-parallel
        onnx::model_desc m = tiny_desc();
        const std::string pool = find(m, "MaxPool").outputs[0];  // a skip edge out of a branch
        onnx::node_desc& cat = find(m, "Concat");
        cat.inputs.insert(cat.inputs.begin() + 1, pool);
        for (onnx::tensor_desc& t : m.initializers)
            if (t.name == "fc.weight") {
                t.dims = {3, 9};
                t.data.resize(27);
            }
        expect(m, "(Concat): reads tensor");
    }
    {  // a bad type name
        try {
            onnx::import_model(tiny_desc(), {.name = "not a name"});
            FAIL("accepted");
        } catch (const ctnet::error& e) {
            CHECK(std::string(e.what()).find("is not a C++ identifier") != std::string::npos);
        }
    }
}

TEST_CASE("onnx: names are sanitised") {
    CHECK(onnx::sanitize_name("/Mixed_5b/branch1x1/conv") == "_Mixed_5b_branch1x1_conv");
    CHECK(onnx::sanitize_name("a..b.") == "a.b");
    CHECK(onnx::sanitize_name("1x1.conv") == "_1x1.conv");
    CHECK(onnx::sanitize_name("onnx::Conv_5") == "onnx__Conv_5");
}
