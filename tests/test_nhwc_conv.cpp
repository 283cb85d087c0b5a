// ctnet's NHWC conv kernel (src/cuda/conv_nhwc.cuh) emulated on the host: for every block, every
// depth slice and every thread, the kernel's own index functions (cuda/nhwc_conv_tiles.hpp) fill
// host arrays standing in for its two shared-memory stages (poisoned with NaN first, so a slot
// nobody writes shows), each filled slot is checked against conv_forward's element functions
// (cuda/nhwc_operands.hpp: the gathered A is im2col, zero in the padding and past the rows and
// the depth; B is the weights, zero past the depth and the columns), the stages are multiplied
// fragment by fragment as the warps multiply them (float accumulation, in k order), and the
// epilogue writes y — compared with conv_forward's a / b / store loop. Both sum in the same
// order, so the results agree exactly; elements of y outside the conv's slice must keep their
// poison. Every conv of Inception v3 (75 x 75, batch 1 to 3), slices with c0 > 0 on both sides,
// partial tiles in rows, columns and depth; float, fp16 and bf16 storage, the 16-byte path and
// the element path. Needs no GPU and no CUDA toolkit.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <ctnet/core/random.hpp>
#include <ctnet/cuda/nhwc_conv_tiles.hpp>
#include <ctnet/cuda/nhwc_operands.hpp>
#include <ctnet/cuda/nhwc_plan.hpp>
#include <ctnet/models/inception_v3.hpp>

using namespace ctnet;
namespace nh = cuda::nhwc;
namespace ig = cuda::nhwc::igemm;

