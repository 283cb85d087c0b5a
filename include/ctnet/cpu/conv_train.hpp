// ctnet/cpu/conv_train.hpp — the convolution passes of training on the general GEMM of
// cpu/gemm.hpp, with their im2col / col2im and work buffers.
//
// Training convolutions (per sample, NCHW):
//   forward      Y = W * col(X)                       (col: the im2col matrix, K x HW)
//   weights      dW += dY * col(X)^T
//   input        dX += col2im(W^T * dY)
// For a 1x1 stride-1 conv col(X) is X itself and no im2col buffer is used.
// They split the batch: each thread takes a fixed chunk of samples (thread_pool::run_ranges)
// with single-threaded GEMMs (small per-sample matrices scale badly when split further), and
// weight gradients are summed per chunk, then added in chunk order (deterministic for a given
// thread count).
// Requires: a conv_workspace sized for the largest conv (cpu/train_kernels.hpp sizes it); a
// thread_pool owned by the caller.
// Guarantees: no allocation; results within float rounding of the loops in cpu/reference.hpp and
// cpu/backward.hpp (tests/test_train.cpp compares them on random shapes).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <xsimd/xsimd.hpp>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../graph/program.hpp"
#include "gemm.hpp"
#include "gemm_kernel.hpp"
#include "thread_pool.hpp"

namespace ctnet::cpu {

using ctnet::is_pointwise;  // graph/program.hpp

// The sum of n floats in SIMD partial sums (one order for every call, so deterministic).
[[nodiscard]] inline float sum(const float* v, std::size_t n) {
    constexpr auto w = static_cast<std::size_t>(simd_width);
    simd s0(0.0F), s1(0.0F);
    std::size_t j = 0;
    for (; j + 2 * w <= n; j += 2 * w) {
        s0 += simd::load_unaligned(v + j);
        s1 += simd::load_unaligned(v + j + w);
    }
    for (; j + w <= n; j += w) s0 += simd::load_unaligned(v + j);
    float acc = xsimd::hadd(s0 + s1);
    for (; j < n; ++j) acc += v[j];
    return acc;
}

// dst[i] = src[i] for i < n: rows of up to 64 floats in vector moves (a library call per short
// row costs more than the copy), longer ones by memcpy.
inline void copy_row(float* dst, const float* src, int n) {
    if (n > 2 * gemm_nr) {
        std::memcpy(dst, src, sizeof(float) * static_cast<std::size_t>(n));
    } else if (n > gemm_nr) {
        detail::copy_run(dst, src, gemm_nr);
        detail::copy_run(dst + gemm_nr, src + gemm_nr, n - gemm_nr);
    } else if (n > 0) {
        detail::copy_run(dst, src, n);
    }
}

// d[j] += r[j] for j < n: a row of col2im at stride 1 (written out: the compiler cannot rule out
// that the rows overlap, and its overlap test costs more than rows of 7 to 28 floats save).
inline void add_row(float* d, const float* r, int n) {
    int j = 0;
    for (; j + simd_width <= n; j += simd_width)
        (simd::load_unaligned(d + j) + simd::load_unaligned(r + j)).store_unaligned(d + j);
#if defined(__AVX512F__)
    if (j < n) {
        const auto m = static_cast<__mmask16>((1U << (n - j)) - 1U);
        _mm512_mask_storeu_ps(d + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d + j), _mm512_maskz_loadu_ps(m, r + j)));
    }
#else
    for (; j < n; ++j) d[j] += r[j];
#endif
}

// Rows at stride 2 (the grid reductions): dst[i] = src[2 i] (im2col) and dst[2 i] += src[i]
// (col2im) for i < n. With AVX-512, 16 at a time: two (masked) loads and one two-source
// permute, or a permute to the even lanes and masked adds, so only the elements the scalar loop
// touches are read or written, with the same single addition each.
inline void gather_stride2(float* dst, const float* src, int n) {
    int i = 0;
#if defined(__AVX512F__)
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (; i < n; i += 16) {
        const int c = std::min(16, n - i), need = 2 * c - 1;  // src[2i .. 2i + need)
        const auto mlo = static_cast<__mmask16>(need >= 16 ? 0xFFFFU : (1U << need) - 1U);
        const auto mhi = static_cast<__mmask16>(need > 16 ? (1U << (need - 16)) - 1U : 0U);
        const float* s = src + 2 * static_cast<std::ptrdiff_t>(i);
        const __m512 v = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(mlo, s), even, _mm512_maskz_loadu_ps(mhi, s + 16));
        _mm512_mask_storeu_ps(dst + i, static_cast<__mmask16>((1U << c) - 1U), v);
    }
