// ctnet/cuda/trainer.hpp — training on the GPU: trainer<Net, backend::cuda>.
//
//   weights<net> w;  init_seeded(w, 1);
//   trainer<net, backend::cuda> t{w, {.precision = cuda::precision::tf32, .seed = 7}};
//   step_result s = train_step(t, opt, ranges, images, labels, recipe, lr, &ema);  // train/step.hpp
//   t.to_host(opt, &ema);                          // parameters, optimizer state, average -> host
//
// The interface and the semantics of the CPU trainer (cpu/trainer.hpp): forward in training mode
// (batch statistics and running statistics updated as torchvision, dropout masks drawn from the
// same seeded generator in the same order, the aux head), backward adding into the gradients,
// logits() / grads() copied to the host on request. What differs is where things live: the
// parameters, the gradients, the optimizer state and the moving average are device memory for
// the trainer's lifetime, and train_step (train/step.hpp) runs the whole step there — the
// smoothed cross-entropy and its gradient, backward, the global norm, clipping, weight decay,
// the optimizer (any of the CPU's: train/update.hpp's arithmetic, in one kernel) and the moving
// average (device_step below) — copying back only the scalars of the progress line. to_host()
// copies the state back for a checkpoint (the same file as the CPU trainer's, so a run moves
// between backends with --resume); the host weights<Net> is stale in between.
//
// Kernels: the convolutions by cuDNN where it loads (cuda/dnn_conv.hpp: forward, backward data,
// backward filter, deterministic algorithms; options::cudnn), else by ctnet's conv GEMM engine
// (cuda/launch.hpp; fp32 on CUDA cores, or tf32 tensor cores); ctnet's kernels for every other op
// and for the optimizer. Every reduction has a fixed order, so a run repeats its bits.
// Precision (options::precision): fp32, tf32, or bf16 mixed precision — each conv's inputs and
// weights rounded to bf16 copies for cuDNN (float accumulation), its outputs and gradients back
// in float; activations, master weights, optimizer state, batch-norm statistics and every
// reduction stay float. Activations: every value its own buffer (exec::layout, unplanned), copies kept where an
// in-place op would overwrite what a backward kernel needs (exec/keep.hpp), as on the CPU.
// Data parallelism (options::comm, a cuda::device_communicator: NCCL or staged through MPI):
// one trainer per rank on its shard, run by the same train_step. The gradient average is cut
// into the buckets of bucket_plan (train/buckets.hpp), each started on the communicator's stream
// as soon as backward has finished it, so the all-reduce overlaps the rest of backward; the
// averaging runs on the device. The losses and hits are then the ranks' means and sum, and a
// non-finite value on any rank leaves every rank unchanged. With sync_bn the batch-norm
// statistics are the global batch's (cpu/sync_batch_norm.hpp's arithmetic), so 2 ranks on two
// halves compute what 1 rank computes on the whole batch. Every rank must run forward / step
// together (the batch norms' collectives are inside the passes).
// Requires: a CUDA device (construction throws ctnet::error otherwise); link ctnet::cuda.
// Never run on a GPU yet (docs/cuda.md): the GPU tests in tests/test_cuda_trainer.cpp compare it
// with the CPU trainer step by step when one is at hand.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../exec/arena.hpp"
#include "../exec/backend.hpp"
#include "../exec/keep.hpp"
#include "../graph/network.hpp"
#include "../graph/params.hpp"
#include "../train/buckets.hpp"
#include "../train/update.hpp"
#include "collective.hpp"
#include "dnn_conv.hpp"
#include "launch.hpp"
#include "runtime.hpp"

namespace ctnet {

namespace cuda {

// One training step's settings as plain numbers (train/step.hpp fills them from the recipe, the
// optimizer and the moving average).
struct device_step {
    double smoothing = 0.1;
    double aux_weight = 0.4;     // 0: the aux head's loss is left out
    double clip_norm = 2.0;      // 0: off
    update_kind update = update_kind::rmsprop_tf;  // the optimizer (train/update.hpp)
    update_rule rule{.lr = 0.045, .weight_decay = 4e-5};  // its settings for this step (optimizer::rule)
    bool average = false;        // update the moving average
    float average_decay = 0.0F;  // its decay for this update (ignored by the first, which copies)
};

struct device_step_result {
    double main_loss = 0.0;
    double aux_loss = 0.0;   // weighted by aux_weight
    double grad_norm = 0.0;  // before clipping
    int correct = 0;
    int bad_sample = -1;     // the first sample with a non-finite logit (main or aux head): nothing was updated
    bool bad_elsewhere = false; // data parallel: another rank's shard has a non-finite logit: nothing was updated
    bool grads_finite = true;   // false: nothing was updated
    bool params_finite = true;  // false: the update made a parameter non-finite (the average was not updated)
    double comm_seconds = 0.0;  // data parallel: time blocked after backward (buckets in flight, the statistics)
};

}  // namespace cuda

template <class Net>
class trainer<Net, backend::cuda> {
public:
    struct options {
        // The convolutions: fp32 (CUDA cores), tf32 (tensor cores), or bf16 mixed precision (cuDNN's
        // convs on bf16 copies of their inputs and weights, float accumulation; everything else,
        // the master weights, the optimizer and the batch-norm statistics in float).
        cuda::precision precision = cuda::precision::tf32;
        // cuDNN's convolutions (forward, backward data, backward filter) where libcudnn.so.9 loads
        // (cudnn_available()); ctnet's GEMM kernels otherwise and for the convs cuDNN refuses.
        bool cudnn = true;
        std::uint64_t seed = 0;    // dropout masks
        double bn_momentum = 0.1;  // running = (1 - m) * running + m * batch (torch's default)
        int device = 0;
        // Data parallelism (one trainer per rank, each on its shard; see step()): the gradients are
        // averaged over comm's ranks in buckets started as backward finishes them (bucket_plan,
        // train/buckets.hpp). nullptr: one process.
        cuda::device_communicator* comm = nullptr;
        bool sync_bn = false;  // with comm: batch-norm statistics over every rank's samples
        std::size_t bucket_bytes = std::size_t{25} << 20;  // torch DistributedDataParallel's default
    };

