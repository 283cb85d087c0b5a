// The CUDA training kernels (cuda/launch.hpp, "Training") against the reference kernels
// (cpu/backward.hpp, cpu/reference.hpp, train/loss.hpp, train/optim.hpp) on random shapes: conv
// input and weight gradients (FP32 within 1e-5 relative, TF32 within 1e-2), batch norm with batch
// statistics and its gradient, the pooling, ReLU, linear, softmax, scale and affine gradients,
// the smoothed cross-entropy, the sum of squares and every optimizer's update. Every gradient is added to a
// buffer that already holds values (the kernels add, as the reference does), the in-place
// forms are checked against the reference run in place, and the conv gradients run twice to
// show they repeat their bits. Skips with a message when no GPU is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <ctnet/core/random.hpp>
#include <ctnet/cpu/backward.hpp>
#include <ctnet/cpu/reference.hpp>
#include <ctnet/cuda/launch.hpp>
#include <ctnet/cuda/operands.hpp>
#include <ctnet/cuda/runtime.hpp>
#include <ctnet/train/loss.hpp>
#include <ctnet/train/optim.hpp>

#include "check.hpp"

using namespace ctnet;

namespace {

bool gpu_present() {
    if (cuda::device_count() > 0) return true;
    MESSAGE("skipped: no CUDA device on this machine");
    return false;
}

// A host vector and its device copy.
template <class T>
struct mirrored {
    std::vector<T> host;
    cuda::device_buffer<T> dev;
    explicit mirrored(std::vector<T> h) : host{std::move(h)}, dev{host.size()} { upload(); }
    void upload() { CTNET_CUDA(cudaMemcpy(dev.data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice)); }
    [[nodiscard]] std::vector<T> download() const {
        CTNET_CUDA(cudaDeviceSynchronize());
        std::vector<T> h(host.size());
        CTNET_CUDA(cudaMemcpy(h.data(), dev.data(), h.size() * sizeof(T), cudaMemcpyDeviceToHost));
        return h;
    }
};

std::vector<float> normal(std::size_t n, rng& g) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(g.normal());
    return v;
}

// n samples of s, `extra` unused floats after each (a channel slice), on host and device.
struct tensor {
    shape s;
    int n;
    std::size_t stride;
    mirrored<float> m;
    tensor(shape s_, int n_, std::size_t extra, rng& g)
        : s{s_}, n{n_}, stride{s_.size() + extra}, m{normal(stride * static_cast<std::size_t>(n_), g)} {}
    [[nodiscard]] cuda::view dev() const { return {m.dev.data(), static_cast<long long>(stride), s.c, s.h, s.w}; }
    [[nodiscard]] cpu::ref::in_view in() const { return {m.host.data(), stride, s}; }
    [[nodiscard]] cpu::ref::out_view out() { return {m.host.data(), stride, s}; }
};

// max |got - want| / max |want| over whole buffers (the gaps between slices hold the same
// values on both sides); infinite on any non-finite value or a size that differs.
double relative(const std::vector<float>& got, const std::vector<float>& want) { return test::relative_error(got, want); }

cuda::geometry geometry_of(const window& w) { return {w.kh, w.kw, w.sh, w.sw, w.pt, w.pb, w.pl, w.pr}; }

struct conv_case {
    shape in;
    int out_c;
    window win;
    int n;
};

}  // namespace

