// The NHWC execution plan of the CUDA backend (cuda/nhwc_plan.hpp) and what ctnet's NHWC kernels
// compute element by element (cuda/nhwc_operands.hpp), on the host: no GPU, no CUDA toolkit.
//   - Inception v3 at 299: every conv's NHWC descriptor (dims and strides) at batch 1, 32, 128 and
//     256 against torchvision's layer table (tests/reference/inception_v3_layers_299.tsv), the
//     channel slices of every concat (offsets worked out by hand from torchvision's blocks), the
//     fused bias + ReLU of all 94 convs, the cuDNN routes (44 convs write a concat slice: packed
//     temporary + copy) and the temporary's bound, the input transform with transform_input fused;
//   - a flattened 2 x 3 buffer read by a linear layer (weights permuted at load) and the refusal
//     of a softmax over one;
//   - the NHWC conv GEMM's operands on random windows with channel-slice views, in float (<= 1e-5
//     of the reference conv), fp16 and bf16 storage (the reference on the same rounded inputs, the
//     result within one rounding of the storage type); max / average / global pooling in NHWC bit
//     for bit against the reference.
#include <doctest/doctest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <ctnet/core/random.hpp>
#include <ctnet/cpu/reference.hpp>
#include <ctnet/cuda/nhwc_model.hpp>
#include <ctnet/cuda/nhwc_operands.hpp>
#include <ctnet/cuda/nhwc_plan.hpp>
#include <ctnet/graph/params.hpp>
#include <ctnet/models/inception_v3.hpp>

#include "check.hpp"

using namespace ctnet;
namespace nh = cuda::nhwc;

namespace {

using v3 = models::inception_v3<>;  // 299 x 299, aux head (train only), no transform_input
using v3t = models::inception_v3<1000, 299, models::inception_options{.aux_logits = false, .transform_input = true}>;

struct conv_row {
    std::string name;
    int o, i, kh, kw, sh, sw, ph, pw, ic, ih, iw, oc, oh, ow;
};

std::vector<int> ints_of(const std::string& s) {
    std::vector<int> v;
    int cur = 0;
    bool in = false;
    for (const char ch : s) {
        if (ch >= '0' && ch <= '9') {
            cur = cur * 10 + (ch - '0');
            in = true;
        } else if (in) {
            v.push_back(cur);
            cur = 0;
            in = false;
        }
    }
    if (in) v.push_back(cur);
    return v;
}

// torchvision's conv layers of the eval path (no AuxLogits), in order.
std::vector<conv_row> torchvision_convs() {
    std::ifstream f{std::string{CTNET_TEST_REFERENCE_DIR} + "/inception_v3_layers_299.tsv"};
    std::vector<conv_row> rows;
    std::string line;
    std::getline(f, line);  // header
    while (std::getline(f, line)) {
        std::vector<std::string> col;
        std::size_t a = 0;
        for (std::size_t b = line.find('\t'); b != std::string::npos; a = b + 1, b = line.find('\t', a))
            col.push_back(line.substr(a, b - a));
        col.push_back(line.substr(a));
        if (col.size() < 7 || col[1] != "conv" || col[0].rfind("AuxLogits", 0) == 0) continue;
        const std::vector<int> w = ints_of(col[2]), s = ints_of(col[3]), p = ints_of(col[4]), in = ints_of(col[5]),
                               out = ints_of(col[6]);
        rows.push_back({col[0], w[0], w[1], w[2], w[3], s[0], s[1], p[0], p[1], in[0], in[1], in[2], out[0], out[1], out[2]});
    }
    return rows;
}

template <class Net>
std::string path_of(const nh::step& s) {
    return std::string{Net::program.ops[s.op].path.view()};
}

}  // namespace