    using network_type = Net;
    static constexpr const auto& program = Net::program;
    static constexpr shape input = input_shape_v<Net>;
    static constexpr shape output = output_shape_v<Net>;
    static constexpr shape aux_output = Net::program.has_aux ? Net::program.aux.s : shape{};
    static constexpr bool device_resident = true;  // train_step runs the whole step on the device
    using step_settings = cuda::device_step;

    explicit trainer(weights<Net>& w) : trainer(w, options{}) {}
    trainer(weights<Net>& w, options o) : opt_{o}, device_{(cuda::require_device(o.device), o.device)}, w_{&w}, rng_{o.seed} {
        if (o.precision != cuda::precision::fp32 && o.precision != cuda::precision::tf32 && o.precision != cuda::precision::bf16)
            throw error(std::string{"ctnet: cuda trainer: precision::"} + cuda::to_string(o.precision) +
                        " is not supported (fp32, tf32 or bf16)");
        if (o.precision == cuda::precision::bf16 && !(o.cudnn && cuda::cudnn_available()))
            throw error("ctnet: cuda trainer: bf16 mixed precision runs its convolutions on cuDNN, which " +
                        (o.cudnn ? "cannot be used here (" + cuda::cudnn_unavailable_reason() + ")" : std::string{"options::cudnn turned off"}));
        if (o.sync_bn && o.comm == nullptr) throw error("ctnet: cuda trainer: sync_bn needs a communicator (options::comm)");
        const auto& p = program;
        if (o.comm != nullptr) plan_ = bucket_plan<Net>(std::max<std::size_t>(o.bucket_bytes / sizeof(float), 1));
        if (o.cudnn && cuda::cudnn_available()) {
            try {
                dnn_ = std::make_unique<cuda::dnn_convs>(s(), o.precision);
            } catch (const error& e) {  // libcudnn loaded but cannot start: fp32 / tf32 go on with ctnet's kernels
                if (o.precision == cuda::precision::bf16) throw;
                dnn_why_ = e.what();
            }
        }
        const std::size_t storage = p.storage;
        params_ = cuda::device_buffer<float>{storage};
        grads_ = cuda::device_buffer<float>{storage};
        upload(params_.data(), w.data().data(), storage);
        CTNET_CUDA(cudaMemsetAsync(grads_.data(), 0, storage * sizeof(float), s()));  // backward adds into them
        keep_.resize(static_cast<std::size_t>(p.n_ops));
        bn_at_.assign(static_cast<std::size_t>(p.n_ops), 0);
        std::vector<float> consts;  // channel_affine scales and shifts
        affine_at_.assign(static_cast<std::size_t>(p.n_ops), 0);
        std::size_t bn_floats = 0;
        int widest = 1;
        for (int i = 0; i < p.n_ops; ++i) {
            const op& q = p.ops[i];
            keep_[static_cast<std::size_t>(i)] = exec::keep_of(p, i, true);  // ctnet's max pool gradient finds the maxima in x
            widest = std::max(widest, q.out.s.c);
            if (q.kind == op_kind::batch_norm) {
                bn_at_[static_cast<std::size_t>(i)] = bn_floats;
                bn_floats += 2 * static_cast<std::size_t>(q.out.s.c);  // mean, invstd
            } else if (q.kind == op_kind::channel_affine) {
                affine_at_[static_cast<std::size_t>(i)] = consts.size();
                consts.insert(consts.end(), q.scale, q.scale + q.in.s.c);
                consts.insert(consts.end(), q.shift, q.shift + q.in.s.c);
            }
        }
        bn_stats_ = cuda::device_buffer<float>{std::max<std::size_t>(bn_floats, 1)};
        consts_ = cuda::device_buffer<float>{std::max<std::size_t>(consts.size(), 1)};
        upload(consts_.data(), consts.data(), consts.size());
        zeros_ = cuda::device_buffer<float>{static_cast<std::size_t>(widest)};
        CTNET_CUDA(cudaMemsetAsync(zeros_.data(), 0, zeros_.size() * sizeof(float), s()));
        partial_ = cuda::device_buffer<double>{cuda::sum_squares_blocks};
        norm_ = cuda::device_buffer<double>{1};
        runs_ = exec::trainable_runs<Net>();
        sync();
    }

    // Training-mode forward pass over x.size() / input.size() samples (host memory). With sync
    // BN every rank must call it together, on an equal shard (checked first, by a collective).
    void forward(std::span<const float> x) {
        if (opt_.comm != nullptr && opt_.sync_bn) check_shards(x, {}, 0, false);
        forward_pass(x);
    }

    [[nodiscard]] int batch() const { return n_; }
    // The outputs of the last forward pass, copied to the host: N x output.size(), N x aux_output.size().
    [[nodiscard]] std::span<const float> logits() { return copy_out(program.output, out_); }
    [[nodiscard]] std::span<const float> aux_logits() {
        if constexpr (!Net::program.has_aux) {
            throw error("ctnet: cuda trainer: the network has no aux head");
        } else {
            return copy_out(program.aux, aux_);
        }
    }

