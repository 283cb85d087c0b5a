// backend::cpu against the reference: the GEMM convolution on random shapes (strides,
// asymmetric padding, 1xn / nx1, edge tiles), folded batch norm and ReLU, whole networks
// including Inception v3, and thread counts giving bit-identical results.
#include <doctest/doctest.h>

#include <algorithm>
#include <thread>
#include <cmath>
#include <iterator>
#include <limits>
#include <vector>

#include <ctnet/cpu/backward.hpp>
#include <ctnet/cpu/fast_runner.hpp>
#include <ctnet/ctnet.hpp>

#include "check.hpp"

using namespace ctnet;
using test::relative_error;

namespace {

std::vector<float> random_vector(std::size_t n, rng& g) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(g.normal());
    return v;
}

// One random conv: input, weights, bias, the reference output (ReLU applied if asked) and the
// packed_conv describing it (weights packed for the GEMM, or not, for Winograd).
struct conv_case {
    std::vector<float> x, w, b, want;
    cpu::packed_conv cv;
};

conv_case random_conv(shape in, const window& win, int m, bool relu, bool pack, rng& g) {
    const shape out = detail::window_shape(in, win, m);
    const int k = in.c * win.kh * win.kw;
    conv_case c{random_vector(in.size(), g), random_vector(static_cast<std::size_t>(m) * k, g),
                random_vector(static_cast<std::size_t>(m), g), std::vector<float>(out.size()), {}};
    cpu::ref::conv2d({c.x.data(), in.size(), in}, {c.want.data(), out.size(), out}, 1, c.w.data(), c.b.data(), win);
    if (relu)
        for (float& v : c.want) v = std::max(v, 0.0F);
    if (pack) c.cv.pack(c.w.data(), m, k);
    c.cv.m = m;
    c.cv.k = k;
    c.cv.bias = c.b;
    c.cv.relu = relu;
    c.cv.win = win;
    c.cv.in = in;
    c.cv.out = out;
    return c;
}

}  // namespace

TEST_CASE("GEMM convolution equals the reference kernel on random shapes") {
    rng g{123};
    auto pick = [&](int lo, int hi) { return lo + static_cast<int>(g.next() % static_cast<unsigned>(hi - lo + 1)); };
    std::vector<float> scratch(cpu::conv_scratch_floats);
    int tested = 0;
    for (int t = 0; t < 200; ++t) {
        const shape in{pick(1, 40), pick(1, 40), pick(1, 40)};
        const window win{pick(1, 5), pick(1, 5), pick(1, 3), pick(1, 3), pick(0, 2), pick(0, 2), pick(0, 2), pick(0, 2)};
        if (in.h + win.pt + win.pb < win.kh || in.w + win.pl + win.pr < win.kw) continue;
        const int m = pick(1, 20);
        const int row_split = pick(0, 1);  // also: rows in two ranges, as tasks split them
        const bool relu = pick(0, 1) == 1;
        const auto [x, w, b, want, cv] = random_conv(in, win, m, relu, true, g);
        const shape out = cv.out;
        std::vector<float> got(out.size(), std::nanf(""));
        if (row_split && m > cpu::gemm_mr) {  // two row ranges and column blocks, as the runner's tasks
            const int cols = out.h * out.w, cut = cpu::gemm_mr;
            for (int j0 = 0; j0 < cols; j0 += cpu::gemm_nc) {
                const int n = std::min(cpu::gemm_nc, cols - j0);
                cpu::conv_gemm_block(cv, x.data(), got.data(), 0, cut, j0, n, scratch.data());
                cpu::conv_gemm_block(cv, x.data(), got.data(), cut, m, j0, n, scratch.data());
            }
        } else {
            cpu::conv_gemm(cv, x.data(), got.data(), scratch.data());
        }
        INFO("in " << in.c << "x" << in.h << "x" << in.w << " m " << m << " k " << win.kh << "x" << win.kw);
        REQUIRE(relative_error(got, want) < 1e-5);
        ++tested;
    }
    CHECK(tested > 100);
}

