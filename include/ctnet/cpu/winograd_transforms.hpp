// ctnet/cpu/winograd_transforms.hpp — the one-dimensional transforms of Winograd's F(T, R)
// (weights G, input B^T, output A^T) for the variants of cpu/winograd.hpp, which applies them
// along the rows and the columns of each tile: F(2, 3), F(4, 3), F(2, 5) and F(2, 7), and F(1, 1)
// for a dimension without a window. The input and output transforms work on NR tiles at once,
// one SIMD lane each; the weight transform is in double (rounded once, by the caller).
#pragma once

#include <xsimd/xsimd.hpp>

#include "gemm_kernel.hpp"

namespace ctnet::cpu {

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

}  // namespace ctnet::cpu