#endif
    for (; i < n; ++i) dst[i] = src[2 * static_cast<std::ptrdiff_t>(i)];
}

inline void scatter_add_stride2(float* dst, const float* src, int n) {
    int i = 0;
#if defined(__AVX512F__)
    const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    const auto evens = [](int t) {  // the even lanes 2u for u < t (t <= 8)
        return static_cast<__mmask16>(t <= 0 ? 0U : 0x5555U & ((1U << (2 * t - 1)) - 1U));
    };
    for (; i < n; i += 16) {
        const int c = std::min(16, n - i);
        const __m512 v = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1U << c) - 1U), src + i);
        float* d = dst + 2 * static_cast<std::ptrdiff_t>(i);
        const __mmask16 m0 = evens(std::min(c, 8)), m1 = evens(c - 8);
        const __m512 d0 = _mm512_maskz_loadu_ps(m0, d), d1 = _mm512_maskz_loadu_ps(m1, d + 16);
        _mm512_mask_storeu_ps(d, m0, _mm512_add_ps(d0, _mm512_mask_permutexvar_ps(v, 0xFFFF, lo, v)));
        if (m1 != 0) _mm512_mask_storeu_ps(d + 16, m1, _mm512_add_ps(d1, _mm512_mask_permutexvar_ps(v, 0xFFFF, hi, v)));
    }
#endif
    for (; i < n; ++i) dst[2 * static_cast<std::ptrdiff_t>(i)] += src[i];
}

// col (K x HW, K = C * KH * KW): the taps of every output position of one sample, zero padding.
// ld: the row stride of col (HW, or G * HW when G samples share the matrix side by side).
inline void im2col(const float* x, shape in, shape out, const window& g, float* col, std::size_t ld = 0) {
    const std::size_t hw = ld != 0 ? ld : static_cast<std::size_t>(out.h) * out.w;
    for (int c = 0; c < in.c; ++c)
        for (int kh = 0; kh < g.kh; ++kh)
            for (int kw = 0; kw < g.kw; ++kw) {
                float* row = col + ((static_cast<std::size_t>(c) * g.kh + kh) * g.kw + kw) * hw;
                const float* xc = x + static_cast<std::size_t>(c) * in.h * in.w;
                const int off = kw - g.pl;
                const auto [a, b] = inside_columns(off, g.sw, in.w, out.w);
                for (int oh = 0; oh < out.h; ++oh) {
                    const int ih = oh * g.sh - g.pt + kh;
                    float* r = row + static_cast<std::size_t>(oh) * out.w;
                    if (ih < 0 || ih >= in.h) {
                        std::fill(r, r + out.w, 0.0F);
                        continue;
                    }
                    const float* xr = xc + static_cast<std::ptrdiff_t>(ih) * in.w;  // column ow reads xr[ow * sw + off]
                    std::fill(r, r + a, 0.0F);
                    if (g.sw == 1) {
                        copy_row(r + a, xr + (a + off), b - a);
                    } else if (g.sw == 2) {
                        if (b > a) gather_stride2(r + a, xr + (2 * a + off), b - a);
                    } else {
                        for (int ow = a; ow < b; ++ow) r[ow] = xr[ow * g.sw + off];
                    }
                    std::fill(r + b, r + out.w, 0.0F);
                }
            }
}

