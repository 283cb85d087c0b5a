// ctnet/cpu/fast_runner.hpp — inference on SIMD kernels: runner<Net, backend::cpu>.
//
//   runner<net, backend::cpu> run{w, {.threads = 2}};
//   std::vector<float> logits = run(image);
//
// At construction (load time) the program is transformed once: every conv followed by an
// in-place batch norm (and ReLU) becomes one conv with the batch norm folded into its weights
// and bias and the ReLU in its epilogue; conv weights are packed for the GEMM micro-kernel
// (cpu/conv_packed.hpp), or, for 3x3, 5x5, 1x7 and 7x1 stride-1 convs with enough tiles,
// transformed for Winograd (cpu/winograd.hpp, off with options.winograd = false); an average pool read only
// by a 1x1 conv runs after that conv, on its output channels. Concat needs nothing: convs write
// into their channel slices.
// Requires: eval mode only (training-mode forward passes run on backend::reference); the
// weights outlive the runner (linear layers and batch norms that follow no conv read them; the
// convs use their packed, folded copy) — or the runner takes them over, runner{std::move(w)}:
// then each conv's weights go back to the system as soon as they are folded (before packing),
// and those of the training-only auxiliary head at once, so the process holds one copy of what
// inference reads instead of two copies of everything (ctnet infer does this).
// Guarantees: results within float rounding of the reference runner (tested against it on
// random networks and on Inception v3); bit-identical for any thread count; after the first
// pass at a batch size, a forward pass allocates nothing.
// Reduced precision (docs/precision.md): options.precision = precision::bf16 or ::int8 runs the
// convs on cpu/gemm_lowp.hpp's kernels (weights converted once here; int8 needs
// options.scales from cpu::calibrate, cpu/calibrate.hpp); 3x3 convs that fp32 runs as Winograd
// stay fp32 Winograd unless options.winograd = false. A build or CPU without AVX512_BF16 /
// AVX512_VNNI is an error at construction. fp32 (the default) is unchanged by these options.
// Profiling: step_infos() names each step (its program op's torchvision path, block, kernel,
// shapes, MACs) and forward(x, y, step_ms) also times each one (`ctnet bench --profile`).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "../core/error.hpp"
#include "../exec/arena.hpp"
#include "../exec/backend.hpp"
#include "../exec/plan.hpp"
#include "../graph/network.hpp"
#include "../graph/params.hpp"
#include "conv_packed.hpp"
#include "gemm_lowp.hpp"
#include "linear_fast.hpp"
#include "pool_fast.hpp"
#include "reference.hpp"
#include "thread_pool.hpp"
#include "winograd.hpp"

namespace ctnet {

template <class Net>
class runner<Net, backend::cpu> {
public:
    struct options {
        int threads = 1;
        bool check_finite = false;  // stop at the first (fused) layer whose output is not finite
        bool winograd = true;       // 3x3, 5x5, 1x7, 7x1 stride-1 convs with enough tiles as Winograd (cpu/winograd.hpp)
        ctnet::precision precision = ctnet::precision::fp32;  // the convs' arithmetic (docs/precision.md)
        cpu::quant_scales scales{};  // int8: activation ranges from cpu::calibrate (cpu/calibrate.hpp)
    };

    using network_type = Net;
    static constexpr shape input = input_shape_v<Net>;
    static constexpr shape output = output_shape_v<Net>;

