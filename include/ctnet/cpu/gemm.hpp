// ctnet/cpu/gemm.hpp — a general single-precision GEMM on the micro-kernel of
// cpu/gemm_kernel.hpp (training's convolutions, cpu/conv_train.hpp, run on it).
//
//   C (M x N) = [C +] op(A) (M x K) * op(B) (K x N) [+ bias per row] [then ReLU]
//
// A and B are given by element strides (row stride, column stride), so a transposed operand is
// just swapped strides. A is packed once per call into MR-row panels; the columns are split into
// tasks of NC columns (and row groups when there are few columns), each packing its own KC x NC
// blocks of B into per-thread scratch, so any thread count writes the same values.
// Requires: scratch of gemm_thread_scratch floats per thread; a thread_pool owned by the caller.
// Guarantees: no allocation; each element of C sums its K terms in order (tests/test_train.cpp
// compares the GEMM with plain loops on random shapes and transposes).
#pragma once

#include <algorithm>
#include <cstddef>

#include "gemm_kernel.hpp"
#include "thread_pool.hpp"

namespace ctnet::cpu {

struct matrix_ref {
    const float* data;
    std::size_t rs, cs;  // element strides between rows and between columns
    [[nodiscard]] float at(std::size_t r, std::size_t c) const { return data[r * rs + c * cs]; }
};

inline constexpr int gemm_task_cols = 4 * gemm_nr;  // columns of one task (a multiple of NR)

// Floats of per-thread scratch for B blocks and an edge tile (plus alignment slack).
inline constexpr std::size_t gemm_thread_scratch =
    static_cast<std::size_t>(gemm_kc) * gemm_task_cols + static_cast<std::size_t>(gemm_mr) * gemm_nr + 64;

// Floats to pack A (M x K).
[[nodiscard]] constexpr std::size_t gemm_packed_a_floats(int m, int k) {
    return static_cast<std::size_t>((m + gemm_mr - 1) / gemm_mr) * static_cast<std::size_t>(k) * gemm_mr;
}

struct gemm_args {
    int m = 0, n = 0, k = 0;
    matrix_ref a{}, b{};
    float* c = nullptr;
    std::size_t ldc = 0;
    bool accumulate = false;     // C += ... instead of C = ...
    const float* bias = nullptr; // per row, added once
    bool relu = false;
};

namespace detail {

#if defined(__AVX512F__) && defined(__AVX512VL__)
// The 8x8 transpose of r (eight 8-float rows), in place.
inline void transpose8(__m256 (&r)[8]) {
    __m256 t[8];
    for (std::size_t i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (std::size_t i = 0; i < 2; ++i) {
        r[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (std::size_t q = 0; q < 4; ++q) {
        t[q] = _mm256_permute2f128_ps(r[q], r[4 + q], 0x20);
        t[4 + q] = _mm256_permute2f128_ps(r[q], r[4 + q], 0x31);
    }
    for (std::size_t q = 0; q < 8; ++q) r[q] = t[q];
}

// The full-mask forms of three shuffles: the plain intrinsics pass an undefined vector as the
// masked-off source, which g++ 12 reports as uninitialised (falsely). Same instructions.
inline __m512 unpacklo16(__m512 a, __m512 b) { return _mm512_mask_unpacklo_ps(a, 0xFFFF, a, b); }
inline __m512 unpackhi16(__m512 a, __m512 b) { return _mm512_mask_unpackhi_ps(a, 0xFFFF, a, b); }
template <int imm>
inline __m512 shuffle128x4(__m512 a, __m512 b) { return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, b, imm); }

// dst[k * ldd + j] = src[j * cs + k] for j, k < 16: one 16x16 block of a transposed operand,
// in four rounds of in-register shuffles instead of 256 scalar moves.
inline void transpose16(const float* src, std::size_t cs, float* dst, std::size_t ldd) {
    __m512 r[16], t[16];
    for (std::size_t j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(src + j * cs);
    for (std::size_t i = 0; i < 8; ++i) {
        t[2 * i] = unpacklo16(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = unpackhi16(r[2 * i], r[2 * i + 1]);
    }
    for (std::size_t i = 0; i < 4; ++i) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (std::size_t q = 0; q < 4; ++q) {
        t[q] = shuffle128x4<0x88>(r[q], r[4 + q]);
        t[4 + q] = shuffle128x4<0xdd>(r[q], r[4 + q]);
        t[8 + q] = shuffle128x4<0x88>(r[8 + q], r[12 + q]);
        t[12 + q] = shuffle128x4<0xdd>(r[8 + q], r[12 + q]);
    }
    for (std::size_t q = 0; q < 8; ++q) {
        _mm512_storeu_ps(dst + q * ldd, shuffle128x4<0x88>(t[q], t[8 + q]));
        _mm512_storeu_ps(dst + (q + 8) * ldd, shuffle128x4<0xdd>(t[q], t[8 + q]));
    }
}
#endif

// One packed B panel from a transposed operand: d[k * NR + j] = src[j * cs + k] for k < kc,
// j < w, zero for j in [w, NR). The same values as the element-wise copy, so the same sums.
inline void pack_b_transposed(float* d, const float* src, std::size_t cs, int kc, int w) {
    int j_done = 0, k_done = 0;
#if defined(__AVX512F__) && defined(__AVX512VL__)
    static_assert(gemm_nr == 32, "two 16-column halves per panel");
    j_done = w / 16 * 16;
    k_done = kc / 16 * 16;
    for (int j = 0; j < j_done; j += 16)
        for (int k = 0; k < k_done; k += 16)
            transpose16(src + static_cast<std::size_t>(j) * cs + k, cs, d + static_cast<std::size_t>(k) * gemm_nr + j,
                        gemm_nr);
#endif
    for (int j = 0; j < w; ++j) {  // what the blocks left: the last rows, then the last columns
        const float* s = src + static_cast<std::size_t>(j) * cs;
        for (int k = j < j_done ? k_done : 0; k < kc; ++k) d[static_cast<std::size_t>(k) * gemm_nr + j] = s[k];
    }
    for (int k = 0; k < kc; ++k) std::fill(d + static_cast<std::size_t>(k) * gemm_nr + w, d + static_cast<std::size_t>(k + 1) * gemm_nr, 0.0F);
}

}  // namespace detail

// Packs A (M x K) into MR-row panels [panel][k][MR], rows past M zero; panels [p0, p1) only.
// Rows stored contiguously (column stride 1, as dY in the weight gradient): with AVX-512, eight
// columns at a time through an 8x8 transpose, each packed column a masked store of MR floats.
inline void gemm_pack_a(const gemm_args& g, float* packed_a, int p0, int p1) {
    for (int p = p0; p < p1; ++p) {
        float* dst = packed_a + static_cast<std::size_t>(p) * g.k * gemm_mr;
        int k_done = 0;
#if defined(__AVX512F__) && defined(__AVX512VL__)
        static_assert(gemm_mr <= 8, "a packed column fits one 8-float vector");
        if (g.a.cs == 1 && p * gemm_mr + gemm_mr <= g.m) {
            const float* rows = g.a.data + static_cast<std::size_t>(p) * gemm_mr * g.a.rs;
            constexpr auto mask = static_cast<__mmask8>((1U << gemm_mr) - 1U);
            k_done = g.k / 8 * 8;
            for (int k0 = 0; k0 < k_done; k0 += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; ++i)
                    r[i] = i < gemm_mr ? _mm256_loadu_ps(rows + static_cast<std::size_t>(i) * g.a.rs + k0) : _mm256_setzero_ps();
                detail::transpose8(r);
                for (int i = 0; i < 8; ++i)
                    _mm256_mask_storeu_ps(dst + static_cast<std::size_t>(k0 + i) * gemm_mr, mask, r[i]);
            }
        }
#endif
        for (int kk = k_done; kk < g.k; ++kk)
            for (int r = 0; r < gemm_mr; ++r) {
                const int row = p * gemm_mr + r;
                dst[static_cast<std::size_t>(kk) * gemm_mr + r] = row < g.m ? g.a.at(row, kk) : 0.0F;
            }
    }
}

namespace detail {

// Columns [j0, j0 + cols) (cols <= gemm_task_cols) and row panels [p0, p1) of C, from packed A.
inline void gemm_block(const gemm_args& g, const float* packed_a, int j0, int cols, int p0, int p1, float* scratch) {
    float* b = align64(scratch);
    float* tile = b + static_cast<std::size_t>(gemm_kc) * gemm_task_cols;
    const int col_panels = (cols + gemm_nr - 1) / gemm_nr;
    for (int k0 = 0; k0 < g.k; k0 += gemm_kc) {
        const int kc = std::min(gemm_kc, g.k - k0);
        const bool first = k0 == 0 && !g.accumulate, last = k0 + kc == g.k;
        // Pack B rows [k0, k0 + kc), columns [j0, j0 + cols) as NR-wide panels.
        for (int cp = 0; cp < col_panels; ++cp) {
            float* dst = b + static_cast<std::size_t>(cp) * kc * gemm_nr;
            const int jc = j0 + cp * gemm_nr, w = std::min(gemm_nr, j0 + cols - jc);
            if (g.b.rs == 1 && g.b.cs != 1) {  // transposed (col(X)^T in the weight gradient)
                detail::pack_b_transposed(dst, g.b.data + k0 + static_cast<std::size_t>(jc) * g.b.cs, g.b.cs, kc, w);
                continue;
            }
            for (int kk = 0; kk < kc; ++kk) {
                float* d = dst + static_cast<std::size_t>(kk) * gemm_nr;
                const float* src = g.b.data + static_cast<std::size_t>(k0 + kk) * g.b.rs + jc * g.b.cs;
                if (g.b.cs == 1) {
                    std::copy(src, src + w, d);
                } else {
                    for (int j = 0; j < w; ++j) d[j] = src[static_cast<std::size_t>(j) * g.b.cs];
                }
                std::fill(d + w, d + gemm_nr, 0.0F);
            }
        }
        for (int p = p0; p < p1; ++p) {
            const int row = p * gemm_mr, rows = std::min(gemm_mr, g.m - row);
            const float* a = packed_a + (static_cast<std::size_t>(p) * g.k + k0) * gemm_mr;
            float bias[gemm_mr]{};
            if (g.bias) std::copy(g.bias + row, g.bias + row + rows, bias);
            const bool epilogue = last && (g.bias || g.relu);
            for (int cp = 0; cp < col_panels; ++cp) {
                const float* bp = b + static_cast<std::size_t>(cp) * kc * gemm_nr;
                const int jc = cp * gemm_nr, w = std::min(gemm_nr, cols - jc);
                float* c = g.c + static_cast<std::size_t>(row) * g.ldc + j0 + jc;
                if (rows == gemm_mr && w == gemm_nr) {
                    micro_kernel(kc, a, bp, c, g.ldc, first, epilogue, bias, g.relu);
                    continue;
                }
                constexpr auto ldt = static_cast<std::size_t>(gemm_nr);
                if (!first)
                    for (std::size_t i = 0; i < static_cast<std::size_t>(rows); ++i)
                        std::copy(c + i * g.ldc, c + i * g.ldc + w, tile + i * ldt);
                if (w <= simd_width) micro_kernel<1>(kc, a, bp, tile, ldt, first, epilogue, bias, g.relu);  // half the work
                else micro_kernel(kc, a, bp, tile, ldt, first, epilogue, bias, g.relu);
                for (std::size_t i = 0; i < static_cast<std::size_t>(rows); ++i)
                    std::copy(tile + i * ldt, tile + i * ldt + w, c + i * g.ldc);
            }
        }
    }
}

}  // namespace detail

// One thread: C from an A packed by gemm_pack_a. scratch: gemm_thread_scratch floats.
inline void gemm_packed(const gemm_args& g, const float* packed_a, float* scratch) {
    if (g.m <= 0 || g.n <= 0) return;
    const int panels = (g.m + gemm_mr - 1) / gemm_mr;
    for (int j0 = 0; j0 < g.n; j0 += gemm_task_cols)
        detail::gemm_block(g, packed_a, j0, std::min(gemm_task_cols, g.n - j0), 0, panels, scratch);
}

// Empty sums (K = 0): C = bias (or unchanged when accumulating), then ReLU.
inline bool gemm_empty(const gemm_args& g) {
    if (g.k > 0) return false;
    for (int r = 0; r < g.m; ++r)
        for (int j = 0; j < g.n; ++j) {
            float& c = g.c[static_cast<std::size_t>(r) * g.ldc + j];
            const float v = (g.accumulate ? c : 0.0F) + (g.bias ? g.bias[r] : 0.0F);
            c = g.relu ? std::max(v, 0.0F) : v;
        }
    return true;
}

// Threaded: packs A, then splits C into column tasks (and row groups when there are few columns).
// packed_a: gemm_packed_a_floats(m, k) floats; scratch: pool.size() * gemm_thread_scratch floats.
inline void gemm(const gemm_args& g, float* packed_a, float* scratch, thread_pool& pool) {
    if (g.m <= 0 || g.n <= 0 || gemm_empty(g)) return;
    const int panels = (g.m + gemm_mr - 1) / gemm_mr;
    pool.run(panels, [&](int p, int) { gemm_pack_a(g, packed_a, p, p + 1); });
    const int col_tasks = (g.n + gemm_task_cols - 1) / gemm_task_cols;
    const int row_groups = std::clamp(2 * pool.size() / col_tasks, 1, panels);
    const int per_group = (panels + row_groups - 1) / row_groups;
    pool.run(col_tasks * row_groups, [&](int task, int thread) {
        const int j0 = (task / row_groups) * gemm_task_cols;
        const int p0 = (task % row_groups) * per_group, p1 = std::min(panels, p0 + per_group);
        if (p0 < p1)
            detail::gemm_block(g, packed_a, j0, std::min(gemm_task_cols, g.n - j0), p0, p1,
                               scratch + static_cast<std::size_t>(thread) * gemm_thread_scratch);
    });
}

}  // namespace ctnet::cpu
