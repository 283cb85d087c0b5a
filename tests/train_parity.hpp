// Two Inception v3 training steps against torch autograd (tools/train_reference.py's files in
// a directory), for any trainer: tests/test_train_parity.cpp runs it on backend::cpu,
// tests/test_cuda_train_parity.cpp on backend::cuda. What is compared and why the bounds are
// what they are: tests/test_train_parity.cpp's header.
//
//   test::check_train_parity(dir, [](weights<net>& w, std::uint64_t seed) {
//       return std::make_unique<trainer<net, backend::cpu>>(w, {.seed = seed}); }, {});
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <ctnet/ctnet.hpp>
#include <ctnet/io/npy.hpp>
#include <ctnet/io/safetensors.hpp>
#include <ctnet/models/inception_v3.hpp>
#include <ctnet/train/step.hpp>

#include "check.hpp"

namespace ctnet::test {

// ||got - want|| / ||want|| (2-norms), infinite on a NaN, an infinity or sizes that differ. Not
// norm_relative_error: its meter (floor 0) also turns every measure infinite where a single
// reference entry is exactly 0 and the result's is not, which a norm over a tensor must allow (a
// gradient of exactly 0 in one computation, 1e-12 in the other). The floor only enters elementwise().
template <class A, class B>
error_meter parity_meter(const A& got, const B& want) {
    return compare(got, want, std::numeric_limits<double>::min());
}
template <class A>
double parity_error(const A& got, std::span<const float> want) {
    return parity_meter(got, want).norm_relative();
}

// Per tensor: ||ctnet - float64|| / ||float64|| against torch float32's own such error; the
// check (where `per_tensor`) is error <= max(floor, 4 x float32's). Keeps the worst tensors and the
// whole's errors.
struct parity_tally {
    parity_tally(std::string w, std::string who_, bool each, double floor_)
        : what{std::move(w)}, who{std::move(who_)}, per_tensor{each}, floor{floor_} {}
    std::string what, who;
    bool per_tensor;
    double floor;
    int tensors = 0, within_1e3 = 0;
    double worst = 0.0, worst_ratio = 0.0;
    std::string worst_name, worst_ratio_name;
    error_meter whole{std::numeric_limits<double>::min()}, whole32{std::numeric_limits<double>::min()};

