// ctnet/cpu/winograd.hpp — stride-1 convolution as Winograd F(Th x Tw, Rh x Rw) on the GEMM
// micro-kernel (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015):
// F(2x2, 3x3), F(4x4, 3x3), F(2x2, 5x5), and in one dimension F(1x2, 1x7) and F(2x1, 7x1).
//
// Each Th x Tw output tile is computed from its nh x nw input patch d (n = T + R - 1 in each
// dimension) as Y = A^T [ (G g G^T) . (B^T d B) ] A, with the one-dimensional transforms of
// F(Th, Rh) along the columns and of F(Tw, Rw) along the rows: nh nw products per tile and
// channel instead of Rh Rw Th Tw, i.e. 2.25x (F(2x2, 3x3)), 4x (F(4x4, 3x3)), 2.8x (F(2x2, 5x5))
// or 1.75x (F(2, 7)) fewer multiply-adds, paid for by the input and output transforms. With
// the transforms in the Winograd domain the products are nh nw independent GEMMs, one per
// position xi of the patch:  M_xi (Cout x tiles) = U_xi (Cout x Cin) * V_xi (Cin x tiles),
// U = G g G^T of the weights (transformed and packed once, at load time), V = B^T d B of the
// input (transformed per task, straight into the micro-kernel's NR-wide panel layout). A task
// is one panel of NR tiles and a range of rows: it transforms the panel's input once
// (nh nw x Cin x NR floats), then, for groups of up to 8 MR-row panels, runs the GEMMs into a
// product buffer and applies the output transform, bias and ReLU.
// F(4x4, 3x3) and F(2x2, 5x5) use the same 6 points (0, 1, -1, 2, -2, infinity), so the same
// input transform B^T; F(2, 7) adds 1/2 and -1/2. Their coefficients (up to 8, and fractions
// rounded in U) cost more rounding error than F(2x2, 3x3)'s (0, +-1, +-1/2), and the tiles pad
// a map to a multiple of the tile: winograd_tiling_for says which runs where.
// Requires: a stride-1 window of 3x3, 5x5, 1x7 or 7x1; scratch: winograd_scratch_floats.
// Guarantees: within float rounding of cpu::ref::conv2d (tested on random shapes, every
// variant); tasks write disjoint outputs, so any thread count gives bit-identical results.
#pragma once

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "conv_gemm.hpp"