// The packer's own cases, which random windows rarely hit: "flat" convs (kh x 1 at stride 1, no
// horizontal padding: runs cross output rows), 1xn rows with horizontal padding, runs cut at
// panel edges, and planes narrower and wider than a panel; each in several column blocks.
TEST_CASE("GEMM convolution: flat kh x 1 taps, padded 1 x n rows, narrow and wide planes") {
    rng g{321};
    std::vector<float> scratch(cpu::conv_scratch_floats);
    struct shape_case {
        int c, h, w, kh, kw, pt, pb, pl, pr;
    };
    const shape_case cases[] = {
        {7, 17, 17, 1, 1, 0, 0, 0, 0}, {5, 17, 17, 7, 1, 3, 3, 0, 0}, {5, 17, 17, 1, 7, 0, 0, 3, 3},
        {3, 8, 8, 3, 1, 1, 1, 0, 0},   {3, 8, 8, 1, 3, 0, 0, 1, 1},   {4, 35, 35, 3, 3, 1, 1, 1, 1},
        {2, 5, 70, 5, 1, 2, 1, 0, 0},  {2, 3, 1, 3, 1, 2, 2, 0, 0},   {3, 9, 33, 1, 5, 0, 0, 4, 1},
        {2, 40, 3, 2, 1, 0, 1, 0, 0},
    };
    for (const shape_case& s : cases) {
        const shape in{s.c, s.h, s.w};
        const window win{s.kh, s.kw, 1, 1, s.pt, s.pb, s.pl, s.pr};
        const int m = 13;
        const auto [x, w, b, want, cv] = random_conv(in, win, m, false, true, g);
        const shape out = cv.out;
        std::vector<float> got(out.size(), std::nanf(""));
        cpu::conv_gemm(cv, x.data(), got.data(), scratch.data());
        INFO("in " << in.c << "x" << in.h << "x" << in.w << " k " << win.kh << "x" << win.kw << " pad " << s.pt << ","
                   << s.pb << "," << s.pl << "," << s.pr);
        CHECK(cpu::detail::flat_taps(cv) == (s.kw == 1 && s.pl == 0 && s.pr == 0));
        CHECK(relative_error(got, want) < 1e-5);
    }
}

// A pointwise conv's blocks packed together (conv_gemm_units' row-by-row packing of a task's
// units): two samples, two K blocks, a partial last block and runs of 1 to gemm_units units,
// some crossing from one sample to the next, as the runner's tasks take them.
TEST_CASE("GEMM convolution: a 1x1 conv's units packed together, across samples and K blocks") {
    rng g{77};
    std::vector<float> scratch(cpu::conv_scratch_floats);
    // two blocks and a partial one (with AVX-512: 64, 64 and 25 columns)
    const shape in{cpu::gemm_kc + 44, 1, 2 * cpu::gemm_nc + 25};
    const window win{1, 1, 1, 1, 0, 0, 0, 0};
    const int m = 13;
    auto c = random_conv(in, win, m, false, true, g);  // no ReLU: every output compared as it is
    CHECK(cpu::detail::pointwise(c.cv));
    const shape out = c.cv.out;
    const std::vector<float> x1 = random_vector(in.size(), g);
    std::vector<float> want1(out.size());
    cpu::ref::conv2d({x1.data(), in.size(), in}, {want1.data(), out.size(), out}, 1, c.w.data(), c.b.data(), win);
    const int cols = out.h * out.w, blocks = (cols + cpu::gemm_nc - 1) / cpu::gemm_nc;
    REQUIRE(blocks == 3);
    for (int run = 1; run <= cpu::gemm_units; ++run) {
        std::vector<float> y0(out.size(), std::nanf("")), y1(out.size(), std::nanf(""));
        const float* xs[] = {c.x.data(), x1.data()};
        float* ys[] = {y0.data(), y1.data()};
        for (int u0 = 0; u0 < 2 * blocks; u0 += run) {  // units (sample, block) in the runner's order
            cpu::conv_unit units[cpu::gemm_units];
            const int count = std::min(run, 2 * blocks - u0);
            for (int i = 0; i < count; ++i) {
                const int u = u0 + i, sample = u / blocks, j0 = u % blocks * cpu::gemm_nc;
                units[i] = {xs[sample], ys[sample], j0, std::min(cpu::gemm_nc, cols - j0)};
            }
            cpu::conv_gemm_units(c.cv, units, count, 0, m, scratch.data());
        }
        INFO("units per run: " << run);
        CHECK(relative_error(y0, c.want) < 1e-5);
        CHECK(relative_error(y1, want1) < 1e-5);
    }
}

