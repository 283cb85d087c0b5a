// ctnet/cpu/winograd.hpp — stride-1 convolution as Winograd F(T x T, R x R) on the GEMM
// micro-kernel (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015):
// F(2x2, 3x3), F(4x4, 3x3) and F(2x2, 5x5).
//
// Each T x T output tile is computed from its n x n input patch d (n = T + R - 1) as
// Y = A^T [ (G g G^T) . (B^T d B) ] A: n^2 products per tile and channel instead of R^2 T^2,
// i.e. 2.25x (F(2x2, 3x3)), 4x (F(4x4, 3x3)) or 2.8x (F(2x2, 5x5)) fewer multiply-adds, paid
// for by the input and output transforms. With the transforms in the Winograd domain the
// products are n^2 independent GEMMs, one per position xi of the patch:  M_xi (Cout x tiles) =
// U_xi (Cout x Cin) * V_xi (Cin x tiles), U = G g G^T of the weights (transformed and packed
// once, at load time), V = B^T d B of the input (transformed per task, straight into the
// micro-kernel's NR-wide panel layout). A task is one panel of NR tiles and a range of rows: it
// transforms the panel's input once (n^2 x Cin x NR floats), then, for groups of up to 8 MR-row
// panels, runs the GEMMs into a product buffer and applies the output transform, bias and ReLU.
// F(4x4, 3x3) and F(2x2, 5x5) use the same 6 points (0, 1, -1, 2, -2, infinity), so the same
// input transform B^T; their coefficients (2, 4, 5, 8 and 1/6, 1/12, 1/24, rounded in U) cost
// more rounding error than F(2x2, 3x3)'s (0, +-1, +-1/2), and the 4x4 tiles pad a map to a
// multiple of 4: winograd_tile_for says which runs where.
// Requires: a stride-1 window of 3x3 or 5x5; scratch: winograd_scratch_floats(Cin, T, R).
// Guarantees: within float rounding of cpu::ref::conv2d (tested on random shapes, every
// variant); tasks write disjoint outputs, so any thread count gives bit-identical results.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "conv_gemm.hpp"

