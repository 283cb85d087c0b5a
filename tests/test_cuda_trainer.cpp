// trainer<Net, backend::cuda> against the CPU trainers (tests/test_train.cpp checks those against
// finite differences and torch autograd): gradients and running statistics of one training pass,
// whole train_step runs (every optimizer, clipping, weight decay, the moving average) with the optimizer
// state on the device, checkpoints moving between backends, data parallelism (2 ranks on one GPU
// against 1 rank on the whole batch), errors. Skips without a GPU.
//
// Bounds. The random nets are conditioned (both sides add in nearly the same order): per tensor
// within 1e-5 of its norm in fp32 (floor: 1 % of the whole gradient's norm, as test_train.cpp),
// 1e-2 in tf32. A random-weight Inception v3 step is not: one ulp of input noise moves half its
// gradient tensors by more than 0.3 % (bench/RESULTS.md, rounding sensitivity), so there each
// tensor is held to 2e-5 of its scale plus 3x the CPU trainer's own change under 1e-5 input
// noise, which is what a kernel that rounds differently may move it; the kernels themselves are
// held to 1e-5 one by one in tests/test_cuda_train.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ctnet/cpu/trainer.hpp>
#include <ctnet/cuda/staged.hpp>
#include <ctnet/cuda/trainer.hpp>
#include <ctnet/io/safetensors.hpp>
#include <ctnet/models/inception_v3.hpp>
#include <ctnet/train/checkpoint.hpp>
#include <ctnet/train/step.hpp>

#include "check.hpp"
#include "cuda_one_rank.hpp"
#include "train_nets.hpp"

using namespace ctnet;
using namespace ctnet::test_nets;