TEST_CASE("Winograd F(2x2, 3x3), F(4x4, 3x3), F(2x2, 5x5), F(1x2, 1x7), F(2x1, 7x1) equal the reference kernel on random shapes") {
    rng g{99};
    auto pick = [&](int lo, int hi) { return lo + static_cast<int>(g.next() % static_cast<unsigned>(hi - lo + 1)); };
    constexpr int n_variants = static_cast<int>(std::size(cpu::winograd_variants));
    int tested = 0;
    for (int t = 0; t < 40 * n_variants; ++t) {
        const cpu::winograd_variant& v = cpu::winograd_variants[t % n_variants];
        // Odd and even sizes (partial tiles), 1 to 3 tile panels, depths across the KC block.
        const shape in{t < 20 ? pick(250, 300) : pick(1, 40), pick(1, 23), pick(1, 27)};
        const window win{v.kh, v.kw, 1, 1, pick(0, v.kh - 1), pick(0, v.kh - 1), pick(0, v.kw - 1), pick(0, v.kw - 1)};
        if (in.h + win.pt + win.pb < v.kh || in.w + win.pl + win.pr < v.kw) continue;
        const int m = pick(1, 20);
        const bool relu = pick(0, 1) == 1;
        auto [x, w, b, want, cv] = random_conv(in, win, m, relu, false, g);
        cv.tiling = v.tiling;
        const shape out = cv.out;
        const std::vector<float> u = cpu::winograd_pack_weights(w.data(), m, in.c, v.tiling, win);
        std::vector<float> scratch(cpu::winograd_scratch_floats(in.c, v.tiling, v.kh, v.kw));
        std::vector<float> got(out.size(), std::nanf(""));
        if (m > cpu::gemm_mr && t % 2 == 0) {  // two row ranges, as the runner's tasks split them
            for (int t0 = 0; t0 < cpu::winograd_tiles(out, v.tiling); t0 += cpu::gemm_nr) {
                cpu::winograd_block(cv, u.data(), x.data(), got.data(), 0, cpu::gemm_mr, t0, scratch.data());
                cpu::winograd_block(cv, u.data(), x.data(), got.data(), cpu::gemm_mr, m, t0, scratch.data());
            }
        } else {
            cpu::winograd_conv(cv, u.data(), x.data(), got.data(), scratch.data());
        }
        INFO("F(" << v.tiling.h << "x" << v.tiling.w << ", " << v.kh << "x" << v.kw << ") in " << in.c << "x" << in.h << "x"
                  << in.w << " m " << m << " pad " << win.pt << "," << win.pb << "," << win.pl << "," << win.pr);
        // The 6- and 8-point transforms (coefficients up to 8, fractions rounded in U) cost up to
        // 5-10x the rounding error of F(2x2, 3x3): up to 1.6e-5 against 1.8e-6 at depths of 250-300
        // in the draws measured.
        REQUIRE(relative_error(got, want) < (v.tiling.h == 2 && v.tiling.w == 2 && v.kh == 3 ? 1e-5 : 4e-5));
        ++tested;
    }
    CHECK(tested > 150);
    // Inception v3's 3x3 stride-1 convs at 299 run as F(4x4, 3x3), its 5x5 as F(2x2, 5x5), its
    // 1x7 and 7x1 at 17x17 as F(2, 7); its stride-2 ones and those at 8x8 do not; a map with
    // enough 2x2 tiles but too few 4x4 ones runs 3x3 as F(2x2) (which map that is depends on
    // the panel width: 32 tiles with AVX-512, 16 with AVX2). Both hold for either width.
    const auto tiling = [](window w, shape in, shape out) {
        const cpu::winograd_tiling t = cpu::winograd_tiling_for(w, in, out);
        return t.h * 10 + t.w;
    };
    CHECK(tiling(window{3, 3, 1, 1, 0, 0, 0, 0}, shape{32, 149, 149}, shape{32, 147, 147}) == 44);
    CHECK(tiling(window{3, 3, 1, 1, 0, 0, 0, 0}, shape{80, 73, 73}, shape{192, 71, 71}) == 44);
    CHECK(tiling(window{3, 3, 1, 1, 1, 1, 1, 1}, shape{64, 35, 35}, shape{96, 35, 35}) == 44);
    const int side = cpu::gemm_nr == 32 ? 23 : 18;  // 36 / 144 or 25 / 81 tiles of 4x4 / 2x2
    CHECK(tiling(window{3, 3, 1, 1, 1, 1, 1, 1}, shape{64, side, side}, shape{96, side, side}) == 22);
    CHECK(tiling(window{5, 5, 1, 1, 2, 2, 2, 2}, shape{48, 35, 35}, shape{64, 35, 35}) == 22);
    CHECK(tiling(window{1, 7, 1, 1, 0, 0, 3, 3}, shape{192, 17, 17}, shape{192, 17, 17}) == 12);
    CHECK(tiling(window{7, 1, 1, 1, 3, 3, 0, 0}, shape{160, 17, 17}, shape{192, 17, 17}) == 21);
    CHECK(tiling(window{5, 5, 1, 1, 2, 2, 2, 2}, shape{48, 8, 8}, shape{64, 8, 8}) == 0);
    CHECK(tiling(window{3, 3, 1, 1, 1, 1, 1, 1}, shape{8, 35, 35}, shape{96, 35, 35}) == 0);  // too few input channels
    CHECK(tiling(window{3, 3, 2, 2, 0, 0, 0, 0}, shape{288, 35, 35}, shape{384, 17, 17}) == 0);
    CHECK(tiling(window{3, 3, 1, 1, 1, 1, 1, 1}, shape{448, 8, 8}, shape{384, 8, 8}) == 0);
    CHECK(tiling(window{1, 3, 1, 1, 0, 0, 1, 1}, shape{384, 8, 8}, shape{384, 8, 8}) == 0);
    CHECK(tiling(window{1, 1, 1, 1, 0, 0, 0, 0}, shape{768, 17, 17}, shape{192, 17, 17}) == 0);
    const std::vector<float> w5(16 * 16 * 25, 1.0F);
    CHECK_THROWS_WITH(cpu::winograd_pack_weights(w5.data(), 16, 16, {4, 4}, window{5, 5, 1, 1, 2, 2, 2, 2}),
                      "ctnet: no Winograd variant for 4x4 tiles of a 5x5 window");
}

