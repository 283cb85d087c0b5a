// Training: gradients against central finite differences (every layer kind, random shapes),
// backend::cpu against backend::reference, the loss and the optimizers against hand-computed
// values. Torch autograd parity of a whole Inception v3 step is in test_train_parity.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <ctnet/ctnet.hpp>
#include <ctnet/train/loss.hpp>
#include <ctnet/train/optim.hpp>
#include <ctnet/train/checkpoint.hpp>
#include <ctnet/train/step.hpp>
#include <ctnet/cpu/trainer.hpp>
#include <ctnet/cpu/batch_norm_fast.hpp>

#include "check.hpp"
#include "train_nets.hpp"

using namespace ctnet;
using namespace ctnet::test_nets;

namespace {

// ||got - want|| / ||want|| (2-norms), infinite on a NaN, an infinity or sizes that differ. Not
// test::norm_relative_error: its meter (floor 0) also turns every measure infinite where a single
// reference entry is exactly 0 and the result's is not, which a norm over a tensor must allow (a
// gradient of exactly 0 in one computation, 1e-12 in the other). The floor only enters elementwise().
template <class A, class B>
test::error_meter norm_meter(const A& got, const B& want) {
    return test::compare(got, want, std::numeric_limits<double>::min());
}

std::vector<float> random_vector(std::size_t n, std::uint64_t seed, double scale = 1.0) {
    rng g{seed};
    std::vector<float> v(n);
    for (float& f : v) f = static_cast<float>(scale * g.normal());
    return v;
}

double dot(std::span<const float> a, std::span<const float> b) {
    double s = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
}

// L = <r, output> + <r_aux, aux output> of a fresh trainer (same dropout masks every time).
template <class Net, class B>
double probe_loss(weights<Net>& w, const std::vector<float>& x, const std::vector<float>& r,
                  const std::vector<float>& r_aux) {
    trainer<Net, B> t{w, {.seed = 99}};
    t.forward(x);
    double l = dot(t.logits(), r);
    if constexpr (Net::program.has_aux) l += dot(t.aux_logits(), r_aux);
    return l;
}

template <class Net, class B>
std::vector<float> analytic_grads(weights<Net>& w, const std::vector<float>& x, const std::vector<float>& r,
                                  const std::vector<float>& r_aux, int threads = 1) {
    trainer<Net, B> t{w, {.threads = threads, .seed = 99}};
    t.forward(x);
    t.zero_grads();
    t.backward(r, r_aux);
    return {t.grads().begin(), t.grads().end()};
}

template <class Net>
void check_against_finite_differences(int batch, std::uint64_t seed) {
    constexpr shape in = input_shape_v<Net>;
    weights<Net> w;
    init_seeded(w, seed, true);
    const auto x = random_vector(static_cast<std::size_t>(batch) * in.size(), seed + 1);
    const auto r = random_vector(static_cast<std::size_t>(batch) * output_shape_v<Net>.size(), seed + 2);
    std::vector<float> r_aux;
    if constexpr (Net::program.has_aux)
        r_aux = random_vector(static_cast<std::size_t>(batch) * Net::program.aux.s.size(), seed + 3);
    weights<Net> w0 = w;
    const std::vector<float> g = analytic_grads<Net, backend::reference>(w, x, r, r_aux);
    auto loss_at = [&](std::size_t j, float v) {
        w = w0;
        w.data()[j] = v;
        return probe_loss<Net, backend::reference>(w, x, r, r_aux);
    };
    const double l0 = loss_at(0, w0.data()[0]);
    double err2 = 0.0, ref2 = 0.0;
    int checked = 0, kinks = 0;
    for (const tensor_info& t : w.tensors()) {
        if (!t.trainable) continue;
        double terr2 = 0.0, tref2 = 0.0;
        for (std::size_t j = t.offset; j < t.offset + t.count; ++j) {
            const float orig = w0.data()[j];
            const float h = 1e-3F * std::max(1.0F, std::fabs(orig));
            const double lp = loss_at(j, orig + h), lm = loss_at(j, orig - h);
            // ReLU and max pool are not differentiable everywhere: when a step of h moves an
            // activation across a kink, the one-sided slopes disagree; such entries are skipped.
            const double up = (lp - l0) / h, down = (l0 - lm) / h;
            if (std::fabs(up - down) > 0.02 * (std::fabs(up) + std::fabs(down)) + 2e-3) {
                ++kinks;
                continue;
            }
            const double fd = (lp - lm) / (2.0 * static_cast<double>(h));
            terr2 += (fd - g[j]) * (fd - g[j]);
            tref2 += fd * fd;
            ++checked;
        }
        // Per tensor: the gradient agrees with finite differences to 1% of its norm.
        INFO(t.name << ": |fd - analytic| = " << std::sqrt(terr2) << ", |fd| = " << std::sqrt(tref2));
        CHECK(std::sqrt(terr2) <= 1e-2 * std::sqrt(tref2) + 1e-3);
        err2 += terr2;
        ref2 += tref2;
    }
    std::printf("finite differences: %d parameters checked, %d skipped at kinks, relative error %.3g\n", checked,
                kinks, std::sqrt(err2 / ref2));
    CHECK(kinks * 10 < checked);
    CHECK(std::sqrt(err2 / ref2) < 3e-3);
}

// How far the reference trainer's own results move when every input value is multiplied by
// 1 + u * N(0, 1), u = 1e-5 (the bound the op-by-op test below puts on each kernel's difference:
// a kernel that adds in another order, or runs as Winograd, moves every layer's output that much
// at most), over `draws` draws: per tensor of gradients and of running statistics, the largest
// |change| (2-norm). Zero draws: all zeros.
template <class Net>
std::vector<double> rounding_sensitivity(const weights<Net>& w, const std::vector<float>& x, const std::vector<float>& r,
                                         const std::vector<float>& r_aux, const std::vector<float>& g_ref,
                                         const weights<Net>& w_ref, int draws, std::uint64_t seed) {
    std::vector<double> change(w.tensors().size(), 0.0);
    for (int d = 0; d < draws; ++d) {
        rng g{seed + 1000 + static_cast<std::uint64_t>(d)};
        std::vector<float> xp = x;
        for (float& v : xp) v *= 1.0F + static_cast<float>(1e-5 * g.normal());
        weights<Net> wp = w;
        const auto gp = analytic_grads<Net, backend::reference>(wp, xp, r, r_aux);
        std::size_t i = 0;
        for (const tensor_info& t : w.tensors()) {
            const bool stats = !t.trainable;
            const std::span<const float> a = stats ? std::span<const float>(w_ref.data()) : std::span<const float>(g_ref);
            const std::span<const float> b = stats ? std::span<const float>(wp.data()) : std::span<const float>(gp);
            change[i] = std::max(change[i], norm_meter(b.subspan(t.offset, t.count), a.subspan(t.offset, t.count)).norm_diff());
            ++i;
        }
    }
    return change;
}

// backend::cpu's gradients and running statistics against the reference kernels', per tensor:
// within 2e-5 of the tensor's norm (or, for a gradient smaller than 1% of the whole gradient's
// norm, of that 1%: a conv bias before a training-mode batch norm has a gradient of zero up to
// rounding) plus `slack` times the reference's own rounding sensitivity (above). The random nets
// use no slack: both backends add in nearly the same order and agree to 1e-6. Inception v3's
// shapes need it: a random-weight Inception step is chaotic at the rounding level — one ulp of
// input noise moves half its gradient tensors by more than 0.3 % (75x75, batch 8; measured,
// bench/RESULTS.md), through near-ties of max pools and ReLUs and batch norm over few values —
// so a kernel that rounds differently (another summation order, Winograd's transforms, the
// sanitizers' code generation) may move as far; the kernels themselves are held to 1e-5 op by
// op (check_kernels_per_op), which is what the sensitivity's input noise stands for.
template <class Net>
void check_backends_agree(int batch, std::uint64_t seed, int threads, int draws = 0, double slack = 0.0) {
    constexpr shape in = input_shape_v<Net>;
    weights<Net> w;
    init_seeded(w, seed, true);
    const auto x = random_vector(static_cast<std::size_t>(batch) * in.size(), seed + 1);
    const auto r = random_vector(static_cast<std::size_t>(batch) * output_shape_v<Net>.size(), seed + 2);
    std::vector<float> r_aux;
    if constexpr (Net::program.has_aux)
        r_aux = random_vector(static_cast<std::size_t>(batch) * Net::program.aux.s.size(), seed + 3);
    weights<Net> w_ref = w, w_fast = w;
    const auto g_ref = analytic_grads<Net, backend::reference>(w_ref, x, r, r_aux);
    const auto g_fast = analytic_grads<Net, backend::cpu>(w_fast, x, r, r_aux, threads);
    const std::vector<double> sensitivity = rounding_sensitivity(w, x, r, r_aux, g_ref, w_ref, draws, seed);
    const double whole = std::sqrt(dot(g_ref, g_ref));
    double worst = 0.0;
    std::size_t i = 0;
    for (const tensor_info& t : w.tensors()) {
        const bool stats = !t.trainable;
        const std::span<const float> a = stats ? std::span<const float>(w_ref.data()) : g_ref;
        const std::span<const float> b = stats ? std::span<const float>(w_fast.data()) : g_fast;
        const test::error_meter m = norm_meter(b.subspan(t.offset, t.count), a.subspan(t.offset, t.count));
        const std::string what = t.name + (stats ? " (updated running statistic)" : " (gradient)");
        const double scale = std::max(m.norm_want(), stats ? 0.0 : 1e-2 * whole);
        INFO(what << ": |cpu - reference| = " << m.norm_diff() << ", scale " << scale << ", rounding sensitivity "
                  << sensitivity[i]);
        CHECK(m.norm_diff() <= 2e-5 * scale + slack * sensitivity[i]);
        worst = std::max(worst, m.norm_diff() / scale);
        ++i;
    }
    std::printf("backends agree: input %dx%dx%d, batch %d, worst tensor %.3g of its scale\n", in.c, in.h, in.w, batch,
                worst);
}

}  // namespace