    // Adds the parameter gradients of the last forward pass, given d loss / d output (host, N x
    // output.size()) and, for networks with an aux head, d loss / d aux output (may be empty).
    void backward(std::span<const float> dlogits, std::span<const float> daux = {}) {
        const auto& p = program;
        if (!backward_ready_) throw error("ctnet: cuda trainer: backward() needs a forward() first");
        use();
        exec::expect_size("cuda trainer", "output gradient", dlogits.size(), static_cast<std::size_t>(n_) * output.size());
        std::fill(zeroed_.begin(), zeroed_.end(), char{0});
        add_into(p.output, dlogits);
        if (!daux.empty()) {
            if (!p.has_aux) throw error("ctnet: cuda trainer: an aux gradient was given but the network has no aux head");
            exec::expect_size("cuda trainer", "aux gradient", daux.size(), static_cast<std::size_t>(n_) * p.aux.s.size());
            add_into(p.aux, daux);
        }
        for (int i = p.n_ops - 1; i >= 0; --i) run_backward(i);
        sync();
    }

    // The gradients, copied to the host (one float per float of the weights).
    [[nodiscard]] std::span<float> grads() {
        use();
        grads_host_.resize(program.storage);
        download(grads_host_.data(), grads_.data(), grads_host_.size());
        return grads_host_;
    }
    void zero_grads() {
        use();
        CTNET_CUDA(cudaMemsetAsync(grads_.data(), 0, grads_.size() * sizeof(float), s()));
    }
    // The host weights: as constructed, or as of the last to_host() / params_to_host().
    [[nodiscard]] weights<Net>& params() { return *w_; }
    void params_to_host() {
        use();
        download(w_->data().data(), params_.data(), program.storage);
    }
    // After the caller changed the host weights: copies them to the device.
    void params_to_device() {
        use();
        upload(params_.data(), w_->data().data(), program.storage);
        if (dnn_) dnn_->refresh_weights(params_.data(), program.storage);  // bf16's copy (a backward may follow)
    }
    [[nodiscard]] rng& generator() { return rng_; }
    [[nodiscard]] cuda::precision precision() const { return opt_.precision; }
    // Which kernels run the convolutions (after the first forward pass: cuDNN's choices are per batch).
    [[nodiscard]] std::string conv_engine() const {
        if (!dnn_)
            return opt_.cudnn ? "ctnet's kernels (cuDNN: " + (dnn_why_.empty() ? cuda::cudnn_unavailable_reason() : dnn_why_) + ")"
                              : "ctnet's kernels";
        return n_ > 0 ? dnn_->summary() : "cuDNN (algorithms chosen at the first batch)";
    }

    // ---- The device step (train/step.hpp's train_step calls it) ------------------------------
    // The optimizer state (momentum, mean square) and the average live on the device once set:
    // from host copies (a resumed run) or initialised there (as optimizer::step does; average = params).
    [[nodiscard]] bool has_optimizer_state() const { return mom_.size() > 0; }
    [[nodiscard]] bool has_average() const { return shadow_.size() > 0; }
    void set_optimizer_state(std::span<const float> momentum, std::span<const float> mean_square) {
        const std::size_t n = program.storage;
        exec::expect_size("cuda trainer", "optimizer momentum", momentum.size(), n);
        exec::expect_size("cuda trainer", "optimizer mean square", mean_square.size(), n);
        use();
        mom_ = cuda::device_buffer<float>{n};
        ms_ = cuda::device_buffer<float>{n};
        upload(mom_.data(), momentum.data(), n);
        upload(ms_.data(), mean_square.data(), n);
    }
    void set_average(std::span<const float> shadow) {
        exec::expect_size("cuda trainer", "moving average", shadow.size(), program.storage);
        use();
        shadow_ = cuda::device_buffer<float>{program.storage};
        upload(shadow_.data(), shadow.data(), program.storage);
    }
    // The device state to the host: parameters (with the running statistics) into params(), and
    // where given, the optimizer state and the average (each resized to the storage).
    void to_host(std::vector<float>* momentum, std::vector<float>* mean_square, std::vector<float>* shadow) {
        params_to_host();
        const std::size_t n = program.storage;
        if (momentum != nullptr && has_optimizer_state()) {
            momentum->resize(n);
            mean_square->resize(n);
            download(momentum->data(), mom_.data(), n);
            download(mean_square->data(), ms_.data(), n);
        }
        if (shadow != nullptr && has_average()) {
            shadow->resize(n);
            download(shadow->data(), shadow_.data(), n);
        }
    }

