// ctnet/cuda/runtime.hpp — checked CUDA runtime calls and the few resources a runner owns.
//
//   CTNET_CUDA(cudaMemcpyAsync(...));      // throws ctnet::error: the call, the CUDA error, file:line
//   cuda::require_device();                 // throws a clear error when no usable device exists
//   cuda::device_buffer<float> b{n};        // cudaMalloc'd, freed on destruction
//   cuda::pinned_buffer<float> h{n};        // cudaMallocHost'd (page-locked) host memory
//   cuda::stream s;  cuda::graph g;         // a non-blocking stream; an instantiated CUDA graph
//
// Requires: the CUDA runtime (link CUDA::cudart); host C++ only. Guarantees: no CUDA call's
// status is ignored (destructors, which may not throw, are the only place one is dropped);
// out-of-memory names the bytes asked for.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include <cuda_runtime_api.h>

#include "../core/error.hpp"

namespace ctnet::cuda {

[[noreturn]] inline void fail(cudaError_t e, const char* call, const char* file, int line) {
    throw error(std::string{"ctnet: cuda: "} + call + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                ") at " + file + ":" + std::to_string(line));
}

#define CTNET_CUDA(call)                                                             \
    do {                                                                             \
        const cudaError_t ctnet_cuda_status_ = (call);                               \
        if (ctnet_cuda_status_ != cudaSuccess)                                       \
            ::ctnet::cuda::fail(ctnet_cuda_status_, #call, __FILE__, __LINE__);      \
    } while (false)

// The number of usable devices; 0 when there is no device or no driver (never throws).
inline int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        static_cast<void>(cudaGetLastError());  // clear the sticky "no device" status
        return 0;
    }
    return n;
}

// Throws ctnet::error when `device` cannot be used, saying why (no driver, no device, index).
inline void require_device(int device = 0) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        static_cast<void>(cudaGetLastError());
        throw error(std::string{"ctnet: cuda: no usable CUDA device (cudaGetDeviceCount: "} + cudaGetErrorName(e) + ", " +
                    cudaGetErrorString(e) + ")");
    }
    if (device < 0 || device >= n)
        throw error("ctnet: cuda: no usable CUDA device " + std::to_string(device) + " (" + std::to_string(n) +
                    " device(s) present)");
    CTNET_CUDA(cudaSetDevice(device));
}

template <class T>
class device_buffer {
public:
    device_buffer() = default;
    explicit device_buffer(std::size_t count) : count_{count} {
        if (count == 0) return;
        void* p = nullptr;
        const cudaError_t e = cudaMalloc(&p, count * sizeof(T));
        if (e != cudaSuccess) {
            static_cast<void>(cudaGetLastError());
            throw error("ctnet: cuda: cannot allocate " + std::to_string(count * sizeof(T)) + " bytes of device memory (" +
                        cudaGetErrorString(e) + ")");
        }
        p_ = static_cast<T*>(p);
    }
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;
    device_buffer(device_buffer&& o) noexcept : p_{std::exchange(o.p_, nullptr)}, count_{std::exchange(o.count_, 0)} {}
    device_buffer& operator=(device_buffer&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(count_, o.count_);
        return *this;
    }
    ~device_buffer() {
        if (p_ != nullptr) static_cast<void>(cudaFree(p_));
    }
    [[nodiscard]] T* data() const { return p_; }
    [[nodiscard]] std::size_t size() const { return count_; }

private:
    T* p_ = nullptr;
    std::size_t count_ = 0;
};

template <class T>
class pinned_buffer {
public:
    pinned_buffer() = default;
    explicit pinned_buffer(std::size_t count) : count_{count} {
        if (count == 0) return;
        void* p = nullptr;
        const cudaError_t e = cudaMallocHost(&p, count * sizeof(T));
        if (e != cudaSuccess) {
            static_cast<void>(cudaGetLastError());
            throw error("ctnet: cuda: cannot allocate " + std::to_string(count * sizeof(T)) + " bytes of pinned host memory (" +
                        cudaGetErrorString(e) + ")");
        }
        p_ = static_cast<T*>(p);
    }
    pinned_buffer(const pinned_buffer&) = delete;
    pinned_buffer& operator=(const pinned_buffer&) = delete;
    pinned_buffer(pinned_buffer&& o) noexcept : p_{std::exchange(o.p_, nullptr)}, count_{std::exchange(o.count_, 0)} {}
    pinned_buffer& operator=(pinned_buffer&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(count_, o.count_);
        return *this;
    }
    ~pinned_buffer() {
        if (p_ != nullptr) static_cast<void>(cudaFreeHost(p_));
    }
    [[nodiscard]] T* data() const { return p_; }
    [[nodiscard]] std::size_t size() const { return count_; }

private:
    T* p_ = nullptr;
    std::size_t count_ = 0;
};

class stream {
public:
    stream() { CTNET_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
    stream(const stream&) = delete;
    stream& operator=(const stream&) = delete;
    ~stream() { static_cast<void>(cudaStreamDestroy(s_)); }
    [[nodiscard]] cudaStream_t get() const { return s_; }
    void synchronize() const { CTNET_CUDA(cudaStreamSynchronize(s_)); }

private:
    cudaStream_t s_ = nullptr;
};

// An instantiated graph captured from a stream: capture(s, f) records what f enqueues on s.
class graph {
public:
    graph() = default;
    graph(const graph&) = delete;
    graph& operator=(const graph&) = delete;
    ~graph() { reset(); }

    template <class F>
    void capture(cudaStream_t s, F&& enqueue) {
        reset();
        CTNET_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        try {
            enqueue();
        } catch (...) {
            cudaGraph_t broken = nullptr;
            static_cast<void>(cudaStreamEndCapture(s, &broken));
            if (broken != nullptr) static_cast<void>(cudaGraphDestroy(broken));
            throw;
        }
        CTNET_CUDA(cudaStreamEndCapture(s, &g_));
        CTNET_CUDA(cudaGraphInstantiate(&exec_, g_, 0));
    }
    void launch(cudaStream_t s) const { CTNET_CUDA(cudaGraphLaunch(exec_, s)); }
    [[nodiscard]] bool ready() const { return exec_ != nullptr; }
    void reset() {
        if (exec_ != nullptr) static_cast<void>(cudaGraphExecDestroy(exec_));
        if (g_ != nullptr) static_cast<void>(cudaGraphDestroy(g_));
        exec_ = nullptr;
        g_ = nullptr;
    }

private:
    cudaGraph_t g_ = nullptr;
    cudaGraphExec_t exec_ = nullptr;
};

}  // namespace ctnet::cuda
