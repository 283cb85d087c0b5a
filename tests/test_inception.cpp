// Inception v3 / v2 as types, against the reference tables measured on torchvision 0.14.1
// (tests/reference/): every conv's geometry and shapes, every block's output, parameters and
// MACs, the state_dict keys in order, and the totals. Then forward passes of the reference
// runner: batch consistency, planned vs unplanned memory, training mode with the aux head.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ctnet/ctnet.hpp>

using namespace ctnet;
using v3 = models::inception_v3<>;
using v3_noaux = models::inception_v3<1000, 299, models::inception_options{.aux_logits = false}>;
using v2 = models::inception_v2<>;

namespace {

std::vector<std::string> lines_of(const std::string& file) {
    std::ifstream in{std::string{CTNET_TEST_REFERENCE_DIR} + "/" + file};
    REQUIRE_MESSAGE(in.good(), "cannot open reference table " << file);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss{s};
    for (std::string f; std::getline(ss, f, sep);) out.push_back(f);
    return out;
}

// "(32, 3, 3, 3)" -> {32, 3, 3, 3}; "None" -> {}
std::vector<long long> numbers(const std::string& s) {
    std::vector<long long> out;
    std::string digits;
    for (char ch : s + ' ') {
        if (std::isdigit(static_cast<unsigned char>(ch))) digits += ch;
        else if (ch != ',' || digits.empty()) {
            if (!digits.empty()) out.push_back(std::stoll(digits));
            digits.clear();
        }
    }
    return out;
}

}  // namespace