    explicit runner(const weights<Net>& w) : runner(w, options{}) {}
    runner(const weights<Net>& w, options o) : runner(w.data(), {}, o) {}
    // Takes the weights over (w is empty afterwards) and frees each conv's weights once folded,
    // and the training-only aux head's at once.
    explicit runner(weights<Net>&& w) : runner(std::move(w), options{}) {}
    runner(weights<Net>&& w, options o) : runner({}, std::move(w).release(), o) {}

private:
    runner(std::span<const float> borrowed, std::vector<float> owned, options o)
        : pool_{o.threads}, arena_{false}, owned_{std::move(owned)},
          params_{owned_.empty() ? borrowed : std::span<const float>{owned_}}, check_finite_{o.check_finite},
          winograd_{o.winograd}, precision_{o.precision} {
        cpu::require_precision(o.precision);
        const auto& p = Net::program;
        // The auxiliary head never runs here: its weights (13 MB in Inception v3) go back at once.
        for (int i = 0; i < p.n_ops; ++i)
            if (p.ops[i].train_only && !owned_.empty() && p.ops[i].storage > 0)
                give_back(owned_.data() + p.ops[i].param_offset, owned_.data() + p.ops[i].param_offset + p.ops[i].storage);
        for (const exec::step& e : exec::plan_v<Net>.steps()) {
            step s{.plan = e};
            if (p.ops[e.op].kind == op_kind::conv) {
                std::vector<float> folded_w;  // kept for a reduced-precision conv
                cpu::packed_conv cv = fold(e, &folded_w);
                if (e.pool >= 0) {  // the 1x1 conv runs first, on the pool's input: bias and ReLU after the pool
                    const shape pooled_in = p.ops[e.pool].in.s;
                    s.post_bias = std::exchange(cv.bias, std::vector<float>(static_cast<std::size_t>(cv.m), 0.0F));
                    s.post_relu = std::exchange(cv.relu, false);
                    cv.in = pooled_in;
                    cv.out = shape{cv.m, pooled_in.h, pooled_in.w};
                    pooled_floats_ = std::max(pooled_floats_, cv.out.size());
                }
                if (folded_w.empty()) {
                    s.conv = static_cast<int>(convs_.size());
                    convs_.push_back(std::move(cv));
                } else {
                    s.lowp = static_cast<int>(lowp_.size());
                    lowp_.push_back(cpu::pack_lowp(precision_, folded_w.data(), std::move(cv), input_quant(e, o.scales)));
                }
            }
            steps_.push_back(std::move(s));
        }
        scratch_.assign(static_cast<std::size_t>(pool_.size()) * conv_scratch_floats(), 0.0F);
        if (!lowp_.empty()) lowp_scratch_.assign(static_cast<std::size_t>(pool_.size()) * cpu::lowp_scratch_floats, 0.0F);
        wino_scratch_.assign(static_cast<std::size_t>(pool_.size()) * wino_scratch_floats_, 0.0F);
    }

public:
    [[nodiscard]] std::vector<float> operator()(std::span<const float> x) {
        std::vector<float> y(arena::batch_of(x) * output.size());
        forward(x, y);
        return y;
    }

    void forward(std::span<const float> x, std::span<float> y) { forward(x, y, {}); }

    // Profiling (opt-in; `ctnet bench --profile`): forward(x, y) that also writes each step's
    // wall time in ms to step_ms, one per step of step_infos() (an empty span: no clock is read).
    void forward(std::span<const float> x, std::span<float> y, std::span<double> step_ms) {
        const auto& p = Net::program;
        arena_.bind(x);
        const int n = arena_.batch();
        arena::expect_size("output", y.size(), static_cast<std::size_t>(n) * output.size());
        if (!step_ms.empty()) arena::expect_size("step times", step_ms.size(), steps_.size());
        const std::size_t pooled = static_cast<std::size_t>(n) * pooled_floats_;
        if (pooled_tmp_.size() < pooled) pooled_tmp_.assign(pooled, 0.0F);  // the first pass at this batch size
        if (check_finite_) check(arena_.in_view(p.input), n, "the input", "");
        for (std::size_t i = 0; i < steps_.size(); ++i) {
            const step& s = steps_[i];
            if (record_ != nullptr && (s.conv >= 0 || s.lowp >= 0)) record_range(s, n);
            if (step_ms.empty()) {
                run_step(s, n);
            } else {
                const auto t0 = std::chrono::steady_clock::now();
                run_step(s, n);
                step_ms[i] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            }
            const exec::step& e = s.plan;
            if (check_finite_) check(arena_.in_view(e.out), n, p.ops[e.op].path.view(), e.last > e.op ? "fused" : to_string(p.ops[e.op].kind));
        }
        cpu::ref::copy(arena_.in_view(p.output), {y.data(), output.size(), output}, n);
    }

    // What each step runs, in run order (for profiles).
    struct step_info {
        std::string_view name;   // the program op's torchvision path, e.g. "Mixed_5b.branch1x1.conv"
        std::string_view block;  // its top-level block: the path up to the first dot, e.g. "Mixed_5b"
        std::string kind;        // e.g. "conv 3x3 winograd 4x4", "conv 3x3/2 gemm", "conv 1x1 gemm + avg_pool 3x3"
        shape in, out;           // per sample (a pooled step: the pool's input, its output)
        std::size_t macs = 0;    // multiply-accumulates per sample (convs, linear layers; 0 otherwise)
    };

