// ctnet/cpu/linear_fast.hpp — the fully connected layer on SIMD: outputs [o0, o1) of every
// sample, each a dot product of a weight row and the sample, in 4 SIMD accumulators.
//
// Requires: x (n samples of `in` floats), y (n samples of at least o1 floats), weight (out, in)
// row-major, bias null or `out` floats. Guarantees: within float rounding of cpu::ref::linear
// (another summation order); each output is one task's, in a fixed order, so any split of the
// outputs over threads gives bit-identical results.
#pragma once

#include <cstddef>

#include <xsimd/xsimd.hpp>

namespace ctnet::cpu {

[[nodiscard]] inline float dot(const float* a, const float* b, std::size_t n) {
    using simd = xsimd::batch<float>;
    constexpr std::size_t w = simd::size;
    simd s0(0.0F), s1(0.0F), s2(0.0F), s3(0.0F);
    std::size_t j = 0;
    for (; j + 4 * w <= n; j += 4 * w) {
        s0 = xsimd::fma(simd::load_unaligned(a + j), simd::load_unaligned(b + j), s0);
        s1 = xsimd::fma(simd::load_unaligned(a + j + w), simd::load_unaligned(b + j + w), s1);
        s2 = xsimd::fma(simd::load_unaligned(a + j + 2 * w), simd::load_unaligned(b + j + 2 * w), s2);
        s3 = xsimd::fma(simd::load_unaligned(a + j + 3 * w), simd::load_unaligned(b + j + 3 * w), s3);
    }
    for (; j + w <= n; j += w) s0 = xsimd::fma(simd::load_unaligned(a + j), simd::load_unaligned(b + j), s0);
    float acc = xsimd::hadd((s0 + s1) + (s2 + s3));
    for (; j < n; ++j) acc += a[j] * b[j];
    return acc;
}

// Outputs [o0, o1) of n samples; sample i reads x + i * xs and writes y + i * ys.
inline void linear_outputs(const float* x, std::size_t xs, float* y, std::size_t ys, int n, std::size_t in,
                           const float* weight, const float* bias, std::size_t o0, std::size_t o1) {
    for (std::size_t o = o0; o < o1; ++o) {
        const float* wo = weight + o * in;
        for (int i = 0; i < n; ++i) {
            const auto s = static_cast<std::size_t>(i);
            y[s * ys + o] = (bias ? bias[o] : 0.0F) + dot(wo, x + s * xs, in);
        }
    }
}

}  // namespace ctnet::cpu
