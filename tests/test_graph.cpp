// Composition: shapes through seq / concat / node / aux, parameter names, concat without
// copies, the static memory plan, and the compile-time diagnostics (evaluated as constants
// here; the compile_fail tests prove they stop a build).
#include <doctest/doctest.h>

#include <algorithm>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ctnet/ctnet.hpp>
#include <ctnet/graph/graphviz.hpp>
#include <ctnet/train/buckets.hpp>

#include <sstream>

using namespace ctnet;

namespace {

// A small Inception-style block: 1x1 conv, pooled branch, and a factorized 1x3 / 3x1 pair.
using mini_body =
    seq<node<"stem", seq<node<"conv", conv<4, k<3>, pad<1>>>, node<"bn", batch_norm<>>, relu>>,
        node<"mixed", concat<node<"b1", conv<3, k<1>>>, seq<avg_pool<k<3>, stride<1>, pad<1>>, node<"b2", conv<2, k<1>>>>,
                             seq<node<"b3_1", conv<2, k<1, 3>, pad<0, 1>>>, node<"b3_2", conv<5, k<3, 1>, pad<1, 0>>>>>>,
        aux<"head", seq<global_avg_pool, flatten, node<"fc", linear<10, 3>>>>, node<"pool", max_pool<k<2>>>,
        global_avg_pool, flatten, node<"fc", linear<10, 2>>>;
using mini = network<shape{2, 6, 6}, mini_body>;

}  // namespace

TEST_CASE("shapes, parameter counts and MACs of a small graph, by hand") {
    static_assert(output_shape_v<mini> == shape{2});
    // stem conv 4*2*9 = 72, bn 8; b1 3*4 = 12; b2 2*4 = 8; b3_1 2*4*3 = 24; b3_2 5*2*3 = 30;
    // head fc 10*3 + 3 = 33; fc 10*2 + 2 = 22
    CHECK(param_count_v<mini> == 72 + 8 + 12 + 8 + 24 + 30 + 33 + 22);
    CHECK(storage_count_v<mini> == param_count_v<mini> + 8);  // running mean and var of 4 channels
    // MACs: stem 4*36*18 = 2592; b1 3*36*4 = 432; b2 2*36*4 = 288; b3_1 2*36*12 = 864; b3_2 5*36*6 = 1080;
    // fc 20; head fc 30 (training only)
    CHECK(macs_v<mini> == 2592 + 432 + 288 + 864 + 1080 + 20);
    CHECK(train_macs_v<mini> == macs_v<mini> + 30);
    constexpr auto& p = mini::program;
    CHECK(p.blocks[1].name.view() == "mixed");
    CHECK(p.blocks[1].out.s == shape{10, 6, 6});
    CHECK(p.blocks[2].train_only);
    CHECK(p.aux.s == shape{3});
}

TEST_CASE("parameter tensors carry torchvision-style dotted names in order") {
    std::vector<std::string> names;
    for (const tensor_info& t : weights<mini>::tensors()) names.push_back(t.name);
    const std::vector<std::string> want = {
        "stem.conv.weight", "stem.bn.weight", "stem.bn.bias", "stem.bn.running_mean", "stem.bn.running_var",
        "mixed.b1.weight",  "mixed.b2.weight", "mixed.b3_1.weight", "mixed.b3_2.weight", "head.fc.weight",
        "head.fc.bias",     "fc.weight",       "fc.bias"};
    CHECK(names == want);
    CHECK(weights<mini>::info("mixed.b3_2.weight").dims == std::vector<int>{5, 2, 3, 1});
    CHECK_THROWS_WITH_AS(static_cast<void>(weights<mini>::info("mixed.b4.weight")), doctest::Contains("mixed.b4.weight"), error);
}