    // One whole step on the device: forward, losses, backward, norm, clipping, weight decay, the
    // optimizer's update, moving average. labels: N ints in [0, classes) (checked here). The
    // parameters change only when the losses and the gradients are finite.
    cuda::device_step_result step(std::span<const float> x, std::span<const int> labels, const cuda::device_step& st) {
        const auto& p = program;
        constexpr int classes = static_cast<int>(output_shape_v<Net>.size());
        cuda::device_communicator* comm = opt_.comm;
        if (comm != nullptr) check_shards(x, labels, classes, true);  // before any collective: an error here is every rank's
        forward_pass(x);  // first, as on the host: the checks below then leave the same state behind
        const auto n = static_cast<std::size_t>(n_);
        if (labels.size() != n)
            throw error("ctnet: train_step: " + std::to_string(labels.size()) + " labels for a batch of " + std::to_string(n));
        for (std::size_t i = 0; i < n; ++i)
            if (labels[i] < 0 || labels[i] >= classes)
                throw error("ctnet: softmax_cross_entropy: sample " + std::to_string(i) + " has label " + std::to_string(labels[i]) +
                            ", expected 0.." + std::to_string(classes - 1));
        if (!(st.smoothing >= 0.0 && st.smoothing < 1.0))
            throw error("ctnet: softmax_cross_entropy: label smoothing must be in [0, 1), got " + std::to_string(st.smoothing));
        const cudaStream_t q = s();
        std::copy(labels.begin(), labels.end(), labels_host_.data());
        CTNET_CUDA(cudaMemcpyAsync(labels_dev_.data(), labels_host_.data(), n * sizeof(int), cudaMemcpyHostToDevice, q));
        // The losses write d loss / d logits straight into the gradient buffers of the outputs.
        zero_grads();
        std::fill(zeroed_.begin(), zeroed_.end(), char{0});
        ensure_zeroed(p.output.buf);
        cuda::softmax_cross_entropy(act(p.output), labels_dev_.data(), n_, st.smoothing, 1.0, loss_dev_.data(),
                                    correct_dev_.data(), grad(p.output), q);
        const bool aux = Net::program.has_aux && st.aux_weight > 0.0;
        if constexpr (Net::program.has_aux) {
            if (aux) {
                ensure_zeroed(p.aux.buf);
                cuda::softmax_cross_entropy(act(p.aux), labels_dev_.data(), n_, st.smoothing, st.aux_weight,
                                            loss_dev_.data() + n_, correct_dev_.data() + n_, grad(p.aux), q);
            }
        }
        bucket_cursor buckets{plan_};
        const auto start = [&](const grad_bucket& b) { comm->start_average({grads_.data() + b.begin, b.count}, q); };
        for (int i = p.n_ops - 1; i >= 0; --i) {
            run_backward(i);
            if (comm != nullptr) buckets.after(i, start);
        }
        if (comm != nullptr) {
            CTNET_CUDA(cudaEventRecord(backward_done_.get(), q));
            buckets.rest(start);
            comm->join(q);  // the norm, the clipping and the update read the averaged gradients
            CTNET_CUDA(cudaEventRecord(averaged_.get(), q));
        }
        cuda::sum_squares(grads_.data(), static_cast<long long>(grads_.size()), partial_.data(), norm_.data(), q);
        // The scalars: per-sample losses and hits of both heads, the squared norm.
        const std::size_t heads = aux ? 2 : 1;
        CTNET_CUDA(cudaMemcpyAsync(loss_host_.data(), loss_dev_.data(), heads * n * sizeof(double), cudaMemcpyDeviceToHost, q));
        CTNET_CUDA(cudaMemcpyAsync(correct_host_.data(), correct_dev_.data(), n * sizeof(int), cudaMemcpyDeviceToHost, q));
        CTNET_CUDA(cudaMemcpyAsync(norm_host_.data(), norm_.data(), sizeof(double), cudaMemcpyDeviceToHost, q));
        if (comm != nullptr) comm->wait();  // a failed peer throws here rather than stalling the stream
        sync();
        cuda::device_step_result r;
        for (std::size_t h = 0; h < heads; ++h) {
            double sum = 0.0;
            for (std::size_t i = 0; i < n; ++i) {
                const double l = loss_host_.data()[h * n + i];
                if (!std::isfinite(l) && r.bad_sample < 0) r.bad_sample = static_cast<int>(i);
                sum += l;
            }
            (h == 0 ? r.main_loss : r.aux_loss) = sum / static_cast<double>(n);
        }
        for (std::size_t i = 0; i < n; ++i) r.correct += correct_host_.data()[i];
        if (comm != nullptr) {  // the means over the ranks, as data_parallel_step (train/distributed.hpp)
            // comm_seconds: on the device, from the end of backward until the averages were in
            // (the buckets still in flight, a slower rank), plus the statistics' collective.
            float gap_ms = 0.0F;
            CTNET_CUDA(cudaEventElapsedTime(&gap_ms, backward_done_.get(), averaged_.get()));
            const auto from = std::chrono::steady_clock::now();
            std::array<double, 4> v{r.main_loss, r.aux_loss, static_cast<double>(r.correct), r.bad_sample >= 0 ? 1.0 : 0.0};
            comm->sum_host(v);
            r.comm_seconds = 1e-3 * gap_ms + std::chrono::duration<double>(std::chrono::steady_clock::now() - from).count();
            const auto ranks = static_cast<double>(comm->size());
            r.main_loss = v[0] / ranks;
            r.aux_loss = v[1] / ranks;
            r.correct = static_cast<int>(v[2]);
            r.bad_elsewhere = r.bad_sample < 0 && v[3] > 0.0;
            if (r.bad_elsewhere) return r;
        }
        r.grad_norm = std::sqrt(norm_host_.data()[0]);
        r.grads_finite = std::isfinite(r.grad_norm);
        if (r.bad_sample >= 0 || !r.grads_finite) return r;
        if (st.clip_norm > 0.0) {  // torch's clip_grad_norm_
            const double coef = st.clip_norm / (r.grad_norm + 1e-6);
            if (coef < 1.0) cuda::scale(grads_.data(), static_cast<long long>(grads_.size()), coef, q);
        }
        if (!has_optimizer_state()) {  // as optimizer::step: mom = 0, ms = 1 (TF's RMSProp) or 0
            const std::vector<float> ms(p.storage, initial_mean_square(st.update)), none(p.storage, 0.0F);
            set_optimizer_state(none, ms);
        }
        for (const auto& [offset, count] : runs_)
            cuda::optimizer_update(st.update, st.rule, params_.data() + offset, grads_.data() + offset, ms_.data() + offset,
                                   mom_.data() + offset, static_cast<long long>(count), q);
        cuda::sum_squares(params_.data(), static_cast<long long>(p.storage), partial_.data(), norm_.data(), q);
        CTNET_CUDA(cudaMemcpyAsync(norm_host_.data(), norm_.data(), sizeof(double), cudaMemcpyDeviceToHost, q));
        sync();
        // As the host's optimizer: only the updated (trainable) values count; a running
        // statistic that is not finite is left to the next forward pass, as on the CPU.
        r.params_finite = std::isfinite(norm_host_.data()[0]);
        if (!r.params_finite) {
            params_to_host();
            const float* h = w_->data().data();
            r.params_finite = std::all_of(runs_.begin(), runs_.end(), [&](const auto& run) {
                return std::all_of(h + run.first, h + run.first + run.second, [](float v) { return std::isfinite(v); });
            });
        }
        if (!r.params_finite || !st.average) return r;
        if (!has_average()) {  // the first update copies (TF's shadow starts at the variable)
            shadow_ = cuda::device_buffer<float>{p.storage};
            CTNET_CUDA(cudaMemcpyAsync(shadow_.data(), params_.data(), p.storage * sizeof(float), cudaMemcpyDeviceToDevice, q));
        } else {
            cuda::moving_average(shadow_.data(), params_.data(), static_cast<long long>(p.storage), st.average_decay, q);
        }
        sync();
        return r;
    }

private:
    using keep = exec::keep;

