// The CUDA kernels' element functions (cuda/operands.hpp), run on the host against the reference
// kernels: the conv GEMMs' operands (forward, input gradient, weight gradient in chunks) as plain
// loops, and the pooling gradients' gathers element by element, on random windows with strides,
// asymmetric padding and channel-slice views. Needs no GPU and no CUDA toolkit, so CI checks
// every index formula the GPU kernels use.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <cstdint>
#include <limits>
#include <vector>

#include <ctnet/core/random.hpp>
#include <ctnet/cpu/backward.hpp>
#include <ctnet/cpu/reference.hpp>
#include <ctnet/cuda/dnn_plan.hpp>
#include <ctnet/cuda/operands.hpp>
#include <ctnet/exec/arena.hpp>
#include <ctnet/models/inception_v3.hpp>

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

// ---- The GPU trainer's cuDNN descriptors (cuda/dnn_plan.hpp) -----------------------------------
TEST_CASE("cuda operands: batch norm's slices tile each channel and the walk finds every value's offset") {
    // What each block of the batch-norm passes (src/cuda/backward.cuh) reads: the slices of
    // bn_slice_of cover the channel's n * h * w values once, in order; a thread's walk (start
    // begin + t, step bn_threads) visits the offsets e / plane * stride + c * plane + e % plane.
    namespace op = cuda::operands;
    CHECK(op::bn_blocks(1) == 1);
    CHECK(op::bn_blocks(4096) == 1);
    CHECK(op::bn_blocks(4097) == 2);
    CHECK(op::bn_blocks(128LL * 147 * 147) == op::bn_max_blocks);  // Inception v3's stem at batch 128
    struct walk_case {
        int n, c, h, w;
        long long extra;  // the sample stride's slack (a concat slice)
    };
    for (const walk_case k : {walk_case{3, 5, 7, 9, 0}, walk_case{400, 3, 5, 3, 11}, walk_case{5, 2, 64, 67, 4},
                              walk_case{2, 4, 150, 149, 0}, walk_case{1, 1, 1, 2, 0}, walk_case{128, 2, 8, 8, 64},
                              walk_case{9000, 3, 1, 1, 2}, walk_case{300, 2, 16, 16, 0}}) {
        const int plane = k.h * k.w;
        const long long count = static_cast<long long>(k.n) * plane;
        const cuda::view v{nullptr, static_cast<long long>(k.c) * plane + k.extra, k.c, k.h, k.w};
        const int blocks = op::bn_blocks(count);
        INFO(k.n << " x " << k.c << "x" << k.h << "x" << k.w << ": " << blocks << " blocks");
        long long next = 0, visited = 0;
        bool offsets_right = true;
        for (int b = 0; b < blocks; ++b) {
            const op::bn_slice sl = op::bn_slice_of(count, blocks, b);
            CHECK(sl.begin == next);
            CHECK(sl.end >= sl.begin);
            next = sl.end;
            for (int t = 0; t < op::bn_threads; ++t) {
                const int c = (b + t) % k.c;
                op::channel_walk w{sl.begin + t, plane, op::bn_threads};
                for (long long e = sl.begin + t; e < sl.end; e += op::bn_threads, w.advance()) {
                    offsets_right = offsets_right && w.offset(v, c) == e / plane * v.stride + static_cast<long long>(c) * plane + e % plane;
                    ++visited;
                }
            }
        }
        CHECK(next == count);
        CHECK(visited == count);
        CHECK(offsets_right);
    }
}

