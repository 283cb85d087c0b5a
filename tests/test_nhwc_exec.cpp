// The NHWC engines' pass, run on the host: the plan (cuda/nhwc_plan.hpp), the parameter image
// (cuda/nhwc_model.hpp) converted as src/cuda/nhwc.cu converts it (conv weights transposed to
// [depth][out] in the storage type, biases and affines float), the arena laid out as the engine
// lays it out (the memory plan scaled by the batch rounded up to 32 bytes, poisoned with NaN so a
// read of anything not yet written shows), the input transform, every step through the same
// element functions the kernels run (cuda/nhwc_operands.hpp), the output conversion — against the
// reference runner. Float storage checks the plan end to end (<= 1e-5); fp16 and bf16 storage
// measure what storing every activation in half precision costs on the logits, the figures the
// GPU tests' bounds rest on (tests/test_cuda_nhwc.cpp): same roundings, float accumulation.
// Needs no GPU and no CUDA toolkit.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <ctnet/core/random.hpp>
#include <ctnet/cpu/runner.hpp>
#include <ctnet/cuda/nhwc_model.hpp>
#include <ctnet/cuda/nhwc_operands.hpp>
#include <ctnet/graph/params.hpp>
#include <ctnet/models/inception_v3.hpp>

#include "check.hpp"

using namespace ctnet;
namespace nh = cuda::nhwc;