    // The forward pass itself (step() has checked the shards already).
    void forward_pass(std::span<const float> x) {
        const auto& p = program;
        const auto n = static_cast<int>(exec::batch_of(x, input, "cuda trainer"));
        backward_ready_ = false;
        use();
        sync();  // the last pass's input copy has left in_host_
        if (n != n_) resize(n);
        if (dnn_) dnn_->refresh_weights(params_.data(), program.storage);  // bf16: the weights' copy (else nothing)
        std::copy(x.begin(), x.end(), in_host_.data());
        CTNET_CUDA(cudaMemcpyAsync(in_dev_.data(), in_host_.data(), x.size_bytes(), cudaMemcpyHostToDevice, s()));
        for (int i = 0; i < p.n_ops; ++i) run_forward(i);
        backward_ready_ = true;
    }

    [[nodiscard]] cudaStream_t s() const { return stream_.get(); }
    // ctnet's conv kernels have fp32 and tf32: bf16's convs that cuDNN refuses run in tf32.
    [[nodiscard]] cuda::precision gemm_precision() const {
        return opt_.precision == cuda::precision::bf16 ? cuda::precision::tf32 : opt_.precision;
    }
    // Waits for the stream. With a communicator its collectives are polled first: a failed NCCL
    // peer then throws here instead of leaving the stream (waiting on them) blocked for ever.
    void sync() {
        if (opt_.comm != nullptr) opt_.comm->wait();
        stream_.synchronize();
    }
    // Data parallel: one collective of every rank's batch size and whether its batch and (when
    // labelled: step()) labels are valid, so that a bad batch (or unequal shards: p * sum(n^2) !=
    // sum(n)^2) throws on every rank before the first collective of the pass rather than on one
    // rank inside it.
    void check_shards(std::span<const float> x, std::span<const int> labels, int classes, bool labelled) {
        const std::size_t per = input.size(), n = x.size() / per;
        bool bad = x.size() % per != 0 || n == 0 || (labelled && labels.size() != n);
        for (const int l : labels) bad = bad || l < 0 || l >= classes;
        const auto nd = static_cast<double>(n);
        std::array<double, 3> v{nd, nd * nd, bad ? 1.0 : 0.0};
        opt_.comm->sum_host(v);
        if (v[2] > 0.0) {
            if (bad) {  // this rank's own error, as the one-process checks word it
                exec::batch_of(x, input, "cuda trainer");
                if (labelled && labels.size() != n)
                    throw error("ctnet: train_step: " + std::to_string(labels.size()) + " labels for a batch of " + std::to_string(n));
                for (std::size_t i = 0; i < labels.size(); ++i)
                    if (labels[i] < 0 || labels[i] >= classes)
                        throw error("ctnet: softmax_cross_entropy: sample " + std::to_string(i) + " has label " +
                                    std::to_string(labels[i]) + ", expected 0.." + std::to_string(classes - 1));
            }
            throw error(labelled ? "ctnet: train_step: another rank's batch or labels are not valid; nothing was run"
                                 : "ctnet: cuda trainer: forward: another rank's batch is not valid; nothing was run");
        }
        const auto ranks = static_cast<double>(opt_.comm->size());
        if (ranks * v[1] != v[0] * v[0])
            throw error("ctnet: cuda trainer: the ranks' batches differ in size (" + std::to_string(v[0]) + " samples over " +
                        std::to_string(opt_.comm->size()) + " ranks); every rank needs an equal shard");
    }

    // A CUDA event with timing (the step's comm_seconds).
    class timing_event {
    public:
        timing_event() { CTNET_CUDA(cudaEventCreate(&e_)); }
        timing_event(const timing_event&) = delete;
        timing_event& operator=(const timing_event&) = delete;
        ~timing_event() { static_cast<void>(cudaEventDestroy(e_)); }
        [[nodiscard]] cudaEvent_t get() const { return e_; }

    private:
        cudaEvent_t e_ = nullptr;
    };

    // Every public entry point: the caller's thread may have made another device current.
    void use() const { CTNET_CUDA(cudaSetDevice(device_)); }
    void upload(float* to, const float* from, std::size_t count) {
        if (count == 0) return;
        CTNET_CUDA(cudaMemcpyAsync(to, from, count * sizeof(float), cudaMemcpyHostToDevice, s()));
        sync();  // from is pageable host memory the caller may change next
    }
    void download(float* to, const float* from, std::size_t count) {
        if (count == 0) return;
        CTNET_CUDA(cudaMemcpyAsync(to, from, count * sizeof(float), cudaMemcpyDeviceToHost, s()));
        sync();
    }

