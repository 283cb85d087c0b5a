// Data-parallel training over MPI (train/distributed.hpp, train/mpi.hpp), run by ctest as
// `mpirun -np 2`: parameters broadcast from rank 0; with sync batch norm, 2 ranks on the two
// halves of a global batch train exactly as 1 process on all of it (up to rounding); without it
// they measurably differ. Also, on one process: sync batch norm through single_process is the
// local path bit for bit, and data_parallel_step is train_step.
// Every collective runs on both ranks before any check, so a failed check cannot hang the job.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <ctnet/ctnet.hpp>
#include <ctnet/train/distributed.hpp>
#include <ctnet/train/mpi.hpp>
#include <ctnet/train/optim.hpp>
#include <ctnet/train/step.hpp>
#include <ctnet/cpu/trainer.hpp>

#include "check.hpp"

using namespace ctnet;

namespace {

mpi_communicator* world = nullptr;  // set by main

template <int Out, class... Opts>
struct cbr : seq<node<"conv", conv<Out, Opts...>>, node<"bn", batch_norm<>>, relu> {};

// No dropout (its masks are per rank): convs with and without bias, batch norm 2-D (stem, concat
// branches, aux head) and 1-D (after fc1), pools, a concat, an aux head; the output is logits.
// No bias that reaches a batch norm through linear ops only: its gradient is zero up to rounding,
// so its value would be rounding noise, not comparable between runs.
using small_net = network<shape{3, 9, 8},
    seq<node<"stem", seq<node<"conv", conv<5, k<3>, stride<2>, pad<1>>>, node<"bn", batch_norm<>>, relu>>,
        node<"mix", concat<seq<node<"a", conv<4, k<1>, bias<true>>>, relu>,
                           seq<node<"b1", cbr<3, k<1, 3>, pad<0, 1>>>, node<"b2", cbr<4, k<3, 1>, pad<1, 0>>>>,
                           max_pool<k<3>, stride<1>, pad<1>>>>,
        aux<"aux", seq<avg_pool<k<2>, stride<2>>, node<"c", cbr<3, k<1>>>, global_avg_pool, flatten,
                       node<"fc", linear<3, 4>>>>,
        node<"down", cbr<6, k<2>, stride<2>>>, global_avg_pool, flatten, node<"fc1", linear<6, 7, bias<false>>>,
        node<"bnf", batch_norm<>>, relu, node<"fc2", linear<7, 4>>>>;
static_assert(storage_in_op_order<small_net>());

constexpr int global_batch = 8;
constexpr int steps = 3;
constexpr std::size_t sample = input_shape_v<small_net>.size();

// ||got - want|| / ||want|| (2-norms), infinite on a NaN, an infinity or sizes that differ. Not
// test::norm_relative_error: its meter (floor 0) also turns every measure infinite where a single
// reference entry is exactly 0 and the result's is not, which a norm over a tensor must allow (a
// gradient of exactly 0 in one computation, 1e-12 in the other). The floor only enters elementwise().
template <class A, class B>
test::error_meter norm_meter(const A& got, const B& want) {
    return test::compare(got, want, std::numeric_limits<double>::min());
}

std::vector<float> random_vector(std::size_t n, std::uint64_t seed) {
    rng g{seed};
    std::vector<float> v(n);
    for (float& f : v) f = static_cast<float>(g.normal());
    return v;
}

// The global batch of a step, the same on every rank.
struct batch {
    std::vector<float> x;
    std::vector<int> labels;
};
batch global(int step) {
    batch b{random_vector(static_cast<std::size_t>(global_batch) * sample, 100 + static_cast<std::uint64_t>(step)), {}};
    for (int i = 0; i < global_batch; ++i) b.labels.push_back((i * 3 + step) % 4);
    return b;
}

const recipe paper{.label_smoothing = 0.1, .aux_weight = 0.4, .weight_decay = 4e-5, .clip_norm = 2.0};
optimizer make_optimizer() { return optimizer::rmsprop({.decay = 0.9, .momentum = 0.9, .eps = 1.0}); }

// 1 process, the whole batch: train_step from init_seeded(w, 1). The step results into `log`.
weights<small_net> train_whole(std::vector<step_result>& log) {
    weights<small_net> w;
    init_seeded(w, 1, true);
    trainer<small_net, backend::cpu> t{w};
    optimizer opt = make_optimizer();
    const auto ranges = trainable_ranges<small_net>();
    for (int s = 0; s < steps; ++s) {
        const batch b = global(s);
        log.push_back(train_step(t, opt, ranges, b.x, b.labels, paper, 0.05));
    }
    return w;
}

// Every rank on its shard. Rank r starts from init_seeded(w, 1 + r); the broadcast must make
// them all rank 0's. Returns the parameters, and through `start_diff` the largest difference
// from rank 0's initial weights right after the broadcast.
weights<small_net> train_shards(bool sync_bn, std::size_t bucket_bytes, double& start_diff,
                                std::vector<step_result>& log) {
    communicator& comm = *world;
    weights<small_net> w;
    init_seeded(w, 1 + static_cast<std::uint64_t>(comm.rank()), true);
    broadcast_parameters(comm, w);
    weights<small_net> w0;
    init_seeded(w0, 1, true);
    start_diff = test::max_abs_error(w.data(), w0.data());
    trainer<small_net, backend::cpu> t{w, {.threads = 2, .sync_bn = sync_bn ? &comm : nullptr}};
    optimizer opt = make_optimizer();
    const auto ranges = trainable_ranges<small_net>();
    const shard part = shard_of(global_batch, comm);
    for (int s = 0; s < steps; ++s) {
        const batch b = global(s);
        const std::span<const float> x{b.x.data() + part.begin * sample, part.count * sample};
        const std::span<const int> labels{b.labels.data() + part.begin, part.count};
        log.push_back(
            data_parallel_step(t, comm, opt, ranges, x, labels, paper, 0.05, nullptr, {.bucket_bytes = bucket_bytes}));
    }
    return w;
}

// The largest ||a - b|| / ||b|| over the tensors (parameters and running statistics); infinite
// where a value is not finite (tests/check.hpp).
double max_relative_difference(const weights<small_net>& a, const weights<small_net>& b, std::string& worst) {
    double most = 0.0;
    for (const tensor_info& t : weights<small_net>::tensors()) {
        const double rel = norm_meter(std::span<const float>{a.data().data() + t.offset, t.count},
                                      std::span<const float>{b.data().data() + t.offset, t.count})
                               .norm_relative();
        if (rel > most) {
            most = rel;
            worst = t.name;
        }
    }
    return most;
}

// Rank 0's parameters on every rank, to compare the replicas.
weights<small_net> rank0_copy(const weights<small_net>& w) {
    weights<small_net> c = w;
    world->broadcast(c.data(), 0);
    return c;
}

}  // namespace