    [[nodiscard]] std::vector<step_info> step_infos() const {
        std::vector<step_info> v;
        for (const step& s : steps_) {
            const op& o = Net::program.ops[s.plan.op];
            const std::string_view name = o.path.view();
            step_info i{name, name.substr(0, name.find('.')), std::string{to_string(o.kind)}, o.in.s, s.plan.out.s, o.macs};
            if (o.kind == op_kind::conv || o.kind == op_kind::max_pool || o.kind == op_kind::avg_pool) i.kind += window_text(o.win);
            if (s.lowp >= 0) i.kind += precision_ == ctnet::precision::bf16 ? " bf16" : " int8";
            else if (s.conv >= 0 && !convs_[static_cast<std::size_t>(s.conv)].wino.empty()) {
                const cpu::winograd_tiling t = convs_[static_cast<std::size_t>(s.conv)].tiling;
                i.kind += " winograd " + std::to_string(t.h) + "x" + std::to_string(t.w);
            } else if (s.conv >= 0) i.kind += " gemm";
            if (s.plan.pool >= 0) {
                const op& pool = Net::program.ops[s.plan.pool];
                i.kind += " + avg_pool" + window_text(pool.win);
                i.in = pool.in.s;
            }
            v.push_back(std::move(i));
        }
        return v;
    }

    [[nodiscard]] int threads() const { return pool_.size(); }
    [[nodiscard]] ctnet::precision precision() const { return precision_; }
    // Convolutions after folding (each with its batch norm and ReLU), for tests and benchmarks.
    [[nodiscard]] std::size_t fused_convs() const { return convs_.size() + lowp_.size(); }
    // Of those, the ones in bf16 or int8 (the others, Winograd ones by default, stay fp32).
    [[nodiscard]] std::size_t reduced_convs() const { return lowp_.size(); }

    // Calibration (cpu/calibrate.hpp): a forward pass of x that widens, for every conv, the range
    // of the tensor it reads in `into` (keyed by the conv's path).
    void record_ranges(std::span<const float> x, cpu::quant_scales& into) {
        std::vector<float> y(arena::batch_of(x) * output.size());
        record_ = &into;
        try {
            forward(x, y);
        } catch (...) {
            record_ = nullptr;
            throw;
        }
        record_ = nullptr;
    }
    // 1x1 convs that run before the average pool feeding them (pools_into_pointwise).
    [[nodiscard]] std::size_t pooled_convs() const {
        return static_cast<std::size_t>(std::count_if(steps_.begin(), steps_.end(), [](const step& s) { return s.plan.pool >= 0; }));
    }

private:
    using arena = exec::activation_arena<Net>;

    // Returns the whole memory pages inside [begin, end) to the system (they read as zeros if
    // touched again), so owned weights stop counting against the process once nothing reads them.
    static void give_back(const float* begin, const float* end) {
        const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
        const std::uintptr_t b = (reinterpret_cast<std::uintptr_t>(begin) + page - 1) / page * page;
        const std::uintptr_t e = reinterpret_cast<std::uintptr_t>(end) / page * page;
        if (e <= b) return;
        // From the pointer itself (no integer-to-pointer cast): the first whole page, and the length.
        char* first = const_cast<char*>(reinterpret_cast<const char*>(begin)) + (b - reinterpret_cast<std::uintptr_t>(begin));
        static_cast<void>(::madvise(first, e - b, MADV_DONTNEED));
    }

    // A step of the plan (exec/plan.hpp) and what this backend keeps for it.
    struct step {
        exec::step plan;
        int conv = -1;                   // index into convs_ for convs
        std::vector<float> post_bias{};  // a pooled step: the conv's bias and ReLU, applied after the pool
        bool post_relu = false;
        int lowp = -1;                   // index into lowp_ for bf16 / int8 convs (then conv is -1)
    };

    // Per thread: a conv's packed block and edge tile, or a pooling row (inputs up to that wide).
    static constexpr std::size_t conv_scratch_floats() { return cpu::conv_scratch_floats; }
    static constexpr int widest_pool_row = [] {
        int widest = 0;
        for (int i = 0; i < Net::program.n_ops; ++i) {
            const op& o = Net::program.ops[i];
            if (o.kind == op_kind::max_pool || o.kind == op_kind::avg_pool)
                widest = std::max(widest, o.in.s.w + o.win.pl + o.win.pr);
        }
        return widest;
    }();
    static_assert(widest_pool_row <= static_cast<int>(cpu::conv_scratch_floats),
                  "ctnet: backend::cpu pooling rows (input width plus padding) are limited to the scratch size");

