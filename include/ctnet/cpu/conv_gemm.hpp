// ctnet/cpu/conv_gemm.hpp — convolution as a packed GEMM with an xsimd micro-kernel.
//
// out[m][j] = act(bias[m] + sum_k w[m][k] * col[k][j]) for one sample, where m is the output
// channel, j = (oh, ow) the output position and k = (c, kh, kw) the tap: NCHW makes the output
// rows (channel planes) and, for 1x1 stride-1 convs, the input rows contiguous.
//   - weights are packed once (load time) into panels of MR rows: [M/MR][K][MR], zero-padded;
//   - col is never materialised: each task packs a KC x NR block of it (an im2col of just that
//     block, padding as zeros) into its own scratch, in the order the micro-kernel reads;
//   - the micro-kernel keeps an MR x NR tile of accumulators in registers (MR = 6 rows, NR = two
//     SIMD vectors) and applies bias and ReLU when it stores the last K block.
// Requires: an x86-64 build with the SIMD width of the target (xsimd's default architecture).
// Guarantees: results within float rounding of cpu::ref::conv2d (tested on random shapes);
// tasks write disjoint columns, so any thread count gives bit-identical results.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "../graph/program.hpp"

namespace ctnet::cpu {

using simd = xsimd::batch<float>;
inline constexpr int simd_width = static_cast<int>(simd::size);
inline constexpr int gemm_mr = 6;                // rows of the register tile
inline constexpr int gemm_nr = 2 * simd_width;   // columns of the register tile
inline constexpr int gemm_kc = 256;              // depth of one packed block

// One conv's weights, packed for the micro-kernel, with the folded bias.
struct packed_conv {
    int m = 0, k = 0;          // output channels, taps per output (C * KH * KW)
    std::vector<float> a;      // [ceil(M / MR)][K][MR]
    std::vector<float> bias;   // M
    bool relu = false;
    window win{};
    shape in{}, out{};

