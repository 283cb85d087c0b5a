// cuda/half.hpp on the host: float <-> fp16 and float <-> bf16 against hand-worked bit patterns
// (round to nearest even at ties, overflow to infinity, subnormals both ways, signed zeros, NaN),
// every 16-bit pattern round trip, and nearest-even against a brute-force neighbour search on
// random floats of every magnitude. Needs no GPU and no CUDA toolkit.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include <ctnet/core/random.hpp>
#include <ctnet/cuda/half.hpp>

using namespace ctnet;
using cuda::bits_float;
using cuda::float_bits;

namespace {

bool h_is_nan(std::uint16_t h) { return (h & 0x7c00U) == 0x7c00U && (h & 0x3ffU) != 0U; }
bool b_is_nan(std::uint16_t b) { return (b & 0x7f80U) == 0x7f80U && (b & 0x7fU) != 0U; }

}  // namespace

TEST_CASE("fp16: hand-worked conversions from float") {
    using cuda::half::from_float;
    CHECK(from_float(1.0F) == 0x3c00);
    CHECK(from_float(-2.0F) == 0xc000);
    CHECK(from_float(0.1F) == 0x2e66);          // 0.0999755859375
    CHECK(from_float(1.0F / 3.0F) == 0x3555);   // 0.333251953125
    CHECK(from_float(65504.0F) == 0x7bff);      // the largest half
    CHECK(from_float(65519.0F) == 0x7bff);      // below the halfway point 65520
    CHECK(from_float(65520.0F) == 0x7c00);      // the tie goes to the even neighbour: 65536 = infinity
    CHECK(from_float(1e6F) == 0x7c00);
    CHECK(from_float(-1e6F) == 0xfc00);
    CHECK(from_float(std::numeric_limits<float>::infinity()) == 0x7c00);
    CHECK(from_float(-std::numeric_limits<float>::infinity()) == 0xfc00);
    CHECK(from_float(0.0F) == 0x0000);
    CHECK(from_float(-0.0F) == 0x8000);
    // Ties at 1: 1 + 2^-11 lies halfway between 0x3c00 (even) and 0x3c01; 1 + 3 * 2^-11 between 0x3c01 and 0x3c02 (even).
    CHECK(from_float(1.0F + 0x1p-11F) == 0x3c00);
    CHECK(from_float(1.0F + 3 * 0x1p-11F) == 0x3c02);
    CHECK(from_float(1.0F + 0x1p-11F + 0x1p-20F) == 0x3c01);  // just above the tie
    CHECK(from_float(1.0F + 0x1p-11F - 0x1p-20F) == 0x3c00);  // just below
    // Subnormal halves: units of 2^-24.
    CHECK(from_float(0x1p-24F) == 0x0001);
    CHECK(from_float(0x1p-25F) == 0x0000);          // halfway between 0 (even) and 2^-24
    CHECK(from_float(-0x1p-25F) == 0x8000);
    CHECK(from_float(0x1.8p-25F) == 0x0001);        // above the tie
    CHECK(from_float(3 * 0x1p-25F) == 0x0002);      // 1.5 units: tie, to even 2
    CHECK(from_float(5 * 0x1p-25F) == 0x0002);      // 2.5 units: tie, to even 2
    CHECK(from_float(0x1p-26F) == 0x0000);
    CHECK(from_float(1023 * 0x1p-24F) == 0x03ff);   // the largest subnormal
    CHECK(from_float(0x1p-14F - 0x1p-25F) == 0x0400);  // 1023.5 units: tie, to even 1024 = the smallest normal
    CHECK(from_float(0x1p-14F) == 0x0400);
    CHECK(from_float(std::numeric_limits<float>::denorm_min()) == 0x0000);  // a float subnormal
    // NaN stays NaN with its sign.
    const std::uint16_t qn = from_float(std::numeric_limits<float>::quiet_NaN());
    CHECK(h_is_nan(qn));
    CHECK(h_is_nan(from_float(bits_float(0x7f800001U))));  // signalling, payload only in the low bits
    CHECK(h_is_nan(from_float(bits_float(0xffc00000U))));
    CHECK((from_float(bits_float(0xffc00000U)) & 0x8000U) != 0U);
}

TEST_CASE("fp16: hand-worked conversions to float") {
    using cuda::half::to_float;
    CHECK(to_float(0x3c00) == 1.0F);
    CHECK(to_float(0x0001) == 0x1p-24F);
    CHECK(to_float(0x03ff) == 1023 * 0x1p-24F);
    CHECK(to_float(0x0400) == 0x1p-14F);
    CHECK(to_float(0x7bff) == 65504.0F);
    CHECK(to_float(0x3555) == 0.333251953125F);
    CHECK(to_float(0x7c00) == std::numeric_limits<float>::infinity());
    CHECK(to_float(0xfc00) == -std::numeric_limits<float>::infinity());
    CHECK(std::isnan(to_float(0x7e00)));
    CHECK(std::isnan(to_float(0x7c01)));
    CHECK(float_bits(to_float(0x8000)) == 0x80000000U);
    CHECK(to_float(0x8001) == -0x1p-24F);
}