namespace {

// One conv: its window and its input and output as slices [c0, c0 + c) of buffers of `channels`.
struct conv_case {
    std::string name;
    cuda::geometry g;
    nh::tensor x, y;
    int n = 1;
};

// Element (r, c) of a row-major host array of pitch ld.
std::size_t cell(int r, int ld, int c) {
    return static_cast<std::size_t>(r) * static_cast<std::size_t>(ld) + static_cast<std::size_t>(c);
}

// How a case is run: which load paths the kernel may take.
enum class path : unsigned char { vector, element };

// What a run found; `first` describes the first disagreement.
struct outcome {
    long long slots_wrong = 0, outputs_wrong = 0, outside_written = 0;
    bool a_vec = false, b_vec = false;
    std::string first;
    void note(const std::string& what) {
        if (first.empty()) first = what;
    }
};

template <class S>
struct operands {
    using T = typename S::type;
    std::vector<T> x, wt, y_kernel, y_ref;
    std::vector<float> bias;
};

template <class S>
operands<S> make_operands(const conv_case& c, rng& g) {
    using T = typename S::type;
    operands<S> o;
    // The buffers hold the whole slices' pixels; channels outside a slice are data too (x) or
    // poison that must stay (y).
    o.x.resize(static_cast<std::size_t>(c.x.sample() * c.n));
    const auto uniform = [&g] { return static_cast<float>(2.0 * g.uniform() - 1.0); };  // [-1, 1)
    for (T& v : o.x) v = S::store(uniform());
    const int depth = c.g.kh * c.g.kw * c.x.c;
    o.wt.resize(static_cast<std::size_t>(depth) * c.y.c);
    for (T& v : o.wt) v = S::store(uniform() / std::sqrt(static_cast<float>(depth)));
    o.bias.resize(static_cast<std::size_t>(c.y.c));
    for (float& v : o.bias) v = uniform();
    const T poison = S::store(std::numeric_limits<float>::quiet_NaN());
    o.y_kernel.assign(static_cast<std::size_t>(c.y.sample() * c.n), poison);
    o.y_ref = o.y_kernel;
    return o;
}

template <class S>
nh::conv_forward<S> forward_of(const conv_case& c, operands<S>& o, std::vector<typename S::type>& y, bool relu) {
    using T = typename S::type;
    const nh::view<const T> xv{o.x.data() + c.x.c0, c.x.sample(), c.x.channels, c.x.c, c.x.h, c.x.w};
    const nh::view<T> yv{y.data() + c.y.c0, c.y.sample(), c.y.channels, c.y.c, c.y.h, c.y.w};
    return nh::conv_forward<S>{o.wt.data(), o.bias.data(), relu, c.g, xv, yv};
}

// The reference: conv_forward's element functions, one sample (grid slice) after another, each
// sum in k order. a and b are read once each into float tables (the same values; called per
// multiply-add they would cost 100x on the host), and 16 output channels are summed side by side.
template <class S>
void reference(const nh::conv_forward<S>& f, int n) {
    constexpr int lanes = 16;
    std::vector<float> b(static_cast<std::size_t>(f.depth) * f.cols), a(static_cast<std::size_t>(f.depth));
    for (int k = 0; k < f.depth; ++k)
        for (int j = 0; j < f.cols; ++j) b[static_cast<std::size_t>(k) * f.cols + j] = f.b(0, k, j);
    for (int z = 0; z < n; ++z)
        for (int m = 0; m < f.rows; ++m) {
            for (int k = 0; k < f.depth; ++k) a[static_cast<std::size_t>(k)] = f.a(z, m, k);
            for (int j0 = 0; j0 < f.cols; j0 += lanes) {
                const int nj = std::min(lanes, f.cols - j0);
                float acc[lanes] = {};
                for (int k = 0; k < f.depth; ++k) {
                    const float ak = a[static_cast<std::size_t>(k)];
                    const float* bk = b.data() + static_cast<std::size_t>(k) * f.cols + j0;
                    for (int j = 0; j < nj; ++j) acc[j] = std::fma(ak, bk[j], acc[j]);
                }
                for (int j = 0; j < nj; ++j) f.store(z, m, j0 + j, acc[j]);
            }
        }
}

// The kernel, block by block, on the host.
template <class S>
void emulate(const ig::problem<typename S::type>& p, const nh::conv_forward<S>& f, outcome& out) {
    using T = typename S::type;
    constexpr int bytes = sizeof(T);
    using L = ig::tiles<bytes>;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const T poison = S::store(nan), zero = S::store(0.0F);
    std::vector<T> as(static_cast<std::size_t>(ig::stages * L::a_elems)), bs(static_cast<std::size_t>(ig::stages * L::b_elems));
    std::vector<int> a_writes(static_cast<std::size_t>(L::a_elems)), b_writes(static_cast<std::size_t>(L::b_elems));
    std::vector<float> af(static_cast<std::size_t>(ig::bm * L::bk)), bf(static_cast<std::size_t>(L::bk * ig::bn));
    std::vector<float> acc(static_cast<std::size_t>(ig::bm * ig::bn)), cs(static_cast<std::size_t>(ig::bm * L::ldc));
    std::vector<ig::pixel> pixels(ig::bm);
    std::vector<ig::tap> taps(ig::threads);
    const int plane = f.rows, slices = ig::slices<bytes>(p.depth);
    const auto wrong_slot = [&](int b, int s, char tile, int r, int c, float got, int writes, float want) {
        ++out.slots_wrong;
        std::ostringstream w;
        w << "block " << b << " slice " << s << ": " << tile << "(" << r << ", " << c << ") = " << got << " written " << writes
          << "x, want " << want;
        out.note(w.str());
    };

    for (int b = 0; b < p.blocks; ++b) {
        const ig::origin o = ig::block_origin(b, p.col_tiles);
        for (int t = 0; t < ig::threads; ++t) ig::fill_pixels(p, o.m0, t, pixels.data());
        for (int t = 0; t < ig::threads; ++t) taps[t] = ig::first_tap(p, t);
        std::fill(acc.begin(), acc.end(), 0.0F);

        // Every thread's loads of slice s into its stage, then every slot checked.
        const auto load = [&](int s) {
            T* const sa = as.data() + ig::buffer_of(s) * L::a_elems;
            T* const sb = bs.data() + ig::buffer_of(s) * L::b_elems;
            std::fill(sa, sa + L::a_elems, poison);
            std::fill(sb, sb + L::b_elems, poison);
            std::fill(a_writes.begin(), a_writes.end(), 0);
            std::fill(b_writes.begin(), b_writes.end(), 0);
            // The kernel's copy: `elements` from src + at into stage + slot, zeros when at < 0.
            const auto copier = [zero](T* stage, std::vector<int>& writes, const T* src) {
                return [zero, stage, counts = writes.data(), src](int slot, long long at, int elements) {
                    for (int e = 0; e < elements; ++e) {
                        stage[slot + e] = at >= 0 ? src[at + e] : zero;
                        ++counts[slot + e];
                    }
                };
            };
            for (int t = 0; t < ig::threads; ++t) {
                const int k_before = taps[t].k;
                ig::load_a(p, pixels.data(), taps[t], t, copier(sa, a_writes, p.x));
                if (taps[t].k != k_before + L::bk) out.note("a tap did not move on by bk");
                ig::load_b(p, s * L::bk, o.j0, t, copier(sb, b_writes, p.wt));
            }
            const int k0 = s * L::bk;
            for (int r = 0; r < ig::bm; ++r)
                for (int c = 0; c < L::lda; ++c) {
                    const int slot = ig::a_smem<bytes>(r, c), writes = a_writes[static_cast<std::size_t>(slot)];
                    const int m = o.m0 + r, k = k0 + c;
                    const float want = c >= L::bk ? nan : m < p.rows && k < p.depth ? f.a(m / plane, m % plane, k) : 0.0F;
                    const float got = S::load(sa[slot]);
                    const bool ok = c >= L::bk ? writes == 0 : writes == 1 && got == want;
                    if (!ok) wrong_slot(b, s, 'A', r, c, got, writes, want);
                }
            for (int r = 0; r < L::bk; ++r)
                for (int c = 0; c < L::ldb; ++c) {
                    const int slot = ig::b_smem<bytes>(r, c), writes = b_writes[static_cast<std::size_t>(slot)];
                    const int k = k0 + r, j = o.j0 + c;
                    const float want = c >= ig::bn ? nan : k < p.depth && j < p.cout ? f.b(0, k, j) : 0.0F;
                    const float got = S::load(sb[slot]);
                    const bool ok = c >= ig::bn ? writes == 0 : writes == 1 && got == want;
                    if (!ok) wrong_slot(b, s, 'B', r, c, got, writes, want);
                }
        };
        // Slice s multiplied as the warps do: fragment by fragment, each sum in k order. Rows past
        // the batch and columns past cout are skipped (the kernel multiplies them, the epilogue
        // drops them; their slots were checked above): the small late layers would cost 100x.
        const auto multiply = [&](int s) {
            const T* const sa = as.data() + ig::buffer_of(s) * L::a_elems;
            const T* const sb = bs.data() + ig::buffer_of(s) * L::b_elems;
            for (int r = 0; r < ig::bm; ++r)
                for (int k = 0; k < L::bk; ++k) af[cell(r, L::bk, k)] = S::load(sa[ig::a_smem<bytes>(r, k)]);
            for (int k = 0; k < L::bk; ++k)
                for (int c = 0; c < ig::bn; ++c) bf[cell(k, ig::bn, c)] = S::load(sb[ig::b_smem<bytes>(k, c)]);
            for (int w = 0; w < ig::threads / 32; ++w)
                for (int fm = 0; fm < ig::frags_m; ++fm)
                    for (int fn = 0; fn < ig::frags_n; ++fn) {
                        const ig::slot fr = ig::fragment(w, fm, fn);
                        const int nc = std::min(ig::frag, p.cout - o.j0 - fr.c);
                        for (int r = fr.r; r < fr.r + ig::frag && pixels[static_cast<std::size_t>(r)].valid; ++r) {
                            float* const c_row = acc.data() + cell(r, ig::bn, fr.c);
                            for (int k = 0; k < L::bk; ++k) {
                                const float ak = af[cell(r, L::bk, k)];
                                const float* const b_row = bf.data() + cell(k, ig::bn, fr.c);
                                for (int c = 0; c < nc; ++c) c_row[c] = std::fma(ak, b_row[c], c_row[c]);
                            }
                        }
                    }
        };
        // The pipeline's order: slice s + 1 loads into the other stage before slice s is multiplied.
        if (slices > 0) load(0);
        for (int s = 0; s < slices; ++s) {
            if (s + 1 < slices) load(s + 1);
            multiply(s);
        }
        // Accumulators into the float tile (store_matrix_sync of each fragment), then the epilogue.
        std::fill(cs.begin(), cs.end(), nan);
        for (int w = 0; w < ig::threads / 32; ++w)
            for (int fm = 0; fm < ig::frags_m; ++fm)
                for (int fn = 0; fn < ig::frags_n; ++fn) {
                    const ig::slot fr = ig::fragment(w, fm, fn);
                    for (int r = fr.r; r < fr.r + ig::frag; ++r)
                        for (int c = fr.c; c < fr.c + ig::frag; ++c)
                            cs[static_cast<std::size_t>(ig::c_smem(r, c, L::ldc))] = acc[cell(r, ig::bn, c)];
                }
        for (int t = 0; t < ig::threads; ++t)
            ig::epilogue(p, pixels.data(), cs.data(), o.j0, t, [&](long long at, float v) { p.y[at] = S::store(v); });
    }
}

template <class S>
outcome run_case(const conv_case& c, path how, std::uint64_t seed) {
    using T = typename S::type;
    rng g{seed};
    operands<S> o = make_operands<S>(c, g);
    const bool relu = seed % 2 == 0;
    const nh::conv_forward<S> fk = forward_of(c, o, o.y_kernel, relu), fr = forward_of(c, o, o.y_ref, relu);
    ig::problem<T> p = ig::make_problem(fk, c.n);
    if (how == path::element) p.a_vec = p.b_vec = false;
    outcome out;
    out.a_vec = p.a_vec;
    out.b_vec = p.b_vec;
    emulate<S>(p, fk, out);
    reference<S>(fr, c.n);
    // Inside the slice: equal (same sums in the same order); outside: the poison, untouched.
    for (std::size_t e = 0; e < o.y_ref.size(); ++e) {
        const float got = S::load(o.y_kernel[e]), want = S::load(o.y_ref[e]);
        const auto ch = static_cast<int>(static_cast<long long>(e) % c.y.channels);
        const bool inside = ch >= c.y.c0 && ch < c.y.c0 + c.y.c;
        if (inside && !(got == want)) {
            ++out.outputs_wrong;
            std::ostringstream w;
            w << "y[" << e << "] (channel " << ch << ") = " << got << ", want " << want;
            out.note(w.str());
        }
        if (!inside && got == got) ++out.outside_written;
    }
    return out;
}

template <class S>
void check_case(const conv_case& c, path how, std::uint64_t seed) {
    REQUIRE(c.y.h == (c.x.h + c.g.pt + c.g.pb - c.g.kh) / c.g.sh + 1);
    REQUIRE(c.y.w == (c.x.w + c.g.pl + c.g.pr - c.g.kw) / c.g.sw + 1);
    const outcome o = run_case<S>(c, how, seed);
    const std::string what = c.name + " batch " + std::to_string(c.n) +
                             (how == path::vector ? " (16-byte loads allowed): " : " (element loads): ") + o.first;
    INFO(what);
    CHECK(o.slots_wrong == 0);
    CHECK(o.outputs_wrong == 0);
    CHECK(o.outside_written == 0);
    if (how == path::element) CHECK((!o.a_vec && !o.b_vec));
}

template <class S>
void check_cases(const std::vector<conv_case>& cases, path how) {
    std::uint64_t seed = 1;
    for (const conv_case& c : cases) check_case<S>(c, how, seed++);
}

void check_all_storages(const std::vector<conv_case>& cases, path how) {
    check_cases<nh::f32>(cases, how);
    check_cases<nh::f16_bits>(cases, how);
    check_cases<nh::bf16_bits>(cases, how);
}

// Every conv of Inception v3 at 75 x 75 as the NHWC plan has it (its slices included), batch 1,
// 2, 3 in turn.
std::vector<conv_case> inception_convs() {
    using net = models::inception_v3<1000, 75, models::inception_options{.aux_logits = false, .transform_input = true}>;
    constexpr const auto& pl = cuda::nhwc_plan_v<net>;
    std::vector<conv_case> cases;
    for (const nh::step& s : pl.steps()) {
        if (s.k != nh::kind::conv) continue;
        cases.push_back({std::string{net::program.ops[s.op].path.view()}, s.g, s.x, s.y, 1 + static_cast<int>(cases.size() % 3)});
    }
    return cases;
}

nh::tensor slice(int c, int h, int w, int channels, int c0) { return {0, c, h, w, channels, c0, false}; }

}  // namespace