namespace {

bool gpu_here() {
    if (cuda::device_count() > 0) return true;
    MESSAGE("skipped: no CUDA device on this machine");
    return false;
}

std::vector<float> random_vector(std::size_t n, std::uint64_t seed) {
    rng g{seed};
    std::vector<float> v(n);
    for (float& f : v) f = static_cast<float>(g.normal());
    return v;
}

template <class A, class B>
test::error_meter norm_meter(const A& got, const B& want) {
    return test::compare(got, want, std::numeric_limits<double>::min());
}

// One training pass of trainer T from w (a copy): gradients given d output = r, d aux = r_aux;
// returns the gradients and leaves the updated running statistics in w.
template <class Net, class T, class O>
std::vector<float> grads_of(weights<Net>& w, O o, const std::vector<float>& x, const std::vector<float>& r,
                            const std::vector<float>& r_aux) {
    T t{w, o};
    t.forward(x);
    t.zero_grads();
    t.backward(r, r_aux);
    if constexpr (requires { t.conv_engine(); }) MESSAGE("convolutions: " << t.conv_engine());
    const std::span<const float> g = t.grads();
    std::vector<float> out(g.begin(), g.end());
    if constexpr (requires { t.params_to_host(); }) t.params_to_host();
    return out;
}

// Per tensor: |gpu - cpu| <= bound * scale + slack * sensitivity[i] (gradients and the running
// statistics the pass updated). Returns the worst |gpu - cpu| / scale.
template <class Net>
double compare_tensors(const std::vector<float>& g_gpu, const weights<Net>& w_gpu, const std::vector<float>& g_cpu,
                       const weights<Net>& w_cpu, double bound, const std::vector<double>& sensitivity, double slack) {
    double whole = 0.0;
    for (const float v : g_cpu) whole += static_cast<double>(v) * v;
    whole = std::sqrt(whole);
    double worst = 0.0;
    std::size_t i = 0;
    for (const tensor_info& t : weights<Net>::tensors()) {
        const bool stats = !t.trainable;
        const std::span<const float> a = stats ? std::span<const float>(w_cpu.data()) : std::span<const float>(g_cpu);
        const std::span<const float> b = stats ? std::span<const float>(w_gpu.data()) : std::span<const float>(g_gpu);
        const test::error_meter m = norm_meter(b.subspan(t.offset, t.count), a.subspan(t.offset, t.count));
        const double scale = std::max(m.norm_want(), stats ? 0.0 : 1e-2 * whole);
        const double s = sensitivity.empty() ? 0.0 : sensitivity[i];
        INFO(t.name << (stats ? " (running statistic)" : " (gradient)") << ": |gpu - cpu| = " << m.norm_diff() << ", scale "
                    << scale << ", sensitivity " << s);
        CHECK(m.norm_diff() <= bound * scale + slack * s);
        if (scale > 0.0) worst = std::max(worst, m.norm_diff() / scale);
        ++i;
    }
    return worst;
}

template <class Net>
void check_pass(int batch, std::uint64_t seed, cuda::precision p, double bound, int draws, double slack, bool cudnn = true) {
    constexpr shape in = input_shape_v<Net>;
    auto w = std::make_unique<weights<Net>>();
    init_seeded(*w, seed, true);
    const auto x = random_vector(static_cast<std::size_t>(batch) * in.size(), seed + 1);
    const auto r = random_vector(static_cast<std::size_t>(batch) * output_shape_v<Net>.size(), seed + 2);
    std::vector<float> r_aux;
    if constexpr (Net::program.has_aux)
        r_aux = random_vector(static_cast<std::size_t>(batch) * Net::program.aux.s.size(), seed + 3);
    using cpu_t = trainer<Net, backend::cpu>;
    using gpu_t = trainer<Net, backend::cuda>;
    const typename cpu_t::options co{.threads = 4, .seed = 99, .winograd = false};
    auto w_cpu = std::make_unique<weights<Net>>(*w), w_gpu = std::make_unique<weights<Net>>(*w);
    const auto g_cpu = grads_of<Net, cpu_t>(*w_cpu, co, x, r, r_aux);
    const auto g_gpu = grads_of<Net, gpu_t>(*w_gpu, typename gpu_t::options{.precision = p, .cudnn = cudnn, .seed = 99}, x, r, r_aux);
    // The CPU trainer's own change under 1e-5 relative input noise, per tensor.
    std::vector<double> sensitivity(weights<Net>::tensors().size(), 0.0);
    for (int d = 0; d < draws; ++d) {
        rng g{seed + 1000 + static_cast<std::uint64_t>(d)};
        std::vector<float> xp = x;
        for (float& v : xp) v *= 1.0F + static_cast<float>(1e-5 * g.normal());
        auto wp = std::make_unique<weights<Net>>(*w);
        const auto gp = grads_of<Net, cpu_t>(*wp, co, xp, r, r_aux);
        std::size_t i = 0;
        for (const tensor_info& t : weights<Net>::tensors()) {
            const bool stats = !t.trainable;
            const std::span<const float> a = stats ? std::span<const float>(w_cpu->data()) : std::span<const float>(g_cpu);
            const std::span<const float> b = stats ? std::span<const float>(wp->data()) : std::span<const float>(gp);
            sensitivity[i] = std::max(sensitivity[i], norm_meter(b.subspan(t.offset, t.count), a.subspan(t.offset, t.count)).norm_diff());
            ++i;
        }
    }
    const double worst = compare_tensors(g_gpu, *w_gpu, g_cpu, *w_cpu, bound, draws > 0 ? sensitivity : std::vector<double>{}, slack);
    MESSAGE("cuda trainer " << cuda::to_string(p) << ", input " << in.c << "x" << in.h << "x" << in.w << ", batch " << batch
                            << ": worst tensor " << worst << " of its scale");
}

// Three train_steps from the same start on both backends: the losses, hits and norms of each,
// then the parameters, the optimizer state and the moving average. fresh_average: the average
// starts empty (its first update copies, on the device too); aux_weight 0 leaves the aux head's
// loss out; vary_batch: batches of 4, 6, 4 (the device trainer reallocates).
template <class Net>
void check_steps(cuda::precision p, double bound, bool fresh_average, double aux_weight, bool vary_batch,
                 const optimizer& opt = optimizer::rmsprop()) {
    constexpr shape in = input_shape_v<Net>;
    constexpr int classes = static_cast<int>(output_shape_v<Net>.size());
    weights<Net> w0;
    init_seeded(w0, 5, true);
    weights<Net> wc = w0, wg = w0;
    optimizer oc = opt, og = opt;
    moving_average ec{0.999}, eg{0.999};
    if (!fresh_average) {
        ec.update(wc.data());
        eg.update(wg.data());
    }
    trainer<Net, backend::cpu> tc{wc, {.threads = 2, .seed = 7, .winograd = false}};
    trainer<Net, backend::cuda> tg{wg, {.precision = p, .seed = 7}};
    const auto ranges = trainable_ranges<Net>();
    const recipe r{.label_smoothing = 0.1, .aux_weight = aux_weight, .weight_decay = 4e-3, .clip_norm = 0.5};
    for (int s = 0; s < 3; ++s) {
        const int batch = vary_batch && s == 1 ? 6 : 4;
        const auto x = random_vector(static_cast<std::size_t>(batch) * in.size(), 40 + static_cast<std::uint64_t>(s));
        std::vector<int> labels(batch);
        for (int i = 0; i < batch; ++i) labels[static_cast<std::size_t>(i)] = (i + s) % classes;
        const step_result a = train_step(tc, oc, ranges, x, labels, r, 0.01, &ec);
        const step_result b = train_step(tg, og, ranges, x, labels, r, 0.01, &eg);
        INFO("step " << s);
        CHECK(std::fabs(b.loss - a.loss) <= bound * std::fabs(a.loss));
        CHECK(std::fabs(b.aux_loss - a.aux_loss) <= bound * std::fabs(a.aux_loss));
        CHECK(std::fabs(b.main_loss - a.main_loss) <= bound * std::fabs(a.main_loss));
        CHECK(std::fabs(b.grad_norm - a.grad_norm) <= bound * a.grad_norm);
        // bf16 may turn a near-tie of two logits.
        CHECK(std::abs(b.correct - a.correct) <= (p == cuda::precision::bf16 ? 1 : 0));
    }
    CHECK(og.steps() == oc.steps());
    CHECK(eg.updates() == ec.updates());
    sync_host(tg, og, &eg);
    // Per tensor, with a floor of 1 % of the whole vector's norm: a conv or linear bias in front
    // of a training-mode batch norm has a true gradient of zero, so its state is rounding noise
    // on both sides (as compare_tensors' floor above).
    const auto same = [&](std::span<const float> got, std::span<const float> want, const char* what) {
        const double whole = norm_meter(got, want).norm_want();
        for (const tensor_info& t : weights<Net>::tensors()) {
            const test::error_meter m = norm_meter(got.subspan(t.offset, t.count), want.subspan(t.offset, t.count));
            INFO(what << " " << t.name << ": " << m.norm_diff() << " of " << m.norm_want());
            CHECK(m.norm_diff() <= bound * std::max(m.norm_want(), 1e-2 * whole));
        }
    };
    same(wg.data(), wc.data(), "parameters");
    same(og.momentum(), oc.momentum(), "momentum");
    same(og.mean_square(), oc.mean_square(), "mean square");
    same(eg.shadow(), ec.shadow(), "moving average");
}

}  // namespace

