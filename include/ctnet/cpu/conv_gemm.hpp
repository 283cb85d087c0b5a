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
#include <cstdint>
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

// Packs rows [k0, k0 + kc) and columns [j0, j0 + cols) of the virtual im2col matrix into dst as
// ceil(cols / NR) panels of kc x NR (row-major), the micro-kernel's reading order; columns past
// the block are zero. Runs of one output row are copied as runs of one input row.
inline void pack_block(const packed_conv& cv, const float* x, int k0, int kc, int j0, int cols, float* dst) {
    const window& g = cv.win;
    const int ow_n = cv.out.w, panels = (cols + gemm_nr - 1) / gemm_nr;
    const std::size_t plane = static_cast<std::size_t>(cv.in.h) * cv.in.w;
    const std::size_t panel_stride = static_cast<std::size_t>(kc) * gemm_nr;
    const int taps = g.kh * g.kw;
    for (int kk = 0; kk < kc; ++kk) {
        const int kidx = k0 + kk;
        const int c = kidx / taps, t = kidx % taps, dh = t / g.kw, dw = t % g.kw;
        const float* xc = x + static_cast<std::size_t>(c) * plane;
        // Walk the block's columns one output row at a time.
        for (int j = 0; j < panels * gemm_nr;) {
            float* d = dst + static_cast<std::size_t>(j / gemm_nr) * panel_stride + static_cast<std::size_t>(kk) * gemm_nr;
            const int in_panel = j % gemm_nr;
            const int avail = gemm_nr - in_panel;  // room left in this panel
            if (j >= cols) {  // padding columns of the last panel
                std::fill(d + in_panel, d + gemm_nr, 0.0F);
                j += avail;
                continue;
            }
            const int jj = j0 + j, oh = jj / ow_n, ow = jj % ow_n;
            const int run = std::min({avail, cols - j, ow_n - ow});  // same output row, same panel
            const int ih = oh * g.sh - g.pt + dh;
            float* out = d + in_panel;
            if (ih < 0 || ih >= cv.in.h) {
                std::fill(out, out + run, 0.0F);
            } else {
                const float* row = xc + static_cast<std::size_t>(ih) * cv.in.w;
                const int iw0 = ow * g.sw - g.pl + dw;
                if (g.sw == 1 && iw0 >= 0 && iw0 + run <= cv.in.w) {
                    std::memcpy(out, row + iw0, sizeof(float) * static_cast<std::size_t>(run));
                } else {
                    for (int r = 0; r < run; ++r) {
                        const int iw = iw0 + r * g.sw;
                        out[r] = iw >= 0 && iw < cv.in.w ? row[iw] : 0.0F;
                    }
                }
            }
            j += run;
        }
    }
}

// c (MR x NR tile, row stride ldc) = (first ? 0 : c) + a_panel (kc x MR) * b (kc x NR);
// on the last block adds bias and applies ReLU.
inline void micro_kernel(int kc, const float* a, const float* b, float* c, std::size_t ldc, bool first, bool last,
                         const float* bias, bool relu) {
    simd acc[gemm_mr][2];
    for (std::size_t i = 0; i < gemm_mr; ++i) {
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
    for (std::size_t i = 0; i < gemm_mr; ++i) {
        if (last) {
            const simd bi(bias[i]);
            acc[i][0] += bi;
            acc[i][1] += bi;
            if (relu) {  // zero where <= 0: a NaN stays NaN, as torch's relu (and select, not max:
                         // g++ 12 warns falsely inside _mm512_max_ps)
                const simd zero(0.0F);
                acc[i][0] = xsimd::select(acc[i][0] <= zero, zero, acc[i][0]);
                acc[i][1] = xsimd::select(acc[i][1] <= zero, zero, acc[i][1]);
            }
        }
        acc[i][0].store_unaligned(c + i * ldc);
        acc[i][1].store_unaligned(c + i * ldc + simd_width);
    }
}

}  // namespace detail

inline constexpr int gemm_nc = 2 * gemm_nr;  // columns of one task's packed block (smaller measured faster)

// Floats of scratch one task needs (a packed KC x NC block, SIMD-aligned) plus an edge tile.
inline constexpr std::size_t conv_scratch_floats =
    static_cast<std::size_t>(gemm_kc) * gemm_nc + static_cast<std::size_t>(gemm_mr) * gemm_nr + 64;

// Rows [row0, row1) (multiples of MR, or M) and columns [j0, j0 + cols), cols <= NC, of one
// sample's output. x: the sample's input (C, H, W); y: its output planes (row stride
// out.h * out.w). scratch: conv_scratch_floats floats.
inline void conv_gemm_block(const packed_conv& cv, const float* x, float* y, int row0, int row1, int j0, int cols,
                            float* scratch) {
    const std::size_t ldy = static_cast<std::size_t>(cv.out.h) * cv.out.w;
    const std::size_t misaligned = reinterpret_cast<std::uintptr_t>(scratch) % 64;  // packed panels: 64-byte aligned
    float* b = scratch + (misaligned ? (64 - misaligned) / sizeof(float) : 0);
    float* tile = b + static_cast<std::size_t>(gemm_kc) * gemm_nc;
    const int col_panels = (cols + gemm_nr - 1) / gemm_nr;
    for (int k0 = 0; k0 < cv.k; k0 += gemm_kc) {
        const int kc = std::min(gemm_kc, cv.k - k0);
        const bool first = k0 == 0, last = k0 + kc == cv.k;
        detail::pack_block(cv, x, k0, kc, j0, cols, b);
        for (int row = row0; row < row1; row += gemm_mr) {
            const int rows = std::min(gemm_mr, row1 - row);
            const float* a = cv.a.data() + (static_cast<std::size_t>(row / gemm_mr) * cv.k + k0) * gemm_mr;
            float bias[gemm_mr]{};
            std::copy(cv.bias.begin() + row, cv.bias.begin() + row + rows, bias);
            for (int cp = 0; cp < col_panels; ++cp) {
                const float* bp = b + static_cast<std::size_t>(cp) * kc * gemm_nr;
                const int jc = cp * gemm_nr, n = std::min(gemm_nr, cols - jc);
                float* c = y + static_cast<std::size_t>(row) * ldy + j0 + jc;
                if (rows == gemm_mr && n == gemm_nr) {
                    detail::micro_kernel(kc, a, bp, c, ldy, first, last, bias, cv.relu);
                    continue;
                }
                // Edge: work in a full tile, copy the valid part in and out.
                constexpr auto ldt = static_cast<std::size_t>(gemm_nr);
                for (std::size_t i = 0; i < static_cast<std::size_t>(rows); ++i)
                    std::copy(c + i * ldy, c + i * ldy + n, tile + i * ldt);
                detail::micro_kernel(kc, a, bp, tile, ldt, first, last, bias, cv.relu);
                for (std::size_t i = 0; i < static_cast<std::size_t>(rows); ++i)
                    std::copy(tile + i * ldt, tile + i * ldt + n, c + i * ldy);
            }
        }
    }
}

// The whole output of one sample, in blocks (for tests and single-threaded use).
inline void conv_gemm(const packed_conv& cv, const float* x, float* y, float* scratch) {
    const int n = cv.out.h * cv.out.w;
    for (int j0 = 0; j0 < n; j0 += gemm_nc) conv_gemm_block(cv, x, y, 0, cv.m, j0, std::min(gemm_nc, n - j0), scratch);
}

}  // namespace ctnet::cpu