TEST_CASE("nhwc plan: Inception v3's 94 convs, their NHWC descriptors at batch 1, 32, 128, 256") {
    constexpr const auto& pl = cuda::nhwc_plan_v<v3>;
    static_assert(pl.ok);
    static_assert(pl.count(nh::kind::conv) == 94);
    const std::vector<conv_row> want = torchvision_convs();
    REQUIRE(want.size() == 94);
    std::size_t at = 0;
    int sliced = 0, relu = 0, bn = 0, pooled = 0;
    const std::span<const nh::step> steps = pl.steps();
    for (std::size_t i = 0; i < steps.size(); ++i) {
        const nh::step& s = steps[i];
        if (s.k != nh::kind::conv) continue;
        REQUIRE(at < want.size());
        const conv_row& r = want[at++];
        INFO(r.name);
        CHECK(path_of<v3>(s) == r.name);
        CHECK(s.x.c == r.ic);
        CHECK(s.x.h == r.ih);
        CHECK(s.x.w == r.iw);
        CHECK(s.y.c == r.oc);
        CHECK(s.y.h == r.oh);
        CHECK(s.y.w == r.ow);
        CHECK(r.i == r.ic);
        CHECK(r.o == r.oc);
        CHECK(s.g.kh == r.kh);
        CHECK(s.g.kw == r.kw);
        CHECK(s.g.sh == r.sh);
        CHECK(s.g.sw == r.sw);
        CHECK((s.g.pt == r.ph && s.g.pb == r.ph && s.g.pl == r.pw && s.g.pr == r.pw));
        CHECK(nh::cudnn_ok(s));
        bn += s.bn ? 1 : 0;
        // Every conv of Inception reads a whole buffer; it writes a whole one or a concat slice.
        CHECK(s.x.packed());
        CHECK(s.x.c0 == 0);
        CHECK(s.x.channels == r.ic);
        // The branch_pool convs run before their 3x3 average pool (same shapes: stride 1, pad 1),
        // into the pool temporary; the pool after them adds the bias and ReLU and writes the slice.
        const bool is_pooled = r.name.find("branch_pool") != std::string::npos && r.kh == 1;
        CHECK(s.pooled == is_pooled);
        const nh::tensor dest = is_pooled ? steps[i + 1].y : s.y;
        if (is_pooled) {
            ++pooled;
            const nh::step& pool = steps[i + 1];
            CHECK(pool.k == nh::kind::avg_pool);
            CHECK(pool.pooled);
            CHECK(pool.relu);
            CHECK_FALSE(s.relu);
            CHECK(s.y.buf == nh::pool_temp);
            CHECK(s.y.packed());
            CHECK(pool.x.buf == nh::pool_temp);
            CHECK((pool.g.kh == 3 && pool.g.kw == 3 && pool.g.sh == 1 && pool.g.pt == 1 && pool.g.pr == 1));
            CHECK(pool.count_pad);  // torchvision's F.avg_pool2d(x, 3, stride=1, padding=1)
            CHECK((pool.y.c == r.oc && pool.y.h == r.oh && pool.y.w == r.ow));
            CHECK(v3::program.ops[pool.op].kind == op_kind::avg_pool);
            CHECK(pool.op + 1 == s.op);
        }
        relu += (is_pooled ? steps[i + 1].relu : s.relu) ? 1 : 0;
        const bool slice = dest.channels != r.oc;
        sliced += slice ? 1 : 0;
        CHECK(s.r == (slice && !is_pooled ? nh::route::packed_out : nh::route::direct));
        for (const int n : {1, 32, 128, 256}) {
            const nh::dims4 x = nh::dims(s.x, n), y = nh::dims(s.y, n);
            CHECK(x.n == n);
            CHECK(x.c == r.ic);
            CHECK(x.h == r.ih);
            CHECK(x.w == r.iw);
            CHECK(x.sn == static_cast<long long>(r.ic) * r.ih * r.iw);
            CHECK(x.sc == 1);
            CHECK(x.sh == static_cast<long long>(r.iw) * r.ic);
            CHECK(x.sw == r.ic);
            CHECK(y.n == n);
            CHECK(y.c == r.oc);
            CHECK(y.h == r.oh);
            CHECK(y.w == r.ow);
            CHECK(y.sn == static_cast<long long>(s.y.channels) * r.oh * r.ow);
            CHECK(y.sc == 1);
            CHECK(y.sh == static_cast<long long>(r.ow) * s.y.channels);
            CHECK(y.sw == s.y.channels);
            // cuDNN's 4-d descriptors take ints: every element index of the batch fits one.
            CHECK(x.n * x.sn <= INT_MAX);
            CHECK(y.n * y.sn <= INT_MAX);
        }
    }
    CHECK(at == 94);
    CHECK(relu == 94);  // every conv: bias (the folded batch norm) + ReLU in one kernel (or in its pool's)
    CHECK(pooled == 9);  // the branch_pool of 5b..5d, 6b..6e, 7b, 7c
    CHECK(bn == 94);
    // Branch ends of the concat blocks: 4 in each of Mixed_5b/5c/5d and 6b..6e, 2 in 6a and 7a, 6 in 7b/7c.
    CHECK(sliced == 3 * 4 + 2 + 4 * 4 + 2 + 2 * 6);
    CHECK(pl.temp_in == 0);
    CHECK(pl.temp_out == 35 * 35 * 96);  // the largest slice: Mixed_5b..5d's branch3x3dbl_3 (96 of 35 x 35)
    CHECK(pl.temp_pool == 35 * 35 * 64);  // the largest pooled conv output: Mixed_5c/5d's branch_pool (64 of 35 x 35)
    // The rest of the pass.
    CHECK(pl.count(nh::kind::max_pool) == 4);  // maxpool1, maxpool2, Mixed_6a and Mixed_7a's branch_pool
    CHECK(pl.count(nh::kind::avg_pool) == 9);  // the branch_pool of 5b..5d, 6b..6e, 7b, 7c
    CHECK(pl.count(nh::kind::global_avg_pool) == 1);
    CHECK(pl.count(nh::kind::linear) == 1);
    CHECK(pl.count(nh::kind::affine) == 0);  // every batch norm folded
    CHECK(pl.count(nh::kind::relu) == 0);    // every ReLU fused
    CHECK(pl.count(nh::kind::copy) == 0);    // dropout in place: nothing runs
    CHECK(pl.steps().size() == 1 + 94 + 4 + 9 + 1 + 1 + 1);
    CHECK(pl.steps().front().k == nh::kind::input);
    CHECK(pl.steps().back().k == nh::kind::output);
    CHECK(pl.out.c == 1000);
    CHECK(pl.out.h == 1);
    // The arena scale: the batch rounded up to 32 bytes of elements (8 floats, 16 halves).
    CHECK(nh::arena_scale(1, 4) == 8);
    CHECK(nh::arena_scale(8, 4) == 8);
    CHECK(nh::arena_scale(9, 4) == 16);
    CHECK(nh::arena_scale(1, 2) == 16);
    CHECK(nh::arena_scale(256, 2) == 256);
    CHECK(nh::arena_scale(33, 2) == 48);
}