    // The conv of step e, with its batch norm folded in and its ReLU in the epilogue (exec/plan.hpp),
    // packed for the GEMM or transformed for Winograd.
    // A conv that runs in bf16 / int8 (all but the 3x3 Winograd ones; all with winograd off)
    // returns only its geometry, bias and ReLU, and its folded fp32 weights in *keep.
    cpu::packed_conv fold(const exec::step& e, std::vector<float>* keep) {
        const op& c = Net::program.ops[e.op];
        const int k = c.in.s.c * c.win.kh * c.win.kw;
        exec::folded f = exec::fold(Net::program, params_, e);
        if (!owned_.empty()) {  // never read again: the folded copy, then the packed one, serves
            const float* cw = owned_.data() + c.param_offset;
            give_back(cw, cw + static_cast<std::size_t>(c.out.s.c) * k);
        }
        cpu::packed_conv pc;
        cpu::winograd_tiling t = cpu::winograd_tiling_for(c.win, c.in.s, c.out.s);
        // Reduced precision keeps fp32 Winograd only for 3x3 (F(4x4, 3x3): 4x fewer products); the
        // 5x5 (2.8x) and 1x7 / 7x1 (1.75x) convs run faster as bf16 / int8 GEMMs (docs/precision.md).
        if (precision_ != ctnet::precision::fp32 && !(c.win.kh == 3 && c.win.kw == 3)) t = {};
        if (precision_ != ctnet::precision::fp32 && !(winograd_ && t.h != 0)) {
            *keep = std::move(f.w);
            pc.m = c.out.s.c;
            pc.k = k;
        } else if (winograd_ && t.h != 0) {
            pc.m = c.out.s.c;
            pc.k = k;
            pc.wino = cpu::winograd_pack_weights(f.w.data(), c.out.s.c, c.in.s.c, t, c.win);
            pc.tiling = t;
            wino_scratch_floats_ =
                std::max(wino_scratch_floats_, cpu::winograd_scratch_floats(c.in.s.c, t, c.win.kh, c.win.kw));
        } else {
            pc.pack(f.w.data(), c.out.s.c, k);
        }
        pc.bias = std::move(f.bias);
        pc.relu = e.relu;
        pc.win = c.win;
        pc.in = c.in.s;
        pc.out = c.out.s;
        return pc;
    }

    // " 3x3", " 3x3/2" (stride 2), " 1x7".
    static std::string window_text(const window& w) {
        std::string t = " " + std::to_string(w.kh) + "x" + std::to_string(w.kw);
        if (w.sh != 1 || w.sw != 1) t += "/" + std::to_string(w.sh) + (w.sh == w.sw ? "" : "x" + std::to_string(w.sw));
        return t;
    }

    static void check(const cpu::ref::in_view& v, int n, std::string_view where, std::string_view kind) {
        const std::string bad = cpu::ref::first_non_finite(v, n);
        if (bad.empty()) return;
        throw error(kind.empty() ? "ctnet: check-finite: " + std::string{where} + " is not finite at " + bad
                                 : "ctnet: check-finite: layer " + std::string{where} + " (" + std::string{kind} +
                                       ") first produced a non-finite value, at " + bad);
    }

    // int8: the input quantisation of step e's conv, from its calibrated range.
    cpu::act_quant input_quant(const exec::step& e, const cpu::quant_scales& scales) const {
        if (precision_ != ctnet::precision::int8) return {};
        const std::string_view name = Net::program.ops[e.op].path.view();
        const cpu::quant_scales::range* r = scales.find(name);
        if (r == nullptr)
            throw error("ctnet: precision int8: no calibrated range for conv " + std::string{name} +
                        " in options.scales (make them with cpu::calibrate, cpu/calibrate.hpp, for this network)");
        return cpu::act_quant::of_range(r->lo, r->hi);
    }

    // The tensor step s's conv reads (a pooled step: the pool's input).
    cpu::ref::in_view conv_input(const step& s) {
        const auto& p = Net::program;
        return arena_.in_view(s.plan.pool >= 0 ? p.ops[s.plan.pool].in : p.ops[s.plan.op].in);
    }

