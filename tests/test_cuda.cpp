// backend::cuda against the reference runner: random networks (strides, asymmetric padding,
// 1xn / nx1, concat slices, a batch norm after a pool that cannot be folded, linear, softmax), a
// conv-only network compared element by element, and Inception v3, in FP32 (<= 1e-5 relative)
// and TF32 (<= 1e-2), with and without CUDA Graphs, at batch 3, then 1, then 3 again. A
// non-finite output fails every comparison.
// Without a GPU (CI) only the error path runs: constructing a runner must say that no usable
// device exists; the parity cases report that they were skipped.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <ctnet/ctnet.hpp>
#include <ctnet/cuda/runner.hpp>

#include "check.hpp"

using namespace ctnet;

namespace {

std::vector<float> random_vector(std::size_t n, rng& g) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(g.normal());
    return v;
}

using test::relative_error;

bool have_gpu() {
    if (cuda::device_count() > 0) return true;
    MESSAGE("skipped: no CUDA device on this machine");
    return false;
}

// Tail: nothing (the logits are compared) or softmax.
template <class... Tail>
using small_net_t =
    network<shape{3, 19, 17},
            seq<node<"c1", conv<8, k<3>, stride<2>, pad<1, 0>, bias<true>>>, node<"bn", batch_norm<>>,
                node<"mixed", concat<node<"a", models::basic_conv<5, k<1, 3>, pad<0, 1>>>,
                                     seq<max_pool<k<3>, stride<1>, pad<1>>, node<"bnp", batch_norm<>>>,
                                     seq<node<"b", models::basic_conv<70, k<3>, pad<1>>>, relu>,
                                     seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"p", models::basic_conv<4, k<7, 1>, pad<3, 0>>>>>>,
                node<"c2", conv<6, k<2>, stride<2>>>, global_avg_pool, flatten, node<"fc", linear<6, 3>>, Tail...>>;
using small_net = small_net_t<>;
using small_softmax = small_net_t<softmax>;

// No pooling after the convs, so an error at an image edge is not averaged away.
using conv_net = network<shape{5, 13, 11},
                         seq<concat<node<"a", conv<70, k<1, 7>, stride<2, 1>, pad<0, 3>, bias<true>>>,
                                    node<"b", models::basic_conv<9, k<3>, stride<2, 1>, pad<1, 1>>>>>>;

template <class Net>
void compare(const weights<Net>& w, const std::vector<float>& x, double fp32_tol, double tf32_tol) {
    runner<Net> ref{w};
    const std::vector<float> want = ref(x);
    for (const bool graphs : {false, true}) {
        runner<Net, backend::cuda> exact{w, {.engine = cuda::engine::nchw, .precision = cuda::precision::fp32, .graphs = graphs}};
        runner<Net, backend::cuda> fast{w, {.engine = cuda::engine::nchw, .precision = cuda::precision::tf32, .graphs = graphs}};
        const std::vector<float> a = exact(x), b = fast(x);
        MESSAGE("graphs " << graphs << ": fp32 " << relative_error(a, want) << ", tf32 " << relative_error(b, want));
        CHECK(relative_error(a, want) < fp32_tol);
        CHECK(relative_error(b, want) < tf32_tol);
        // The second and third passes at a size (with graphs: the capture, then its launch) repeat the first.
        for (int pass = 0; pass < 2; ++pass) {
            CHECK(exact(x) == a);
            CHECK(fast(x) == b);
        }
        const std::vector<float> one(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(input_shape_v<Net>.size()));
        const std::vector<float> a1 = exact(one);  // another batch size: a new arena (and graph)
        CHECK(relative_error(a1, std::vector<float>(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(a1.size()))) < fp32_tol);
        CHECK(exact(one) == a1);
        CHECK(exact(x) == a);  // and back to the first size
    }
}

}  // namespace

TEST_CASE("backend::cuda: without a usable device, constructing a runner says so") {
    if (cuda::device_count() > 0) {
        MESSAGE("a CUDA device is present: the no-device error cannot be shown on this machine");
        return;
    }
    weights<small_net> w;
    init_seeded(w, 3, true);
    std::string e;
    try {
        runner<small_net, backend::cuda> r{w};
    } catch (const ctnet::error& x) {
        e = x.what();
    }
    MESSAGE(e);
    CHECK(e.find("no usable CUDA device") != std::string::npos);
}

TEST_CASE("backend::cuda equals the reference runner on a random network (fp32 and tf32)") {
    if (!have_gpu()) return;
    weights<small_net> w;
    init_seeded(w, 3, true);
    rng g{4};
    const std::vector<float> x = random_vector(3 * input_shape_v<small_net>.size(), g);
    compare(w, x, 1e-5, 1e-2);
    weights<small_softmax> ws;  // the same parameters, then a softmax
    std::copy(w.data().begin(), w.data().end(), ws.data().begin());
    compare(ws, x, 1e-5, 1e-2);
}

TEST_CASE("backend::cuda equals the reference runner element by element on a conv-only network") {
    if (!have_gpu()) return;
    weights<conv_net> w;
    init_seeded(w, 6, true);
    rng g{7};
    compare(w, random_vector(3 * input_shape_v<conv_net>.size(), g), 1e-5, 1e-2);
}

TEST_CASE("backend::cuda equals the reference runner on Inception v3 (fp32 and tf32)") {
    if (!have_gpu()) return;
    using net = models::inception_v3<1000, 107, models::inception_options{.aux_logits = false, .transform_input = true}>;
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 17, true);
    rng g{5};
    compare(*w, random_vector(3 * input_shape_v<net>.size(), g), 1e-5, 1e-2);
    runner<net, backend::cuda> r{*w, {.engine = cuda::engine::nchw}};
    CHECK(r.fused_convs() == 94);
}