TEST_CASE("nhwc plan: the channel slices of Inception v3's concats and their NHWC offsets") {
    constexpr const auto& pl = cuda::nhwc_plan_v<v3>;
    // (name, first channel, channels of the block output) from torchvision's blocks.
    const std::map<std::string, std::pair<int, int>> want{
        {"Mixed_5b.branch1x1.conv", {0, 256}},       {"Mixed_5b.branch5x5_2.conv", {64, 256}},
        {"Mixed_5b.branch3x3dbl_3.conv", {128, 256}}, {"Mixed_5b.branch_pool.conv", {224, 256}},
        {"Mixed_5c.branch_pool.conv", {224, 288}},    {"Mixed_5d.branch3x3dbl_3.conv", {128, 288}},
        {"Mixed_6a.branch3x3.conv", {0, 768}},        {"Mixed_6a.branch3x3dbl_3.conv", {384, 768}},
        {"Mixed_6b.branch7x7_3.conv", {192, 768}},    {"Mixed_6e.branch_pool.conv", {576, 768}},
        {"Mixed_7a.branch3x3_2.conv", {0, 1280}},     {"Mixed_7a.branch7x7x3_4.conv", {320, 1280}},
        {"Mixed_7b.branch1x1.conv", {0, 2048}},       {"Mixed_7b.branch3x3_2a.conv", {320, 2048}},
        {"Mixed_7b.branch3x3_2b.conv", {704, 2048}},  {"Mixed_7b.branch3x3dbl_3a.conv", {1088, 2048}},
        {"Mixed_7b.branch3x3dbl_3b.conv", {1472, 2048}}, {"Mixed_7c.branch_pool.conv", {1856, 2048}},
    };
    std::size_t found = 0;
    const std::span<const nh::step> steps = pl.steps();
    for (std::size_t i = 0; i < steps.size(); ++i) {
        const nh::step& s = steps[i];
        if (s.k != nh::kind::conv) continue;
        const auto it = want.find(path_of<v3>(s));
        if (it == want.end()) continue;
        ++found;
        INFO(it->first);
        // A branch_pool conv writes the pool temporary; the pool after it writes the slice.
        const nh::tensor& dest = s.pooled ? steps[i + 1].y : s.y;
        CHECK(dest.c0 == it->second.first);
        CHECK(dest.channels == it->second.second);
        CHECK(s.r == (s.pooled ? nh::route::direct : nh::route::packed_out));
    }
    CHECK(found == want.size());
    // The max pools of Mixed_6a and Mixed_7a write their slice directly (ctnet's kernels, any engine).
    int pools = 0;
    for (const nh::step& s : pl.steps())
        if (s.k == nh::kind::max_pool && s.y.channels != s.y.c) {
            ++pools;
            CHECK(((s.y.c0 == 480 && s.y.channels == 768 && s.y.c == 288) ||
                   (s.y.c0 == 512 && s.y.channels == 1280 && s.y.c == 768)));
        }
    CHECK(pools == 2);
    // Element (1, 3, 2, 5) of Mixed_5b.branch5x5_2's slice (channels 64.. of 256, 35 x 35), by hand:
    // sample 1 = 256 * 35 * 35 = 313600, pixel (2, 5) = 75 * 256 = 19200, channel 64 + 3.
    for (const nh::step& s : pl.steps())
        if (s.k == nh::kind::conv && path_of<v3>(s) == "Mixed_5b.branch5x5_2.conv") {
            CHECK(s.y.at(1, 3, 2, 5) == 332867);
            CHECK(nh::dims(s.y, 256).sn * 256 == 256LL * 313600);
        }
    // Slices of one block output never overlap and cover it exactly.
    std::map<int, std::vector<std::pair<int, int>>> by_buf;
    for (const nh::step& s : pl.steps())
        if (s.y.buf >= 0 && s.y.channels != s.y.c) by_buf[s.y.buf].emplace_back(s.y.c0, s.y.c);
    CHECK(by_buf.size() == 11);
    for (auto& [buf, v] : by_buf) {
        std::sort(v.begin(), v.end());
        int next = 0;
        for (const auto& [c0, c] : v) {
            CHECK(c0 == next);
            next = c0 + c;
        }
        CHECK(next == v3::program.bufs[buf].s.c);
    }
}

