// src/cuda/dnn_train.cu — cuda::dnn_convs (cuda/dnn_conv.hpp): the GPU trainer's convolutions by
// cuDNN's legacy API (forward, backward data, backward filter, backward bias), loaded at run
// time (dnn_api.cuh). One nvcc translation unit of ctnet::cuda, C++17. Without cuDNN compiled in,
// construction throws cudnn_unavailable_reason().
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <ctnet/core/error.hpp>
#include <ctnet/cuda/dnn_conv.hpp>
#include <ctnet/cuda/runtime.hpp>

#include "dnn_api.cuh"

namespace ctnet::cuda {

#if defined(CTNET_HAVE_CUDNN)

namespace {

using dnn_api::dnn;
using bf16 = __nv_bfloat16;

// ---- bf16 mixed precision: the conversions around each conv --------------------------------
// A batch of n samples of v (each sample c*h*w contiguous floats at sample stride v.stride) to
// packed bf16 (round to nearest even), and back (assigned or added).
__global__ void view_to_bf16(view v, int n, bf16* out) {
    const long long per = static_cast<long long>(v.c) * v.h * v.w, total = per * n;
    for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < total;
         e += static_cast<long long>(gridDim.x) * blockDim.x)
        out[e] = __float2bfloat16_rn(v.data[e / per * v.stride + e % per]);
}
__global__ void bf16_to_view(const bf16* in, view v, int n, bool add) {
    const long long per = static_cast<long long>(v.c) * v.h * v.w, total = per * n;
    for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < total;
         e += static_cast<long long>(gridDim.x) * blockDim.x) {
        float* out = v.data + e / per * v.stride + e % per;
        const float f = __bfloat162float(in[e]);
        *out = add ? *out + f : f;
    }
}
__global__ void floats_to_bf16(const float* in, bf16* out, long long count) {
    for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < count;
         e += static_cast<long long>(gridDim.x) * blockDim.x)
        out[e] = __float2bfloat16_rn(in[e]);
}
__global__ void add_bf16_floats(const bf16* in, float* out, long long count) {
    for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < count;
         e += static_cast<long long>(gridDim.x) * blockDim.x)
        out[e] += __bfloat162float(in[e]);
}

unsigned grid_for(long long total) { return static_cast<unsigned>(std::min<long long>((total + 255) / 256, 65535LL * 8)); }

void launched(const char* kernel) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        throw error(std::string{"ctnet: cuda: launching "} + kernel + " failed: " + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ")");
}

long long elements(view v, int n) { return static_cast<long long>(n) * v.c * v.h * v.w; }

// The packed bf16 descriptor of n samples shaped as v.
void set_packed16(cudnnTensorDescriptor_t d, view v, int n) {
    CTNET_DNN(cudnnSetTensor4dDescriptor, d, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, n, v.c, v.h, v.w);
}

// The descriptor of a batch of n samples of v (dnn_can_run has checked the int range).
void set_tensor(cudnnTensorDescriptor_t d, view v, int n) {
    const dnn_tensor t = dnn_tensor_of(v, n);
    CTNET_DNN(cudnnSetTensor4dDescriptorEx, d, CUDNN_DATA_FLOAT, static_cast<int>(t.dims[0]), static_cast<int>(t.dims[1]),
              static_cast<int>(t.dims[2]), static_cast<int>(t.dims[3]), static_cast<int>(t.strides[0]),
              static_cast<int>(t.strides[1]), static_cast<int>(t.strides[2]), static_cast<int>(t.strides[3]));
}

