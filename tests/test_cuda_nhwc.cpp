// The NHWC engines of backend::cuda (engine::ctnet, engine::cudnn) against the reference runner,
// in every precision, on a GPU; skipped without one (and the cuDNN cases without a loadable
// libcudnn.so.9): random networks (concat slices, an unfolded batch norm, a standalone ReLU,
// softmax, a flattened buffer into a linear layer), Inception v3 at 107 x 107 with
// transform_input, and at 299 x 299 against the NCHW engine's fp32 path. Bounds on max |got - want| / max |want| of the logits (or probabilities):
//   fp32  1e-5 (ctnet's kernels: float throughout, as the NCHW engine's fp32 bound);
//         1e-4 with cuDNN (CUDNN_FMA_MATH still lets cuDNN pick FFT / Winograd algorithms,
//         whose transforms round differently than a direct sum: 1e-5-ish per layer, not bit-level);
//   tf32  1e-2 (inputs of every conv rounded to 10-bit mantissas, as the NCHW engine's tf32 bound);
//   fp16  5e-3, bf16 2e-2: weights and every stored activation rounded to 11 / 8 significant
//         bits, float accumulation. The same pass emulated on the host with the same roundings
//         (tests/test_nhwc_exec.cpp, 2026-12-05) measured on random-weight Inception v3: fp16
//         1.0e-3 / bf16 7.9e-3 at 75x75 batch 2, 6.1e-4 / 6.5e-3 at 299x299 batch 1; on the
//         random networks at most 8.2e-4 / 3.2e-3. The bounds leave 5x (fp16) and 2.5x (bf16)
//         for cuDNN's different summation order and epilogue rounding.
// Every engine: a second and third pass (eager, captured as a CUDA graph, launched) equal the
// first bit for bit, forward_device (device-resident input and output, its own graph) equal to
// the host-copy path bit for bit, another batch size (set up by prepare) and back.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <ctnet/ctnet.hpp>
#include <ctnet/cuda/runner.hpp>

#include "check.hpp"

using namespace ctnet;

namespace {

std::vector<float> random_input(std::size_t n, rng& g) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(g.normal());
    return v;
}

bool have_gpu() {
    if (cuda::device_count() > 0) return true;
    MESSAGE("skipped: no CUDA device on this machine");
    return false;
}

double bound(cuda::engine e, cuda::precision p) {
    switch (p) {
        case cuda::precision::fp32: return e == cuda::engine::cudnn ? 1e-4 : 1e-5;
        case cuda::precision::tf32: return 1e-2;
        case cuda::precision::fp16: return 5e-3;
        case cuda::precision::bf16: return 2e-2;
    }
    return 0.0;
}

std::vector<cuda::engine> engines() {
    std::vector<cuda::engine> e{cuda::engine::ctnet};
    if (cuda::cudnn_available()) e.push_back(cuda::engine::cudnn);
    else MESSAGE("engine::cudnn skipped: " << cuda::cudnn_unavailable_reason());
    return e;
}

constexpr cuda::precision all_precisions[] = {cuda::precision::fp32, cuda::precision::tf32, cuda::precision::fp16,
                                              cuda::precision::bf16};