TEST_CASE("SIMD linear equals the reference on random sizes, any split of the outputs") {
    rng g{55};
    for (const int in : {1, 7, 16, 63, 64, 65, 200, 2048}) {
        const int out = 1 + static_cast<int>(g.next() % 70), n = 3;
        const std::vector<float> x = random_vector(static_cast<std::size_t>(n) * in, g),
                                 w = random_vector(static_cast<std::size_t>(out) * in, g), b = random_vector(out, g);
        std::vector<float> want(static_cast<std::size_t>(n) * out), got(want.size(), std::nanf("")), split(want.size());
        const shape si{in, 1, 1}, so{out, 1, 1};
        cpu::ref::linear({x.data(), si.size(), si}, {want.data(), so.size(), so}, n, w.data(), b.data());
        const auto o = static_cast<std::size_t>(out);
        cpu::linear_outputs(x.data(), si.size(), got.data(), so.size(), n, si.size(), w.data(), b.data(), 0, o);
        cpu::linear_outputs(x.data(), si.size(), split.data(), so.size(), n, si.size(), w.data(), b.data(), 0, o / 2);
        cpu::linear_outputs(x.data(), si.size(), split.data(), so.size(), n, si.size(), w.data(), b.data(), o / 2, o);
        INFO("in " << in << " out " << out);
        CHECK(relative_error(got, want) < 1e-5);
        CHECK(split == got);
    }
}

