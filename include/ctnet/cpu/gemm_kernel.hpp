// ctnet/cpu/gemm_kernel.hpp — the register-tile GEMM micro-kernel that every CPU GEMM runs on
// (the inference convs of cpu/conv_packed.hpp, Winograd's products in cpu/winograd.hpp, the
// general GEMM of cpu/gemm.hpp behind training's convs), its tile sizes, and the two small
// helpers of their packing code (align64, copy_run).
//
// The micro-kernel keeps an MR x NR tile of C in registers (MR = 6 rows, NR = two SIMD vectors)
// and adds kc rank-1 products from packed panels: A as [kc][MR] (a row panel), B as [kc][NR] (a
// column panel, 64-byte aligned); on the last K block it adds bias and applies ReLU as it stores.
// Callers pack blocks of at most KC (gemm_kc) rows of B.
// Requires: an x86-64 build with the SIMD width of the target (xsimd's default architecture).
// Guarantees: each element of C is one chain of FMAs along K, in order, with one or two vectors
// of columns alike, so how a caller splits columns or rows never changes a result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <xsimd/xsimd.hpp>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace ctnet::cpu {

using simd = xsimd::batch<float>;
inline constexpr int simd_width = static_cast<int>(simd::size);
inline constexpr int gemm_mr = 6;                // rows of the register tile
inline constexpr int gemm_nr = 2 * simd_width;   // columns of the register tile
inline constexpr int gemm_kc = 256;              // depth of one packed block

namespace detail {

// The first 64-byte boundary at or after p (packed panels are read with aligned loads).
inline float* align64(float* p) {
    const std::size_t mis = reinterpret_cast<std::uintptr_t>(p) % 64;
    return p + (mis ? (64 - mis) / sizeof(float) : 0);
}

// Copies n <= NR floats (a run of one packed row). With AVX-512: two overlapping plain moves
// of 16, 8 or 4 floats (the first and the last ones of the run), instead of a call to memcpy,
// whose fixed cost dominates runs this short (17 floats at 17x17); masked moves were slower
// still (bench/RESULTS.md).
inline void copy_run(float* dst, const float* src, int n) {
#if defined(__AVX512F__)
    static_assert(gemm_nr == 32, "copy_run moves at most two 16-float vectors");
    if (n >= 16) {
        const __m512 head = _mm512_loadu_ps(src), last = _mm512_loadu_ps(src + (n - 16));
        _mm512_storeu_ps(dst, head);
        _mm512_storeu_ps(dst + (n - 16), last);
    } else if (n >= 8) {
        const __m256 head = _mm256_loadu_ps(src), last = _mm256_loadu_ps(src + (n - 8));
        _mm256_storeu_ps(dst, head);
        _mm256_storeu_ps(dst + (n - 8), last);
    } else if (n >= 4) {
        const __m128 head = _mm_loadu_ps(src), last = _mm_loadu_ps(src + (n - 4));
        _mm_storeu_ps(dst, head);
        _mm_storeu_ps(dst + (n - 4), last);
    } else {
        for (int i = 0; i < n; ++i) dst[i] = src[i];
    }
#else
    std::memcpy(dst, src, sizeof(float) * static_cast<std::size_t>(n));
#endif
}

// c (MR x NR tile, row stride ldc) = (first ? 0 : c) + a_panel (kc x MR) * b (kc x NR);
// on the last block adds bias and applies ReLU. With Vectors = 1 only the first SIMD width of
// columns (b's rows still NR apart): a panel with at most that many columns (the 17x17 maps'
// 289th) costs half. Each column is the same chain of FMAs either way, so the same bits.
template <int Vectors = 2>
inline void micro_kernel(int kc, const float* a, const float* b, float* c, std::size_t ldc, bool first, bool last,
                         const float* bias, bool relu) {
    static_assert(Vectors == 1 || Vectors == 2, "one or two SIMD vectors of columns");
    simd acc[gemm_mr][Vectors];
    for (std::size_t i = 0; i < gemm_mr; ++i)
        for (std::size_t v = 0; v < Vectors; ++v)
            acc[i][v] = first ? simd(0.0F) : simd::load_unaligned(c + i * ldc + v * simd_width);
    for (int k = 0; k < kc; ++k) {
        simd bv[Vectors];
        for (std::size_t v = 0; v < Vectors; ++v) bv[v] = simd::load_aligned(b + static_cast<std::size_t>(k) * gemm_nr + v * simd_width);
        const float* ak = a + static_cast<std::size_t>(k) * gemm_mr;
        // A streams from memory once per pass (the weights: 24 MB at 8x8, all cold at batch 1),
        // faster than the hardware prefetcher follows it: ask for it 128 steps (3 KB) ahead, past
        // the end of this panel into the next one (the gain: bench/RESULTS.md).
        __builtin_prefetch(ak + static_cast<std::size_t>(128) * gemm_mr);
#pragma GCC unroll 6
        for (int i = 0; i < gemm_mr; ++i) {
            const simd ai(ak[i]);
            for (std::size_t v = 0; v < Vectors; ++v) acc[i][v] = xsimd::fma(ai, bv[v], acc[i][v]);
        }
    }
    for (std::size_t i = 0; i < gemm_mr; ++i) {
        for (std::size_t v = 0; v < Vectors; ++v) {
            if (last) {
                acc[i][v] += simd(bias[i]);
                if (relu)  // zero where <= 0: a NaN stays NaN, as torch's relu (and select, not max:
                           // g++ 12 warns falsely inside _mm512_max_ps)
                    acc[i][v] = xsimd::select(acc[i][v] <= simd(0.0F), simd(0.0F), acc[i][v]);
            }
            acc[i][v].store_unaligned(c + i * ldc + v * simd_width);
        }
    }
}

}  // namespace detail

}  // namespace ctnet::cpu