    void resize(int n) {
        const auto& p = program;
        n_ = 0;
        const auto nn = static_cast<std::size_t>(n);
        act_ = cuda::device_buffer<float>{};
        dact_ = cuda::device_buffer<float>{};
        act_ = cuda::device_buffer<float>{nn * layout_.per_sample};
        dact_ = cuda::device_buffer<float>{nn * layout_.per_sample};
        in_dev_ = cuda::device_buffer<float>{nn * input.size()};
        in_host_ = cuda::pinned_buffer<float>{nn * input.size()};
        saved_.clear();
        saved_.resize(static_cast<std::size_t>(p.n_ops));
        long long ws = 0;
        for (int i = 0; i < p.n_ops; ++i) {
            const op& q = p.ops[i];
            const keep k = keep_[static_cast<std::size_t>(i)];
            std::size_t need = k == keep::input ? q.in.s.size() : k == keep::output ? q.out.s.size() : 0;
            if (q.kind == op_kind::dropout) need = q.out.s.size();  // the mask
            if (need > 0) saved_[static_cast<std::size_t>(i)] = cuda::device_buffer<float>{nn * need};
            if (q.kind == op_kind::conv)
                ws = std::max(ws, cuda::conv2d_weight_grad_workspace(geometry_of(q.win), packed(q.in.s), packed(q.out.s), n));
        }
        ws_ = cuda::device_buffer<float>{static_cast<std::size_t>(std::max<long long>(ws, 1))};
        std::size_t bn_scratch = 1;  // the batch norms' partial sums (cuda/launch.hpp), one layer at a time
        for (int i = 0; i < p.n_ops; ++i)
            if (p.ops[i].kind == op_kind::batch_norm)
                bn_scratch = std::max(bn_scratch, 4 * cuda::bn_partials(p.ops[i].out.s.c, static_cast<long long>(n) * p.ops[i].in.s.h * p.ops[i].in.s.w));
        bn_scratch_ = cuda::device_buffer<double>{bn_scratch};
        loss_dev_ = cuda::device_buffer<double>{2 * nn};
        loss_host_ = cuda::pinned_buffer<double>{2 * nn};
        correct_dev_ = cuda::device_buffer<int>{2 * nn};
        correct_host_ = cuda::pinned_buffer<int>{2 * nn};
        labels_dev_ = cuda::device_buffer<int>{nn};
        labels_host_ = cuda::pinned_buffer<int>{nn};
        norm_host_ = cuda::pinned_buffer<double>{1};
        zeroed_.assign(static_cast<std::size_t>(p.n_bufs), 0);
        if (dnn_) {  // cuDNN's descriptors and algorithms for this batch, from the layout's strides
            dnn_->clear();
            conv_at_.assign(static_cast<std::size_t>(p.n_ops), -1);
            for (int i = 0; i < p.n_ops; ++i) {
                const op& q = p.ops[i];
                if (q.kind != op_kind::conv) continue;
                const bool bias = weight_params<const float>::of(q, params_.data()).bias != nullptr;
                conv_at_[static_cast<std::size_t>(i)] = dnn_->add(geometry_of(q.win), act(q.in), act(q.out), needed_in(i), bias);
            }
            dnn_->prepare(n);  // if it throws, n_ stays 0: the next pass lays everything out again
        }
        n_ = n;
    }

    static cuda::geometry geometry_of(const window& g) { return {g.kh, g.kw, g.sh, g.sw, g.pt, g.pb, g.pl, g.pr}; }
    static cuda::view packed(shape sh) { return {nullptr, static_cast<long long>(sh.size()), sh.c, sh.h, sh.w}; }

    [[nodiscard]] cuda::view view_in(const value& v, float* mem) const {
        const exec::batch_view<float> b = layout_.view(v, mem, in_dev_.data(), static_cast<std::size_t>(n_));
        return {b.data, static_cast<long long>(b.stride), v.s.c, v.s.h, v.s.w};
    }
    [[nodiscard]] cuda::view act(const value& v) const { return view_in(v, act_.data()); }
    [[nodiscard]] cuda::view grad(const value& v) const {
        if (program.bufs[v.buf].input) return {nullptr, 0, v.s.c, v.s.h, v.s.w};
        return view_in(v, dact_.data());
    }
    [[nodiscard]] cuda::view saved(int i, shape sh) const {
        return {saved_[static_cast<std::size_t>(i)].data(), static_cast<long long>(sh.size()), sh.c, sh.h, sh.w};
    }
    [[nodiscard]] cuda::view needed_in(int i) const {
        const op& q = program.ops[i];
        return keep_[static_cast<std::size_t>(i)] == keep::input ? saved(i, q.in.s) : act(q.in);
    }
    [[nodiscard]] cuda::view needed_out(int i) const {
        const op& q = program.ops[i];
        return keep_[static_cast<std::size_t>(i)] == keep::output ? saved(i, q.out.s) : act(q.out);
    }