TEST_CASE("pooling planes and their backward passes equal the reference on random windows (both avg divisors, NaN in max)") {
    rng g{77};
    auto pick = [&](int lo, int hi) { return lo + static_cast<int>(g.next() % static_cast<unsigned>(hi - lo + 1)); };
    int tested = 0, stride1_counted = 0, flat = 0;
    for (int t = 0; t < 300; ++t) {
        const shape in{2, pick(1, 30), pick(1, 40)};
        const int kh = pick(1, 4), kw = pick(1, 4);
        const window win{kh, kw, pick(1, 3), pick(1, 3), pick(0, kh / 2), pick(0, kh / 2), pick(0, kw / 2), pick(0, kw / 2)};
        if (in.h + win.pt + win.pb < win.kh || in.w + win.pl + win.pr < win.kw) continue;
        const shape out = detail::window_shape(in, win, in.c);
        std::vector<float> x = random_vector(in.size(), g);
        if (t % 5 == 0) x[static_cast<std::size_t>(pick(0, static_cast<int>(x.size()) - 1))] = std::nanf("");
        if (t % 7 == 3)  // a plane of -inf: every window's maximum is its first element inside the input
            std::fill(x.begin(), x.begin() + in.h * in.w, -std::numeric_limits<float>::infinity());
        std::vector<float> tmp(static_cast<std::size_t>(in.w + win.pl + win.pr));
        const std::size_t ip = static_cast<std::size_t>(in.h) * in.w, op = static_cast<std::size_t>(out.h) * out.w;
        for (const bool count_pad : {true, false}) {
            std::vector<float> want(out.size()), got(out.size(), -1.0F);
            cpu::ref::avg_pool({x.data(), in.size(), in}, {want.data(), out.size(), out}, 1, win, count_pad);
            for (int c = 0; c < in.c; ++c)
                cpu::avg_pool_plane(x.data() + c * ip, in.h, in.w, got.data() + c * op, out.h, out.w, win, count_pad, tmp.data());
            for (std::size_t i = 0; i < want.size(); ++i) {
                INFO("avg " << in.h << "x" << in.w << " k " << kh << "x" << kw << " s " << win.sh << "," << win.sw << " at " << i);
                if (std::isnan(want[i])) REQUIRE(std::isnan(got[i]));
                else REQUIRE((got[i] == want[i] || std::fabs(got[i] - want[i]) <= 1e-5F * (1.0F + std::fabs(want[i]))));
            }
            stride1_counted += count_pad && win.sw == 1;
        }
        // Training's kernels: average pooling and both backward passes, bit for bit (dy random, dx
        // starting non-zero: the kernels add into it).
        std::vector<float> row(static_cast<std::size_t>(cpu::pool_scratch_floats(in.h, in.w, out.h, out.w, win)));
        flat += win.sh == 1 && win.sw == 1;
        const std::vector<float> dy = random_vector(out.size(), g);
        for (const bool count_pad : {true, false}) {
            INFO("avg train " << in.h << "x" << in.w << " k " << kh << "x" << kw << " s " << win.sh << "," << win.sw
                              << " pad " << win.pt << win.pb << win.pl << win.pr << " count_pad " << count_pad);
            std::vector<float> want(out.size()), got(out.size(), -1.0F);
            cpu::ref::avg_pool({x.data(), in.size(), in}, {want.data(), out.size(), out}, 1, win, count_pad);
            for (int c = 0; c < in.c; ++c)
                cpu::avg_pool_train_plane(x.data() + c * ip, in.h, in.w, got.data() + c * op, out.h, out.w, win,
                                          count_pad, row.data());
            for (std::size_t i = 0; i < want.size(); ++i) {
                if (std::isnan(want[i])) REQUIRE(std::isnan(got[i]));
                else REQUIRE(got[i] == want[i]);
            }
            std::vector<float> dwant = random_vector(in.size(), g), dgot = dwant;
            cpu::ref::avg_pool_backward({dy.data(), out.size(), out}, {dwant.data(), in.size(), in}, 1, win, count_pad);
            for (int c = 0; c < in.c; ++c)
                cpu::avg_pool_backward_plane(dy.data() + c * op, in.h, in.w, dgot.data() + c * ip, out.h, out.w, win,
                                             count_pad, row.data());
            REQUIRE(dgot == dwant);  // equal as floats (the stride-1 kernel may turn a -0 into +0)
        }
        {
            std::vector<float> want = random_vector(in.size(), g), got = want;
            cpu::ref::max_pool_backward({x.data(), in.size(), in}, {dy.data(), out.size(), out},
                                        {want.data(), in.size(), in}, 1, win);
            std::vector<float> scratch(static_cast<std::size_t>(cpu::max_pool_train_floats(out.w, win))), y(out.size());
            std::vector<std::int32_t> at(static_cast<std::size_t>(cpu::max_pool_train_ints(out.w))), arg(out.size());
            std::vector<float> ywant(out.size());
            cpu::ref::max_pool({x.data(), in.size(), in}, {ywant.data(), out.size(), out}, 1, win);
            for (int c = 0; c < in.c; ++c) {
                cpu::max_pool_train_plane(x.data() + c * ip, in.h, in.w, y.data() + c * op, arg.data() + c * op, out.h,
                                          out.w, win, scratch.data(), at.data());
                cpu::max_pool_backward_plane(arg.data() + c * op, dy.data() + c * op, out.h * out.w, got.data() + c * ip);
            }
            INFO("max train " << in.h << "x" << in.w << " k " << kh << "x" << kw << " s " << win.sh << "," << win.sw
                              << " pad " << win.pt << win.pb << win.pl << win.pr);
            for (std::size_t i = 0; i < y.size(); ++i) {
                if (std::isnan(ywant[i])) REQUIRE(std::isnan(y[i]));
                else REQUIRE(y[i] == ywant[i]);
            }
            REQUIRE(got == want);  // the same element of each window, added in the same order
        }
        std::vector<float> want(out.size()), got(out.size(), -1.0F);
        cpu::ref::max_pool({x.data(), in.size(), in}, {want.data(), out.size(), out}, 1, win);
        for (int c = 0; c < in.c; ++c)
            cpu::max_pool_plane(x.data() + c * ip, in.h, in.w, got.data() + c * op, out.h, out.w, win, tmp.data());
        for (std::size_t i = 0; i < want.size(); ++i) {
            INFO("max " << in.h << "x" << in.w << " k " << kh << "x" << kw << " at " << i);
            if (std::isnan(want[i])) REQUIRE(std::isnan(got[i]));
            else REQUIRE(got[i] == want[i]);
        }
        ++tested;
    }
    CHECK(tested > 200);
    CHECK(stride1_counted > 50);  // the vectorised stride-1 path ran
    CHECK(flat > 15);             // and training's flattened stride-1 planes
}

