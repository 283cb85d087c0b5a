// src/cuda/nhwc.cu — the NHWC engines (cuda/nhwc_engine.hpp): the pass over the plan, memory,
// parameter conversion, CUDA graphs, and cuDNN's fused conv + bias + ReLU loaded at run time;
// ctnet's NHWC kernels are in nhwc_ops.cuh and conv_nhwc.cuh (the implicit-GEMM convolution).
// One nvcc translation unit of ctnet::cuda, C++17.
#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <ctnet/core/error.hpp>
#include <ctnet/cuda/nhwc_engine.hpp>
#include <ctnet/cuda/nhwc_operands.hpp>
#include <ctnet/cuda/runtime.hpp>

#include "conv_nhwc.cuh"
#include "nhwc_ops.cuh"

#include "dnn_api.cuh"

namespace ctnet::cuda {

#if defined(CTNET_HAVE_CUDNN)
using dnn_api::dnn;
using dnn_api::dnn_check;
#endif

namespace {

void check_launch(const char* kernel) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        throw error(std::string{"ctnet: cuda: launching "} + kernel + " failed: " + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ")");
}

unsigned blocks_for(long long total, int threads) {
    return static_cast<unsigned>(std::min<long long>((total + threads - 1) / threads, 65535LL * 8));
}

template <class... Params, class... Args>
void over(void (*kernel)(Params...), const char* name, long long total, cudaStream_t s, Args&&... args) {
    if (total <= 0) return;
    kernel<<<blocks_for(total, 256), 256, 0, s>>>(std::forward<Args>(args)...);
    check_launch(name);
}

}  // namespace

bool cudnn_available() { return cudnn_unavailable_reason().empty(); }

std::string cudnn_unavailable_reason() {
#if defined(CTNET_HAVE_CUDNN)
    return dnn().why;
#else
    return "ctnet::cuda was built without cuDNN (CTNET_CUDNN=OFF or cudnn.h not found)";
#endif
}

// ---- the engine --------------------------------------------------------------------------------

struct nhwc_engine::impl {
    virtual ~impl() = default;
    virtual void forward(const float* x, float* y, int n, bool host) = 0;
    virtual void prepare(int n) = 0;
    virtual std::string describe() const = 0;
    virtual std::size_t workspace() const = 0;
};

namespace {

template <class S>
class engine_impl final : public nhwc_engine::impl {
    int device_;  // first: checked (and made current) before any member below touches CUDA

public:
    using T = typename S::type;

    engine_impl(nhwc_model m, nhwc_options o) : device_{(require_device(o.device), o.device)}, m_{std::move(m)}, o_{o} {
        if (o_.eng == engine::nchw) throw error("ctnet: cuda: engine::nchw is not an NHWC engine");
#if defined(CTNET_HAVE_CUDNN)
        if (o_.eng == engine::cudnn) {
            if (!dnn().why.empty()) throw error("ctnet: cuda: engine::cudnn: " + dnn().why);
            CTNET_DNN(cudnnCreate, &dnn_);
            CTNET_DNN(cudnnSetStream, dnn_, stream_.get());
        }
#else
        if (o_.eng == engine::cudnn) throw error("ctnet: cuda: engine::cudnn: " + cudnn_unavailable_reason());
#endif
        upload();
    }
    ~engine_impl() override {
#if defined(CTNET_HAVE_CUDNN)
        release_dnn();
        if (dnn_ != nullptr) static_cast<void>(dnn().cudnnDestroy(dnn_));
#endif
    }

    void prepare(int n) override {
        CTNET_CUDA(cudaSetDevice(device_));
        if (n > 0 && n != n_) resize(n);
    }

