// src/cuda/conv.cuh — the tiled GEMM engine of the convolutions and their gradients (nvcc
// only; see cuda/launch.hpp).
//
// C[z] (rows x cols) = A[z] (rows x depth) * B[z] (depth x cols), the operands read and the
// result written through a problem type (cuda/operands.hpp): conv_forward (C = W * im2col(x),
// im2col never stored, the epilogue adds the folded-BN bias, applies the ReLU and writes into
// the destination's channel slice, so concat costs nothing), conv_input_grad and
// conv_weight_grad. Each 16-deep slice of the block's A and B tiles is gathered into shared
// memory (zero outside the matrices). A 128-thread block computes a 64 x 64 tile of C; grid
// (col tiles, row tiles, z).
//   gemm_tf32: 4 warps, each 32 x 32 as 2 x 2 WMMA m16n16k8 TF32 fragments (tensor cores,
//              sm_80+), float accumulation.
//   gemm_fp32: each thread 8 x 4 outputs on CUDA cores, float throughout.
#pragma once

#include <mma.h>

#include <ctnet/cuda/launch.hpp>
#include <ctnet/cuda/operands.hpp>

namespace ctnet::cuda::kernels {

inline constexpr int tile_m = 64, tile_n = 64, tile_k = 16, conv_threads = 128;

// Loads the depth slice [k0, k0 + tile_k) of the block's A and B tiles; zeros outside.
template <int LdA, int LdB, class P>
__device__ __forceinline__ void load_tiles(const P& p, int z, int m0, int j0, int k0, float (*as)[LdA], float (*bs)[LdB]) {
#pragma unroll
    for (int i = 0; i < tile_m * tile_k / conv_threads; ++i) {
        const int e = static_cast<int>(threadIdx.x) + i * conv_threads;
        const int r = e / tile_k, c = e % tile_k;
        const int m = m0 + r, kk = k0 + c;
        as[r][c] = (m < p.rows && kk < p.depth) ? p.a(z, m, kk) : 0.0F;
    }
#pragma unroll
    for (int i = 0; i < tile_k * tile_n / conv_threads; ++i) {
        const int e = static_cast<int>(threadIdx.x) + i * conv_threads;
        const int r = e / tile_n, c = e % tile_n;
        const int kk = k0 + r, j = j0 + c;
        bs[r][c] = (kk < p.depth && j < p.cols) ? p.b(z, kk, j) : 0.0F;
    }
}

template <class P>
__global__ void __launch_bounds__(conv_threads) gemm_tf32(P p) {
    namespace wmma = nvcuda::wmma;
    constexpr int lda = tile_k + 4, ldb = tile_n + 4, ldc = tile_n + 4;  // multiples of 4 floats (16 bytes)
    __shared__ __align__(32) float as[tile_m][lda];
    __shared__ __align__(32) float bs[tile_k][ldb];
    __shared__ __align__(32) float cs[tile_m][ldc];
    const int m0 = static_cast<int>(blockIdx.y) * tile_m, j0 = static_cast<int>(blockIdx.x) * tile_n;
    const int z = static_cast<int>(blockIdx.z);
    const int warp = static_cast<int>(threadIdx.x) / 32, wm = warp / 2, wn = warp % 2;

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0F);

    for (int k0 = 0; k0 < p.depth; k0 += tile_k) {
        load_tiles<lda, ldb>(p, z, m0, j0, k0, as, bs);
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
    for (int e = static_cast<int>(threadIdx.x); e < tile_m * tile_n; e += conv_threads) {
        const int r = e / tile_n, c = e % tile_n;  // consecutive threads: consecutive columns
        if (m0 + r < p.rows && j0 + c < p.cols) p.store(z, m0 + r, j0 + c, cs[r][c]);
    }
}

template <class P>
__global__ void __launch_bounds__(conv_threads) gemm_fp32(P p) {
    constexpr int lda = tile_k + 1, ldb = tile_n + 4;
    __shared__ float as[tile_m][lda];
    __shared__ float bs[tile_k][ldb];
    const int m0 = static_cast<int>(blockIdx.y) * tile_m, j0 = static_cast<int>(blockIdx.x) * tile_n;
    const int z = static_cast<int>(blockIdx.z);
    // Thread (ty, tx) of 8 x 16 owns rows ty + 8 i (i < 8) and columns tx + 16 j (j < 4).
    const int tx = static_cast<int>(threadIdx.x) % 16, ty = static_cast<int>(threadIdx.x) / 16;
    float acc[8][4] = {};
    for (int k0 = 0; k0 < p.depth; k0 += tile_k) {
        load_tiles<lda, ldb>(p, z, m0, j0, k0, as, bs);
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
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int m = m0 + ty + 8 * i, c = j0 + tx + 16 * j;
            if (m < p.rows && c < p.cols) p.store(z, m, c, acc[i][j]);
        }
}

}  // namespace ctnet::cuda::kernels