TEST_CASE("nhwc conv kernel: the tile mappings cover each slot once") {
    const auto covers = [](int slots, auto&& slot_of, int per_thread) {
        std::vector<int> hits(static_cast<std::size_t>(slots));
        for (int t = 0; t < ig::threads; ++t)
            for (int i = 0; i < per_thread; ++i) ++hits[static_cast<std::size_t>(slot_of(t, i))];
        return std::count(hits.begin(), hits.end(), 1) == slots;
    };
    const auto both = [&](auto bytes_tag) {
        constexpr int bytes = decltype(bytes_tag)::value;
        using L = ig::tiles<bytes>;
        const auto a_vec = [](int t, int i) {
            const ig::slot s = ig::a_vector_slot<bytes>(t, i);
            return s.r * (L::bk / L::vec) + s.c / L::vec;
        };
        const auto a_el = [](int t, int i) {
            const ig::slot s = ig::a_scalar_slot<bytes>(t, i);
            return s.r * L::bk + s.c;
        };
        const auto b_vec = [](int t, int i) {
            const ig::slot s = ig::b_vector_slot<bytes>(t, i);
            return s.r * (ig::bn / L::vec) + s.c / L::vec;
        };
        const auto b_el = [](int t, int i) {
            const ig::slot s = ig::b_scalar_slot<bytes>(t, i);
            return s.r * ig::bn + s.c;
        };
        CHECK(covers(ig::bm * L::bk / L::vec, a_vec, L::a_vectors));
        CHECK(covers(ig::bm * L::bk, a_el, L::a_scalars));
        CHECK(covers(L::bk * ig::bn / L::vec, b_vec, L::b_vectors));
        CHECK(covers(L::bk * ig::bn, b_el, L::b_scalars));
        // WMMA wants 32-byte aligned fragment pointers and pitches of 16 bytes.
        for (int w = 0; w < ig::threads / 32; ++w)
            for (int fm = 0; fm < ig::frags_m; ++fm)
                for (int fn = 0; fn < ig::frags_n; ++fn) {
                    const ig::slot f = ig::fragment(w, fm, fn);
                    for (int kk = 0; kk < L::bk; kk += 32 / bytes) {
                        CHECK(ig::a_smem<bytes>(f.r, kk) * bytes % 32 == 0);
                        CHECK(ig::b_smem<bytes>(kk, f.c) * bytes % 32 == 0);
                    }
                    CHECK(ig::c_smem(f.r, f.c, L::ldc) * 4 % 32 == 0);
                }
        CHECK(L::a_elems * bytes % 128 == 0);
        CHECK(L::b_elems * bytes % 32 == 0);
        CHECK(L::smem_bytes + ig::bm * static_cast<int>(sizeof(ig::pixel)) <= 48 * 1024);  // static shared memory
    };
    both(std::integral_constant<int, 4>{});
    both(std::integral_constant<int, 2>{});
    std::vector<int> hits(cell(ig::bm, ig::bn, 0));  // the warps' fragments
    for (int w = 0; w < ig::threads / 32; ++w)
        for (int fm = 0; fm < ig::frags_m; ++fm)
            for (int fn = 0; fn < ig::frags_n; ++fn) {
                const ig::slot f = ig::fragment(w, fm, fn);
                for (int r = f.r; r < f.r + ig::frag; ++r)
                    for (int c = f.c; c < f.c + ig::frag; ++c) ++hits[cell(r, ig::bn, c)];
            }
    CHECK(std::count(hits.begin(), hits.end(), 1) == ig::bm * ig::bn);
    const auto fma = [](int t, int i) {
        const ig::slot s = ig::fma_slot(t, i / ig::fma_n, i % ig::fma_n);
        return s.r * ig::bn + s.c;
    };
    const auto epilogue = [](int t, int i) {
        const ig::slot s = ig::epilogue_slot(t, i);
        return s.r * ig::bn + s.c;
    };
    CHECK(covers(ig::bm * ig::bn, fma, ig::fma_m * ig::fma_n));
    CHECK(covers(ig::bm * ig::bn, epilogue, ig::epilogue_stores));
}