    void forward(const float* x, float* y, int n, bool host) override {
        if (n <= 0) return;
        CTNET_CUDA(cudaSetDevice(device_));
        if (n != n_) resize(n);
        const cudaStream_t s = stream_.get();
        const std::size_t in_bytes = static_cast<std::size_t>(n) * static_cast<std::size_t>(m_.in.size()) * sizeof(float);
        const std::size_t out_bytes = static_cast<std::size_t>(n) * static_cast<std::size_t>(m_.out.size()) * sizeof(float);
        const float* xd = host ? in_dev_.data() : x;
        float* yd = host ? out_dev_.data() : y;
        if (host) std::memcpy(in_host_.data(), x, in_bytes);
        // The whole pass: input copy (host path), input transform, every step, output conversion, output copy.
        const auto pass = [&] {
            if (host) CTNET_CUDA(cudaMemcpyAsync(in_dev_.data(), in_host_.data(), in_bytes, cudaMemcpyHostToDevice, s));
            input(xd);
            body();
            output(yd);
            if (host) CTNET_CUDA(cudaMemcpyAsync(out_host_.data(), out_dev_.data(), out_bytes, cudaMemcpyDeviceToHost, s));
        };
        if (!o_.graphs || !warm_ || graph_failed_) {
            pass();  // the first pass at a size runs eagerly, then it is captured
            warm_ = true;
        } else {
            // One graph per pass: the host path's pointers are the engine's own; device pointers
            // key a graph each (a few pairs; beyond them the pass is launched as it goes).
            graph* g = &graph_host_;
            if (!host) {
                const auto key = std::make_pair(x, y);
                auto it = dev_graphs_.find(key);
                if (it == dev_graphs_.end() && dev_graphs_.size() < 4) it = dev_graphs_.try_emplace(key).first;
                g = it == dev_graphs_.end() ? nullptr : &it->second;
            }
            if (g != nullptr && !g->ready()) {
                try {
                    g->capture(s, pass);
                } catch (const error& e) {  // run eagerly from now on, and say so in describe()
                    graph_failed_ = true;
                    graph_why_ = e.what();
                    g->reset();
                    static_cast<void>(cudaGetLastError());
                }
            }
            if (g != nullptr && g->ready()) g->launch(s);
            else pass();
        }
        stream_.synchronize();
        if (host) std::memcpy(y, out_host_.data(), out_bytes);
    }

    std::string describe() const override {
        std::string d = std::string{"engine "} + to_string(o_.eng) + ", " + to_string(o_.prec) + ", batch " + std::to_string(n_);
        d += graph_failed_ ? ", graph capture failed, eager: " + graph_why_
             : graph_host_.ready() || !dev_graphs_.empty() ? ", each pass one CUDA graph"
                                                          : ", eager so far";
        int by_dnn = 0;
        for (const conv_state& c : convs_) by_dnn += c.dnn ? 1 : 0;
        d += ", " + std::to_string(by_dnn) + " convs on cuDNN, " + std::to_string(convs_.size() - static_cast<std::size_t>(by_dnn)) +
             " on ctnet's kernel";
#if defined(CTNET_HAVE_CUDNN)
        if (by_dnn > 0) {
            d += "; algorithms:";
            for (const conv_state& c : convs_)
                if (c.dnn) d += " " + std::to_string(static_cast<int>(c.algo)) + (c.fused ? "" : "u");
            d += "; workspace " + std::to_string(ws_.size()) + " bytes";
        }
#endif
        return d;
    }
    std::size_t workspace() const override { return ws_.size(); }

private:
    struct step_params {
        const T* w = nullptr;       // conv: KC (ctnet) or KRSC (cuDNN); linear: [out][in]
        const float* bias = nullptr;  // conv / linear bias; affine scale
        const float* shift = nullptr;
        const T* bias_t = nullptr;  // conv bias in the storage type (cuDNN's alternative bias type)
    };
    struct conv_state {
        int step = 0;
        bool dnn = false;  // run by cuDNN
#if defined(CTNET_HAVE_CUDNN)
        cudnnTensorDescriptor_t x = nullptr, y = nullptr, b = nullptr;
        cudnnFilterDescriptor_t w = nullptr;
        cudnnConvolutionDescriptor_t c = nullptr;
        cudnnActivationDescriptor_t act = nullptr;
        cudnnConvolutionFwdAlgo_t algo{};
        bool fused = true;     // cudnnConvolutionBiasActivationForward (else cudnnConvolutionForward + ctnet's bias / ReLU kernel)
        bool bias_t = false;   // the bias descriptor has the storage type (float refused)
#endif
    };