TEST_CASE("backend::cpu equals the reference runner on Inception v3, any thread count") {
    using net = models::inception_v3<1000, 107, models::inception_options{.aux_logits = false, .transform_input = true}>;
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 17, true);
    rng g{5};
    const std::vector<float> x = random_vector(3 * input_shape_v<net>.size(), g);
    runner<net> ref{*w};
    const std::vector<float> want = ref(x);
    runner<net, backend::cpu> one{*w, {.threads = 1}}, two{*w, {.threads = 2}};
    CHECK(one.fused_convs() == 94);  // every conv with its batch norm and ReLU
    const std::vector<float> a = one(x), b = two(x);
    CHECK(relative_error(a, want) < 1e-5);
    CHECK(a == b);
    std::vector<float> again(a.size());
    two.forward(x, again);  // a second pass reuses the arena and gives the same numbers
    CHECK(again == a);
    // A runner that takes the weights over (and frees the conv weights it has packed) computes
    // the same numbers; the fc layer and everything else it still reads are intact.
    auto moved = std::make_unique<weights<net>>(*w);
    runner<net, backend::cpu> owner{std::move(*moved), {.threads = 2}};
    CHECK(moved->data().empty());
    CHECK(owner(x) == a);
}

TEST_CASE("backend::cpu that takes over weights with the auxiliary head gives them back and computes the same") {
    using net = models::inception_v3<10>;  // 299x299 with the aux head, which eval mode never runs
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 29, true);
    rng g{37};
    const std::vector<float> x = random_vector(input_shape_v<net>.size(), g);
    runner<net, backend::cpu> borrowed{*w};
    const std::vector<float> want = borrowed(x);
    auto moved = std::make_unique<weights<net>>(*w);
    runner<net, backend::cpu> owner{std::move(*moved)};  // its conv and aux pages go back to the system
    CHECK(owner(x) == want);
}