TEST_CASE("training: every layer's gradient matches central finite differences") {
    check_against_finite_differences<every_layer>(3, 11);
    check_against_finite_differences<every_layer>(2, 12);
}

// A second shape family: 5x5 and 7x1 / 1x7 convs, stride-2 pool, an odd input, a batch of 4.
using odd_shapes = network<shape{2, 13, 11},
    seq<node<"c5", cbr<6, k<5>, pad<2>>>, max_pool<k<3>, stride<2>>,
        node<"fac", concat<node<"a", cbr<3, k<1, 7>, pad<0, 3>>>, node<"b", cbr<5, k<7, 1>, pad<3, 0>>>>>,
        node<"red", concat<node<"s2", conv<4, k<3>, stride<2>>>, avg_pool<k<3>, stride<2>>>>,
        global_avg_pool, flatten, node<"fc", linear<12, 5>>>>;

// A ReLU reading the network input (no gradient to pass on), and a ReLU that cannot work in
// place because its input also feeds another branch.
using relu_on_input = network<shape{2, 5, 4},
    seq<relu, node<"mix", concat<node<"a", conv<3, k<1>>>, seq<relu, node<"b", conv<2, k<3>, pad<1>>>>>>,
        global_avg_pool, flatten, node<"fc", linear<5, 3>>>>;

TEST_CASE("training: a ReLU on the network input, and one beside another reader of its input") {
    check_against_finite_differences<relu_on_input>(3, 41);
}

TEST_CASE("training: finite differences on odd shapes (5x5, 1x7 / 7x1, stride-2 grid reduction)") {
    check_against_finite_differences<odd_shapes>(4, 21);
}

TEST_CASE("training: backend::cpu (GEMM convolutions) gives the reference kernels' gradients") {
    check_backends_agree<every_layer>(3, 31, 1);
    check_backends_agree<every_layer>(4, 34, 2);
    check_backends_agree<relu_on_input>(3, 35, 2);
    check_backends_agree<odd_shapes>(5, 32, 2);
    // Inception v3's shapes (every GEMM and Winograd path the trainer takes there), with a slack
    // of 3x the rounding sensitivity over two draws (see check_backends_agree).
    using mid = models::inception_v3<10, 75, {.aux_logits = false}>;
    check_backends_agree<mid>(8, 33, 2, 2, 3.0);
}

