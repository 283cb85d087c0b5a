// ctnet/core/hd.hpp — CTNET_HD: a function for the host and the device. nvcc compiles it for
// both (forced inline); a host compiler sees a plain inline function. No CUDA header, so the
// element functions the CUDA kernels are built from (cuda/operands.hpp, train/update.hpp) are
// host code too, tested on machines without a GPU.
#pragma once

#if defined(__CUDACC__)
#define CTNET_HD __host__ __device__ __forceinline__
#else
#define CTNET_HD inline
#endif