TEST_CASE("concat: every branch writes its own channel slice of one buffer, no copy") {
    constexpr auto& p = mini::program;
    const block& mixed = p.blocks[1];
    int writers = 0;
    int expected_offset[] = {0, 3 * 36, 5 * 36};
    for (int i = mixed.first_op; i < mixed.end_op; ++i) {
        const op& o = p.ops[i];
        if (o.out.buf != mixed.out.buf) continue;
        CHECK(o.kind == op_kind::conv);  // only the last conv of each branch, straight into the slice
        CHECK(o.out.offset == expected_offset[writers]);
        ++writers;
    }
    CHECK(writers == 3);

    // And the numbers: the concat output equals each branch run as a network of its own.
    weights<mini> w;
    init_seeded(w, 3, true);
    runner<mini> r{w, {.keep_activations = true}};
    std::vector<float> x(2 * 6 * 6);
    rng g{11};
    for (float& v : x) v = static_cast<float>(g.normal());
    static_cast<void>(r(x));
    const std::vector<float> stem = r.block_output("stem"), mixed_out = r.block_output("mixed");

    using b3 = network<shape{4, 6, 6}, seq<node<"b3_1", conv<2, k<1, 3>, pad<0, 1>>>, node<"b3_2", conv<5, k<3, 1>, pad<1, 0>>>>>;
    weights<b3> wb;
    std::ranges::copy(w["mixed.b3_1.weight"], wb["b3_1.weight"].begin());
    std::ranges::copy(w["mixed.b3_2.weight"], wb["b3_2.weight"].begin());
    runner<b3> rb{wb};
    const std::vector<float> y3 = rb(stem);
    for (std::size_t j = 0; j < y3.size(); ++j) CHECK(mixed_out[5 * 36 + j] == y3[j]);
}

TEST_CASE("aux tap: runs in training mode only, its output is the head's") {
    weights<mini> w;
    init_seeded(w, 5, true);
    runner<mini> r{w};
    std::vector<float> x(3 * 2 * 6 * 6);
    rng g{2};
    for (float& v : x) v = static_cast<float>(g.normal());
    std::vector<float> y(3 * 2), aux(3 * 3);
    r.forward(x, y, mode::train, aux);

    // The head by hand, on the "mixed" output of the same training-mode pass (batch statistics),
    // read from a second runner that keeps its activations: global average over the 6x6 map of
    // each of the 10 channels, then head.fc (3 x 10, torch layout) plus its bias.
    runner<mini> kept{w, {.keep_activations = true}};
    std::vector<float> y_kept(3 * 2);
    kept.forward(x, y_kept, mode::train);
    const std::vector<float> mixed = kept.block_output("mixed");
    REQUIRE(mixed.size() == 3 * 10 * 36);
    const std::span<const float> fc_w = w["head.fc.weight"], fc_b = w["head.fc.bias"];
    for (int n = 0; n < 3; ++n)
        for (int o = 0; o < 3; ++o) {
            double want = fc_b[o];
            for (int c = 0; c < 10; ++c) {
                double mean = 0;
                for (int j = 0; j < 36; ++j) mean += mixed[(n * 10 + c) * 36 + j];
                want += fc_w[o * 10 + c] * (mean / 36);
            }
            CAPTURE(n);
            CAPTURE(o);
            CHECK(aux[n * 3 + o] == doctest::Approx(want).epsilon(1e-5));
        }
    CHECK(y == y_kept);  // the main output does not depend on how buffers are planned
    CHECK_THROWS_WITH_AS(r.forward(x, y, mode::eval, aux), doctest::Contains("only in training mode"), error);
    std::vector<float> wrong(5);
    CHECK_THROWS_WITH_AS(r.forward(x, wrong), doctest::Contains("expected 6"), error);
    CHECK_THROWS_WITH_AS(static_cast<void>(r(std::vector<float>(71))), doctest::Contains("72"), error);
}

TEST_CASE("memory plan: buffers alive at the same time never share arena space") {
    auto check_plan = [](const auto& p) {
        int pairs = 0;
        for (int a = 0; a < p.n_bufs; ++a)
            for (int b = a + 1; b < p.n_bufs; ++b) {
                const buffer &x = p.bufs[a], &y = p.bufs[b];
                if (x.input || y.input) continue;
                const bool same_time = x.first <= y.last && y.first <= x.last;
                const bool same_space = x.offset < y.offset + y.s.size() && y.offset < x.offset + x.s.size();
                CHECK_FALSE((same_time && same_space));
                ++pairs;
            }
        for (int a = 0; a < p.n_bufs; ++a)
            if (!p.bufs[a].input) CHECK(p.bufs[a].offset + p.bufs[a].s.size() <= p.arena);
        return pairs;
    };
    CHECK(check_plan(mini::program) > 0);
    CHECK(check_plan(models::inception_v3<>::program) > 1000);
    CHECK(activation_bytes_v<models::inception_v3<>> < unplanned_activation_bytes_v<models::inception_v3<>> / 4);
}

namespace {

// A lowered program is a constant: take the message out as a fixed array for run-time checks.
template <class Body, shape In>
std::string message() {
    constexpr auto p = detail::lower_network<Body, In>();
    return std::string{p.error.view()};
}

}  // namespace