TEST_CASE("cuda trainer: one training pass equals backend::cpu's on every layer kind (fp32, tf32)") {
    if (!gpu_here()) return;
    check_pass<every_layer>(3, 31, cuda::precision::fp32, 1e-5, 0, 0.0);
    check_pass<every_layer>(4, 34, cuda::precision::fp32, 1e-5, 0, 0.0);
    check_pass<every_layer>(3, 31, cuda::precision::tf32, 1e-2, 0, 0.0);
}

TEST_CASE("cuda trainer: bf16 mixed precision on every layer kind: one pass and three train_steps") {
    // bf16 keeps 8 mantissa bits (2^-9 relative rounding of each conv operand, float
    // accumulation), against tf32's 10: the bound is 5x tf32's. Needs cuDNN (bf16 convs run there).
    if (!gpu_here()) return;
    if (!cuda::cudnn_available()) {
        MESSAGE("skipped: bf16 needs cuDNN: " << cuda::cudnn_unavailable_reason());
        return;
    }
    check_pass<every_layer>(3, 31, cuda::precision::bf16, 5e-2, 0, 0.0);
    check_steps<every_layer_logits>(cuda::precision::bf16, 5e-2, false, 0.4, false);
}

namespace {
// A conv cuDNN cannot express (TF's "same" padding at stride 2: one row and column more at the
// bottom and right) beside one it can: the first falls back to ctnet's kernels (in tf32 under
// bf16), the second runs on cuDNN.
using asymmetric = network<shape{3, 9, 8}, seq<node<"a", cbr<4, k<3>, stride<2>, pad4<0, 1, 0, 1>>>, node<"b", cbr<5, k<3>, pad<1>>>,
                                               global_avg_pool, flatten, node<"fc", linear<5, 3>>>>;
}  // namespace