TEST_CASE("cuda training: conv input and weight gradients equal the reference's") {
    if (!gpu_present()) return;
    // Inception's kinds of conv (1x1, 3x3, stride 2, 1x7 / 7x1, 5x5, the 3-channel stem), more
    // than one 64-row tile, odd sizes and asymmetric padding.
    const conv_case cases[] = {
        {{3, 19, 17}, 8, {.kh = 3, .kw = 3, .sh = 2, .sw = 2}, 3},
        {{70, 9, 9}, 96, {.kh = 1, .kw = 1}, 4},
        {{48, 11, 13}, 64, {.kh = 5, .kw = 5, .pt = 2, .pb = 2, .pl = 2, .pr = 2}, 2},
        {{40, 17, 17}, 72, {.kh = 1, .kw = 7, .pl = 3, .pr = 3}, 3},
        {{40, 17, 17}, 72, {.kh = 7, .kw = 1, .pt = 3, .pb = 3}, 3},
        {{33, 15, 15}, 65, {.kh = 3, .kw = 3, .sh = 2, .sw = 2}, 5},
        {{6, 10, 7}, 5, {.kh = 2, .kw = 3, .sh = 3, .sw = 1, .pt = 1, .pb = 0, .pl = 2, .pr = 1}, 2},
    };
    rng g{41};
    for (const conv_case& c : cases) {
        const window& win = c.win;
        const shape out{c.out_c, (c.in.h + win.pt + win.pb - win.kh) / win.sh + 1, (c.in.w + win.pl + win.pr - win.kw) / win.sw + 1};
        tensor x{c.in, c.n, 3, g}, dy{out, c.n, 2, g};
        const mirrored<float> w{normal(static_cast<std::size_t>(out.c) * c.in.c * win.kh * win.kw, g)};
        tensor dx0{c.in, c.n, 1, g};
        const std::vector<float> dw0 = normal(w.host.size(), g), db0 = normal(static_cast<std::size_t>(out.c), g);
        std::vector<float> want_dx = dx0.m.host, want_dw = dw0, want_db = db0;
        cpu::ref::conv2d_backward(x.in(), dy.in(), {want_dx.data(), dx0.stride, c.in}, c.n, w.host.data(), want_dw.data(),
                                  want_db.data(), win);
        const cuda::geometry geo = geometry_of(win);
        const std::string where = std::to_string(c.in.c) + "x" + std::to_string(c.in.h) + "x" + std::to_string(c.in.w) +
                                  " -> " + std::to_string(out.c) + ", window " + std::to_string(win.kh) + "x" +
                                  std::to_string(win.kw) + " stride " + std::to_string(win.sh);
        cuda::device_buffer<float> work{static_cast<std::size_t>(cuda::conv2d_weight_grad_workspace(geo, x.dev(), dy.dev(), c.n))};
        for (const cuda::precision p : {cuda::precision::fp32, cuda::precision::tf32}) {
            const double tol = p == cuda::precision::fp32 ? 1e-5 : 1e-2;
            std::vector<float> first_dx, first_dw;
            for (int rep = 0; rep < 2; ++rep) {
                tensor dx{c.in, c.n, 1, g};
                dx.m.host = dx0.m.host;
                dx.m.upload();
                mirrored<float> dw{dw0}, db{db0};
                cuda::conv2d_input_grad(w.dev.data(), geo, dy.dev(), dx.dev(), c.n, p, nullptr);
                cuda::conv2d_weight_grad(geo, x.dev(), dy.dev(), c.n, dw.dev.data(), db.dev.data(), work.data(), p, nullptr);
                const std::vector<float> got_dx = dx.m.download(), got_dw = dw.download(), got_db = db.download();
                MESSAGE(where << (p == cuda::precision::fp32 ? ", fp32" : ", tf32") << ": dx " << relative(got_dx, want_dx)
                              << ", dw " << relative(got_dw, want_dw) << ", db " << relative(got_db, want_db));
                CHECK_MESSAGE(relative(got_dx, want_dx) < tol, where);
                CHECK_MESSAGE(relative(got_dw, want_dw) < tol, where);
                CHECK_MESSAGE(relative(got_db, want_db) < 1e-5, where);
                if (rep == 0) {
                    first_dx = got_dx;
                    first_dw = got_dw;
                } else {
                    CHECK(got_dx == first_dx);
                    CHECK(got_dw == first_dw);
                }
            }
        }
    }
}