// Layer by layer, where nothing amplifies rounding: every conv and pool op of Inception v3 at
// 75x75 (maps from 37x37 down to 1x1, batch 8) and at 299x299 (batch 1) run by both kernel sets
// on the same random input and output gradient. A convolution is linear in x, w and dy, so the
// two sets may differ only by summation order and Winograd's transforms: 1e-5 of each result's
// norm.
template <class Net>
void check_kernels_per_op(int n, std::uint64_t seed) {
    constexpr auto& prog = Net::program;
    cpu::thread_pool pool{2};
    cpu::reference_kernels ref{pool};
    cpu::simd_kernels fast{pool};
    for (int i = 0; i < prog.n_ops; ++i) {
        fast.plan(i, prog.ops[i]);
        ref.plan(i, prog.ops[i]);
    }
    fast.allocate();
    fast.resize(n, prog.ops.data(), prog.n_ops);
    double worst = 0.0;
    int checked = 0;
    auto close = [&](const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
        const test::error_meter m = norm_meter(got, want);
        INFO(what);
        CHECK(m.norm_diff() <= 1e-5 * m.norm_want());
        worst = std::max(worst, m.norm_diff() / m.norm_want());
    };
    for (int i = 0; i < prog.n_ops; ++i) {
        const op& o = prog.ops[i];
        if (o.kind != op_kind::conv && o.kind != op_kind::max_pool && o.kind != op_kind::avg_pool) continue;
        const std::size_t xs = o.in.s.size(), ys = o.out.s.size();
        const auto x = random_vector(n * xs, seed + 10 * i), dy = random_vector(n * ys, seed + 10 * i + 1);
        std::vector<float> y0(n * ys), y1(n * ys), dx0(n * xs, 0.5F), dx1 = dx0;
        const std::string what = std::string(o.path.view()) + " (" + std::string(to_string(o.kind)) + ")";
        const exec::in_view xv{x.data(), xs, o.in.s}, dyv{dy.data(), ys, o.out.s};
        if (o.kind == op_kind::conv) {
            const std::size_t kw = static_cast<std::size_t>(o.out.s.c) * o.in.s.c * o.win.kh * o.win.kw;
            const auto w = random_vector(kw, seed + 10 * i + 2, 0.1);
            const auto b = random_vector(o.bias ? o.out.s.c : 0, seed + 10 * i + 3);
            std::vector<float> dw0(kw, 0.25F), dw1 = dw0, db0(b.size(), 0.25F), db1 = db0;
            const float* bias = o.bias ? b.data() : nullptr;
            ref.conv_forward(i, xv, {y0.data(), ys, o.out.s}, n, w.data(), bias, o.win);
            fast.conv_forward(i, xv, {y1.data(), ys, o.out.s}, n, w.data(), bias, o.win);
            ref.conv_backward(i, xv, dyv, {dx0.data(), xs, o.in.s}, n, w.data(), dw0.data(), o.bias ? db0.data() : nullptr, o.win);
            fast.conv_backward(i, xv, dyv, {dx1.data(), xs, o.in.s}, n, w.data(), dw1.data(), o.bias ? db1.data() : nullptr, o.win);
            close(dw1, dw0, what + " dW");
            if (o.bias) close(db1, db0, what + " db");
        } else if (o.kind == op_kind::max_pool) {
            ref.max_pool_forward(i, xv, {y0.data(), ys, o.out.s}, n, o);
            fast.max_pool_forward(i, xv, {y1.data(), ys, o.out.s}, n, o);
            ref.max_pool_backward(i, xv, dyv, {dx0.data(), xs, o.in.s}, n, o);
            fast.max_pool_backward(i, xv, dyv, {dx1.data(), xs, o.in.s}, n, o);
        } else {
            ref.avg_pool_forward(xv, {y0.data(), ys, o.out.s}, n, o);
            fast.avg_pool_forward(xv, {y1.data(), ys, o.out.s}, n, o);
            ref.avg_pool_backward(dyv, {dx0.data(), xs, o.in.s}, n, o);
            fast.avg_pool_backward(dyv, {dx1.data(), xs, o.in.s}, n, o);
        }
        close(y1, y0, what + " y");
        close(dx1, dx0, what + " dX");
        ++checked;
    }
    std::printf("kernels per op: %d conv and pool ops of a %dx%d network, batch %d, worst %.3g\n", checked,
                input_shape_v<Net>.h, input_shape_v<Net>.w, n, worst);
    CHECK(checked > 90);
}

TEST_CASE("training: both kernel sets agree on every conv and pool op of Inception v3, op by op") {
    check_kernels_per_op<models::inception_v3<10, 75, {.aux_logits = false}>>(8, 71);
    // 299x299: the maps where the trainer runs F(4x4, 3x3), F(2x2, 5x5) and F(2, 7) (forward and dX)
    check_kernels_per_op<models::inception_v3<10, 299, {.aux_logits = false}>>(1, 72);
}

TEST_CASE("training: batch norm's lane-wise kernels equal the reference's on random shapes") {
    rng g{91};
    double worst = 0.0;
    for (int t = 0; t < 40; ++t) {
        const shape s{1 + static_cast<int>(g.next() % 5), 1 + static_cast<int>(g.next() % 9), 1 + static_cast<int>(g.next() % 13)};
        const int n = 1 + static_cast<int>(g.next() % 4);
        if (s.h * s.w * n < 2) continue;
        const std::size_t size = s.size() * static_cast<std::size_t>(n);
        std::vector<float> x(size), dy(size), w(static_cast<std::size_t>(s.c)), b(w.size());
        for (float& v : x) v = static_cast<float>(3.0 + 2.0 * g.normal());  // an offset: the two-pass variance matters
        for (float& v : dy) v = static_cast<float>(g.normal());
        for (float& v : w) v = static_cast<float>(1.0 + 0.3 * g.normal());
        for (float& v : b) v = static_cast<float>(g.normal());
        const double eps = 1e-3;
        std::vector<float> y0(size), y1(size), m0(w.size()), v0(w.size()), m1(w.size()), v1(w.size());
        cpu::ref::batch_norm_train({x.data(), s.size(), s}, {y0.data(), s.size(), s}, n, w.data(), b.data(), eps, m0.data(), v0.data());
        cpu::batch_norm_train_lanes({x.data(), s.size(), s}, {y1.data(), s.size(), s}, n, w.data(), b.data(), eps, m1.data(), v1.data());
        std::vector<float> invstd(w.size()), xhat(size);
        for (std::size_t c = 0; c < w.size(); ++c)
            invstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(v0[c]) + eps));
        const std::size_t plane = static_cast<std::size_t>(s.h) * s.w;
        for (std::size_t j = 0; j < size; ++j) {
            const std::size_t c = (j % s.size()) / plane;
            xhat[j] = (x[j] - m0[c]) * invstd[c];
        }
        std::vector<float> dx0(size, 0.25F), dx1 = dx0, dw0(w.size(), 0.5F), db0(w.size(), 0.5F), dw1 = dw0, db1 = db0;
        cpu::ref::batch_norm_train_backward({xhat.data(), s.size(), s}, {dy.data(), s.size(), s}, {dx0.data(), s.size(), s},
                                            n, w.data(), invstd.data(), dw0.data(), db0.data());
        cpu::batch_norm_train_backward_lanes({x.data(), s.size(), s}, {dy.data(), s.size(), s}, {dx1.data(), s.size(), s},
                                             n, w.data(), m0.data(), invstd.data(), dw1.data(), db1.data());
        // in place (dx == dy), as the trainer runs it after an in-place op
        std::vector<float> in_place = dy, in_place_ref = dy, dw_ref = dw0, db_ref = db0;
        cpu::batch_norm_train_backward_lanes({x.data(), s.size(), s}, {in_place.data(), s.size(), s},
                                             {in_place.data(), s.size(), s}, n, w.data(), m0.data(), invstd.data(),
                                             dw1.data(), db1.data());
        cpu::ref::batch_norm_train_backward({xhat.data(), s.size(), s}, {in_place_ref.data(), s.size(), s},
                                            {in_place_ref.data(), s.size(), s}, n, w.data(), invstd.data(), dw_ref.data(),
                                            db_ref.data());
        // max |a - b| / (1e-3 + |b|), infinite on a NaN or sizes that differ (tests/check.hpp)
        auto err = [](const std::vector<float>& a, const std::vector<float>& b) {
            return test::compare(a, b, 1e-3).elementwise();
        };
        INFO("shape " << s.c << "x" << s.h << "x" << s.w << " batch " << n);
        worst = std::max({worst, err(y1, y0), err(m1, m0), err(v1, v0), err(dx1, dx0), err(in_place, in_place_ref)});
        for (std::size_t c = 0; c < w.size(); ++c) {  // the second call added its sums again
            CHECK(std::fabs((dw1[c] - 0.5F) - 2.0F * (dw0[c] - 0.5F)) <= 1e-5F * (1.0F + std::fabs(dw0[c])));
            CHECK(std::fabs((db1[c] - 0.5F) - 2.0F * (db0[c] - 0.5F)) <= 1e-5F * (1.0F + std::fabs(db0[c])));
        }
    }
    // Only double rounding separates them: at most one float ulp here and there.
    CHECK(worst < 1e-6);
}