namespace {

template <class P>
void gemm(const P& p, int slices) {
    for (int z = 0; z < slices; ++z)
        for (int m = 0; m < p.rows; ++m)
            for (int j = 0; j < p.cols; ++j) {
                float acc = 0.0F;
                for (int k = 0; k < p.depth; ++k) acc = std::fma(p.a(z, m, k), p.b(z, k, j), acc);
                p.store(z, m, j, acc);
            }
}

// The NHWC pass of Net at batch n on the host, in storage S.
template <class S, class Net>
std::vector<float> nhwc_pass(const weights<Net>& w, const std::vector<float>& x, int n) {
    using T = typename S::type;
    const cuda::nhwc_model m = cuda::make_nhwc_model<Net>(w.data());
    const std::vector<float>& p = m.params;
    // Parameters as the engine converts them.
    std::vector<std::vector<T>> wt(m.steps.size());
    for (std::size_t i = 0; i < m.steps.size(); ++i) {
        const nh::step& s = m.steps[i];
        if (s.k == nh::kind::conv) {
            const int cout = s.y.c, depth = s.g.kh * s.g.kw * s.x.c;
            wt[i].resize(static_cast<std::size_t>(cout) * depth);
            for (int o = 0; o < cout; ++o)
                for (int k = 0; k < depth; ++k)
                    wt[i][static_cast<std::size_t>(k) * cout + o] = S::store(p[static_cast<std::size_t>(s.w) + static_cast<std::size_t>(o) * depth + k]);
        } else if (s.k == nh::kind::linear) {
            for (long long e = 0; e < static_cast<long long>(s.y.c) * s.x.c; ++e) wt[i].push_back(S::store(p[static_cast<std::size_t>(s.w + e)]));
        }
    }
    const long long scale = nh::arena_scale(n, static_cast<int>(sizeof(T)));
    const T poison = S::store(std::numeric_limits<float>::quiet_NaN());
    std::vector<T> arena(static_cast<std::size_t>(m.arena * scale), poison), in(static_cast<std::size_t>(m.in.size() * n), poison);
    std::vector<T> pool_temp(static_cast<std::size_t>(m.temp_pool * n), poison);
    const auto view_of = [&](const nh::tensor& t) {
        T* base = t.input                  ? in.data()
                  : t.buf == nh::pool_temp ? pool_temp.data()
                                           : arena.data() + m.offsets[static_cast<std::size_t>(t.buf)] * scale;
        return nh::view<T>{base + t.c0, t.sample(), t.channels, t.c, t.h, t.w};
    };
    const auto cview = [&](const nh::tensor& t) {
        const nh::view<T> v = view_of(t);
        return nh::view<const T>{v.data, v.sn, v.channels, v.c, v.h, v.w};
    };
    // Input transform.
    {
        const nh::step& s = m.steps.front();
        const nh::view<T> y = view_of(s.y);
        for (int i = 0; i < n; ++i)
            for (int ch = 0; ch < s.y.c; ++ch)
                for (int yy = 0; yy < s.y.h; ++yy)
                    for (int xx = 0; xx < s.y.w; ++xx) {
                        float v = x[((static_cast<std::size_t>(i) * s.y.c + ch) * s.y.h + yy) * s.y.w + xx];
                        if (s.w >= 0) v = v * p[static_cast<std::size_t>(s.w + ch)] + p[static_cast<std::size_t>(s.bias + ch)];
                        y.at(i, ch, yy, xx) = S::store(v);
                    }
    }
    for (std::size_t i = 1; i + 1 < m.steps.size(); ++i) {
        const nh::step& s = m.steps[i];
        const nh::view<const T> xv = cview(s.x);
        const nh::view<T> yv = view_of(s.y);
        const float* bias = s.bias >= 0 ? p.data() + s.bias : nullptr;
        const auto each = [&](const nh::tensor& t, auto f) {
            for (int b = 0; b < n; ++b)
                for (int ch = 0; ch < t.c; ++ch)
                    for (int yy = 0; yy < t.h; ++yy)
                        for (int xx = 0; xx < t.w; ++xx) f(b, ch, yy, xx);
        };
        switch (s.k) {
            case nh::kind::conv:
                gemm(nh::conv_forward<S>{wt[i].data(), bias, s.relu, s.g, xv, yv}, n);
                break;
            case nh::kind::max_pool:
                each(s.y, [&](int b, int ch, int yy, int xx) { yv.at(b, ch, yy, xx) = S::store(nh::max_pool_at<S>(s.g, xv, b, ch, yy, xx)); });
                break;
            case nh::kind::avg_pool:
                each(s.y, [&](int b, int ch, int yy, int xx) {
                    yv.at(b, ch, yy, xx) = S::store(nh::pooled_at<S>(s.g, s.count_pad, bias, s.relu, xv, b, ch, yy, xx));
                });
                break;
            case nh::kind::global_avg_pool:
                for (int b = 0; b < n; ++b)
                    for (int ch = 0; ch < s.x.c; ++ch) yv.at(b, ch, 0, 0) = S::store(nh::global_avg_at<S>(xv, b, ch));
                break;
            case nh::kind::linear:
                for (int b = 0; b < n; ++b)
                    for (int o = 0; o < s.y.c; ++o) {
                        float acc = 0.0F;
                        for (int f = 0; f < s.x.c; ++f)
                            acc = std::fma(S::load(wt[i][static_cast<std::size_t>(o) * s.x.c + f]), S::load(xv.data[b * xv.sn + f]), acc);
                        yv.data[b * yv.sn + o] = S::store(acc + (s.bias >= 0 ? p[static_cast<std::size_t>(s.bias + o)] : 0.0F));
                    }
                break;
            case nh::kind::softmax:
                for (int b = 0; b < n; ++b) {
                    float mx = -std::numeric_limits<float>::infinity();
                    for (int f = 0; f < s.x.c; ++f) mx = std::fmax(mx, S::load(xv.data[b * xv.sn + f]));
                    double sum = 0.0;
                    for (int f = 0; f < s.x.c; ++f) sum += std::exp(S::load(xv.data[b * xv.sn + f]) - mx);
                    for (int f = 0; f < s.x.c; ++f)
                        yv.data[b * yv.sn + f] = S::store(static_cast<float>(std::exp(S::load(xv.data[b * xv.sn + f]) - mx) / sum));
                }
                break;
            case nh::kind::affine:
            case nh::kind::relu:
            case nh::kind::copy:
                each(s.x, [&](int b, int ch, int yy, int xx) {
                    float v = S::load(xv.at(b, ch, yy, xx));
                    if (s.k == nh::kind::affine) v = v * p[static_cast<std::size_t>(s.w + ch)] + p[static_cast<std::size_t>(s.bias + ch)];
                    if ((s.k == nh::kind::relu || s.relu) && v < 0.0F) v = 0.0F;
                    yv.at(b, ch, yy, xx) = S::store(v);
                });
                break;
            case nh::kind::input:
            case nh::kind::output: break;
        }
    }
    const nh::step& o = m.steps.back();
    const nh::view<const T> xv = cview(o.x);
    std::vector<float> y(static_cast<std::size_t>(n) * o.x.size());
    for (int b = 0; b < n; ++b)
        for (int ch = 0; ch < o.x.c; ++ch)
            for (int yy = 0; yy < o.x.h; ++yy)
                for (int xx = 0; xx < o.x.w; ++xx)
                    y[((static_cast<std::size_t>(b) * o.x.c + ch) * o.x.h + yy) * o.x.w + xx] = S::load(xv.at(b, ch, yy, xx));
    return y;
}

std::vector<float> random_input(std::size_t n, rng& g) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(g.normal());
    return v;
}

