// The CUDA kernels' element functions (cuda/operands.hpp), run on the host against the reference
// kernels: the conv GEMMs' operands (forward, input gradient, weight gradient in chunks) as plain
// loops, and the pooling gradients' gathers element by element, on random windows with strides,
// asymmetric padding and channel-slice views. Needs no GPU and no CUDA toolkit, so CI checks
// every index formula the GPU kernels use.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <ctnet/core/random.hpp>
#include <ctnet/cpu/backward.hpp>
#include <ctnet/cpu/reference.hpp>
#include <ctnet/cuda/operands.hpp>

#include "check.hpp"

using namespace ctnet;

namespace {

struct picker {
    rng g;
    int operator()(int lo, int hi) { return lo + static_cast<int>(g.next() % static_cast<std::uint64_t>(hi - lo + 1)); }
};

cuda::geometry geometry_of(const window& w) { return {w.kh, w.kw, w.sh, w.sw, w.pt, w.pb, w.pl, w.pr}; }

// n samples of s with `extra` unused floats after each (a channel slice of a wider buffer).
struct batch {
    shape s;
    int n;
    std::size_t stride;
    std::vector<float> v;
    batch(shape s_, int n_, std::size_t extra, rng& g) : s{s_}, n{n_}, stride{s_.size() + extra}, v(stride * static_cast<std::size_t>(n_)) {
        for (float& x : v) x = static_cast<float>(g.normal());
    }
    [[nodiscard]] cuda::view view() { return {v.data(), static_cast<long long>(stride), s.c, s.h, s.w}; }
    [[nodiscard]] cpu::ref::in_view in() const { return {v.data(), stride, s}; }
    [[nodiscard]] cpu::ref::out_view out() { return {v.data(), stride, s}; }
};

// max |a - b| over the samples' values / max |b|.
double relative(const batch& a, const batch& b) {
    test::error_meter e;
    if (a.n != b.n || a.stride != b.stride || a.s.size() != b.s.size()) e.fail();
    else
        for (int i = 0; i < a.n; ++i)
            for (std::size_t j = 0; j < a.s.size(); ++j) {
                const std::size_t at = static_cast<std::size_t>(i) * a.stride + j;
                e.add(a.v[at], b.v[at]);
            }
    return e.max_relative();
}

// C = A * B of problem p over `slices`, in double, through its a / b / store.
template <class P>
void run_gemm(const P& p, int slices) {
    for (int z = 0; z < slices; ++z)
        for (int m = 0; m < p.rows; ++m)
            for (int j = 0; j < p.cols; ++j) {
                double acc = 0.0;
                for (int k = 0; k < p.depth; ++k) acc += static_cast<double>(p.a(z, m, k)) * p.b(z, k, j);
                p.store(z, m, j, static_cast<float>(acc));
            }
}

window random_window(picker& pick, int max_k) {
    window w;
    w.kh = pick(1, max_k);
    w.kw = pick(1, max_k);
    w.sh = pick(1, 3);
    w.sw = pick(1, 3);
    w.pt = pick(0, w.kh - 1);
    w.pb = pick(0, w.kh - 1);
    w.pl = pick(0, w.kw - 1);
    w.pr = pick(0, w.kw - 1);
    return w;
}

shape output_of(const shape& in, const window& w, int c) {
    return {c, (in.h + w.pt + w.pb - w.kh) / w.sh + 1, (in.w + w.pl + w.pr - w.kw) / w.sw + 1};
}

}  // namespace

