// Runners on xtensor containers and adaptors: same numbers as the span interface, static
// shapes for xtensor_fixed, no copies for adaptors over user memory, clear errors otherwise.
#include <doctest/doctest.h>

#include <type_traits>
#include <vector>

#include <ctnet/ctnet.hpp>
#include <ctnet/xtensor.hpp>

using namespace ctnet;

namespace {

using net = network<shape{3, 8, 8}, seq<node<"conv", conv<4, k<3>, pad<1>>>, relu, global_avg_pool, flatten,
                                        node<"fc", linear<4, 5>>>>;
using fmap = network<shape{3, 8, 8}, node<"conv", conv<2, k<3>, stride<2>>>>;  // output (2, 3, 3)

std::vector<float> random_vector(std::size_t n, std::uint64_t seed) {
    rng g{seed};
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(g.normal());
    return v;
}

}  // namespace

TEST_CASE("xtensor: dynamic containers give the span interface's numbers") {
    weights<net> w;
    init_seeded(w, 1);
    runner<net> r{w};
    const std::vector<float> v = random_vector(2 * 3 * 8 * 8, 2);
    xt::xtensor<float, 4> x = xt::adapt(v, std::array<std::size_t, 4>{2, 3, 8, 8});
    const xt::xtensor<float, 2> y = run(r, x);
    CHECK(y.shape()[0] == 2);
    CHECK(y.shape()[1] == 5);
    const std::vector<float> want = r(v);
    CHECK(std::vector<float>(y.begin(), y.end()) == want);

    // a non-flat output keeps its (N, C, H, W) shape
    weights<fmap> wf;
    init_seeded(wf, 3);
    runner<fmap> rf{wf};
    const xt::xtensor<float, 4> yf = run(rf, x);
    CHECK(yf.shape() == std::array<std::size_t, 4>{2, 2, 3, 3});
}

TEST_CASE("xtensor: fixed shapes stay fixed, checked at compile time") {
    weights<net> w;
    init_seeded(w, 1);
    runner<net> r{w};
    xt::xtensor_fixed<float, xt::xshape<3, 3, 8, 8>> x;
    const std::vector<float> v = random_vector(x.size(), 5);
    std::copy(v.begin(), v.end(), x.begin());
    const auto y = run(r, x);
    static_assert(std::is_same_v<std::decay_t<decltype(y)>, xt::xtensor_fixed<float, xt::xshape<3, 5>>>);
    CHECK(std::vector<float>(y.begin(), y.end()) == r(v));
}

TEST_CASE("xtensor: adaptors over user memory, read and written in place") {
    weights<net> w;
    init_seeded(w, 1);
    runner<net> r{w};
    std::vector<float> in = random_vector(4 * 3 * 8 * 8, 9), out(4 * 5, -1.0F);
    auto xa = xt::adapt(in.data(), in.size(), xt::no_ownership(), std::array<std::size_t, 4>{4, 3, 8, 8});
    auto ya = xt::adapt(out.data(), out.size(), xt::no_ownership(), std::array<std::size_t, 2>{4, 5});
    run_into(r, xa, ya);
    CHECK(ya.data() == out.data());
    CHECK(out == r(in));
}

TEST_CASE("xtensor: wrong shapes are errors naming both") {
    weights<net> w;
    runner<net> r{w};
    xt::xtensor<float, 4> x = xt::zeros<float>(std::array<std::size_t, 4>{1, 3, 8, 7});
    CHECK_THROWS_WITH_AS(run(r, x), doctest::Contains("input has shape (1, 3, 8, 7) but the network takes (N, 3, 8, 8)"),
                         error);
    xt::xtensor<float, 4> good = xt::zeros<float>(std::array<std::size_t, 4>{2, 3, 8, 8});
    xt::xtensor<float, 2> small = xt::zeros<float>(std::array<std::size_t, 2>{2, 4});
    CHECK_THROWS_WITH_AS(run_into(r, good, small), doctest::Contains("output has shape (2, 4), expected (2, 5)"), error);
}
