// Reference kernels through the public API (tiny networks, the runner), against hand-computed
// values, and the convolution against an independent direct formula on random shapes. Max
// pooling's ceil_mode: sizes from torch's formula, hand-computed values through both CPU runners,
// and the reference and SIMD kernels on random ceil-mode windows against a naive definition.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <ctnet/cpu/backward.hpp>
#include <ctnet/cpu/fast_runner.hpp>
#include <ctnet/cpu/pool_fast.hpp>
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

// ---- max pooling with ceil_mode (torch's MaxPool2d(ceil_mode=True)) --------------------------

namespace {

template <shape In, class... Opts>
constexpr shape pooled = output_shape_v<network<In, max_pool<Opts...>>>;

}  // namespace

// Worked by hand from torch's rule, per axis: out = ceil((H + 2p - k) / s) + 1, then out -= 1 if
// (out - 1) * s >= H + p. Each line: (H, k, s, p), ceil size, floor size (checked once against
// torch 2.x's F.max_pool2d).
// (5, 2, 2, 0): ceil(3/2) + 1 = 3; 2*2 = 4 < 5 keeps it. floor 3/2 + 1 = 2
static_assert(pooled<shape{1, 5, 5}, k<2>, stride<2>, ceil_mode> == shape{1, 3, 3});
static_assert(pooled<shape{1, 5, 5}, k<2>, stride<2>> == shape{1, 2, 2});
// (6, 3, 2, 1): ceil(5/2) + 1 = 4; 3*2 = 6 < 7. floor 3
static_assert(pooled<shape{1, 6, 6}, k<3>, stride<2>, pad<1>, ceil_mode> == shape{1, 4, 4});
static_assert(pooled<shape{1, 6, 6}, k<3>, stride<2>, pad<1>> == shape{1, 3, 3});
// (4, 2, 2, 1): (4 + 2 - 2) / 2 is exact: ceil = floor = 3
static_assert(pooled<shape{1, 4, 4}, k<2>, stride<2>, pad<1>, ceil_mode> == shape{1, 3, 3});
// the correction: (5, 3, 3, 1): ceil(4/3) + 1 = 3, but (3 - 1) * 3 = 6 >= 5 + 1 starts in the
// bottom padding: 2 (= floor)
static_assert(pooled<shape{1, 5, 5}, k<3>, stride<3>, pad<1>, ceil_mode> == shape{1, 2, 2});
// the correction: (4, 2, 3, 1): ceil(4/3) + 1 = 3; 6 >= 5: 2
static_assert(pooled<shape{1, 4, 4}, k<2>, stride<3>, pad<1>, ceil_mode> == shape{1, 2, 2});
// the correction: (9, 4, 4, 2): ceil(9/4) + 1 = 4; 12 >= 11: 3
static_assert(pooled<shape{1, 9, 9}, k<4>, stride<4>, pad<2>, ceil_mode> == shape{1, 3, 3});
// the correction: (2, 1, 2, 0): ceil(1/2) + 1 = 2; 2 >= 2: 1
static_assert(pooled<shape{1, 2, 2}, k<1>, stride<2>, ceil_mode> == shape{1, 1, 1});
// (1, 1, 2, 0): ceil(0/2) + 1 = 1
static_assert(pooled<shape{1, 1, 1}, k<1>, stride<2>, ceil_mode> == shape{1, 1, 1});
// (7, 3, 3, 0): ceil(4/3) + 1 = 3; 6 < 7 (two padded rows: more than k/2, added by ceil mode). floor 2
static_assert(pooled<shape{1, 7, 7}, k<3>, stride<3>, ceil_mode> == shape{1, 3, 3});
static_assert(pooled<shape{1, 7, 7}, k<3>, stride<3>> == shape{1, 2, 2});
// (10, 3, 2, 1): ceil(9/2) + 1 = 6; 10 < 11. floor 5
static_assert(pooled<shape{1, 10, 10}, k<3>, stride<2>, pad<1>, ceil_mode> == shape{1, 6, 6});
// (8, 4, 3, 2): ceil(8/3) + 1 = 4; 9 < 10. floor 3
static_assert(pooled<shape{1, 8, 8}, k<4>, stride<3>, pad<2>, ceil_mode> == shape{1, 4, 4});
// torchvision's GoogLeNet at 224: maxpool1..3 (3, 2, ceil) 112 -> 56 -> 28 -> 14 (floor would
// give 55, 27, 13), maxpool4 (2, 2, ceil) 14 -> 7
static_assert(pooled<shape{64, 112, 112}, k<3>, stride<2>, ceil_mode> == shape{64, 56, 56});
static_assert(pooled<shape{64, 112, 112}, k<3>, stride<2>> == shape{64, 55, 55});
static_assert(pooled<shape{192, 56, 56}, k<3>, stride<2>, ceil_mode> == shape{192, 28, 28});
static_assert(pooled<shape{480, 28, 28}, k<3>, stride<2>, ceil_mode> == shape{480, 14, 14});
static_assert(pooled<shape{832, 14, 14}, k<2>, stride<2>, ceil_mode> == shape{832, 7, 7});
// each axis by its own rule: H (5, 2, 2, 1): ceil(5/2) + 1 = 4, 6 >= 6: 3; W (7, 3, 3, 0): 3
static_assert(pooled<shape{2, 5, 7}, k<2, 3>, stride<2, 3>, pad<1, 0>, ceil_mode> == shape{2, 3, 3});
static_assert(pooled<shape{2, 5, 7}, k<2, 3>, stride<2, 3>, pad<1, 0>> == shape{2, 3, 2});