    [[nodiscard]] bool by_dnn(const nhwc::step& s) const { return o_.eng == engine::cudnn && nhwc::cudnn_ok(s); }

    // Converts every parameter once: storage type for weights, float for biases and affines.
    void upload() {
        std::vector<T> wt;         // storage-type weights of all convs and linears
        std::vector<float> fl;     // float biases / scales / shifts
        struct at {
            long long w = -1, b = -1, s = -1, bt = -1;
        };
        std::vector<at> where(m_.steps.size());
        const std::vector<float>& p = m_.params;
        // Every segment starts 256-byte aligned (cuDNN's tensor-core kernels want aligned operands).
        const auto align = [](auto& v) { v.resize((v.size() + 127) / 128 * 128); };
        for (std::size_t i = 0; i < m_.steps.size(); ++i) {
            const nhwc::step& s = m_.steps[i];
            at& a = where[i];
            align(wt);
            align(fl);
            if (s.k == nhwc::kind::conv) {
                const int cout = s.y.c, depth = s.g.kh * s.g.kw * s.x.c;
                a.w = static_cast<long long>(wt.size());
                const float* src = p.data() + s.w;  // KRSC: [out][depth]
                if (by_dnn(s))
                    for (long long e = 0; e < static_cast<long long>(cout) * depth; ++e) wt.push_back(S::store(src[e]));
                else {  // ctnet's GEMM reads [depth][out]
                    const std::size_t base = wt.size();
                    wt.resize(base + static_cast<std::size_t>(cout) * depth);
                    for (int o = 0; o < cout; ++o)
                        for (int k = 0; k < depth; ++k)
                            wt[base + static_cast<std::size_t>(k) * cout + o] = S::store(src[static_cast<std::size_t>(o) * depth + k]);
                }
                if (s.bias >= 0) {  // a pooled conv has none: its pool adds it
                    a.b = static_cast<long long>(fl.size());
                    fl.insert(fl.end(), p.begin() + s.bias, p.begin() + s.bias + cout);
                    align(wt);
                    a.bt = static_cast<long long>(wt.size());
                    for (int o = 0; o < cout; ++o) wt.push_back(S::store(p[static_cast<std::size_t>(s.bias + o)]));
                }
            } else if (s.k == nhwc::kind::avg_pool && s.bias >= 0) {  // a pooled conv's bias
                a.b = static_cast<long long>(fl.size());
                fl.insert(fl.end(), p.begin() + s.bias, p.begin() + s.bias + s.y.c);
            } else if (s.k == nhwc::kind::linear) {
                a.w = static_cast<long long>(wt.size());
                for (long long e = 0; e < static_cast<long long>(s.y.c) * s.x.c; ++e) wt.push_back(S::store(p[static_cast<std::size_t>(s.w + e)]));
                if (s.bias >= 0) {
                    a.b = static_cast<long long>(fl.size());
                    fl.insert(fl.end(), p.begin() + s.bias, p.begin() + s.bias + s.y.c);
                }
            } else if ((s.k == nhwc::kind::affine || s.k == nhwc::kind::input) && s.w >= 0) {
                const int c = s.k == nhwc::kind::input ? s.y.c : s.x.c;
                a.b = static_cast<long long>(fl.size());
                fl.insert(fl.end(), p.begin() + s.w, p.begin() + s.w + c);
                align(fl);
                a.s = static_cast<long long>(fl.size());
                fl.insert(fl.end(), p.begin() + s.bias, p.begin() + s.bias + c);
            }
        }
        wdev_ = device_buffer<T>{std::max<std::size_t>(wt.size(), 1)};
        fdev_ = device_buffer<float>{std::max<std::size_t>(fl.size(), 1)};
        CTNET_CUDA(cudaMemcpyAsync(wdev_.data(), wt.data(), wt.size() * sizeof(T), cudaMemcpyHostToDevice, stream_.get()));
        CTNET_CUDA(cudaMemcpyAsync(fdev_.data(), fl.data(), fl.size() * sizeof(float), cudaMemcpyHostToDevice, stream_.get()));
        stream_.synchronize();
        sp_.resize(m_.steps.size());
        for (std::size_t i = 0; i < m_.steps.size(); ++i) {
            const at& a = where[i];
            step_params& q = sp_[i];
            if (a.w >= 0) q.w = wdev_.data() + a.w;
            if (a.b >= 0) q.bias = fdev_.data() + a.b;
            if (a.s >= 0) q.shift = fdev_.data() + a.s;
            if (a.bt >= 0) q.bias_t = wdev_.data() + a.bt;
        }
    }