TEST_CASE("cuDNN descriptors: Inception v3's 94 convs in the trainer's layout against torchvision's conv table") {
    // tests/reference/inception_v3_convs.txt (from torchvision's model): name Cin H W Cout KH KW SH SW PH PW.
    using v3 = models::inception_v3<>;
    constexpr auto& p = v3::program;
    const exec::layout<v3> lay{true};  // the trainer's: every value its own buffer
    std::vector<float> arena(lay.per_sample * 2), input(input_shape_v<v3>.size() * 2);
    struct row {
        int cin = 0, h = 0, w = 0, cout = 0, kh = 0, kw = 0, sh = 0, sw = 0, ph = 0, pw = 0;
    };
    std::map<std::string, row> table;
    std::ifstream f{std::string{CTNET_TEST_REFERENCE_DIR} + "/inception_v3_convs.txt"};
    REQUIRE(f.good());
    for (std::string line; std::getline(f, line);) {
        std::istringstream in{line};
        std::string name;
        row r;
        in >> name >> r.cin >> r.h >> r.w >> r.cout >> r.kh >> r.kw >> r.sh >> r.sw >> r.ph >> r.pw;
        table[name] = r;
    }
    REQUIRE(table.size() == 94);  // the inference graph's convs
    // The aux head's two, from torchvision's InceptionAux: a 5x5 average pool at stride 3 turns
    // Mixed_6e's 768 x 17 x 17 into 5 x 5, then a 1x1 conv to 128 and a 5x5 conv to 768.
    table["AuxLogits.conv0.conv"] = {768, 5, 5, 128, 1, 1, 1, 1, 0, 0};
    table["AuxLogits.conv1.conv"] = {128, 5, 5, 768, 5, 5, 1, 1, 0, 0};
    std::size_t seen = 0;
    for (int i = 0; i < p.n_ops; ++i) {
        const op& o = p.ops[i];
        if (o.kind != op_kind::conv) continue;
        const std::string name{o.path.view()};
        INFO(name);
        REQUIRE(table.count(name) == 1);
        ++seen;
        const auto [cin, h, w, cout, kh, kw, sh, sw, ph, pw] = table[name];
        const auto at = [&](const value& v) {
            const exec::batch_view<float> b = lay.view(v, arena.data(), input.data(), 2);
            return cuda::view{b.data, static_cast<long long>(b.stride), v.s.c, v.s.h, v.s.w};
        };
        const cuda::geometry g{o.win.kh, o.win.kw, o.win.sh, o.win.sw, o.win.pt, o.win.pb, o.win.pl, o.win.pr};
        const cuda::view x = at(o.in), y = at(o.out);
        const cuda::dnn_conv_desc d = cuda::dnn_conv_of(g, x, y);
        CHECK(d.filter[0] == cout);
        CHECK(d.filter[1] == cin);
        CHECK(d.filter[2] == kh);
        CHECK(d.filter[3] == kw);
        CHECK(d.stride_h == sh);
        CHECK(d.stride_w == sw);
        CHECK(d.pad_h == ph);
        CHECK(d.pad_w == pw);
        const cuda::dnn_tensor tx = cuda::dnn_tensor_of(x, 128);
        CHECK(tx.dims[0] == 128);
        CHECK(tx.dims[1] == cin);
        CHECK(tx.dims[2] == h);
        CHECK(tx.dims[3] == w);
        CHECK(tx.strides[3] == 1);
        CHECK(tx.strides[2] == w);
        CHECK(tx.strides[1] == static_cast<long long>(h) * w);
        // The sample stride is the buffer's: a branch output (a slice of its concat) strides over
        // the whole concat; the next sample of the slice starts one buffer sample later.
        CHECK(tx.strides[0] == static_cast<long long>(p.bufs[o.in.buf].s.size()));
        const cuda::dnn_tensor ty = cuda::dnn_tensor_of(y, 128);
        CHECK(ty.strides[0] == static_cast<long long>(p.bufs[o.out.buf].s.size()));
        CHECK(ty.strides[0] >= static_cast<long long>(cout) * ty.dims[2] * ty.dims[3]);
        CHECK(cuda::dnn_can_run(g, x, y, 128));  // symmetric padding, cuDNN's output size, int range
        CHECK(!cuda::dnn_can_run(g, x, y, 1 << 24));  // beyond cuDNN's int indexing
    }
    CHECK(seen == table.size());  // every conv of the table, none beyond it
    // What cuDNN cannot express stays on ctnet's kernels: asymmetric padding, or an output size
    // cuDNN would not compute.
    const cuda::view x{nullptr, 3 * 8 * 8, 3, 8, 8}, y{nullptr, 4 * 4 * 4, 4, 4, 4};
    CHECK(cuda::dnn_can_run({3, 3, 2, 2, 1, 1, 1, 1}, x, y, 2));
    CHECK(!cuda::dnn_can_run({3, 3, 2, 2, 0, 1, 0, 1}, x, y, 2));  // TF's "same" padding at stride 2
    CHECK(!cuda::dnn_can_run({3, 3, 1, 1, 1, 1, 1, 1}, x, y, 2));  // would give 8x8, the op says 4x4
}