TEST_CASE("cuda training: batch norm with batch statistics, running statistics and its gradient") {
    if (!gpu_present()) return;
    rng g{43};
    // One block per channel (the first three), then several (operands::bn_blocks): slices that
    // end inside a sample's plane, and planes smaller than a block's stride (a step wraps samples).
    const std::pair<shape, int> cases[] = {{shape{5, 7, 9}, 3}, {shape{300, 2, 2}, 3}, {shape{3, 35, 35}, 3},
                                           {shape{2, 64, 67}, 5}, {shape{3, 5, 3}, 400}, {shape{2, 150, 149}, 2}};
    for (const auto& [s, n] : cases) {
        INFO("shape " << s.c << "x" << s.h << "x" << s.w << ", batch " << n << ", "
                      << cuda::operands::bn_blocks(static_cast<long long>(n) * s.h * s.w) << " blocks per channel");
        tensor x{s, n, 4, g}, dy{s, n, 0, g};
        mirrored<double> scratch{std::vector<double>(4 * cuda::bn_partials(s.c, static_cast<long long>(n) * s.h * s.w))};
        const auto c = static_cast<std::size_t>(s.c);
        mirrored<float> params{normal(4 * c, g)};
        for (std::size_t k = 3 * c; k < 4 * c; ++k) params.host[k] = std::fabs(params.host[k]) + 0.5F;  // a variance
        params.upload();
        const float* weight = params.host.data();
        const float* bias = weight + c;
        std::vector<float> want_y(x.m.host.size()), want_mean(c), want_var(c);
        cpu::ref::batch_norm_train(x.in(), {want_y.data(), x.stride, s}, n, weight, bias, 1e-3, want_mean.data(), want_var.data());
        std::vector<float> want_params = params.host, want_invstd(c);
        const float mom = 0.1F, unbias = static_cast<float>(n * s.h * s.w) / static_cast<float>(n * s.h * s.w - 1);
        for (std::size_t k = 0; k < c; ++k) {
            want_params[2 * c + k] = (1.0F - mom) * want_params[2 * c + k] + mom * want_mean[k];
            want_params[3 * c + k] = (1.0F - mom) * want_params[3 * c + k] + mom * want_var[k] * unbias;
            want_invstd[k] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(want_var[k]) + 1e-3));
        }
        mirrored<float> y{std::vector<float>(x.m.host.size(), 0.0F)}, mean{std::vector<float>(c)}, invstd{std::vector<float>(c)};
        const cuda::view yv{y.dev.data(), static_cast<long long>(x.stride), s.c, s.h, s.w};
        cuda::batch_norm_train(params.dev.data(), params.dev.data() + c, 1e-3, mom, x.dev(), yv, n, mean.dev.data(),
                               invstd.dev.data(), params.dev.data() + 2 * c, params.dev.data() + 3 * c, scratch.dev.data(), nullptr);
        const std::vector<float> got_y = y.download();
        CHECK(relative(got_y, want_y) < 1e-5);
        CHECK(relative(mean.download(), want_mean) < 1e-5);
        CHECK(relative(invstd.download(), want_invstd) < 1e-5);
        CHECK(relative(params.download(), want_params) < 1e-5);

        // The gradient, from the mean and invstd just computed (xhat as the CPU trainer forms it).
        std::vector<float> xhat(x.m.host.size());
        for (int i = 0; i < n; ++i)
            for (std::size_t k = 0; k < c; ++k)
                for (std::size_t j = 0; j < static_cast<std::size_t>(s.h) * s.w; ++j) {
                    const std::size_t at = i * x.stride + k * s.h * s.w + j;
                    xhat[at] = (x.m.host[at] - want_mean[k]) * want_invstd[k];
                }
        tensor dx{s, n, 4, g};
        std::vector<float> want_dx = dx.m.host, want_dw(c, 0.5F), want_db(c, -0.5F);
        cpu::ref::batch_norm_train_backward({xhat.data(), x.stride, s}, dy.in(), {want_dx.data(), dx.stride, s}, n, weight,
                                            want_invstd.data(), want_dw.data(), want_db.data());
        mirrored<float> dw{std::vector<float>(c, 0.5F)}, db{std::vector<float>(c, -0.5F)};
        mirrored<float> mean_ref{want_mean}, invstd_ref{want_invstd};
        cuda::batch_norm_train_backward(params.dev.data(), mean_ref.dev.data(), invstd_ref.dev.data(), x.dev(), dy.dev(),
                                        dx.dev(), n, dw.dev.data(), db.dev.data(), scratch.dev.data(), nullptr);
        CHECK(relative(dx.m.download(), want_dx) < 1e-5);
        CHECK(relative(dw.download(), want_dw) < 1e-5);
        CHECK(relative(db.download(), want_db) < 1e-5);
        // In place: dx == dy replaces dy by the gradient.
        std::vector<float> want_in_place = dy.m.host;
        std::vector<float> unused_w(c), unused_b(c);
        cpu::ref::batch_norm_train_backward({xhat.data(), x.stride, s}, {want_in_place.data(), dy.stride, s},
                                            {want_in_place.data(), dy.stride, s}, n, weight, want_invstd.data(),
                                            unused_w.data(), unused_b.data());
        cuda::batch_norm_train_backward(params.dev.data(), mean_ref.dev.data(), invstd_ref.dev.data(), x.dev(), dy.dev(),
                                        dy.dev(), n, dw.dev.data(), db.dev.data(), scratch.dev.data(), nullptr);
        CHECK(relative(dy.m.download(), want_in_place) < 1e-5);
    }
}

