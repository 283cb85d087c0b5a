// Reference kernels through the public API (tiny networks, the runner), against hand-computed
// values, and the convolution against an independent direct formula on random shapes.
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include <ctnet/ctnet.hpp>

using namespace ctnet;

namespace {

template <class Net>
std::vector<float> run(weights<Net>& w, std::vector<float> x, mode m = mode::eval) {
    runner<Net> r{w};
    return r(x, m);
}

std::vector<float> iota_input(std::size_t n, float start = 1.0F) {
    std::vector<float> v(n);
    std::iota(v.begin(), v.end(), start);
    return v;
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, double tol = 1e-5) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("index " << i);
        CHECK(got[i] == doctest::Approx(want[i]).epsilon(tol));
    }
}

}  // namespace

TEST_CASE("conv: 2x2 kernel of ones, no padding") {
    using net = network<shape{1, 3, 3}, node<"c", conv<1, k<2>>>>;
    static_assert(output_shape_v<net> == shape{1, 2, 2});
    weights<net> w;
    std::ranges::fill(w["c.weight"], 1.0F);
    check_close(run(w, iota_input(9)), {12, 16, 24, 28});
}

TEST_CASE("conv: 3x3 kernel of ones, padding 1, with bias") {
    using net = network<shape{1, 3, 3}, node<"c", conv<1, k<3>, pad<1>, bias<true>>>>;
    weights<net> w;
    std::ranges::fill(w["c.weight"], 1.0F);
    w["c.bias"][0] = 0.5F;
    check_close(run(w, iota_input(9)), {12.5, 21.5, 16.5, 27.5, 45.5, 33.5, 24.5, 39.5, 28.5});
}

TEST_CASE("conv: asymmetric padding (bottom and right only)") {
    using net = network<shape{1, 3, 3}, node<"c", conv<1, k<2>, pad4<0, 1, 0, 1>>>>;
    static_assert(output_shape_v<net> == shape{1, 3, 3});
    weights<net> w;
    std::ranges::fill(w["c.weight"], 1.0F);
    check_close(run(w, iota_input(9)), {12, 16, 9, 24, 28, 15, 15, 17, 9});
}

TEST_CASE("conv: 1x3 and 3x1 kernels, stride 2, two input channels") {
    // input channel 0 = 1..16, channel 1 = all 1; weight taps (1, 0, -1) on channel 0, 10 on channel 1.
    using row = network<shape{2, 4, 4}, node<"c", conv<1, k<1, 3>, stride<2>, pad<0, 1>>>>;
    static_assert(output_shape_v<row> == shape{1, 2, 2});
    weights<row> w;
    const float taps[] = {1, 0, -1, 0, 10, 0};  // weight (1, 2, 1, 3)
    std::ranges::copy(taps, w["c.weight"].begin());
    std::vector<float> x = iota_input(16);
    x.resize(32, 1.0F);
    // out(oh, ow): x0[2oh][2ow-1] - x0[2oh][2ow+1] + 10, with x0[r][-1] = 0
    check_close(run(w, x), {0 - 2 + 10, 2 - 4 + 10, 0 - 10 + 10, 10 - 12 + 10});

    using col = network<shape{1, 4, 4}, node<"c", conv<1, k<3, 1>, pad<1, 0>>>>;
    weights<col> wc;
    std::ranges::fill(wc["c.weight"], 1.0F);
    const std::vector<float> y = run(wc, iota_input(16));
    CHECK(y[0] == 1 + 5);            // rows -1, 0, 1 at column 0
    CHECK(y[5] == 2 + 6 + 10);       // rows 0, 1, 2 at column 1
    CHECK(y[15] == 12 + 16);         // rows 2, 3, 4 at column 3
}

