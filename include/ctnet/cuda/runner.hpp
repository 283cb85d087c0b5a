// ctnet/cuda/runner.hpp — inference on the GPU: runner<Net, backend::cuda>.
//
//   runner<net, backend::cuda> gpu{w};                               // NHWC, cuDNN (else ctnet's kernels), TF32, CUDA Graphs
//   runner<net, backend::cuda> exact{w, {.precision = cuda::precision::fp32}};
//   runner<net, backend::cuda> fast{w, {.precision = cuda::precision::bf16}};
//   runner<net, backend::cuda> first{w, {.engine = cuda::engine::nchw}};  // the first engine (NCHW, fp32 / tf32)
//   std::vector<float> logits = gpu(image);                          // N x C x H x W floats
//   fast.forward_device(x_dev, y_dev, n);                            // device-resident input (NHWC engines)
//
// The same model type as on the CPU; only the backend tag differs. Two families of engines:
// - engine::automatic (the default): engine::cudnn where ctnet::cuda was built with cuDNN
//   (CTNET_CUDNN, on when the toolkit has cudnn.h) and libcudnn.so.9 loads, else engine::ctnet;
//   engine::nchw for a network the NHWC plan cannot run or with options::conv.
// - engine::nchw (the first engine): at construction the program is transformed by
//   the plan every backend shares (exec/plan.hpp: batch norm folded into conv weights and bias,
//   ReLU into the conv epilogue; average pools stay before their 1x1 convs here) and every
//   parameter is uploaded once. Per batch size the runner allocates one device arena laid out by
//   the network's static memory plan, pinned host buffers for input and output, and (with
//   options::graphs) captures the whole pass (input copy, every kernel, output copy) as one CUDA
//   Graph on the second pass at a size (the first runs eagerly); later passes at that size launch
//   the graph. Concat costs nothing: each branch's conv writes into its channel slice.
//   fp32 and tf32 only.
// - engine::ctnet and engine::cudnn (NHWC, cuda/nhwc_engine.hpp, plan cuda/nhwc_plan.hpp):
//   activations NHWC end to end in the precision's storage type (fp16 / bf16 / float), weights
//   converted once at load, float accumulation, input and logits float; cuDNN's fused conv +
//   bias + ReLU (engine::cudnn, libcudnn loaded at run time) or ctnet's NHWC kernels. Not yet
//   run on a GPU (docs/cuda.md): host-tested plans, indices and element functions only.
// Requires: a CUDA device (construction throws ctnet::error saying why when there is none, the
// driver is missing or memory is short); link ctnet::cuda (the kernels, src/cuda/*.cu) and
// CUDA::cudart. This header is host C++: include it from any .cpp. One runner per host thread.
// Guarantees: results within 1e-5 relative of the reference runner with precision::fp32 and
// within 1e-2 with precision::tf32 (tests/test_cuda.cpp, on a machine with a GPU); every CUDA
// call is checked; eval mode only (training runs on the CPU backends).
#pragma once

#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "../exec/arena.hpp"
#include "../exec/backend.hpp"
#include "../exec/plan.hpp"
#include "../graph/network.hpp"
#include "../graph/params.hpp"
#include "launch.hpp"
#include "nhwc_engine.hpp"
#include "nhwc_model.hpp"
#include "runtime.hpp"

namespace ctnet {

template <class Net>
class runner<Net, backend::cuda> {
public:
    struct options {
        cuda::engine engine = cuda::engine::automatic;
        cuda::precision precision = cuda::precision::tf32;
        bool graphs = true;  // capture each batch size's pass as a CUDA Graph
        int device = 0;
        // Replaces ctnet's conv kernels (gets the folded weights and bias): a comparison engine
        // such as cuDNN in bench/gpu_bench.cpp. Empty: ctnet's kernels.
        std::function<void(const cuda::conv_call&)> conv{};
        // NHWC engines: time cuDNN's candidate algorithms at each batch size (else its heuristic),
        // and the most workspace one may use.
        bool find = true;
        std::size_t workspace_limit = std::size_t{256} << 20;
    };

    using network_type = Net;
    static constexpr shape input = input_shape_v<Net>;
    static constexpr shape output = output_shape_v<Net>;

