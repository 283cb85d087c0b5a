// ctnet/cuda/nhwc_plan.hpp — the NHWC execution plan of a network for the CUDA backend's NHWC
// engines (options::engine = engine::ctnet or engine::cudnn), computed at compile time from the
// program (graph/program.hpp) and the fused-step plan every backend shares (exec/plan.hpp).
//
//   constexpr auto& p = cuda::nhwc_plan_v<net>;
//   for (const cuda::nhwc::step& s : p.steps()) ...   // s.k, s.x / s.y (NHWC views), s.relu, s.r
//   cuda::nhwc::dims4 d = cuda::nhwc::dims(s.y, 128); // cuDNN's n c h w dims and strides at batch 128
//
// What it decides (all plain data, asserted by tests/test_nhwc_plan.cpp without a GPU):
//   - every value becomes an NHWC view: buffer, channels of the buffer (the pixel stride), first
//     channel c0 — a concat branch writes into its channel slice with the same strides as a whole
//     buffer, only the first element moves;
//   - a conv carries its folded batch norm and ReLU (bias + ReLU fused into the conv's epilogue,
//     or cuDNN's cudnnConvolutionBiasActivationForward);
//   - the route of each conv under cuDNN: cuDNN's legacy fused API refused every conv whose output
//     is a channel slice of a wider NHWC buffer (probe of 2026-12-04, docs/cuda.md), so such a
//     conv writes a packed temporary and a copy kernel moves it into its slice (route::packed_out);
//     the bound of that temporary (elements per sample) is temp_out; asymmetric padding, which
//     the legacy API cannot express, runs on ctnet's kernel (cudnn_ok = false);
//   - an average pool read only by a 1x1 conv runs after it (nhwc::step::pooled): the conv
//     writes the pool temporary (temp_pool elements per sample at most), the pool adds the
//     conv's bias and ReLU and writes the conv's destination;
//   - the input transform: the caller's NCHW float input to NHWC storage in one kernel, with a
//     channel_affine on the input (torchvision's transform_input) fused into it;
//   - a flattened H x W > 1 buffer read by a linear layer: features in NHWC order, the weights
//     permuted at load (flat_c / flat_h / flat_w), so no layout transpose runs in the pass;
//   - the output: NHWC storage to the caller's NCHW floats.
// The memory plan is the program's (the same per-sample offsets, in elements of the storage type).
// Requires: an eval-mode program. A network the NHWC engines cannot run (a flattened buffer read
// by anything but a linear layer, a flattened output) gives ok = false and `why`; the runner
// then throws at construction.
#pragma once

#include <array>
#include <cstddef>
#include <span>

#include "../exec/plan.hpp"
#include "../graph/network.hpp"
#include "nhwc.hpp"

namespace ctnet::cuda {

template <std::size_t Cap, std::size_t Bufs>
struct nhwc_program {
    std::array<nhwc::step, Cap> all{};
    int n = 0;
    std::array<long long, Bufs> offset{};  // per-sample element offset of each program buffer in the arena
    int n_bufs = 0;
    long long arena = 0;                   // elements of arena per sample
    nhwc::tensor in{}, out{};              // the network input (NCHW float, as given) and its output value
    long long temp_in = 0, temp_out = 0;   // cuDNN's packed temporaries: elements per sample (0: none)
    long long temp_pool = 0;               // the pooled convs' output (before their pool): elements per sample
    bool ok = true;
    const char* why = "";