// dx += the taps of col added back to the positions they were read from (adjoint of im2col).
inline void col2im_add(const float* col, shape in, shape out, const window& g, float* dx, std::size_t ld = 0) {
    const std::size_t hw = ld != 0 ? ld : static_cast<std::size_t>(out.h) * out.w;
    for (int c = 0; c < in.c; ++c)
        for (int kh = 0; kh < g.kh; ++kh)
            for (int kw = 0; kw < g.kw; ++kw) {
                const float* row = col + ((static_cast<std::size_t>(c) * g.kh + kh) * g.kw + kw) * hw;
                float* dc = dx + static_cast<std::size_t>(c) * in.h * in.w;
                const int off = kw - g.pl;
                const auto [a, b] = inside_columns(off, g.sw, in.w, out.w);
                for (int oh = 0; oh < out.h; ++oh) {
                    const int ih = oh * g.sh - g.pt + kh;
                    if (ih < 0 || ih >= in.h) continue;
                    const float* r = row + static_cast<std::size_t>(oh) * out.w;
                    float* dr = dc + static_cast<std::ptrdiff_t>(ih) * in.w;
                    if (g.sw == 1) {
                        if (b > a) add_row(dr + (a + off), r + a, b - a);
                    } else if (g.sw == 2) {
                        if (b > a) scatter_add_stride2(dr + (2 * a + off), r + a, b - a);
                    } else {
                        for (int ow = a; ow < b; ++ow) dr[ow * g.sw + off] += r[ow];
                    }
                }
            }
}

// Samples per GEMM: on small maps a thread's samples go side by side into one matrix until it has
// about conv_group_columns columns (7x7: 10 samples, 14x14: 2, 8x8: 8), so the micro-kernel
// runs full tiles over one long row instead of a 49-column edge per sample. Each output
// element's sum has the same terms in the same order (the GEMM sums along K, and the weight
// gradient's K runs over the samples in turn), so the results are bit-identical.
inline constexpr int conv_group_columns = 512;
[[nodiscard]] constexpr int conv_group(int hw) { return hw >= conv_group_columns ? 1 : conv_group_columns / hw; }

// Floats of one thread's col buffer (K x G * HW; a 1x1 stride-1 conv needs it only when grouped)
// and of its grouped output / dY buffer (C_out x G * HW, only when grouped).
[[nodiscard]] constexpr std::size_t conv_col_floats(int k, int hw, bool pointwise) {
    const int g = conv_group(hw);
    return pointwise && g == 1 ? 0 : static_cast<std::size_t>(k) * g * hw;
}
[[nodiscard]] constexpr std::size_t conv_group_floats(int c_out, int hw) {
    const int g = conv_group(hw);
    return g == 1 ? 0 : static_cast<std::size_t>(c_out) * g * hw;
}

// Work buffers of the training convolutions, sized for the largest conv of a network.
struct conv_workspace {
    float* col;       // per thread: conv_col_floats of the largest conv
    std::size_t col_stride;
    float* packed_w;  // the largest packed weight matrix (W or W^T), shared
    float* packed_a;  // per thread: the largest packed dY
    std::size_t packed_stride;
    float* scratch;   // per thread: gemm_thread_scratch
    float* partial;   // per thread: dW and db of the largest conv
    std::size_t partial_stride;
    float* group;     // per thread: conv_group_floats of the largest conv
    std::size_t group_stride;
};

// Planes of m samples side by side: dst[c * ld + j * hw + p] = src[j * ss + c * hw + p], and back.
inline void group_planes(float* dst, std::size_t ld, const float* src, std::size_t ss, int m, int c, int hw) {
    for (int j = 0; j < m; ++j)
        for (int q = 0; q < c; ++q)
            copy_row(dst + static_cast<std::size_t>(q) * ld + static_cast<std::size_t>(j) * hw,
                     src + static_cast<std::size_t>(j) * ss + static_cast<std::size_t>(q) * hw, hw);
}
inline void ungroup_planes(float* dst, std::size_t ds, const float* src, std::size_t ld, int m, int c, int hw) {
    for (int j = 0; j < m; ++j)
        for (int q = 0; q < c; ++q)
            copy_row(dst + static_cast<std::size_t>(j) * ds + static_cast<std::size_t>(q) * hw,
                     src + static_cast<std::size_t>(q) * ld + static_cast<std::size_t>(j) * hw, hw);
}