    void record_range(const step& s, int n) {
        const cpu::ref::in_view x = conv_input(s);
        float lo = 0.0F, hi = 0.0F;
        bool any = false;
        for (int i = 0; i < n; ++i) {
            const float* xi = x.sample(i);
            for (std::size_t j = 0; j < x.s.size(); ++j) {
                const float v = xi[j];
                if (!std::isfinite(v)) continue;
                lo = any ? std::min(lo, v) : v;
                hi = any ? std::max(hi, v) : v;
                any = true;
            }
        }
        record_->widen(Net::program.ops[s.plan.op].path.view(), lo, hi);
    }

    // Step s's conv, in whatever precision it was packed.
    void run_any_conv(const step& s, const cpu::ref::in_view& x, const cpu::ref::out_view& y, int n) {
        if (s.conv >= 0) run_conv(convs_[static_cast<std::size_t>(s.conv)], x, y, n);
        else run_lowp(lowp_[static_cast<std::size_t>(s.lowp)], x, y, n);
    }

    // A bf16 / int8 conv: the units of run_conv, on cpu/gemm_lowp.hpp's kernels.
    void run_lowp(const cpu::lowp_conv& cv, const cpu::ref::in_view& x, const cpu::ref::out_view& y, int n) {
        const int cols = cv.g.out.h * cv.g.out.w;
        const int col_blocks = (cols + cpu::gemm_nc - 1) / cpu::gemm_nc;
        run_units(n * col_blocks, cv.g.m, cpu::gemm_units, [&](int u0, int u1, int row0, int row1, int thread) {
            cpu::conv_unit units[cpu::gemm_units];
            for (int u = u0; u < u1; ++u) {
                const int sample = u / col_blocks, j0 = u % col_blocks * cpu::gemm_nc;
                units[u - u0] = cpu::conv_unit{x.sample(sample), y.sample(sample), j0, std::min(cpu::gemm_nc, cols - j0)};
            }
            cpu::lowp_units(cv, units, u1 - u0, row0, row1,
                            lowp_scratch_.data() + static_cast<std::size_t>(thread) * cpu::lowp_scratch_floats);
        });
    }

    void run_conv(const cpu::packed_conv& cv, const cpu::ref::in_view& x, const cpu::ref::out_view& y, int n) {
        if (!cv.wino.empty()) {
            run_winograd(cv, x, y, n);
            return;
        }
        // Units: (sample, block of NC columns). While they share out evenly over the threads,
        // tasks take runs of up to gemm_units consecutive units with all rows (one pass over the
        // weights serves the whole run); the last `total % threads` units are split into row
        // ranges, one per thread (each range packs the block's columns again): splitting rows only
        // until every thread has a task keeps the 8x8 blocks from being packed once per split,
        // and splitting only the remainder keeps 17x17 (5 blocks on 2 threads) from idling one
        // thread for a block. The alternatives measured: bench/RESULTS.md.
        const int cols = cv.out.h * cv.out.w;
        const int col_blocks = (cols + cpu::gemm_nc - 1) / cpu::gemm_nc;
        const auto unit_of = [&](int u) {
            const int sample = u / col_blocks, j0 = u % col_blocks * cpu::gemm_nc;
            return cpu::conv_unit{x.sample(sample), y.sample(sample), j0, std::min(cpu::gemm_nc, cols - j0)};
        };
        run_units(n * col_blocks, cv.m, cpu::gemm_units, [&](int u0, int u1, int row0, int row1, int thread) {
            cpu::conv_unit units[cpu::gemm_units];
            for (int u = u0; u < u1; ++u) units[u - u0] = unit_of(u);
            cpu::conv_gemm_units(cv, units, u1 - u0, row0, row1,
                                 scratch_.data() + static_cast<std::size_t>(thread) * conv_scratch_floats());
        });
    }