TEST_CASE("cuda operands: the conv GEMMs' operands give the reference conv and both gradients") {
    picker pick{rng{17}};
    for (int trial = 0; trial < 150; ++trial) {
        const window win = random_window(pick, 5);
        const shape in{pick(1, 4), pick(win.kh, 11), pick(win.kw, 11)};
        const shape out = output_of(in, win, pick(1, 5));
        const int n = pick(1, 3);
        const cuda::geometry g = geometry_of(win);
        rng r{static_cast<std::uint64_t>(100 + trial)};
        batch x{in, n, static_cast<std::size_t>(pick(0, 3)), r}, dy{out, n, static_cast<std::size_t>(pick(0, 3)), r};
        std::vector<float> w(static_cast<std::size_t>(out.c) * in.c * win.kh * win.kw), bias(static_cast<std::size_t>(out.c));
        for (float& v : w) v = static_cast<float>(r.normal());
        for (float& v : bias) v = static_cast<float>(r.normal());
        const auto where = [&] {
            return std::to_string(in.c) + "x" + std::to_string(in.h) + "x" + std::to_string(in.w) + " -> " +
                   std::to_string(out.c) + "x" + std::to_string(out.h) + "x" + std::to_string(out.w) + ", window " +
                   std::to_string(win.kh) + "x" + std::to_string(win.kw) + " stride " + std::to_string(win.sh) + "," +
                   std::to_string(win.sw) + ", batch " + std::to_string(n);
        };

        // Forward (no ReLU, so the comparison sees every value).
        batch y{out, n, 2, r}, want_y = y;
        run_gemm(cuda::operands::conv_forward{w.data(), bias.data(), false, g, x.view(), y.view()}, n);
        cpu::ref::conv2d(x.in(), want_y.out(), n, w.data(), bias.data(), win);
        CHECK_MESSAGE(relative(y, want_y) < 1e-5, "forward, " << where());

        // Input and weight gradients, added to what the buffers held.
        batch dx{in, n, 1, r}, want_dx = dx;
        std::vector<float> want_dw(w.size()), want_db(bias.size());
        cpu::ref::conv2d_backward(x.in(), dy.in(), want_dx.out(), n, w.data(), want_dw.data(), want_db.data(), win);
        run_gemm(cuda::operands::conv_input_grad{w.data(), g, dy.view(), dx.view()}, n);
        CHECK_MESSAGE(relative(dx, want_dx) < 1e-5, "input gradient, " << where());

        const int per = pick(1, n), chunks = (n + per - 1) / per;
        const cuda::operands::conv_weight_grad p{g, x.view(), dy.view(), n, per, nullptr};
        std::vector<float> partial(static_cast<std::size_t>(chunks) * p.rows * p.cols, std::numeric_limits<float>::quiet_NaN());
        cuda::operands::conv_weight_grad q = p;
        q.partial = partial.data();
        CHECK(q.depth == per * out.h * out.w);
        run_gemm(q, chunks);
        test::error_meter dw;
        for (std::size_t e = 0; e < w.size(); ++e) {
            float acc = 0.0F;
            for (int z = 0; z < chunks; ++z) acc += partial[static_cast<std::size_t>(z) * w.size() + e];
            dw.add(acc, want_dw[e]);
        }
        CHECK_MESSAGE(dw.max_relative() < 1e-5, "weight gradient in " << chunks << " chunks of " << per << ", " << where());
    }
}

TEST_CASE("cuda operands: pooling gradients as gathers equal the reference's scatters bit for bit") {
    picker pick{rng{23}};
    for (int trial = 0; trial < 400; ++trial) {
        window win;
        win.kh = pick(1, 4);
        win.kw = pick(1, 4);
        win.sh = pick(1, 3);
        win.sw = pick(1, 3);
        win.pt = pick(0, win.kh / 2);  // torch's limit: at most half the window
        win.pb = pick(0, win.kh / 2);
        win.pl = pick(0, win.kw / 2);
        win.pr = pick(0, win.kw / 2);
        const shape in{pick(1, 3), pick(win.kh, 12), pick(win.kw, 12)};
        const shape out = output_of(in, win, in.c);
        const int n = pick(1, 2);
        rng r{static_cast<std::uint64_t>(500 + trial)};
        batch x{in, n, static_cast<std::size_t>(pick(0, 2)), r}, dy{out, n, 1, r};
        for (float& v : x.v) v = std::round(v * 1.5F) / 2.0F;  // ties within windows
        if (trial % 5 == 0) x.v[static_cast<std::size_t>(pick(0, static_cast<int>(in.size()) - 1))] = std::numeric_limits<float>::quiet_NaN();
        const bool count_pad = trial % 2 == 0;
        const cuda::geometry g = geometry_of(win);

        batch dmax{in, n, 2, r}, want_max = dmax, davg = dmax, want_avg = dmax;
        cpu::ref::max_pool_backward(x.in(), dy.in(), want_max.out(), n, win);
        cpu::ref::avg_pool_backward(dy.in(), want_avg.out(), n, win, count_pad);
        bool max_same = true, avg_same = true;
        for (int i = 0; i < n; ++i)
            for (int c = 0; c < in.c; ++c) {
                const std::size_t plane = static_cast<std::size_t>(in.h) * in.w;
                const float* xc = x.v.data() + i * x.stride + c * plane;
                const float* gc = dy.v.data() + i * dy.stride + c * static_cast<std::size_t>(out.h) * out.w;
                for (int iy = 0; iy < in.h; ++iy)
                    for (int ix = 0; ix < in.w; ++ix) {
                        const std::size_t at = i * dmax.stride + c * plane + static_cast<std::size_t>(iy) * in.w + ix;
                        const float mx = cuda::operands::max_pool_grad(g, xc, in.h, in.w, gc, out.h, out.w, iy, ix, dmax.v[at]);
                        const float av = cuda::operands::avg_pool_grad(g, count_pad, in.h, in.w, gc, out.h, out.w, iy, ix, davg.v[at]);
                        max_same = max_same && mx == want_max.v[at];
                        avg_same = avg_same && av == want_avg.v[at];
                    }
            }
        const auto where = [&] {
            return std::to_string(in.c) + "x" + std::to_string(in.h) + "x" + std::to_string(in.w) + ", window " +
                   std::to_string(win.kh) + "x" + std::to_string(win.kw) + " stride " + std::to_string(win.sh) + "," +
                   std::to_string(win.sw) + " pad " + std::to_string(win.pt) + "," + std::to_string(win.pb) + "," +
                   std::to_string(win.pl) + "," + std::to_string(win.pr);
        };
        CHECK_MESSAGE(max_same, "max pool, " << where());
        CHECK_MESSAGE(avg_same, "avg pool (count_pad " << count_pad << "), " << where());
    }
}