TEST_CASE("training: running statistics follow torch (momentum 0.1, unbiased variance)") {
    using net = network<shape{1, 2, 1}, seq<node<"bn", batch_norm<>>>>;
    weights<net> w;
    init_seeded(w, 1);  // weight 1, bias 0, running mean 0, running var 1
    trainer<net> t{w};
    t.forward(std::vector<float>{1.0F, 3.0F, 5.0F, 7.0F});  // batch 2 of (1, 2, 1): values 1, 3, 5, 7
    // mean 4, biased var 5, unbiased var 20/3
    CHECK(w["bn.running_mean"][0] == doctest::Approx(0.4));
    CHECK(w["bn.running_var"][0] == doctest::Approx(0.9 + 0.1 * 20.0 / 3.0));
    const std::span<const float> y = t.logits();
    CHECK(y[0] == doctest::Approx(-3.0 / std::sqrt(5.001)));
    CHECK(y[3] == doctest::Approx(3.0 / std::sqrt(5.001)));
}

TEST_CASE("loss: label-smoothed cross-entropy against hand-computed values") {
    // logits (0, 0), label 0, e = 0.2: q = (0.9, 0.1), p = (0.5, 0.5): loss log 2, d = p - q.
    std::vector<float> d(2, 0.0F);
    loss_value l = softmax_cross_entropy(std::vector<float>{0.0F, 0.0F}, std::vector<int>{0}, 2, {.smoothing = 0.2}, d);
    CHECK(l.loss == doctest::Approx(std::log(2.0)));
    CHECK(d[0] == doctest::Approx(-0.4));
    CHECK(d[1] == doctest::Approx(0.4));
    // logits (ln 1, ln 3), label 1, batch of 2 identical samples, weight 0.4, no smoothing:
    // p = (0.25, 0.75), loss = 0.4 * -ln 0.75, d = 0.4 * (p - onehot) / 2.
    std::vector<float> d2(4, 0.0F);
    const std::vector<float> logits{0.0F, std::log(3.0F), 0.0F, std::log(3.0F)};
    l = softmax_cross_entropy(logits, std::vector<int>{1, 1}, 2, {.weight = 0.4}, d2);
    CHECK(l.loss == doctest::Approx(-0.4 * std::log(0.75)));
    CHECK(l.correct == 2);
    CHECK(d2[0] == doctest::Approx(0.4 * 0.25 / 2));
    CHECK(d2[3] == doctest::Approx(0.4 * -0.25 / 2));
    CHECK_THROWS_WITH_AS(softmax_cross_entropy(logits, std::vector<int>{1, 2}, 2, {}, {}),
                         "ctnet: softmax_cross_entropy: sample 1 has label 2, expected 0..1", error);
    const std::vector<float> bad{0.0F, std::nanf("")};
    CHECK_THROWS_WITH_AS(softmax_cross_entropy(bad, std::vector<int>{0}, 2, {}, {}),
                         doctest::Contains("sample 0 has a non-finite logit"), error);
}

TEST_CASE("optimizers: one and two steps against hand-computed values") {
    const std::vector<param_range> all{{0, 1}};
    SUBCASE("RMSProp, TensorFlow semantics (ms starts at 1, eps inside the root)") {
        optimizer o = optimizer::rmsprop({.decay = 0.9, .momentum = 0.9, .eps = 1.0});
        std::vector<float> p{1.0F};
        o.step(p, std::vector<float>{0.5F}, all, 0.1);
        // ms = 0.9 + 0.1 * 0.25 = 0.925; mom = 0.1 * 0.5 / sqrt(1.925) = 0.0360375...
        CHECK(p[0] == doctest::Approx(1.0 - 0.05 / std::sqrt(1.925)).epsilon(1e-6));
        o.step(p, std::vector<float>{0.5F}, all, 0.1);
        // ms = 0.8325 + 0.025 = 0.8575; mom = 0.9 * 0.0360375 + 0.05 / sqrt(1.8575)
        const double m1 = 0.05 / std::sqrt(1.925), m2 = 0.9 * m1 + 0.05 / std::sqrt(1.8575);
        CHECK(p[0] == doctest::Approx(1.0 - m1 - m2).epsilon(1e-6));
    }
    SUBCASE("RMSProp, PyTorch semantics (ms starts at 0, eps outside the root)") {
        optimizer o = optimizer::rmsprop({.decay = 0.9, .momentum = 0.0, .eps = 1e-8, .style = rmsprop_style::pytorch});
        std::vector<float> p{1.0F};
        o.step(p, std::vector<float>{0.5F}, all, 0.01);
        // ms = 0.025; step = 0.01 * 0.5 / sqrt(0.025) = 0.0316228
        CHECK(p[0] == doctest::Approx(1.0 - 0.01 * 0.5 / std::sqrt(0.025)).epsilon(1e-6));
    }
    SUBCASE("RMSProp, PyTorch semantics, two steps with momentum and weight decay") {
        // torch.optim.RMSprop(lr 0.01, alpha 0.9, eps 0.1, momentum 0.9, weight_decay 0.1), p = 1,
        // raw gradients 0.5 then -0.3 (by hand in float64; torch 1.13 in float64 gives the same):
        //   step 1: g = 0.5 + 0.1 * 1 = 0.6; ms = 0.1 * 0.36 = 0.036; q = 0.6 / (sqrt(0.036) + 0.1)
        //           = 0.6 / 0.28973666 = 2.0708459910; buf = q; p = 1 - 0.01 * buf = 0.9792915401
        //   step 2: g = -0.3 + 0.1 * 0.9792915401 = -0.2020708460; ms = 0.9 * 0.036 + 0.1 * g^2
        //           = 0.0364832627; q = g / (sqrt(ms) + 0.1) = -0.2020708460 / 0.2910059232
        //           = -0.6943873987; buf = 0.9 * 2.0708459910 + q = 1.1693739932;
        //           p = 0.9792915401 - 0.01 * 1.1693739932 = 0.9675978002
        // (stepping by q instead of buf in step 2 would give 0.9862354141; so would no momentum.)
        optimizer o = optimizer::rmsprop({.decay = 0.9, .momentum = 0.9, .eps = 0.1, .style = rmsprop_style::pytorch});
        std::vector<float> p{1.0F};
        o.step(p, std::vector<float>{0.5F}, all, 0.01, 0.1);
        CHECK(p[0] == doctest::Approx(0.9792915400899763).epsilon(1e-6));
        CHECK(o.mean_square()[0] == doctest::Approx(0.036).epsilon(1e-6).scale(0.0));
        CHECK(o.momentum()[0] == doctest::Approx(2.0708459910023715).epsilon(1e-6).scale(0.0));
        o.step(p, std::vector<float>{-0.3F}, all, 0.01, 0.1);
        CHECK(o.mean_square()[0] == doctest::Approx(0.03648326267995193).epsilon(1e-6).scale(0.0));
        CHECK(o.momentum()[0] == doctest::Approx(1.1693739931824403).epsilon(1e-6).scale(0.0));
        CHECK(p[0] == doctest::Approx(0.9675978001581519).epsilon(1e-6));
    }
    SUBCASE("SGD with momentum and weight decay") {
        optimizer o = optimizer::sgd({.momentum = 0.9});
        std::vector<float> p{2.0F};
        o.step(p, std::vector<float>{1.0F}, all, 0.1, 0.5);  // g = 1 + 0.5 * 2 = 2; p = 2 - 0.2
        CHECK(p[0] == doctest::Approx(1.8));
        o.step(p, std::vector<float>{1.0F}, all, 0.1, 0.5);  // g = 1.9; buf = 1.8 + 1.9 = 3.7
        CHECK(p[0] == doctest::Approx(1.8 - 0.37));
    }
    SUBCASE("SGD, Nesterov momentum and weight decay") {
        optimizer o = optimizer::sgd({.momentum = 0.9, .nesterov = true});
        std::vector<float> p{2.0F};
        // g = 1 + 0.5 * 2 = 2; buf = 2; p = 2 - 0.1 * (2 + 0.9 * 2) = 1.62
        o.step(p, std::vector<float>{1.0F}, all, 0.1, 0.5);
        CHECK(p[0] == doctest::Approx(1.62));
        // g = 1 + 0.5 * 1.62 = 1.81; buf = 0.9 * 2 + 1.81 = 3.61; p = 1.62 - 0.1 * (1.81 + 0.9 * 3.61) = 1.1141
        o.step(p, std::vector<float>{1.0F}, all, 0.1, 0.5);
        CHECK(p[0] == doctest::Approx(1.1141));
    }
    SUBCASE("entries outside the ranges (running statistics) are never touched") {
        optimizer o = optimizer::rmsprop();
        std::vector<float> p{1.0F, 5.0F};
        o.step(p, std::vector<float>{1.0F, 1.0F}, all, 0.1, 0.1);
        CHECK(p[1] == 5.0F);
    }
}