    explicit runner(const weights<Net>& w) : runner(w, options{}) {}
    runner(const weights<Net>& w, options o) : opt_{o}, device_{(cuda::require_device(o.device), o.device)} {
        if (o.engine == cuda::engine::automatic && (o.conv || !cuda::nhwc_plan_v<Net>.ok)) opt_.engine = o.engine = cuda::engine::nchw;
        if (o.engine != cuda::engine::nchw) {
            if (o.conv) throw error("ctnet: cuda: options::conv replaces the convs of engine::nchw only");
            nhwc_ = std::make_unique<cuda::nhwc_engine>(
                cuda::make_nhwc_model<Net>(w.data()),
                cuda::nhwc_options{o.engine, o.precision, o.graphs, o.device, o.find, o.workspace_limit});
            return;
        }
        if (o.precision != cuda::precision::fp32 && o.precision != cuda::precision::tf32)
            throw error(std::string{"ctnet: cuda: precision::"} + cuda::to_string(o.precision) +
                        " needs an NHWC engine (options::engine = engine::cudnn or engine::ctnet)");
        const auto& p = Net::program;
        // Host image of the device parameters: the weights as stored, then each folded conv.
        std::vector<float> host(w.data().begin(), w.data().end());
        for (const exec::step& e : plan.steps()) {
            step s{.plan = e};
            const op& o0 = p.ops[e.op];
            if (o0.kind == op_kind::conv) {
                const exec::folded f = exec::fold(p, w.data(), e);
                s.w = host.size();
                host.insert(host.end(), f.w.begin(), f.w.end());
                s.bias = host.size();
                host.insert(host.end(), f.bias.begin(), f.bias.end());
            } else if (o0.kind == op_kind::channel_affine) {  // the layer's constants, one per channel
                const auto c = static_cast<std::size_t>(o0.in.s.c);
                s.w = host.size();
                host.insert(host.end(), o0.scale, o0.scale + c);
                s.bias = host.size();
                host.insert(host.end(), o0.shift, o0.shift + c);
            }
            steps_.push_back(s);
        }
        params_ = cuda::device_buffer<float>{host.size()};
        // On the runner's own stream, then waited for: a plain cudaMemcpy from pageable memory may
        // return before the copy lands, and stream_ (non-blocking) would not wait for it.
        CTNET_CUDA(cudaMemcpyAsync(params_.data(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice,
                                   stream_.get()));
        stream_.synchronize();
        for (int b = 0; b < p.n_bufs; ++b) offsets_.push_back(p.bufs[b].offset);
    }

    [[nodiscard]] std::vector<float> operator()(std::span<const float> x) {
        std::vector<float> y(arena::batch_of(x) * output.size());
        forward(x, y);
        return y;
    }

    void forward(std::span<const float> x, std::span<float> y) {
        const std::size_t n = arena::batch_of(x);
        arena::expect_size("output", y.size(), n * output.size());
        if (nhwc_) {
            nhwc_->forward_host(x.data(), y.data(), static_cast<int>(n));
            return;
        }
        CTNET_CUDA(cudaSetDevice(device_));  // the caller's thread may have made another device current
        if (n != n_) resize(n);
        std::memcpy(in_host_.data(), x.data(), x.size_bytes());
        // The first pass at a batch size runs eagerly, and the second is captured: an options::conv
        // engine (cuDNN) allocates and synchronises on its first call, which a capture cannot hold.
        if (opt_.graphs && warm_) {
            if (!graph_.ready()) graph_.capture(stream_.get(), [&] { enqueue(); });
            graph_.launch(stream_.get());
        } else {
            enqueue();
            warm_ = true;
        }
        stream_.synchronize();  // also reports a kernel's failure during execution
        std::memcpy(y.data(), out_host_.data(), y.size_bytes());
    }

    // n samples already in device memory (of this runner's device): x n x input.size() floats
    // (NCHW), y n x output.size() floats. No host copies; returns when y is written. NHWC engines only.
    void forward_device(const float* x, float* y, std::size_t n) {
        if (!nhwc_) throw error("ctnet: cuda: forward_device needs an NHWC engine (options::engine = engine::cudnn or engine::ctnet)");
        nhwc_->forward_device(x, y, static_cast<int>(n));
    }

    // Sets up batch size n before its first pass (NHWC engines: memory, cuDNN's algorithm search,
    // kept for the runner's lifetime; the NCHW engine sets up at the first pass).
    void prepare(std::size_t n) {
        if (nhwc_) nhwc_->prepare(static_cast<int>(n));
    }

    // NHWC engines: which convs cuDNN runs, their algorithms, whether the pass is a graph.
    [[nodiscard]] std::string describe() const {
        return nhwc_ ? nhwc_->describe() : std::string{"engine nchw, "} + cuda::to_string(opt_.precision);
    }

    // engine::nchw: floats of device activation memory at the current batch size (arena + input); 0 for the NHWC engines.
    [[nodiscard]] std::size_t device_floats() const { return arena_.size() + in_dev_.size(); }
    [[nodiscard]] std::size_t fused_convs() const {
        if (nhwc_) return static_cast<std::size_t>(cuda::nhwc_plan_v<Net>.count(cuda::nhwc::kind::conv));
        std::size_t c = 0;
        for (const step& s : steps_) c += Net::program.ops[s.plan.op].kind == op_kind::conv ? 1 : 0;
        return c;
    }

private:
    using arena = exec::activation_arena<Net>;
    // No pooled steps: the average pools run before their 1x1 convs.
    static constexpr const auto& plan = exec::plan_v<Net, exec::plan_options{.pools_into_pointwise = false}>;

    struct step {
        exec::step plan;
        std::size_t w = 0, bias = 0;  // offsets in params_: a folded conv's weights and bias, an affine's scale and shift
    };

    void resize(std::size_t n) {
        graph_.reset();
        warm_ = false;
        n_ = 0;  // stays 0 if an allocation below throws
        arena_ = cuda::device_buffer<float>{};
        arena_ = cuda::device_buffer<float>{Net::program.arena * n};
        in_dev_ = cuda::device_buffer<float>{input.size() * n};
        in_host_ = cuda::pinned_buffer<float>{input.size() * n};
        out_host_ = cuda::pinned_buffer<float>{output.size() * n};
        n_ = n;
    }

    [[nodiscard]] cuda::view view_of(const value& v) const {
        const buffer& b = Net::program.bufs[v.buf];
        float* base = b.input ? in_dev_.data() : arena_.data() + offsets_[static_cast<std::size_t>(v.buf)] * n_;
        return {base + v.offset, static_cast<long long>(b.s.size()), v.s.c, v.s.h, v.s.w};
    }

    static cuda::geometry geometry_of(const window& g) { return {g.kh, g.kw, g.sh, g.sw, g.pt, g.pb, g.pl, g.pr}; }
    [[nodiscard]] cuda::bn_tensors bn_of(const op& o) const {
        const auto bn = bn_params<const float>::of(o, params_.data());
        return {bn.gamma, bn.beta, bn.mean, bn.var};
    }
    [[nodiscard]] weight_params<const float> weights_of(const op& o) const { return weight_params<const float>::of(o, params_.data()); }

    // A folded conv: ctnet's kernels, or the options::conv engine (cuDNN in bench/gpu_bench.cpp).
    void conv(const float* w, const float* bias, bool relu, cuda::geometry g, cuda::view x, cuda::view y, int n,
              cudaStream_t s) const {
        if (opt_.conv) opt_.conv({w, bias, relu, g, x, y, n, s});
        else cuda::conv2d(w, bias, relu, g, x, y, n, opt_.precision, s);
    }

    // The whole pass on stream_: input copy, every step, output copy.
    void enqueue() {
        const auto& p = Net::program;
        const cudaStream_t s = stream_.get();
        const int n = static_cast<int>(n_);
        CTNET_CUDA(cudaMemcpyAsync(in_dev_.data(), in_host_.data(), in_host_.size() * sizeof(float), cudaMemcpyHostToDevice, s));
        for (const step& st : steps_) {
            const op& o = p.ops[st.plan.op];
            const cuda::view x = view_of(o.in), y = view_of(o.kind == op_kind::conv ? st.plan.out : o.out);
            const float* a = params_.data() + st.w;  // a folded conv's weights, an affine's scale
            const float* b = params_.data() + st.bias;
            switch (o.kind) {  // one line per op: its launcher (cuda/launch.hpp)
                case op_kind::conv: conv(a, b, st.plan.relu, geometry_of(o.win), x, y, n, s); break;
                case op_kind::batch_norm: cuda::batch_norm(bn_of(o), o.eps, x, y, n, s); break;
                case op_kind::relu: cuda::relu(x, y, n, s); break;
                case op_kind::max_pool: cuda::max_pool(geometry_of(o.win), x, y, n, s); break;
                case op_kind::avg_pool: cuda::avg_pool(geometry_of(o.win), o.count_pad, x, y, n, s); break;
                case op_kind::global_avg_pool: cuda::global_avg_pool(x, y, n, s); break;
                case op_kind::linear: cuda::linear(weights_of(o).w, weights_of(o).bias, x, y, n, s); break;
                case op_kind::softmax: cuda::softmax(x, y, n, s); break;
                case op_kind::dropout: if (x.data != y.data) cuda::copy(x, y, n, s); break;
                case op_kind::channel_affine: cuda::channel_affine(a, b, x, y, n, s); break;
            }
        }
        const cuda::view out = view_of(p.output);
        CTNET_CUDA(cudaMemcpy2DAsync(out_host_.data(), output.size() * sizeof(float), out.data,
                                     static_cast<std::size_t>(out.stride) * sizeof(float), output.size() * sizeof(float), n_,
                                     cudaMemcpyDeviceToHost, s));
    }

    options opt_;
    int device_;  // checked (and made current) before any member below touches CUDA
    cuda::device_buffer<float> params_;
    std::vector<std::size_t> offsets_;
    std::vector<step> steps_;
    cuda::stream stream_;
    cuda::graph graph_;
    cuda::device_buffer<float> arena_, in_dev_;
    cuda::pinned_buffer<float> in_host_, out_host_;
    std::size_t n_ = 0;
    bool warm_ = false;  // a pass at this batch size has run (the next one may be captured)
    std::unique_ptr<cuda::nhwc_engine> nhwc_;  // engine::ctnet / engine::cudnn: the whole pass
};

}  // namespace ctnet