TEST_CASE("nhwc conv kernel: the depth walk equals (ky, kx, ci) by division") {
    for (const int cin : {1, 3, 5, 8, 32, 40}) {
        ig::problem<float> p;
        p.cin = cin;
        p.g = cuda::geometry{3, 7, 1, 1, 0, 0, 0, 0};
        for (const int step : {1, 4, 16, 32}) {
            ig::tap t;
            for (int k = 0; k < 3 * 7 * cin; k += step) {
                INFO("cin " << cin << " step " << step << " k " << k);
                REQUIRE(t.k == k);
                REQUIRE(t.ci == k % cin);
                REQUIRE(t.kx == k / cin % 7);
                REQUIRE(t.ky == k / cin / 7);
                ig::advance(t, step, p);
            }
        }
    }
}

TEST_CASE("nhwc conv kernel: every conv of Inception v3, 16-byte loads where allowed") {
    const std::vector<conv_case> cases = inception_convs();
    REQUIRE(cases.size() == 94);
    check_all_storages(cases, path::vector);
    // The stem's 3 channels take the element path for A, every other conv the vector path.
    std::vector<float> x(64), w(64);
    const auto paths = [&](const conv_case& c) {
        const nh::conv_forward<nh::f32> f{w.data(), nullptr, false, c.g,
                                          nh::view<const float>{x.data() + c.x.c0, c.x.sample(), c.x.channels, c.x.c, c.x.h, c.x.w},
                                          nh::view<float>{nullptr, c.y.sample(), c.y.channels, c.y.c, c.y.h, c.y.w}};
        const ig::problem<float> p = ig::make_problem(f, 1);
        return std::pair{p.a_vec, p.b_vec};
    };
    CHECK(paths(cases.front()) == std::pair{false, true});
    for (std::size_t i = 1; i < cases.size(); ++i) CHECK(paths(cases[i]) == std::pair{true, true});
}

