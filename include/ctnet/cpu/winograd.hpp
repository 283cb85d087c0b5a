// ctnet/cpu/winograd.hpp — 3x3 stride-1 convolution as Winograd F(2x2, 3x3) on the GEMM
// micro-kernel (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
//
// Each 2x2 output tile is computed from its 4x4 input patch d as Y = A^T [ (G g G^T) . (B^T d B) ] A:
// 16 products per tile and channel instead of 36, i.e. 2.25x fewer multiply-adds, paid for by
// the input and output transforms. With the transforms in the Winograd domain the products are
// 16 independent GEMMs, one per position xi of the 4x4 patch:  M_xi (Cout x tiles) =
// U_xi (Cout x Cin) * V_xi (Cin x tiles), U = G g G^T of the weights (transformed and packed
// once, at load time), V = B^T d B of the input (transformed per task, straight into the
// micro-kernel's NR-wide panel layout). A task is one panel of NR tiles and a range of rows: it
// transforms the panel's input once (16 x Cin x NR floats), then for each MR-row panel runs
// the 16 GEMMs into a small tile buffer and applies the output transform, bias and ReLU.
// Requires: a 3x3 window at stride 1 (any padding up to 2); scratch: winograd_scratch_floats(Cin).
// Guarantees: within float rounding of cpu::ref::conv2d (the transforms' coefficients are 0,
// +-1 and +-1/2, exact in float; tested on random shapes); tasks write disjoint outputs, so any
// thread count gives bit-identical results.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "conv_gemm.hpp"