// FFT and Winograd convolutions round differently from a direct sum (FFT by far the most): fp32
// keeps to the GEMM-like algorithms, so it stays within the CPU trainer's 1e-5 (which runs
// without Winograd there too).
bool transformed(cudnnConvolutionFwdAlgo_t a) {
    return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
bool transformed(cudnnConvolutionBwdDataAlgo_t a) {
    return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
bool transformed(cudnnConvolutionBwdFilterAlgo_t a) {
    return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

// cuDNN 9 refuses with CUDNN_STATUS_NOT_SUPPORTED or one of its sub-codes (3001...).
bool refused(cudnnStatus_t st) { return CUDNN_STATUS_CATEGORY(st) == CUDNN_STATUS_NOT_SUPPORTED; }

// The first of cuDNN's ranked candidates that ran (status), is deterministic, uses an allowed math
// type (and in fp32 an exact algorithm) and fits the workspace; nullptr if none.
template <class Perf>
const Perf* pick(const Perf* perf, int count, precision p, std::size_t limit) {
    for (int i = 0; i < count; ++i) {
        const Perf& c = perf[i];
        if (c.status != CUDNN_STATUS_SUCCESS || c.determinism != CUDNN_DETERMINISTIC || c.memory > limit) continue;
        if (p == precision::fp32 && transformed(c.algo)) continue;
        if (p == precision::fp32 && c.mathType != CUDNN_FMA_MATH) continue;  // DEFAULT_MATH permits TF32 on sm_80+
        if (c.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;  // fp16 down-conversion: below tf32
        return &c;
    }
    return nullptr;
}

}  // namespace

struct dnn_convs::impl {
    struct pass {
        bool on = false;
        int algo = 0;
        cudnnMathType_t math = CUDNN_DEFAULT_MATH;
        std::size_t workspace = 0;
    };
    struct conv {
        geometry g;
        view x, y, xb;  // forward input (and dx), output (and dy), backward-filter input
        bool bias = false;
        cudnnTensorDescriptor_t xd = nullptr, yd = nullptr, xbd = nullptr, bd = nullptr;
        cudnnTensorDescriptor_t x16 = nullptr, y16 = nullptr;  // bf16: packed x (and dx, the filter pass's x), y (and dy)
        cudnnFilterDescriptor_t wd = nullptr;
        cudnnConvolutionDescriptor_t cd = nullptr;
        pass fwd, data, filter;
    };

    cudaStream_t stream;
    precision prec;
    std::size_t limit;
    cudnnHandle_t handle = nullptr;
    std::vector<conv> convs;
    device_buffer<unsigned char> ws;
    // bf16: the weights' copy (refresh_weights), and scratch for one conv's operands: a (x or
    // dx), b (y or dy), f (a filter gradient).
    bool half = false;
    int batch = 0;
    const float* params = nullptr;
    device_buffer<bf16> w16, a16, b16, f16;

    impl(cudaStream_t s, precision p, std::size_t l) : stream{s}, prec{p}, limit{l} {
        if (!dnn().why.empty()) throw error("ctnet: cuda trainer: cuDNN: " + dnn().why);
        if (p != precision::fp32 && p != precision::tf32 && p != precision::bf16)
            throw error(std::string{"ctnet: cuda trainer: cuDNN convolutions in precision::"} + to_string(p) + " are not built");
        half = p == precision::bf16;
        CTNET_DNN(cudnnCreate, &handle);
        const cudnnStatus_t st = dnn().cudnnSetStream(handle, s);
        if (st != CUDNN_STATUS_SUCCESS) {
            static_cast<void>(dnn().cudnnDestroy(handle));
            dnn_api::dnn_check(st, "cudnnSetStream");
        }
    }
    ~impl() {
        clear();
        if (handle != nullptr) static_cast<void>(dnn().cudnnDestroy(handle));
    }

    void clear() noexcept {
        for (conv& c : convs) {
            for (cudnnTensorDescriptor_t d : {c.xd, c.yd, c.xbd, c.bd, c.x16, c.y16})
                if (d != nullptr) static_cast<void>(dnn().cudnnDestroyTensorDescriptor(d));
            if (c.wd != nullptr) static_cast<void>(dnn().cudnnDestroyFilterDescriptor(c.wd));
            if (c.cd != nullptr) static_cast<void>(dnn().cudnnDestroyConvolutionDescriptor(c.cd));
        }
        convs.clear();
    }

    void prepare(conv& c, int n) {
        c.fwd = c.data = c.filter = pass{};
        if (!dnn_can_run(c.g, c.x, c.y, n) || !dnn_can_run(c.g, c.xb, c.y, n)) return;
        for (cudnnTensorDescriptor_t* d : {&c.xd, &c.yd, &c.xbd, &c.bd, &c.x16, &c.y16})
            if (*d == nullptr) CTNET_DNN(cudnnCreateTensorDescriptor, d);
        if (c.wd == nullptr) CTNET_DNN(cudnnCreateFilterDescriptor, &c.wd);
        if (c.cd == nullptr) CTNET_DNN(cudnnCreateConvolutionDescriptor, &c.cd);
        set_tensor(c.xd, c.x, n);
        set_tensor(c.yd, c.y, n);
        set_tensor(c.xbd, c.xb, n);
        CTNET_DNN(cudnnSetTensor4dDescriptor, c.bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, c.y.c, 1, 1);
        if (half) {  // the convs read and write packed bf16 copies; accumulation stays float
            set_packed16(c.x16, c.x, n);
            set_packed16(c.y16, c.y, n);
        }
        const dnn_conv_desc d = dnn_conv_of(c.g, c.x, c.y);
        CTNET_DNN(cudnnSetFilter4dDescriptor, c.wd, half ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, d.filter[0],
                  d.filter[1], d.filter[2], d.filter[3]);
        CTNET_DNN(cudnnSetConvolution2dDescriptor, c.cd, d.pad_h, d.pad_w, d.stride_h, d.stride_w, 1, 1, CUDNN_CROSS_CORRELATION,
                  CUDNN_DATA_FLOAT);
        CTNET_DNN(cudnnSetConvolutionMathType, c.cd, prec == precision::fp32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH);
        const cudnnTensorDescriptor_t x = half ? c.x16 : c.xd, y = half ? c.y16 : c.yd, xb = half ? c.x16 : c.xbd;
        int got = 0;
        {
            cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
            if (query(dnn().cudnnGetConvolutionForwardAlgorithm_v7(handle, x, c.wd, c.cd, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf),
                      "cudnnGetConvolutionForwardAlgorithm_v7"))
                if (const auto* b = pick(perf, got, prec, limit)) c.fwd = {true, static_cast<int>(b->algo), b->mathType, b->memory};
        }
        {
            cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
            if (query(dnn().cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, c.wd, y, c.cd, x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf),
                      "cudnnGetConvolutionBackwardDataAlgorithm_v7"))
                if (const auto* b = pick(perf, got, prec, limit)) c.data = {true, static_cast<int>(b->algo), b->mathType, b->memory};
        }
        {
            cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
            if (query(dnn().cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, xb, y, c.cd, c.wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                      &got, perf),
                      "cudnnGetConvolutionBackwardFilterAlgorithm_v7"))
                if (const auto* b = pick(perf, got, prec, limit)) c.filter = {true, static_cast<int>(b->algo), b->mathType, b->memory};
        }
    }

    // A query cuDNN refuses leaves the pass off (ctnet's kernels run it); other errors throw.
    static bool query(cudnnStatus_t st, const char* call) {
        if (refused(st)) return false;
        dnn_api::dnn_check(st, call);
        return true;
    }

    // bf16: the weights' copy of op weights w (a pointer into the float parameters).
    const bf16* weights16(const float* w) const { return w16.data() + (w - params); }

    // A refused first call turns the pass off (the caller falls back); other errors throw.
    static bool ran(cudnnStatus_t st, pass& p, const char* call) {
        if (refused(st)) {
            p.on = false;
            return false;
        }
        dnn_api::dnn_check(st, call);
        return true;
    }
    void* workspace() const { return ws.size() > 0 ? ws.data() : nullptr; }
};

dnn_convs::dnn_convs(cudaStream_t s, precision p, std::size_t workspace_limit)
    : p_{std::make_unique<impl>(s, p, workspace_limit)} {}
dnn_convs::~dnn_convs() = default;

void dnn_convs::clear() { p_->clear(); }

int dnn_convs::add(geometry g, view x, view y, bool bias) {
    return add(g, x, y, x, bias);
}

int dnn_convs::add(geometry g, view x, view y, view xb, bool bias) {
    impl::conv c;
    c.g = g;
    c.x = x;
    c.y = y;
    c.xb = xb;
    c.bias = bias;
    p_->convs.push_back(c);
    return static_cast<int>(p_->convs.size()) - 1;
}

void dnn_convs::refresh_weights(const float* params, std::size_t count) {
    if (!p_->half || count == 0) return;
    if (p_->w16.size() < count) p_->w16 = device_buffer<bf16>{count};
    p_->params = params;
    floats_to_bf16<<<grid_for(static_cast<long long>(count)), 256, 0, p_->stream>>>(params, p_->w16.data(),
                                                                                   static_cast<long long>(count));
    launched("floats_to_bf16");
}

void dnn_convs::prepare(int n) {
    p_->batch = n;
    std::size_t need = 0;
    long long a = 1, b = 1, f = 1;
    for (impl::conv& c : p_->convs) {
        try {
            p_->prepare(c, n);
        } catch (...) {  // every pass off (ctnet's kernels), so no call runs with stale sizes; then report
            for (impl::conv& d : p_->convs) d.fwd = d.data = d.filter = impl::pass{};
            throw;
        }
        need = std::max({need, c.fwd.workspace, c.data.workspace, c.filter.workspace});
        a = std::max(a, elements(c.x, n));
        b = std::max(b, elements(c.y, n));
        f = std::max(f, static_cast<long long>(c.y.c) * c.x.c * c.g.kh * c.g.kw);
    }
    if (p_->half) {
        const auto grow = [](device_buffer<bf16>& d, long long count) {
            if (d.size() < static_cast<std::size_t>(count)) {
                d = device_buffer<bf16>{};
                d = device_buffer<bf16>{static_cast<std::size_t>(count)};
            }
        };
        grow(p_->a16, a);
        grow(p_->b16, b);
        grow(p_->f16, f);
    }
    try {
        if (need > p_->ws.size()) {
            p_->ws = device_buffer<unsigned char>{};
            p_->ws = device_buffer<unsigned char>{need};
        }
    } catch (...) {
        for (impl::conv& d : p_->convs) d.fwd = d.data = d.filter = impl::pass{};
        throw;
    }
}

bool dnn_convs::forward(int k, const float* w, const float* b, view x, view y) {
    impl::conv& c = p_->convs[static_cast<std::size_t>(k)];
    if (!c.fwd.on) return false;
    const float one = 1.0F, zero = 0.0F;
    CTNET_DNN(cudnnSetConvolutionMathType, c.cd, c.fwd.math);
    const auto algo = static_cast<cudnnConvolutionFwdAlgo_t>(c.fwd.algo);
    if (p_->half) {
        const int n = p_->batch;
        view_to_bf16<<<grid_for(elements(x, n)), 256, 0, p_->stream>>>(x, n, p_->a16.data());
        launched("view_to_bf16");
        if (!impl::ran(dnn().cudnnConvolutionForward(p_->handle, &one, c.x16, p_->a16.data(), c.wd, p_->weights16(w), c.cd, algo,
                                                     p_->workspace(), c.fwd.workspace, &zero, c.y16, p_->b16.data()),
                       c.fwd, "cudnnConvolutionForward"))
            return false;
        bf16_to_view<<<grid_for(elements(y, n)), 256, 0, p_->stream>>>(p_->b16.data(), y, n, false);
        launched("bf16_to_view");
    } else {
        const cudnnStatus_t st = dnn().cudnnConvolutionForward(p_->handle, &one, c.xd, x.data, c.wd, w, c.cd, algo, p_->workspace(),
                                                               c.fwd.workspace, &zero, c.yd, y.data);
        if (!impl::ran(st, c.fwd, "cudnnConvolutionForward")) return false;
    }
    if (c.bias && b != nullptr) CTNET_DNN(cudnnAddTensor, p_->handle, &one, c.bd, b, &one, c.yd, y.data);
    return true;
}

bool dnn_convs::backward_data(int k, const float* w, view dy, view dx) {
    impl::conv& c = p_->convs[static_cast<std::size_t>(k)];
    if (!c.data.on) return false;
    const float one = 1.0F;
    CTNET_DNN(cudnnSetConvolutionMathType, c.cd, c.data.math);
    const auto algo = static_cast<cudnnConvolutionBwdDataAlgo_t>(c.data.algo);
    if (p_->half) {  // dx16 = conv^T(dy16), then dx += dx16
        const float zero = 0.0F;
        const int n = p_->batch;
        view_to_bf16<<<grid_for(elements(dy, n)), 256, 0, p_->stream>>>(dy, n, p_->b16.data());
        launched("view_to_bf16");
        if (!impl::ran(dnn().cudnnConvolutionBackwardData(p_->handle, &one, c.wd, p_->weights16(w), c.y16, p_->b16.data(), c.cd, algo,
                                                          p_->workspace(), c.data.workspace, &zero, c.x16, p_->a16.data()),
                       c.data, "cudnnConvolutionBackwardData"))
            return false;
        bf16_to_view<<<grid_for(elements(dx, n)), 256, 0, p_->stream>>>(p_->a16.data(), dx, n, true);
        launched("bf16_to_view");
        return true;
    }
    return impl::ran(dnn().cudnnConvolutionBackwardData(p_->handle, &one, c.wd, w, c.yd, dy.data, c.cd, algo, p_->workspace(),
                                                        c.data.workspace, &one, c.xd, dx.data),
                     c.data, "cudnnConvolutionBackwardData");
}

bool dnn_convs::backward_filter(int k, view x, view dy, float* dw, float* db) {
    impl::conv& c = p_->convs[static_cast<std::size_t>(k)];
    if (!c.filter.on) return false;
    const float one = 1.0F;
    CTNET_DNN(cudnnSetConvolutionMathType, c.cd, c.filter.math);
    const auto algo = static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.filter.algo);
    if (p_->half) {  // dw16 = x16 (*) dy16, then dw += dw16
        const float zero = 0.0F;
        const int n = p_->batch;
        const long long fl = static_cast<long long>(c.y.c) * c.x.c * c.g.kh * c.g.kw;
        view_to_bf16<<<grid_for(elements(x, n)), 256, 0, p_->stream>>>(x, n, p_->a16.data());
        launched("view_to_bf16");
        view_to_bf16<<<grid_for(elements(dy, n)), 256, 0, p_->stream>>>(dy, n, p_->b16.data());
        launched("view_to_bf16");
        if (!impl::ran(dnn().cudnnConvolutionBackwardFilter(p_->handle, &one, c.x16, p_->a16.data(), c.y16, p_->b16.data(), c.cd, algo,
                                                            p_->workspace(), c.filter.workspace, &zero, c.wd, p_->f16.data()),
                       c.filter, "cudnnConvolutionBackwardFilter"))
            return false;
        add_bf16_floats<<<grid_for(fl), 256, 0, p_->stream>>>(p_->f16.data(), dw, fl);
        launched("add_bf16_floats");
    } else if (!impl::ran(dnn().cudnnConvolutionBackwardFilter(p_->handle, &one, c.xbd, x.data, c.yd, dy.data, c.cd, algo,
                                                               p_->workspace(), c.filter.workspace, &one, c.wd, dw),
                          c.filter, "cudnnConvolutionBackwardFilter")) {
        return false;
    }
    // After dw: a refusal here cannot fall back (ctnet's kernel would add dw again), so it throws.
    if (db != nullptr) CTNET_DNN(cudnnConvolutionBackwardBias, p_->handle, &one, c.yd, dy.data, &one, c.bd, db);
    return true;
}