TEST_CASE("max pool ceil_mode: lowering, shapes in the program and the summary") {
    // The op runs floor-mode pooling on the window with ceil mode's extra bottom / right padding.
    using net = network<shape{1, 5, 7}, node<"pool", max_pool<k<2, 3>, stride<2, 3>, ceil_mode>>>;
    static_assert(output_shape_v<net> == shape{1, 3, 3});  // H: ceil(3/2) + 1 = 3; W: ceil(4/3) + 1 = 3
    static_assert(net::program.ops[0].win == window{2, 3, 2, 3, 0, 1, 0, 2});
    // already exact, nothing added; the correction case adds nothing either
    static_assert(network<shape{1, 4, 4}, max_pool<k<2>, stride<2>, pad<1>, ceil_mode>>::program.ops[0].win ==
                  window{2, 2, 2, 2, 1, 1, 1, 1});
    static_assert(network<shape{1, 5, 5}, max_pool<k<3>, stride<3>, pad<1>, ceil_mode>>::program.ops[0].win ==
                  window{3, 3, 3, 3, 1, 1, 1, 1});
    // a seq after the pool sees the ceil-mode shape (the shape rule, not only the op)
    using chained = network<shape{1, 112, 112}, seq<max_pool<k<3>, stride<2>, ceil_mode>, max_pool<k<3>, stride<2>, ceil_mode>,
                                                    flatten, node<"fc", linear<56 * 56 / 4, 2>>>>;
    static_assert(output_shape_v<chained> == shape{2});

    std::ostringstream os;
    print_summary<net>(os, "ceil");
    const std::string table = os.str();
    INFO(table);
    std::string row;
    for (std::istringstream lines{table}; std::getline(lines, row);)
        if (row.starts_with("pool ")) break;
    CHECK(row.starts_with("pool "));
    CHECK(row.find(" (1,3,3) ") != std::string::npos);
}

