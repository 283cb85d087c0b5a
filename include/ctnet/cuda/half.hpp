// ctnet/cuda/half.hpp — float <-> IEEE fp16 and float <-> bfloat16 as bit patterns, for the host
// and the device (CTNET_HD), with no CUDA header: what the NHWC engines' load-time weight
// conversion computes, and what tests/test_nhwc_half.cpp checks against hand-worked patterns.
//
//   std::uint16_t h = cuda::half::from_float(0.1F);   // 0x2e66, round to nearest even
//   float f = cuda::half::to_float(h);
//   std::uint16_t b = cuda::bf16::from_float(x);      float g = cuda::bf16::to_float(b);
//
// Guarantees: round to nearest, ties to even, in every range: values from 65520 up round to
// infinity (fp16), subnormal results are produced (never flushed to zero) and subnormal inputs
// are converted exactly; +-0, +-infinity keep their sign; a NaN stays a NaN with its sign and
// the quiet bit set (payload: its top mantissa bits). These are the results of CUDA's
// __float2half_rn / __float2bfloat16_rn for every non-NaN input (their NaN bit patterns may
// differ: CUDA returns a canonical NaN).
#pragma once

#include <cstdint>
#include <cstring>

#include "types.hpp"

namespace ctnet::cuda {

CTNET_HD std::uint32_t float_bits(float f) {
    std::uint32_t u = 0;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
CTNET_HD float bits_float(std::uint32_t u) {
    float f = 0.0F;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

namespace half {

// float -> fp16 (1 sign, 5 exponent bits with bias 15, 10 mantissa bits), round to nearest even.
CTNET_HD std::uint16_t from_float(float f) {
    std::uint32_t u = float_bits(f);
    const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000U);
    u &= 0x7fffffffU;
    if (u > 0x7f800000U) return static_cast<std::uint16_t>(sign | 0x7e00U | ((u >> 13) & 0x3ffU));  // NaN, quiet
    if (u >= 0x477ff000U) return static_cast<std::uint16_t>(sign | 0x7c00U);  // >= 65520 (and inf): infinity
    if (u < 0x38800000U) {  // below 2^-14: a subnormal half (or zero), units of 2^-24
        if (u <= 0x33000000U) return sign;  // <= 2^-25: zero (2^-25 is the tie, to even 0)
        const std::uint32_t m = (u & 0x7fffffU) | 0x800000U, e = u >> 23;  // u = m * 2^(e - 150)
        const std::uint32_t s = 126U - e;                                  // 14..24
        std::uint32_t q = m >> s;
        const std::uint32_t rem = m & ((1U << s) - 1U), halfway = 1U << (s - 1U);
        if (rem > halfway || (rem == halfway && (q & 1U) != 0U)) ++q;  // may carry into the smallest normal: right
        return static_cast<std::uint16_t>(sign | q);
    }
    std::uint32_t q = (u - 0x38000000U) >> 13;  // exponent rebiased from 127 to 15
    const std::uint32_t rem = u & 0x1fffU;
    if (rem > 0x1000U || (rem == 0x1000U && (q & 1U) != 0U)) ++q;  // a carry into the exponent is right too
    return static_cast<std::uint16_t>(sign | q);
}

// fp16 -> float, exact.
CTNET_HD float to_float(std::uint16_t h) {
    const std::uint32_t sign = (static_cast<std::uint32_t>(h) & 0x8000U) << 16;
    const std::uint32_t e = (h >> 10) & 0x1fU;
    std::uint32_t m = h & 0x3ffU;
    if (e == 0x1fU) return bits_float(sign | 0x7f800000U | (m << 13));  // infinity, NaN
    if (e == 0U) {
        if (m == 0U) return bits_float(sign);  // +-0
        std::uint32_t ef = 113U;               // m * 2^-24: normalise
        while ((m & 0x400U) == 0U) {
            m <<= 1;
            --ef;
        }
        return bits_float(sign | (ef << 23) | ((m & 0x3ffU) << 13));
    }
    return bits_float(sign | ((e + 112U) << 23) | (m << 13));
}

}  // namespace half

namespace bf16 {

// float -> bfloat16 (the float's top 16 bits), round to nearest even.
CTNET_HD std::uint16_t from_float(float f) {
    const std::uint32_t u = float_bits(f);
    if ((u & 0x7fffffffU) > 0x7f800000U) return static_cast<std::uint16_t>((u >> 16) | 0x0040U);  // NaN, quiet
    const std::uint32_t bias = 0x7fffU + ((u >> 16) & 1U);
    return static_cast<std::uint16_t>((u + bias) >> 16);  // a carry past the largest finite value gives infinity
}

CTNET_HD float to_float(std::uint16_t b) { return bits_float(static_cast<std::uint32_t>(b) << 16); }

}  // namespace bf16

}  // namespace ctnet::cuda