    template <class U>
    [[nodiscard]] nhwc::view<U> view_of(const nhwc::tensor& t) const {
        T* base = t.input                    ? in_nhwc_.data()
                  : t.buf == nhwc::pool_temp ? temp_pool_.data()
                                             : arena_.data() + m_.offsets[static_cast<std::size_t>(t.buf)] * scale_;
        return {base + t.c0, t.sample(), t.channels, t.c, t.h, t.w};
    }
    [[nodiscard]] nhwc::view<T> packed(T* data, const nhwc::tensor& t) const {
        return {data, t.size(), t.c, t.c, t.h, t.w};
    }

    void resize(int n) {
        graph_host_.reset();
        dev_graphs_.clear();
        warm_ = false;
        n_ = 0;
#if defined(CTNET_HAVE_CUDNN)
        release_dnn();
#endif
        convs_.clear();
        arena_ = device_buffer<T>{};
        scale_ = nhwc::arena_scale(n, static_cast<int>(sizeof(T)));  // every buffer 32-byte aligned
        arena_ = device_buffer<T>{static_cast<std::size_t>(m_.arena) * static_cast<std::size_t>(scale_)};
        bool input_read = false;
        for (const nhwc::step& s : m_.steps) input_read = input_read || (s.x.input && s.k != nhwc::kind::input) || s.y.input;
        in_nhwc_ = device_buffer<T>{input_read ? static_cast<std::size_t>(m_.in.size()) * static_cast<std::size_t>(n) : 0};
        in_dev_ = device_buffer<float>{static_cast<std::size_t>(m_.in.size()) * static_cast<std::size_t>(n)};
        out_dev_ = device_buffer<float>{static_cast<std::size_t>(m_.out.size()) * static_cast<std::size_t>(n)};
        in_host_ = pinned_buffer<float>{in_dev_.size()};
        out_host_ = pinned_buffer<float>{out_dev_.size()};
        const bool dnn_on = o_.eng == engine::cudnn;
        temp_in_ = device_buffer<T>{dnn_on ? static_cast<std::size_t>(m_.temp_in) * static_cast<std::size_t>(n) : 0};
        temp_out_ = device_buffer<T>{dnn_on ? static_cast<std::size_t>(m_.temp_out) * static_cast<std::size_t>(n) : 0};
        temp_pool_ = device_buffer<T>{static_cast<std::size_t>(m_.temp_pool) * static_cast<std::size_t>(n)};
        n_ = n;
        for (std::size_t i = 0; i < m_.steps.size(); ++i)
            if (m_.steps[i].k == nhwc::kind::conv) convs_.push_back(conv_state{static_cast<int>(i), by_dnn(m_.steps[i])});
#if defined(CTNET_HAVE_CUDNN)
        if (dnn_on) setup_dnn();
#endif
    }

    void input(const float* x) {
        const nhwc::step& s = m_.steps.front();
        const nhwc::view<T> y = view_of<T>(s.y);
        over(nk::input_transform<S>, "nhwc input_transform", static_cast<long long>(n_) * s.y.size(), stream_.get(), x,
             sp_.front().bias, sp_.front().shift, y, static_cast<long long>(n_) * s.y.size());
    }
    void output(float* y) {
        const nhwc::step& s = m_.steps.back();
        over(nk::output_transform<S>, "nhwc output_transform", static_cast<long long>(n_) * s.x.size(), stream_.get(),
             view_of<const T>(s.x), y, static_cast<long long>(n_) * s.x.size());
    }