TEST_CASE("cuda trainer: a conv cuDNN cannot express falls back to ctnet's kernels beside cuDNN's (fp32, bf16)") {
    if (!gpu_here()) return;
    check_pass<asymmetric>(3, 41, cuda::precision::fp32, 1e-5, 0, 0.0);
    if (cuda::cudnn_available()) check_pass<asymmetric>(3, 41, cuda::precision::bf16, 5e-2, 0, 0.0);
}

TEST_CASE("cuda trainer: ctnet's own conv kernels (options::cudnn = false) on every layer kind (fp32, tf32)") {
    // The cases above take cuDNN's convolutions where libcudnn loads; these hold the fallback.
    if (!gpu_here()) return;
    check_pass<every_layer>(3, 31, cuda::precision::fp32, 1e-5, 0, 0.0, false);
    check_pass<every_layer>(3, 31, cuda::precision::tf32, 1e-2, 0, 0.0, false);
}

TEST_CASE("cuda trainer: one Inception v3 training pass at 75x75 and at 299x299, batch 4 (fp32)") {
    if (!gpu_here()) return;
    using small = models::inception_v3<1000, 75, models::inception_options{.aux_logits = false}>;
    check_pass<small>(4, 61, cuda::precision::fp32, 2e-5, 2, 3.0);
    check_pass<models::inception_v3<>>(4, 62, cuda::precision::fp32, 2e-5, 1, 3.0);  // with the aux head
}

TEST_CASE("cuda trainer: three train_steps on the device equal train_step on the CPU (RMSProp, clipping, average)") {
    if (!gpu_here()) return;
    check_steps<every_layer_logits>(cuda::precision::fp32, 1e-5, false, 0.4, false);
    check_steps<every_layer_logits>(cuda::precision::fp32, 1e-5, true, 0.0, true);  // the average's first update copies
}

TEST_CASE("cuda trainer: torch's RMSProp and SGD (Nesterov) on the device equal them on the CPU") {
    if (!gpu_here()) return;
    check_steps<every_layer_logits>(cuda::precision::fp32, 1e-5, false, 0.4, false,
                                    optimizer::rmsprop({.decay = 0.9, .momentum = 0.9, .eps = 1e-3, .style = rmsprop_style::pytorch}));
    check_steps<every_layer_logits>(cuda::precision::fp32, 1e-5, false, 0.4, false, optimizer::sgd({.momentum = 0.9, .nesterov = true}));
}