    template <class A>
    void check(const std::string& name, const A& got, std::span<const float> torch32, std::span<const float> want) {
        const double e = parity_error(got, want), e32 = parity_error(torch32, want);
        INFO(what << ", " << name << ": error " << e << ", torch float32's " << e32);
        if (per_tensor) CHECK(e <= std::max(floor, 4.0 * e32));
        whole.add(got, want);
        whole32.add(torch32, want);
        ++tensors;
        if (e <= 1e-3) ++within_1e3;
        if (!(e <= worst)) worst = e, worst_name = name;  // keeps a NaN
        const double ratio = e / std::max(e32, 1e-7);
        if (!(ratio <= worst_ratio)) worst_ratio = ratio, worst_ratio_name = name;
    }
    void report() const {
        std::printf("train parity (%s): %s within 1e-3 of float64: %d of %d tensors; largest error %.3g (%s); largest "
                    "ratio to torch float32's error %.3g (%s); whole: ctnet %.3g from float64, torch float32 %.3g\n",
                    who.c_str(), what.c_str(), within_1e3, tensors, worst, worst_name.c_str(), worst_ratio,
                    worst_ratio_name.c_str(), whole.norm_relative(), whole32.norm_relative());
    }
};

struct parity_bounds {
    std::string who = "cpu";         // names the run in the printed lines
    bool per_tensor = true;          // the first step's gradients and the change, tensor by tensor
    double whole = 1.5;              // each whole (gradient, change) within this x torch float32's error
    double grad_norm_floor = 1e-3;   // the gradient norm within this (relative) or 4x torch float32's error
    double change_floor = 2e-2;      // the floor of each tensor's change
};

namespace detail {

template <class Make, class W, class T>
void run_train_parity(const std::string& dir, Make make, const parity_bounds& b, W& w, T& t) {
    using net = models::inception_v3<>;
    std::ifstream meta_file{dir + "/loss.json"};
    REQUIRE_MESSAGE(meta_file, "no " << dir << "/loss.json: run tools/train_reference.py " << dir << " first");
    const nlohmann::json meta = nlohmann::json::parse(meta_file);
    io::load_safetensors(dir + "/weights.safetensors", *w);
    const std::vector<float> before(w->data().begin(), w->data().end());
    const nlohmann::json& o = meta["optimizer"];
    const std::vector<double> lrs = o["lr"].get<std::vector<double>>();
    const std::size_t steps = lrs.size();
    REQUIRE(steps == 2);
    REQUIRE(meta["steps"].size() == steps);
    REQUIRE(meta["float32"].size() == steps);
    const auto batch = meta["batch"].get<std::size_t>();
    const std::size_t sample = input_shape_v<net>.size();
    const io::npy_array x = io::read_npy(dir + "/input.npy");
    const io::npy_array labels_f = io::read_npy(dir + "/labels.npy");
    REQUIRE(x.data.size() == steps * batch * sample);
    REQUIRE(labels_f.data.size() == steps * batch);
    std::vector<int> labels;
    for (float v : labels_f.data) labels.push_back(static_cast<int>(v));

    // One trainer and one generator for both steps: the second forward pass draws the next
    // batch * 2048 dropout values, as the script's second mask.
    t = make(*w, meta["seed"].get<std::uint64_t>());
    optimizer opt = optimizer::rmsprop({.decay = o["alpha"].get<double>(),
                                        .momentum = o["momentum"].get<double>(),
                                        .eps = o["eps"].get<double>(),
                                        .style = rmsprop_style::pytorch});
    recipe r{};
    r.weight_decay = o["weight_decay"].get<double>();
    const auto ranges = trainable_ranges<net>();
    std::vector<float> want, torch32;
    for (std::size_t k = 0; k < steps; ++k) {
        const std::span<const float> xs{x.data.data() + k * batch * sample, batch * sample};
        const std::span<const int> ls{labels.data() + k * batch, batch};
        const step_result s = train_step(*t, opt, ranges, xs, ls, r, lrs[k]);
        const nlohmann::json& want64 = meta["steps"][k];
        const nlohmann::json& want32 = meta["float32"][k];
        std::printf("train parity (%s): step %zu (lr %g): loss %.6f (torch float64 %.6f), grad norm %.4f (torch float64 "
                    "%.4f, float32 %.4f)\n",
                    b.who.c_str(), k + 1, lrs[k], s.loss, want64["loss"].get<double>(), s.grad_norm,
                    want64["grad_norm"].get<double>(), want32["grad_norm"].get<double>());
        INFO(b.who << ", step " << k + 1);
        // Each within its floor or 4 times torch float32's own error, where that is larger.
        auto close = [&](const char* key, double got, double floor) {
            const double exact = want64[key].get<double>();
            const double own = std::fabs(want32[key].get<double>() - exact);
            INFO(key << ": ctnet " << got << ", torch float64 " << exact << ", float32 " << want32[key].get<double>());
            CHECK(std::fabs(got - exact) <= std::max(floor * std::fabs(exact), 4.0 * own));
        };
        close("loss", s.loss, 2e-5);
        close("main", s.main_loss, 1e-5);
        close("aux", s.aux_loss, 1e-5);
        close("grad_norm", s.grad_norm, b.grad_norm_floor);

        // This step's gradients (after clipping), every trainable tensor.
        const std::string step = std::to_string(k + 1);
        const io::safetensors_file grads64{dir + "/grads64_" + step + ".safetensors"};
        const io::safetensors_file grads32{dir + "/grads32_" + step + ".safetensors"};
        // Per tensor on the first step; the second step's run the same code on another batch at
        // the same point, and reach the check through the change below (and the whole here).
        parity_tally g{"step " + step + "'s gradients", b.who, k == 0 && b.per_tensor, 1e-3};
        const std::span<const float> grads = t->grads();  // a device trainer copies them to the host
        for (const tensor_info& ti : w->tensors()) {
            if (!ti.trainable) continue;
            want.assign(ti.count, 0.0F);
            torch32.assign(ti.count, 0.0F);
            grads64.read_f32(ti.name, want.data());
            grads32.read_f32(ti.name, torch32.data());
            g.check(ti.name, grads.subspan(ti.offset, ti.count), torch32, want);
        }
        g.report();
        CHECK(g.whole.norm_relative() <= b.whole * g.whole32.norm_relative());
    }
    sync_host(*t, opt, nullptr);  // a device trainer's parameters and running statistics into *w

    // The change over the two steps, after - before, of every parameter and running statistic.
    const io::safetensors_file change64{dir + "/change64.safetensors"};
    const io::safetensors_file change32{dir + "/change32.safetensors"};
    parity_tally params{"the parameters' change over both steps", b.who, b.per_tensor, b.change_floor};
    parity_tally stats{"the running statistics' change", b.who, true, b.change_floor};
    std::vector<double> changed;
    for (const tensor_info& ti : w->tensors()) {
        changed.resize(ti.count);
        for (std::size_t j = 0; j < ti.count; ++j)
            changed[j] = static_cast<double>(w->data()[ti.offset + j]) - before[ti.offset + j];
        want.assign(ti.count, 0.0F);
        torch32.assign(ti.count, 0.0F);
        change64.read_f32(ti.name, want.data());
        change32.read_f32(ti.name, torch32.data());
        (ti.trainable ? params : stats).check(ti.name, changed, torch32, want);
    }
    params.report();
    stats.report();
    CHECK(params.whole.norm_relative() <= b.whole * params.whole32.norm_relative());
}

}  // namespace detail

// make(weights&, seed) -> a unique_ptr to a trainer of models::inception_v3<> on w, its dropout
// generator seeded with seed. Returns the weights and that trainer after the steps (the trainer
// refers to the weights).
template <class Make>
auto check_train_parity(const std::string& dir, Make make, const parity_bounds& b) {
    using net = models::inception_v3<>;
    std::unique_ptr<weights<net>> w = std::make_unique<weights<net>>();
    decltype(make(*w, std::uint64_t{})) t;
    detail::run_train_parity(dir, make, b, w, t);
    return std::pair{std::move(w), std::move(t)};
}

}  // namespace ctnet::test