    // Every step between the input transform and the output conversion.
    void body() {
        const cudaStream_t st = stream_.get();
        std::size_t conv = 0;
        for (std::size_t i = 1; i + 1 < m_.steps.size(); ++i) {
            const nhwc::step& s = m_.steps[i];
            const step_params& q = sp_[i];
            const long long ny = static_cast<long long>(n_) * s.y.size(), nx = static_cast<long long>(n_) * s.x.size();
            switch (s.k) {
                case nhwc::kind::conv: run_conv(s, q, convs_[conv++]); break;
                case nhwc::kind::max_pool:
                    over(nk::max_pool<S>, "nhwc max_pool", ny, st, s.g, view_of<const T>(s.x), view_of<T>(s.y), ny);
                    break;
                case nhwc::kind::avg_pool:
                    over(nk::avg_pool<S>, "nhwc avg_pool", ny, st, s.g, s.count_pad, q.bias, s.relu, view_of<const T>(s.x),
                         view_of<T>(s.y), ny);
                    break;
                case nhwc::kind::global_avg_pool:
                    over(nk::global_avg_pool<S>, "nhwc global_avg_pool", static_cast<long long>(n_) * s.x.c, st,
                         view_of<const T>(s.x), view_of<T>(s.y), static_cast<long long>(n_) * s.x.c);
                    break;
                case nhwc::kind::linear: {
                    const long long threads = static_cast<long long>(n_) * s.y.c * 32;
                    nk::linear<S><<<static_cast<unsigned>((threads + 255) / 256), 256, 0, st>>>(q.w, q.bias, view_of<const T>(s.x),
                                                                                                  view_of<T>(s.y), n_);
                    check_launch("nhwc linear");
                    break;
                }
                case nhwc::kind::softmax:
                    nk::softmax<S><<<static_cast<unsigned>(n_), 256, 0, st>>>(view_of<const T>(s.x), view_of<T>(s.y));
                    check_launch("nhwc softmax");
                    break;
                case nhwc::kind::affine:
                    over(nk::pointwise<S>, "nhwc affine", nx, st, q.bias, q.shift, s.relu, view_of<const T>(s.x), view_of<T>(s.y), nx);
                    break;
                case nhwc::kind::relu:
                    over(nk::pointwise<S>, "nhwc relu", nx, st, nullptr, nullptr, true, view_of<const T>(s.x), view_of<T>(s.y), nx);
                    break;
                case nhwc::kind::copy:
                    over(nk::pointwise<S>, "nhwc copy", nx, st, nullptr, nullptr, false, view_of<const T>(s.x), view_of<T>(s.y), nx);
                    break;
                case nhwc::kind::input:
                case nhwc::kind::output: break;
            }
        }
    }

    void run_conv(const nhwc::step& s, const step_params& q, const conv_state& c) {
        const cudaStream_t st = stream_.get();
        if (!c.dnn) {
            nk::launch_conv_nhwc(nhwc::conv_forward<S>{q.w, q.bias, s.relu, s.g, view_of<const T>(s.x), view_of<T>(s.y)}, n_,
                                 o_.prec != precision::fp32, st);
            return;
        }
#if defined(CTNET_HAVE_CUDNN)
        const bool in_slice = !s.x.packed(), out_slice = !s.y.packed();
        const long long nx = static_cast<long long>(n_) * s.x.size(), ny = static_cast<long long>(n_) * s.y.size();
        const T* x = view_of<const T>(s.x).data;
        if (in_slice) {
            over(nk::pointwise<S>, "nhwc slice to packed", nx, st, nullptr, nullptr, false, view_of<const T>(s.x),
                 packed(temp_in_.data(), s.x), nx);
            x = temp_in_.data();
        }
        T* y = out_slice ? temp_out_.data() : view_of<T>(s.y).data;
        conv_call(s, q, c, x, y);
        if (out_slice)
            over(nk::pointwise<S>, "nhwc packed to slice", ny, st, nullptr, nullptr, false,
                 nhwc::view<const T>{temp_out_.data(), s.y.size(), s.y.c, s.y.c, s.y.h, s.y.w}, view_of<T>(s.y), ny);
#endif
    }

#if defined(CTNET_HAVE_CUDNN)
    static cudnnDataType_t dtype() {
        if (std::is_same<T, __half>::value) return CUDNN_DATA_HALF;
        if (std::is_same<T, __nv_bfloat16>::value) return CUDNN_DATA_BFLOAT16;
        return CUDNN_DATA_FLOAT;
    }