TEST_CASE("clipping, schedule and moving average") {
    std::vector<float> g{3.0F, 4.0F, 100.0F};
    const std::vector<param_range> two{{0, 2}};
    CHECK(clip_by_global_norm(g, two, 2.0) == doctest::Approx(5.0));
    CHECK(g[0] == doctest::Approx(1.2).epsilon(1e-5));
    CHECK(g[1] == doctest::Approx(1.6).epsilon(1e-5));
    CHECK(g[2] == 100.0F);
    CHECK(clip_by_global_norm(g, two, 10.0) == doctest::Approx(2.0).epsilon(1e-5));  // under: unchanged
    CHECK(g[0] == doctest::Approx(1.2).epsilon(1e-5));
    std::vector<float> v{-3.0F, 0.5F};
    clip_by_value(v, std::vector<param_range>{{0, 2}}, 1.0);
    CHECK(v == std::vector<float>{-1.0F, 0.5F});

    const exponential_decay s{.base = 0.045, .rate = 0.94, .every = 2.0};
    CHECK(s.at(0.0) == doctest::Approx(0.045));
    CHECK(s.at(1.99) == doctest::Approx(0.045));
    CHECK(s.at(2.0) == doctest::Approx(0.045 * 0.94));
    CHECK(s.at(5.5) == doctest::Approx(0.045 * 0.94 * 0.94));

    // Cosine by hand: cos(pi/4) = sqrt(2)/2, so at a quarter the rate is base * (1 + sqrt(2)/2) / 2.
    const cosine_decay c{.base = 0.04, .total = 100.0, .floor = 0.0};
    CHECK(c.at(0.0) == doctest::Approx(0.04));
    CHECK(c.at(25.0) == doctest::Approx(0.04 * (1.0 + std::sqrt(0.5)) / 2.0));
    CHECK(c.at(50.0) == doctest::Approx(0.02));
    CHECK(c.at(100.0) == doctest::Approx(0.0));
    CHECK(c.at(250.0) == doctest::Approx(0.0));  // flat after the end
    const cosine_decay cf{.base = 0.05, .total = 10.0, .floor = 0.01};
    CHECK(cf.at(5.0) == doctest::Approx(0.03));
    CHECK(cf.at(10.0) == doctest::Approx(0.01));

    moving_average ema{0.5, {.warmup = false}};  // the fixed decay (the warm-up: the cases below)
    ema.update(std::vector<float>{2.0F});
    ema.update(std::vector<float>{4.0F});
    CHECK(ema.shadow()[0] == doctest::Approx(3.0));
}

TEST_CASE("trainer: clear errors for wrong sizes and misuse") {
    weights<every_layer> w;
    init_seeded(w, 1);
    trainer<every_layer> t{w};
    CHECK_THROWS_WITH_AS(t.backward(std::vector<float>(4)), "ctnet: trainer: backward() needs a forward() first", error);
    CHECK_THROWS_WITH_AS(t.forward(std::vector<float>(5)), doctest::Contains("not a positive multiple"), error);
    t.forward(std::vector<float>(2 * 3 * 9 * 8, 0.5F));
    CHECK_THROWS_WITH_AS(t.backward(std::vector<float>(4)),
                         "ctnet: trainer: output gradient has 4 floats, expected 8", error);
    using one = network<shape{1, 1, 1}, seq<node<"bn", batch_norm<>>>>;
    weights<one> w1;
    trainer<one> t1{w1};
    CHECK_THROWS_WITH_AS(t1.forward(std::vector<float>{1.0F}),
                         doctest::Contains("batch_norm 'bn' needs more than one value per channel"), error);
    // A forward pass that threw leaves nothing to differentiate.
    CHECK_THROWS_WITH_AS(t1.backward(std::vector<float>{0.0F}), "ctnet: trainer: backward() needs a forward() first",
                         error);
}

TEST_CASE("train_step: an update that makes a parameter non-finite throws, naming the tensor") {
    weights<relu_on_input> w;
    init_seeded(w, 5, true);
    trainer<relu_on_input> t{w};
    optimizer opt = optimizer::sgd({.momentum = 0.0});
    const auto ranges = trainable_ranges<relu_on_input>();
    const auto x = random_vector(2 * input_shape_v<relu_on_input>.size(), 6);
    const std::vector<int> labels{0, 2};
    const recipe r{.label_smoothing = 0.1, .aux_weight = 0.0, .weight_decay = 0.0, .clip_norm = 0.0};
    const step_result ok = train_step(t, opt, ranges, x, labels, r, 0.01);
    CHECK(std::isfinite(ok.loss));
    CHECK_THROWS_WITH_AS(train_step(t, opt, ranges, x, labels, r, 1e300),
                         doctest::Contains("the update made a parameter non-finite: mix.a.weight"), error);
}

