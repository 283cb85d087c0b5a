// ctnet/cuda/nhwc_conv_tiles.hpp — the index arithmetic of ctnet's NHWC implicit-GEMM convolution
// kernel (src/cuda/conv_nhwc.cuh), for the host and the device (CTNET_HD): which output pixel a
// GEMM row is, the walk along the depth (ky, kx, ci) without division, which thread loads which
// 16-byte vector (or element) of which stage into which shared-memory slot, when a load is zero,
// where each warp's fragments lie, and the epilogue. tests/test_nhwc_conv.cpp runs these same
// functions on the host, emulating every block, stage and thread of the kernel, against
// conv_forward (cuda/nhwc_operands.hpp). C++17, no CUDA header.
//
// The GEMM: C (rows x cout) = A (rows x depth) * B (depth x cout), rows = every output pixel of
// the batch (n * oh * ow, so a batch-1 8x8 layer still has row tiles), depth = kh * kw * cin in
// (ky, kx, ci) order: consecutive k are consecutive channels of one input pixel, which is what
// makes a 16-byte load along k possible. B = conv_forward::wt ([depth][cout]).
#pragma once

#include <cstdint>

#include "nhwc_operands.hpp"
#include "types.hpp"

namespace ctnet::cuda::nhwc::igemm {

// A block of 128 threads (2 x 2 warps of 64 x 32) computes a bm x bn tile of C.
inline constexpr int threads = 128, bm = 128, bn = 64;
inline constexpr int warps_n = 2, warp_m = 64, warp_n = 32;
inline constexpr int frag = 16;                                   // WMMA fragments are 16 x 16 of C
inline constexpr int frags_m = warp_m / frag, frags_n = warp_n / frag;
inline constexpr int stages = 2;                                  // shared-memory buffers (double buffering)

// The depth slice of a stage and the shared-memory layout, for storage elements of `Bytes` bytes
// (4: float, 2: fp16 / bf16). A stage holds 64 bytes of every A row, four 16-byte vectors: bk = 16
// floats (two TF32 k-steps of 8) or 32 halves (two k-steps of 16).
template <int Bytes>
struct tiles {
    static constexpr int vec = 16 / Bytes;  // elements in a 16-byte vector
    static constexpr int bk = 4 * vec;
    // Row pitches in elements, padded by 16 bytes: rows stay 16-byte aligned (cp.async) and
    // 32-byte aligned every 16 rows (WMMA), and 8 consecutive rows start in different banks.
    static constexpr int lda = bk + vec, ldb = bn + vec;
    static constexpr int a_elems = bm * lda, b_elems = bk * ldb;  // one stage of A ([bm][lda]) and of B ([bk][ldb])
    static constexpr int ldc = bn + 4;                            // the float accumulator tile [bm][ldc] of the epilogue
    static constexpr int stage_bytes = stages * (a_elems + b_elems) * Bytes;
    static constexpr int c_bytes = bm * ldc * 4;
    static constexpr int smem_bytes = stage_bytes > c_bytes ? stage_bytes : c_bytes;  // C reuses the stages
    // Loads per thread and stage.
    static constexpr int a_vectors = bm * bk / vec / threads, a_scalars = bm * bk / threads;
    static constexpr int b_vectors = bk * bn / vec / threads, b_scalars = bk * bn / threads;
    static_assert(bm * bk % (vec * threads) == 0 && bk * bn % (vec * threads) == 0, "every thread loads the same count");
    static_assert(threads % bk == 0 && threads % (bn / vec) == 0, "a thread's depth column is the same in every load");
};
inline constexpr int epilogue_stores = bm * bn / threads;
static_assert(threads % bn == 0, "a thread's epilogue column is the same in every store");
static_assert(threads == (bm / warp_m) * warps_n * 32, "2 x 2 warps");

// The kernel's operands: conv_forward's, with the batch folded into the rows.
template <class T>
struct problem {
    const T* x = nullptr;      // input slice (already at its c0)
    const T* wt = nullptr;     // [depth][cout]
    const float* bias = nullptr;  // cout floats, or null
    T* y = nullptr;            // output slice (already at its c0)
    long long x_sn = 0, y_sn = 0;
    int x_channels = 0, y_channels = 0;  // pixel strides
    int cin = 0, h = 0, w = 0;
    int cout = 0, oh = 0, ow = 0;
    geometry g{};
    bool relu = false;
    int rows = 0, depth = 0;   // n * oh * ow, kh * kw * cin
    int col_tiles = 0, blocks = 0;
    bool a_vec = false, b_vec = false;  // 16-byte loads of A (along channels) and of B (along cout)
};

CTNET_HD bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// 16-byte loads of A need every vector inside one input pixel's channels and aligned: cin, the
// pixel stride and the sample stride multiples of the vector, the slice's first element aligned
// (so c0 too, as buffers are). B: cout a multiple of the vector, wt aligned.
template <class T>
CTNET_HD bool a_vector_ok(const problem<T>& p) {
    constexpr int v = tiles<sizeof(T)>::vec;
    return p.cin % v == 0 && p.x_channels % v == 0 && p.x_sn % v == 0 && aligned16(p.x);
}
template <class T>
CTNET_HD bool b_vector_ok(const problem<T>& p) {
    return p.cout % tiles<sizeof(T)>::vec == 0 && aligned16(p.wt);
}

// n samples of conv_forward f. The rows (n * oh * ow) rounded up to a tile must fit an int (the
// launcher checks).
template <class S>
CTNET_HD problem<typename S::type> make_problem(const conv_forward<S>& f, int n) {
    problem<typename S::type> p;
    p.x = f.x.data;
    p.wt = f.wt;
    p.bias = f.bias;
    p.y = f.y.data;
    p.x_sn = f.x.sn;
    p.y_sn = f.y.sn;
    p.x_channels = f.x.channels;
    p.y_channels = f.y.channels;
    p.cin = f.x.c;
    p.h = f.x.h;
    p.w = f.x.w;
    p.cout = f.y.c;
    p.oh = f.y.h;
    p.ow = f.y.w;
    p.g = f.g;
    p.relu = f.relu;
    p.rows = n * f.y.h * f.y.w;
    p.depth = f.depth;
    p.col_tiles = (p.cout + bn - 1) / bn;
    p.blocks = (p.rows + bm - 1) / bm * p.col_tiles;
    p.a_vec = a_vector_ok(p);
    p.b_vec = b_vector_ok(p);
    return p;
}

// Block b's tile: consecutive blocks share their rows (the A tile stays in L2 across the column
// tiles); one division per block.
struct origin {
    int m0, j0;
};
CTNET_HD origin block_origin(int b, int col_tiles) {
    const int row_tile = b / col_tiles;
    return {row_tile * bm, (b - row_tile * col_tiles) * bn};
}

// GEMM row m as an output pixel, decomposed once per block into shared memory (an aggregate
// without initialisers: it lives in __shared__).
struct pixel {
    long long x_base;  // sample n's first input element: n * x_sn
    long long y_at;    // output element (n, channel 0, oy, ox) relative to y
    int iy0, ix0;      // the input pixel under tap (0, 0); may lie outside the image
    bool valid;        // m < rows
};
template <class T>
CTNET_HD pixel row_pixel(const problem<T>& p, int m) {
    if (m >= p.rows) return {0, 0, 0, 0, false};
    const int plane = p.oh * p.ow;
    const int n = m / plane, r = m - n * plane;
    const int oy = r / p.ow, ox = r - oy * p.ow;
    return {n * p.x_sn, n * p.y_sn + (static_cast<long long>(oy) * p.ow + ox) * p.y_channels, oy * p.g.sh - p.g.pt,
            ox * p.g.sw - p.g.pl, true};
}
// Thread t's share of the block's pixel table (rows t, t + threads, ...).
template <class T>
CTNET_HD void fill_pixels(const problem<T>& p, int m0, int t, pixel* table) {
    for (int r = t; r < bm; r += threads) table[r] = row_pixel(p, m0 + r);
}

// A position along the depth, k = (ky * kw + kx) * cin + ci.
struct tap {
    int k = 0, ky = 0, kx = 0, ci = 0;
};
// Moves a tap `step` further along the depth: subtractions instead of a division (a step of bk
// crosses at most bk / cin + 1 taps: one or none unless cin is small, as the stem's 3).
template <class T>
CTNET_HD void advance(tap& t, int step, const problem<T>& p) {
    t.k += step;
    t.ci += step;
    while (t.ci >= p.cin) {
        t.ci -= p.cin;
        if (++t.kx == p.g.kw) {
            t.kx = 0;
            ++t.ky;
        }
    }
}

// Which slot of a stage load i of thread t fills: row r and column c of the A tile (c along the
// depth) or of the B tile (r along the depth). In every mapping c does not depend on i, so a
// thread keeps one depth column: one tap (A) or one output channel (epilogue).
struct slot {
    int r, c;
};
// A, 16-byte vectors: 4 threads cover one row's 64 bytes, a warp 8 rows.
template <int Bytes>
CTNET_HD slot a_vector_slot(int t, int i) {
    constexpr int per_row = tiles<Bytes>::bk / tiles<Bytes>::vec;
    return {t / per_row + i * (threads / per_row), t % per_row * tiles<Bytes>::vec};
}
// A, one element each: a warp reads 32 consecutive k of one row.
template <int Bytes>
CTNET_HD slot a_scalar_slot(int t, int i) {
    constexpr int bk = tiles<Bytes>::bk;
    return {t / bk + i * (threads / bk), t % bk};
}
// B, 16-byte vectors: a row of bn output channels is bn / vec consecutive threads.
template <int Bytes>
CTNET_HD slot b_vector_slot(int t, int i) {
    constexpr int per_row = bn / tiles<Bytes>::vec;
    return {t / per_row + i * (threads / per_row), t % per_row * tiles<Bytes>::vec};
}
template <int Bytes>
CTNET_HD slot b_scalar_slot(int t, int i) {
    return {t / bn + i * (threads / bn), t % bn};
}

// Shared-memory element offsets within a stage, and the stage of depth slice s.
template <int Bytes>
CTNET_HD int a_smem(int r, int c) { return r * tiles<Bytes>::lda + c; }
template <int Bytes>
CTNET_HD int b_smem(int r, int c) { return r * tiles<Bytes>::ldb + c; }
CTNET_HD int c_smem(int r, int c, int ldc) { return r * ldc + c; }
CTNET_HD int buffer_of(int s) { return s % stages; }
template <int Bytes>
CTNET_HD int slices(int depth) { return (depth + tiles<Bytes>::bk - 1) / tiles<Bytes>::bk; }

// Where A element (pixel, tap) lies in x, or -1 when it is zero: a row past the batch, a tap past
// the depth, an input pixel outside the image (the padding). On the vector path the whole vector
// shares the answer (cin a multiple of the vector: the vector lies inside one pixel).
template <class T>
CTNET_HD long long a_source(const problem<T>& p, const pixel& px, const tap& t) {
    const int iy = px.iy0 + t.ky, ix = px.ix0 + t.kx;
    if (!px.valid || t.k >= p.depth || iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) return -1;
    return px.x_base + (static_cast<long long>(iy) * p.w + ix) * p.x_channels + t.ci;
}
// Where B element (k, j) lies in wt, or -1 past the depth or the output channels.
template <class T>
CTNET_HD long long b_source(const problem<T>& p, int k, int j) {
    return k < p.depth && j < p.cout ? static_cast<long long>(k) * p.cout + j : -1;
}

// Thread t's tap at the first stage: its column of the A tile (no division: advanced from 0).
template <class T>
CTNET_HD tap first_tap(const problem<T>& p, int t) {
    constexpr int bytes = sizeof(T);
    tap a;
    advance(a, p.a_vec ? a_vector_slot<bytes>(t, 0).c : a_scalar_slot<bytes>(t, 0).c, p);
    return a;
}

// Thread t's loads of A for one stage, then its tap moved on to the next stage:
// copy(shared offset in the stage, source offset in x or -1 for zero, elements: vec or 1).
template <class T, class Copy>
CTNET_HD void load_a(const problem<T>& p, const pixel* table, tap& a, int t, Copy&& copy) {
    constexpr int bytes = sizeof(T);
    using L = tiles<bytes>;
    if (p.a_vec) {
        for (int i = 0; i < L::a_vectors; ++i) {
            const slot s = a_vector_slot<bytes>(t, i);
            copy(a_smem<bytes>(s.r, s.c), a_source(p, table[s.r], a), L::vec);
        }
    } else {
        for (int i = 0; i < L::a_scalars; ++i) {
            const slot s = a_scalar_slot<bytes>(t, i);
            copy(a_smem<bytes>(s.r, s.c), a_source(p, table[s.r], a), 1);
        }
    }
    advance(a, L::bk, p);
}

// Thread t's loads of B for the stage at depth k0 of the block's columns from j0.
template <class T, class Copy>
CTNET_HD void load_b(const problem<T>& p, int k0, int j0, int t, Copy&& copy) {
    constexpr int bytes = sizeof(T);
    using L = tiles<bytes>;
    if (p.b_vec) {
        for (int i = 0; i < L::b_vectors; ++i) {
            const slot s = b_vector_slot<bytes>(t, i);
            copy(b_smem<bytes>(s.r, s.c), b_source(p, k0 + s.r, j0 + s.c), L::vec);
        }
    } else {
        for (int i = 0; i < L::b_scalars; ++i) {
            const slot s = b_scalar_slot<bytes>(t, i);
            copy(b_smem<bytes>(s.r, s.c), b_source(p, k0 + s.r, j0 + s.c), 1);
        }
    }
}

// Tensor cores: warp w's 64 x 32 tile of C, its fragment (fm, fn) at origin + 16 (fm, fn).
CTNET_HD slot warp_tile(int w) { return {w / warps_n * warp_m, w % warps_n * warp_n}; }
CTNET_HD slot fragment(int w, int fm, int fn) {
    const slot o = warp_tile(w);
    return {o.r + fm * frag, o.c + fn * frag};
}
// CUDA cores (fp32): thread t's 8 x 8 outputs, rows t / 8 + 16 i and columns t % 8 + 8 j (a warp
// reads 4 rows of A, broadcast, and 8 consecutive columns of B per k).
inline constexpr int fma_m = 8, fma_n = 8;
CTNET_HD slot fma_slot(int t, int i, int j) { return {t / fma_n + i * (threads / fma_n), t % fma_n + j * fma_n}; }
static_assert(fma_m * fma_n * threads == bm * bn, "the fp32 path covers the tile");

// Epilogue: store i of thread t is C element (r, c) of the tile: a warp writes 32 consecutive
// channels of one output pixel.
CTNET_HD slot epilogue_slot(int t, int i) { return {t / bn + i * (threads / bn), t % bn}; }
// y = relu?(acc + bias[j]), no bias when null (a pooled conv); not fmaxf, so NaN stays NaN: as
// conv_forward::store.
CTNET_HD float epilogue_value(float acc, const float* bias, int j, bool relu) {
    const float v = bias != nullptr ? acc + bias[j] : acc;
    return relu && v <= 0.0F ? 0.0F : v;
}
// Thread t's stores of the block's C tile (floats, pitch ldc): store(offset in y, value).
template <class T, class Store>
CTNET_HD void epilogue(const problem<T>& p, const pixel* table, const float* c, int j0, int t, Store&& store) {
    constexpr int ldc = tiles<sizeof(T)>::ldc;
    const int j = j0 + epilogue_slot(t, 0).c;
    if (j >= p.cout) return;
    for (int i = 0; i < epilogue_stores; ++i) {
        const slot s = epilogue_slot(t, i);
        const pixel& px = table[s.r];
        if (px.valid) store(px.y_at + j, epilogue_value(c[c_smem(s.r, s.c, ldc)], p.bias, j, p.relu));
    }
}

}  // namespace ctnet::cuda::nhwc::igemm