// Device copy of host floats and back.
struct device_floats {
    cuda::device_buffer<float> b;
    explicit device_floats(const std::vector<float>& h) : b{h.size()} {
        CTNET_CUDA(cudaMemcpy(b.data(), h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
    }
    explicit device_floats(std::size_t n) : b{n} {}
    [[nodiscard]] std::vector<float> host() const {
        std::vector<float> h(b.size());
        CTNET_CUDA(cudaMemcpy(h.data(), b.data(), h.size() * sizeof(float), cudaMemcpyDeviceToHost));
        return h;
    }
};

template <class Net>
void compare(const weights<Net>& w, const std::vector<float>& x, const char* what) {
    runner<Net> ref{w};
    const std::vector<float> want = ref(x);
    const std::size_t n = x.size() / input_shape_v<Net>.size();
    for (const cuda::engine e : engines())
        for (const cuda::precision p : all_precisions) {
            runner<Net, backend::cuda> r{w, {.engine = e, .precision = p}};
            const std::vector<float> a = r(x);
            const double err = test::relative_error(a, want);
            MESSAGE(std::string{what} << ": engine " << cuda::to_string(e) << ", " << cuda::to_string(p) << ": " << err << " (bound "
                         << bound(e, p) << "); " << r.describe());
            CHECK(err <= bound(e, p));
            CHECK(r(x) == a);  // captured
            CHECK(r(x) == a);  // launched
            device_floats xd{x}, yd{a.size()};
            r.forward_device(xd.b.data(), yd.b.data(), n);
            CHECK(yd.host() == a);
            const std::vector<float> one(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(input_shape_v<Net>.size()));
            r.prepare(1);  // set up before the first pass at the size
            const std::vector<float> a1 = r(one);
            CHECK(test::relative_error(a1, std::vector<float>(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(a1.size()))) <=
                  bound(e, p));
            // Back to the first size: the algorithms found for it are kept, so ctnet's kernels and
            // (expected) cuDNN's repeat their bits; cuDNN is held to the bound only.
            const std::vector<float> again = r(x);
            if (e == cuda::engine::ctnet) CHECK(again == a);
            else CHECK(test::relative_error(again, want) <= bound(e, p));
        }
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
using small_net = small_net_t<>;
using small_softmax = small_net_t<softmax>;

// Average pools that run after their 1x1 conv (nhwc::step::pooled; as tests/test_nhwc_exec.cpp).
using pooled_net = network<
    shape{5, 13, 11},
    seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"a", conv<4, k<1>, bias<true>>>, relu,
        avg_pool<k<3>, stride<2>, pad<1>, count_pad<false>>, node<"b", conv<6, k<1>>>,
        node<"mixed", concat<node<"c", models::basic_conv<5, k<1>>>,
                             seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"p", models::basic_conv<3, k<1>>>>>>,
        global_avg_pool, flatten, node<"fc", linear<8, 3>>>>;

// A flattened 4 x 3 x 4 buffer into a linear layer: the NHWC engines permute its weights at load.
using flat_net = network<shape{2, 9, 11}, seq<node<"c", models::basic_conv<4, k<3>, stride<3, 3>, pad<1>>>, flatten,
                                             node<"fc", linear<4 * 3 * 4, 7>>>>;

}  // namespace

TEST_CASE("backend::cuda NHWC engines equal the reference runner on random networks (every precision)") {
    if (!have_gpu()) return;
    weights<small_net> w;
    init_seeded(w, 3, true);
    rng g{4};
    const std::vector<float> x = random_input(3 * input_shape_v<small_net>.size(), g);
    compare(w, x, "small net");
    weights<small_softmax> ws;
    std::copy(w.data().begin(), w.data().end(), ws.data().begin());
    compare(ws, x, "small net + softmax");
    weights<pooled_net> wp;
    init_seeded(wp, 5, true);
    compare(wp, random_input(3 * input_shape_v<pooled_net>.size(), g), "pooled 1x1 convs");
    weights<flat_net> wf;
    init_seeded(wf, 9, true);
    compare(wf, random_input(2 * input_shape_v<flat_net>.size(), g), "flattened 4x3x4 into linear");
}

TEST_CASE("backend::cuda NHWC engines equal the reference runner on Inception v3 (every precision)") {
    if (!have_gpu()) return;
    using net = models::inception_v3<1000, 107, models::inception_options{.aux_logits = false, .transform_input = true}>;
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 17, true);
    rng g{5};
    compare(*w, random_input(3 * input_shape_v<net>.size(), g), "Inception v3 107x107");
}

// At 299 x 299 the reference runner would take most of a minute on the host: the NCHW engine's
// fp32 path (within 1e-5 of the reference at 107 x 107 above) stands in for it.
TEST_CASE("backend::cuda NHWC engines on Inception v3 at 299x299, batch 2, against the NCHW fp32 path") {
    if (!have_gpu()) return;
    using net = models::inception_v3<>;
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 23, true);
    rng g{6};
    const std::vector<float> x = random_input(2 * input_shape_v<net>.size(), g);
    const std::vector<float> want = runner<net, backend::cuda>{*w, {.engine = cuda::engine::nchw, .precision = cuda::precision::fp32}}(x);
    for (const cuda::engine e : engines())
        for (const cuda::precision p : all_precisions) {
            runner<net, backend::cuda> r{*w, {.engine = e, .precision = p}};
            const double err = test::relative_error(r(x), want);
            MESSAGE("Inception v3 299x299: engine " << cuda::to_string(e) << ", " << cuda::to_string(p) << ": " << err
                                                    << " (bound " << 1e-5 + bound(e, p) << "); " << r.describe());
            CHECK(err <= 1e-5 + bound(e, p));
        }
}

TEST_CASE("backend::cuda: fp16 / bf16 and forward_device need an NHWC engine; engine::automatic is the default") {
    if (!have_gpu()) return;
    weights<small_net> w;
    init_seeded(w, 3, true);
    std::string e1, e2;
    try {
        runner<small_net, backend::cuda> r{w, {.engine = cuda::engine::nchw, .precision = cuda::precision::bf16}};
    } catch (const ctnet::error& e) {
        e1 = e.what();
    }
    CHECK(e1.find("needs an NHWC engine") != std::string::npos);
    runner<small_net, backend::cuda> r{w, {.engine = cuda::engine::nchw}};
    try {
        r.forward_device(nullptr, nullptr, 1);
    } catch (const ctnet::error& e) {
        e2 = e.what();
    }
    CHECK(e2.find("forward_device needs an NHWC engine") != std::string::npos);
    // engine::automatic, the default: cuDNN where it loads, else ctnet's kernels.
    runner<small_net, backend::cuda> a{w};
    const std::vector<float> x(3 * input_shape_v<small_net>.size(), 0.5F);
    static_cast<void>(a(x));
    MESSAGE(a.describe());
    CHECK(a.describe().find(cuda::cudnn_available() ? "engine cudnn" : "engine ctnet") == 0);
}