    // Runs f(u0, u1, row0, row1, thread) over units [0, units) of m rows: the units that share out
    // evenly over the threads as threads * c runs of consecutive units (at most max_run each,
    // sizes differing by at most one: task_range), all rows; then each of the last
    // `units % threads` alone, split into one row range (multiples of MR) per thread.
    // With max_run = 1 every run is one unit (c = units / threads).
    template <class F>
    void run_units(int units, int m, int max_run, F&& f) {
        const int panels = (m + cpu::gemm_mr - 1) / cpu::gemm_mr, threads = pool_.size();
        const int rest = threads > 1 ? units % threads : 0, whole = units - rest;
        const int per_thread = (whole + threads * max_run - 1) / (threads * max_run);
        const int runs = threads * per_thread, splits = std::min(panels, threads);
        pool_.run(runs + rest * splits, [&](int task, int thread) {
            if (task < runs) {
                const cpu::index_range r = cpu::task_range(whole, runs, task);
                f(r.begin, r.end, 0, m, thread);  // never empty: runs <= whole
                return;
            }
            const int u = whole + (task - runs) / splits;
            const cpu::index_range p = cpu::task_range(panels, splits, (task - runs) % splits);
            f(u, u + 1, p.begin * cpu::gemm_mr, std::min(m, p.end * cpu::gemm_mr), thread);
        });
    }

    // The 1x1 conv of every sample into pooled_tmp_ (one GEMM call: its units spread over the
    // threads as a plain conv's), then the pool of its planes, bias and ReLU (one task per
    // thread: a run of (sample, plane)s, as run_pool).
    void run_pooled(const step& s, int n) {
        const op& pool = Net::program.ops[s.plan.pool];
        const cpu::packed_conv& cv = s.conv >= 0 ? convs_[static_cast<std::size_t>(s.conv)] : lowp_[static_cast<std::size_t>(s.lowp)].g;
        const cpu::ref::in_view x = arena_.in_view(pool.in);
        const cpu::ref::out_view y = arena_.view(s.plan.out);
        const shape ts = cv.out, os = y.s;
        const std::size_t tp = static_cast<std::size_t>(ts.h) * ts.w, op_ = static_cast<std::size_t>(os.h) * os.w;
        run_any_conv(s, x, {pooled_tmp_.data(), ts.size(), ts}, n);
        pool_.run_ranges(n * cv.m, pool_.size(), [&](int begin, int end, int thread, int) {
            float* tmp = scratch_.data() + static_cast<std::size_t>(thread) * conv_scratch_floats();
            for (int task = begin; task < end; ++task) {
                const int i = task / cv.m, m = task % cv.m;
                float* yp = y.sample(i) + static_cast<std::size_t>(m) * op_;
                cpu::avg_pool_plane(pooled_tmp_.data() + static_cast<std::size_t>(i) * ts.size() + static_cast<std::size_t>(m) * tp,
                                    ts.h, ts.w, yp, os.h, os.w, pool.win, pool.count_pad, tmp);
                const float b = s.post_bias[static_cast<std::size_t>(m)];
                for (std::size_t j = 0; j < op_; ++j) {
                    const float v = yp[j] + b;
                    yp[j] = s.post_relu && v <= 0.0F ? 0.0F : v;  // a NaN stays NaN, as the GEMM epilogue
                }
            }
        });
    }

    void run_step(const step& s, int n) {
        const op& o = Net::program.ops[s.plan.op];
        if (s.plan.pool >= 0) {
            run_pooled(s, n);
            return;
        }
        if (s.conv >= 0 || s.lowp >= 0) {
            run_any_conv(s, arena_.in_view(o.in), arena_.view(s.plan.out), n);
            return;
        }
        const cpu::ref::in_view x = arena_.in_view(o.in);
        const cpu::ref::out_view y = arena_.view(o.out);
        switch (o.kind) {  // one line per op: its kernel (convs are steps of their own, above)
            case op_kind::batch_norm: run_batch_norm(o, x, y, n); break;
            case op_kind::relu: cpu::ref::relu(x, y, n); break;
            case op_kind::max_pool:
            case op_kind::avg_pool: run_pool(o, x, y, n); break;
            case op_kind::global_avg_pool: cpu::ref::global_avg_pool(x, y, n); break;
            case op_kind::linear: run_linear(o, x, y, n); break;
            case op_kind::softmax: cpu::ref::softmax(x, y, n); break;
            case op_kind::dropout: if (x.data != y.data) cpu::ref::copy(x, y, n); break;
            case op_kind::channel_affine: cpu::ref::channel_affine(x, y, n, o.scale, o.shift); break;
            case op_kind::conv: break;
        }
    }