TEST_CASE("nhwc conv kernel: every conv of Inception v3, element loads") {
    check_all_storages(inception_convs(), path::element);
}

TEST_CASE("nhwc conv kernel: slices, partial tiles, odd shapes") {
    const auto g = [](int kh, int kw, int sh, int sw, int pt, int pb, int pl, int pr) {
        return cuda::geometry{kh, kw, sh, sw, pt, pb, pl, pr};
    };
    const std::vector<conv_case> cases{
        // Input and output channel slices with c0 > 0 inside wider buffers (16-byte aligned).
        {"3x3 pad 1, x channels [32, 96) of 128, y [64, 136) of 200", g(3, 3, 1, 1, 1, 1, 1, 1), slice(64, 6, 7, 128, 32),
         slice(72, 6, 7, 200, 64), 2},
        // Partial last tiles: rows 2 * 9 * 9 = 162 (128 + 34), columns 72 (64 + 8), depth 3 * 3 * 40 = 360 (not a
        // multiple of 16 or 32), stride 2 with asymmetric padding.
        {"partial tiles in rows, columns and depth", g(3, 3, 2, 2, 1, 2, 0, 1), slice(40, 17, 18, 40, 0), slice(72, 9, 9, 72, 0), 2},
        // Nothing aligned: the element path by the predicates (c0 3, 13 channels, cin 5, cout 7).
        {"c0 3 of 13 channels, cin 5, cout 7 at c0 1 of 9", g(1, 7, 1, 1, 0, 0, 3, 3), slice(5, 5, 6, 13, 3), slice(7, 5, 6, 9, 1), 3},
        // cin a multiple of 4 but not of 8: 16-byte loads of A for floats only.
        {"cin 12, 5x5 pad 2", g(5, 5, 1, 1, 2, 2, 2, 2), slice(12, 7, 7, 12, 0), slice(16, 7, 7, 16, 0), 1},
        // Larger than a block in every direction, 1x1 stride 2 (no padding).
        {"1x1 stride 2, 2 x 3 blocks", g(1, 1, 2, 2, 0, 0, 0, 0), slice(48, 23, 23, 48, 0), slice(136, 12, 12, 136, 0), 1},
        // A window larger than the image (every row mostly padding).
        {"7x1 pad 3 on a 2x2 image", g(7, 1, 1, 1, 3, 3, 0, 0), slice(16, 2, 2, 16, 0), slice(8, 2, 2, 8, 0), 3},
    };
    check_all_storages(cases, path::vector);
    check_all_storages(cases, path::element);
}