std::string dnn_convs::summary() const {
    int f = 0, d = 0, w = 0;
    for (const impl::conv& c : p_->convs) {
        f += c.fwd.on ? 1 : 0;
        d += c.data.on ? 1 : 0;
        w += c.filter.on ? 1 : 0;
    }
    const std::string of = " of " + std::to_string(p_->convs.size());
    return "cuDNN runs " + std::to_string(f) + of + " convs forward, " + std::to_string(d) + of + " backward data, " +
           std::to_string(w) + of + " backward filter (ctnet's kernels the rest)";
}

#else  // without cuDNN

struct dnn_convs::impl {};

dnn_convs::dnn_convs(cudaStream_t, precision, std::size_t) {
    throw error("ctnet: cuda trainer: cuDNN: " + cudnn_unavailable_reason());
}
dnn_convs::~dnn_convs() = default;
void dnn_convs::clear() {}
int dnn_convs::add(geometry, view, view, bool) { return -1; }
int dnn_convs::add(geometry, view, view, view, bool) { return -1; }
void dnn_convs::prepare(int) {}
void dnn_convs::refresh_weights(const float*, std::size_t) {}
bool dnn_convs::forward(int, const float*, const float*, view, view) { return false; }
bool dnn_convs::backward_data(int, const float*, view, view) { return false; }
bool dnn_convs::backward_filter(int, view, view, float*, float*) { return false; }
std::string dnn_convs::summary() const { return "ctnet's kernels (built without cuDNN)"; }

#endif

}  // namespace ctnet::cuda