TEST_CASE("checkpoints: saved before the first step, after steps, and hostile counters") {
    using net = relu_on_input;
    weights<net> w;
    init_seeded(w, 7, true);
    optimizer opt = optimizer::rmsprop();
    moving_average ema{0.9};
    train_state s{.epoch = 0, .step = 0, .dropout_rng = 123, .config = std::string(40, 'c')};
    // No optimizer step and no moving-average update yet: the state tensors are empty.
    {
        const auto bytes = checkpoint_bytes(w, opt, &ema, s);
        weights<net> w2;
        optimizer o2 = optimizer::rmsprop();
        moving_average e2{0.9};
        const train_state got = load_checkpoint(io::safetensors_file{"fresh", bytes}, w2, o2, &e2);
        CHECK(got.dropout_rng == 123);
        CHECK(std::equal(w.data().begin(), w.data().end(), w2.data().begin()));
        CHECK(o2.momentum().empty());
        CHECK(e2.shadow().empty());
    }
    // After two steps: parameters, optimizer state and moving average come back exactly.
    trainer<net> t{w};
    const auto ranges = trainable_ranges<net>();
    const auto x = random_vector(2 * input_shape_v<net>.size(), 8);
    for (int i = 0; i < 2; ++i) {
        (void)train_step(t, opt, ranges, x, std::vector<int>{1, 0}, recipe{}, 0.01, &ema);
    }
    s.step = 2;
    const auto bytes = checkpoint_bytes(w, opt, &ema, s);
    weights<net> w3;
    optimizer o3 = optimizer::rmsprop();
    moving_average e3{0.9};
    CHECK(load_checkpoint(io::safetensors_file{"after", bytes}, w3, o3, &e3).step == 2);
    CHECK(std::equal(w.data().begin(), w.data().end(), w3.data().begin()));
    CHECK(o3.momentum() == opt.momentum());
    CHECK(o3.mean_square() == opt.mean_square());
    CHECK(o3.steps() == opt.steps());
    CHECK(e3.shadow() == ema.shadow());
    // Counters that overflow 64 bits are rejected with the field's name (same-length edits of
    // the header: the padding config string gives up the characters the number takes).
    auto edited = [&](const std::string& from, const std::string& to) {
        std::string text(bytes.begin(), bytes.end());
        const std::string pad(40, 'c');
        const auto at = text.find(from);
        REQUIRE(at != std::string::npos);
        text.replace(at, from.size(), to);
        text.replace(text.find(pad), pad.size(), std::string(pad.size() - (to.size() - from.size()), 'c'));
        return std::vector<std::uint8_t>(text.begin(), text.end());
    };
    weights<net> w4 = w3;
    for (const char* big : {"18446744073709551616", "99999999999999999999"}) {
        const auto b = edited("\"dropout_rng\":\"123\"", std::string{"\"dropout_rng\":\""} + big + "\"");
        const std::string want = "metadata field 'dropout_rng' is " + std::string{big} + ", out of range";
        CHECK_THROWS_WITH_AS(load_checkpoint(io::safetensors_file{"hostile", b}, w4, o3, &e3),
                             doctest::Contains(want.c_str()), error);
    }
    const auto b = edited("\"dropout_rng\":\"123\"", "\"dropout_rng\":\"18446744073709551615\"");
    CHECK(load_checkpoint(io::safetensors_file{"max", b}, w4, o3, &e3).dropout_rng == ~std::uint64_t{0});
    // Half an optimizer state (a momentum without its mean square) is refused, and what was
    // loaded before stays; the optimizer refuses it too when handed one directly.
    optimizer half = optimizer::rmsprop();
    half.momentum().assign(w.data().size(), 0.5F);
    const auto half_bytes = checkpoint_bytes(w, half, &ema, s);
    const std::vector<float> kept_w(w4.data().begin(), w4.data().end()), kept_mom = o3.momentum(),
                             kept_ms = o3.mean_square(), kept_shadow = e3.shadow();
    const std::int64_t kept_steps = o3.steps();
    CHECK_THROWS_WITH_AS(load_checkpoint(io::safetensors_file{"half", half_bytes}, w4, o3, &e3),
                         doctest::Contains("'ctnet_state.mean_square' is empty; both or neither"), error);
    CHECK(std::equal(kept_w.begin(), kept_w.end(), w4.data().begin()));
    CHECK(o3.momentum() == kept_mom);
    CHECK(o3.mean_square() == kept_ms);
    CHECK(o3.steps() == kept_steps);
    CHECK(e3.shadow() == kept_shadow);
    std::vector<float> p(w.data().begin(), w.data().end()), g(p.size(), 0.0F);
    CHECK_THROWS_WITH_AS(half.step(p, g, ranges, 0.01), doctest::Contains("(mean square 0)"), error);
    optimizer other_half = optimizer::rmsprop();  // the mean square without the momentum
    other_half.mean_square().assign(p.size(), 1.0F);
    CHECK_THROWS_WITH_AS(other_half.step(p, g, ranges, 0.01), doctest::Contains("state for 0 parameters"), error);
}

// The training GEMM on random shapes and every operand layout: against a double-precision
// triple loop, and bit for bit between layouts holding the same values (packing moves values,
// it must not change a sum: the transposed-B and contiguous-A packs use SIMD transposes).
TEST_CASE("training GEMM: every operand layout, edge panels, equal sums for equal values") {
    rng g{77};
    std::vector<float> scratch(cpu::gemm_thread_scratch);
    for (int trial = 0; trial < 60; ++trial) {
        const int m = 1 + static_cast<int>(g.next() % 40), n = 1 + static_cast<int>(g.next() % 150),
                  k = 1 + static_cast<int>(g.next() % 300);
        std::vector<float> a(static_cast<std::size_t>(m) * k), b(static_cast<std::size_t>(k) * n);
        for (float& v : a) v = static_cast<float>(g.normal());
        for (float& v : b) v = static_cast<float>(g.normal());
        // The same matrices stored transposed: at(r, c) equal in both layouts.
        std::vector<float> at(a.size()), bt(b.size());
        for (int r = 0; r < m; ++r)
            for (int c = 0; c < k; ++c) at[static_cast<std::size_t>(c) * m + r] = a[static_cast<std::size_t>(r) * k + c];
        for (int r = 0; r < k; ++r)
            for (int c = 0; c < n; ++c) bt[static_cast<std::size_t>(c) * k + r] = b[static_cast<std::size_t>(r) * n + c];
        const auto uk = static_cast<std::size_t>(k), un = static_cast<std::size_t>(n), um = static_cast<std::size_t>(m);
        const cpu::matrix_ref as[2] = {{a.data(), uk, 1}, {at.data(), 1, um}};
        const cpu::matrix_ref bs[2] = {{b.data(), un, 1}, {bt.data(), 1, uk}};
        std::vector<float> first;
        for (int ai = 0; ai < 2; ++ai)
            for (int bi = 0; bi < 2; ++bi) {
                std::vector<float> c(um * un, 0.0F), packed(cpu::gemm_packed_a_floats(m, k));
                const cpu::gemm_args args{.m = m, .n = n, .k = k, .a = as[ai], .b = bs[bi], .c = c.data(), .ldc = un};
                cpu::gemm_pack_a(args, packed.data(), 0, (m + cpu::gemm_mr - 1) / cpu::gemm_mr);
                cpu::gemm_packed(args, packed.data(), scratch.data());
                if (first.empty()) {
                    first = c;
                    double worst = 0.0;
                    for (int r = 0; r < m; ++r)
                        for (int j = 0; j < n; ++j) {
                            double want = 0.0, mag = 0.0;
                            for (int q = 0; q < k; ++q) {
                                const double t = static_cast<double>(a[static_cast<std::size_t>(r) * k + q]) *
                                                 b[static_cast<std::size_t>(q) * n + j];
                                want += t;
                                mag += std::fabs(t);
                            }
                            // a max that keeps a NaN (std::max(worst, NaN) would drop it)
                            const double e = std::fabs(c[static_cast<std::size_t>(r) * n + j] - want) / mag;
                            if (!(e <= worst)) worst = e;
                        }
                    CHECK_MESSAGE(worst < 1e-5, "m=" << m << " n=" << n << " k=" << k << ": error " << worst);
                } else {
                    CHECK_MESSAGE(c == first, "m=" << m << " n=" << n << " k=" << k << ", layouts A " << ai << " B " << bi
                                                   << " differ from the row-major product");
                }
            }
    }
}

