// ctnet/cuda/conv.cuh — implicit-GEMM convolution kernels (nvcc only; see cuda/launch.hpp).
//
// C[M x P] = W[M x K] * im2col(x)[K x P] per sample, M = output channels, P = output pixels,
// K = input channels * kh * kw; im2col is never stored: each K x 64 tile of it is gathered from x
// into shared memory. A 128-thread block computes a 64 x 64 tile of C; the epilogue adds the
// (folded batch-norm) bias, applies the ReLU and writes into y's channel slice, so a concat's
// branches write straight into the concatenated output.
//   conv_tf32: 4 warps, each 32 x 32 as 2 x 2 WMMA m16n16k8 TF32 fragments (tensor cores,
//              sm_80+), float accumulation.
//   conv_fp32: each thread 8 x 4 outputs on CUDA cores, float throughout.
#pragma once

#include <mma.h>

#include "launch.hpp"

namespace ctnet::cuda::kernels {

inline constexpr int tile_m = 64, tile_n = 64, tile_k = 16, conv_threads = 128;

struct conv_args {
    const float* w;
    const float* bias;
    bool relu;
    geometry g;
    view x, y;
    int k;  // x.c * g.kh * g.kw
};

// Element (kk, j) of sample xs's im2col matrix: input channel, tap and output pixel from indices.
__device__ __forceinline__ float im2col(const conv_args& a, const float* xs, int kk, int j) {
    const int taps = a.g.kh * a.g.kw;
    const int c = kk / taps, r = kk - c * taps;
    const int ky = r / a.g.kw, kx = r - ky * a.g.kw;
    const int oy = j / a.y.w, ox = j - oy * a.y.w;
    const int iy = oy * a.g.sh - a.g.pt + ky, ix = ox * a.g.sw - a.g.pl + kx;
    if (iy < 0 || iy >= a.x.h || ix < 0 || ix >= a.x.w) return 0.0F;
    return xs[(static_cast<long long>(c) * a.x.h + iy) * a.x.w + ix];
}

// Loads the K-slice [k0, k0 + tile_k) of the block's A (weights) and B (im2col) tiles; zeros
// outside the matrices.
template <int LdA, int LdB>
__device__ __forceinline__ void load_tiles(const conv_args& a, const float* xs, int m0, int j0, int k0, int pixels,
                                           float (*as)[LdA], float (*bs)[LdB]) {
    const int m_total = a.y.c;
#pragma unroll
    for (int i = 0; i < tile_m * tile_k / conv_threads; ++i) {
        const int e = static_cast<int>(threadIdx.x) + i * conv_threads;
        const int r = e / tile_k, c = e % tile_k;
        const int m = m0 + r, kk = k0 + c;
        as[r][c] = (m < m_total && kk < a.k) ? a.w[static_cast<long long>(m) * a.k + kk] : 0.0F;
    }
#pragma unroll
    for (int i = 0; i < tile_k * tile_n / conv_threads; ++i) {
        const int e = static_cast<int>(threadIdx.x) + i * conv_threads;
        const int r = e / tile_n, c = e % tile_n;
        const int kk = k0 + r, j = j0 + c;
        bs[r][c] = (kk < a.k && j < pixels) ? im2col(a, xs, kk, j) : 0.0F;
    }
}

__device__ __forceinline__ void store_output(const conv_args& a, float* ys, int m, int j, int pixels, float acc) {
    if (m >= a.y.c || j >= pixels) return;
    float v = acc + a.bias[m];
    if (a.relu && v <= 0.0F) v = 0.0F;  // not fmaxf: NaN stays NaN, as in torch and backend::cpu
    ys[static_cast<long long>(m) * pixels + j] = v;
}

__global__ void __launch_bounds__(conv_threads) conv_tf32(conv_args a) {
    namespace wmma = nvcuda::wmma;
    constexpr int lda = tile_k + 4, ldb = tile_n + 4, ldc = tile_n + 4;  // multiples of 4 floats (16 bytes)
    __shared__ __align__(32) float as[tile_m][lda];
    __shared__ __align__(32) float bs[tile_k][ldb];
    __shared__ __align__(32) float cs[tile_m][ldc];
    const int pixels = a.y.h * a.y.w;
    const int m0 = static_cast<int>(blockIdx.y) * tile_m, j0 = static_cast<int>(blockIdx.x) * tile_n;
    const float* xs = a.x.data + static_cast<long long>(blockIdx.z) * a.x.stride;
    const int warp = static_cast<int>(threadIdx.x) / 32, wm = warp / 2, wn = warp % 2;

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0F);

    for (int k0 = 0; k0 < a.k; k0 += tile_k) {
        load_tiles<lda, ldb>(a, xs, m0, j0, k0, pixels, as, bs);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < tile_k; kk += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                wmma::load_matrix_sync(fa[i], &as[wm * 32 + i * 16][kk], lda);
#pragma unroll
                for (int t = 0; t < fa[i].num_elements; ++t) fa[i].x[t] = wmma::__float_to_tf32(fa[i].x[t]);
                wmma::load_matrix_sync(fb[i], &bs[kk][wn * 32 + i * 16], ldb);
#pragma unroll
                for (int t = 0; t < fb[i].num_elements; ++t) fb[i].x[t] = wmma::__float_to_tf32(fb[i].x[t]);
            }
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&cs[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], ldc, wmma::mem_row_major);
    __syncthreads();
    float* ys = a.y.data + static_cast<long long>(blockIdx.z) * a.y.stride;
    for (int e = static_cast<int>(threadIdx.x); e < tile_m * tile_n; e += conv_threads) {
        const int r = e / tile_n, c = e % tile_n;  // consecutive threads: consecutive pixels
        store_output(a, ys, m0 + r, j0 + c, pixels, cs[r][c]);
    }
}

__global__ void __launch_bounds__(conv_threads) conv_fp32(conv_args a) {
    constexpr int lda = tile_k + 1, ldb = tile_n + 4;
    __shared__ float as[tile_m][lda];
    __shared__ float bs[tile_k][ldb];
    const int pixels = a.y.h * a.y.w;
    const int m0 = static_cast<int>(blockIdx.y) * tile_m, j0 = static_cast<int>(blockIdx.x) * tile_n;
    const float* xs = a.x.data + static_cast<long long>(blockIdx.z) * a.x.stride;
    // Thread (ty, tx) of 8 x 16 owns rows ty + 8 i (i < 8) and columns tx + 16 j (j < 4).
    const int tx = static_cast<int>(threadIdx.x) % 16, ty = static_cast<int>(threadIdx.x) / 16;
    float acc[8][4] = {};
    for (int k0 = 0; k0 < a.k; k0 += tile_k) {
        load_tiles<lda, ldb>(a, xs, m0, j0, k0, pixels, as, bs);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < tile_k; ++kk) {
            float av[8], bv[4];
#pragma unroll
            for (int i = 0; i < 8; ++i) av[i] = as[ty + 8 * i][kk];
#pragma unroll
            for (int j = 0; j < 4; ++j) bv[j] = bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
    float* ys = a.y.data + static_cast<long long>(blockIdx.z) * a.y.stride;
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) store_output(a, ys, m0 + ty + 8 * i, j0 + tx + 16 * j, pixels, acc[i][j]);
}

}  // namespace ctnet::cuda::kernels