    void set_tensor(cudnnTensorDescriptor_t d, const nhwc::tensor& t) const {
        const nhwc::dims4 a = nhwc::dims(t, n_);
        const long long big = std::numeric_limits<int>::max();
        if (a.n * a.sn > big) throw error("ctnet: cudnn: a tensor of more than 2^31 elements at batch " + std::to_string(n_));
        CTNET_DNN(cudnnSetTensor4dDescriptorEx, d, dtype(), static_cast<int>(a.n), static_cast<int>(a.c), static_cast<int>(a.h),
                  static_cast<int>(a.w), static_cast<int>(a.sn), static_cast<int>(a.sc), static_cast<int>(a.sh), static_cast<int>(a.sw));
    }

    // One conv: fused bias + ReLU, or (no ReLU, or a refused fusion) forward + bias + ReLU kernel.
    cudnnStatus_t try_call(const nhwc::step& s, const step_params& q, const conv_state& c, const T* x, T* y,
                           cudnnConvolutionFwdAlgo_t algo, bool fused, bool bias_t) const {
        const float one = 1.0F, zero = 0.0F;
        void* ws = ws_.size() > 0 ? ws_.data() : nullptr;
        if (fused)
            return dnn().cudnnConvolutionBiasActivationForward(dnn_, &one, c.x, x, c.w, q.w, c.c, algo, ws, ws_.size(), &zero,
                                                               c.y, y, c.b, bias_t ? static_cast<const void*>(q.bias_t) : q.bias,
                                                               c.act, c.y, y);
        return dnn().cudnnConvolutionForward(dnn_, &one, c.x, x, c.w, q.w, c.c, algo, ws, ws_.size(), &zero, c.y, y);
    }
    void conv_call(const nhwc::step& s, const step_params& q, const conv_state& c, const T* x, T* y) const {
        dnn_check(try_call(s, q, c, x, y, c.algo, c.fused, c.bias_t), c.fused ? "cudnnConvolutionBiasActivationForward" : "cudnnConvolutionForward");
        if (!c.fused && !s.pooled) {  // bias and ReLU by ctnet's kernel on the packed output (a pooled conv: its pool's)
            const nhwc::tensor t = nhwc::packed_like(s.y);
            const nhwc::view<T> v{y, t.sample(), t.channels, t.c, t.h, t.w};
            const long long ny = static_cast<long long>(n_) * t.size();
            over(nk::pointwise<S>, "nhwc conv bias", ny, stream_.get(), ones_.data(), q.bias, s.relu,
                 nhwc::view<const T>{y, t.sample(), t.channels, t.c, t.h, t.w}, v, ny);
        }
    }

    void release_dnn() {
        for (conv_state& c : convs_) {
            if (c.x != nullptr) dnn().cudnnDestroyTensorDescriptor(c.x);
            if (c.y != nullptr) dnn().cudnnDestroyTensorDescriptor(c.y);
            if (c.b != nullptr) dnn().cudnnDestroyTensorDescriptor(c.b);
            if (c.w != nullptr) dnn().cudnnDestroyFilterDescriptor(c.w);
            if (c.c != nullptr) dnn().cudnnDestroyConvolutionDescriptor(c.c);
            if (c.act != nullptr) dnn().cudnnDestroyActivationDescriptor(c.act);
            c = conv_state{c.step, c.dnn};
        }
    }