// Y = W * col(X) + bias for each of n samples (x, y: sample strides xs, ys; y planes contiguous).
// Task t of T = min(n, threads) takes samples task_range(n, T, t): a fixed split for each T.
inline void conv_forward_gemm(const float* x, std::size_t xs, shape in, float* y, std::size_t ys, shape out, int n,
                              const float* w, const float* bias, const window& g, conv_workspace ws,
                              thread_pool& pool) {
    const int k = in.c * g.kh * g.kw, hw = out.h * out.w;
    const bool pointwise = is_pointwise(g);
    const gemm_args proto{.m = out.c, .n = hw, .k = k, .a = {w, static_cast<std::size_t>(k), 1}, .b = {},
                          .c = nullptr, .ldc = static_cast<std::size_t>(hw), .bias = bias};
    if (k == 0) return;
    gemm_pack_a(proto, ws.packed_w, 0, (out.c + gemm_mr - 1) / gemm_mr);
    const int group = conv_group(hw);
    pool.run_ranges(n, std::min(n, pool.size()), [&](int i0, int i1, int thread, int) {
        float* col = ws.col + static_cast<std::size_t>(thread) * ws.col_stride;
        float* scratch = ws.scratch + static_cast<std::size_t>(thread) * gemm_thread_scratch;
        for (int i = i0; i < i1;) {
            const int m = std::min(group, i1 - i);
            if (m > 1) {  // m samples side by side: one GEMM, then each sample's planes to y
                const auto ld = static_cast<std::size_t>(m) * hw;
                for (int j = 0; j < m; ++j)
                    im2col(x + (i + j) * xs, in, out, g, col + static_cast<std::size_t>(j) * hw, ld);
                float* grp = ws.group + static_cast<std::size_t>(thread) * ws.group_stride;
                gemm_args a = proto;
                a.n = static_cast<int>(ld);
                a.b = {col, ld, 1};
                a.c = grp;
                a.ldc = ld;
                gemm_packed(a, ws.packed_w, scratch);
                ungroup_planes(y + i * ys, ys, grp, ld, m, out.c, hw);
                i += m;
                continue;
            }
            const float* xi = x + i * xs;
            if (!pointwise) im2col(xi, in, out, g, col);
            gemm_args a = proto;
            a.b = {pointwise ? xi : col, static_cast<std::size_t>(hw), 1};
            a.c = y + i * ys;
            gemm_packed(a, ws.packed_w, scratch);
            ++i;
        }
    });
}

