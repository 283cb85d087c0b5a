// ctnet/cpu/conv_packed.hpp — inference's convolution as a packed GEMM on the micro-kernel of
// cpu/gemm_kernel.hpp.
//
// out[m][j] = act(bias[m] + sum_k w[m][k] * col[k][j]) for one sample, where m is the output
// channel, j = (oh, ow) the output position and k = (c, kh, kw) the tap: NCHW makes the output
// rows (channel planes) and, for 1x1 stride-1 convs, the input rows contiguous.
//   - weights are packed once (load time) into panels of MR rows, K block by K block:
//     [K/KC][M/MR][KC][MR], zero-padded;
//   - col is never materialised: each task packs a KC x NR block of it (an im2col of just that
//     block, padding as zeros) into its own scratch, in the order the micro-kernel reads;
//   - the micro-kernel keeps an MR x NR tile of accumulators in registers (MR = 6 rows, NR = two
//     SIMD vectors) and applies bias and ReLU when it stores the last K block.
// cpu/fast_runner.hpp schedules the blocks over its threads; a conv it runs as Winograd keeps
// its transformed weights in the same packed_conv (cpu/winograd.hpp).
// Requires: an x86-64 build with the SIMD width of the target (xsimd's default architecture).
// Guarantees: results within float rounding of cpu::ref::conv2d (tested on random shapes);
// tasks write disjoint columns, so any thread count gives bit-identical results.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "../graph/program.hpp"
#include "gemm_kernel.hpp"
#include "winograd_tiling.hpp"

namespace ctnet::cpu {

inline constexpr int gemm_nc = 2 * gemm_nr;  // columns of one task's packed block (the timings of other sizes: bench/RESULTS.md)

// One conv's weights, packed for the micro-kernel, with the folded bias.
struct packed_conv {
    int m = 0, k = 0;          // output channels, taps per output (C * KH * KW)
    std::vector<float> a;      // [K block of KC][ceil(M / MR)][kc][MR]: one K block's panels in a row
    std::vector<float> bias;   // M
    std::vector<float> wino;   // when it runs as Winograd (cpu/winograd.hpp): U, and `a` is empty
    winograd_tiling tiling{};  // its output tile, with `wino`
    bool relu = false;
    window win{};
    shape in{}, out{};

    // w: (M, K) row-major (torch's (O, C, KH, KW)), already scaled by any folded batch norm.
    void pack(const float* w, int rows, int depth) {
        m = rows;
        k = depth;
        const int panels = (m + gemm_mr - 1) / gemm_mr;
        a.assign(static_cast<std::size_t>(panels) * k * gemm_mr, 0.0F);
        for (int k0 = 0; k0 < k; k0 += gemm_kc) {
            const int kc = std::min(gemm_kc, k - k0);
            for (int p = 0; p < panels; ++p)
                for (int kk = 0; kk < kc; ++kk)
                    for (int r = 0; r < gemm_mr; ++r) {
                        const int row = p * gemm_mr + r;
                        if (row < m) a[panel_offset(k0, kc, p) + static_cast<std::size_t>(kk) * gemm_mr + r] =
                            w[static_cast<std::size_t>(row) * k + k0 + kk];
                    }
        }
    }