TEST_CASE("diagnostics name the layer and both shapes") {
    using spatial = concat<node<"left", conv<4, k<3>, stride<2>>>, node<"right", conv<4, k<1>>>>;
    const std::string m1 = message<node<"Mixed_9z", spatial>, shape{3, 9, 9}>();
    CHECK(m1 == "layer Mixed_9z (concat): branch 2 [right] outputs (4,9,9) but branch 1 [left] outputs (4,4,4); "
                "spatial sizes must agree");

    const std::string m2 = message<node<"big", conv<1, k<5>>>, shape{1, 3, 4}>();
    CHECK(m2 == "layer big (conv): kernel 5x5 is larger than the padded input 3x4 (input (1,3,4))");

    const std::string m3 = message<seq<flatten, node<"fc", linear<10, 2>>>, shape{2, 2, 2}>();
    CHECK(m3 == "layer fc (linear): expects (10,) but got (8,)");

    const std::string m4 = message<node<"fc", linear<8, 2>>, shape{2, 2, 2}>();
    CHECK(m4 == "layer fc (linear): expects a flat input (8,) but got (2,2,2); insert flatten first");

    const std::string m5 = message<seq<node<"a", conv<1>>, node<"a", conv<1>>>, shape{1, 2, 2}>();
    CHECK(m5.find("layer a (conv): this path already names the parameters of a conv") == 0);

    const std::string m6 = message<seq<require_input<"toy", 3, 8, 8>, relu>, shape{3, 7, 9}>();
    CHECK(m6 == "layer <input> (input): toy needs an input of 3 channels and at least 8x8 but got (3,7,9)");

    CHECK(message<mini_body, shape{2, 6, 6}>().empty());
    static_assert(detail::lower_network<mini_body, shape{2, 6, 6}>().ok());
    static_assert(!detail::lower_network<mini_body, shape{2, 1, 1}>().ok());
}

TEST_CASE("graphviz: blocks as nodes, edges carry the shapes that flow") {
    std::ostringstream os;
    write_dot<mini>(os, "mini");
    const std::string dot = os.str();
    constexpr int gap = 11;  // the unnamed global_avg_pool after "pool": stem 3 ops, mixed 5, head 2, pool 1
    static_assert(mini::program.ops[gap].kind == op_kind::global_avg_pool && !mini::program.ops[gap].train_only);
    const std::string edges[] = {
        R"x(input -> b0 [label="(2,6,6)"];)x",  R"x(b0 -> b1 [label="(4,6,6)"];)x",
        R"x(b1 -> b2 [label="(10,6,6)", style=dashed];)x", R"x(b1 -> b3 [label="(10,6,6)"];)x",
        R"x(b3 -> op11 [label="(10,3,3)"];)x",  R"x(op11 -> b4 [label="(10,)"];)x",
        R"x(b4 -> output [label="(2,)"];)x",   R"x(b2 -> aux_output [label="(3,)"];)x",
    };
    for (const std::string& e : edges) {
        INFO(e);
        CHECK(dot.find(e) != std::string::npos);
    }
    std::size_t arrows = 0;
    for (std::size_t at = dot.find("->"); at != std::string::npos; at = dot.find("->", at + 2)) ++arrows;
    CHECK(arrows == std::size(edges));
    CHECK(dot.find(R"x(b1 [label="mixed\n(10,6,6)"];)x") != std::string::npos);

    // Expanding "mixed": its three branch-final convs each feed the pool and the head with their slice.
    std::ostringstream ex;
    write_dot<mini>(ex, "mini", {.expanded = {"mixed"}});
    const std::string e2 = ex.str();
    CHECK(e2.find("subgraph cluster_1") != std::string::npos);
    CHECK(e2.find(R"x(label="(3,6,6)"];)x") != std::string::npos);  // b1 slice
    CHECK(e2.find(R"x(label="(2,6,6)"];)x") != std::string::npos);  // b2 slice
    CHECK(e2.find(R"x(label="(5,6,6)"];)x") != std::string::npos);  // b3_2 slice
}

// ---- Gradient buckets (train/buckets.hpp): the cut shared by the CPU reducer and the GPU trainer.
namespace {
struct fake_op {
    std::size_t param_offset = 0, storage = 0;
};
struct fake_program {
    std::size_t storage = 0;
    int n_ops = 0;
    std::vector<fake_op> ops;
};
std::vector<std::size_t> begins(const std::vector<grad_bucket>& plan) {
    std::vector<std::size_t> b;
    for (const grad_bucket& x : plan) b.push_back(x.begin);
    return b;
}
std::vector<int> afters(const std::vector<grad_bucket>& plan) {
    std::vector<int> a;
    for (const grad_bucket& x : plan) a.push_back(x.after_op);
    return a;
}
}  // namespace