namespace {

// The textbook definition, written independently of the kernel: one output at a time, in double.
std::vector<float> direct_conv(const std::vector<float>& x, shape in, const std::vector<float>& wt, int out_c,
                               const window& g, int n) {
    const int oh_n = (in.h + g.pt + g.pb - g.kh) / g.sh + 1, ow_n = (in.w + g.pl + g.pr - g.kw) / g.sw + 1;
    std::vector<float> y(static_cast<std::size_t>(n) * out_c * oh_n * ow_n);
    std::size_t at = 0;
    for (int i = 0; i < n; ++i)
        for (int o = 0; o < out_c; ++o)
            for (int oh = 0; oh < oh_n; ++oh)
                for (int ow = 0; ow < ow_n; ++ow) {
                    double acc = 0;
                    for (int c = 0; c < in.c; ++c)
                        for (int a = 0; a < g.kh; ++a)
                            for (int b = 0; b < g.kw; ++b) {
                                const int ih = oh * g.sh + a - g.pt, iw = ow * g.sw + b - g.pl;
                                if (ih < 0 || iw < 0 || ih >= in.h || iw >= in.w) continue;
                                acc += static_cast<double>(wt[((o * in.c + c) * g.kh + a) * g.kw + b]) *
                                       x[((static_cast<std::size_t>(i) * in.c + c) * in.h + ih) * in.w + iw];
                            }
                    y[at++] = static_cast<float>(acc);
                }
    return y;
}

}  // namespace

TEST_CASE("conv: reference kernel equals the direct definition on random shapes") {
    rng g{7};
    auto pick = [&](int lo, int hi) { return lo + static_cast<int>(g.next() % static_cast<unsigned>(hi - lo + 1)); };
    int tested = 0;
    for (int t = 0; t < 300; ++t) {
        const shape in{pick(1, 5), pick(1, 9), pick(1, 9)};
        const window win{pick(1, 4), pick(1, 4), pick(1, 3), pick(1, 3), pick(0, 2), pick(0, 2), pick(0, 2), pick(0, 2)};
        if (in.h + win.pt + win.pb < win.kh || in.w + win.pl + win.pr < win.kw) continue;
        const int out_c = pick(1, 4), n = pick(1, 3);
        const shape out = detail::window_shape(in, win, out_c);
        std::vector<float> x(n * in.size()), wt(static_cast<std::size_t>(out_c) * in.c * win.kh * win.kw);
        for (float& v : x) v = static_cast<float>(g.normal());
        for (float& v : wt) v = static_cast<float>(g.normal());
        std::vector<float> y(n * out.size());
        cpu::ref::conv2d({x.data(), in.size(), in}, {y.data(), out.size(), out}, n, wt.data(), nullptr, win);
        const std::vector<float> want = direct_conv(x, in, wt, out_c, win, n);
        REQUIRE(y.size() == want.size());
        for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == doctest::Approx(want[i]).epsilon(1e-4).scale(1.0));
        ++tested;
    }
    CHECK(tested > 150);
}

TEST_CASE("batch_norm: eval uses running statistics, eps inside the square root") {
    using net = network<shape{2, 1, 2}, node<"bn", batch_norm<ratio<1>>>>;  // eps = 1
    weights<net> w;
    auto set = [&](const char* name, float a, float b) { w[name][0] = a; w[name][1] = b; };
    set("bn.weight", 4, 1);
    set("bn.bias", 1, 0);
    set("bn.running_mean", 1, 2);
    set("bn.running_var", 3, 3);
    // channel 0: (x - 1) / sqrt(3 + 1) * 4 + 1 = 2x - 1 ; channel 1: (x - 2) / 2
    check_close(run(w, {2, 5, -3, 4}), {3, 9, -2.5, 1});
    check_close(run(w, {3, 0, 7, 8}), {5, -1, 2.5, 3});
}

TEST_CASE("batch_norm: training mode normalises with the batch's mean and biased variance") {
    using net = network<shape{1, 1, 2}, node<"bn", batch_norm<ratio<1, 1000000000>>>>;  // eps = 1e-9
    weights<net> w;
    w["bn.weight"][0] = 1;
    w["bn.running_var"][0] = 1;
    // batch of 2 samples x 2 values: {1, 3, 5, 7}: mean 4, biased var 5
    const std::vector<float> y = run(w, {1, 3, 5, 7}, mode::train);
    const float s = 1.0F / std::sqrt(5.0F);
    check_close(y, {-3 * s, -1 * s, 1 * s, 3 * s});
}