namespace ctnet::cpu {

// The variants this header implements: a tiling and the window it serves (winograd_tiling_for
// picks among them; benchmarks and tests run every one).
struct winograd_variant {
    winograd_tiling tiling;
    int kh, kw;
};
inline constexpr winograd_variant winograd_variants[] = {
    {{4, 4}, 3, 3}, {{2, 2}, 3, 3}, {{2, 2}, 5, 5}, {{1, 2}, 1, 7}, {{2, 1}, 7, 1},
};

// Output tiles (the last row and column of tiles may reach past the map).
[[nodiscard]] constexpr int winograd_tiles(shape out, winograd_tiling t) {
    return ((out.h + t.h - 1) / t.h) * ((out.w + t.w - 1) / t.w);
}

// The tiling a conv runs with as Winograd, or {} for the GEMM: a 3x3, 5x5, 1x7 or 7x1 window at
// stride 1, at least 16 input channels, and enough tiles per sample to fill panels of NR (below
// that the padded panel wastes what the transform saves; measured in bench/RESULTS.md). 3x3:
// 4x4 tiles from 2 panels of them (35x35 maps, 81 tiles, measured 1.2-1.35x faster than 2x2
// there), else 2x2 tiles from 4 panels; 5x5: 2x2 tiles, 1x7: 1x2, 7x1: 2x1, each from 4 panels.
[[nodiscard]] constexpr winograd_tiling winograd_tiling_for(const window& g, shape in, shape out) {
    if (g.sh != 1 || g.sw != 1 || in.c < 16) return {};
    const auto enough = [&](winograd_tiling t, int panels) { return winograd_tiles(out, t) >= panels * gemm_nr; };
    winograd_tiling t{};
    if (g.kh == 3 && g.kw == 3) t = enough({4, 4}, 2) ? winograd_tiling{4, 4} : winograd_tiling{2, 2};
    else if (g.kh == 5 && g.kw == 5) t = {2, 2};
    else if (g.kh == 1 && g.kw == 7) t = {1, 2};
    else if (g.kh == 7 && g.kw == 1) t = {2, 1};
    else return {};
    return enough(t, t.h * t.w == 16 ? 2 : 4) ? t : winograd_tiling{};
}

// Row panels whose products a task keeps at once (winograd_block).
inline constexpr int wino_group_panels = 8;

// Floats of per-task scratch for tiling t of a kh x kw window: V (nh nw x Cin x NR) and the
// nh nw products of a group of row panels (MR x NR each), 64-byte aligned.
[[nodiscard]] constexpr std::size_t winograd_scratch_floats(int cin, winograd_tiling t, int kh, int kw) {
    const auto xi = static_cast<std::size_t>(t.h + kh - 1) * (t.w + kw - 1);
    return xi * cin * gemm_nr + xi * wino_group_panels * gemm_mr * gemm_nr + 64;
}

namespace detail {

// The three transforms of F(T, R) in one dimension, applied along the patch rows (F(Tw, Rw)) and
// then along its columns (F(Th, Rh)). Lanes are NR independent tiles, in SIMD vectors (every
// pointer 64-byte aligned). F(1, 1) is the identity of a dimension without a window.
template <int T, int R>
struct wino_f;

template <>
struct wino_f<1, 1> {
    static constexpr int alpha = 1;
    static void weight(const double g[1], double u[1]) { u[0] = g[0]; }
};

inline simd load(const float* p) { return simd::load_aligned(p); }

// F(2, 3), points 0, 1, -1, infinity: coefficients 0, +-1 and +-1/2, exact in float.
template <>
struct wino_f<2, 3> {
    static constexpr int alpha = 4;
    // G g: G rows (1,0,0), (1/2,1/2,1/2), (1/2,-1/2,1/2), (0,0,1).
    static void weight(const double g[3], double u[4]) {
        u[0] = g[0];
        u[1] = 0.5 * (g[0] + g[1] + g[2]);
        u[2] = 0.5 * (g[0] - g[1] + g[2]);
        u[3] = g[2];
    }
    // B^T d: B^T rows (1,0,-1,0), (0,1,1,0), (0,-1,1,0), (0,1,0,-1).
    static void input(const float* const d[4], float* const e[4]) {
        for (int l = 0; l < gemm_nr; l += simd_width) {
            const simd d0 = load(d[0] + l), d1 = load(d[1] + l), d2 = load(d[2] + l), d3 = load(d[3] + l);
            (d0 - d2).store_aligned(e[0] + l);
            (d1 + d2).store_aligned(e[1] + l);
            (d2 - d1).store_aligned(e[2] + l);
            (d1 - d3).store_aligned(e[3] + l);
        }
    }
    // A^T m: A^T rows (1,1,1,0), (0,1,-1,-1).
    static void output(const float* const m[4], float* const o[2]) {
        for (int l = 0; l < gemm_nr; l += simd_width) {
            const simd m0 = load(m[0] + l), m1 = load(m[1] + l), m2 = load(m[2] + l), m3 = load(m[3] + l);
            (m0 + m1 + m2).store_aligned(o[0] + l);
            (m1 - m2 - m3).store_aligned(o[1] + l);
        }
    }
};

// The points 0, 1, -1, 2, -2, infinity (Lavin & Gray's F(4, 3) matrices): n = 6. G's row of a
// point p is s_p (1, p, p^2, ..., p^(R-1)), s = 1/4, -1/6, -1/6, 1/24, 1/24 (infinity: (0, ..., 0, 1));
// A^T's column of p is (1, p, ..., p^(T-1)) (infinity: (0, ..., 0, 1)). B^T depends on the points only.
struct wino_points6 {
    static constexpr int alpha = 6;
    // B^T d: B^T rows (4,0,-5,0,1,0), (0,-4,-4,1,1,0), (0,4,-4,-1,1,0), (0,-2,-1,2,1,0),
    // (0,2,-1,-2,1,0), (0,4,0,-5,0,1).
    static void input(const float* const d[6], float* const e[6]) {
        const simd four(4.0F), five(5.0F), two(2.0F);
        for (int l = 0; l < gemm_nr; l += simd_width) {
            const simd d0 = load(d[0] + l), d1 = load(d[1] + l), d2 = load(d[2] + l), d3 = load(d[3] + l);
            const simd d4 = load(d[4] + l), d5 = load(d[5] + l);
            const simd p = xsimd::fnma(four, d2, d4), q = xsimd::fnma(four, d1, d3), r = d4 - d2, s = two * (d3 - d1);
            xsimd::fnma(five, d2, xsimd::fma(four, d0, d4)).store_aligned(e[0] + l);
            (p + q).store_aligned(e[1] + l);
            (p - q).store_aligned(e[2] + l);
            (r + s).store_aligned(e[3] + l);
            (r - s).store_aligned(e[4] + l);
            xsimd::fnma(five, d3, xsimd::fma(four, d1, d5)).store_aligned(e[5] + l);
        }
    }
};

template <>
struct wino_f<4, 3> : wino_points6 {
    // G rows (1/4,0,0), (-1/6,-1/6,-1/6), (-1/6,1/6,-1/6), (1/24,1/12,1/6), (1/24,-1/12,1/6), (0,0,1).
    static void weight(const double g[3], double u[6]) {
        u[0] = g[0] / 4;
        u[1] = -(g[0] + g[1] + g[2]) / 6;
        u[2] = -(g[0] - g[1] + g[2]) / 6;
        u[3] = g[0] / 24 + g[1] / 12 + g[2] / 6;
        u[4] = g[0] / 24 - g[1] / 12 + g[2] / 6;
        u[5] = g[2];
    }
    // A^T rows (1,1,1,1,1,0), (0,1,-1,2,-2,0), (0,1,1,4,4,0), (0,1,-1,8,-8,1).
    static void output(const float* const m[6], float* const o[4]) {
        const simd two(2.0F), four(4.0F), eight(8.0F);
        for (int l = 0; l < gemm_nr; l += simd_width) {
            const simd m1 = load(m[1] + l), m2 = load(m[2] + l), m3 = load(m[3] + l), m4 = load(m[4] + l);
            const simd a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
            (load(m[0] + l) + a + c).store_aligned(o[0] + l);
            xsimd::fma(two, d, b).store_aligned(o[1] + l);
            xsimd::fma(four, c, a).store_aligned(o[2] + l);
            (xsimd::fma(eight, d, b) + load(m[5] + l)).store_aligned(o[3] + l);
        }
    }
};

template <>
struct wino_f<2, 5> : wino_points6 {
    // G rows (1/4,0,0,0,0), -1/6 (1,1,1,1,1), -1/6 (1,-1,1,-1,1), 1/24 (1,2,4,8,16), 1/24 (1,-2,4,-8,16), (0,0,0,0,1).
    static void weight(const double g[5], double u[6]) {
        const double even = g[0] + g[2] + g[4], odd = g[1] + g[3];
        const double even2 = g[0] + 4 * g[2] + 16 * g[4], odd2 = 2 * g[1] + 8 * g[3];
        u[0] = g[0] / 4;
        u[1] = -(even + odd) / 6;
        u[2] = -(even - odd) / 6;
        u[3] = (even2 + odd2) / 24;
        u[4] = (even2 - odd2) / 24;
        u[5] = g[4];
    }
    // A^T rows (1,1,1,1,1,0), (0,1,-1,2,-2,1).
    static void output(const float* const m[6], float* const o[2]) {
        const simd two(2.0F);
        for (int l = 0; l < gemm_nr; l += simd_width) {
            const simd m1 = load(m[1] + l), m2 = load(m[2] + l), m3 = load(m[3] + l), m4 = load(m[4] + l);
            (load(m[0] + l) + m1 + m2 + m3 + m4).store_aligned(o[0] + l);
            (xsimd::fma(two, m3 - m4, m1 - m2) + load(m[5] + l)).store_aligned(o[1] + l);
        }
    }
};

// F(2, 7), points 0, 1, -1, 2, -2, 1/2, -1/2, infinity: n = 8, for the 1x7 and 7x1 windows.
// G's row of p is s_p (1, p, ..., p^6) with s the Lagrange weights 1 / prod_(q != p) (p - q):
// -1, -2/9, -2/9, 1/90, 1/90, 32/45, 32/45; A^T's column of p is (1, p).
template <>
struct wino_f<2, 7> {
    static constexpr int alpha = 8;
    static void weight(const double g[7], double u[8]) {
        const auto at = [&](double p) {
            double v = 0.0, pk = 1.0;
            for (int k = 0; k < 7; ++k, pk *= p) v += pk * g[k];
            return v;
        };
        u[0] = -g[0];
        u[1] = -2.0 / 9.0 * at(1.0);
        u[2] = -2.0 / 9.0 * at(-1.0);
        u[3] = at(2.0) / 90.0;
        u[4] = at(-2.0) / 90.0;
        u[5] = 32.0 / 45.0 * at(0.5);
        u[6] = 32.0 / 45.0 * at(-0.5);
        u[7] = g[6];
    }
    // B^T rows (-1,0,21/4,0,-21/4,0,1,0), (0,1,1,-17/4,-17/4,1,1,0), (0,-1,1,17/4,-17/4,-1,1,0),
    // (0,1/2,1/4,-5/2,-5/4,2,1,0), (0,-1/2,1/4,5/2,-5/4,-2,1,0), (0,2,4,-5/2,-5,1/2,1,0),
    // (0,-2,4,5/2,-5,-1/2,1,0), (0,-1,0,21/4,0,-21/4,0,1).
    static void input(const float* const d[8], float* const e[8]) {
        const simd c21_4(5.25F), c17_4(4.25F), c5_2(2.5F), c5_4(1.25F), half(0.5F), quarter(0.25F), two(2.0F),
            four(4.0F), five(5.0F);
        for (int l = 0; l < gemm_nr; l += simd_width) {
            const simd d0 = load(d[0] + l), d1 = load(d[1] + l), d2 = load(d[2] + l), d3 = load(d[3] + l);
            const simd d4 = load(d[4] + l), d5 = load(d[5] + l), d6 = load(d[6] + l), d7 = load(d[7] + l);
            xsimd::fma(c21_4, d2 - d4, d6 - d0).store_aligned(e[0] + l);
            const simd a1 = xsimd::fnma(c17_4, d4, d2 + d6), b1 = xsimd::fnma(c17_4, d3, d1 + d5);
            (a1 + b1).store_aligned(e[1] + l);
            (a1 - b1).store_aligned(e[2] + l);
            const simd a3 = xsimd::fnma(c5_4, d4, xsimd::fma(quarter, d2, d6));
            const simd b3 = xsimd::fma(two, d5, xsimd::fnma(c5_2, d3, half * d1));
            (a3 + b3).store_aligned(e[3] + l);
            (a3 - b3).store_aligned(e[4] + l);
            const simd a5 = xsimd::fnma(five, d4, xsimd::fma(four, d2, d6));
            const simd b5 = xsimd::fma(half, d5, xsimd::fnma(c5_2, d3, two * d1));
            (a5 + b5).store_aligned(e[5] + l);
            (a5 - b5).store_aligned(e[6] + l);
            xsimd::fma(c21_4, d3 - d5, d7 - d1).store_aligned(e[7] + l);
        }
    }
    // A^T rows (1,1,1,1,1,1,1,0), (0,1,-1,2,-2,1/2,-1/2,1).
    static void output(const float* const m[8], float* const o[2]) {
        const simd two(2.0F), half(0.5F);
        for (int l = 0; l < gemm_nr; l += simd_width) {
            const simd m1 = load(m[1] + l), m2 = load(m[2] + l), m3 = load(m[3] + l), m4 = load(m[4] + l);
            const simd m5 = load(m[5] + l), m6 = load(m[6] + l);
            (load(m[0] + l) + (m1 + m2) + (m3 + m4) + (m5 + m6)).store_aligned(o[0] + l);
            (xsimd::fma(half, m5 - m6, xsimd::fma(two, m3 - m4, m1 - m2)) + load(m[7] + l)).store_aligned(o[1] + l);
        }
    }
};

}  // namespace detail

// U = G g G^T for every (output, input) channel pair, packed as nh nw A matrices [panel][Cin][MR]
// (rows past Cout zero), computed in double and rounded once.
// w: (Cout, Cin, Rh, Rw), already scaled by any folded batch norm.
template <int Th, int Tw, int Rh, int Rw>
std::vector<float> winograd_pack_weights_t(const float* w, int cout, int cin) {
    using fh = detail::wino_f<Th, Rh>;
    using fw = detail::wino_f<Tw, Rw>;
    constexpr int nh = fh::alpha, nw = fw::alpha;
    const int panels = (cout + gemm_mr - 1) / gemm_mr;
    const std::size_t per_xi = static_cast<std::size_t>(panels) * cin * gemm_mr;
    std::vector<float> u(per_xi * nh * nw, 0.0F);
    for (int m = 0; m < cout; ++m)
        for (int c = 0; c < cin; ++c) {
            const float* g = w + (static_cast<std::size_t>(m) * cin + c) * Rh * Rw;
            double t[Rw][nh];  // G_h applied to each kernel column: t[j] = G_h (g[0][j], ..., g[Rh-1][j])
            for (int j = 0; j < Rw; ++j) {
                double col[Rh];
                for (int i = 0; i < Rh; ++i) col[i] = g[i * Rw + j];
                fh::weight(col, t[j]);
            }
            for (int i = 0; i < nh; ++i) {
                double row[Rw], r[nw];
                for (int j = 0; j < Rw; ++j) row[j] = t[j][i];
                fw::weight(row, r);
                for (int j = 0; j < nw; ++j) {
                    const std::size_t xi = static_cast<std::size_t>(i) * nw + j;
                    u[xi * per_xi + (static_cast<std::size_t>(m / gemm_mr) * cin + c) * gemm_mr + m % gemm_mr] =
                        static_cast<float>(r[j]);
                }
            }
        }
    return u;
}

namespace detail {

// Calls f.template operator()<Th, Tw, Rh, Rw>() for the variant of tiling t and window g (one
// branch per entry of winograd_variants); any other pair is an error (naming both), not a guess.
template <class F>
decltype(auto) with_variant(winograd_tiling t, const window& g, F&& f) {
    static_assert(std::size(winograd_variants) == 5, "ctnet: with_variant needs a branch for every Winograd variant");
    const auto is = [&](int th, int tw, int kh, int kw) { return t.h == th && t.w == tw && g.kh == kh && g.kw == kw; };
    if (is(4, 4, 3, 3)) return f.template operator()<4, 4, 3, 3>();
    if (is(2, 2, 3, 3)) return f.template operator()<2, 2, 3, 3>();
    if (is(2, 2, 5, 5)) return f.template operator()<2, 2, 5, 5>();
    if (is(1, 2, 1, 7)) return f.template operator()<1, 2, 1, 7>();
    if (is(2, 1, 7, 1)) return f.template operator()<2, 1, 7, 1>();
    throw error("ctnet: no Winograd variant for " + std::to_string(t.h) + "x" + std::to_string(t.w) + " tiles of a " +
                std::to_string(g.kh) + "x" + std::to_string(g.kw) + " window");
}

}  // namespace detail

// w: (Cout, Cin, kh, kw); t: winograd_tiling_for the conv (or any supported tiling of its window).
inline std::vector<float> winograd_pack_weights(const float* w, int cout, int cin, winograd_tiling t, const window& g) {
    return detail::with_variant(t, g, [&]<int Th, int Tw, int Rh, int Rw>() {
        return winograd_pack_weights_t<Th, Tw, Rh, Rw>(w, cout, cin);
    });
}

namespace detail {

// V for tiles [t0, t0 + NR) of one sample (tiles past the plane's last are zero): for each input
// channel c and position xi, NR floats at v[(xi * Cin + c) * NR], the micro-kernel's B layout.
// Lanes run in segments of consecutive tiles of one tile row. Per patch row r, each segment's
// input row span (zero-padded) is copied to pb[r] at Tw * lane, so lane l's patch row is
// pb[r][Tw*l .. Tw*l + nw) and the patch is gathered with fixed strides for all NR lanes at
// once; the copy of the next segment overwrites the nw - Tw floats past a segment's end, which
// its last tiles read: they are kept aside and put back after the gather.
template <int Th, int Tw, int Rh, int Rw>
void winograd_input(const packed_conv& cv, const float* x, int t0, float* v) {
    using fh = wino_f<Th, Rh>;
    using fw = wino_f<Tw, Rw>;
    constexpr int nh = fh::alpha, nw = fw::alpha, over = nw - Tw, pb_floats = Tw * gemm_nr + 16;
    const window& g = cv.win;
    const int cin = cv.in.c, h = cv.in.h, w = cv.in.w, tw_n = (cv.out.w + Tw - 1) / Tw;
    const int count = std::min(gemm_nr, winograd_tiles(cv.out, {Th, Tw}) - t0);
    const std::size_t plane = static_cast<std::size_t>(h) * w, xi_stride = static_cast<std::size_t>(cin) * gemm_nr;
    struct segment {
        int lane, len, ih0, iw0, lo, hi;  // lanes [lane, lane + len); input rows from ih0, columns iw0 + [lo, hi) inside
    };
    segment segs[gemm_nr];
    int n_segs = 0;
    for (int lane = 0; lane < count;) {
        const int t = t0 + lane, th = t / tw_n, tw = t % tw_n, len = std::min(count - lane, tw_n - tw);
        const int iw0 = Tw * tw - g.pl, span = Tw * len + over;
        const int lo = std::clamp(-iw0, 0, span);
        segs[n_segs++] = {lane, len, Th * th - g.pt, iw0, lo, std::clamp(w - iw0, lo, span)};
        lane += len;
    }
    alignas(64) float pb[nh][pb_floats]{};  // zeros past the last tile (lanes past it compute outputs nobody stores)
    alignas(64) float d[nh][nw][gemm_nr];   // patch element (r, j) of each lane's tile
    alignas(64) float e[nh][nw][gemm_nr];   // transformed along the rows
    float kept[gemm_nr][nh][over > 0 ? over : 1];  // the floats past each segment's end, per patch row
    for (int c = 0; c < cin; ++c) {
        const float* xc = x + static_cast<std::size_t>(c) * plane;
        for (int r = 0; r < nh; ++r) {
            for (int s = 0; s < n_segs; ++s) {
                const segment& sg = segs[s];
                float* out = pb[r] + Tw * sg.lane;
                const int span = Tw * sg.len + over, ih = sg.ih0 + r;
                if (ih < 0 || ih >= h) {  // a row of padding
                    std::fill(out, out + span, 0.0F);
                } else {
                    const float* row = xc + static_cast<std::size_t>(ih) * w;  // input columns iw0 + [lo, hi)
                    std::fill(out, out + sg.lo, 0.0F);
                    for (int i = sg.lo; i < sg.hi; i += gemm_nr)
                        copy_run(out + i, row + (sg.iw0 + i), std::min(gemm_nr, sg.hi - i));
                    std::fill(out + sg.hi, out + span, 0.0F);
                }
                for (int j = 0; j < over; ++j) kept[s][r][j] = out[Tw * sg.len + j];
            }
            for (int j = 0; j < nw; ++j)
                for (int l = 0; l < gemm_nr; ++l) d[r][j][l] = pb[r][Tw * l + j];
        }
        for (int s = 0; s + 1 < n_segs; ++s) {  // its last tiles' columns that reach past Tw * (lane + len)
            const int end = segs[s].lane + segs[s].len;
            for (int back = 1; back * Tw < nw && end - back >= segs[s].lane; ++back)
                for (int r = 0; r < nh; ++r)
                    for (int j = back * Tw; j < nw; ++j) d[r][j][end - back] = kept[s][r][j - back * Tw];
        }
        // B^T d B: first along j (each patch row), then along r (each column of the result);
        // a dimension without a window (F(1, 1)) is passed through.
        float* vc = v + static_cast<std::size_t>(c) * gemm_nr;
        const auto v_at = [&](int r, int j) { return vc + (static_cast<std::size_t>(r) * nw + j) * xi_stride; };
        for (int r = 0; r < nh; ++r) {
            const float* dr[nw];
            float* er[nw];
            for (int j = 0; j < nw; ++j) {
                dr[j] = d[r][j];
                er[j] = nh == 1 ? v_at(r, j) : e[r][j];
            }
            if constexpr (nw > 1) fw::input(dr, er);
        }
        if constexpr (nh > 1)
            for (int j = 0; j < nw; ++j) {
                const float* ej[nh];
                float* vj[nh];
                for (int r = 0; r < nh; ++r) {
                    ej[r] = nw == 1 ? d[r][j] : e[r][j];
                    vj[r] = v_at(r, j);
                }
                fh::input(ej, vj);
            }
    }
}

template <int Th, int Tw, int Rh, int Rw>
void winograd_block_t(const packed_conv& cv, const float* u, const float* x, float* y, int row0, int row1, int t0,
                      float* scratch) {
    using fh = wino_f<Th, Rh>;
    using fw = wino_f<Tw, Rw>;
    constexpr int nh = fh::alpha, nw = fw::alpha, xis = nh * nw;
    const int cin = cv.in.c, oh_n = cv.out.h, ow_n = cv.out.w, tw_n = (ow_n + Tw - 1) / Tw;
    const int count = std::min(gemm_nr, winograd_tiles(cv.out, {Th, Tw}) - t0);
    const std::size_t ldy = static_cast<std::size_t>(oh_n) * ow_n;
    const std::size_t per_xi = static_cast<std::size_t>((cv.m + gemm_mr - 1) / gemm_mr) * cin * gemm_mr;
    float* v = align64(scratch);  // V panels: read with aligned loads
    float* prod = v + static_cast<std::size_t>(xis) * cin * gemm_nr;  // [xi][group's rows][NR]
    winograd_input<Th, Tw, Rh, Rw>(cv, x, t0, v);
    // Rows in groups of wino_group_panels row panels: per group, each xi's V panel (Cin x NR)
    // meets all the group's row panels while it is in L1, and the products of the whole group
    // wait in `prod` for the output transform. (Row panel by row panel, every row panel read
    // all of V, up to 440 KB, from L2.)
    const std::size_t group_floats = static_cast<std::size_t>(wino_group_panels) * gemm_mr * gemm_nr;
    for (int group = row0; group < row1; group += wino_group_panels * gemm_mr) {
        const int group_end = std::min(row1, group + wino_group_panels * gemm_mr);
        for (int xi = 0; xi < xis; ++xi) {
            const float* b = v + static_cast<std::size_t>(xi) * cin * gemm_nr;
            for (int row = group; row < group_end; row += gemm_mr) {
                const float* a = u + static_cast<std::size_t>(xi) * per_xi + static_cast<std::size_t>(row / gemm_mr) * cin * gemm_mr;
                float* c = prod + xi * group_floats + static_cast<std::size_t>(row - group) * gemm_nr;
                for (int k0 = 0; k0 < cin; k0 += gemm_kc) {
                    const int kc = std::min(gemm_kc, cin - k0);
                    micro_kernel(kc, a + static_cast<std::size_t>(k0) * gemm_mr, b + static_cast<std::size_t>(k0) * gemm_nr, c,
                                 gemm_nr, k0 == 0, false, nullptr, false);
                }
            }
        }
        for (int row = group; row < group_end; row += gemm_mr) {
            const int rows = std::min(gemm_mr, row1 - row);
            // Y = A^T M A; then bias, ReLU, and the tile's outputs.
            for (int i = 0; i < rows; ++i) {
                const float bias = cv.bias[static_cast<std::size_t>(row) + i];
                float* yc = y + (static_cast<std::size_t>(row) + i) * ldy;
                const auto m_at = [&](int r, int j) {
                    return prod + (r * nw + j) * group_floats + static_cast<std::size_t>(row - group + i) * gemm_nr;
                };
                alignas(64) float q[Th][nw][gemm_nr];   // A^T along the patch rows (F(Th, Rh))
                alignas(64) float out[Th][Tw][gemm_nr];  // then along the columns (F(Tw, Rw))
                for (int j = 0; j < nw; ++j) {
                    const float* mj[nh];
                    float* qj[Th];
                    for (int r = 0; r < nh; ++r) mj[r] = m_at(r, j);
                    for (int a = 0; a < Th; ++a) qj[a] = q[a][j];
                    if constexpr (nh > 1) fh::output(mj, qj);
                    else std::copy(mj[0], mj[0] + gemm_nr, qj[0]);
                }
                for (int a = 0; a < Th; ++a) {
                    const float* qa[nw];
                    float* oa[Tw];
                    for (int j = 0; j < nw; ++j) qa[j] = q[a][j];
                    for (int b = 0; b < Tw; ++b) oa[b] = out[a][b];
                    if constexpr (nw > 1) fw::output(qa, oa);
                    else std::copy(qa[0], qa[0] + gemm_nr, oa[0]);
                    for (int b = 0; b < Tw; ++b)
                        for (int l = 0; l < gemm_nr; l += simd_width) {
                            simd o = load(out[a][b] + l) + simd(bias);
                            if (cv.relu) o = xsimd::select(o <= simd(0.0F), simd(0.0F), o);  // a NaN stays NaN, as the GEMM epilogue
                            o.store_aligned(out[a][b] + l);
                        }
                }
                // Segments of consecutive tiles in one tile row: whole tiles as interleaved runs.
                for (int lane = 0; lane < count;) {
                    const int t = t0 + lane, oh = Th * (t / tw_n), tw = t % tw_n, len = std::min(count - lane, tw_n - tw);
                    const int ow = Tw * tw, whole = std::min(len, (ow_n - ow) / Tw);
                    for (int a = 0; a < Th && oh + a < oh_n; ++a) {
                        float* yr = yc + (static_cast<std::size_t>(oh) + a) * ow_n + ow;
                        for (int l = 0; l < whole; ++l)
                            for (int b = 0; b < Tw; ++b) yr[Tw * l + b] = out[a][b][lane + l];
                        for (int l = whole; l < len; ++l)  // the map's last tile column, cut off
                            for (int b = 0; Tw * l + b < ow_n - ow; ++b) yr[Tw * l + b] = out[a][b][lane + l];
                    }
                    lane += len;
                }
            }
        }
    }
}

}  // namespace detail

// Rows [row0, row1) (multiples of MR, or M) and tiles [t0, t0 + NR) of one sample's output,
// with the tiling cv.tiling and the window cv.win. x: the sample's input (C, H, W); y: its
// output planes. u: winograd_pack_weights of the conv; scratch: winograd_scratch_floats floats.
inline void winograd_block(const packed_conv& cv, const float* u, const float* x, float* y, int row0, int row1, int t0,
                           float* scratch) {
    detail::with_variant(cv.tiling, cv.win, [&]<int Th, int Tw, int Rh, int Rw>() {
        detail::winograd_block_t<Th, Tw, Rh, Rw>(cv, u, x, y, row0, row1, t0, scratch);
    });
}

// The whole output of one sample (for tests and single-threaded use).
inline void winograd_conv(const packed_conv& cv, const float* u, const float* x, float* y, float* scratch) {
    const int tiles = winograd_tiles(cv.out, cv.tiling);
    for (int t0 = 0; t0 < tiles; t0 += gemm_nr) winograd_block(cv, u, x, y, 0, cv.m, t0, scratch);
}

}  // namespace ctnet::cpu