TEST_CASE("totals equal torchvision's") {
    static_assert(param_count_v<v3> == 27'161'264);
    static_assert(param_count_v<v3_noaux> == 23'834'568);
    static_assert(macs_v<v3> == 5'713'216'096);
    static_assert(train_macs_v<v3> == 5'713'216'096 + 5'683'200);
    static_assert(macs_v<v3_noaux> == macs_v<v3>);
    static_assert(output_shape_v<v3> == shape{1000});
    static_assert(input_shape_v<v3> == shape{3, 299, 299});
    // Inception v2 (the paper's ablation): the stem's 3x3 convs 3->32 (s2), 32->32, 32->64 with
    // their BN (928 + 9280 + 18560 params; 19,181,664 + 199,148,544 + 398,297,088 MACs) become
    // one 7x7 s2 conv 3->64 + BN: 64*3*49 + 128 = 9,536 params, 64*147*147*147 = 203,297,472 MACs.
    static_assert(param_count_v<v2> == 27'161'264 - (928 + 9'280 + 18'560) + 9'536);
    static_assert(macs_v<v2> == 5'713'216'096 - (19'181'664 + 199'148'544 + 398'297'088) + 203'297'472);
    // BN-auxiliary (the paper's v3): the aux fc loses its bias (1000) and gains a batch norm
    // (weight and bias: 2000).
    static_assert(param_count_v<models::inception_v3<1000, 299, models::inception_options{.bn_aux = true}>> ==
                  27'161'264 - 1000 + 2000);
    // Other class counts change only the two fc layers: (2048 + 768 + 2) params per class.
    static_assert(param_count_v<models::inception_v3<10>> == 27'161'264 - 990 * (2048 + 768 + 2));
}

TEST_CASE("the paper's section 9 variants: inception_v3's tensors, 151x151 at equal MACs, 79x79 at 0.938x") {
    using low151 = models::inception_v3_lowres<151>;
    using low79 = models::inception_v3_lowres<79>;
    static_assert(param_count_v<low151> == param_count_v<v3> && param_count_v<low79> == param_count_v<v3>);
    static_assert(input_shape_v<low151> == shape{3, 151, 151} && input_shape_v<low79> == shape{3, 79, 79});
    static_assert(macs_v<low151> == macs_v<v3>);  // every map from the first conv's output on is 299's
    // By hand from ../shared/reference/inception_v3_convs.txt (torchvision's 94 convs at 299x299) with
    // the stem at 79 (first conv at stride 1: outputs 77, 75, 75; no max pool: 75 into Conv2d_3b,
    // 73 out of Conv2d_4a, 36 after maxpool2) and the 35x35 convs at 36x36: 5,359,655,520, plus
    // the fc's 2048 x 1000.
    static_assert(macs_v<low79> == 5'359'655'520 + 2'048'000);
    const auto& a = weights<low79>::tensors();
    const auto& b = weights<v3>::tensors();
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        INFO(b[i].name);
        CHECK(a[i].name == b[i].name);
        CHECK(a[i].count == b[i].count);
    }
}

TEST_CASE("BN-auxiliary: the aux fc is batch-normalised") {
    using bn_aux = models::inception_v3<1000, 299, models::inception_options{.bn_aux = true}>;
    CHECK(weights<bn_aux>::info("AuxLogits.fc_bn.running_var").dims == std::vector<int>{1000});
    CHECK(weights<bn_aux>::info("AuxLogits.fc.weight").dims == std::vector<int>{1000, 768});
    CHECK_THROWS_AS(static_cast<void>(weights<bn_aux>::info("AuxLogits.fc.bias")), error);
}

TEST_CASE("every conv of Inception v3 matches torchvision's layer table at 299x299") {
    const auto& p = v3::program;
    std::map<std::string, const op*> convs;
    for (int i = 0; i < p.n_ops; ++i)
        if (p.ops[i].kind == op_kind::conv) convs[std::string{p.ops[i].path.view()}] = &p.ops[i];
    int rows = 0;
    for (const std::string& line : lines_of("inception_v3_layers_299.tsv")) {
        const std::vector<std::string> f = split(line, '\t');
        if (f.size() < 8 || f[1] != "conv") continue;
        ++rows;
        INFO(f[0]);
        REQUIRE(convs.count(f[0]) == 1);
        const op& o = *convs[f[0]];
        const std::vector<long long> w = numbers(f[2]), st = numbers(f[3]), pd = numbers(f[4]), in = numbers(f[5]),
                                     out = numbers(f[6]);
        CHECK(w == std::vector<long long>{o.out.s.c, o.in.s.c, o.win.kh, o.win.kw});
        CHECK(st == std::vector<long long>{o.win.sh, o.win.sw});
        CHECK(pd == std::vector<long long>{o.win.pt, o.win.pl});
        CHECK(o.win.pt == o.win.pb);
        CHECK(o.win.pl == o.win.pr);
        CHECK(in == std::vector<long long>{o.in.s.c, o.in.s.h, o.in.s.w});
        CHECK(out == std::vector<long long>{o.out.s.c, o.out.s.h, o.out.s.w});
        CHECK(std::stoll(f[7]) == static_cast<long long>(o.macs));
        CHECK_FALSE(o.bias);
    }
    CHECK(rows == 96);  // 94 on the eval path + AuxLogits.conv0 and conv1
    CHECK(convs.size() == 96);
}

TEST_CASE("every block of Inception v3 matches torchvision's block table") {
    const auto& p = v3::program;
    int rows = 0;
    for (const std::string& line : lines_of("inception_v3_blocks_299.md")) {
        const std::vector<std::string> f = split(line, '|');
        if (f.size() < 5 || f[1].find("module") != std::string::npos || f[1].find("---") != std::string::npos) continue;
        std::string name = f[1];
        name.erase(std::remove(name.begin(), name.end(), ' '), name.end());
        INFO(name);
        const block* b = nullptr;
        for (int i = 0; i < p.n_blocks; ++i)
            if (p.blocks[i].name.view() == name) b = &p.blocks[i];
        REQUIRE(b != nullptr);
        std::size_t params = 0, macs = 0;
        for (int i = b->first_op; i < b->end_op; ++i) {
            params += p.ops[i].params;
            macs += p.ops[i].macs;
        }
        std::vector<long long> s = numbers(f[2]);
        while (s.size() < 3) s.push_back(1);  // (1000,) is (1000, 1, 1)
        CHECK(s == std::vector<long long>{b->out.s.c, b->out.s.h, b->out.s.w});
        std::string digits = f[3] + " " + f[4];
        digits.erase(std::remove(digits.begin(), digits.end(), ','), digits.end());
        const std::vector<long long> pm = numbers(digits);
        REQUIRE(pm.size() == 2);
        CHECK(pm[0] == static_cast<long long>(params));
        CHECK(pm[1] == static_cast<long long>(macs));
        CHECK(b->train_only == (name == "AuxLogits"));
        ++rows;
    }
    CHECK(rows == 22);
    CHECK(p.n_blocks == 22);
}

TEST_CASE("parameter tensors are torchvision's state_dict, in order, with shapes") {
    std::vector<std::string> want;
    for (const std::string& line : lines_of("inception_v3_state_dict_keys.txt")) {
        const std::vector<std::string> f = split(line, '\t');
        if (f.size() < 2 || f[0].ends_with("num_batches_tracked")) continue;
        want.push_back(f[0] + " " + f[1]);
    }
    std::vector<std::string> got;
    std::size_t offset = 0;
    for (const tensor_info& t : weights<v3>::tensors()) {
        std::string dims = "(";
        for (std::size_t i = 0; i < t.dims.size(); ++i) dims += (i ? ", " : "") + std::to_string(t.dims[i]);
        dims += t.dims.size() == 1 ? ",)" : ")";
        got.push_back(t.name + " " + dims);
        CHECK(t.offset == offset);
        offset += t.count;
    }
    CHECK(offset == storage_count_v<v3>);
    CHECK(want.size() == 580 - 96);  // 96 batch norms, each with a num_batches_tracked
    CHECK(got == want);
}

TEST_CASE("input sizes: the minimum 75x75 works, and shapes scale") {
    using small = models::inception_v3<10, 75, models::inception_options{.aux_logits = false}>;
    static_assert(output_shape_v<small> == shape{10});
    const auto& p = small::program;
    for (int i = 0; i < p.n_blocks; ++i)
        if (p.blocks[i].name.view() == "Mixed_7c") CHECK(p.blocks[i].out.s == shape{2048, 1, 1});
    using mid = models::inception_v3<1000, 139, models::inception_options{.aux_logits = false}>;
    for (int i = 0; i < mid::program.n_blocks; ++i)
        if (mid::program.blocks[i].name.view() == "Mixed_6e") CHECK(mid::program.blocks[i].out.s == shape{768, 7, 7});
}

TEST_CASE("forward: batches equal single samples, planned arena equals one buffer per tensor") {
    using net = models::inception_v3<16, 107, models::inception_options{.aux_logits = false, .transform_input = true}>;
    weights<net> w;
    init_seeded(w, 9, true);
    std::vector<float> x(3 * input_shape_v<net>.size());
    rng g{4};
    for (float& v : x) v = static_cast<float>(g.normal());

    runner<net> planned{w};
    runner<net> kept{w, {.keep_activations = true}};
    const std::vector<float> y = planned(x);
    CHECK(y == kept(x));
    CHECK(planned.arena_floats() == 3 * net::program.arena);
    REQUIRE(y.size() == 3 * 16);
    for (float v : y) CHECK(std::isfinite(v));
    for (int i = 0; i < 3; ++i) {
        const std::size_t n = input_shape_v<net>.size();
        const std::vector<float> xi(x.begin() + static_cast<long>(i * n), x.begin() + static_cast<long>((i + 1) * n));
        const std::vector<float> yi = planned(xi);
        for (int j = 0; j < 16; ++j) CHECK(yi[j] == y[i * 16 + j]);
    }
    const std::vector<float> m7c = kept.block_output("Mixed_7c");
    CHECK(m7c.size() == 3 * 2048 * 2 * 2);
    CHECK(std::any_of(m7c.begin(), m7c.end(), [](float v) { return v > 0.0F; }));
    CHECK(std::all_of(m7c.begin(), m7c.end(), [](float v) { return v >= 0.0F; }));  // ends in relu
}

TEST_CASE("forward at 299x299 in training mode gives the aux logits") {
    weights<v3> w;
    init_seeded(w, 21, true);
    runner<v3> r{w, {.seed = 5}};
    std::vector<float> x(2 * input_shape_v<v3>.size());
    rng g{8};
    for (float& v : x) v = static_cast<float>(g.normal());
    std::vector<float> y(2 * 1000), aux(2 * 1000);
    r.forward(x, y, mode::train, aux);
    for (float v : aux) REQUIRE(std::isfinite(v));
    for (float v : y) REQUIRE(std::isfinite(v));
    CHECK(aux != y);
    // Batch statistics: the aux logits of sample 0 depend on sample 1.
    std::vector<float> x2 = x;
    for (std::size_t j = input_shape_v<v3>.size(); j < x2.size(); ++j) x2[j] *= 2.0F;
    std::vector<float> aux2(2 * 1000);
    r.forward(x2, y, mode::train, aux2);
    CHECK(std::vector<float>(aux.begin(), aux.begin() + 1000) != std::vector<float>(aux2.begin(), aux2.begin() + 1000));
}