    std::span<const float> copy_out(const value& v, std::vector<float>& dst) {
        const cuda::view o = act(v);
        dst.resize(static_cast<std::size_t>(n_) * v.s.size());
        CTNET_CUDA(cudaMemcpy2DAsync(dst.data(), v.s.size() * sizeof(float), o.data, static_cast<std::size_t>(o.stride) * sizeof(float),
                                     v.s.size() * sizeof(float), static_cast<std::size_t>(n_), cudaMemcpyDeviceToHost, s()));
        sync();
        return dst;
    }
    // A gradient buffer is cleared when the backward pass first reaches it, as on the CPU.
    void ensure_zeroed(int buf) {
        if (program.bufs[buf].input || zeroed_[static_cast<std::size_t>(buf)]) return;
        zeroed_[static_cast<std::size_t>(buf)] = 1;
        const std::size_t size = program.bufs[buf].s.size() * static_cast<std::size_t>(n_);
        float* base = dact_.data() + layout_.offsets[static_cast<std::size_t>(buf)] * static_cast<std::size_t>(n_);
        CTNET_CUDA(cudaMemsetAsync(base, 0, size * sizeof(float), s()));
    }
    void add_into(const value& v, std::span<const float> g) {
        ensure_zeroed(v.buf);
        // The buffer was just cleared (outputs are read by nothing else): copy, row by row.
        const cuda::view d = grad(v);
        CTNET_CUDA(cudaMemcpy2DAsync(d.data, static_cast<std::size_t>(d.stride) * sizeof(float), g.data(), v.s.size() * sizeof(float),
                                     v.s.size() * sizeof(float), static_cast<std::size_t>(n_), cudaMemcpyHostToDevice, s()));
        sync();
    }

    void run_forward(int i) {
        const op& o = program.ops[i];
        const int n = n_;
        const cudaStream_t q = s();
        const keep k = keep_[static_cast<std::size_t>(i)];
        if (k == keep::input) cuda::copy(act(o.in), saved(i, o.in.s), n, q);
        const cuda::view x = act(o.in), y = act(o.out);
        const auto wb = weight_params<const float>::of(o, params_.data());
        switch (o.kind) {
            case op_kind::conv:
                if (dnn_ && dnn_->forward(conv_at_[static_cast<std::size_t>(i)], wb.w, wb.bias, x, y)) break;
                cuda::conv2d(wb.w, wb.bias != nullptr ? wb.bias : zeros_.data(), false, geometry_of(o.win), x, y, n, gemm_precision(), q);
                break;
            case op_kind::batch_norm: {
                // With sync BN the count is every rank's (the shards are equal: step() or forward() checked that).
                const int ranks = opt_.sync_bn ? opt_.comm->size() : 1;
                if (static_cast<long long>(n) * o.in.s.h * o.in.s.w * ranks < 2)
                    throw error("ctnet: cuda trainer: batch_norm '" + std::string{o.path.view()} +
                                "' needs more than one value per channel (batch " + std::to_string(n) + ", input " +
                                std::to_string(o.in.s.h) + "x" + std::to_string(o.in.s.w) +
                                (ranks > 1 ? ", " + std::to_string(ranks) + " ranks" : std::string{}) + ")");
                const auto bn = bn_params<float>::of(o, params_.data());
                float* mean = bn_stats_.data() + bn_at_[static_cast<std::size_t>(i)];
                const auto momentum = static_cast<float>(opt_.bn_momentum);
                // The passes of cuda/launch.hpp; with sync BN the partial sums are all-reduced
                // between them (on one rank: the local arithmetic, bit for bit).
                const std::size_t part = cuda::bn_partials(o.out.s.c, static_cast<long long>(n) * o.in.s.h * o.in.s.w);
                double* sums = bn_scratch_.data();
                double* sq = sums + part;
                cuda::bn_sums(x, n, sums, q);
                if (opt_.sync_bn) opt_.comm->sum_on_stream({sums, part}, q);
                cuda::bn_squared_deviations(x, n, ranks, sums, sq, q);
                if (opt_.sync_bn) opt_.comm->sum_on_stream({sq, part}, q);
                cuda::bn_apply(bn.gamma, bn.beta, o.eps, momentum, ranks, sums, sq, x, y, n, mean, mean + o.out.s.c, bn.mean, bn.var, q);
                break;
            }
            case op_kind::relu: cuda::relu(x, y, n, q); break;
            case op_kind::max_pool: cuda::max_pool(geometry_of(o.win), x, y, n, q); break;
            case op_kind::avg_pool: cuda::avg_pool(geometry_of(o.win), o.count_pad, x, y, n, q); break;
            case op_kind::global_avg_pool: cuda::global_avg_pool(x, y, n, q); break;
            case op_kind::linear: cuda::linear(wb.w, wb.bias, x, y, n, q); break;
            case op_kind::softmax: cuda::softmax(x, y, n, q); break;
            case op_kind::dropout: forward_dropout(i, x, y); break;
            case op_kind::channel_affine: {
                const float* scale = consts_.data() + affine_at_[static_cast<std::size_t>(i)];
                cuda::channel_affine(scale, scale + o.in.s.c, x, y, n, q);
                break;
            }
        }
        if (k == keep::output) cuda::copy(act(o.out), saved(i, o.out.s), n, q);
    }