TEST_CASE("max pool ceil_mode: hand-computed, reference and backend::cpu runners") {
    // 0..24 as 5x5, 2x2 windows at stride 2: rows {0,1} {2,3} {4}, columns alike; the maximum of
    // a window is its last row's last column: rows 1, 3, 4 and columns 1, 3, 4.
    using net5 = network<shape{1, 5, 5}, max_pool<k<2>, stride<2>, ceil_mode>>;
    // 0..35 as 6x6, 3x3 windows at stride 2, padding 1: rows {0,1} {1..3} {3..5} {5}
    using net6 = network<shape{1, 6, 6}, max_pool<k<3>, stride<2>, pad<1>, ceil_mode>>;
    // 0..48 as 7x7, 3x3 at stride 3 (backend::cpu's general-stride path): rows {0..2} {3..5} {6}
    using net7 = network<shape{1, 7, 7}, max_pool<k<3>, stride<3>, ceil_mode>>;
    const std::vector<float> want5{6, 8, 9, 16, 18, 19, 21, 23, 24};
    const std::vector<float> want6{7, 9, 11, 11, 19, 21, 23, 23, 31, 33, 35, 35, 31, 33, 35, 35};
    const std::vector<float> want7{16, 19, 20, 37, 40, 41, 44, 47, 48};

    weights<net5> w5;
    weights<net6> w6;
    weights<net7> w7;
    runner<net5, backend::cpu> f5{w5};
    runner<net6, backend::cpu> f6{w6};
    runner<net7, backend::cpu> f7{w7};
    CHECK(run(w5, iota_input(25, 0)) == want5);
    CHECK(f5(iota_input(25, 0)) == want5);
    CHECK(run(w6, iota_input(36, 0)) == want6);
    CHECK(f6(iota_input(36, 0)) == want6);
    CHECK(run(w7, iota_input(49, 0)) == want7);
    CHECK(f7(iota_input(49, 0)) == want7);

    // two samples, the second reversed: the last window's single input is its maximum
    std::vector<float> two = iota_input(25, 0);
    for (int i = 24; i >= 0; --i) two.push_back(static_cast<float>(i));
    const std::vector<float> want_two{6, 8, 9, 16, 18, 19, 21, 23, 24, 24, 22, 20, 14, 12, 10, 4, 2, 0};
    CHECK(run(w5, two) == want_two);
    CHECK(f5(two) == want_two);

    // the added padding is -inf, not 0: a window holding one input row / column of -5s is -5
    const std::vector<float> neg(25, -5.0F), want_neg(9, -5.0F);
    CHECK(run(w5, neg) == want_neg);
    CHECK(f5(neg) == want_neg);
}

namespace {

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same_float(float a, float b) { return a == b || (std::isnan(a) && std::isnan(b)); }

// The windows of one axis in torch's ceil mode, written as a count: window o (starting at
// o * s - lo) exists when it starts inside the input or the leading padding, and it overhangs
// the end of the padded axis (n + lo + hi) by less than a stride.
int torch_ceil_windows(int n, int k, int s, int lo, int hi) {
    int count = 0;
    for (int o = 0; o * s - lo < n; ++o)
        if (o * s + k - (n + lo + hi) <= s - 1) ++count;
    return count;
}

// torch's max pooling of one plane from its definition: the maximum over the window's taps inside
// the input (the padding never wins); and the index of the first maximum in scan order, which
// receives the window's gradient. No NaNs here.
struct naive_pool {
    std::vector<float> y;
    std::vector<int> arg;
};
naive_pool naive_max_pool(const float* x, int h, int w, int oh_n, int ow_n, const window& g) {
    naive_pool r{std::vector<float>(static_cast<std::size_t>(oh_n) * ow_n), std::vector<int>(static_cast<std::size_t>(oh_n) * ow_n)};
    for (int oh = 0; oh < oh_n; ++oh)
        for (int ow = 0; ow < ow_n; ++ow) {
            int best = -1;
            for (int ih = oh * g.sh - g.pt; ih < oh * g.sh - g.pt + g.kh; ++ih)
                for (int iw = ow * g.sw - g.pl; iw < ow * g.sw - g.pl + g.kw; ++iw)
                    if (ih >= 0 && ih < h && iw >= 0 && iw < w && (best < 0 || x[ih * w + iw] > x[best])) best = ih * w + iw;
            REQUIRE(best >= 0);  // ceil mode never makes a window without an input
            r.y[static_cast<std::size_t>(oh) * ow_n + ow] = x[best];
            r.arg[static_cast<std::size_t>(oh) * ow_n + ow] = best;
        }
    return r;
}

}  // namespace