TEST_CASE("nhwc plan: torchvision's transform_input is fused into the input transform") {
    constexpr const auto& plain = cuda::nhwc_plan_v<v3>;
    const nh::step& a = plain.steps().front();
    CHECK(a.k == nh::kind::input);
    CHECK(a.op == -1);
    CHECK(a.y.input);  // the NHWC copy of the input, which the stem conv reads
    CHECK(a.y.c == 3);
    CHECK(a.y.h == 299);
    constexpr const auto& t = cuda::nhwc_plan_v<v3t>;
    static_assert(t.ok);
    const nh::step& b = t.steps().front();
    CHECK(b.k == nh::kind::input);
    CHECK(b.op == 0);
    CHECK(v3t::program.ops[0].kind == op_kind::channel_affine);
    CHECK_FALSE(b.y.input);  // straight into the affine's output
    CHECK(t.count(nh::kind::affine) == 0);
    CHECK(t.steps()[1].k == nh::kind::conv);
    CHECK(t.steps()[1].x.buf == b.y.buf);
}

namespace {
using flat_net = network<shape{2, 5, 6}, seq<node<"c", conv<4, k<3>, stride<2>, pad<1>, bias<true>>>, flatten,
                                            node<"fc", linear<4 * 3 * 3, 5>>>>;
using flat_softmax = network<shape{2, 5, 6}, seq<node<"c", conv<4, k<3>, stride<2>, pad<1>, bias<true>>>, flatten, softmax>>;
}  // namespace