TEST_CASE("cuda training: pooling and ReLU gradients equal the reference's bit for bit") {
    if (!gpu_present()) return;
    rng g{47};
    const window wins[] = {{.kh = 3, .kw = 3, .sh = 2, .sw = 2},
                           {.kh = 3, .kw = 3, .pt = 1, .pb = 1, .pl = 1, .pr = 1},
                           {.kh = 2, .kw = 3, .sh = 1, .sw = 2, .pt = 1, .pb = 0, .pl = 0, .pr = 1}};
    for (const window& win : wins) {
        const shape in{6, 17, 15};
        const shape out{6, (in.h + win.pt + win.pb - win.kh) / win.sh + 1, (in.w + win.pl + win.pr - win.kw) / win.sw + 1};
        const int n = 2;
        tensor x{in, n, 3, g}, dy{out, n, 1, g}, dmax{in, n, 2, g}, davg{in, n, 2, g};
        for (float& v : x.m.host) v = std::round(v * 1.5F) / 2.0F;  // ties
        x.m.host[5] = std::numeric_limits<float>::quiet_NaN();
        x.m.upload();
        std::vector<float> want_max = dmax.m.host;
        cpu::ref::max_pool_backward(x.in(), dy.in(), {want_max.data(), dmax.stride, in}, n, win);
        cuda::max_pool_backward(geometry_of(win), x.dev(), dy.dev(), dmax.dev(), n, nullptr);
        CHECK(dmax.m.download() == want_max);
        for (const bool count_pad : {true, false}) {
            std::vector<float> want_avg = davg.m.host;
            cpu::ref::avg_pool_backward(dy.in(), {want_avg.data(), davg.stride, in}, n, win, count_pad);
            cuda::avg_pool_backward(geometry_of(win), count_pad, dy.dev(), davg.dev(), n, nullptr);
            davg.m.host = davg.m.download();
            CHECK(davg.m.host == want_avg);
        }
    }
    const shape s{5, 8, 8};
    tensor y{s, 2, 1, g}, dy{s, 2, 0, g}, dx{s, 2, 3, g};
    std::vector<float> want = dx.m.host;
    cpu::ref::relu_backward(y.in(), dy.in(), {want.data(), dx.stride, s}, 2);
    cuda::relu_backward(y.dev(), dy.dev(), dx.dev(), 2, nullptr);
    CHECK(dx.m.download() == want);
    std::vector<float> in_place = dy.m.host;
    cpu::ref::relu_backward(y.in(), {in_place.data(), dy.stride, s}, {in_place.data(), dy.stride, s}, 2);
    cuda::relu_backward(y.dev(), dy.dev(), dy.dev(), 2, nullptr);
    CHECK(dy.m.download() == in_place);
    tensor gdy{shape{5, 1, 1}, 2, 2, g}, gdx{s, 2, 1, g};
    std::vector<float> want_g = gdx.m.host;
    cpu::ref::global_avg_pool_backward(gdy.in(), {want_g.data(), gdx.stride, s}, 2);
    cuda::global_avg_pool_backward(gdy.dev(), gdx.dev(), 2, nullptr);
    CHECK(gdx.m.download() == want_g);
}