TEST_CASE("distributed: 2 ranks with sync batch norm train as 1 process on the whole batch") {
    REQUIRE(world->size() == 2);
    double start_diff = 0.0;
    std::vector<step_result> log, whole_log;
    // 64-float buckets: several buckets, started during backward.
    const weights<small_net> w = train_shards(true, 64 * sizeof(float), start_diff, log);
    const weights<small_net> w_rank0 = rank0_copy(w);
    std::string worst, worst_replica;
    const double replicas = max_relative_difference(w, w_rank0, worst_replica);
    std::printf("rank %d: after broadcast, max |w - rank 0's init| = %g; replicas differ by %g\n", world->rank(),
                start_diff, replicas);
    CHECK(start_diff == 0.0);
    CHECK(replicas == 0.0);
    if (world->rank() == 0) {
        const weights<small_net> whole = train_whole(whole_log);
        const double rel = max_relative_difference(w, whole, worst);
        std::printf("sync batch norm, 2 ranks vs 1 process: max relative difference %.3g (%s)\n", rel, worst.c_str());
        CHECK(rel < 1e-5);
        // The steps' results too: the gradient norm (before clipping, which would hide a missing
        // average) is that of the whole batch's mean loss.
        for (int s = 0; s < steps; ++s) {
            const step_result& a = log[static_cast<std::size_t>(s)];
            const step_result& b = whole_log[static_cast<std::size_t>(s)];
            std::printf("step %d: loss %.7f / %.7f, grad norm %.7f / %.7f, correct %d / %d\n", s, a.loss, b.loss,
                        a.grad_norm, b.grad_norm, a.correct, b.correct);
            CHECK(std::fabs(a.loss - b.loss) <= 1e-5 * b.loss);
            CHECK(std::fabs(a.aux_loss - b.aux_loss) <= 1e-5 * b.aux_loss);
            CHECK(std::fabs(a.grad_norm - b.grad_norm) <= 1e-5 * b.grad_norm);
            CHECK(a.correct == b.correct);
        }
    }
}

TEST_CASE("distributed: without sync batch norm the ranks normalise with their own halves") {
    double start_diff = 0.0;
    std::vector<step_result> log, whole_log;
    const weights<small_net> w = train_shards(false, std::size_t{1} << 20, start_diff, log);
    if (world->rank() == 0) {
        std::string worst;
        const double rel = max_relative_difference(w, train_whole(whole_log), worst);
        std::printf("per-rank batch norm, 2 ranks vs 1 process: max relative difference %.3g (%s)\n", rel, worst.c_str());
        CHECK(rel > 1e-3);
    }
}

TEST_CASE("distributed: on one process, sync batch norm is the local path and data_parallel_step is train_step") {
    single_process one;
    weights<small_net> a, b, c;
    init_seeded(a, 3, true);
    b = a;
    c = a;
    trainer<small_net, backend::reference> ta{a}, tb{b, {.sync_bn = &one}};
    trainer<small_net, backend::cpu> tc{c, {.threads = 2, .sync_bn = &one}};
    optimizer oa = make_optimizer(), ob = make_optimizer(), oc = make_optimizer();
    const auto ranges = trainable_ranges<small_net>();
    for (int s = 0; s < steps; ++s) {
        const batch g = global(s);
        train_step(ta, oa, ranges, g.x, g.labels, paper, 0.05);
        data_parallel_step(tb, one, ob, ranges, g.x, g.labels, paper, 0.05);
        data_parallel_step(tc, one, oc, ranges, g.x, g.labels, paper, 0.05);
    }
    CHECK(std::equal(a.data().begin(), a.data().end(), b.data().begin()));
    std::string worst;
    const double rel = max_relative_difference(c, a, worst);
    INFO(worst);
    CHECK(rel < 1e-5);
}

