// src/cuda/conv_nhwc.cuh — ctnet's NHWC convolution: an implicit GEMM over storage S (nk::d_f32,
// d_f16, d_bf16 of nhwc_ops.cuh) computing what nhwc::conv_forward<S> computes, y = relu?(conv(x)
// + bias) written into y's channel slice, for the whole batch in one launch. nvcc only.
//
//   nk::launch_conv_nhwc(nhwc::conv_forward<S>{...}, n, tf32, stream);
//
// The index arithmetic (pixels, the depth walk, which thread loads what where, the zero fill,
// the fragments, the epilogue) is cuda/nhwc_conv_tiles.hpp, which tests/test_nhwc_conv.cpp runs
// on the host. Here only the memory operations and the arithmetic:
//   - A block of 128 threads computes 128 output pixels x 64 output channels; the grid is one
//     dimension of (row tile, column tile), column tiles fastest.
//   - Each depth slice (64 bytes of every A row: 32 halves or 16 floats) goes into one of two
//     shared-memory stages with cp.async (16 bytes, zero-filled outside the image and past the
//     matrices) while the other stage is multiplied; where the shapes do not allow 16-byte
//     vectors (the stem's 3 channels) plain element loads fill the stage instead.
//   - fp16 / bf16: WMMA m16n16k16 on the storage type, float accumulation; float: WMMA m16n16k8
//     TF32 (tf32), else 8 x 8 outputs per thread on CUDA cores (fp32, float throughout).
//   - The accumulators go through shared memory (reusing the stages) so the epilogue writes 32
//     consecutive channels of one pixel per warp.
#pragma once

#include <mma.h>

#include <climits>
#include <string>
#include <type_traits>

#include <cuda_runtime.h>

#include <ctnet/core/error.hpp>
#include <ctnet/cuda/nhwc_conv_tiles.hpp>

#include "nhwc_ops.cuh"

namespace ctnet::cuda::nk {

namespace conv_detail {

namespace ig = nhwc::igemm;
namespace wmma = nvcuda::wmma;

// 16 bytes global -> shared, asynchronous; src_bytes 0 reads nothing and writes zeros.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const auto dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes) : "memory");
#else
    *static_cast<uint4*>(smem) = src_bytes != 0 ? *static_cast<const uint4*>(gmem) : make_uint4(0, 0, 0, 0);
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// Waits until at most `Pending` of this thread's committed groups are still in flight.
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
#endif
}

// The math of one stage and the accumulators' way into the float tile of the epilogue, for
// thread t: zero(), step(A stage, B stage, t), store(C tile, t).

// Tensor cores: each warp 4 x 2 fragments of its 64 x 32 tile. fp16 / bf16: m16n16k16 on the
// storage type; float: m16n16k8 TF32 (inputs rounded to TF32). Float accumulation.
template <class T>
struct mma {
    static constexpr bool tf32 = std::is_same<T, float>::value;
    static constexpr int k = tf32 ? 8 : 16;
    using in = std::conditional_t<tf32, wmma::precision::tf32, T>;
    using L = ig::tiles<sizeof(T)>;
    wmma::fragment<wmma::accumulator, 16, 16, k, float> acc[ig::frags_m][ig::frags_n];