    // A batch norm that follows no conv, from the running statistics.
    void run_batch_norm(const op& o, const cpu::ref::in_view& x, const cpu::ref::out_view& y, int n) const {
        const auto bn = bn_params<const float>::of(o, params_.data());
        cpu::ref::batch_norm(x, y, n, bn.gamma, bn.beta, bn.mean, bn.var, o.eps);
    }

    // One task per thread, each a run of (sample, channel plane)s: a plane is too little work for
    // a task of its own (bench/RESULTS.md, 2026-12-05: the pools 1.2x faster in all).
    void run_pool(const op& o, const cpu::ref::in_view& x, const cpu::ref::out_view& y, int n) {
        const shape is = o.in.s, os = o.out.s;
        const std::size_t ip = static_cast<std::size_t>(is.h) * is.w, opl = static_cast<std::size_t>(os.h) * os.w;
        const bool max = o.kind == op_kind::max_pool;
        pool_.run_ranges(n * is.c, pool_.size(), [&](int begin, int end, int thread, int) {
            float* tmp = scratch_.data() + static_cast<std::size_t>(thread) * conv_scratch_floats();
            for (int task = begin; task < end; ++task) {
                const int i = task / is.c, ch = task % is.c;
                const float* xp = x.sample(i) + ch * ip;
                float* yp = y.sample(i) + ch * opl;
                if (max) cpu::max_pool_plane(xp, is.h, is.w, yp, os.h, os.w, o.win, tmp);
                else cpu::avg_pool_plane(xp, is.h, is.w, yp, os.h, os.w, o.win, o.count_pad, tmp);
            }
        });
    }

    // Tasks of 64 outputs, every sample.
    void run_linear(const op& o, const cpu::ref::in_view& x, const cpu::ref::out_view& y, int n) {
        const auto c = static_cast<std::size_t>(o.out.s.c), in = static_cast<std::size_t>(o.in.s.c);
        const auto wb = weight_params<const float>::of(o, params_.data());
        constexpr std::size_t chunk = 64;
        pool_.run(static_cast<int>((c + chunk - 1) / chunk), [&](int task, int) {
            const std::size_t o0 = static_cast<std::size_t>(task) * chunk;
            cpu::linear_outputs(x.data, x.stride, y.data, y.stride, n, in, wb.w, wb.bias, o0, std::min(c, o0 + chunk));
        });
    }

    // A Winograd conv: (sample, panel of NR tiles) units with all rows, the remainder split into
    // row ranges, as run_conv (a split unit transforms its input again).
    void run_winograd(const cpu::packed_conv& cv, const cpu::ref::in_view& x, const cpu::ref::out_view& y, int n) {
        const int tiles = cpu::winograd_tiles(cv.out, cv.tiling);
        const int tile_panels = (tiles + cpu::gemm_nr - 1) / cpu::gemm_nr;
        run_units(n * tile_panels, cv.m, 1, [&](int unit, int, int row0, int row1, int thread) {
            const int sample = unit / tile_panels, tp = unit % tile_panels;
            cpu::winograd_block(cv, cv.wino.data(), x.sample(sample), y.sample(sample), row0, row1, tp * cpu::gemm_nr,
                                wino_scratch_.data() + static_cast<std::size_t>(thread) * wino_scratch_floats_);
        });
    }

    cpu::thread_pool pool_;
    arena arena_;
    std::vector<float> owned_;       // the weights, when the runner took them over (convs given back)
    std::span<const float> params_;  // the caller's or owned_ (linear layers, unfused batch norms)
    bool check_finite_ = false;
    bool winograd_ = true;
    ctnet::precision precision_ = ctnet::precision::fp32;
    cpu::quant_scales* record_ = nullptr;  // record_ranges: where the ranges go
    std::vector<cpu::packed_conv> convs_;
    std::vector<cpu::lowp_conv> lowp_;     // bf16 / int8 convs (cpu/gemm_lowp.hpp)
    std::vector<float> lowp_scratch_;      // per thread: their packed blocks
    std::vector<step> steps_;
    std::vector<float> scratch_;  // per thread: a packed column block and an edge tile
    std::size_t wino_scratch_floats_ = 0;  // per thread, for the widest Winograd conv
    std::vector<float> wino_scratch_;
    std::size_t pooled_floats_ = 0;  // the largest conv output of a pooled step (step::pool), one sample
    std::vector<float> pooled_tmp_;  // pooled_floats_ per sample of the largest batch so far
};

}  // namespace ctnet