// Rank 0 of a pretend pair whose other rank holds the same values: sums are doubles (exact in
// floating point), so data-parallel training must reproduce train_step bit for bit. Records, for
// each bucket, whether it started while backward was still running: `first_grad` is the
// gradient of op 0 (the stem conv), which backward writes last, so it is all zero (zero_grads)
// until the last op's backward has run. This watches the pass itself, not progress() (the
// reducer calls that after every op whether or not a bucket started): a reducer that started
// every bucket after backward would record none during it.
struct mirror_pair final : communicator {
    std::span<const float> first_grad;
    std::vector<bool> during_backward;  // per bucket started: op 0's gradient still all zero
    [[nodiscard]] int rank() const override { return 0; }
    [[nodiscard]] int size() const override { return 2; }
    void allreduce_sum(std::span<float> v) override {
        for (float& f : v) f *= 2.0F;
    }
    void allreduce_sum(std::span<double> v) override {
        for (double& d : v) d *= 2.0;
    }
    void broadcast(std::span<float>, int) override {}
    void start_allreduce_sum(std::span<float> v) override {
        during_backward.push_back(std::all_of(first_grad.begin(), first_grad.end(), [](float g) { return g == 0.0F; }));
        allreduce_sum(v);
    }
};

TEST_CASE("distributed: buckets start during backward, and the averaged update is train_step's") {
    mirror_pair pair;
    weights<small_net> a, b;
    init_seeded(a, 4, true);
    b = a;
    trainer<small_net, backend::reference> ta{a}, tb{b, {.sync_bn = &pair}};
    constexpr auto& program = small_net::program;
    static_assert(program.ops[0].kind == op_kind::conv && program.ops[0].param_offset == 0);
    pair.first_grad = tb.grads().subspan(0, program.ops[1].param_offset);
    optimizer oa = make_optimizer(), ob = make_optimizer();
    const auto ranges = trainable_ranges<small_net>();
    const batch g = global(0);
    const step_result sa = train_step(ta, oa, ranges, g.x, g.labels, paper, 0.05);
    constexpr std::size_t bucket = 32;
    const step_result sb = data_parallel_step(tb, pair, ob, ranges, g.x, g.labels, paper, 0.05, nullptr,
                                              {.bucket_bytes = bucket * sizeof(float)});
    // Trainable parameters (the running variances differ: unbiased with the pair's count 2m).
    for (const param_range& r : ranges)
        CHECK(std::equal(a.data().begin() + r.offset, a.data().begin() + r.offset + r.count, b.data().begin() + r.offset));
    CHECK(sa.loss == sb.loss);
    CHECK(sb.correct == 2 * sa.correct);  // the pretend pair's two identical shards
    const std::size_t buckets = (program.storage + bucket - 1) / bucket;
    CHECK(pair.during_backward.size() == buckets);
    CHECK(std::any_of(pair.first_grad.begin(), pair.first_grad.end(), [](float v) { return v != 0.0F; }));
    // Buckets are cut from the end of the storage; once op 1's backward has run, the gradients
    // from ops[1].param_offset on are final, so every bucket starting there or later must have
    // been started before op 0's backward: all but those overlapping op 0's parameters.
    std::size_t expected = 0;
    for (std::size_t end = program.storage; end >= bucket && end - bucket >= program.ops[1].param_offset; end -= bucket)
        ++expected;
    REQUIRE(expected > 0);  // buckets lie wholly after op 0's parameters: there is overlap to measure
    const auto during = static_cast<std::size_t>(std::count(pair.during_backward.begin(), pair.during_backward.end(), true));
    std::printf("%zu buckets of %zu floats; %zu started during backward (expected %zu)\n", buckets, bucket, during,
                expected);
    CHECK(during == expected);
    // Started from the end: the ones during backward come first.
    CHECK(std::is_sorted(pair.during_backward.begin(), pair.during_backward.end(), std::greater<>{}));
}

TEST_CASE("distributed: shards must be equal") {
    CHECK(shard_of(8, 1, 2).begin == 4);
    CHECK(shard_of(8, 1, 2).count == 4);
    CHECK_THROWS_WITH_AS(shard_of(8, 0, 3), doctest::Contains("world size 3 does not divide the batch 8"), error);
}

int main(int argc, char** argv) {
    mpi_session mpi{argc, argv};
    mpi_communicator comm;
    world = &comm;
    doctest::Context context{argc, argv};
    const int failed = context.run();
    // Every rank's verdict: the job fails when any rank's checks did.
    std::vector<double> f{failed ? 1.0 : 0.0};
    comm.allreduce_sum(f);
    return f[0] > 0.0 ? 1 : 0;
}