    __device__ void zero() {
#pragma unroll
        for (int i = 0; i < ig::frags_m; ++i)
#pragma unroll
            for (int j = 0; j < ig::frags_n; ++j) wmma::fill_fragment(acc[i][j], 0.0F);
    }
    template <class F>
    __device__ static void to_tf32(F& f) {
        if constexpr (tf32) {
#pragma unroll
            for (int e = 0; e < f.num_elements; ++e) f.x[e] = wmma::__float_to_tf32(f.x[e]);
        }
    }
    __device__ void step(const T* as, const T* bs, int t) {
        const int warp = t / 32;
#pragma unroll
        for (int kk = 0; kk < L::bk; kk += k) {
            wmma::fragment<wmma::matrix_a, 16, 16, k, in, wmma::row_major> fa[ig::frags_m];
            wmma::fragment<wmma::matrix_b, 16, 16, k, in, wmma::row_major> fb[ig::frags_n];
#pragma unroll
            for (int i = 0; i < ig::frags_m; ++i) {
                wmma::load_matrix_sync(fa[i], as + ig::a_smem<sizeof(T)>(ig::fragment(warp, i, 0).r, kk), L::lda);
                to_tf32(fa[i]);
            }
#pragma unroll
            for (int j = 0; j < ig::frags_n; ++j) {
                wmma::load_matrix_sync(fb[j], bs + ig::b_smem<sizeof(T)>(kk, ig::fragment(warp, 0, j).c), L::ldb);
                to_tf32(fb[j]);
            }
#pragma unroll
            for (int i = 0; i < ig::frags_m; ++i)
#pragma unroll
                for (int j = 0; j < ig::frags_n; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
    }
    __device__ void store(float* cs, int t) {
        const int warp = t / 32;
#pragma unroll
        for (int i = 0; i < ig::frags_m; ++i)
#pragma unroll
            for (int j = 0; j < ig::frags_n; ++j) {
                const ig::slot f = ig::fragment(warp, i, j);
                wmma::store_matrix_sync(cs + ig::c_smem(f.r, f.c, L::ldc), acc[i][j], L::ldc, wmma::mem_row_major);
            }
    }
};

// float on CUDA cores: thread t's 8 x 8 outputs (ig::fma_slot), fmaf throughout.
struct fma_fp32 {
    using L = ig::tiles<4>;
    float acc[ig::fma_m][ig::fma_n];
    __device__ void zero() {
#pragma unroll
        for (int i = 0; i < ig::fma_m; ++i)
#pragma unroll
            for (int j = 0; j < ig::fma_n; ++j) acc[i][j] = 0.0F;
    }
    __device__ void step(const float* as, const float* bs, int t) {
#pragma unroll
        for (int kk = 0; kk < L::bk; ++kk) {
            float av[ig::fma_m], bv[ig::fma_n];
#pragma unroll
            for (int i = 0; i < ig::fma_m; ++i) av[i] = as[ig::a_smem<4>(ig::fma_slot(t, i, 0).r, kk)];
#pragma unroll
            for (int j = 0; j < ig::fma_n; ++j) bv[j] = bs[ig::b_smem<4>(kk, ig::fma_slot(t, 0, j).c)];
#pragma unroll
            for (int i = 0; i < ig::fma_m; ++i)
#pragma unroll
                for (int j = 0; j < ig::fma_n; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
    }
    __device__ void store(float* cs, int t) {
#pragma unroll
        for (int i = 0; i < ig::fma_m; ++i)
#pragma unroll
            for (int j = 0; j < ig::fma_n; ++j) {
                const ig::slot s = ig::fma_slot(t, i, j);
                cs[ig::c_smem(s.r, s.c, L::ldc)] = acc[i][j];
            }
    }
};

template <class S, class Math>
__global__ void __launch_bounds__(nhwc::igemm::threads) conv_nhwc(nhwc::igemm::problem<typename S::type> p) {
    using T = typename S::type;
    using L = ig::tiles<sizeof(T)>;
    __shared__ __align__(128) unsigned char smem[L::smem_bytes];
    __shared__ ig::pixel pixels[ig::bm];
    T* const as = reinterpret_cast<T*>(smem);  // [stages][bm][lda]
    T* const bs = as + ig::stages * L::a_elems;  // [stages][bk][ldb]
    float* const cs = reinterpret_cast<float*>(smem);  // [bm][ldc], once the stages are done with

    const int t = static_cast<int>(threadIdx.x);
    const ig::origin o = ig::block_origin(static_cast<int>(blockIdx.x), p.col_tiles);
    ig::fill_pixels(p, o.m0, t, pixels);
    __syncthreads();

    // Issues thread t's loads of depth slice s into its stage: 16-byte cp.async, or plain
    // element loads (stored at once: the path of the stem's 3 channels, not worth pipelining).
    ig::tap a = ig::first_tap(p, t);
    const T zero = S::store(0.0F);
    const auto load = [&](int s) {
        T* const sa = as + ig::buffer_of(s) * L::a_elems;
        T* const sb = bs + ig::buffer_of(s) * L::b_elems;
        const auto copy = [&](T* dst, const T* src, long long at, int elements) {
            if (elements == L::vec) cp_async16(dst, at >= 0 ? src + at : src, at >= 0 ? 16 : 0);
            else *dst = at >= 0 ? src[at] : zero;
        };
        ig::load_a(p, pixels, a, t, [&](int slot, long long at, int elements) { copy(sa + slot, p.x, at, elements); });
        ig::load_b(p, s * L::bk, o.j0, t, [&](int slot, long long at, int elements) { copy(sb + slot, p.wt, at, elements); });
        cp_async_commit();
    };

    Math math;
    math.zero();
    const int slices = ig::slices<sizeof(T)>(p.depth);
    if (slices > 0) load(0);
    for (int s = 0; s < slices; ++s) {
        if (s + 1 < slices) {  // the next slice flies while this one is multiplied
            load(s + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();  // slice s is in shared memory, every thread's part of it
        math.step(as + ig::buffer_of(s) * L::a_elems, bs + ig::buffer_of(s) * L::b_elems, t);
        __syncthreads();  // stage s is free for slice s + 2
    }

    math.store(cs, t);
    __syncthreads();
    ig::epilogue(p, pixels, cs, o.j0, t, [&](long long at, float v) { p.y[at] = S::store(v); });
}

}  // namespace conv_detail

// y = relu?(conv(x) + bias) for n samples of f (S: d_f32, d_f16, d_bf16): float storage on TF32
// tensor cores when tf32, else on CUDA cores; fp16 / bf16 on tensor cores (tf32 ignored).
template <class S>
void launch_conv_nhwc(const nhwc::conv_forward<S>& f, int n, bool tf32, cudaStream_t stream) {
    using T = typename S::type;
    namespace ig = nhwc::igemm;
    const long long rows = static_cast<long long>(n) * f.y.h * f.y.w;
    if (rows <= 0 || f.y.c <= 0) return;
    const long long blocks = (rows + ig::bm - 1) / ig::bm * ((f.y.c + ig::bn - 1) / ig::bn);
    if (rows > INT_MAX - ig::bm || blocks > INT_MAX || f.x.c <= 0)  // row tiles are rounded up in int
        throw error("ctnet: cuda: nhwc conv: " + std::to_string(rows) + " output pixels x " + std::to_string(f.y.c) +
                    " channels from " + std::to_string(f.x.c) + " is out of the kernel's range");
    const ig::problem<T> p = ig::make_problem(f, n);
    const char* name = nullptr;
    if constexpr (std::is_same<T, float>::value) {
        if (tf32) {
            conv_detail::conv_nhwc<S, conv_detail::mma<float>><<<static_cast<unsigned>(p.blocks), ig::threads, 0, stream>>>(p);
            name = "nhwc conv (tf32 tensor cores)";
        } else {
            conv_detail::conv_nhwc<S, conv_detail::fma_fp32><<<static_cast<unsigned>(p.blocks), ig::threads, 0, stream>>>(p);
            name = "nhwc conv (fp32)";
        }
    } else {
        conv_detail::conv_nhwc<S, conv_detail::mma<T>><<<static_cast<unsigned>(p.blocks), ig::threads, 0, stream>>>(p);
        name = "nhwc conv (16-bit tensor cores)";
    }
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        throw error(std::string{"ctnet: cuda: launching "} + name + " failed: " + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ")");
}

}  // namespace ctnet::cuda::nk
