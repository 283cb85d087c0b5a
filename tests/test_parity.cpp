// Parity with torchvision: the same seeded weights (random BN statistics included) and inputs
// through torchvision's Inception v3 (tools/parity_reference.py, run by ctest just before) and
// through ctnet's types and reference kernels. Relative error max|ctnet - torch| / max|torch|
// of the logits and of every Mixed_* block output must be at most 1e-4.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <ctnet/ctnet.hpp>
#include <ctnet/io/npy.hpp>
#include <ctnet/io/safetensors.hpp>

#include "check.hpp"

using namespace ctnet;
using models::inception_options;

namespace {

const std::string dir = CTNET_PARITY_DIR;
constexpr double tolerance = 1e-4;
constexpr const char* blocks[] = {"Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                                  "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"};

void expect_close(const std::string& what, const std::vector<float>& got, const std::string& file) {
    const io::npy_array want = io::read_npy(file);
    const double e = test::relative_error(got, want.data);
    std::printf("parity %-34s relative error %.3g\n", what.c_str(), e);
    INFO(what);
    CHECK(e <= tolerance);
}

template <class Net>
void check_case(const std::string& name, bool training) {
    weights<Net> w;
    const io::load_report rep = io::load_safetensors(dir + "/weights.safetensors", w, {.ignore_prefix = "AuxLogits."});
    CHECK(rep.loaded == weights<Net>::tensors().size());

    const io::npy_array x = io::read_npy(dir + "/" + name + "/input.npy");
    REQUIRE(x.shape.size() == 4);
    const std::size_t n = x.shape[0];
    runner<Net> r{w, {.keep_activations = true}};
    std::vector<float> y(n * output_shape_v<Net>.size());
    if (training) {
        std::vector<float> aux(n * 1000);
        r.forward(x.data, y, mode::train, aux);
        expect_close(name + " aux logits", aux, dir + "/" + name + "/aux.npy");
        return;
    }
    r.forward(x.data, y);
    expect_close(name + " logits", y, dir + "/" + name + "/logits.npy");
    for (const char* b : blocks) expect_close(name + " " + b, r.block_output(b), dir + "/" + name + "/" + b + ".npy");
}

}  // namespace

TEST_CASE("parity: 299x299, batch 1") { check_case<models::inception_v3<>>("b1_299", false); }

TEST_CASE("parity: 299x299, batch 3, transform_input") {
    check_case<models::inception_v3<1000, 299, inception_options{.transform_input = true}>>("b3_299_transform", false);
}

TEST_CASE("parity: 107x107, batch 3") {
    check_case<models::inception_v3<1000, 107, inception_options{.aux_logits = false}>>("b3_107", false);
}

TEST_CASE("parity: 107x107, batch 1, transform_input") {
    check_case<models::inception_v3<1000, 107, inception_options{.aux_logits = false, .transform_input = true}>>(
        "b1_107_transform", false);
}

TEST_CASE("parity: TF-slim pools (count_include_pad=False), 139x139, batch 2") {
    check_case<models::inception_v3<1000, 139, inception_options{.aux_logits = false, .count_include_pad = false}>>(
        "b2_139_slim", false);
}

TEST_CASE("parity: training-mode aux logits (batch statistics), 299x299, batch 4") {
    check_case<models::inception_v3<>>("train_b4_299", true);
}

// The paper's section 9 variants against torchvision's modules with the same stem changes
// (tools/parity_reference.py: lowres()); the 79x79 one in training mode too (its aux head runs
// on a 17x17 grid reached through a 36x36 one).
TEST_CASE("parity: 151x151 receptive field (first conv at stride 1), batch 2") {
    check_case<models::inception_v3_lowres<151>>("lowres151_b2", false);
}

TEST_CASE("parity: 79x79 receptive field (stride 1, no first max pool), batch 2") {
    check_case<models::inception_v3_lowres<79>>("lowres79_b2", false);
}

TEST_CASE("parity: 79x79 receptive field, training-mode aux logits, batch 4") {
    check_case<models::inception_v3_lowres<79>>("train_lowres79_b4", true);
}