TEST_CASE("gradient buckets: cut from the end, each started after the last op to finish it (hand-computed)") {
    // op0 [0,10), op1 no parameters, op2 [10,25), op3 [25,30); buckets of 8 from the end:
    // [22,30) op2+op3 -> after op 2; [14,22) op2 -> 2; [6,14) op0+op2 -> 0; [0,6) op0 -> 0.
    const fake_program p{30, 4, {{0, 10}, {10, 0}, {10, 15}, {25, 5}}};
    const std::vector<grad_bucket> plan = bucket_plan(p, 8);
    CHECK(begins(plan) == std::vector<std::size_t>{22, 14, 6, 0});
    CHECK(afters(plan) == std::vector<int>{2, 2, 0, 0});
    CHECK(plan.back().count == 6);
    // Storage not in op order: op0 [20,30), op1 [0,20); buckets of 10: [20,30) -> 0, [10,20) -> 1,
    // [0,10) -> 1; started after_op descending, so the two of op 1 go first.
    const fake_program q{30, 2, {{20, 10}, {0, 20}}};
    const std::vector<grad_bucket> plan2 = bucket_plan(q, 10);
    CHECK(begins(plan2) == std::vector<std::size_t>{10, 0, 20});
    CHECK(afters(plan2) == std::vector<int>{1, 1, 0});
    // The cursor hands them out as backward passes the ops (last to first), the rest at the end.
    bucket_cursor cur{plan};
    std::vector<std::size_t> started;
    const auto start = [&](const grad_bucket& b) { started.push_back(b.begin); };
    cur.after(3, start);
    CHECK(started.empty());
    cur.after(2, start);
    CHECK(started == std::vector<std::size_t>{22, 14});
    cur.after(1, start);
    CHECK(started.size() == 2);
    cur.rest(start);
    CHECK(started == std::vector<std::size_t>{22, 14, 6, 0});
    CHECK(bucket_plan(p, 0).size() == 30);  // 0 floats is taken as 1
}

TEST_CASE("gradient buckets: Inception v3's plan tiles its storage and starts no bucket before it is final") {
    using v3 = models::inception_v3<>;
    constexpr auto& p = v3::program;
    for (const std::size_t size : {std::size_t{1} << 18, std::size_t{25} << 18, std::size_t{1} << 30}) {  // 1 MiB, 25 MiB, 4 GiB
        const std::vector<grad_bucket> plan = bucket_plan<v3>(size);
        CHECK(plan.size() == (p.storage + size - 1) / size);
        std::vector<grad_bucket> by_offset = plan;
        std::sort(by_offset.begin(), by_offset.end(), [](const grad_bucket& a, const grad_bucket& b) { return a.begin < b.begin; });
        std::size_t at = 0;
        for (const grad_bucket& b : by_offset) {
            CHECK(b.begin == at);
            CHECK(b.count > 0);
            CHECK(b.count <= size);
            if (b.begin > 0) CHECK(b.count == size);  // only the bucket at offset 0 is short
            at += b.count;
        }
        CHECK(at == p.storage);
        for (std::size_t k = 0; k < plan.size(); ++k) {
            // Every op overlapping the bucket runs its backward no later than after_op's (index
            // >= after_op), and one of them is after_op itself: started as early as it can be.
            const grad_bucket& b = plan[k];
            bool exact = false;
            for (int i = 0; i < p.n_ops; ++i) {
                const op& o = p.ops[i];
                if (o.storage == 0 || o.param_offset >= b.begin + b.count || o.param_offset + o.storage <= b.begin) continue;
                CHECK(i >= b.after_op);
                exact = exact || i == b.after_op;
            }
            CHECK(exact);
            if (k > 0) CHECK(plan[k - 1].after_op >= b.after_op);  // start order
        }
    }
    // At 1 MiB every bucket but those touching the stem's first conv (op 0) starts while backward
    // still runs.
    static_assert(p.ops[0].kind == op_kind::conv && p.ops[0].param_offset == 0);
    const std::vector<grad_bucket> plan = bucket_plan<v3>(std::size_t{1} << 18);
    const auto early = std::count_if(plan.begin(), plan.end(), [](const grad_bucket& b) { return b.after_op > 0; });
    const auto clear = std::count_if(plan.begin(), plan.end(), [&](const grad_bucket& b) { return b.begin >= p.ops[0].storage; });
    CHECK(early == clear);
    CHECK(early + 1 == static_cast<std::ptrdiff_t>(plan.size()));  // op 0 is 864 floats: one bucket holds it
}
