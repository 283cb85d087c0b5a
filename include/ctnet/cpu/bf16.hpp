// ctnet/cpu/bf16.hpp — bfloat16 (the upper half of an IEEE float) for backend::cpu's bf16
// inference (cpu/gemm_lowp.hpp, docs/precision.md).
//
//   std::uint16_t h = cpu::to_bf16(x);     // round to nearest, ties to even
//   float y = cpu::from_bf16(h);           // exact
//
// Guarantees: to_bf16 rounds to nearest even on the dropped 16 bits; infinities stay infinite;
// a NaN stays a NaN (its sign kept, made quiet, so rounding can never turn it into an infinity);
// subnormal floats round like any others (to a bf16 subnormal or zero: the scalar conversion
// keeps them). The packing of activations (cpu/gemm_lowp.hpp) uses the hardware's
// VCVTNE2PS2BF16 instead, which rounds the same way on every normal float and NaN but flushes
// subnormal inputs (|x| < 1.18e-38) to zero.
#pragma once

#include <bit>
#include <cstdint>

namespace ctnet::cpu {

[[nodiscard]] constexpr std::uint16_t to_bf16(float x) {
    const std::uint32_t b = std::bit_cast<std::uint32_t>(x);
    if ((b & 0x7F800000U) == 0x7F800000U && (b & 0x007FFFFFU) != 0)  // NaN: keep the sign, quiet
        return static_cast<std::uint16_t>((b >> 16) | 0x0040U);
    const std::uint32_t lsb = (b >> 16) & 1U;  // ties go to the even neighbour
    return static_cast<std::uint16_t>((b + 0x7FFFU + lsb) >> 16);
}

[[nodiscard]] constexpr float from_bf16(std::uint16_t h) {
    return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

// x rounded to the nearest bf16 value, as a float.
[[nodiscard]] constexpr float round_bf16(float x) { return from_bf16(to_bf16(x)); }

}  // namespace ctnet::cpu