TEST_CASE("backend::cpu: convs without batch norm, a standalone batch norm, concat slices") {
    using net = network<shape{3, 12, 12},
                        seq<node<"c1", conv<8, k<3>, pad<1>, bias<true>>>, node<"bn", batch_norm<>>,
                            node<"mixed", concat<node<"a", conv<5, k<1, 3>, pad<0, 1>>>, max_pool<k<3>, stride<1>, pad<1>>,
                                                 seq<node<"b", conv<4, k<3>, stride<1>, pad<1>>>, relu>>>,
                            node<"c2", conv<6, k<2>, stride<2>>>, global_avg_pool, flatten, node<"fc", linear<6, 3>>>>;
    weights<net> w;
    init_seeded(w, 8, true);
    rng g{9};
    const std::vector<float> x = random_vector(2 * input_shape_v<net>.size(), g);
    runner<net> ref{w};
    runner<net, backend::cpu> fast{w, {.threads = 2}};
    CHECK(relative_error(fast(x), ref(x)) < 1e-5);
}

TEST_CASE("backend::cpu: an average pool before a 1x1 conv runs after it, only where that is the same") {
    // a: pool (zero padding counted) -> 1x1 conv with bias -> ReLU; b: TF-slim pool (padding not
    // counted), stride 2 -> 1x1 conv -> BN -> ReLU; c: a pool read by two 1x1 convs (not moved);
    // d: a pool before a 3x3 conv (not moved). The whole output maps are compared.
    using net = network<shape{5, 9, 11},
                        seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"a", conv<4, k<1>, bias<true>>>, relu,
                            avg_pool<k<3>, stride<2>, pad<1>, count_pad<false>>, node<"b", conv<3, k<1>>>,
                            node<"bn", batch_norm<>>, relu,
                            avg_pool<k<2>, stride<1>, pad<1>>, concat<node<"c1", conv<2, k<1>>>, node<"c2", conv<2, k<1>>>>,
                            avg_pool<k<3>, stride<1>, pad<1>>, node<"d", conv<2, k<3>, pad<1>>>>>;
    static_assert(output_shape_v<net> == shape{2, 6, 7});
    weights<net> w;
    init_seeded(w, 21, true);
    rng g{22};
    const std::vector<float> x = random_vector(3 * input_shape_v<net>.size(), g);
    runner<net> ref{w};
    runner<net, backend::cpu> one{w, {.threads = 1}}, two{w, {.threads = 2}};
    CHECK(one.pooled_convs() == 2);  // a and b
    const std::vector<float> want = ref(x), a = one(x);
    CHECK(relative_error(a, want) < 1e-5);
    CHECK(two(x) == a);
    // The pooled steps' buffer grows with the batch (batch 3, then 1, 4 and 1 again on one runner).
    const std::size_t in = input_shape_v<net>.size(), out = output_shape_v<net>.size();
    for (const int n : {1, 4, 1}) {
        const std::vector<float> xn = random_vector(static_cast<std::size_t>(n) * in, g);
        const std::vector<float> yn = two(xn);
        REQUIRE(yn.size() == static_cast<std::size_t>(n) * out);
        CHECK(relative_error(yn, ref(xn)) < 1e-5);
    }
}

TEST_CASE("backend::cpu profile: one entry per step, named as the program, the same numbers") {
    using net = models::inception_v3<10, 75, models::inception_options{.aux_logits = false}>;
    const auto& p = net::program;
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 41, true);
    rng g{43};
    const std::vector<float> x = random_vector(2 * input_shape_v<net>.size(), g);
    runner<net, backend::cpu> run{*w, {.threads = 2}};
    const auto infos = run.step_infos();
    const auto steps = exec::plan_v<net>.steps();
    REQUIRE(infos.size() == steps.size());
    int pooled = 0;
    for (std::size_t i = 0; i < infos.size(); ++i) {
        const op& o = p.ops[steps[i].op];
        CHECK(infos[i].name == o.path.view());
        CHECK(infos[i].block == o.path.view().substr(0, o.path.view().find('.')));
        CHECK(infos[i].kind.starts_with(to_string(o.kind)));
        CHECK(infos[i].macs == o.macs);
        CHECK(infos[i].out == steps[i].out.s);
        if (steps[i].pool >= 0) {
            ++pooled;
            CHECK(infos[i].kind.ends_with(" + avg_pool 3x3"));
            CHECK(infos[i].in == p.ops[steps[i].pool].in.s);
        }
    }
    CHECK(pooled == 9);  // every Inception block's branch_pool
    CHECK(infos.front().name == "Conv2d_1a_3x3.conv");
    CHECK(infos.front().kind == "conv 3x3/2 gemm");
    CHECK(infos.back().name == "fc");
    CHECK(infos.back().kind == "linear");
    CHECK(std::any_of(infos.begin(), infos.end(), [](const auto& s) { return s.block == "Mixed_7c"; }));

    const std::vector<float> want = run(x);
    std::vector<float> y(want.size());
    std::vector<double> ms(infos.size(), -1.0);
    run.forward(x, y, ms);
    CHECK(y == want);  // timing changes nothing
    CHECK(std::all_of(ms.begin(), ms.end(), [](double t) { return t >= 0.0; }));
    std::vector<double> short_ms(infos.size() - 1);
    CHECK_THROWS_AS(run.forward(x, y, short_ms), error);
}