// dW += sum_i dY_i col(X_i)^T, db += row sums of dY_i, dX_i += col2im(W^T dY_i) (dx may be null).
// Each task sums its samples into its own partial dW / db; the partials are added in task order.
inline void conv_backward_gemm(const float* x, std::size_t xs, shape in, const float* dy, std::size_t dys, shape out,
                               float* dx, std::size_t dxs, int n, const float* w, float* dw, float* db,
                               const window& g, conv_workspace ws, thread_pool& pool) {
    const int k = in.c * g.kh * g.kw, hw = out.h * out.w;
    const std::size_t nw = static_cast<std::size_t>(out.c) * k;
    const bool pointwise = is_pointwise(g);
    if (k == 0) return;
    const gemm_args wt{.m = k, .n = hw, .k = out.c, .a = {w, 1, static_cast<std::size_t>(k)}, .b = {}, .c = nullptr,
                       .ldc = static_cast<std::size_t>(hw)};
    if (dx) gemm_pack_a(wt, ws.packed_w, 0, (k + gemm_mr - 1) / gemm_mr);
    const int tasks = std::min(n, pool.size()), group = conv_group(hw);
    pool.run_ranges(n, tasks, [&](int i0, int i1, int thread, int task) {
        float* col = ws.col + static_cast<std::size_t>(thread) * ws.col_stride;
        float* packed = ws.packed_a + static_cast<std::size_t>(thread) * ws.packed_stride;
        float* scratch = ws.scratch + static_cast<std::size_t>(thread) * gemm_thread_scratch;
        float* pdw = ws.partial + static_cast<std::size_t>(task) * ws.partial_stride;
        float* pdb = pdw + nw;
        std::fill(pdw, pdw + nw + out.c, 0.0F);
        for (int i = i0; i < i1;) {
            const int m = std::min(group, i1 - i);
            if (m > 1) {  // m samples side by side, as in conv_forward_gemm
                const auto ld = static_cast<std::size_t>(m) * hw;
                float* grp = ws.group + static_cast<std::size_t>(thread) * ws.group_stride;
                group_planes(grp, ld, dy + i * dys, dys, m, out.c, hw);
                if (db)
                    for (int j = 0; j < m; ++j)
                        for (int o = 0; o < out.c; ++o)
                            pdb[o] += sum(grp + static_cast<std::size_t>(o) * ld + static_cast<std::size_t>(j) * hw,
                                          static_cast<std::size_t>(hw));
                for (int j = 0; j < m; ++j)
                    im2col(x + (i + j) * xs, in, out, g, col + static_cast<std::size_t>(j) * hw, ld);
                const gemm_args gw{.m = out.c, .n = k, .k = static_cast<int>(ld), .a = {grp, ld, 1}, .b = {col, 1, ld},
                                   .c = pdw, .ldc = static_cast<std::size_t>(k), .accumulate = true};
                gemm_pack_a(gw, packed, 0, (out.c + gemm_mr - 1) / gemm_mr);
                gemm_packed(gw, packed, scratch);
                if (dx) {
                    gemm_args gd = wt;
                    gd.n = static_cast<int>(ld);
                    gd.b = {grp, ld, 1};
                    gd.c = col;
                    gd.ldc = ld;
                    gd.accumulate = pointwise;  // pointwise: dX's planes grouped, added to, put back
                    if (pointwise) group_planes(col, ld, dx + i * dxs, dxs, m, in.c, hw);
                    gemm_packed(gd, ws.packed_w, scratch);
                    if (pointwise) {
                        ungroup_planes(dx + i * dxs, dxs, col, ld, m, in.c, hw);
                    } else {
                        for (int j = 0; j < m; ++j)
                            col2im_add(col + static_cast<std::size_t>(j) * hw, in, out, g, dx + (i + j) * dxs, ld);
                    }
                }
                i += m;
                continue;
            }
            const float* gi = dy + i * dys;
            if (db)
                for (int o = 0; o < out.c; ++o) pdb[o] += sum(gi + static_cast<std::size_t>(o) * hw, static_cast<std::size_t>(hw));
            const float* xi = x + i * xs;
            if (!pointwise) im2col(xi, in, out, g, col);
            // dW (Cout x K) += dY (Cout x HW) * col^T (HW x K)
            const gemm_args gw{.m = out.c, .n = k, .k = hw, .a = {gi, static_cast<std::size_t>(hw), 1},
                               .b = {pointwise ? xi : col, 1, static_cast<std::size_t>(hw)}, .c = pdw,
                               .ldc = static_cast<std::size_t>(k), .accumulate = true};
            if (!gemm_empty(gw)) {
                gemm_pack_a(gw, packed, 0, (out.c + gemm_mr - 1) / gemm_mr);
                gemm_packed(gw, packed, scratch);
            }
            if (!dx) {
                ++i;
                continue;
            }
            // dcol (K x HW) = W^T (K x Cout) * dY (Cout x HW); pointwise: straight into dX.
            float* dxi = dx + i * dxs;
            gemm_args gd = wt;
            gd.b = {gi, static_cast<std::size_t>(hw), 1};
            gd.c = pointwise ? dxi : col;
            gd.accumulate = pointwise;
            gemm_packed(gd, ws.packed_w, scratch);
            if (!pointwise) col2im_add(col, in, out, g, dxi);
            ++i;
        }
    });
    for (int t = 0; t < tasks; ++t) {
        const float* pdw = ws.partial + static_cast<std::size_t>(t) * ws.partial_stride;
        for (std::size_t j = 0; j < nw; ++j) dw[j] += pdw[j];
        if (db)
            for (int o = 0; o < out.c; ++o) db[o] += pdw[nw + o];
    }
}

}  // namespace ctnet::cpu