    [[nodiscard]] constexpr std::span<const nhwc::step> steps() const { return {all.data(), static_cast<std::size_t>(n)}; }
    [[nodiscard]] constexpr int count(nhwc::kind k) const {
        int c = 0;
        for (int i = 0; i < n; ++i) c += all[i].k == k ? 1 : 0;
        return c;
    }
};

namespace detail {

[[nodiscard]] constexpr geometry geometry_of(const window& g) { return {g.kh, g.kw, g.sh, g.sw, g.pt, g.pb, g.pl, g.pr}; }

template <class Plan>
constexpr void refuse(Plan& pl, const char* why) {
    if (pl.ok) pl.why = why;
    pl.ok = false;
}

// The NHWC view of value v. A flattened view of a buffer with H x W > 1 (flatten is a view) is
// returned as (C*H*W, 1, 1) packed, its features in NHWC order; `flat` says so.
template <class P, class Plan>
constexpr nhwc::tensor tensor_of(const P& p, const value& v, Plan& pl, bool* flat = nullptr) {
    const buffer& b = p.bufs[v.buf];
    if (flat != nullptr) *flat = false;
    if (v.s.h == b.s.h && v.s.w == b.s.w) {
        const int plane = v.s.h * v.s.w;
        if (plane <= 0 || v.offset % plane != 0 || v.offset / plane + v.s.c > b.s.c) {
            refuse(pl, "a value is not a channel slice of its buffer");
            return {};
        }
        return {v.buf, v.s.c, v.s.h, v.s.w, b.s.c, v.offset / plane, b.input};
    }
    if (v.offset == 0 && v.s.size() == b.s.size() && v.s.h == 1 && v.s.w == 1) {
        if (flat != nullptr) *flat = true;
        return {v.buf, v.s.c, 1, 1, v.s.c, 0, b.input};
    }
    refuse(pl, "a value is neither a channel slice nor a flattened buffer");
    return {};
}

}  // namespace detail

template <class Net>
constexpr auto make_nhwc_plan() {
    const auto& p = Net::program;
    // A pooled step (an average pool after its 1x1 conv) becomes two: the conv, then the pool.
    constexpr const auto& fused = exec::plan_v<Net>;
    nhwc_program<2 * fused.all.size() + 2, p.bufs.size()> pl;
    pl.n_bufs = p.n_bufs;
    pl.arena = static_cast<long long>(p.arena);
    for (int b = 0; b < p.n_bufs; ++b) pl.offset[b] = static_cast<long long>(p.bufs[b].offset);
    const shape is = p.bufs[p.input.buf].s;
    pl.in = {-1, is.c, is.h, is.w, is.c, 0, true};

    // The input transform, with a channel_affine that alone reads the input fused into it.
    nhwc::step in{.k = nhwc::kind::input, .x = pl.in, .y = detail::tensor_of(p, p.input, pl)};
    std::span<const exec::step> rest = fused.steps();
    if (!rest.empty()) {
        const op& o0 = p.ops[rest.front().op];
        if (o0.kind == op_kind::channel_affine && exec::same_value(o0.in, p.input) &&
            p.bufs[p.input.buf].last == rest.front().op) {
            in.op = in.last = rest.front().op;
            in.y = detail::tensor_of(p, o0.out, pl);
            rest = rest.subspan(1);
        }
    }
    pl.all[pl.n++] = in;

    for (const exec::step& e : rest) {
        const op& o = p.ops[e.op];
        nhwc::step s{};
        s.op = e.op;
        s.last = e.last;
        s.x = detail::tensor_of(p, o.in, pl);
        s.y = detail::tensor_of(p, o.kind == op_kind::conv ? e.out : o.out, pl);
        s.g = detail::geometry_of(o.win);
        switch (o.kind) {
            case op_kind::conv: {
                s.k = nhwc::kind::conv;
                s.relu = e.relu;
                s.bn = e.bn;
                if (e.pool >= 0) {  // the conv on the pool's input into the pool temporary, then the pool
                    const op& pool = p.ops[e.pool];
                    s.x = detail::tensor_of(p, pool.in, pl);
                    s.y = {nhwc::pool_temp, s.y.c, s.x.h, s.x.w, s.y.c, 0, false};
                    s.relu = false;
                    s.pooled = true;
                    if (s.y.size() > pl.temp_pool) pl.temp_pool = s.y.size();
                    nhwc::step after{.k = nhwc::kind::avg_pool, .op = e.pool, .last = e.last, .x = s.y,
                                     .y = detail::tensor_of(p, e.out, pl), .g = detail::geometry_of(pool.win),
                                     .relu = e.relu, .count_pad = pool.count_pad, .pooled = true};
                    if (nhwc::cudnn_ok(s) && !s.x.packed() && s.x.size() > pl.temp_in) pl.temp_in = s.x.size();
                    s.r = s.x.packed() ? nhwc::route::direct : nhwc::route::packed_in;
                    s.last = e.bn ? e.op + 1 : e.op;  // the conv and its folded batch norm; the pool covers the ReLU
                    pl.all[pl.n++] = s;
                    pl.all[pl.n++] = after;
                    continue;
                }
                const bool in_slice = !s.x.packed(), out_slice = !s.y.packed();
                s.r = in_slice && out_slice ? nhwc::route::packed_both
                      : in_slice            ? nhwc::route::packed_in
                      : out_slice           ? nhwc::route::packed_out
                                            : nhwc::route::direct;
                if (nhwc::cudnn_ok(s)) {
                    if (in_slice && s.x.size() > pl.temp_in) pl.temp_in = s.x.size();
                    if (out_slice && s.y.size() > pl.temp_out) pl.temp_out = s.y.size();
                }
                break;
            }
            case op_kind::batch_norm: s.k = nhwc::kind::affine; s.bn = true; break;
            case op_kind::channel_affine: s.k = nhwc::kind::affine; break;
            case op_kind::relu: s.k = nhwc::kind::relu; break;
            case op_kind::max_pool: s.k = nhwc::kind::max_pool; break;
            case op_kind::avg_pool: s.k = nhwc::kind::avg_pool; s.count_pad = o.count_pad; break;
            case op_kind::global_avg_pool: s.k = nhwc::kind::global_avg_pool; break;
            case op_kind::linear: {
                s.k = nhwc::kind::linear;
                bool flat = false;
                s.x = detail::tensor_of(p, o.in, pl, &flat);
                const shape src = p.bufs[o.in.buf].s;
                if (flat && (src.h > 1 || src.w > 1)) {
                    s.flat_c = src.c;
                    s.flat_h = src.h;
                    s.flat_w = src.w;
                }
                break;
            }
            case op_kind::softmax: {
                s.k = nhwc::kind::softmax;
                bool flat = false;
                s.x = detail::tensor_of(p, o.in, pl, &flat);
                const shape src = p.bufs[o.in.buf].s;
                if (flat && (src.h > 1 || src.w > 1)) detail::refuse(pl, "a softmax reads a flattened H x W > 1 buffer");
                break;
            }
            case op_kind::dropout:
                s.k = nhwc::kind::copy;
                if (exec::same_value(o.in, o.out)) continue;  // in place: nothing to run in eval
                break;
        }
        if (s.k != nhwc::kind::linear && s.k != nhwc::kind::softmax) {
            const shape src = p.bufs[o.in.buf].s;
            if (o.in.s.h != src.h || o.in.s.w != src.w)
                detail::refuse(pl, "a flattened H x W > 1 buffer is read by an op other than linear");
        }
        pl.all[pl.n++] = s;
    }
    bool flat = false;
    pl.out = detail::tensor_of(p, p.output, pl, &flat);
    const shape os = p.bufs[p.output.buf].s;
    if (flat && (os.h > 1 || os.w > 1)) detail::refuse(pl, "the output is a flattened H x W > 1 buffer");
    pl.all[pl.n++] = nhwc::step{.k = nhwc::kind::output, .x = pl.out,
                                .y = {-1, pl.out.c, pl.out.h, pl.out.w, pl.out.c, 0, false}};
    return pl;
}

template <class Net>
inline constexpr auto nhwc_plan_v = make_nhwc_plan<Net>();

}  // namespace ctnet::cuda