TEST_CASE("nhwc plan: a flattened buffer read by a linear layer is permuted at load; a softmax over one is refused") {
    constexpr const auto& pl = cuda::nhwc_plan_v<flat_net>;
    static_assert(pl.ok);
    const nh::step* fc = nullptr;
    for (const nh::step& s : pl.steps())
        if (s.k == nh::kind::linear) fc = &s;
    REQUIRE(fc != nullptr);
    CHECK(fc->flat_c == 4);
    CHECK(fc->flat_h == 3);
    CHECK(fc->flat_w == 3);
    CHECK(fc->x.c == 36);
    // NCHW feature (c = 2, y = 1, x = 2) of the 4 x 3 x 3 buffer is NHWC feature (1 * 3 + 2) * 4 + 2 = 22.
    CHECK(nh::nhwc_feature(2, 1, 2, 4, 3) == 22);
    constexpr const auto& bad = cuda::nhwc_plan_v<flat_softmax>;
    CHECK_FALSE(bad.ok);
    CHECK(std::string{bad.why}.find("softmax") != std::string::npos);
}

namespace {

struct picker {
    rng g;
    int operator()(int lo, int hi) { return lo + static_cast<int>(g.next() % static_cast<std::uint64_t>(hi - lo + 1)); }
};

// n samples of a (c, h, w) slice at channel c0 of an NHWC buffer of `channels` channels.
template <class S>
struct nbatch {
    using T = typename S::type;
    int n, c, h, w, channels, c0;
    std::vector<T> v;
    nbatch(int n_, int c_, int h_, int w_, int extra, int c0_)
        : n{n_}, c{c_}, h{h_}, w{w_}, channels{c_ + extra}, c0{c0_},
          v(static_cast<std::size_t>(n_) * (c_ + extra) * h_ * w_, S::store(-7.0F)) {}
    [[nodiscard]] nh::view<T> view() { return {v.data() + c0, static_cast<long long>(channels) * h * w, channels, c, h, w}; }
    [[nodiscard]] nh::view<const T> cview() const {
        return {v.data() + c0, static_cast<long long>(channels) * h * w, channels, c, h, w};
    }
    // NCHW floats of the slice (what the reference reads and writes).
    [[nodiscard]] std::vector<float> nchw() const {
        std::vector<float> o(static_cast<std::size_t>(n) * c * h * w);
        for (int i = 0; i < n; ++i)
            for (int ch = 0; ch < c; ++ch)
                for (int y = 0; y < h; ++y)
                    for (int x = 0; x < w; ++x)
                        o[((static_cast<std::size_t>(i) * c + ch) * h + y) * w + x] = S::load(cview().at(i, ch, y, x));
        return o;
    }
};

template <class P>
void run_gemm(const P& p, int slices) {
    for (int z = 0; z < slices; ++z)
        for (int m = 0; m < p.rows; ++m)
            for (int j = 0; j < p.cols; ++j) {
                float acc = 0.0F;  // float accumulation, as the GPU
                for (int k = 0; k < p.depth; ++k) acc += p.a(z, m, k) * p.b(z, k, j);
                p.store(z, m, j, acc);
            }
}

// One random conv through conv_forward<S> against the reference on the stored (rounded) inputs;
// returns max |got - want| / max |want| and checks the channels outside the slice were not touched.
template <class S>
double conv_trial(picker& pick, rng& r, bool relu) {
    using T = typename S::type;
    window win;
    win.kh = pick(1, 5);
    win.kw = pick(1, 5);
    win.sh = pick(1, 3);
    win.sw = pick(1, 3);
    win.pt = pick(0, win.kh - 1);
    win.pb = pick(0, win.kh - 1);
    win.pl = pick(0, win.kw - 1);
    win.pr = pick(0, win.kw - 1);
    const int n = pick(1, 3), cin = pick(1, 9), h = pick(win.kh, 10), w = pick(win.kw, 10), cout = pick(1, 11);
    const int oh = (h + win.pt + win.pb - win.kh) / win.sh + 1, ow = (w + win.pl + win.pr - win.kw) / win.sw + 1;
    const int xe = pick(0, 5), ye = pick(0, 5);
    nbatch<S> x{n, cin, h, w, xe, pick(0, xe)}, y{n, cout, oh, ow, ye, pick(0, ye)};
    for (int i = 0; i < n; ++i)
        for (int ch = 0; ch < cin; ++ch)
            for (int yy = 0; yy < h; ++yy)
                for (int xx = 0; xx < w; ++xx) x.view().at(i, ch, yy, xx) = S::store(static_cast<float>(r.normal()));
    // Torch-layout weights, rounded to the storage type, laid out [(ky, kx, ci)][out].
    std::vector<float> wt_ref(static_cast<std::size_t>(cout) * cin * win.kh * win.kw), bias(static_cast<std::size_t>(cout));
    std::vector<T> wt(wt_ref.size());
    for (int o = 0; o < cout; ++o)
        for (int ci = 0; ci < cin; ++ci)
            for (int ky = 0; ky < win.kh; ++ky)
                for (int kx = 0; kx < win.kw; ++kx) {
                    const T q = S::store(static_cast<float>(r.normal()) * 0.3F);
                    wt_ref[((static_cast<std::size_t>(o) * cin + ci) * win.kh + ky) * win.kw + kx] = S::load(q);
                    wt[static_cast<std::size_t>(nh::kc_index(o, ci, ky, kx, cin, win.kw, cout))] = q;
                }
    for (float& b : bias) b = static_cast<float>(r.normal());
    const cuda::geometry g{win.kh, win.kw, win.sh, win.sw, win.pt, win.pb, win.pl, win.pr};
    const std::vector<T> before = y.v;
    run_gemm(nh::conv_forward<S>{wt.data(), bias.data(), relu, g, x.cview(), y.view()}, n);
    // Outside the slice: untouched.
    bool outside_same = true;
    for (std::size_t e = 0; e < y.v.size(); ++e) {
        const int ch = static_cast<int>(e % static_cast<std::size_t>(y.channels));
        if (ch < y.c0 || ch >= y.c0 + cout) outside_same = outside_same && y.v[e] == before[e];
    }
    CHECK(outside_same);
    const std::vector<float> xin = x.nchw();
    std::vector<float> want(static_cast<std::size_t>(n) * cout * oh * ow);
    const shape is{cin, h, w}, os{cout, oh, ow};
    cpu::ref::conv2d({xin.data(), is.size(), is}, {want.data(), os.size(), os}, n, wt_ref.data(), bias.data(), win);
    if (relu)
        for (float& v : want) v = v < 0.0F ? 0.0F : v;
    return test::relative_error(y.nchw(), want);
}

}  // namespace