    // Descriptors, an algorithm per conv (timed by cuDNN, or its heuristic) that runs with the
    // fused bias + ReLU, and one workspace for the largest.
    void setup_dnn() {
        int widest = 1;
        for (const nhwc::step& s : m_.steps) widest = std::max(widest, s.y.c);
        ones_ = device_buffer<float>{static_cast<std::size_t>(widest)};
        {
            const std::vector<float> h(static_cast<std::size_t>(widest), 1.0F);
            CTNET_CUDA(cudaMemcpyAsync(ones_.data(), h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice, stream_.get()));
        }
        const auto cached = chosen_.find(n_);
        std::vector<choice> found_now;
        std::size_t at = 0;
        ws_ = device_buffer<unsigned char>{};
        if (cached == chosen_.end()) {  // trials use the whole limit; shrunk to what the chosen algorithms need below
            device_buffer<unsigned char> trial{o_.workspace_limit};
            ws_ = std::move(trial);
        }
        std::size_t need = 0;
        for (conv_state& c : convs_) {
            if (!c.dnn) continue;
            const nhwc::step& s = m_.steps[static_cast<std::size_t>(c.step)];
            const step_params& q = sp_[static_cast<std::size_t>(c.step)];
            CTNET_DNN(cudnnCreateTensorDescriptor, &c.x);
            CTNET_DNN(cudnnCreateTensorDescriptor, &c.y);
            CTNET_DNN(cudnnCreateTensorDescriptor, &c.b);
            CTNET_DNN(cudnnCreateFilterDescriptor, &c.w);
            CTNET_DNN(cudnnCreateConvolutionDescriptor, &c.c);
            CTNET_DNN(cudnnCreateActivationDescriptor, &c.act);
            set_tensor(c.x, s.x.packed() ? s.x : nhwc::packed_like(s.x));
            set_tensor(c.y, s.y.packed() ? s.y : nhwc::packed_like(s.y));
            CTNET_DNN(cudnnSetFilter4dDescriptor, c.w, dtype(), CUDNN_TENSOR_NHWC, s.y.c, s.x.c, s.g.kh, s.g.kw);
            CTNET_DNN(cudnnSetConvolution2dDescriptor, c.c, s.g.pt, s.g.pl, s.g.sh, s.g.sw, 1, 1, CUDNN_CROSS_CORRELATION,
                      CUDNN_DATA_FLOAT);
            const cudnnMathType_t math = o_.prec == precision::fp32   ? CUDNN_FMA_MATH
                                         : o_.prec == precision::tf32 ? CUDNN_DEFAULT_MATH
                                                                      : CUDNN_TENSOR_OP_MATH;
            CTNET_DNN(cudnnSetConvolutionMathType, c.c, math);
            CTNET_DNN(cudnnSetActivationDescriptor, c.act, s.relu ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY,
                      CUDNN_PROPAGATE_NAN, 0.0);
            const T* x = s.x.packed() ? view_of<const T>(s.x).data : temp_in_.data();
            T* y = s.y.packed() ? view_of<T>(s.y).data : temp_out_.data();
            if (cached != chosen_.end()) {  // this batch size was set up before: no second search
                const choice& k = cached->second[at++];
                c.algo = k.algo;
                c.fused = k.fused;
                c.bias_t = k.bias_t;
                if (k.fused)
                    CTNET_DNN(cudnnSetTensor4dDescriptor, c.b, CUDNN_TENSOR_NHWC, k.bias_t ? dtype() : CUDNN_DATA_FLOAT, 1, s.y.c, 1, 1);
                need = std::max(need, k.bytes);
                continue;
            }
            cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
            int found = 0;
            if (o_.find)
                CTNET_DNN(cudnnFindConvolutionForwardAlgorithmEx, dnn_, c.x, x, c.w, q.w, c.c, c.y, y,
                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf, ws_.data(), ws_.size());
            else
                CTNET_DNN(cudnnGetConvolutionForwardAlgorithm_v7, dnn_, c.x, c.w, c.c, c.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                          &found, perf);
            // The fastest candidate that runs fused (bias as float, then in the storage type),
            // else the fastest unfused one (bias + ReLU by ctnet's kernel).
            bool chosen = false;
            for (int pass = s.pooled ? 2 : 0; pass < 3 && !chosen; ++pass) {  // a pooled conv: no bias, unfused
                const bool fused = pass < 2, bias_t = pass == 1;
                if (bias_t && dtype() == CUDNN_DATA_FLOAT) continue;
                // (An identity activation runs fused only with IMPLICIT_PRECOMP_GEMM: the candidates decide.)
                if (fused)
                    CTNET_DNN(cudnnSetTensor4dDescriptor, c.b, CUDNN_TENSOR_NHWC, bias_t ? dtype() : CUDNN_DATA_FLOAT, 1, s.y.c, 1, 1);
                for (int i = 0; i < found && !chosen; ++i) {
                    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > ws_.size()) continue;
                    std::size_t bytes = 0;
                    if (dnn().cudnnGetConvolutionForwardWorkspaceSize(dnn_, c.x, c.w, c.c, c.y, perf[i].algo, &bytes) !=
                            CUDNN_STATUS_SUCCESS ||
                        bytes > ws_.size())
                        continue;
                    if (try_call(s, q, c, x, y, perf[i].algo, fused, bias_t) != CUDNN_STATUS_SUCCESS) continue;
                    c.algo = perf[i].algo;
                    c.fused = fused;
                    c.bias_t = bias_t;
                    need = std::max(need, bytes);
                    found_now.push_back(choice{c.algo, fused, bias_t, bytes});
                    chosen = true;
                }
            }
            if (!chosen)
                throw error("ctnet: cudnn: no algorithm runs conv " + std::to_string(c.step) + " (" + std::to_string(s.x.c) + "x" +
                            std::to_string(s.x.h) + "x" + std::to_string(s.x.w) + " -> " + std::to_string(s.y.c) + ")");
        }
        if (cached == chosen_.end()) chosen_[n_] = found_now;
        stream_.synchronize();
        ws_ = device_buffer<unsigned char>{};
        ws_ = device_buffer<unsigned char>{need};
    }