// im2col and its adjoint col2im (training's GEMM convolutions) against plain loops, bit for bit:
// strides 1 to 3 (2 has its own SIMD rows), widths 1 to 40, every padding up to the kernel's.
TEST_CASE("training im2col / col2im: plain loops' values on random windows, strides 1-3") {
    rng g{91};
    for (int trial = 0; trial < 300; ++trial) {
        const auto pick = [&](int lo, int hi) { return lo + static_cast<int>(g.next() % static_cast<std::uint64_t>(hi - lo + 1)); };
        window win;
        win.kh = pick(1, 3);
        win.kw = pick(1, 7);
        win.sh = pick(1, 3);
        win.sw = pick(1, 3);
        win.pt = pick(0, win.kh - 1);
        win.pb = pick(0, win.kh - 1);
        win.pl = pick(0, win.kw - 1);
        win.pr = pick(0, win.kw - 1);
        const shape in{pick(1, 3), pick(win.kh, 12), pick(win.kw, 40)};
        const int oh = (in.h + win.pt + win.pb - win.kh) / win.sh + 1, ow = (in.w + win.pl + win.pr - win.kw) / win.sw + 1;
        const shape out{1, oh, ow};
        const std::size_t hw = static_cast<std::size_t>(oh) * ow, k = static_cast<std::size_t>(in.c) * win.kh * win.kw;
        std::vector<float> x(in.size()), col(k * hw, -7.0F), dcol(k * hw), dx(in.size()), want_dx(in.size());
        for (float& v : x) v = static_cast<float>(g.normal());
        for (float& v : dcol) v = static_cast<float>(g.normal());
        for (std::size_t i = 0; i < dx.size(); ++i) dx[i] = want_dx[i] = static_cast<float>(g.normal());
        cpu::im2col(x.data(), in, out, win, col.data());
        cpu::col2im_add(dcol.data(), in, out, win, dx.data());
        bool same = true;
        for (int c = 0; c < in.c; ++c)
            for (int i = 0; i < win.kh; ++i)
                for (int j = 0; j < win.kw; ++j)
                    for (int y = 0; y < oh; ++y)
                        for (int z = 0; z < ow; ++z) {
                            const std::size_t row = (static_cast<std::size_t>(c) * win.kh + i) * win.kw + j;
                            const std::size_t at = row * hw + static_cast<std::size_t>(y) * ow + z;
                            const int iy = y * win.sh - win.pt + i, ix = z * win.sw - win.pl + j;
                            const bool inside = iy >= 0 && iy < in.h && ix >= 0 && ix < in.w;
                            const std::size_t src = (static_cast<std::size_t>(c) * in.h + (inside ? iy : 0)) * in.w + (inside ? ix : 0);
                            same = same && col[at] == (inside ? x[src] : 0.0F);
                            if (inside) want_dx[src] += dcol[at];
                        }
        CHECK_MESSAGE(same, "im2col, input " << in.c << "x" << in.h << "x" << in.w << ", window " << win.kh << "x" << win.kw
                                              << " stride " << win.sh << "," << win.sw);
        CHECK_MESSAGE(dx == want_dx, "col2im, input " << in.c << "x" << in.h << "x" << in.w << ", window " << win.kh << "x"
                                                       << win.kw << " stride " << win.sh << "," << win.sw);
    }
}

// TF's ExponentialMovingAverage(decay, num_updates): d = min(decay, (1 + n) / (10 + n)), n = the
// averaging updates before this one. By hand (checked with python3's fractions), decay 0.2 so the
// cap is reached at the third update, two parameters:
//   initialise        shadow = (10, 0)                                  (a copy, not counted)
//   n = 0: d = min(0.2, 1/10) = 0.1,  params (20, 11): 0.1*10 + 0.9*20 = 19, 0.1*0 + 0.9*11 = 9.9
//   n = 1: d = min(0.2, 2/11) = 2/11, params (30, 0):  (2/11)*19 + (9/11)*30 = 308/11 = 28,
//                                                      (2/11)*9.9 = 1.8
//   n = 2: d = min(0.2, 3/12) = 0.2,  params (40, 0):  0.2*28 + 0.8*40 = 37.6, 0.2*1.8 = 0.36
TEST_CASE("moving average: TF's num_updates warm-up against hand-computed values") {
    moving_average ema{0.2};
    CHECK(ema.warmup());
    CHECK(ema.decay_at(0) == doctest::Approx(0.1));
    CHECK(ema.decay_at(1) == doctest::Approx(2.0 / 11.0));
    CHECK(ema.decay_at(2) == doctest::Approx(0.2));  // 3/12 = 0.25, capped at the decay
    CHECK(ema.decay_at(50) == 0.2);
    ema.update(std::vector<float>{10.0F, 0.0F});
    CHECK(ema.updates() == 0);
    CHECK(ema.shadow() == std::vector<float>{10.0F, 0.0F});
    ema.update(std::vector<float>{20.0F, 11.0F});
    CHECK(ema.updates() == 1);
    CHECK(ema.shadow()[0] == doctest::Approx(19.0).epsilon(1e-6));
    CHECK(ema.shadow()[1] == doctest::Approx(9.9).epsilon(1e-6));
    ema.update(std::vector<float>{30.0F, 0.0F});
    CHECK(ema.shadow()[0] == doctest::Approx(28.0).epsilon(1e-6));
    CHECK(ema.shadow()[1] == doctest::Approx(1.8).epsilon(1e-6));
    ema.update(std::vector<float>{40.0F, 0.0F});
    CHECK(ema.updates() == 3);
    CHECK(ema.shadow()[0] == doctest::Approx(37.6).epsilon(1e-6));
    CHECK(ema.shadow()[1] == doctest::Approx(0.36).epsilon(1e-6));
    // ctnet train's 0.999: (1 + n) / (10 + n) reaches it at n = 8990 (8991 / 9000).
    const moving_average tf{0.999};
    CHECK(tf.decay_at(936) == doctest::Approx(937.0 / 946.0));  // the last of the demo's 937 steps
    CHECK(tf.decay_at(8989) < 0.999);
    CHECK(tf.decay_at(8990) == doctest::Approx(0.999));
    CHECK(tf.decay_at(1'000'000) == 0.999);
}