TEST_CASE("nhwc operands: the NHWC conv GEMM equals the reference conv, in float, fp16 and bf16 storage") {
    picker pick{rng{71}};
    rng r{72};
    double worst32 = 0, worst16 = 0, worstb = 0;
    for (int trial = 0; trial < 120; ++trial) {
        const bool relu = trial % 2 == 1;
        worst32 = std::fmax(worst32, conv_trial<nh::f32>(pick, r, relu));
        worst16 = std::fmax(worst16, conv_trial<nh::f16_bits>(pick, r, relu));
        worstb = std::fmax(worstb, conv_trial<nh::bf16_bits>(pick, r, relu));
    }
    MESSAGE("max relative error: float " << worst32 << ", fp16 storage " << worst16 << ", bf16 storage " << worstb);
    CHECK(worst32 <= 1e-5);
    // Same rounded inputs on both sides: what differs is the float accumulation order (1e-5) and
    // the one rounding of each stored result, half an ulp: 2^-11 (fp16), 2^-8 (bf16) of the value.
    CHECK(worst16 <= 0x1p-11 + 1e-5);
    CHECK(worstb <= 0x1p-8 + 1e-5);
}

TEST_CASE("nhwc operands: max, average and global average pooling in NHWC equal the reference bit for bit") {
    picker pick{rng{81}};
    rng r{82};
    for (int trial = 0; trial < 200; ++trial) {
        window win;
        win.kh = pick(1, 4);
        win.kw = pick(1, 4);
        win.sh = pick(1, 3);
        win.sw = pick(1, 3);
        win.pt = pick(0, win.kh / 2);
        win.pb = pick(0, win.kh / 2);
        win.pl = pick(0, win.kw / 2);
        win.pr = pick(0, win.kw / 2);
        const int n = pick(1, 2), c = pick(1, 5), h = pick(win.kh, 9), w = pick(win.kw, 9);
        const int oh = (h + win.pt + win.pb - win.kh) / win.sh + 1, ow = (w + win.pl + win.pr - win.kw) / win.sw + 1;
        const int extra = pick(0, 4);
        nbatch<nh::f32> x{n, c, h, w, extra, pick(0, extra)};
        for (float& v : x.v) v = std::round(static_cast<float>(r.normal()) * 3.0F) / 2.0F;  // ties
        if (trial % 4 == 0) x.v[static_cast<std::size_t>(pick(0, static_cast<int>(x.v.size()) - 1))] = std::nanf("");
        const bool count_pad = trial % 2 == 0;
        const std::vector<float> xin = x.nchw();
        const shape is{c, h, w}, os{c, oh, ow}, gs{c, 1, 1};
        std::vector<float> mx(static_cast<std::size_t>(n) * os.size()), av(mx.size()), gp(static_cast<std::size_t>(n) * c);
        cpu::ref::max_pool({xin.data(), is.size(), is}, {mx.data(), os.size(), os}, n, win);
        cpu::ref::avg_pool({xin.data(), is.size(), is}, {av.data(), os.size(), os}, n, win, count_pad);
        cpu::ref::global_avg_pool({xin.data(), is.size(), is}, {gp.data(), gs.size(), gs}, n);
        const cuda::geometry g{win.kh, win.kw, win.sh, win.sw, win.pt, win.pb, win.pl, win.pr};
        bool same = true;
        const auto eq = [](float a, float b) { return a == b || (std::isnan(a) && std::isnan(b)); };
        for (int i = 0; i < n; ++i)
            for (int ch = 0; ch < c; ++ch) {
                same = same && eq(nh::global_avg_at<nh::f32>(x.cview(), i, ch), gp[static_cast<std::size_t>(i) * c + ch]);
                for (int y = 0; y < oh; ++y)
                    for (int xx = 0; xx < ow; ++xx) {
                        const std::size_t at = ((static_cast<std::size_t>(i) * c + ch) * oh + y) * ow + xx;
                        same = same && eq(nh::max_pool_at<nh::f32>(g, x.cview(), i, ch, y, xx), mx[at]);
                        same = same && eq(nh::avg_pool_at<nh::f32>(g, count_pad, x.cview(), i, ch, y, xx), av[at]);
                    }
            }
        CHECK_MESSAGE(same, "trial " << trial);
    }
}