    // w: (M, K) row-major (torch's (O, C, KH, KW)), already scaled by any folded batch norm.
    void pack(const float* w, int rows, int depth) {
        m = rows;
        k = depth;
        const int panels = (m + gemm_mr - 1) / gemm_mr;
        a.assign(static_cast<std::size_t>(panels) * k * gemm_mr, 0.0F);
        for (int p = 0; p < panels; ++p)
            for (int kk = 0; kk < k; ++kk)
                for (int r = 0; r < gemm_mr; ++r) {
                    const int row = p * gemm_mr + r;
                    if (row < m) a[(static_cast<std::size_t>(p) * k + kk) * gemm_mr + r] = w[static_cast<std::size_t>(row) * k + kk];
                }
    }
};

namespace detail {

// Packs rows [k0, k0 + kc) and columns [j0, j0 + NR) of the virtual im2col matrix into dst
// (kc x NR, row-major); columns past n are zero.
inline void pack_columns(const packed_conv& cv, const float* x, int k0, int kc, int j0, float* dst) {
    const window& g = cv.win;
    const int n = cv.out.h * cv.out.w;
    const int cols = std::min(gemm_nr, n - j0);
    const bool pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0;
    const std::size_t plane = static_cast<std::size_t>(cv.in.h) * cv.in.w;
    if (pointwise) {  // col[k][j] = x[k][j]: straight copies
        for (int kk = 0; kk < kc; ++kk) {
            const float* src = x + static_cast<std::size_t>(k0 + kk) * plane + j0;
            float* d = dst + static_cast<std::size_t>(kk) * gemm_nr;
            std::memcpy(d, src, sizeof(float) * static_cast<std::size_t>(cols));
            std::fill(d + cols, d + gemm_nr, 0.0F);
        }
        return;
    }
    int ih0[gemm_nr], iw0[gemm_nr];
    for (int j = 0; j < gemm_nr; ++j) {
        const int jj = std::min(j0 + j, n - 1);
        ih0[j] = (jj / cv.out.w) * g.sh - g.pt;
        iw0[j] = (jj % cv.out.w) * g.sw - g.pl;
    }
    const int taps = g.kh * g.kw;
    for (int kk = 0; kk < kc; ++kk) {
        const int kidx = k0 + kk;
        const int c = kidx / taps, t = kidx % taps, dh = t / g.kw, dw = t % g.kw;
        const float* xc = x + static_cast<std::size_t>(c) * plane;
        float* d = dst + static_cast<std::size_t>(kk) * gemm_nr;
        for (int j = 0; j < gemm_nr; ++j) {
            const int ih = ih0[j] + dh, iw = iw0[j] + dw;
            const bool inside = j < cols && ih >= 0 && ih < cv.in.h && iw >= 0 && iw < cv.in.w;
            d[j] = inside ? xc[ih * cv.in.w + iw] : 0.0F;
        }
    }
}

// c (MR x NR tile, row stride ldc) = (first ? 0 : c) + a_panel (kc x MR) * b (kc x NR);
// on the last block adds bias and applies ReLU.
inline void micro_kernel(int kc, const float* a, const float* b, float* c, std::size_t ldc, bool first, bool last,
                         const float* bias, bool relu) {
    simd acc[gemm_mr][2];
    for (int i = 0; i < gemm_mr; ++i) {
        if (first) {
            acc[i][0] = simd(0.0F);
            acc[i][1] = simd(0.0F);
        } else {
            acc[i][0] = simd::load_unaligned(c + i * ldc);
            acc[i][1] = simd::load_unaligned(c + i * ldc + simd_width);
        }
    }
    for (int k = 0; k < kc; ++k) {
        const simd b0 = simd::load_aligned(b + static_cast<std::size_t>(k) * gemm_nr);
        const simd b1 = simd::load_aligned(b + static_cast<std::size_t>(k) * gemm_nr + simd_width);
        const float* ak = a + static_cast<std::size_t>(k) * gemm_mr;
#pragma GCC unroll 6
        for (int i = 0; i < gemm_mr; ++i) {
            const simd ai(ak[i]);
            acc[i][0] = xsimd::fma(ai, b0, acc[i][0]);
            acc[i][1] = xsimd::fma(ai, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < gemm_mr; ++i) {
        if (last) {
            const simd bi(bias[i]);
            acc[i][0] += bi;
            acc[i][1] += bi;
            if (relu) {  // select, not max: g++ 12 warns falsely inside _mm512_max_ps
                const simd zero(0.0F);
                acc[i][0] = xsimd::select(acc[i][0] > zero, acc[i][0], zero);
                acc[i][1] = xsimd::select(acc[i][1] > zero, acc[i][1], zero);
            }
        }
        acc[i][0].store_unaligned(c + i * ldc);
        acc[i][1].store_unaligned(c + i * ldc + simd_width);
    }
}

}  // namespace detail

// Floats of scratch one task needs (a packed KC x NR block, SIMD-aligned) plus an edge tile.
inline constexpr std::size_t conv_scratch_floats = static_cast<std::size_t>(gemm_kc) * gemm_nr + gemm_mr * gemm_nr + 64;

// Columns [j0, j0 + NR) of one sample's output. x: the sample's input (C, H, W); y: its output
// planes, row stride ldy (= out.h * out.w). scratch: conv_scratch_floats floats.
inline void conv_gemm_columns(const packed_conv& cv, const float* x, float* y, int j0, float* scratch) {
    const int n = cv.out.h * cv.out.w;
    const std::size_t ldy = static_cast<std::size_t>(n);
    const int cols = std::min(gemm_nr, n - j0);
    auto* aligned = reinterpret_cast<float*>((reinterpret_cast<std::uintptr_t>(scratch) + 63) & ~std::uintptr_t{63});
    float* b = aligned;
    float* tile = aligned + static_cast<std::size_t>(gemm_kc) * gemm_nr;
    const int panels = (cv.m + gemm_mr - 1) / gemm_mr;
    for (int k0 = 0; k0 < cv.k; k0 += gemm_kc) {
        const int kc = std::min(gemm_kc, cv.k - k0);
        const bool first = k0 == 0, last = k0 + kc == cv.k;
        detail::pack_columns(cv, x, k0, kc, j0, b);
        for (int p = 0; p < panels; ++p) {
            const int row = p * gemm_mr, rows = std::min(gemm_mr, cv.m - row);
            const float* a = cv.a.data() + (static_cast<std::size_t>(p) * cv.k + k0) * gemm_mr;
            float bias[gemm_mr]{};
            std::copy(cv.bias.begin() + row, cv.bias.begin() + row + rows, bias);
            float* c = y + static_cast<std::size_t>(row) * ldy + j0;
            if (rows == gemm_mr && cols == gemm_nr) {
                detail::micro_kernel(kc, a, b, c, ldy, first, last, bias, cv.relu);
                continue;
            }
            // Edge: work in a full tile, copy the valid part in and out.
            for (int i = 0; i < rows; ++i) std::copy(c + i * ldy, c + i * ldy + cols, tile + i * gemm_nr);
            detail::micro_kernel(kc, a, b, tile, gemm_nr, first, last, bias, cv.relu);
            for (int i = 0; i < rows; ++i) std::copy(tile + i * gemm_nr, tile + i * gemm_nr + cols, c + i * ldy);
        }
    }
}

}  // namespace ctnet::cpu