TEST_CASE("one loaded model shared read-only by 4 threads, each with its own runner") {
    using net = models::inception_v3<10, 75, models::inception_options{.aux_logits = false}>;
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 23, true);
    const weights<net>& shared = *w;
    rng g{31};
    std::vector<std::vector<float>> inputs;
    for (int t = 0; t < 4; ++t) inputs.push_back(random_vector(2 * input_shape_v<net>.size(), g));
    std::vector<std::vector<float>> alone, fast_alone;
    for (const auto& x : inputs) {
        runner<net> r{shared};
        alone.push_back(r(x));
        runner<net, backend::cpu> f{shared};
        fast_alone.push_back(f(x));
    }
    std::vector<std::vector<float>> together(4), fast_together(4);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            runner<net> r{shared};
            runner<net, backend::cpu> f{shared, {.threads = 2}};
            for (int rep = 0; rep < 2; ++rep) {
                together[t] = r(inputs[t]);
                fast_together[t] = f(inputs[t]);
            }
        });
    for (std::thread& th : threads) th.join();
    for (int t = 0; t < 4; ++t) {
        CHECK(together[t] == alone[t]);
        CHECK(fast_together[t] == fast_alone[t]);
    }
}

// The fused-step plan (exec/plan.hpp) as each backend reads it; backend::cuda's form (no pooled
// steps) runs only on a GPU, so its steps are checked here on the host.
TEST_CASE("exec::plan_v: every eval op covered once, in order; convs fused with their batch norm and ReLU") {
    using net = models::inception_v3<>;
    const auto& p = net::program;
    const auto check = [&](std::span<const exec::step> steps, int want_pooled) {
        int next = 0, convs = 0, pooled = 0;
        for (const exec::step& s : steps) {
            while (next < p.n_ops && p.ops[next].train_only) ++next;  // the aux head is left out
            CHECK(s.op >= next);
            if (s.pool >= 0) {
                CHECK(s.pool == next);
                CHECK(s.op == s.pool + 1);
                CHECK(p.ops[s.pool].kind == op_kind::avg_pool);
                CHECK(is_pointwise(p.ops[s.op].win));
                ++pooled;
            } else {
                CHECK(s.op == next);
            }
            if (p.ops[s.op].kind == op_kind::conv) {
                ++convs;
                CHECK(s.bn);  // every Inception conv is a BasicConv2d: conv, batch norm, ReLU in place
                CHECK(s.relu);
                CHECK(s.last == s.op + 2);
                CHECK(p.ops[s.op + 1].kind == op_kind::batch_norm);
                CHECK(p.ops[s.op + 2].kind == op_kind::relu);
                CHECK(s.out.buf == p.ops[s.op].out.buf);
                CHECK(s.out.offset == p.ops[s.op].out.offset);  // a concat slice: the branch's channels
            } else {
                CHECK(s.last == s.op);
                CHECK(!s.bn);
                CHECK(!s.relu);
            }
            next = s.last + 1;
        }
        while (next < p.n_ops && p.ops[next].train_only) ++next;
        CHECK(next == p.n_ops);
        CHECK(convs == 94);
        CHECK(pooled == want_pooled);
    };
    check(exec::plan_v<net>.steps(), 9);  // backend::cpu: the 9 branch_pool avg pools run after their 1x1 conv
    check(exec::plan_v<net, exec::plan_options{.pools_into_pointwise = false}>.steps(), 0);  // backend::cuda
    static_assert(exec::plan_v<net>.n < p.n_ops);  // a constant: the plan is known at compile time
}