TEST_CASE("cuda trainer: a checkpoint written after GPU steps resumes on the CPU and back") {
    if (!gpu_here()) return;
    using Net = every_layer_logits;
    constexpr shape in = input_shape_v<Net>;
    weights<Net> w;
    init_seeded(w, 8, true);
    optimizer o = optimizer::rmsprop();
    moving_average e{0.99};
    e.update(w.data());
    const auto ranges = trainable_ranges<Net>();
    const recipe r{};
    const std::vector<int> labels{0, 1, 2, 3};
    trainer<Net, backend::cuda> tg{w, {.precision = cuda::precision::fp32, .seed = 3}};
    for (int s = 0; s < 2; ++s) train_step(tg, o, ranges, random_vector(4 * in.size(), 70 + static_cast<std::uint64_t>(s)), labels, r, 0.01, &e);
    sync_host(tg, o, &e);
    const std::string path = (std::filesystem::temp_directory_path() / "ctnet_cuda_trainer_ck.safetensors").string();
    save_checkpoint(path, w, o, &e, train_state{.epoch = 1, .step = 2, .dropout_rng = 0, .config = {}});
    // Resume on the CPU and on the GPU from the file; one more step each.
    weights<Net> wc, wg;
    optimizer oc = optimizer::rmsprop(), og = optimizer::rmsprop();
    moving_average ec{0.99}, eg{0.99};
    static_cast<void>(load_checkpoint(io::safetensors_file{path}, wc, oc, &ec));
    static_cast<void>(load_checkpoint(io::safetensors_file{path}, wg, og, &eg));
    std::filesystem::remove(path);
    CHECK(wc.data()[0] == w.data()[0]);
    trainer<Net, backend::cpu> tc2{wc, {.threads = 2, .seed = 4, .winograd = false}};
    trainer<Net, backend::cuda> tg2{wg, {.precision = cuda::precision::fp32, .seed = 4}};
    const auto x = random_vector(4 * in.size(), 72);
    train_step(tc2, oc, ranges, x, labels, r, 0.01, &ec);
    train_step(tg2, og, ranges, x, labels, r, 0.01, &eg);
    sync_host(tg2, og, &eg);
    const test::error_meter mw = norm_meter(std::span<const float>(wg.data()), std::span<const float>(wc.data()));
    const test::error_meter me = norm_meter(std::span<const float>(eg.shadow()), std::span<const float>(ec.shadow()));
    MESSAGE("after resuming: parameters " << mw.norm_diff() / mw.norm_want() << ", average " << me.norm_diff() / me.norm_want());
    CHECK(mw.norm_diff() <= 1e-5 * mw.norm_want());
    CHECK(me.norm_diff() <= 1e-5 * me.norm_want());
    CHECK(og.steps() == 3);
}

namespace {

// Two ranks in one process, one thread each: every collective meets at a barrier. Sums are in
// rank order, so both ranks get the same bits.
struct thread_pair {
    std::barrier<> meet{2};
    std::vector<double> slot[2];
};
class thread_rank final : public communicator {
public:
    thread_rank(thread_pair& p, int r) : p_{&p}, r_{r} {}
    [[nodiscard]] int rank() const override { return r_; }
    [[nodiscard]] int size() const override { return 2; }
    void allreduce_sum(std::span<float> v) override { sum(v); }
    void allreduce_sum(std::span<double> v) override { sum(v); }
    void broadcast(std::span<float> v, int root) override {
        if (r_ == root) p_->slot[r_].assign(v.begin(), v.end());
        p_->meet.arrive_and_wait();
        if (r_ != root) std::copy(p_->slot[root].begin(), p_->slot[root].end(), v.begin());
        p_->meet.arrive_and_wait();
    }

private:
    template <class T>
    void sum(std::span<T> v) {
        p_->slot[r_].assign(v.begin(), v.end());
        p_->meet.arrive_and_wait();
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(static_cast<T>(p_->slot[0][i]) + static_cast<T>(p_->slot[1][i]));
        p_->meet.arrive_and_wait();
    }
    thread_pair* p_;
    int r_;
};

}  // namespace

TEST_CASE("cuda trainer: one rank through a communicator (staged, sync BN, small buckets) repeats the plain trainer's bits") {
    if (!gpu_here()) return;
    single_process host;
    cuda::staged_communicator comm{host};
    test::check_one_rank_bits(comm, 12);  // the staged copies: a bucket read back before its copy to the host finished
    test::check_one_rank_bits<wide_bn>(comm, 14);
    using Net = every_layer_no_dropout;
    weights<Net> wa;
    CHECK_THROWS_WITH_AS((trainer<Net, backend::cuda>{wa, {.sync_bn = true}}), doctest::Contains("sync_bn needs a communicator"), error);
}