// Max pooling's ceil_mode (layers/pool.hpp) lowers to extra bottom / right padding: the gradient
// gather (what cuda/backward.cuh's max_pool_backward runs per input element) on such windows,
// against the reference's scatter, bit for bit. The forward kernel (src/cuda/ops.cuh) skips taps
// outside the input exactly as cpu::ref::max_pool does.
#include <ctnet/layers/pool.hpp>

TEST_CASE("cuda operands: max pool gradient gathers on ceil_mode windows equal the reference") {
    picker pick{rng{31}};
    int grown = 0;
    for (int trial = 0; trial < 400; ++trial) {
        window user;  // as written, within torch's limits
        user.kh = pick(1, 5);
        user.kw = pick(1, 5);
        user.sh = pick(1, 4);
        user.sw = pick(1, 4);
        user.pt = pick(0, user.kh / 2);
        user.pb = pick(0, user.kh / 2);
        user.pl = pick(0, user.kw / 2);
        user.pr = pick(0, user.kw / 2);
        const shape in{pick(1, 3), pick(std::max(1, user.kh - user.pt - user.pb), 12),
                       pick(std::max(1, user.kw - user.pl - user.pr), 12)};
        const window win = detail::ceil_mode_window(user, in);
        grown += win.pb > user.pb || win.pr > user.pr;
        const shape out = output_of(in, win, in.c);
        // torch: the last window starts inside the input or the top / left padding ...
        CHECK((out.h - 1) * user.sh < in.h + user.pt);
        CHECK((out.w - 1) * user.sw < in.w + user.pl);
        // ... and is the last such one that overhangs the padded input by less than a stride
        CHECK((out.h * user.sh >= in.h + user.pt || out.h * user.sh + user.kh - (in.h + user.pt + user.pb) >= user.sh));
        CHECK((out.w * user.sw >= in.w + user.pl || out.w * user.sw + user.kw - (in.w + user.pl + user.pr) >= user.sw));
        const int n = pick(1, 2);
        rng r{static_cast<std::uint64_t>(900 + trial)};
        batch x{in, n, static_cast<std::size_t>(pick(0, 2)), r}, dy{out, n, 1, r};
        for (float& v : x.v) v = std::round(v * 1.5F) / 2.0F;  // ties within windows
        if (trial % 5 == 0) x.v[static_cast<std::size_t>(pick(0, static_cast<int>(in.size()) - 1))] = std::numeric_limits<float>::quiet_NaN();
        const cuda::geometry g = geometry_of(win);

        batch dmax{in, n, 2, r}, want = dmax;
        cpu::ref::max_pool_backward(x.in(), dy.in(), want.out(), n, win);
        bool same = true;
        for (int i = 0; i < n; ++i)
            for (int c = 0; c < in.c; ++c) {
                const std::size_t plane = static_cast<std::size_t>(in.h) * in.w;
                const float* xc = x.v.data() + i * x.stride + c * plane;
                const float* gc = dy.v.data() + i * dy.stride + c * static_cast<std::size_t>(out.h) * out.w;
                for (int iy = 0; iy < in.h; ++iy)
                    for (int ix = 0; ix < in.w; ++ix) {
                        const std::size_t at = i * dmax.stride + c * plane + static_cast<std::size_t>(iy) * in.w + ix;
                        const float mx = cuda::operands::max_pool_grad(g, xc, in.h, in.w, gc, out.h, out.w, iy, ix, dmax.v[at]);
                        same = same && mx == want.v[at];
                    }
            }
        CHECK_MESSAGE(same, "ceil-mode max pool, " << in.c << "x" << in.h << "x" << in.w << ", window " << user.kh << "x"
                                                    << user.kw << " stride " << user.sh << "," << user.sw << " pad "
                                                    << user.pt << "," << user.pb << "," << user.pl << "," << user.pr
                                                    << " + ceil " << win.pb - user.pb << "," << win.pr - user.pr);
    }
    CHECK(grown > 100);
}