TEST_CASE("relu, softmax, linear, flatten, global average pool") {
    using net = network<shape{2, 2, 2}, seq<relu, global_avg_pool, flatten, node<"fc", linear<2, 3>>, softmax>>;
    static_assert(output_shape_v<net> == shape{3});
    weights<net> w;
    const float wt[] = {1, 0, 0, 1, 1, 1};
    std::ranges::copy(wt, w["fc.weight"].begin());
    w["fc.bias"][2] = -1;
    // relu -> channel means: c0 = (0 + 2 + 0 + 4) / 4 = 1.5, c1 = (1 + 1 + 1 + 1) / 4 = 1
    // fc -> (1.5, 1, 1.5); softmax
    const std::vector<float> y = run(w, {-1, 2, -3, 4, 1, 1, 1, 1});
    const double e1 = std::exp(1.5), e2 = std::exp(1.0);
    check_close(y, {static_cast<float>(e1 / (2 * e1 + e2)), static_cast<float>(e2 / (2 * e1 + e2)),
                    static_cast<float>(e1 / (2 * e1 + e2))});
}

TEST_CASE("linear: hand-computed with bias") {
    using net = network<shape{2}, node<"fc", linear<2, 3>>>;
    weights<net> w;
    const float wt[] = {1, 2, 3, 4, 5, 6};
    std::ranges::copy(wt, w["fc.weight"].begin());
    std::ranges::fill(w["fc.bias"], 1.0F);
    check_close(run(w, {1, 1, 2, -1}), {4, 8, 12, 1, 3, 5});
}

TEST_CASE("max pool: floor mode, and padding that never wins") {
    using plain = network<shape{1, 4, 4}, max_pool<k<3>, stride<2>>>;
    static_assert(output_shape_v<plain> == shape{1, 1, 1});
    weights<plain> w;
    check_close(run(w, iota_input(16, 0)), {10});

    using padded = network<shape{1, 4, 4}, max_pool<k<3>, stride<2>, pad<1>>>;
    static_assert(output_shape_v<padded> == shape{1, 2, 2});
    weights<padded> wp;
    check_close(run(wp, iota_input(16, 0)), {5, 7, 13, 15});
    std::vector<float> neg(16, -5.0F);
    check_close(run(wp, neg), {-5, -5, -5, -5});  // padding is -inf, not 0
}

TEST_CASE("avg pool: count_include_pad on and off") {
    using incl = network<shape{1, 3, 3}, avg_pool<k<3>, stride<1>, pad<1>>>;
    using excl = network<shape{1, 3, 3}, avg_pool<k<3>, stride<1>, pad<1>, count_pad<false>>>;
    weights<incl> wi;
    weights<excl> we;
    const std::vector<float> yi = run(wi, iota_input(9)), ye = run(we, iota_input(9));
    check_close(yi, {12 / 9.F, 21 / 9.F, 16 / 9.F, 27 / 9.F, 5, 33 / 9.F, 24 / 9.F, 39 / 9.F, 28 / 9.F});
    check_close(ye, {12 / 4.F, 21 / 6.F, 16 / 4.F, 27 / 6.F, 5, 33 / 6.F, 24 / 4.F, 39 / 6.F, 28 / 4.F});

    using strided = network<shape{1, 4, 4}, avg_pool<k<2>>>;  // stride defaults to the kernel
    static_assert(output_shape_v<strided> == shape{1, 2, 2});
    weights<strided> ws;
    check_close(run(ws, iota_input(16, 0)), {2.5, 4.5, 10.5, 12.5});
}

TEST_CASE("dropout: identity in eval, zero-or-scaled in training") {
    using net = network<shape{1000}, seq<relu, dropout<ratio<1, 4>>>>;
    weights<net> w;
    std::vector<float> x(1000, 3.0F);
    CHECK(run(w, x) == x);
    const std::vector<float> y = run(w, x, mode::train);
    int zeros = 0;
    for (float v : y) {
        CHECK((v == 0.0F || v == doctest::Approx(4.0)));
        zeros += v == 0.0F;
    }
    CHECK(zeros > 180);  // p = 1/4 of 1000: 250 expected, 6 sigma below is 167
    CHECK(zeros < 320);
}

TEST_CASE("transform_input: torchvision's constants") {
    using net = network<shape{3, 1, 1}, transform_input>;
    weights<net> w;
    check_close(run(w, {0, 0, 0}), {-0.03F, -0.088F, -0.188F});
    check_close(run(w, {1, 1, 1}), {0.458F - 0.03F, 0.448F - 0.088F, 0.45F - 0.188F});
}