namespace {

// 2 ranks (threads, staged transport, sync BN), a half of each batch each, against 1 rank on
// the whole batch: three train_steps.
template <class Net>
void check_two_ranks() {
    constexpr shape in = input_shape_v<Net>;
    constexpr int batch = 8, half = batch / 2, steps = 3;
    weights<Net> w0;
    init_seeded(w0, 11, true);
    const auto ranges = trainable_ranges<Net>();
    const recipe r{.label_smoothing = 0.1, .aux_weight = 0.4, .weight_decay = 4e-3, .clip_norm = 0.5};
    std::vector<std::vector<float>> xs;
    std::vector<std::vector<int>> ls;
    for (int s = 0; s < steps; ++s) {
        xs.push_back(random_vector(static_cast<std::size_t>(batch) * in.size(), 80 + static_cast<std::uint64_t>(s)));
        std::vector<int> l(batch);
        for (int i = 0; i < batch; ++i) l[static_cast<std::size_t>(i)] = (3 * i + s) % 4;
        ls.push_back(l);
    }
    // One rank, the whole batch.
    weights<Net> w1 = w0;
    optimizer o1 = optimizer::rmsprop();
    moving_average e1{0.99};
    std::vector<step_result> want;
    {
        trainer<Net, backend::cuda> t{w1, {.precision = cuda::precision::fp32, .seed = 5}};
        for (int s = 0; s < steps; ++s) want.push_back(train_step(t, o1, ranges, xs[s], ls[s], r, 0.01, &e1));
        sync_host(t, o1, &e1);
    }
    // Two ranks, a half each, gradients in buckets of 50 floats (many, most started during backward).
    thread_pair pair;
    weights<Net> w2[2] = {w0, w0};
    optimizer o2[2] = {optimizer::rmsprop(), optimizer::rmsprop()};
    moving_average e2[2] = {moving_average{0.99}, moving_average{0.99}};
    std::vector<step_result> got[2];
    std::exception_ptr failed[2];
    bool uneven_refused[2] = {false, false};
    const auto rank = [&](int k) {
        try {
            thread_rank host{pair, k};
            cuda::staged_communicator comm{host};
            trainer<Net, backend::cuda> t{w2[k], {.precision = cuda::precision::fp32, .seed = 5, .comm = &comm, .sync_bn = true,
                                                  .bucket_bytes = 50 * sizeof(float)}};
            for (int s = 0; s < steps; ++s) {
                const std::span<const float> x{xs[s].data() + static_cast<std::size_t>(k * half) * in.size(),
                                               static_cast<std::size_t>(half) * in.size()};
                const std::span<const int> l{ls[s].data() + k * half, static_cast<std::size_t>(half)};
                got[k].push_back(train_step(t, o2[k], ranges, x, l, r, 0.01, &e2[k]));
            }
            sync_host(t, o2[k], &e2[k]);
            // forward() with sync BN refuses unequal shards on every rank, before any collective
            // of the pass (whose sizes depend on the batch).
            const std::span<const float> uneven{xs[0].data(), static_cast<std::size_t>(k == 0 ? 2 : 3) * in.size()};
            try {
                t.forward(uneven);
            } catch (const error& e) {
                uneven_refused[k] = std::string{e.what()}.find("differ in size") != std::string::npos;
            }
        } catch (...) {
            failed[k] = std::current_exception();
            pair.meet.arrive_and_drop();  // the other rank's collectives go on alone (and fail their checks), not hang
        }
    };
    std::thread other{rank, 1};
    rank(0);
    other.join();
    for (const std::exception_ptr& f : failed)
        if (f) std::rethrow_exception(f);
    CHECK(uneven_refused[0]);
    CHECK(uneven_refused[1]);
    constexpr double bound = 1e-5;
    for (int s = 0; s < steps; ++s) {
        INFO("step " << s);
        for (int k = 0; k < 2; ++k) {
            CHECK(got[k][s].loss == got[0][s].loss);  // the same scalars on every rank
            CHECK(got[k][s].grad_norm == got[0][s].grad_norm);
        }
        CHECK(std::fabs(got[0][s].loss - want[s].loss) <= bound * std::fabs(want[s].loss));
        CHECK(std::fabs(got[0][s].aux_loss - want[s].aux_loss) <= bound * std::fabs(want[s].aux_loss));
        CHECK(std::fabs(got[0][s].grad_norm - want[s].grad_norm) <= bound * want[s].grad_norm);
        CHECK(got[0][s].correct == want[s].correct);
    }
    // The replicas stay equal bit for bit, and equal to the one-rank run within float rounding
    // (parameters and running statistics, optimizer state, average), per tensor.
    CHECK(std::equal(w2[0].data().begin(), w2[0].data().end(), w2[1].data().begin()));
    const auto same = [&](std::span<const float> a, std::span<const float> b, const char* what) {
        const double whole = norm_meter(a, b).norm_want();
        for (const tensor_info& t : weights<Net>::tensors()) {
            const test::error_meter m = norm_meter(a.subspan(t.offset, t.count), b.subspan(t.offset, t.count));
            INFO(what << " " << t.name << ": " << m.norm_diff() << " of " << m.norm_want());
            CHECK(m.norm_diff() <= bound * std::max(m.norm_want(), 1e-2 * whole));
        }
    };
    same(w2[0].data(), w1.data(), "parameters");
    same(o2[0].momentum(), o1.momentum(), "momentum");
    same(o2[0].mean_square(), o1.mean_square(), "mean square");
    same(e2[0].shadow(), e1.shadow(), "moving average");
}

}  // namespace