TEST_CASE("cuda training: linear, softmax, scale and affine gradients") {
    if (!gpu_present()) return;
    rng g{53};
    const int n = 5;
    const shape in{70, 2, 3}, out{33, 1, 1};
    tensor x{in, n, 2, g}, dy{out, n, 1, g}, dx{in, n, 3, g};
    const mirrored<float> w{normal(static_cast<std::size_t>(out.c) * in.size(), g)};
    mirrored<float> dw{normal(w.host.size(), g)}, db{normal(static_cast<std::size_t>(out.c), g)};
    std::vector<float> want_dx = dx.m.host, want_dw = dw.host, want_db = db.host;
    cpu::ref::linear_backward(x.in(), dy.in(), {want_dx.data(), dx.stride, in}, n, w.host.data(), want_dw.data(), want_db.data());
    cuda::linear_backward(w.dev.data(), x.dev(), dy.dev(), dx.dev(), n, dw.dev.data(), db.dev.data(), nullptr);
    CHECK(relative(dx.m.download(), want_dx) < 1e-5);
    CHECK(relative(dw.download(), want_dw) < 1e-5);
    CHECK(relative(db.download(), want_db) < 1e-5);

    // Softmax: y a real softmax output, dy random; in place too.
    tensor logits{shape{300, 1, 1}, 3, 0, g}, sy{shape{300, 1, 1}, 3, 1, g}, sdy{shape{300, 1, 1}, 3, 2, g}, sdx{shape{300, 1, 1}, 3, 0, g};
    cpu::ref::softmax(logits.in(), sy.out(), 3);
    sy.m.upload();
    std::vector<float> want_s = sdx.m.host;
    cpu::ref::softmax_backward(sy.in(), sdy.in(), {want_s.data(), sdx.stride, sdx.s}, 3);
    cuda::softmax_backward(sy.dev(), sdy.dev(), sdx.dev(), 3, nullptr);
    CHECK(relative(sdx.m.download(), want_s) < 1e-6);
    std::vector<float> want_si = sdy.m.host;
    cpu::ref::softmax_backward(sy.in(), {want_si.data(), sdy.stride, sdy.s}, {want_si.data(), sdy.stride, sdy.s}, 3);
    cuda::softmax_backward(sy.dev(), sdy.dev(), sdy.dev(), 3, nullptr);
    CHECK(relative(sdy.m.download(), want_si) < 1e-6);

    const shape s{3, 4, 5};
    tensor fdy{s, 2, 1, g}, fdx{s, 2, 2, g};
    const mirrored<float> factor{normal(2 * s.size(), g)};
    std::vector<float> want_f = fdx.m.host;
    cpu::ref::scale_backward(factor.host.data(), fdy.in(), {want_f.data(), fdx.stride, s}, 2);
    cuda::scale_backward(factor.dev.data(), fdy.dev(), fdx.dev(), 2, nullptr);
    CHECK(relative(fdx.m.download(), want_f) < 1e-6);  // dx + dy * f: whether the host fuses it is the compiler's choice
    const mirrored<float> scale{std::vector<float>{0.5F, 1.5F, 2.5F}};
    std::vector<float> want_a = fdx.m.host;
    cpu::ref::channel_affine_backward(fdy.in(), {want_a.data(), fdx.stride, s}, 2, scale.host.data());
    fdx.m.upload();
    cuda::channel_affine_backward(scale.dev.data(), fdy.dev(), fdx.dev(), 2, nullptr);
    CHECK(relative(fdx.m.download(), want_a) < 1e-6);
}

