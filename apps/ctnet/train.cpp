// apps/ctnet/train.cpp — `ctnet train`: the paper's recipe on Fashion-MNIST.
//
//   ctnet train [--epochs 20] [--batch 64] [--threads T] [--out runs/fashion] [--resume] ...
//   (ctnet train --help lists every option with its default)
//
// Each epoch: a seeded shuffle and augmentation (random 2-pixel shifts, horizontal flips), one
// train_step per batch with a progress line (epoch, images/s, loss, ETA), then test accuracy
// (with the parameters' moving average, and of the raw weights; each figure is labelled with the
// weights it is for), a row of OUT/log.csv, the curve
// OUT/curve.svg and an atomic checkpoint OUT/checkpoint.safetensors; --resume continues from it
// exactly (weights, optimizer state, moving average and its update count, generator states).
// The moving average warms up as TF's ExponentialMovingAverage with num_updates does (decay
// min(--ema, (1 + n) / (10 + n)) after n averaging updates, train/optim.hpp); --ema-warmup off
// keeps the fixed decay.
//
// Data parallel: `mpirun -np N ctnet train ...` (a build with MPI; as root add --allow-run-as-root)
// runs N ranks, each on its contiguous 1/N slice of every global batch of --batch images (the same
// shuffled order and augmentation draws on every rank), with the gradients averaged over the
// ranks (train/distributed.hpp). MPI is initialised only when Open MPI's launcher started the
// process (OMPI_COMM_WORLD_SIZE set): a plain run is the one-process run, unchanged. Parameters
// are broadcast from rank 0 at the start and after --resume (every rank reads the checkpoint,
// so the files must be visible to all ranks: one machine or a shared directory). Only rank 0
// evaluates, prints and writes log.csv, curve.svg, checkpoints and weights; the other ranks
// wait in their next collective. Batch norm uses each rank's shard unless --sync-bn. Every rank
// draws its dropout masks from the same generator stream (so the saved generator state is every
// rank's and --resume stays exact), which means sample j of each shard gets the same masks: the
// masks, hence the results, differ from a one-process run of the same global batch. A
// multi-rank run's settings record the rank count and --sync-bn; resuming needs the same.
// Without --threads each process takes the hardware threads divided by the ranks on its machine
// (OMPI_COMM_WORLD_LOCAL_SIZE; default_threads.hpp), at least 1; the start-up line says how many.
// With --backend cuda each rank takes the GPU of its local rank (OMPI_COMM_WORLD_LOCAL_RANK modulo
// the GPUs it sees) and the gradients are averaged on the device over NCCL, or through host memory
// where ranks share a GPU (NCCL refuses that) or ctnet was built without NCCL (docs/distributed.md).
#include "train.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include <ctnet/cpu/fast_runner.hpp>
#include <ctnet/cpu/trainer.hpp>
#include <ctnet/io/idx.hpp>
#include <ctnet/train/checkpoint.hpp>
#include <ctnet/train/distributed.hpp>
#include <ctnet/train/step.hpp>
#if defined(CTNET_WITH_CUDA)
#include <ctnet/cuda/staged.hpp>
#include <ctnet/cuda/trainer.hpp>
#if defined(CTNET_WITH_NCCL)
#include <ctnet/cuda/nccl.hpp>
#endif
#endif
#if defined(CTNET_WITH_MPI)
#include <ctnet/train/mpi.hpp>
#endif

#include "cli_options.hpp"
#include "default_threads.hpp"
#include "fashion_lowres.hpp"
#include "fashion_net.hpp"

namespace train_cli {

using namespace ctnet;

namespace {

struct train_args {
    std::string data = "/usr/share/datasets/fashion-mnist";
    std::string out = "runs/fashion";
    int epochs = 20, batch = 64, threads = 2, limit = 0, test_limit = 0;
    std::string optim = "rmsprop";  // rmsprop (TF), rmsprop-torch, sgd
    std::string schedule = "step";  // step: lr * lr_decay^floor(epoch / decay_epochs); cosine: to 0 over the run
    double lr = 0.045, lr_decay = 0.94, decay_epochs = 2.0, momentum = 0.9;
    double smoothing = 0.1, aux_weight = 0.4, clip_norm = 2.0, clip_value = 0.0, weight_decay = 4e-5, ema = 0.999;
    bool factorized = true, bn_aux = true, wide = false, augment = true, resume = false, sync_bn = false;
    bool ema_warmup = true;  // TF's num_updates warm-up of the moving average (--ema-warmup on|off)
    int lowres = 0;          // 28, 14, 7: fashion_lowres<R> (the paper's section 9 pattern); 0: fashion_net
    int ranks = 1;  // data-parallel processes (mpirun -np)
    std::uint64_t seed = 1;
    std::string backend = "cpu";      // cpu, cuda (trainer<Net, backend::cuda>; not part of config(): a run moves between backends)
    std::string precision = "tf32";   // --backend cuda: fp32, tf32 or bf16 (mixed precision) convolutions