    struct choice {
        cudnnConvolutionFwdAlgo_t algo;
        bool fused, bias_t;
        std::size_t bytes;
    };
    std::map<int, std::vector<choice>> chosen_;  // per batch size: the algorithm of each cuDNN conv, searched once
    cudnnHandle_t dnn_ = nullptr;
    device_buffer<float> ones_;
#endif

    nhwc_model m_;
    nhwc_options o_;
    stream stream_;
    graph graph_host_;                                            // the host-copy pass
    std::map<std::pair<const float*, float*>, graph> dev_graphs_;  // forward_device's passes, by pointers
    bool warm_ = false, graph_failed_ = false;
    std::string graph_why_;
    int n_ = 0;
    long long scale_ = 0;  // elements of arena per per-sample element of the memory plan (n rounded up)
    device_buffer<T> wdev_;
    device_buffer<float> fdev_;
    std::vector<step_params> sp_;
    std::vector<conv_state> convs_;
    device_buffer<T> arena_, in_nhwc_, temp_in_, temp_out_, temp_pool_;
    device_buffer<float> in_dev_, out_dev_;
    pinned_buffer<float> in_host_, out_host_;
    device_buffer<unsigned char> ws_;
};

}  // namespace

nhwc_engine::nhwc_engine(nhwc_model m, nhwc_options o) {
    if (o.eng == engine::automatic) o.eng = cudnn_available() ? engine::cudnn : engine::ctnet;
    switch (o.prec) {
        case precision::fp16: p_ = std::make_unique<engine_impl<nk::d_f16>>(std::move(m), o); break;
        case precision::bf16: p_ = std::make_unique<engine_impl<nk::d_bf16>>(std::move(m), o); break;
        default: p_ = std::make_unique<engine_impl<nk::d_f32>>(std::move(m), o); break;
    }
}
nhwc_engine::~nhwc_engine() = default;
nhwc_engine::nhwc_engine(nhwc_engine&&) noexcept = default;
nhwc_engine& nhwc_engine::operator=(nhwc_engine&&) noexcept = default;

void nhwc_engine::forward_host(const float* x, float* y, int n) { p_->forward(x, y, n, true); }
void nhwc_engine::forward_device(const float* x, float* y, int n) { p_->forward(x, y, n, false); }
void nhwc_engine::prepare(int n) { p_->prepare(n); }
std::string nhwc_engine::describe() const { return p_->describe(); }
std::size_t nhwc_engine::workspace_bytes() const { return p_->workspace(); }

}  // namespace ctnet::cuda