TEST_CASE("bf16: hand-worked conversions both ways") {
    using cuda::bf16::from_float;
    using cuda::bf16::to_float;
    CHECK(from_float(1.0F) == 0x3f80);
    CHECK(from_float(3.14159265F) == 0x4049);   // 0x40490fdb: low half below the tie
    CHECK(from_float(0.1F) == 0x3dcd);          // 0x3dcccccd: low half 0xcccd above the tie
    CHECK(from_float(1.0F + 0x1p-8F) == 0x3f80);      // tie, to even
    CHECK(from_float(1.0F + 3 * 0x1p-8F) == 0x3f82);  // tie, to even
    CHECK(from_float(1.0F + 0x1p-8F + 0x1p-20F) == 0x3f81);
    CHECK(from_float(bits_float(0x7f7f7fffU)) == 0x7f7f);  // below the tie under the largest float
    CHECK(from_float(std::numeric_limits<float>::max()) == 0x7f80);  // 0x7f7fffff rounds up to infinity
    CHECK(from_float(-std::numeric_limits<float>::max()) == 0xff80);
    CHECK(from_float(std::numeric_limits<float>::infinity()) == 0x7f80);
    CHECK(from_float(-0.0F) == 0x8000);
    // float subnormals keep their bits (bf16 has the float's exponent range)
    CHECK(from_float(bits_float(0x00010000U)) == 0x0001);
    CHECK(from_float(bits_float(0x00008000U)) == 0x0000);  // tie between 0 (even) and 1
    CHECK(from_float(bits_float(0x00018000U)) == 0x0002);  // tie between 1 and 2 (even)
    CHECK(from_float(bits_float(0x00008001U)) == 0x0001);
    CHECK(b_is_nan(from_float(std::numeric_limits<float>::quiet_NaN())));
    CHECK(b_is_nan(from_float(bits_float(0x7f800001U))));  // payload only in the low bits: still NaN
    CHECK(from_float(bits_float(0xff800001U)) >= 0xff81);
    CHECK(to_float(0x3f80) == 1.0F);
    CHECK(to_float(0x0001) == bits_float(0x00010000U));
    CHECK(to_float(0x7f80) == std::numeric_limits<float>::infinity());
    CHECK(std::isnan(to_float(0x7fc0)));
}

TEST_CASE("fp16 and bf16: every bit pattern survives the trip through float") {
    int bad_h = 0, bad_b = 0;
    for (std::uint32_t u = 0; u <= 0xffffU; ++u) {
        const auto h = static_cast<std::uint16_t>(u);
        const std::uint16_t h2 = cuda::half::from_float(cuda::half::to_float(h));
        if (h_is_nan(h) ? !h_is_nan(h2) || (h2 & 0x8000U) != (h & 0x8000U) : h2 != h) ++bad_h;
        const std::uint16_t b2 = cuda::bf16::from_float(cuda::bf16::to_float(h));
        if (b_is_nan(h) ? !b_is_nan(b2) || (b2 & 0x8000U) != (h & 0x8000U) : b2 != h) ++bad_b;
    }
    CHECK(bad_h == 0);
    CHECK(bad_b == 0);
}

// The nearest representable value by search over all finite patterns of the sign (sorted by
// magnitude), ties to the even pattern, infinity beyond the largest finite value's halfway point.
TEST_CASE("fp16 and bf16: round to nearest even on random floats of every magnitude") {
    rng g{41};
    int bad_h = 0, bad_b = 0;
    for (int trial = 0; trial < 200000; ++trial) {
        // Exponents over the whole float range, with extra weight near fp16's range.
        const auto bits = static_cast<std::uint32_t>(g.next());
        std::uint32_t u = bits & 0x807fffffU;
        const int e = trial % 3 == 0 ? static_cast<int>(g.next() % 254U) + 1 : static_cast<int>(g.next() % 46U) + 97;  // 2^-30 .. 2^15
        u |= static_cast<std::uint32_t>(e) << 23;
        const float f = bits_float(u);
        const double x = std::fabs(static_cast<double>(f));
        // fp16: neighbours by magnitude pattern m (0 .. 0x7bff), values increase with m.
        {
            std::uint32_t lo = 0, hi = 0x7bffU;
            if (x >= 65520.0) {
                if ((cuda::half::from_float(f) & 0x7fffU) != 0x7c00U) ++bad_h;
            } else {
                while (lo < hi) {  // the largest m with value(m) <= x
                    const std::uint32_t mid = (lo + hi + 1) / 2;
                    if (static_cast<double>(cuda::half::to_float(static_cast<std::uint16_t>(mid))) <= x) lo = mid;
                    else hi = mid - 1;
                }
                const double a = cuda::half::to_float(static_cast<std::uint16_t>(lo));
                const double b = lo < 0x7bffU ? static_cast<double>(cuda::half::to_float(static_cast<std::uint16_t>(lo + 1))) : 65536.0;
                std::uint32_t want = lo;
                if (x - a > b - x || (x - a == b - x && (lo & 1U) != 0U)) want = lo + 1;
                if ((cuda::half::from_float(f) & 0x7fffU) != want) ++bad_h;
            }
            if ((cuda::half::from_float(f) & 0x8000U) != ((u >> 16) & 0x8000U)) ++bad_h;
        }
        // bf16: the two neighbours are the truncation and the next pattern.
        {
            const std::uint32_t t = (u & 0x7fffffffU) >> 16;
            const double a = cuda::bf16::to_float(static_cast<std::uint16_t>(t));
            const double b = t < 0x7f7fU ? static_cast<double>(cuda::bf16::to_float(static_cast<std::uint16_t>(t + 1)))
                                         : std::ldexp(1.0, 128);
            std::uint32_t want = t;
            if (x - a > b - x || (x - a == b - x && (t & 1U) != 0U)) want = t + 1;
            if ((cuda::bf16::from_float(f) & 0x7fffU) != want) ++bad_b;
        }
    }
    CHECK(bad_h == 0);
    CHECK(bad_b == 0);
}