    // Everything that must match when resuming (all but --out, --resume, --data, and --epochs
    // unless the schedule is cosine, whose rate at each step depends on the run's length).
    [[nodiscard]] std::string config() const {
        // Each number in its shortest exact form: 0.1 and 0.10000000000000002 are different runs.
        const auto x = [](double v) {
            char buf[32];
            return std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
        };
        std::ostringstream s;
        s << "batch=" << batch << " threads=" << threads << " limit=" << limit << " optimizer=" << optim
          << " lr=" << x(lr) << " lr_decay=" << x(lr_decay) << " decay_epochs=" << x(decay_epochs)
          << " momentum=" << x(momentum) << " smoothing=" << x(smoothing) << " aux_weight=" << x(aux_weight)
          << " clip_norm=" << x(clip_norm) << " clip_value=" << x(clip_value) << " weight_decay=" << x(weight_decay)
          << " ema=" << x(ema)
          // Recorded only when on: runs from before the warm-up (fixed decay) read "ema=X" alone,
          // as --ema-warmup off runs do, so their checkpoints resume with --ema-warmup off.
          << (ema > 0.0 && ema_warmup ? " ema_warmup=1" : "")
          << " factorized=" << factorized << " bn_aux=" << bn_aux << " wide=" << wide << " augment=" << augment
          << " seed=" << seed << (lowres != 0 ? " lowres=" + std::to_string(lowres) : "");
        if (schedule != "step") s << " schedule=" << schedule << " epochs=" << epochs;  // step: as before
        if (ranks > 1) s << " ranks=" << ranks << " sync_bn=" << sync_bn;  // one process: as before
        return s.str();
    }
};

// Fashion-MNIST's pixel mean and standard deviation over the training set.
constexpr float pixel_mean = 0.2860F, pixel_std = 0.3530F;

struct batch_maker {
    const io::labelled_images* set;
    bool augment;
    int res = 28;  // the network's input: 28x28, or box-averaged to 14x14 or 7x7 (fashion_lowres)
    [[nodiscard]] std::size_t floats() const { return static_cast<std::size_t>(res) * res; }
    // Image `index`, shifted by (dy, dx) with zero fill and optionally mirrored, normalised; at a
    // lower resolution, each output pixel the mean of its (28 / res)^2 block.
    void image(int index, int dy, int dx, bool flip, float* out) const {
        const std::uint8_t* src = set->pixels.data() + static_cast<std::size_t>(index) * 784;
        float full[784];
        float* dst = res == 28 ? out : full;
        for (int y = 0; y < 28; ++y)
            for (int x = 0; x < 28; ++x) {
                const int sy = y + dy, sx0 = x + dx, sx = flip ? 27 - sx0 : sx0;
                const float p = sy >= 0 && sy < 28 && sx0 >= 0 && sx0 < 28 ? src[sy * 28 + sx] / 255.0F : 0.0F;
                dst[y * 28 + x] = (p - pixel_mean) / pixel_std;
            }
        if (res == 28) return;
        const int f = 28 / res;
        for (int y = 0; y < res; ++y)
            for (int x = 0; x < res; ++x) {
                float sum = 0.0F;
                for (int i = 0; i < f; ++i)
                    for (int j = 0; j < f; ++j) sum += full[(y * f + i) * 28 + x * f + j];
                out[y * res + x] = sum / static_cast<float>(f * f);
            }
    }
};

std::string format_time(double s) {
    char buf[32];
    const int t = static_cast<int>(std::lround(s));
    if (t >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", t / 3600, t % 3600 / 60);
    else std::snprintf(buf, sizeof buf, "%dm%02ds", t / 60, t % 60);
    return buf;
}

struct epoch_row {
    int epoch;
    std::int64_t step;
    double lr, train_loss, train_acc, test_loss, test_acc, test_acc_raw, images_per_s, seconds;
};

// The training curve: train loss (left axis) and test accuracy (right axis) per epoch.
void write_svg(const std::string& path, const std::vector<epoch_row>& rows, const std::string& title,
               const char* weights_label) {
    const double w = 720, h = 360, l = 60, r = 60, t = 40, b = 40;
    const double pw = w - l - r, ph = h - t - b;
    int last = 1;
    double max_loss = 0.0, min_acc = 100.0;
    for (const epoch_row& e : rows) {
        last = std::max(last, e.epoch);
        max_loss = std::max(max_loss, e.train_loss);
        min_acc = std::min(min_acc, e.test_acc);
    }
    max_loss = std::max(0.1, std::ceil(max_loss * 10.0) / 10.0);
    const double acc_lo = std::floor(std::min(min_acc, 90.0)), acc_hi = 100.0;
    auto xp = [&](double e) { return l + pw * e / last; };
    auto yl = [&](double v) { return t + ph * (1.0 - v / max_loss); };
    auto ya = [&](double v) { return t + ph * (1.0 - (v - acc_lo) / (acc_hi - acc_lo)); };
    std::ostringstream s;
    s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h << "' font-family='sans-serif' font-size='12'>\n"
      << "<rect width='100%' height='100%' fill='white'/>\n"
      << "<text x='" << l << "' y='20' font-size='14'>" << title << "</text>\n"
      << "<rect x='" << l << "' y='" << t << "' width='" << pw << "' height='" << ph << "' fill='none' stroke='#888'/>\n";
    for (int i = 0; i <= 4; ++i) {
        const double fl = max_loss * i / 4, fa = acc_lo + (acc_hi - acc_lo) * i / 4;
        s << "<text x='" << l - 6 << "' y='" << yl(fl) + 4 << "' text-anchor='end' fill='#c0392b'>" << fl << "</text>\n"
          << "<text x='" << w - r + 6 << "' y='" << ya(fa) + 4 << "' fill='#2471a3'>" << fa << "%</text>\n";
    }
    for (int e = 0; e <= last; e += std::max(1, last / 10))
        s << "<text x='" << xp(e) << "' y='" << h - b + 16 << "' text-anchor='middle'>" << e << "</text>\n";
    s << "<text x='" << l + pw / 2 << "' y='" << h - 6 << "' text-anchor='middle'>epoch</text>\n";
    auto line = [&](auto y_of, auto value, const char* colour) {
        s << "<polyline fill='none' stroke='" << colour << "' stroke-width='2' points='";
        for (const epoch_row& e : rows) s << xp(e.epoch) << ',' << y_of(value(e)) << ' ';
        s << "'/>\n";
    };
    line(yl, [](const epoch_row& e) { return e.train_loss; }, "#c0392b");
    line(ya, [](const epoch_row& e) { return e.test_acc; }, "#2471a3");
    s << "<text x='" << l + 8 << "' y='" << t + 16 << "' fill='#c0392b'>train loss</text>\n"
      << "<text x='" << l + 8 << "' y='" << t + 32 << "' fill='#2471a3'>test accuracy (" << weights_label
      << ")</text>\n</svg>\n";
    const std::string text = s.str();
    io::write_file_atomic(path, std::vector<std::uint8_t>(text.begin(), text.end()));
}

void write_csv(const std::string& path, const std::vector<epoch_row>& rows) {
    std::ostringstream s;
    s << "epoch,step,lr,train_loss,train_acc,test_loss,test_acc,test_acc_raw,images_per_s,seconds\n";
    char buf[256];
    for (const epoch_row& e : rows) {
        std::snprintf(buf, sizeof buf, "%d,%lld,%.6g,%.5f,%.3f,%.5f,%.3f,%.3f,%.1f,%.1f\n", e.epoch,
                      static_cast<long long>(e.step), e.lr, e.train_loss, e.train_acc, e.test_loss, e.test_acc,
                      e.test_acc_raw, e.images_per_s, e.seconds);
        s << buf;
    }
    const std::string text = s.str();
    io::write_file_atomic(path, std::vector<std::uint8_t>(text.begin(), text.end()));
}

std::vector<epoch_row> read_csv(const std::string& path) {
    std::vector<epoch_row> rows;
    std::ifstream f{path};
    std::string line;
    std::getline(f, line);  // header
    while (std::getline(f, line)) {
        epoch_row e{};
        long long step = 0;
        if (std::sscanf(line.c_str(), "%d,%lld,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &e.epoch, &step, &e.lr, &e.train_loss,
                        &e.train_acc, &e.test_loss, &e.test_acc, &e.test_acc_raw, &e.images_per_s, &e.seconds) == 10) {
            e.step = step;
            rows.push_back(e);
        }
    }
    return rows;
}

// Test loss and accuracy (%) of parameters p on the set, in eval mode on backend::cpu.
// flip: the logits of each image and of its mirror image, averaged (test-time augmentation).
template <class Net>
std::pair<double, double> evaluate(const weights<Net>& p, const io::labelled_images& set, int limit, int threads,
                                   bool flip = false) {
    runner<Net, backend::cpu> run{p, {.threads = threads}};
    const int n = limit > 0 ? std::min(limit, set.count) : set.count, chunk = 250;
    const batch_maker make{&set, false, input_shape_v<Net>.h};
    const std::size_t px = make.floats();
    std::vector<float> x(static_cast<std::size_t>(chunk) * px), y(static_cast<std::size_t>(chunk) * 10), ym(y.size());
    double loss = 0.0;
    int correct = 0;
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int m = std::min(chunk, n - i0);
        for (int i = 0; i < m; ++i) make.image(i0 + i, 0, 0, false, x.data() + static_cast<std::size_t>(i) * px);
        run.forward({x.data(), static_cast<std::size_t>(m) * px}, {y.data(), static_cast<std::size_t>(m) * 10});
        if (flip) {
            for (int i = 0; i < m; ++i) make.image(i0 + i, 0, 0, true, x.data() + static_cast<std::size_t>(i) * px);
            run.forward({x.data(), static_cast<std::size_t>(m) * px}, {ym.data(), static_cast<std::size_t>(m) * 10});
            for (std::size_t j = 0; j < static_cast<std::size_t>(m) * 10; ++j) y[j] = 0.5F * (y[j] + ym[j]);
        }
        std::vector<int> labels(set.labels.begin() + i0, set.labels.begin() + i0 + m);
        const loss_value l = softmax_cross_entropy({y.data(), static_cast<std::size_t>(m) * 10}, labels, 10, {}, {});
        loss += l.loss * m;
        correct += l.correct;
    }
    return {loss / n, 100.0 * correct / n};
}

// An integer environment variable (Open MPI's OMPI_COMM_WORLD_LOCAL_RANK, ...), or fallback when
// unset or not a number.
[[maybe_unused]] int env_int(const char* name, int fallback) {
    const char* v = std::getenv(name);
    if (v == nullptr) return fallback;
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    return end != v && *end == '\0' && x >= 0 && x < 1'000'000 ? static_cast<int>(x) : fallback;
}

template <class Net>
int train_model(const train_args& a, communicator& comm) {
    const bool lead = comm.rank() == 0;  // evaluates, prints and writes
    const shard part = shard_of(static_cast<std::size_t>(a.batch), comm);
    if (lead) std::filesystem::create_directories(a.out);
    const std::string ck_path = a.out + "/checkpoint.safetensors", csv_path = a.out + "/log.csv";
    const io::fashion_mnist data = io::load_fashion_mnist(a.data);
    const int n_train = a.limit > 0 ? std::min(a.limit, data.train.count) : data.train.count;
    const int steps_per_epoch = n_train / a.batch;
    if (steps_per_epoch < 1) throw error("ctnet train: fewer training images than one batch");

    auto w = std::make_unique<weights<Net>>();
    init_seeded(*w, a.seed);
    optimizer opt = a.optim == "sgd" ? optimizer::sgd({.momentum = a.momentum})
                                     : optimizer::rmsprop({.decay = 0.9, .momentum = a.momentum, .eps = 1.0,
                                                           .style = a.optim == "rmsprop-torch" ? rmsprop_style::pytorch
                                                                                                : rmsprop_style::tensorflow});
    moving_average ema{a.ema, {.warmup = a.ema_warmup}};
    moving_average* avg = a.ema > 0.0 ? &ema : nullptr;
    train_state state{.config = a.config()};
    std::vector<epoch_row> rows;
    if (a.resume) {
        // The settings first: a checkpoint of another model variant would otherwise fail on a
        // tensor's name or size, which says less than the two configurations side by side.
        const io::safetensors_file file{ck_path};
        const auto saved = file.metadata().find("config");
        if (saved != file.metadata().end() && saved->second != a.config()) {
            const bool before_warmup = saved->second.find(" ema_warmup=") == std::string::npos &&
                                       a.config().find(" ema_warmup=1") != std::string::npos;
            throw error("ctnet train: --resume: the checkpoint '" + ck_path + "' was made with\n  " + saved->second +
                        "\nbut this run has\n  " + a.config() +
                        (before_warmup ? "\n(its moving average has the fixed decay: resume it with --ema-warmup off)"
                                       : ""));
        }
        state = load_checkpoint(file, *w, opt, avg);
        rows = read_csv(csv_path);
        rows.erase(std::remove_if(rows.begin(), rows.end(), [&](const epoch_row& e) { return e.epoch > state.epoch; }),
                   rows.end());
        if (lead)
            std::fprintf(stderr, "resuming %s after epoch %d (step %lld)\n", ck_path.c_str(), state.epoch,
                         static_cast<long long>(state.step));
    }
    broadcast_parameters(comm, *w);  // identical replicas (a no-op on one process)
    if (!a.resume && avg) avg->update(w->data());
    // The rest runs on either backend's trainer: the GPU's keeps the parameters, the optimizer
    // state and the average on the device, and sync_host brings them back for each evaluation
    // and checkpoint (the same file either way, so --resume moves a run between backends).
    const auto run = [&](auto& t) -> int {
        using trainer_type = std::remove_reference_t<decltype(t)>;
        if (a.resume) t.generator() = rng{state.dropout_rng};
        const auto ranges = trainable_ranges<Net>();
        const recipe r{.label_smoothing = a.smoothing, .aux_weight = a.aux_weight, .weight_decay = a.weight_decay,
                       .clip_norm = a.clip_norm, .clip_value = a.clip_value};
        const exponential_decay staircase{.base = a.lr, .rate = a.lr_decay, .every = a.decay_epochs};
        const cosine_decay cosine{.base = a.lr, .total = static_cast<double>(a.epochs) * steps_per_epoch};
        // The rate of step s (0-based) of epoch e (1-based): constant over an epoch for the staircase,
        // step by step along the cosine.
        const auto rate = [&](int e, int s) {
            return a.schedule == "cosine" ? cosine.at(static_cast<double>(e - 1) * steps_per_epoch + s) : staircase.at(e - 1);
        };
        const bool tty = ::isatty(2) != 0;
        if (lead)  // the threads of each process: by default, the cores shared by the ranks on a machine
            std::fprintf(stderr, "ctnet train: %d %s, %d thread%s per %s\n", comm.size(), comm.size() > 1 ? "ranks" : "process",
                         a.threads, a.threads == 1 ? "" : "s", comm.size() > 1 ? "rank" : "process");
        const batch_maker make{&data.train, a.augment, input_shape_v<Net>.h};
        std::vector<float> x(part.count * make.floats());
        std::vector<int> labels(part.count);
        std::vector<int> order(static_cast<std::size_t>(n_train));

        for (int epoch = state.epoch + 1; epoch <= a.epochs; ++epoch) {
            // Shuffle and augmentation depend only on (seed, epoch): a resumed run sees the same data.
            rng g{a.seed * 1000003ULL + static_cast<std::uint64_t>(epoch)};
            std::iota(order.begin(), order.end(), 0);
            for (int i = n_train - 1; i > 0; --i) std::swap(order[i], order[g.next() % static_cast<std::uint64_t>(i + 1)]);
            const double lr = rate(epoch, 0);  // logged: the rate of the epoch's first step
            const auto t0 = std::chrono::steady_clock::now();
            double loss_sum = 0.0, comm_sum = 0.0;
            int correct = 0, seen = 0, last_shown = -1;
            for (int s = 0; s < steps_per_epoch; ++s) {
                // Every rank draws the whole global batch's augmentation and keeps its own slice.
                for (int i = 0; i < a.batch; ++i) {
                    const int idx = order[static_cast<std::size_t>(s) * a.batch + i];
                    const std::uint64_t u = g.next();
                    const auto at = static_cast<std::size_t>(i);
                    if (at < part.begin || at >= part.begin + part.count) continue;
                    const int dy = a.augment ? static_cast<int>(u % 5) - 2 : 0, dx = a.augment ? static_cast<int>(u / 5 % 5) - 2 : 0;
                    const bool flip = a.augment && (u / 25 % 2) == 1;
                    make.image(idx, dy, dx, flip, x.data() + (at - part.begin) * make.floats());
                    labels[at - part.begin] = data.train.labels[idx];
                }
                step_result res;
                try {
                    if constexpr (device_trainer<trainer_type>) res = train_step(t, opt, ranges, x, labels, r, rate(epoch, s), avg);
                    else res = data_parallel_step(t, comm, opt, ranges, x, labels, r, rate(epoch, s), avg);
                } catch (const error& e) {
                    if (comm.size() > 1) throw;  // maybe this rank's alone: the caller ends the job
                    std::fprintf(stderr, "\nctnet train: stopped in epoch %d, step %d: %s\n", epoch, s + 1, e.what());
                    if (epoch > 1)
                        std::fprintf(stderr, "ctnet train: the last good checkpoint is %s (after epoch %d)\n",
                                     ck_path.c_str(), epoch - 1);
                    else
                        std::fprintf(stderr, "ctnet train: no checkpoint was saved (none after epoch 0)\n");
                    return 1;
                }
                ++state.step;
                if (!lead) continue;
                loss_sum += res.loss * a.batch;
                comm_sum += res.comm_seconds;
                correct += res.correct;
                seen += a.batch;
                const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                const int pct = 100 * (s + 1) / steps_per_epoch;
                if (tty || pct / 10 != last_shown / 10 || s + 1 == steps_per_epoch) {
                    if (!tty && pct == last_shown) continue;
                    last_shown = pct;
                    const int bar = 24 * (s + 1) / steps_per_epoch;
                    std::fprintf(stderr, "%sepoch %d/%d [%.*s%*s] %3d%%  %6.0f img/s  loss %.4f  ETA %s%s", tty ? "\r" : "",
                                 epoch, a.epochs, bar, "########################", 24 - bar, "", pct, seen / el,
                                 loss_sum / seen, format_time(el / (s + 1) * (steps_per_epoch - s - 1)).c_str(),
                                 tty ? "" : "\n");
                }
            }
            state.epoch = epoch;
            state.dropout_rng = t.generator().state();
            sync_host(t, opt, avg);  // a device trainer's parameters, optimizer state and average
            if (!lead) continue;  // rank 0 evaluates and writes; the others wait in the next step's collectives
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (tty) std::fprintf(stderr, "\n");
            const auto [test_loss_raw, acc_raw] = evaluate<Net>(*w, data.test, a.test_limit, a.threads);
            double test_loss = test_loss_raw, acc = acc_raw;
            if (avg) {
                auto shadow = std::make_unique<weights<Net>>();
                std::copy(avg->shadow().begin(), avg->shadow().end(), shadow->data().begin());
                std::tie(test_loss, acc) = evaluate<Net>(*shadow, data.test, a.test_limit, a.threads);
            }
            rows.push_back({epoch, state.step, lr, loss_sum / seen, 100.0 * correct / seen, test_loss, acc, acc_raw,
                            seen / seconds, seconds});
            // The log first: a kill before the checkpoint lands leaves a row that --resume drops and
            // writes again; the other order could leave a checkpoint whose epoch the log lacks.
            write_csv(csv_path, rows);
            write_svg(a.out + "/curve.svg", rows, "Fashion-MNIST, " + std::string{Net::name} + " (ctnet train)",
                      avg ? "moving average" : "raw weights");
            save_checkpoint(ck_path, *w, opt, avg, state);
            // Each test figure names its weights: the moving average's first (what is saved), the raw
            // weights' second.
            std::printf("epoch %d: lr %.4g, train loss %.4f, train acc %.2f%%, test acc ", epoch, lr, loss_sum / seen,
                        100.0 * correct / seen);
            if (avg) std::printf("%.2f%% (moving average), ", acc);
            std::printf("%.2f%% (raw weights), %.0f img/s, %s", acc_raw, seen / seconds, format_time(seconds).c_str());
            if (comm.size() > 1)  // blocked in the all-reduce after backward, per step (rank 0's view)
                std::printf(", %d ranks, all-reduce wait %.2f ms/step", comm.size(), 1e3 * comm_sum / steps_per_epoch);
            std::printf("\n");
            std::fflush(stdout);
        }
        if (!lead) return 0;
        // The final parameters (the moving average when kept) as plain weights.
        auto final_w = std::make_unique<weights<Net>>(*w);
        if (avg) std::copy(avg->shadow().begin(), avg->shadow().end(), final_w->data().begin());
        io::save_safetensors(a.out + "/weights.safetensors", *final_w);
        // The saved weights once more, plain and with flip averaging (not in the log: its rows are
        // the plain protocol, one model pass per image).
        // The plain figure is the last log row's when that row is of these weights (it always is after
        // an epoch ran; a resumed run with none left has it from log.csv).
        const bool logged = !rows.empty() && rows.back().epoch == state.epoch;
        const double plain = logged ? rows.back().test_acc : evaluate<Net>(*final_w, data.test, a.test_limit, a.threads).second;
        const double flipped = evaluate<Net>(*final_w, data.test, a.test_limit, a.threads, true).second;
        std::printf("final weights (%s, saved to %s/weights.safetensors): test acc %.2f%%, %.2f%% with flip averaging "
                    "(image and mirror image)\n",
                    avg ? "moving average" : "raw", a.out.c_str(), plain, flipped);
        return 0;
    };
    if (a.backend == "cuda") {
#if defined(CTNET_WITH_CUDA)
        // Under mpirun each rank takes the GPU of its local rank (modulo the GPUs it sees). NCCL
        // needs a GPU per rank; ranks that share one go through host memory (cuda/staged.hpp).
        const int gpus = std::max(cuda::device_count(), 1);  // none: require_device says so
        const int local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
        [[maybe_unused]] const int local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
        const int device = local_rank % gpus;
        cuda::require_device(device);  // a clear error before any communicator touches CUDA
        std::unique_ptr<cuda::device_communicator> dc;
        const char* transport = "";
        if (comm.size() > 1) {
#if defined(CTNET_WITH_NCCL)
            // Every rank must pick the same transport (NCCL's constructor is a collective): NCCL
            // only when every node has a GPU per rank.
            std::vector<double> shared{local_size <= gpus ? 0.0 : 1.0};
            comm.allreduce_sum(shared);
            if (shared[0] == 0.0) {
                dc = std::make_unique<nccl_communicator>(comm, device);
                transport = ", gradients averaged over NCCL";
            }
#endif
            if (!dc) {
                dc = std::make_unique<cuda::staged_communicator>(comm);
#if defined(CTNET_WITH_NCCL)
                transport = ", ranks sharing a GPU: gradients averaged through host memory";
#else
                transport = ", gradients averaged through host memory (built without NCCL)";
#endif
            }
        }
        trainer<Net, backend::cuda> t{*w, {.precision = a.precision == "fp32"   ? cuda::precision::fp32
                                                        : a.precision == "bf16" ? cuda::precision::bf16
                                                                                : cuda::precision::tf32,
                                           .seed = a.seed, .device = device, .comm = dc.get(), .sync_bn = a.sync_bn && dc}};
        if (lead)
            std::fprintf(stderr, "ctnet train: on the GPU (%s convolutions by %s%s)\n", a.precision.c_str(),
                         cuda::cudnn_available() ? "cuDNN" : "ctnet's kernels", transport);
        return run(t);
#else
        throw error("ctnet train: --backend cuda: this ctnet was built without CUDA (nvcc was not found at configure time)");
#endif
    }
    trainer<Net, backend::cpu> t{*w, {.threads = a.threads, .seed = a.seed, .sync_bn = a.sync_bn ? &comm : nullptr}};
    return run(t);
}

int train_variant(train_args a, communicator& comm) {
    a.ranks = comm.size();
    using fashion::fashion_net;
    if (a.lowres == 28) return train_model<fashion::fashion_lowres<28>>(a, comm);
    if (a.lowres == 14) return train_model<fashion::fashion_lowres<14>>(a, comm);
    if (a.lowres == 7) return train_model<fashion::fashion_lowres<7>>(a, comm);
    if (a.wide) {
        if (!a.factorized || !a.bn_aux) throw error("ctnet train: --wide is only built for the factorized, BN-auxiliary network");
        return train_model<fashion_net<fashion::fashion_options{true, true, true}>>(a, comm);
    }
    if (a.factorized && a.bn_aux) return train_model<fashion_net<fashion::fashion_options{true, true}>>(a, comm);
    if (a.factorized) return train_model<fashion_net<fashion::fashion_options{true, false}>>(a, comm);
    if (a.bn_aux) return train_model<fashion_net<fashion::fashion_options{false, true}>>(a, comm);
    return train_model<fashion_net<fashion::fashion_options{false, false}>>(a, comm);
}

#if defined(CTNET_WITH_MPI)
// Under mpirun: an error on any rank ends the whole job (the others may be waiting for it in a
// collective), after the rank prints it.
int train_distributed(const train_args& a, int argc, char** argv) {
    mpi_session mpi{argc, argv};
    mpi_communicator comm;
    try {
        return train_variant(a, comm);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ctnet train: rank %d of %d: %s\n", comm.rank(), comm.size(), e.what());
        if (comm.size() > 1) mpi_abort(1);
        return 1;
    }
}
#endif

}  // namespace

std::function<int()> add_command(CLI::App& app, int argc, char** argv) {
    using ctnet_tool::one_of, ctnet_tool::real, ctnet_tool::whole;
    auto a = std::make_shared<train_args>();
    a->threads = ctnet_tool::default_threads(std::thread::hardware_concurrency(), std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE"));
    CLI::App* cmd = app.add_subcommand("train", "Trains the paper's recipe on Fashion-MNIST (apps/ctnet/fashion_net.hpp): a log,\n"
                                                "a curve, a checkpoint per epoch and the final weights in --out");
    cmd->add_option("--data", a->data, "directory of Fashion-MNIST's IDX files")->type_name("DIR");
    cmd->add_option("--out", a->out, "log.csv, curve.svg, checkpoint.safetensors, weights.safetensors")->type_name("DIR");
    cmd->add_option("--epochs", a->epochs, "epochs to train up to (a resumed run continues to this)")->check(whole(0))->type_name("N");
    cmd->add_option("--batch", a->batch, "global batch size (split over the ranks under mpirun)")
        ->check(whole(2, 1'000'000'000, " (batch norm needs two samples)"))->type_name("N");
    cmd->add_option("--threads", a->threads, "threads per process; by default the hardware threads divided\n"
                                             "by the ranks on this machine under mpirun (at least 1)")
        ->check(whole(1, 4096))->type_name("N");
    cmd->add_option("--seed", a->seed, "weights, data order, augmentation and dropout")->check(whole(0, 1'000'000'000))->type_name("S");
    cmd->add_flag("--resume", a->resume, "continue from OUT/checkpoint.safetensors (the same settings required)");
    one_of(cmd->add_option("--optimizer", a->optim, "rmsprop: TF's semantics (eps 1.0 inside the square root);\n"
                                                     "rmsprop-torch: PyTorch's; sgd: with momentum"),
           {"rmsprop", "rmsprop-torch", "sgd"});
    cmd->add_option("--momentum", a->momentum, "the optimizer's momentum")->check(real(0.0, false))->type_name("X");
    cmd->add_option("--lr", a->lr, "learning rate")->check(real(0.0, true))->type_name("X");
    cmd->add_option("--lr-decay", a->lr_decay, "step schedule: the rate times this every --decay-epochs")
        ->check(real(0.0, true, std::numeric_limits<double>::infinity(), true, " (1 keeps the rate constant)"))->type_name("X");
    cmd->add_option("--decay-epochs", a->decay_epochs, "step schedule: epochs between decays")->check(real(0.0, true))->type_name("X");
    one_of(cmd->add_option("--schedule", a->schedule, "step: the staircase of --lr-decay; cosine: from --lr to 0 along\n"
                                                       "half a cosine over all --epochs, step by step"),
           {"step", "cosine"});
    cmd->add_option("--smoothing", a->smoothing, "label smoothing")->check(real(0.0, false, 1.0, true))->type_name("X");
    cmd->add_option("--aux-weight", a->aux_weight, "weight of the auxiliary head's loss")->check(real(0.0, false))->type_name("X");
    cmd->add_option("--weight-decay", a->weight_decay, "L2 penalty on the weights")->check(real(0.0, false))->type_name("X");
    cmd->add_option("--clip-norm", a->clip_norm, "clip the gradient's global norm to this (0: off)")->check(real(0.0, false))->type_name("X");
    cmd->add_option("--clip-value", a->clip_value, "clip each gradient value to +-this (0: off)")->check(real(0.0, false))->type_name("X");
    cmd->add_option("--ema", a->ema, "decay of the parameters' moving average (0: off)")
        ->check(real(0.0, false, 1.0, true, " (0 turns it off)"))->type_name("X");
    auto warmup = std::make_shared<std::string>(a->ema_warmup ? "on" : "off");
    one_of(cmd->add_option("--ema-warmup", *warmup, "on: the average's decay is min(--ema, (1 + n) / (10 + n)) after\n"
                                                     "n updates, as TF's ExponentialMovingAverage with num_updates;\n"
                                                     "off: --ema from the first step"),
           {"on", "off"});
    cmd->add_flag_callback("--no-factorized", [a] { a->factorized = false; }, "ablation: no factorized convolutions");
    cmd->add_flag_callback("--no-bn-aux", [a] { a->bn_aux = false; }, "ablation: no batch norm in the auxiliary head");
    cmd->add_flag_callback("--no-augment", [a] { a->augment = false; }, "ablation: no random shifts and flips");
    cmd->add_flag("--wide", a->wide, "1.5x the channels after the stem (factorized, BN-aux network only)");
    cmd->add_option("--lowres", a->lowres, "the paper's section 9 pattern (apps/ctnet/fashion_lowres.hpp): the\n"
                                           "images box-averaged to RxR, R = 28 (first conv at stride 2),\n"
                                           "14 (stride 1) or 7 (stride 1, no grid reduction), at equal\n"
                                           "compute after the first conv; 0: the usual network")
        ->check(CLI::IsMember({0, 7, 14, 28}))->type_name("R");
    cmd->add_flag("--sync-bn", a->sync_bn, "under mpirun: batch norm statistics over all ranks' shards\n"
                                           "(default: each rank's own)");
    one_of(cmd->add_option("--backend", a->backend, "cpu: backend::cpu's trainer; cuda: trainer<Net, backend::cuda>, the\n"
                                                     "whole step on the GPU (RMSProp only; under mpirun each rank takes\n"
                                                     "the GPU of its local rank, gradients averaged over NCCL)"),
           {"cpu", "cuda"});
    one_of(cmd->add_option("--precision", a->precision, "--backend cuda: fp32 (CUDA cores) or tf32 (tensor cores)\n"
                                                         "convolutions, or bf16 mixed precision (cuDNN's convs on bf16\n"
                                                         "inputs; weights, optimizer and batch norm in fp32)"),
           {"fp32", "tf32", "bf16"});
    cmd->add_option("--limit", a->limit, "train on the first N images only (0: all)")->check(whole(0))->type_name("N");
    cmd->add_option("--test-limit", a->test_limit, "test on the first N images only (0: all)")->check(whole(0))->type_name("N");
    return [a, warmup, argc, argv]() -> int {
        a->ema_warmup = *warmup == "on";
        if (a->lowres != 0 && (a->wide || !a->factorized || !a->bn_aux))
            throw ctnet_tool::usage_error("--lowres", "builds its own networks (factorized, no aux head): not with --wide, --no-factorized, --no-bn-aux");
        if (a->wide && (!a->factorized || !a->bn_aux))
            throw ctnet_tool::usage_error("--wide", "only built for the factorized, BN-auxiliary network (without --no-factorized, --no-bn-aux)");
#if defined(CTNET_WITH_MPI)
        if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) return train_distributed(*a, argc, argv);
#else
        (void)argc;
        (void)argv;
#endif
        single_process one;
        return train_variant(*a, one);
    };
}

}  // namespace train_cli