namespace ctnet::cpu {

inline constexpr int wino_tile = 2;    // output tile side
inline constexpr int wino_patch = 4;   // input patch side
inline constexpr int wino_xi = 16;     // Winograd-domain positions (patch elements)

// Whether a conv runs as Winograd: 3x3, stride 1, and enough tiles per sample to fill panels
// (below that the padded panel wastes what the transform saves; measured in bench/RESULTS.md).
[[nodiscard]] constexpr bool winograd_eligible(const window& g, shape in, shape out) {
    const int tiles = ((out.h + 1) / 2) * ((out.w + 1) / 2);
    return g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.pt <= 2 && g.pb <= 2 && g.pl <= 2 && g.pr <= 2 &&
           tiles >= 4 * gemm_nr && in.c >= 16;
}

// Floats of per-task scratch: V (16 x Cin x NR), the 16 MR x NR product tiles, a patch row buffer.
[[nodiscard]] constexpr std::size_t winograd_scratch_floats(int cin) {
    return static_cast<std::size_t>(wino_xi) * cin * gemm_nr + static_cast<std::size_t>(wino_xi) * gemm_mr * gemm_nr +
           (2 * gemm_nr + 8) + 64;
}

// U = G g G^T for every (output, input) channel pair, packed as 16 A matrices [panel][Cin][MR]
// (rows past Cout zero). w: (Cout, Cin, 3, 3), already scaled by any folded batch norm.
inline std::vector<float> winograd_pack_weights(const float* w, int cout, int cin) {
    const int panels = (cout + gemm_mr - 1) / gemm_mr;
    const std::size_t per_xi = static_cast<std::size_t>(panels) * cin * gemm_mr;
    std::vector<float> u(per_xi * wino_xi, 0.0F);
    for (int m = 0; m < cout; ++m)
        for (int c = 0; c < cin; ++c) {
            const float* g = w + (static_cast<std::size_t>(m) * cin + c) * 9;
            float t[4][3];  // G g: rows of G = (1,0,0), (1/2,1/2,1/2), (1/2,-1/2,1/2), (0,0,1)
            for (int j = 0; j < 3; ++j) {
                t[0][j] = g[j];
                t[1][j] = 0.5F * (g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5F * (g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            for (int i = 0; i < 4; ++i) {
                const float r[4] = {t[i][0], 0.5F * (t[i][0] + t[i][1] + t[i][2]), 0.5F * (t[i][0] - t[i][1] + t[i][2]),
                                    t[i][2]};
                for (int j = 0; j < 4; ++j) {
                    const std::size_t xi = static_cast<std::size_t>(i) * 4 + j;
                    u[xi * per_xi + (static_cast<std::size_t>(m / gemm_mr) * cin + c) * gemm_mr + m % gemm_mr] = r[j];
                }
            }
        }
    return u;
}

namespace detail {

// V for tiles [t0, t0 + NR) of one sample (tiles past the plane's last are zero): for each input
// channel c and position xi, NR floats at v[(xi * Cin + c) * NR], the micro-kernel's B layout.
// The patch columns of consecutive tiles are read from one zero-padded input row segment.
inline void winograd_input(const packed_conv& cv, const float* x, int t0, float* v, float* rowbuf) {
    const window& g = cv.win;
    const int cin = cv.in.c, h = cv.in.h, w = cv.in.w, tw_n = (cv.out.w + 1) / 2, th_n = (cv.out.h + 1) / 2;
    const int tiles = th_n * tw_n, count = std::min(gemm_nr, tiles - t0);
    const std::size_t plane = static_cast<std::size_t>(h) * w, xi_stride = static_cast<std::size_t>(cin) * gemm_nr;
    alignas(64) float d[4][4][gemm_nr];  // patch element (r, j) of each lane's tile
    for (int c = 0; c < cin; ++c) {
        const float* xc = x + static_cast<std::size_t>(c) * plane;
        for (auto& row : d)
            for (auto& col : row) std::fill(col, col + gemm_nr, 0.0F);
        // Segments of consecutive tiles in one tile row.
        for (int lane = 0; lane < count;) {
            const int t = t0 + lane, th = t / tw_n, tw = t % tw_n, len = std::min(count - lane, tw_n - tw);
            const int iw0 = 2 * tw - g.pl, span = 2 * len + 2;
            for (int r = 0; r < 4; ++r) {
                const int ih = 2 * th - g.pt + r;
                if (ih < 0 || ih >= h) continue;  // zero rows stay zero
                const float* row = xc + static_cast<std::size_t>(ih) * w;
                const int lo = std::clamp(-iw0, 0, span), hi = std::clamp(w - iw0, lo, span);
                std::fill(rowbuf, rowbuf + lo, 0.0F);
                std::copy(row + (iw0 + lo), row + (iw0 + hi), rowbuf + lo);
                std::fill(rowbuf + hi, rowbuf + span, 0.0F);
                for (int j = 0; j < 4; ++j)
                    for (int l = 0; l < len; ++l) d[r][j][lane + l] = rowbuf[2 * l + j];
            }
            lane += len;
        }
        // B^T d B, B^T rows = (1,0,-1,0), (0,1,1,0), (0,-1,1,0), (0,1,0,-1): first along j, then r.
        alignas(64) float e[4][4][gemm_nr];
        for (int r = 0; r < 4; ++r)
            for (int l = 0; l < gemm_nr; ++l) {
                e[r][0][l] = d[r][0][l] - d[r][2][l];
                e[r][1][l] = d[r][1][l] + d[r][2][l];
                e[r][2][l] = d[r][2][l] - d[r][1][l];
                e[r][3][l] = d[r][1][l] - d[r][3][l];
            }
        for (int j = 0; j < 4; ++j) {
            float* v0 = v + (static_cast<std::size_t>(j) * xi_stride) + static_cast<std::size_t>(c) * gemm_nr;
            float* v1 = v + ((static_cast<std::size_t>(1) * 4 + j) * xi_stride) + static_cast<std::size_t>(c) * gemm_nr;
            float* v2 = v + ((static_cast<std::size_t>(2) * 4 + j) * xi_stride) + static_cast<std::size_t>(c) * gemm_nr;
            float* v3 = v + ((static_cast<std::size_t>(3) * 4 + j) * xi_stride) + static_cast<std::size_t>(c) * gemm_nr;
            for (int l = 0; l < gemm_nr; ++l) {
                v0[l] = e[0][j][l] - e[2][j][l];
                v1[l] = e[1][j][l] + e[2][j][l];
                v2[l] = e[2][j][l] - e[1][j][l];
                v3[l] = e[1][j][l] - e[3][j][l];
            }
        }
    }
}

}  // namespace detail

// Rows [row0, row1) (multiples of MR, or M) and tiles [t0, t0 + NR) of one sample's output.
// x: the sample's input (C, H, W); y: its output planes. u: winograd_pack_weights of the conv;
// scratch: winograd_scratch_floats(C) floats.
inline void winograd_block(const packed_conv& cv, const float* u, const float* x, float* y, int row0, int row1, int t0,
                           float* scratch) {
    const int cin = cv.in.c, oh_n = cv.out.h, ow_n = cv.out.w, tw_n = (ow_n + 1) / 2, th_n = (oh_n + 1) / 2;
    const int count = std::min(gemm_nr, th_n * tw_n - t0);
    const std::size_t ldy = static_cast<std::size_t>(oh_n) * ow_n;
    const std::size_t per_xi = static_cast<std::size_t>((cv.m + gemm_mr - 1) / gemm_mr) * cin * gemm_mr;
    float* v = detail::align64(scratch);  // V panels: read with aligned loads
    float* prod = v + static_cast<std::size_t>(wino_xi) * cin * gemm_nr;  // [xi][MR][NR]
    float* rowbuf = prod + static_cast<std::size_t>(wino_xi) * gemm_mr * gemm_nr;
    detail::winograd_input(cv, x, t0, v, rowbuf);
    constexpr auto tile_floats = static_cast<std::size_t>(gemm_mr) * gemm_nr;
    for (int row = row0; row < row1; row += gemm_mr) {
        const int rows = std::min(gemm_mr, row1 - row);
        for (int xi = 0; xi < wino_xi; ++xi) {
            const float* a = u + static_cast<std::size_t>(xi) * per_xi + static_cast<std::size_t>(row / gemm_mr) * cin * gemm_mr;
            const float* b = v + static_cast<std::size_t>(xi) * cin * gemm_nr;
            for (int k0 = 0; k0 < cin; k0 += gemm_kc) {
                const int kc = std::min(gemm_kc, cin - k0);
                detail::micro_kernel(kc, a + static_cast<std::size_t>(k0) * gemm_mr, b + static_cast<std::size_t>(k0) * gemm_nr,
                                     prod + xi * tile_floats, gemm_nr, k0 == 0, false, nullptr, false);
            }
        }
        // Y = A^T M A, A^T rows = (1,1,1,0), (0,1,-1,-1); then bias, ReLU, and the tile's outputs.
        for (int i = 0; i < rows; ++i) {
            const float bias = cv.bias[static_cast<std::size_t>(row) + i];
            float* yc = y + (static_cast<std::size_t>(row) + i) * ldy;
            alignas(64) float q[2][4][gemm_nr];
            for (int j = 0; j < 4; ++j) {
                const float* m0 = prod + (0 * 4 + j) * tile_floats + static_cast<std::size_t>(i) * gemm_nr;
                const float* m1 = prod + (1 * 4 + j) * tile_floats + static_cast<std::size_t>(i) * gemm_nr;
                const float* m2 = prod + (2 * 4 + j) * tile_floats + static_cast<std::size_t>(i) * gemm_nr;
                const float* m3 = prod + (3 * 4 + j) * tile_floats + static_cast<std::size_t>(i) * gemm_nr;
                for (int l = 0; l < gemm_nr; ++l) {
                    q[0][j][l] = m0[l] + m1[l] + m2[l];
                    q[1][j][l] = m1[l] - m2[l] - m3[l];
                }
            }
            alignas(64) float out[2][2][gemm_nr];
            for (int a = 0; a < 2; ++a)
                for (int l = 0; l < gemm_nr; ++l) {
                    float o0 = q[a][0][l] + q[a][1][l] + q[a][2][l] + bias;
                    float o1 = q[a][1][l] - q[a][2][l] - q[a][3][l] + bias;
                    if (cv.relu) {  // zero where <= 0: a NaN stays NaN, as the GEMM epilogue
                        o0 = o0 <= 0.0F ? 0.0F : o0;
                        o1 = o1 <= 0.0F ? 0.0F : o1;
                    }
                    out[a][0][l] = o0;
                    out[a][1][l] = o1;
                }
            for (int l = 0; l < count; ++l) {
                const int t = t0 + l, oh = 2 * (t / tw_n), ow = 2 * (t % tw_n);
                for (int a = 0; a < 2 && oh + a < oh_n; ++a) {
                    float* yr = yc + (static_cast<std::size_t>(oh) + a) * ow_n + ow;
                    yr[0] = out[a][0][l];
                    if (ow + 1 < ow_n) yr[1] = out[a][1][l];
                }
            }
        }
    }
}

// The whole output of one sample (for tests and single-threaded use).
inline void winograd_conv(const packed_conv& cv, const float* u, const float* x, float* y, float* scratch) {
    const int tiles = ((cv.out.h + 1) / 2) * ((cv.out.w + 1) / 2);
    for (int t0 = 0; t0 < tiles; t0 += gemm_nr) winograd_block(cv, u, x, y, 0, cv.m, t0, scratch);
}

}  // namespace ctnet::cpu