namespace {
// A batch norm after a pool (not foldable: an affine step), a conv with a bias and no ReLU, a
// flattened 4 x 3 x 3 buffer into a linear layer.
using model_net = network<shape{3, 11, 10}, seq<node<"c", models::basic_conv<5, k<3>, pad<1>>>, max_pool<k<2>, stride<2>>,
                                               node<"bn", batch_norm<>>, node<"d", conv<4, k<1, 3>, pad<0, 1>, bias<true>>>,
                                               flatten, node<"fc", linear<4 * 5 * 5, 6>>>>;
}  // namespace

TEST_CASE("nhwc model: the parameter image the engines read (KRSC convs, permuted linear, batch norm factors)") {
    weights<model_net> w;
    init_seeded(w, 5, true);
    const auto& p = model_net::program;
    const cuda::nhwc_model m = cuda::make_nhwc_model<model_net>(w.data());
    REQUIRE(m.steps.size() == cuda::nhwc_plan_v<model_net>.steps().size());
    int convs = 0, linears = 0, affines = 0;
    for (const nh::step& s : m.steps) {
        if (s.k == nh::kind::conv) {
            ++convs;
            exec::step e{};
            e.op = s.op;
            e.bn = s.bn;
            const exec::folded f = exec::fold(p, w.data(), e);
            const int cout = s.y.c, cin = s.x.c, kh = s.g.kh, kw = s.g.kw;
            bool same = true;
            for (int o = 0; o < cout; ++o)
                for (int ci = 0; ci < cin; ++ci)
                    for (int ky = 0; ky < kh; ++ky)
                        for (int kx = 0; kx < kw; ++kx) {
                            // KRSC by hand: ((o * kh + ky) * kw + kx) * cin + ci
                            const std::size_t krsc = ((static_cast<std::size_t>(o) * kh + ky) * kw + kx) * cin + ci;
                            same = same && m.params[static_cast<std::size_t>(s.w) + krsc] ==
                                               f.w[((static_cast<std::size_t>(o) * cin + ci) * kh + ky) * kw + kx];
                        }
            for (int o = 0; o < cout; ++o) same = same && m.params[static_cast<std::size_t>(s.bias + o)] == f.bias[o];
            CHECK(same);
        } else if (s.k == nh::kind::linear) {
            ++linears;
            CHECK(s.flat_c == 4);
            CHECK(s.flat_h == 5);
            CHECK(s.flat_w == 5);
            const op& o = p.ops[s.op];
            const auto wp = weight_params<const float>::of(o, w.data().data());
            bool same = true;
            for (int r = 0; r < 6; ++r)
                for (int c = 0; c < 4; ++c)
                    for (int y = 0; y < 5; ++y)
                        for (int x = 0; x < 5; ++x)  // NCHW column (c * 5 + y) * 5 + x -> NHWC column (y * 5 + x) * 4 + c
                            same = same && m.params[static_cast<std::size_t>(s.w) + static_cast<std::size_t>(r) * 100 +
                                                    static_cast<std::size_t>((y * 5 + x) * 4 + c)] ==
                                               wp.w[static_cast<std::size_t>(r) * 100 + static_cast<std::size_t>((c * 5 + y) * 5 + x)];
            CHECK(same);
            for (int r = 0; r < 6; ++r) CHECK(m.params[static_cast<std::size_t>(s.bias + r)] == wp.bias[r]);
        } else if (s.k == nh::kind::affine) {
            ++affines;
            CHECK(s.bn);
            const op& o = p.ops[s.op];
            const auto g = bn_params<const float>::of(o, w.data().data());
            for (int c = 0; c < s.x.c; ++c) {
                const double inv = 1.0 / std::sqrt(static_cast<double>(g.var[c]) + o.eps);
                CHECK(m.params[static_cast<std::size_t>(s.w + c)] == static_cast<float>(g.gamma[c] * inv));
                CHECK(m.params[static_cast<std::size_t>(s.bias + c)] == static_cast<float>(g.beta[c] - g.mean[c] * (g.gamma[c] * inv)));
            }
        }
    }
    CHECK(convs == 2);
    CHECK(linears == 1);
    CHECK(affines == 1);
    // The first conv carries its folded batch norm and ReLU, the second (no batch norm) neither.
    CHECK(m.steps[1].k == nh::kind::conv);
    CHECK(m.steps[1].bn);
    CHECK(m.steps[1].relu);
}