TEST_CASE("cuda training: smoothed cross-entropy, sum of squares and every optimizer's update") {
    if (!gpu_present()) return;
    rng g{59};
    const int n = 6, k = 1000;
    tensor logits{shape{k, 1, 1}, n, 0, g}, dl{shape{k, 1, 1}, n, 0, g};
    logits.m.host[3 * k + 17] = 40.0F;  // a sample whose largest logit is its label
    logits.m.upload();
    const std::vector<int> labels_host = {1, 999, 0, 17, 500, 3};
    const mirrored<int> labels{labels_host};
    mirrored<double> loss{std::vector<double>(n)};
    mirrored<int> correct{std::vector<int>(n)};
    std::vector<float> want_dl = dl.m.host;
    const loss_value want = softmax_cross_entropy(logits.m.host, labels_host, k, {.smoothing = 0.1, .weight = 0.4}, want_dl);
    cuda::softmax_cross_entropy(logits.dev(), labels.dev.data(), n, 0.1, 0.4, loss.dev.data(), correct.dev.data(), dl.dev(), nullptr);
    const std::vector<double> l = loss.download();
    const std::vector<int> ok = correct.download();
    double sum = 0.0;
    for (double v : l) sum += v;
    CHECK(sum / n == doctest::Approx(want.loss).epsilon(1e-9));
    int right = 0;
    for (int v : ok) right += v;
    CHECK(right == want.correct);
    CHECK(ok[3] == 1);
    CHECK(relative(dl.m.download(), want_dl) < 1e-6);
    logits.m.host[2 * k + 5] = std::numeric_limits<float>::infinity();
    logits.m.upload();
    cuda::softmax_cross_entropy(logits.dev(), labels.dev.data(), n, 0.1, 0.4, loss.dev.data(), correct.dev.data(), {}, nullptr);
    CHECK(std::isnan(loss.download()[2]));

    const std::vector<float> grads = normal(100003, g);
    const mirrored<float> gd{grads};
    mirrored<double> partial{std::vector<double>(cuda::sum_squares_blocks)}, out{std::vector<double>(1)};
    cuda::sum_squares(gd.dev.data(), static_cast<long long>(grads.size()), partial.dev.data(), out.dev.data(), nullptr);
    const std::vector<param_range> all = {{0, grads.size()}};
    CHECK(std::sqrt(out.download()[0]) == doctest::Approx(global_norm(grads, all)).epsilon(1e-12));

    // Every optimizer's update kernel against optimizer::step over two steps (the second with
    // state: SGD's first-step rule, the mean squares, the momentum buffers).
    const std::vector<float> start = normal(grads.size(), g);
    const optimizer kinds[] = {optimizer::rmsprop({.decay = 0.9, .momentum = 0.9, .eps = 1.0}),
                               optimizer::rmsprop({.decay = 0.9, .momentum = 0.9, .eps = 1e-3, .style = rmsprop_style::pytorch}),
                               optimizer::rmsprop({.decay = 0.99, .momentum = 0.0, .eps = 1e-8, .style = rmsprop_style::pytorch}),
                               optimizer::sgd({.momentum = 0.9}), optimizer::sgd({.momentum = 0.9, .nesterov = true}),
                               optimizer::sgd({.momentum = 0.0})};
    // The state starts from values, not from zeros, so SGD's first step (buf = g, whatever the
    // buffer holds) differs from its later ones (buf = momentum * buf + g).
    std::vector<float> mom0 = normal(grads.size(), g), ms0 = normal(grads.size(), g);
    for (float& v : ms0) v = std::fabs(v);
    for (optimizer opt : kinds) {
        std::vector<float> params = start;
        opt.momentum() = mom0;
        opt.mean_square() = ms0;
        mirrored<float> p{params}, ms{ms0}, mom{mom0};
        for (int step = 0; step < 2; ++step) {
            const update_rule u = opt.rule(0.045, 4e-5);
            opt.step(params, grads, all, 0.045, 4e-5);
            cuda::optimizer_update(opt.update(), u, p.dev.data(), gd.dev.data(), ms.dev.data(), mom.dev.data(),
                                   static_cast<long long>(grads.size()), nullptr);
        }
        INFO("update rule " << static_cast<int>(opt.update()));
        CHECK(relative(p.download(), params) < 1e-6);
        CHECK(relative(mom.download(), opt.momentum()) < 1e-6);
        CHECK(relative(ms.download(), opt.mean_square()) < 1e-6);
    }
}