    // First float of row panel p's part of the K block starting at k0 (kc deep). A K block's
    // panels are contiguous, so a task's pass over its rows reads A as one sequential stream
    // rather than 6 KB pieces a whole panel (up to 96 KB) apart, which matters most where the
    // weights are read about once per pass (the 8x8 blocks at batch 1; bench/RESULTS.md).
    [[nodiscard]] std::size_t panel_offset(int k0, int kc, int p) const {
        const auto panels = static_cast<std::size_t>((m + gemm_mr - 1) / gemm_mr);
        return (static_cast<std::size_t>(k0) * panels + static_cast<std::size_t>(p) * kc) * gemm_mr;
    }
};

// A block of one sample's output: columns [j0, j0 + cols), cols <= NC, of the conv of x into y
// (x: the sample's input (C, H, W); y: its output planes, row stride out.h * out.w).
struct conv_unit {
    const float* x;
    float* y;
    int j0, cols;
};

namespace detail {

// out[i] = src[start + i] for i < n, zero where start + i falls outside [0, limit): a run
// clipped to its input row (or flattened plane), the padding as zeros.
inline void copy_clipped(float* out, const float* src, std::ptrdiff_t start, std::ptrdiff_t limit, int n) {
    const auto lo = static_cast<int>(std::clamp<std::ptrdiff_t>(-start, 0, n));
    const auto hi = static_cast<int>(std::clamp<std::ptrdiff_t>(limit - start, lo, n));
    std::fill(out, out + lo, 0.0F);
    if (hi > lo) copy_run(out + lo, src + (start + lo), hi - lo);
    std::fill(out + hi, out + n, 0.0F);
}

// A run of a packed block: columns [j, j + len) of the block, one output row (or, for "flat"
// convs, consecutive input elements) and one NR panel.
struct col_run {
    int j, oh, ow, len;
};

// Convs whose im2col rows are shifted copies of the flattened input plane: a kh x 1 kernel
// (1x1 included) at stride 1 with no horizontal padding, so consecutive output positions read
// consecutive input elements across output rows too.
[[nodiscard]] inline bool flat_taps(const packed_conv& cv) {
    const window& g = cv.win;
    return g.kw == 1 && g.sw == 1 && g.sh == 1 && g.pl == 0 && g.pr == 0 && cv.in.w == cv.out.w;
}

// Packs rows [k0, k0 + kc) and columns [j0, j0 + cols) of the virtual im2col matrix into dst as
// ceil(cols / NR) panels of kc x NR (row-major), the micro-kernel's reading order; columns past
// the block are zero. The block's runs (same output row, same panel) are found once; each of
// the kc rows then copies them from one input row, zeroing what falls in the padding.
inline void pack_block(const packed_conv& cv, const float* x, int k0, int kc, int j0, int cols, float* dst) {
    const window& g = cv.win;
    const int ow_n = cv.out.w, in_h = cv.in.h, in_w = cv.in.w, panels = (cols + gemm_nr - 1) / gemm_nr;
    const std::size_t plane = static_cast<std::size_t>(in_h) * in_w;
    const std::size_t panel_stride = static_cast<std::size_t>(kc) * gemm_nr;
    const bool flat = flat_taps(cv);
    col_run runs[gemm_nc];
    int n_runs = 0;
    for (int j = 0; j < cols;) {
        const int jj = j0 + j, oh = jj / ow_n, ow = jj % ow_n;
        const int room = gemm_nr - j % gemm_nr;
        const int len = flat ? std::min(room, cols - j) : std::min({room, cols - j, ow_n - ow});
        runs[n_runs++] = {j, oh, ow, len};
        j += len;
    }
    const int tail = cols % gemm_nr;  // zero columns past the block in the last panel
    int c = k0 / (g.kh * g.kw), dh = k0 % (g.kh * g.kw) / g.kw, dw = k0 % g.kw;
    for (int kk = 0; kk < kc; ++kk) {
        const float* xc = x + static_cast<std::size_t>(c) * plane;
        float* drow = dst + static_cast<std::size_t>(kk) * gemm_nr;
        if (tail) std::fill(drow + (panels - 1) * panel_stride + tail, drow + (panels - 1) * panel_stride + gemm_nr, 0.0F);
        for (int r = 0; r < n_runs; ++r) {
            const col_run& run = runs[r];
            float* out = drow + static_cast<std::size_t>(run.j / gemm_nr) * panel_stride + run.j % gemm_nr;
            if (flat) {  // input elements [s, s + len) of the flattened plane, zero outside it
                const std::ptrdiff_t s = static_cast<std::ptrdiff_t>(j0 + run.j) + static_cast<std::ptrdiff_t>(dh - g.pt) * in_w;
                copy_clipped(out, xc, s, static_cast<std::ptrdiff_t>(plane), run.len);
                continue;
            }
            const int ih = run.oh * g.sh - g.pt + dh;
            if (ih < 0 || ih >= in_h) {
                std::fill(out, out + run.len, 0.0F);
                continue;
            }
            const float* row = xc + static_cast<std::size_t>(ih) * in_w;
            const int iw0 = run.ow * g.sw - g.pl + dw;
            if (g.sw == 1) {  // input columns [iw0, iw0 + len), zero outside the row
                copy_clipped(out, row, iw0, in_w, run.len);
            } else {
                for (int i = 0; i < run.len; ++i) {
                    const int iw = iw0 + i * g.sw;
                    out[i] = iw >= 0 && iw < in_w ? row[iw] : 0.0F;
                }
            }
        }
        if (++dw == g.kw) {  // next tap: (c, dh, dw) in torch's (C, KH, KW) order
            dw = 0;
            if (++dh == g.kh) {
                dh = 0;
                ++c;
            }
        }
    }
}

// 1x1 stride-1 convs without padding: row kk of a block is a run of input plane k0 + kk.
[[nodiscard]] inline bool pointwise(const packed_conv& cv) {
    return flat_taps(cv) && cv.win.kh == 1 && cv.win.pt == 0 && cv.win.pb == 0 && cv.in.h == cv.out.h;
}

// pack_block for `count` blocks of a pointwise conv at once, row by row: a task's consecutive
// units read each plane as one run of up to gemm_units * NC floats rather than NC-float pieces
// in separate passes, and each row asks for the next block's part of its plane ahead. Too many
// planes are read at once for the hardware prefetcher (Inception's 1x1 convs at batch 8: 35x35
// ones at 52 % of the FMA peak, ONNX Runtime's at 84 %); the two together took 11-12 % off
// their time at batch 8, the row-by-row order alone 4 % at batch 1 (bench/RESULTS.md).
// dst: the blocks, block_floats apart.
inline void pack_pointwise(const packed_conv& cv, const conv_unit* units, int count, int k0, int kc, float* dst,
                           std::size_t block_floats) {
    const std::size_t plane = static_cast<std::size_t>(cv.in.h) * cv.in.w;
    const std::size_t panel_stride = static_cast<std::size_t>(kc) * gemm_nr;
    for (int kk = 0; kk < kc; ++kk) {
        const std::size_t row = (static_cast<std::size_t>(k0) + static_cast<std::size_t>(kk)) * plane;
        for (int u = 0; u < count; ++u) {
            const float* src = units[u].x + row + units[u].j0;
            float* drow = dst + static_cast<std::size_t>(u) * block_floats + static_cast<std::size_t>(kk) * gemm_nr;
            const int cols = units[u].cols;
            for (int j = 0; j < cols; j += gemm_nr) {
                const int n = std::min(gemm_nr, cols - j);
                float* out = drow + static_cast<std::size_t>(j / gemm_nr) * panel_stride;
                copy_run(out, src + j, n);
                if (n < gemm_nr) std::fill(out + n, out + gemm_nr, 0.0F);
            }
        }
        const conv_unit& last = units[count - 1];  // the next block's part of this plane, ahead
        const std::size_t next = static_cast<std::size_t>(last.j0) + static_cast<std::size_t>(last.cols);
        for (std::size_t f = 0; f < static_cast<std::size_t>(gemm_nc); f += 16)  // a cache line per 16 floats
            if (next + f < plane) __builtin_prefetch(last.x + row + next + f);
    }
}

}  // namespace detail

// Column blocks one task may hold packed at once (conv_gemm_units).
inline constexpr int gemm_units = 4;

// Floats of scratch one task needs (gemm_units packed KC x NC blocks, SIMD-aligned) plus an edge tile.
inline constexpr std::size_t conv_scratch_floats =
    static_cast<std::size_t>(gemm_units) * gemm_kc * gemm_nc + static_cast<std::size_t>(gemm_mr) * gemm_nr + 64;

// Rows [row0, row1) (multiples of MR, or M) of `count` <= gemm_units blocks. K block by K block:
// every block's columns are packed, then each of their NR panels meets every row panel, so a
// K block of the weights is read from memory once per task rather than once per block (the
// weights of a 17x17 conv, up to 4 MB, were read again for each of its five blocks). Each
// output tile sums the same K blocks in the same order as one block at a time would.
// scratch: conv_scratch_floats floats.
inline void conv_gemm_units(const packed_conv& cv, const conv_unit* units, int count, int row0, int row1,
                            float* scratch) {
    const std::size_t ldy = static_cast<std::size_t>(cv.out.h) * cv.out.w;
    constexpr std::size_t block_floats = static_cast<std::size_t>(gemm_kc) * gemm_nc;
    float* b = detail::align64(scratch);
    float* tile = b + gemm_units * block_floats;
    for (int k0 = 0; k0 < cv.k; k0 += gemm_kc) {
        const int kc = std::min(gemm_kc, cv.k - k0);
        const bool first = k0 == 0, last = k0 + kc == cv.k;
        if (detail::pointwise(cv)) {
            detail::pack_pointwise(cv, units, count, k0, kc, b, block_floats);
        } else {
            for (int u = 0; u < count; ++u)
                detail::pack_block(cv, units[u].x, k0, kc, units[u].j0, units[u].cols, b + static_cast<std::size_t>(u) * block_floats);
        }
        for (int u = 0; u < count; ++u) {
            const conv_unit& unit = units[u];
            const int col_panels = (unit.cols + gemm_nr - 1) / gemm_nr;
            for (int cp = 0; cp < col_panels; ++cp) {
                const float* bp = b + static_cast<std::size_t>(u) * block_floats + static_cast<std::size_t>(cp) * kc * gemm_nr;
                const int jc = cp * gemm_nr, n = std::min(gemm_nr, unit.cols - jc);
                for (int row = row0; row < row1; row += gemm_mr) {
                    const int rows = std::min(gemm_mr, row1 - row);
                    const float* a = cv.a.data() + cv.panel_offset(k0, kc, row / gemm_mr);
                    float bias[gemm_mr]{};
                    std::copy(cv.bias.begin() + row, cv.bias.begin() + row + rows, bias);
                    float* c = unit.y + static_cast<std::size_t>(row) * ldy + unit.j0 + jc;
                    if (rows == gemm_mr && n == gemm_nr) {
                        detail::micro_kernel(kc, a, bp, c, ldy, first, last, bias, cv.relu);
                        continue;
                    }
                    // Edge: work in a full tile, copy the valid part in and out.
                    constexpr auto ldt = static_cast<std::size_t>(gemm_nr);
                    for (std::size_t i = 0; i < static_cast<std::size_t>(rows); ++i)
                        std::copy(c + i * ldy, c + i * ldy + n, tile + i * ldt);
                    if (n <= simd_width) detail::micro_kernel<1>(kc, a, bp, tile, ldt, first, last, bias, cv.relu);
                    else detail::micro_kernel(kc, a, bp, tile, ldt, first, last, bias, cv.relu);
                    for (std::size_t i = 0; i < static_cast<std::size_t>(rows); ++i)
                        std::copy(tile + i * ldt, tile + i * ldt + n, c + i * ldy);
                }
            }
        }
    }
}

// Rows [row0, row1) and columns [j0, j0 + cols), cols <= NC, of one sample's output (one unit).
inline void conv_gemm_block(const packed_conv& cv, const float* x, float* y, int row0, int row1, int j0, int cols,
                            float* scratch) {
    const conv_unit unit{x, y, j0, cols};
    conv_gemm_units(cv, &unit, 1, row0, row1, scratch);
}

// The whole output of one sample, in blocks (for tests and single-threaded use).
inline void conv_gemm(const packed_conv& cv, const float* x, float* y, float* scratch) {
    const int n = cv.out.h * cv.out.w;
    for (int j0 = 0; j0 < n; j0 += gemm_nc) conv_gemm_block(cv, x, y, 0, cv.m, j0, std::min(gemm_nc, n - j0), scratch);
}

}  // namespace ctnet::cpu
