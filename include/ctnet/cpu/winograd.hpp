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
// a map to a multiple of the tile: winograd_tiling_for (cpu/winograd_tiling.hpp) says which runs
// where. The one-dimensional transforms themselves are in cpu/winograd_transforms.hpp.
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
#include "conv_packed.hpp"
#include "winograd_transforms.hpp"

namespace ctnet::cpu {

// Row panels whose products a task keeps at once (winograd_block).
inline constexpr int wino_group_panels = 8;

// Floats of per-task scratch for tiling t of a kh x kw window: V (nh nw x Cin x NR) and the
// nh nw products of a group of row panels (MR x NR each), 64-byte aligned.
[[nodiscard]] constexpr std::size_t winograd_scratch_floats(int cin, winograd_tiling t, int kh, int kw) {
    const auto xi = static_cast<std::size_t>(t.h + kh - 1) * (t.w + kw - 1);
    return xi * cin * gemm_nr + xi * wino_group_panels * gemm_mr * gemm_nr + 64;
}

// U = G g G^T for every (output, input) channel pair, packed as nh nw A matrices [panel][Cin][MR]
// (rows past Cout zero), computed in double and rounded once.
// w: (Cout, Cin, Rh, Rw), already scaled by any folded batch norm.
// winograd_transform_weights_t writes output channels [m0, m1) of U into u (sized as the vector
// winograd_pack_weights_t returns; the rows of other channels are left as they are): the trainer
// transforms its changing weights every step into one buffer, split over its threads.
template <int Th, int Tw, int Rh, int Rw>
void winograd_transform_weights_t(const float* w, int cout, int cin, float* u, int m0, int m1) {
    using fh = detail::wino_f<Th, Rh>;
    using fw = detail::wino_f<Tw, Rw>;
    constexpr int nh = fh::alpha, nw = fw::alpha;
    const int panels = (cout + gemm_mr - 1) / gemm_mr;
    const std::size_t per_xi = static_cast<std::size_t>(panels) * cin * gemm_mr;
    for (int m = m0; m < m1; ++m)
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
}

// Floats of U for a conv of cout x cin channels and tiling t of a kh x kw window.
[[nodiscard]] constexpr std::size_t winograd_weight_floats(int cout, int cin, winograd_tiling t, int kh, int kw) {
    return static_cast<std::size_t>((cout + gemm_mr - 1) / gemm_mr) * cin * gemm_mr * (t.h + kh - 1) * (t.w + kw - 1);
}

template <int Th, int Tw, int Rh, int Rw>
std::vector<float> winograd_pack_weights_t(const float* w, int cout, int cin) {
    std::vector<float> u(winograd_weight_floats(cout, cin, {Th, Tw}, Rh, Rw), 0.0F);
    winograd_transform_weights_t<Th, Tw, Rh, Rw>(w, cout, cin, u.data(), 0, cout);
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

// Output channels [m0, m1) of U into u (winograd_weight_floats of the conv).
inline void winograd_transform_weights(const float* w, int cout, int cin, winograd_tiling t, const window& g, float* u,
                                       int m0, int m1) {
    detail::with_variant(t, g, [&]<int Th, int Tw, int Rh, int Rw>() {
        winograd_transform_weights_t<Th, Tw, Rh, Rw>(w, cout, cin, u, m0, m1);
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