// The old behaviour, {.warmup = false}: d = 0.5 from the first averaging update on.
//   shadow 10; params 20: 0.5*10 + 0.5*20 = 15; params 30: 22.5; params 40: 31.25
TEST_CASE("moving average: without the warm-up, the fixed decay") {
    moving_average ema{0.5, {.warmup = false}};
    CHECK_FALSE(ema.warmup());
    CHECK(ema.decay_at(0) == 0.5);
    CHECK(ema.decay_at(1'000) == 0.5);
    ema.update(std::vector<float>{10.0F});
    ema.update(std::vector<float>{20.0F});
    CHECK(ema.shadow()[0] == 15.0F);
    ema.update(std::vector<float>{30.0F});
    CHECK(ema.shadow()[0] == 22.5F);
    ema.update(std::vector<float>{40.0F});
    CHECK(ema.shadow()[0] == 31.25F);
    CHECK(ema.updates() == 3);  // counted either way (checkpoints save it)
}

TEST_CASE("checkpoints: the moving average's update count; format-1 files load only without warm-up") {
    using net = relu_on_input;
    weights<net> w;
    init_seeded(w, 9, true);
    optimizer opt = optimizer::rmsprop();
    moving_average ema{0.9};
    trainer<net> t{w};
    const auto ranges = trainable_ranges<net>();
    const auto x = random_vector(2 * input_shape_v<net>.size(), 10);
    // The first train_step's update initialises the average, the next two average: count 2.
    for (int i = 0; i < 3; ++i) (void)train_step(t, opt, ranges, x, std::vector<int>{1, 0}, recipe{}, 0.01, &ema);
    REQUIRE(ema.updates() == 2);
    const train_state s{.epoch = 1, .step = 3, .dropout_rng = 5, .config = "c"};
    const auto bytes = checkpoint_bytes(w, opt, &ema, s);
    const std::string text(bytes.begin(), bytes.end());
    CHECK(text.find("\"format\":\"ctnet-checkpoint 2\"") != std::string::npos);
    CHECK(text.find("\"ema_updates\":\"2\"") != std::string::npos);
    {
        weights<net> w2;
        optimizer o2 = optimizer::rmsprop();
        moving_average e2{0.9};
        (void)load_checkpoint(io::safetensors_file{"count", bytes}, w2, o2, &e2);
        CHECK(e2.updates() == 2);
        CHECK(e2.shadow() == ema.shadow());
        // The next update continues with d = min(0.9, 3/12) in both: identical shadows.
        moving_average copy = ema;
        copy.update(w.data());
        e2.update(w.data());
        CHECK(e2.shadow() == copy.shadow());
    }
    // Same-length edits: a format-1 file (no "ema_updates"), and a format-2 file missing it.
    auto edit = [&](bool to_format_1) {
        std::string e = text;
        e.replace(e.find("\"ema_updates\""), 13, "\"xma_updates\"");
        if (to_format_1) e.replace(e.find("ctnet-checkpoint 2"), 18, "ctnet-checkpoint 1");
        return std::vector<std::uint8_t>(e.begin(), e.end());
    };
    weights<net> w3;
    optimizer o3 = optimizer::rmsprop();
    moving_average warm{0.9};
    CHECK_THROWS_WITH_AS(load_checkpoint(io::safetensors_file{"missing", edit(false)}, w3, o3, &warm),
                         doctest::Contains("metadata field 'ema_updates' is missing"), error);
    CHECK_THROWS_WITH_AS(load_checkpoint(io::safetensors_file{"old", edit(true)}, w3, o3, &warm),
                         doctest::Contains("has no moving-average update count ('ema_updates')"), error);
    CHECK(warm.shadow().empty());  // refused: nothing changed
    CHECK(o3.steps() == 0);
    moving_average fixed{0.9, {.warmup = false}};
    (void)load_checkpoint(io::safetensors_file{"old", edit(true)}, w3, o3, &fixed);
    CHECK(fixed.shadow() == ema.shadow());
    CHECK(fixed.updates() == opt.steps());  // format 1: one update per optimizer step assumed
    optimizer o4 = optimizer::rmsprop();
    CHECK(load_checkpoint(io::safetensors_file{"old", edit(true)}, w3, o4, nullptr).step == 3);
}

TEST_CASE("training plans every backend shares: the kept copies and the optimizer's trainable runs") {
    // exec::keep_of: which values a backward pass needs copied (cpu/trainer.hpp, cuda/trainer.hpp).
    // Batch norm runs in place on its conv's output, and its backward reads that input: each
    // batch norm keeps a copy of it (6 in every_layer); the ReLU after it, in place too, needs its
    // own output, which nothing overwrites later; a conv's input is never overwritten here.
    const auto& p = every_layer::program;
    int kept = 0;
    for (int i = 0; i < p.n_ops; ++i) {
        const exec::keep k = exec::keep_of(p, i, true);
        kept += k != exec::keep::none ? 1 : 0;
        CHECK(k == (p.ops[i].kind == op_kind::batch_norm ? exec::keep::input : exec::keep::none));
    }
    CHECK(kept == 6);
    // A ReLU in place on the network's first conv output, then a second in-place ReLU on it: the
    // first ReLU's output (which its backward reads) is overwritten by the second, so it is kept.
    using twice = network<shape{2, 5, 5}, seq<node<"c", conv<3, k<3>, pad<1>>>, relu, relu, global_avg_pool, flatten,
                                              node<"fc", linear<3, 2>>>>;
    const auto& q = twice::program;
    REQUIRE(q.ops[1].kind == op_kind::relu);
    REQUIRE(q.ops[2].kind == op_kind::relu);
    CHECK(exec::keep_of(q, 1, true) == exec::keep::output);
    CHECK(exec::keep_of(q, 2, true) == exec::keep::none);
    CHECK(exec::keep_of(q, 0, true) == exec::keep::none);  // the conv's input is the network input

    // exec::trainable_runs: Inception v3's trainable floats, as contiguous runs (one optimizer
    // launch each on a device), covering every trainable tensor and no running statistic.
    using v3 = models::inception_v3<>;
    const auto runs = exec::trainable_runs<v3>();
    std::vector<char> in_run(v3::program.storage, 0);
    std::size_t covered = 0, prev_end = 0;
    for (const auto& [offset, count] : runs) {
        CHECK(offset >= prev_end);  // sorted, disjoint
        CHECK((offset > prev_end || prev_end == 0));  // maximal: two runs never touch
        prev_end = offset + count;
        covered += count;
        std::fill(in_run.begin() + static_cast<std::ptrdiff_t>(offset), in_run.begin() + static_cast<std::ptrdiff_t>(prev_end), 1);
    }
    std::size_t trainable = 0;
    for (const tensor_info& t : weights<v3>::tensors()) {
        if (t.trainable) trainable += t.count;
        for (std::size_t j = t.offset; j < t.offset + t.count; ++j)
            if (static_cast<bool>(in_run[j]) != t.trainable) FAIL_CHECK(t.name << " element " << j - t.offset);
    }
    CHECK(covered == trainable);
    // 96 conv + batch norm pairs (94 in the main network, 2 in the aux head): each conv's weights
    // and its batch norm's gamma and beta form a run, closed by the running statistics; fc's
    // weight and bias are one more; the aux head's fc runs on into Mixed_7a's first conv (in
    // torchvision's order the aux head sits between Mixed_6e and Mixed_7a): 96 + 1.
    CHECK(runs.size() == 97);
}