    void run_backward(int i) {
        const op& o = program.ops[i];
        const int n = n_;
        const cudaStream_t q = s();
        ensure_zeroed(o.out.buf);
        if (o.in.buf != o.out.buf) ensure_zeroed(o.in.buf);
        const cuda::view dy = grad(o.out), dx = grad(o.in);  // dx.data null at the network input
        const auto wb = weight_params<const float>::of(o, params_.data());
        const auto dwb = weight_params<float>::of(o, grads_.data());
        switch (o.kind) {
            case op_kind::conv: {
                const int k = dnn_ ? conv_at_[static_cast<std::size_t>(i)] : -1;
                if (dx.data != nullptr && !(dnn_ && dnn_->backward_data(k, wb.w, dy, dx)))
                    cuda::conv2d_input_grad(wb.w, geometry_of(o.win), dy, dx, n, gemm_precision(), q);
                if (!(dnn_ && dnn_->backward_filter(k, needed_in(i), dy, dwb.w, dwb.bias)))
                    cuda::conv2d_weight_grad(geometry_of(o.win), needed_in(i), dy, n, dwb.w, dwb.bias, ws_.data(), gemm_precision(), q);
                break;
            }
            case op_kind::batch_norm: {
                const auto bn = bn_params<const float>::of(o, params_.data());
                const float* mean = bn_stats_.data() + bn_at_[static_cast<std::size_t>(i)];
                float* dgamma = grads_.data() + o.param_offset;  // then dbeta: the layout of bn_params
                const auto c = static_cast<std::size_t>(o.out.s.c);
                // dgamma, dbeta: this rank's sums (the gradient average combines them); dx: every
                // rank's, a copy of the partials all-reduced. Where dx is null every rank skips
                // the collective alike.
                const std::size_t part = 2 * cuda::bn_partials(o.out.s.c, static_cast<long long>(n) * o.in.s.h * o.in.s.w);
                double* local = bn_scratch_.data();
                double* global = local;
                cuda::bn_grad_sums(mean, mean + c, needed_in(i), dy, n, local, q);
                const int ranks = opt_.sync_bn ? opt_.comm->size() : 1;
                if (opt_.sync_bn && dx.data != nullptr) {
                    global = local + part;
                    CTNET_CUDA(cudaMemcpyAsync(global, local, part * sizeof(double), cudaMemcpyDeviceToDevice, q));
                    opt_.comm->sum_on_stream({global, part}, q);
                }
                cuda::bn_input_grad(bn.gamma, mean, mean + c, ranks, local, global, needed_in(i), dy, dx, n, dgamma, dgamma + c, q);
                break;
            }
            case op_kind::relu: cuda::relu_backward(needed_out(i), dy, dx, n, q); break;
            case op_kind::max_pool: if (dx.data != nullptr) cuda::max_pool_backward(geometry_of(o.win), needed_in(i), dy, dx, n, q); break;
            case op_kind::avg_pool: if (dx.data != nullptr) cuda::avg_pool_backward(geometry_of(o.win), o.count_pad, dy, dx, n, q); break;
            case op_kind::global_avg_pool: if (dx.data != nullptr) cuda::global_avg_pool_backward(dy, dx, n, q); break;
            case op_kind::linear: cuda::linear_backward(wb.w, needed_in(i), dy, dx, n, dwb.w, dwb.bias, q); break;
            case op_kind::softmax: if (dx.data != nullptr) cuda::softmax_backward(needed_out(i), dy, dx, n, q); break;
            case op_kind::dropout: if (dx.data != nullptr) cuda::scale_backward(saved_[static_cast<std::size_t>(i)].data(), dy, dx, n, q); break;
            case op_kind::channel_affine:
                cuda::channel_affine_backward(consts_.data() + affine_at_[static_cast<std::size_t>(i)], dy, dx, n, q);
                break;
        }
    }

    // The masks come from the host generator in the CPU trainer's order (sample by sample, element
    // by element), so both backends drop the same units for the same seed; y = x * mask.
    void forward_dropout(int i, cuda::view x, cuda::view y) {
        const op& o = program.ops[i];
        const auto scale = static_cast<float>(1.0 / (1.0 - o.drop));
        const std::size_t k = o.out.s.size(), total = k * static_cast<std::size_t>(n_);
        mask_host_.resize(total);
        for (std::size_t e = 0; e < total; ++e) mask_host_[e] = rng_.uniform() < o.drop ? 0.0F : scale;
        float* mask = saved_[static_cast<std::size_t>(i)].data();
        upload(mask, mask_host_.data(), total);
        if (x.data != y.data) cuda::copy(x, y, n_, s());
        cuda::scale_backward(mask, y, y, n_, s());  // in place: y = y * mask
    }

    options opt_;
    int device_;  // checked (and made current) before any member below touches CUDA
    weights<Net>* w_;
    rng rng_;
    cuda::stream stream_;
    timing_event backward_done_, averaged_;  // data parallel: around the wait for the averages
    exec::layout<Net> layout_{true};  // every activation its own buffer
    cuda::device_buffer<float> params_, grads_, mom_, ms_, shadow_;
    cuda::device_buffer<float> act_, dact_, in_dev_, bn_stats_, consts_, zeros_, ws_;
    cuda::device_buffer<double> partial_, norm_, loss_dev_, bn_scratch_;
    cuda::device_buffer<int> correct_dev_, labels_dev_;
    cuda::pinned_buffer<float> in_host_;
    cuda::pinned_buffer<double> loss_host_, norm_host_;
    cuda::pinned_buffer<int> correct_host_, labels_host_;
    std::vector<cuda::device_buffer<float>> saved_;
    std::vector<keep> keep_;
    std::vector<std::size_t> bn_at_, affine_at_;
    std::vector<grad_bucket> plan_;  // options::comm: the gradient buckets in start order
    std::unique_ptr<cuda::dnn_convs> dnn_;  // options::cudnn where cuDNN loads
    std::vector<int> conv_at_;              // op -> its conv in dnn_ (-1: not a conv)
    std::string dnn_why_;                   // why dnn_ is null although cuDNN loads
    std::vector<std::pair<std::size_t, std::size_t>> runs_;
    std::vector<char> zeroed_;
    std::vector<float> grads_host_, out_, aux_, mask_host_;
    int n_ = 0;
    bool backward_ready_ = false;
};

}  // namespace ctnet