namespace ctnet::cpu {

// Output tiles of T x T (the last row and column of tiles may reach past the map).
[[nodiscard]] constexpr int winograd_tiles(shape out, int tile) {
    return ((out.h + tile - 1) / tile) * ((out.w + tile - 1) / tile);
}

// The tile size a conv runs with as Winograd, or 0 for the GEMM: a 3x3 or 5x5 window at stride
// 1, at least 16 input channels, and enough tiles per sample to fill panels of NR (below that
// the padded panel wastes what the transform saves; measured in bench/RESULTS.md). 3x3:
// F(4x4) from 2 panels of 4x4 tiles (35x35 maps, 81 tiles, measured 1.2-1.35x faster than
// F(2x2) there), F(2x2) from 4 panels of 2x2 tiles; 5x5: F(2x2) from 4 panels.
[[nodiscard]] constexpr int winograd_tile_for(const window& g, shape in, shape out) {
    if (g.kh != g.kw || (g.kh != 3 && g.kh != 5) || g.sh != 1 || g.sw != 1 || in.c < 16) return 0;
    if (g.kh == 3 && winograd_tiles(out, 4) >= 2 * gemm_nr) return 4;
    return winograd_tiles(out, 2) >= 4 * gemm_nr ? 2 : 0;
}

[[nodiscard]] constexpr bool winograd_eligible(const window& g, shape in, shape out) {
    return winograd_tile_for(g, in, out) != 0;
}

// Row panels whose products a task keeps at once (winograd_block).
inline constexpr int wino_group_panels = 8;

// Floats of per-task scratch: V (n^2 x Cin x NR) and the n^2 products of a group of row panels
// (MR x NR each), 64-byte aligned.
[[nodiscard]] constexpr std::size_t winograd_scratch_floats(int cin, int tile, int kernel) {
    const auto xi = static_cast<std::size_t>(tile + kernel - 1) * (tile + kernel - 1);
    return xi * cin * gemm_nr + xi * wino_group_panels * gemm_mr * gemm_nr + 64;
}

namespace detail {

// The three transforms of F(T, R) in one dimension; each is applied along rows, then along
// columns. Lanes are NR independent tiles, in SIMD vectors (every pointer 64-byte aligned).
template <int T, int R>
struct wino_f;

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

}  // namespace detail

// U = G g G^T for every (output, input) channel pair, packed as n^2 A matrices [panel][Cin][MR]
// (rows past Cout zero), computed in double and rounded once.
// w: (Cout, Cin, R, R), already scaled by any folded batch norm.
template <int T, int R>
std::vector<float> winograd_pack_weights_t(const float* w, int cout, int cin) {
    using f = detail::wino_f<T, R>;
    constexpr int n = f::alpha;
    const int panels = (cout + gemm_mr - 1) / gemm_mr;
    const std::size_t per_xi = static_cast<std::size_t>(panels) * cin * gemm_mr;
    std::vector<float> u(per_xi * n * n, 0.0F);
    for (int m = 0; m < cout; ++m)
        for (int c = 0; c < cin; ++c) {
            const float* g = w + (static_cast<std::size_t>(m) * cin + c) * R * R;
            double t[R][n];  // G applied to each kernel column: t[j] = G (g[0][j], ..., g[R-1][j])
            for (int j = 0; j < R; ++j) {
                double col[R];
                for (int i = 0; i < R; ++i) col[i] = g[i * R + j];
                f::weight(col, t[j]);
            }
            for (int i = 0; i < n; ++i) {
                double row[R], r[n];
                for (int j = 0; j < R; ++j) row[j] = t[j][i];
                f::weight(row, r);
                for (int j = 0; j < n; ++j) {
                    const std::size_t xi = static_cast<std::size_t>(i) * n + j;
                    u[xi * per_xi + (static_cast<std::size_t>(m / gemm_mr) * cin + c) * gemm_mr + m % gemm_mr] =
                        static_cast<float>(r[j]);
                }
            }
        }
    return u;
}

// tile and kernel: 2 and 3, 4 and 3, or 2 and 5.
inline std::vector<float> winograd_pack_weights(const float* w, int cout, int cin, int tile, int kernel) {
    if (kernel == 5) return winograd_pack_weights_t<2, 5>(w, cout, cin);
    return tile == 4 ? winograd_pack_weights_t<4, 3>(w, cout, cin) : winograd_pack_weights_t<2, 3>(w, cout, cin);
}

namespace detail {

// V for tiles [t0, t0 + NR) of one sample (tiles past the plane's last are zero): for each input
// channel c and position xi, NR floats at v[(xi * Cin + c) * NR], the micro-kernel's B layout.
// Lanes run in segments of consecutive tiles of one tile row. Per patch row r, each segment's
// input row span (zero-padded) is copied to pb[r] at T * lane, so lane l's patch row is
// pb[r][T*l .. T*l + n) and the patch is gathered with fixed strides for all NR lanes at once;
// the copy of the next segment overwrites the n - T floats past a segment's end, which its last
// tiles read: they are kept aside and put back after the gather.
template <int T, int R>
void winograd_input(const packed_conv& cv, const float* x, int t0, float* v) {
    using f = wino_f<T, R>;
    constexpr int n = f::alpha, pb_floats = T * gemm_nr + 16;
    const window& g = cv.win;
    const int cin = cv.in.c, h = cv.in.h, w = cv.in.w, tw_n = (cv.out.w + T - 1) / T;
    const int count = std::min(gemm_nr, winograd_tiles(cv.out, T) - t0);
    const std::size_t plane = static_cast<std::size_t>(h) * w, xi_stride = static_cast<std::size_t>(cin) * gemm_nr;
    struct segment {
        int lane, len, ih0, iw0, lo, hi;  // lanes [lane, lane + len); input rows from ih0, columns iw0 + [lo, hi) inside
    };
    segment segs[gemm_nr];
    int n_segs = 0;
    for (int lane = 0; lane < count;) {
        const int t = t0 + lane, th = t / tw_n, tw = t % tw_n, len = std::min(count - lane, tw_n - tw);
        const int iw0 = T * tw - g.pl, span = T * len + (n - T);
        const int lo = std::clamp(-iw0, 0, span);
        segs[n_segs++] = {lane, len, T * th - g.pt, iw0, lo, std::clamp(w - iw0, lo, span)};
        lane += len;
    }
    alignas(64) float pb[n][pb_floats]{};  // zeros past the last tile (lanes past it compute outputs nobody stores)
    alignas(64) float d[n][n][gemm_nr];    // patch element (r, j) of each lane's tile
    alignas(64) float e[n][n][gemm_nr];    // B^T d
    float kept[gemm_nr][n][n - T];         // the n - T floats past each segment's end, per patch row
    for (int c = 0; c < cin; ++c) {
        const float* xc = x + static_cast<std::size_t>(c) * plane;
        for (int r = 0; r < n; ++r) {
            for (int s = 0; s < n_segs; ++s) {
                const segment& sg = segs[s];
                float* out = pb[r] + T * sg.lane;
                const int span = T * sg.len + (n - T), ih = sg.ih0 + r;
                if (ih < 0 || ih >= h) {  // a row of padding
                    std::fill(out, out + span, 0.0F);
                } else {
                    const float* row = xc + static_cast<std::size_t>(ih) * w + sg.iw0;
                    std::fill(out, out + sg.lo, 0.0F);
                    for (int i = sg.lo; i < sg.hi; i += gemm_nr) copy_run(out + i, row + i, std::min(gemm_nr, sg.hi - i));
                    std::fill(out + sg.hi, out + span, 0.0F);
                }
                for (int j = 0; j < n - T; ++j) kept[s][r][j] = out[T * sg.len + j];
            }
            for (int j = 0; j < n; ++j)
                for (int l = 0; l < gemm_nr; ++l) d[r][j][l] = pb[r][T * l + j];
        }
        for (int s = 0; s + 1 < n_segs; ++s) {  // its last tiles' columns that reach past T * (lane + len)
            const int end = segs[s].lane + segs[s].len;
            for (int back = 1; back * T < n && end - back >= segs[s].lane; ++back)
                for (int r = 0; r < n; ++r)
                    for (int j = back * T; j < n; ++j) d[r][j][end - back] = kept[s][r][j - back * T];
        }
        // B^T d B: first along j (each patch row), then along r (each column of the result).
        for (int r = 0; r < n; ++r) {
            const float* dr[n];
            float* er[n];
            for (int j = 0; j < n; ++j) {
                dr[j] = d[r][j];
                er[j] = e[r][j];
            }
            f::input(dr, er);
        }
        for (int j = 0; j < n; ++j) {
            const float* ej[n];
            float* vj[n];
            for (int r = 0; r < n; ++r) {
                ej[r] = e[r][j];
                vj[r] = v + (static_cast<std::size_t>(r) * n + j) * xi_stride + static_cast<std::size_t>(c) * gemm_nr;
            }
            f::input(ej, vj);
        }
    }
}

template <int T, int R>
void winograd_block_t(const packed_conv& cv, const float* u, const float* x, float* y, int row0, int row1, int t0,
                      float* scratch) {
    using f = wino_f<T, R>;
    constexpr int n = f::alpha, xis = n * n;
    const int cin = cv.in.c, oh_n = cv.out.h, ow_n = cv.out.w, tw_n = (ow_n + T - 1) / T;
    const int count = std::min(gemm_nr, winograd_tiles(cv.out, T) - t0);
    const std::size_t ldy = static_cast<std::size_t>(oh_n) * ow_n;
    const std::size_t per_xi = static_cast<std::size_t>((cv.m + gemm_mr - 1) / gemm_mr) * cin * gemm_mr;
    float* v = align64(scratch);  // V panels: read with aligned loads
    float* prod = v + static_cast<std::size_t>(xis) * cin * gemm_nr;  // [xi][group's rows][NR]
    winograd_input<T, R>(cv, x, t0, v);
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
                alignas(64) float q[T][n][gemm_nr];    // A^T along the patch rows
                alignas(64) float out[T][T][gemm_nr];  // then along the columns
                for (int j = 0; j < n; ++j) {
                    const float* mj[n];
                    float* qj[T];
                    for (int r = 0; r < n; ++r)
                        mj[r] = prod + (r * n + j) * group_floats + static_cast<std::size_t>(row - group + i) * gemm_nr;
                    for (int a = 0; a < T; ++a) qj[a] = q[a][j];
                    f::output(mj, qj);
                }
                for (int a = 0; a < T; ++a) {
                    const float* qa[n];
                    float* oa[T];
                    for (int j = 0; j < n; ++j) qa[j] = q[a][j];
                    for (int b = 0; b < T; ++b) oa[b] = out[a][b];
                    f::output(qa, oa);
                    for (int b = 0; b < T; ++b)
                        for (int l = 0; l < gemm_nr; l += simd_width) {
                            simd o = load(out[a][b] + l) + simd(bias);
                            if (cv.relu) o = xsimd::select(o <= simd(0.0F), simd(0.0F), o);  // a NaN stays NaN, as the GEMM epilogue
                            o.store_aligned(out[a][b] + l);
                        }
                }
                // Segments of consecutive tiles in one tile row: whole tiles as interleaved runs.
                for (int lane = 0; lane < count;) {
                    const int t = t0 + lane, oh = T * (t / tw_n), tw = t % tw_n, len = std::min(count - lane, tw_n - tw);
                    const int ow = T * tw, whole = std::min(len, (ow_n - ow) / T);
                    for (int a = 0; a < T && oh + a < oh_n; ++a) {
                        float* yr = yc + (static_cast<std::size_t>(oh) + a) * ow_n + ow;
                        for (int l = 0; l < whole; ++l)
                            for (int b = 0; b < T; ++b) yr[T * l + b] = out[a][b][lane + l];
                        for (int l = whole; l < len; ++l)  // the map's last tile column, cut off
                            for (int b = 0; T * l + b < ow_n - ow; ++b) yr[T * l + b] = out[a][b][lane + l];
                    }
                    lane += len;
                }
            }
        }
    }
}

}  // namespace detail

// Rows [row0, row1) (multiples of MR, or M) and tiles [t0, t0 + NR) of one sample's output,
// with the tile size cv.wino_tile and the window cv.win. x: the sample's input (C, H, W); y: its
// output planes. u: winograd_pack_weights of the conv; scratch: winograd_scratch_floats floats.
inline void winograd_block(const packed_conv& cv, const float* u, const float* x, float* y, int row0, int row1, int t0,
                           float* scratch) {
    if (cv.win.kh == 5) detail::winograd_block_t<2, 5>(cv, u, x, y, row0, row1, t0, scratch);
    else if (cv.wino_tile == 4) detail::winograd_block_t<4, 3>(cv, u, x, y, row0, row1, t0, scratch);
    else detail::winograd_block_t<2, 3>(cv, u, x, y, row0, row1, t0, scratch);
}

// The whole output of one sample (for tests and single-threaded use).
inline void winograd_conv(const packed_conv& cv, const float* u, const float* x, float* y, float* scratch) {
    const int tiles = winograd_tiles(cv.out, cv.wino_tile);
    for (int t0 = 0; t0 < tiles; t0 += gemm_nr) winograd_block(cv, u, x, y, 0, cv.m, t0, scratch);
}

}  // namespace ctnet::cpu