template <class Net>
void check_all(const weights<Net>& w, const std::vector<float>& x, const char* what, double f16_bound, double bf16_bound) {
    const int n = static_cast<int>(x.size() / input_shape_v<Net>.size());
    runner<Net> ref{w};
    const std::vector<float> want = ref(x);
    const double e32 = test::relative_error(nhwc_pass<nh::f32>(w, x, n), want);
    const double e16 = test::relative_error(nhwc_pass<nh::f16_bits>(w, x, n), want);
    const double eb = test::relative_error(nhwc_pass<nh::bf16_bits>(w, x, n), want);
    MESSAGE(std::string{what} << ": NHWC pass on the host vs the reference runner: float " << e32 << ", fp16 storage " << e16
                 << ", bf16 storage " << eb);
    CHECK(e32 <= 1e-5);
    CHECK(e16 <= f16_bound);
    CHECK(eb <= bf16_bound);
}

template <class... Tail>
using small_net_t =
    network<shape{3, 19, 17},
            seq<node<"c1", conv<8, k<3>, stride<2>, pad<1, 0>, bias<true>>>, node<"bn", batch_norm<>>,
                node<"mixed", concat<node<"a", models::basic_conv<5, k<1, 3>, pad<0, 1>>>,
                                     seq<max_pool<k<3>, stride<1>, pad<1>>, node<"bnp", batch_norm<>>>,
                                     seq<node<"b", models::basic_conv<70, k<3>, pad<1>>>, relu>,
                                     seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"p", models::basic_conv<4, k<7, 1>, pad<3, 0>>>>>>,
                node<"c2", conv<6, k<2>, stride<2>>>, global_avg_pool, flatten, node<"fc", linear<6, 3>>, Tail...>>;
// Average pools that run after their 1x1 conv (nhwc::step::pooled): a stride-1 pool whose conv
// has a bias and a ReLU, a stride-2 pool without count_pad, and a pooled branch of a concat.
using pooled_net = network<
    shape{5, 13, 11},
    seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"a", conv<4, k<1>, bias<true>>>, relu,
        avg_pool<k<3>, stride<2>, pad<1>, count_pad<false>>, node<"b", conv<6, k<1>>>,
        node<"mixed", concat<node<"c", models::basic_conv<5, k<1>>>,
                             seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"p", models::basic_conv<3, k<1>>>>>>,
        global_avg_pool, flatten, node<"fc", linear<8, 3>>>>;
using flat_net = network<shape{2, 9, 11}, seq<node<"c", models::basic_conv<4, k<3>, stride<3, 3>, pad<1>>>, flatten,
                                             node<"fc", linear<4 * 3 * 4, 7>>>>;

}  // namespace

TEST_CASE("nhwc pass on the host: random networks (concat slices, unfolded batch norm, softmax, pooled convs, flattened linear)") {
    weights<small_net_t<>> w;
    init_seeded(w, 3, true);
    rng g{4};
    const std::vector<float> x = random_input(3 * input_shape_v<small_net_t<>>.size(), g);
    check_all(w, x, "small net", 5e-3, 2e-2);
    weights<small_net_t<softmax>> ws;
    std::copy(w.data().begin(), w.data().end(), ws.data().begin());
    check_all(ws, x, "small net + softmax", 5e-3, 2e-2);
    constexpr const auto& pp = cuda::nhwc_plan_v<pooled_net>;
    int pooled = 0;
    for (const nh::step& st : pp.steps()) pooled += st.pooled && st.k == nh::kind::conv ? 1 : 0;
    CHECK(pooled == 3);
    CHECK(pp.count(nh::kind::avg_pool) == 3);
    weights<pooled_net> wp;
    init_seeded(wp, 5, true);
    check_all(wp, random_input(3 * input_shape_v<pooled_net>.size(), g), "pooled 1x1 convs", 5e-3, 2e-2);
    weights<flat_net> wf;
    init_seeded(wf, 9, true);
    check_all(wf, random_input(2 * input_shape_v<flat_net>.size(), g), "flattened 4x3x4 into linear", 5e-3, 2e-2);
}

TEST_CASE("nhwc pass on the host: Inception v3 at 75x75 with transform_input (every block, every slice)") {
    using net = models::inception_v3<1000, 75, models::inception_options{.aux_logits = false, .transform_input = true}>;
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 17, true);
    rng g{5};
    check_all(*w, random_input(2 * input_shape_v<net>.size(), g), "Inception v3 75x75 batch 2", 5e-3, 2e-2);
}

// Slow on the host (100 s on one core): run by hand, ctnet_nhwc_tests -tc="*299*" --no-skip.
// Measured 2026-12-05: float 6.8e-7, fp16 storage 6.1e-4, bf16 storage 6.5e-3.
TEST_CASE("nhwc pass on the host: Inception v3 at 299x299, batch 1" * doctest::skip()) {
    using net = models::inception_v3<>;
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 23, true);
    rng g{6};
    check_all(*w, random_input(input_shape_v<net>.size(), g), "Inception v3 299x299 batch 1", 5e-3, 2e-2);
}