TEST_CASE("cuda trainer: 2 ranks on one GPU (sync BN, staged transport) compute what 1 rank computes on the whole batch") {
    if (!gpu_here()) return;
    check_two_ranks<every_layer_no_dropout>();
    check_two_ranks<wide_bn>();  // batch norms over several blocks per channel
}

TEST_CASE("cuda trainer: a non-finite input throws before anything is updated; unsupported settings say so") {
    if (!gpu_here()) return;
    using Net = every_layer_logits;
    constexpr shape in = input_shape_v<Net>;
    weights<Net> w;
    init_seeded(w, 9, true);
    optimizer o = optimizer::rmsprop();
    trainer<Net, backend::cuda> t{w, {.precision = cuda::precision::fp32}};
    const std::span<const float> g0 = t.grads();  // zero until a backward pass adds into them, as on the CPU
    CHECK(std::all_of(g0.begin(), g0.end(), [](float v) { return v == 0.0F; }));
    const auto ranges = trainable_ranges<Net>();
    std::vector<float> x = random_vector(4 * in.size(), 80);
    x[5] = std::numeric_limits<float>::quiet_NaN();
    const std::vector<int> labels{0, 1, 2, 3};
    CHECK_THROWS_WITH_AS(train_step(t, o, ranges, x, labels, recipe{}, 0.01), doctest::Contains("non-finite"), ctnet::error);
    CHECK(o.steps() == 0);
    t.params_to_host();
    weights<Net> w0;
    init_seeded(w0, 9, true);
    for (const tensor_info& ti : weights<Net>::tensors())
        if (ti.trainable) CHECK(w.data()[ti.offset] == w0.data()[ti.offset]);
    x[5] = 0.5F;
    recipe by_value{};
    by_value.clip_value = 1.0;
    CHECK_THROWS_WITH_AS(train_step(t, o, ranges, x, labels, by_value, 0.01), doctest::Contains("clipping by value"), ctnet::error);
    CHECK_THROWS_WITH_AS((trainer<Net, backend::cuda>{w, {.precision = cuda::precision::fp16}}),
                         doctest::Contains("fp32, tf32 or bf16"), ctnet::error);
    CHECK_THROWS_WITH_AS((trainer<Net, backend::cuda>{w, {.precision = cuda::precision::bf16, .cudnn = false}}),
                         doctest::Contains("runs its convolutions on cuDNN"), ctnet::error);
    const std::vector<param_range> head_only{ranges.back()};  // frozen layers: not on the GPU yet
    CHECK_THROWS_WITH_AS(train_step(t, o, head_only, x, labels, recipe{}, 0.01), doctest::Contains("trainable"), ctnet::error);
    const std::vector<int> bad{0, 1, 2, 9};
    CHECK_THROWS_WITH_AS(train_step(t, o, ranges, x, bad, recipe{}, 0.01), doctest::Contains("label 9"), ctnet::error);
}
