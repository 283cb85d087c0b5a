// tests/check.hpp — the one way the tests measure how far a result is from its reference.
//
//   const double e = test::relative_error(got, want);       // max |got - want| / max |want|
//   CHECK(e <= 1e-5);
//   test::error_meter m;  m.add(got, want);  ...  m.norm_relative();   // for other layouts
//
// std::max(d, NaN) returns d, so a hand-written loop of std::max drops a NaN and an all-NaN
// result scores 0. Here any non-finite value on either side, or sizes that differ, makes every
// measure infinite, so a check of the form `error <= bound` fails. A reference of all zeros
// gives 0 when the result is all zeros too, infinity otherwise; elementwise() with floor 0 is
// infinite when a result differs from a reference value of exactly 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <ranges>
#include <span>
#include <vector>

namespace ctnet::test {

class error_meter {
public:
    // floor: the denominator's floor of elementwise(), max |got - want| / (floor + |want|).
    explicit error_meter(double floor = 0.0) : floor_{floor} {}

    void add(double got, double want) {
        if (!std::isfinite(got) || !std::isfinite(want)) {
            bad_ = true;
            return;
        }
        const double d = std::fabs(got - want);
        diff_ = std::max(diff_, d);
        scale_ = std::max(scale_, std::fabs(want));
        e2_ += d * d;
        n2_ += want * want;
        if (floor_ + std::fabs(want) > 0.0) elem_ = std::max(elem_, d / (floor_ + std::fabs(want)));
        else if (d > 0.0) elem_ = inf;  // only this measure: a zero reference value is no error elsewhere
        ++count_;
    }
    template <std::ranges::sized_range A, std::ranges::sized_range B>
    void add(const A& got, const B& want) {
        if (std::size(got) != std::size(want)) {
            bad_ = true;
            return;
        }
        auto w = std::begin(want);
        for (auto g = std::begin(got); g != std::end(got); ++g, ++w) add(static_cast<double>(*g), static_cast<double>(*w));
    }
    // Marks the comparison failed (e.g. a size that differs, found by the caller).
    void fail() { bad_ = true; }

    [[nodiscard]] std::size_t count() const { return count_; }
    [[nodiscard]] bool finite() const { return !bad_; }
    // max |got - want|
    [[nodiscard]] double max_abs() const { return bad_ ? inf : diff_; }
    // max |got - want| / max |want|
    [[nodiscard]] double max_relative() const { return bad_ ? inf : ratio(diff_, scale_); }
    // ||got - want|| / ||want|| (2-norms)
    [[nodiscard]] double norm_relative() const { return bad_ ? inf : ratio(std::sqrt(e2_), std::sqrt(n2_)); }
    // ||got - want||, ||want||
    [[nodiscard]] double norm_diff() const { return bad_ ? inf : std::sqrt(e2_); }
    [[nodiscard]] double norm_want() const { return std::sqrt(n2_); }
    // max |got - want| / (floor + |want|)
    [[nodiscard]] double elementwise() const { return bad_ ? inf : elem_; }

private:
    static constexpr double inf = std::numeric_limits<double>::infinity();
    static double ratio(double d, double s) { return s > 0.0 ? d / s : d == 0.0 ? 0.0 : inf; }
    double floor_;
    double diff_ = 0.0, scale_ = 0.0, e2_ = 0.0, n2_ = 0.0, elem_ = 0.0;
    std::size_t count_ = 0;
    bool bad_ = false;
};

template <class A, class B>
error_meter compare(const A& got, const B& want, double floor = 0.0) {
    error_meter m{floor};
    m.add(got, want);
    return m;
}

// max |got - want| / max |want|; infinite on a size mismatch or any non-finite value.
template <class A, class B>
double relative_error(const A& got, const B& want) {
    return compare(got, want).max_relative();
}

// ||got - want|| / ||want||; infinite on a size mismatch or any non-finite value.
template <class A, class B>
double norm_relative_error(const A& got, const B& want) {
    return compare(got, want).norm_relative();
}

// max |got - want|; infinite on a size mismatch or any non-finite value.
template <class A, class B>
double max_abs_error(const A& got, const B& want) {
    return compare(got, want).max_abs();
}

}  // namespace ctnet::test
