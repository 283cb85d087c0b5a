// tests/check.hpp, the comparison every test uses: values worked by hand, and the failures it
// exists to catch (a NaN or an infinity on either side, an all-NaN result, sizes that differ).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "check.hpp"

using namespace ctnet;

TEST_CASE("check: relative, norm and elementwise errors worked by hand") {
    const std::vector<float> want = {1.0F, -4.0F, 2.0F}, got = {1.5F, -4.0F, 1.0F};
    const test::error_meter m = test::compare(got, want, 1.0);
    CHECK(m.count() == 3);
    CHECK(m.max_abs() == 1.0);                                 // |1.0 - 2.0|
    CHECK(m.max_relative() == 0.25);                           // 1.0 / 4.0
    CHECK(m.norm_relative() == doctest::Approx(std::sqrt(1.25 / 21.0)));  // sqrt(0.25 + 1) / sqrt(1 + 16 + 4)
    CHECK(m.elementwise() == doctest::Approx(1.0 / 3.0));      // 1.0 / (1 + 2)
    CHECK(test::relative_error(want, want) == 0.0);
    const std::vector<float> zeros(4, 0.0F);
    CHECK(test::relative_error(zeros, zeros) == 0.0);
    CHECK(std::isinf(test::relative_error(std::vector<float>{0.0F, 1e-30F, 0.0F, 0.0F}, zeros)));
    // One reference value of exactly 0: only the floorless elementwise measure is infinite.
    const test::error_meter z = test::compare(std::vector<float>{1.0F, 0.5F}, std::vector<float>{1.0F, 0.0F});
    CHECK(z.max_relative() == 0.5);
    CHECK(z.norm_relative() == 0.5);
    CHECK(std::isinf(z.elementwise()));
}

TEST_CASE("check: a NaN, an infinity or a size mismatch is an infinite error") {
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const std::vector<float> want = {1.0F, 2.0F, 3.0F};
    const std::vector<float> all_nan(3, nan);
    for (const std::vector<float>& got : {all_nan, std::vector<float>{1.0F, nan, 3.0F}, std::vector<float>{inf, 2.0F, 3.0F},
                                          std::vector<float>{1.0F, 2.0F}, std::vector<float>{1.0F, 2.0F, 3.0F, 4.0F}}) {
        const test::error_meter m = test::compare(got, want);
        CHECK(!m.finite());
        CHECK(std::isinf(m.max_abs()));
        CHECK(std::isinf(m.max_relative()));
        CHECK(std::isinf(m.norm_relative()));
        CHECK(std::isinf(m.elementwise()));
        CHECK_FALSE(test::relative_error(got, want) < 1e-5);
    }
    CHECK(std::isinf(test::relative_error(want, std::vector<float>{1.0F, 2.0F, nan})));  // the reference too
}