TEST_CASE("max pool ceil_mode: reference and SIMD kernels on random windows, against torch's definition") {
    rng g{2024};
    auto pick = [&](int lo, int hi) { return lo + static_cast<int>(g.next() % static_cast<unsigned>(hi - lo + 1)); };
    int grown = 0, corrected = 0;
    for (int t = 0; t < 400; ++t) {
        window user;  // as written: torch's limits (padding at most half the kernel)
        user.kh = pick(1, 5);
        user.kw = pick(1, 5);
        user.sh = pick(1, 4);
        user.sw = pick(1, 4);
        user.pt = pick(0, user.kh / 2);
        user.pb = t % 3 == 0 ? pick(0, user.kh / 2) : user.pt;  // also pad4's asymmetric padding
        user.pl = pick(0, user.kw / 2);
        user.pr = t % 3 == 0 ? pick(0, user.kw / 2) : user.pl;
        const int c = pick(1, 3), n = pick(1, 2);
        const shape in{c, pick(std::max(1, user.kh - user.pt - user.pb), 13), pick(std::max(1, user.kw - user.pl - user.pr), 13)};
        const window win = detail::ceil_mode_window(user, in);
        const shape out = detail::window_shape(in, win, c);
        const auto where = [&] {
            return std::to_string(in.c) + "x" + std::to_string(in.h) + "x" + std::to_string(in.w) + ", window " +
                   std::to_string(user.kh) + "x" + std::to_string(user.kw) + " stride " + std::to_string(user.sh) + "," +
                   std::to_string(user.sw) + " pad " + std::to_string(user.pt) + "," + std::to_string(user.pb) + "," +
                   std::to_string(user.pl) + "," + std::to_string(user.pr) + " -> extra " + std::to_string(win.pb - user.pb) +
                   "," + std::to_string(win.pr - user.pr);
        };
        INFO(where());
        // the sizes: torch's, and only the bottom / right padding grows, by less than a stride
        REQUIRE(out.h == torch_ceil_windows(in.h, user.kh, user.sh, user.pt, user.pb));
        REQUIRE(out.w == torch_ceil_windows(in.w, user.kw, user.sw, user.pl, user.pr));
        REQUIRE(win.pt == user.pt);
        REQUIRE(win.pl == user.pl);
        REQUIRE((win.pb - user.pb >= 0 && win.pb - user.pb < user.sh));
        REQUIRE((win.pr - user.pr >= 0 && win.pr - user.pr < user.sw));
        grown += win.pb > user.pb || win.pr > user.pr;
        corrected += (in.h + user.pt + user.pb - user.kh + user.sh - 1) / user.sh + 1 > out.h ||
                     (in.w + user.pl + user.pr - user.kw + user.sw - 1) / user.sw + 1 > out.w;

        std::vector<float> x(static_cast<std::size_t>(n) * in.size());
        for (float& v : x) v = std::round(static_cast<float>(g.normal()) * 1.5F) / 2.0F;  // ties within windows
        std::vector<float> y(static_cast<std::size_t>(n) * out.size()), dy(y.size()), dx(x.size(), 0.0F);
        for (float& v : dy) v = static_cast<float>(g.normal());
        cpu::ref::max_pool({x.data(), in.size(), in}, {y.data(), out.size(), out}, n, win);
        cpu::ref::max_pool_backward({x.data(), in.size(), in}, {dy.data(), out.size(), out}, {dx.data(), in.size(), in}, n, win);

        // the reference on the lowered window against the naive ceil-mode definition
        std::vector<float> want_dx(x.size(), 0.0F);
        const std::size_t ip = static_cast<std::size_t>(in.h) * in.w, op_ = static_cast<std::size_t>(out.h) * out.w;
        bool fwd = true;
        for (std::size_t p = 0; p < static_cast<std::size_t>(n * c); ++p) {
            const naive_pool r = naive_max_pool(x.data() + p * ip, in.h, in.w, out.h, out.w, user);
            for (std::size_t j = 0; j < op_; ++j) {
                fwd = fwd && same_bits(y[p * op_ + j], r.y[j]);
                want_dx[p * ip + static_cast<std::size_t>(r.arg[j])] += dy[p * op_ + j];
            }
        }
        CHECK_MESSAGE(fwd, "forward: reference vs naive");
        bool bwd = true;
        for (std::size_t j = 0; j < x.size(); ++j) bwd = bwd && same_bits(dx[j], want_dx[j]);
        CHECK_MESSAGE(bwd, "backward: reference vs naive");

        // backend::cpu's planes against the reference, bit for bit, NaN included
        if (t % 4 == 0) x[static_cast<std::size_t>(pick(0, static_cast<int>(x.size()) - 1))] = std::numeric_limits<float>::quiet_NaN();
        std::fill(dx.begin(), dx.end(), 0.0F);
        cpu::ref::max_pool({x.data(), in.size(), in}, {y.data(), out.size(), out}, n, win);
        cpu::ref::max_pool_backward({x.data(), in.size(), in}, {dy.data(), out.size(), out}, {dx.data(), in.size(), in}, n, win);
        constexpr float guard = 12345.0F;  // scratch past the size the kernels ask for stays untouched
        const auto tmp_n = static_cast<std::size_t>(in.w + win.pl + win.pr);
        const auto tf_n = static_cast<std::size_t>(cpu::max_pool_train_floats(out.w, win));
        const auto ti_n = static_cast<std::size_t>(cpu::max_pool_train_ints(out.w));
        std::vector<float> tmp(tmp_n + 8, guard), tf(tf_n + 8, guard);
        std::vector<std::int32_t> ti(ti_n + 8, -7);
        std::vector<float> ys(op_), yt(op_), dxs(x.size(), 0.0F);
        std::vector<std::int32_t> arg(op_);
        bool plane = true, train = true, back = true, scratch = true;
        for (std::size_t p = 0; p < static_cast<std::size_t>(n * c); ++p) {
            const float* xp = x.data() + p * ip;
            cpu::max_pool_plane(xp, in.h, in.w, ys.data(), out.h, out.w, win, tmp.data());
            cpu::max_pool_train_plane(xp, in.h, in.w, yt.data(), arg.data(), out.h, out.w, win, tf.data(), ti.data());
            cpu::max_pool_backward_plane(arg.data(), dy.data() + p * op_, static_cast<int>(op_), dxs.data() + p * ip);
            for (std::size_t j = 0; j < op_; ++j) {
                plane = plane && same_float(ys[j], y[p * op_ + j]);
                train = train && same_float(yt[j], y[p * op_ + j]);
            }
        }
        for (std::size_t j = 0; j < x.size(); ++j) back = back && same_bits(dxs[j], dx[j]);
        for (std::size_t j = tmp_n; j < tmp.size(); ++j) scratch = scratch && tmp[j] == guard;
        for (std::size_t j = tf_n; j < tf.size(); ++j) scratch = scratch && tf[j] == guard;
        for (std::size_t j = ti_n; j < ti.size(); ++j) scratch = scratch && ti[j] == -7;
        CHECK_MESSAGE(plane, "cpu::max_pool_plane vs reference");
        CHECK_MESSAGE(train, "cpu::max_pool_train_plane vs reference");
        CHECK_MESSAGE(back, "cpu::max_pool_backward_plane vs reference backward");
        CHECK_MESSAGE(scratch, "scratch written past its size");
    }
    CHECK(grown > 100);      // most trials really pad
    CHECK(corrected > 10);   // and torch's correction is exercised
}
