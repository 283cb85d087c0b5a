// ctnet/cpu/gemm_lowp.hpp — backend::cpu's reduced-precision convolutions: bf16 (VDPBF16PS,
// fp32 accumulation) and int8 (VPDPBUSD, u8 activations x s8 weights, int32 accumulation), as
// packed GEMMs on the blocking of cpu/conv_packed.hpp (docs/precision.md).
//
//   cpu::lowp_conv cv = cpu::pack_lowp(precision::bf16, folded_w, geometry);          // load time
//   cpu::lowp_conv cv = cpu::pack_lowp(precision::int8, folded_w, geometry, in_quant);
//   cpu::lowp_gemm(cv, x, y, scratch);   // one sample, fp32 in, fp32 out
//
// Weights are converted once: bf16 rounds the folded fp32 weights to nearest even
// (cpu/bf16.hpp); int8 quantises each output channel symmetrically (cpu/quantize.hpp).
// Activations stay fp32 in the arena and are converted when a task packs its block of the
// virtual im2col matrix: the fp32 packer (cpu/conv_packed.hpp) fills 64 rows at a time in L1
// (a 1x1 conv's rows are read straight from the input planes instead), then pairs of rows
// become interleaved bf16 (VCVTNE2PS2BF16 + VPERMW), or quads of rows become u8 with the
// tensor's scale and zero point (VCVTPS2DQ, saturating packs, VPSHUFB).
// The micro-kernels keep the fp32 kernel's 6 x 32 register tile: per step a bf16 kernel adds two
// k (VDPBF16PS), an int8 kernel four (VPDPBUSD). The epilogue of the last K block adds the bias
// and applies ReLU; int8's first converts: y = float(acc - zero * sum_k wq[m][k]) * (s_x s_w[m])
// + bias[m] (one fused multiply-add), so the output is fp32 again and a concat's slices need
// nothing (the tensor's consumers quantise it with its one scale). Between K blocks an int8 tile
// keeps its int32 partial sums in the output's memory (the same 4 bytes per element).
// Requires: a build with -mavx512bf16 / -mavx512vnni (e.g. -march=native on Zen 4, Sapphire
// Rapids) and a CPU that has them: require_precision() checks both and names what is missing.
// Guarantees: int8 results are exactly the scalar formula above on the quantised operands
// (int32 sums are exact); bf16 results are the fp32 sums of exact products of the rounded
// operands (tested within float rounding); any split of rows and columns over tasks gives the
// same bits.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <cpuid.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../core/error.hpp"
#include "bf16.hpp"
#include "conv_packed.hpp"
#include "quantize.hpp"

namespace ctnet {

// What backend::cpu computes its convolutions in (runner<Net, backend::cpu>::options::precision).
enum class precision { fp32, bf16, int8 };

[[nodiscard]] constexpr std::string_view to_string(precision p) {
    return p == precision::fp32 ? "fp32" : p == precision::bf16 ? "bf16" : "int8";
}

}  // namespace ctnet

namespace ctnet::cpu {

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
inline constexpr bool built_with_bf16 = true;
#else
inline constexpr bool built_with_bf16 = false;
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
inline constexpr bool built_with_vnni = true;
#else
inline constexpr bool built_with_vnni = false;
#endif

struct cpu_features {
    bool avx512bf16 = false, avx512vnni = false;
};

// CPUID leaf 7: sub-leaf 0 ECX bit 11 is AVX512_VNNI, sub-leaf 1 EAX bit 5 is AVX512_BF16.
[[nodiscard]] inline cpu_features detect_cpu_features() {
    cpu_features f;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return f;
    f.avx512vnni = (c >> 11 & 1U) != 0;
    const unsigned subleaves = a;
    if (subleaves >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) != 0) f.avx512bf16 = (a >> 5 & 1U) != 0;
    return f;
}

// Empty when precision p can run with this build and CPU, else what is missing.
[[nodiscard]] inline std::string missing_for(precision p, bool built, cpu_features cpu) {
    if (p == precision::fp32) return {};
    const bool bf16 = p == precision::bf16;
    const char* ext = bf16 ? "AVX512_BF16" : "AVX512_VNNI";
    const char* flag = bf16 ? "-mavx512bf16" : "-mavx512vnni";
    if (!built)
        return "ctnet: precision " + std::string{to_string(p)} + " needs " + ext +
               ", which this program was not compiled for (compile with " + flag +
               " or -march=native on a CPU that has it)";
    if (bf16 ? !cpu.avx512bf16 : !cpu.avx512vnni)
        return "ctnet: precision " + std::string{to_string(p)} + " needs " + ext +
               ", which this CPU does not have (cpuid); use precision::fp32";
    return {};
}

// Throws ctnet::error naming what is missing when precision p cannot run here.
inline void require_precision(precision p) {
    const std::string m =
        missing_for(p, p == precision::bf16 ? built_with_bf16 : built_with_vnni, detect_cpu_features());
    if (!m.empty()) throw error(m);
}

inline constexpr int lowp_kc_bf16 = 512;   // K block depth: 64 KB of packed B per block, as fp32's 256
inline constexpr int lowp_kc_int8 = 1024;
inline constexpr int lowp_sub = 64;         // rows the fp32 packer fills at a time before converting
inline constexpr std::size_t lowp_block_bytes = static_cast<std::size_t>(lowp_kc_int8) * gemm_nc;
static_assert(lowp_block_bytes == static_cast<std::size_t>(lowp_kc_bf16) * gemm_nc * 2);
// Per task: gemm_units packed blocks, the fp32 packer's rows, an edge tile, alignment.
inline constexpr std::size_t lowp_scratch_floats =
    (gemm_units * lowp_block_bytes) / 4 + static_cast<std::size_t>(lowp_sub) * gemm_nc +
    static_cast<std::size_t>(gemm_mr) * gemm_nr + 64;

// One conv's weights in bf16 or int8, packed for the micro-kernels.
struct lowp_conv {
    precision prec = precision::bf16;
    int kc = lowp_kc_bf16, group = 2;  // K block depth; k per micro-kernel step (2 bf16, 4 int8)
    packed_conv g;                     // the geometry (m, k, win, in, out), the bias and ReLU; g.a is empty
    std::vector<std::uint16_t> a16;    // bf16: [K block][ceil(M / MR)][kcp / 2][MR][2]
    std::vector<std::int8_t> a8;       // int8: [K block][ceil(M / MR)][kcp / 4][MR][4]
    act_quant in{};                    // int8: the input tensor's scale and zero point
    std::vector<float> row_scale;      // int8: s_x * s_w[m]
    std::vector<std::int32_t> row_off; // int8: zero * sum_k wq[m][k]

    [[nodiscard]] int padded(int depth) const { return (depth + group - 1) / group * group; }
    // First element of row panel p in the K block starting at k0 (blocks before it are full).
    [[nodiscard]] std::size_t panel_offset(int k0, int p) const {
        const auto panels = static_cast<std::size_t>((g.m + gemm_mr - 1) / gemm_mr);
        const int kcp = padded(std::min(kc, g.k - k0));
        return (static_cast<std::size_t>(k0) * panels + static_cast<std::size_t>(p) * kcp) * gemm_mr;
    }
    [[nodiscard]] std::size_t packed_size() const {
        const auto panels = static_cast<std::size_t>((g.m + gemm_mr - 1) / gemm_mr);
        const int last = (g.k - 1) / kc * kc;
        return (static_cast<std::size_t>(last) * panels + panels * padded(g.k - last)) * gemm_mr;
    }
    // Calls f(index, row, kk) for every packed element that holds a weight.
    template <class F>
    void for_each_packed(F&& f) const {
        const int panels = (g.m + gemm_mr - 1) / gemm_mr;
        for (int k0 = 0; k0 < g.k; k0 += kc) {
            const int depth = std::min(kc, g.k - k0);
            for (int p = 0; p < panels; ++p)
                for (int kk = 0; kk < depth; ++kk)
                    for (int r = 0; r < gemm_mr; ++r) {
                        const int row = p * gemm_mr + r;
                        if (row >= g.m) continue;
                        f(panel_offset(k0, p) + static_cast<std::size_t>(kk / group) * gemm_mr * group +
                              static_cast<std::size_t>(r) * group + static_cast<std::size_t>(kk % group),
                          row, k0 + kk);
                    }
        }
    }
};

// geometry: m, k, win, in, out, bias and relu set (its `a` is not read). w: (M, K) row-major fp32,
// batch norm folded. in: int8's input quantisation (ignored for bf16).
[[nodiscard]] inline lowp_conv pack_lowp(precision p, const float* w, packed_conv geometry, act_quant in = {}) {
    lowp_conv cv;
    cv.prec = p;
    cv.g = std::move(geometry);
    cv.g.a.clear();
    const int k = cv.g.k;
    if (p == precision::bf16) {
        cv.kc = lowp_kc_bf16;
        cv.group = 2;
        cv.a16.assign(cv.packed_size(), 0);
        cv.for_each_packed([&](std::size_t i, int row, int kk) { cv.a16[i] = to_bf16(w[static_cast<std::size_t>(row) * k + kk]); });
        return cv;
    }
    cv.kc = lowp_kc_int8;
    cv.group = 4;
    cv.in = in;
    const weight_quant q = quantize_weights(w, cv.g.m, k);
    cv.a8.assign(cv.packed_size(), 0);
    cv.for_each_packed([&](std::size_t i, int row, int kk) { cv.a8[i] = q.q[static_cast<std::size_t>(row) * k + kk]; });
    cv.row_scale.resize(static_cast<std::size_t>(cv.g.m));
    cv.row_off.resize(static_cast<std::size_t>(cv.g.m));
    for (int m = 0; m < cv.g.m; ++m) {
        cv.row_scale[m] = in.scale * q.scale[m];
        cv.row_off[m] = in.zero * q.sum[m];
    }
    return cv;
}

namespace detail {

#if defined(__AVX512F__) && defined(__AVX512BW__)
// All 16 lanes: the maskz forms of conversions and min / max, because g++ 12 warns falsely
// (-Wmaybe-uninitialized) inside the unmasked ones, which start from _mm512_undefined_ps.
inline constexpr __mmask16 all16 = 0xFFFF;
inline __m512 lowp_relu(__m512 v) {  // zero where <= 0; a NaN stays NaN
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LE_OQ), _mm512_setzero_ps());
}
inline std::int32_t load_i32(const void* p) {
    std::int32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
// Lanes [0, valid) of the two 16-float vectors of a row, as load masks.
inline void row_masks(int valid, __mmask16& m0, __mmask16& m1) {
    m0 = valid >= 16 ? all16 : static_cast<__mmask16>((1U << valid) - 1U);
    m1 = valid >= 32 ? all16 : valid <= 16 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1U << (valid - 16)) - 1U);
}

#endif

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
// c (MR x NR, or MR x 16 with V = 1) = (first ? 0 : c) + a (kp pairs x MR x 2) * b (kp pairs x NR x 2);
// the last block adds bias and applies ReLU.
template <int V>
inline void micro_kernel_bf16(int kp, const std::uint16_t* a, const std::uint16_t* b, float* c, std::size_t ldc,
                              bool first, bool last, const float* bias, bool relu) {
    __m512 acc[gemm_mr][V];
    for (std::size_t i = 0; i < gemm_mr; ++i)
        for (std::size_t v = 0; v < V; ++v) acc[i][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + i * ldc + v * 16);
    for (int k = 0; k < kp; ++k) {
        __m512bh bv[V];
        for (std::size_t v = 0; v < V; ++v)
            bv[v] = (__m512bh)_mm512_load_si512(b + static_cast<std::size_t>(k) * gemm_nr * 2 + v * 32);
        const std::uint16_t* ak = a + static_cast<std::size_t>(k) * gemm_mr * 2;
        __builtin_prefetch(ak + static_cast<std::size_t>(128) * gemm_mr * 2);
#pragma GCC unroll 6
        for (int i = 0; i < gemm_mr; ++i) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32(load_i32(ak + static_cast<std::ptrdiff_t>(2) * i));
            for (std::size_t v = 0; v < V; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
        }
    }
    for (std::size_t i = 0; i < gemm_mr; ++i)
        for (std::size_t v = 0; v < V; ++v) {
            if (last) {
                acc[i][v] = _mm512_add_ps(acc[i][v], _mm512_set1_ps(bias[i]));
                if (relu) acc[i][v] = lowp_relu(acc[i][v]);
            }
            _mm512_storeu_ps(c + i * ldc + v * 16, acc[i][v]);
        }
}

// `rows` rows of NR floats (row r at src + r * ld, columns past `valid` read as 0) as bf16 pairs
// into dst (NR x 2 per pair, 64-byte aligned); a missing second row of a pair is zero.
inline void convert_rows_bf16(const float* src, std::size_t ld, int valid, int rows, std::uint16_t* dst) {
    alignas(64) static constexpr std::uint16_t order[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                            8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i idx = _mm512_load_si512(order);
    __mmask16 mask[2];
    row_masks(valid, mask[0], mask[1]);
    for (int kk = 0; kk < rows; kk += 2) {
        const float* r0 = src + static_cast<std::size_t>(kk) * ld;
        for (int v = 0; v < 2; ++v) {
            const __m512 lo = _mm512_maskz_loadu_ps(mask[v], r0 + static_cast<std::ptrdiff_t>(v) * 16);
            const __m512 hi = kk + 1 < rows ? _mm512_maskz_loadu_ps(mask[v], r0 + ld + static_cast<std::ptrdiff_t>(v) * 16) : _mm512_setzero_ps();
            const __m512i t = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);  // [lo's 16 | hi's 16]
            _mm512_store_si512(dst + static_cast<std::size_t>(kk) * gemm_nr + static_cast<std::size_t>(v) * 32, _mm512_permutexvar_epi16(idx, t));
        }
    }
}
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
template <int V>
inline void micro_kernel_int8(int kq, const std::int8_t* a, const std::uint8_t* b, float* c, std::size_t ldc,
                              bool first, bool last, const float* bias, const float* scale, const std::int32_t* off,
                              bool relu) {
    __m512i acc[gemm_mr][V];
    for (std::size_t i = 0; i < gemm_mr; ++i)
        for (std::size_t v = 0; v < V; ++v)
            acc[i][v] = first ? _mm512_setzero_si512() : _mm512_loadu_si512(c + i * ldc + v * 16);  // int32 partial sums
    for (int k = 0; k < kq; ++k) {
        __m512i bv[V];
        for (std::size_t v = 0; v < V; ++v) bv[v] = _mm512_load_si512(b + static_cast<std::size_t>(k) * gemm_nr * 4 + v * 64);
        const std::int8_t* ak = a + static_cast<std::size_t>(k) * gemm_mr * 4;
        __builtin_prefetch(ak + static_cast<std::size_t>(128) * gemm_mr * 4);
#pragma GCC unroll 6
        for (int i = 0; i < gemm_mr; ++i) {
            const __m512i ai = _mm512_set1_epi32(load_i32(ak + static_cast<std::ptrdiff_t>(4) * i));
            for (std::size_t v = 0; v < V; ++v) acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], bv[v], ai);
        }
    }
    for (std::size_t i = 0; i < gemm_mr; ++i)
        for (std::size_t v = 0; v < V; ++v) {
            if (!last) {
                _mm512_storeu_si512(c + i * ldc + v * 16, acc[i][v]);
                continue;
            }
            __m512 y = _mm512_maskz_cvtepi32_ps(all16, _mm512_sub_epi32(acc[i][v], _mm512_set1_epi32(off[i])));
            y = _mm512_fmadd_ps(y, _mm512_set1_ps(scale[i]), _mm512_set1_ps(bias[i]));
            if (relu) y = lowp_relu(y);
            _mm512_storeu_ps(c + i * ldc + v * 16, y);
        }
}

// `rows` rows of NR floats (row r at src + r * ld, columns past `valid` read as 0) as u8 quads
// with q's scale and zero point into dst (NR x 4 per quad, 64-byte aligned); rows past `rows`
// are 0.0 (quantised to the zero point; their weights are 0).
inline void convert_rows_u8(const float* src, std::size_t ld, int valid, int rows, const act_quant& q, std::uint8_t* dst) {
    // Within each 128-bit lane the packs leave [row r][column c] at byte 4r + c; VNNI wants 4c + r.
    alignas(64) static constexpr std::uint8_t order[64] = {
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
    const __m512i shuffle = _mm512_load_si512(order);
    const __m512 inv = _mm512_set1_ps(q.inv), hi = _mm512_set1_ps(quant_clip), lo = _mm512_set1_ps(-quant_clip);
    const __m512i zero = _mm512_set1_epi32(q.zero);
    __mmask16 mask[2];
    row_masks(valid, mask[0], mask[1]);
    const auto quant = [&](const float* p, int r, int left, int v) {
        if (r >= left) return zero;
        __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask[v], p + static_cast<std::size_t>(r) * ld + static_cast<std::size_t>(v) * 16), inv);
        t = _mm512_maskz_max_ps(all16, _mm512_maskz_min_ps(all16, t, hi), lo);  // NaN -> lo, as act_quant::quantize
        return _mm512_add_epi32(_mm512_maskz_cvtps_epi32(all16, t), zero);
    };
    for (int kk = 0; kk < rows; kk += 4) {
        const float* r0 = src + static_cast<std::size_t>(kk) * ld;
        const int left = rows - kk;
        for (int v = 0; v < 2; ++v) {
            const __m512i q0 = quant(r0, 0, left, v), q1 = quant(r0, 1, left, v), q2 = quant(r0, 2, left, v),
                          q3 = quant(r0, 3, left, v);
            const __m512i b = _mm512_packus_epi16(_mm512_packs_epi32(q0, q1), _mm512_packs_epi32(q2, q3));
            _mm512_store_si512(dst + static_cast<std::size_t>(kk) * gemm_nr + static_cast<std::size_t>(v) * 64, _mm512_shuffle_epi8(b, shuffle));
        }
    }
}
#endif

// Packs rows [k0, k0 + depth) and columns [j0, j0 + cols) of the virtual im2col matrix into dst
// as ceil(cols / NR) panels of padded(depth) x NR elements in the micro-kernel's order, lowp_sub
// rows at a time through tmp (lowp_sub x NC floats, 64-byte aligned).
template <precision P>
inline void pack_block_lowp(const lowp_conv& cv, const float* x, int k0, int depth, int j0, int cols, [[maybe_unused]] void* dst,
                            float* tmp) {
    const int panels = (cols + gemm_nr - 1) / gemm_nr, kcp = cv.padded(depth);
    const window& w = cv.g.win;
    if (w.kh == 1 && w.kw == 1 && w.sh == 1 && w.sw == 1 && w.pt == 0 && w.pb == 0 && w.pl == 0 && w.pr == 0) {
        // 1x1: the im2col rows are the channel planes themselves, converted straight from x.
        const std::size_t plane = static_cast<std::size_t>(cv.g.in.h) * cv.g.in.w;
        for (int p = 0; p < panels; ++p) {
            const float* src = x + static_cast<std::size_t>(k0) * plane + j0 + static_cast<std::size_t>(p) * gemm_nr;
            const int valid = std::min(gemm_nr, cols - p * gemm_nr);
            const std::size_t at = static_cast<std::size_t>(p) * kcp * gemm_nr;
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
            if constexpr (P == precision::bf16) convert_rows_bf16(src, plane, valid, depth, static_cast<std::uint16_t*>(dst) + at);
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
            if constexpr (P == precision::int8) convert_rows_u8(src, plane, valid, depth, cv.in, static_cast<std::uint8_t*>(dst) + at);
#endif
            static_cast<void>(src);
            static_cast<void>(valid);
            static_cast<void>(at);
        }
        return;
    }
    for (int s = 0; s < depth; s += lowp_sub) {
        const int sub = std::min(lowp_sub, depth - s);
        pack_block(cv.g, x, k0 + s, sub, j0, cols, tmp);  // [panel][sub][NR] floats
        for (int p = 0; p < panels; ++p) {
            const float* src = tmp + static_cast<std::size_t>(p) * sub * gemm_nr;
            const std::size_t at = (static_cast<std::size_t>(p) * kcp + s) * gemm_nr;
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
            if constexpr (P == precision::bf16) convert_rows_bf16(src, gemm_nr, gemm_nr, sub, static_cast<std::uint16_t*>(dst) + at);
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
            if constexpr (P == precision::int8) convert_rows_u8(src, gemm_nr, gemm_nr, sub, cv.in, static_cast<std::uint8_t*>(dst) + at);
#endif
            static_cast<void>(src);
            static_cast<void>(at);
        }
    }
}

}  // namespace detail

// Rows [row0, row1) (multiples of MR, or M) of `count` <= gemm_units column blocks, as
// conv_gemm_units (cpu/conv_packed.hpp) does for fp32. scratch: lowp_scratch_floats floats.
template <precision P>
inline void lowp_units(const lowp_conv& cv, const conv_unit* units, int count, int row0, int row1, float* scratch) {
    static_assert(P != precision::fp32);
    const std::size_t ldy = static_cast<std::size_t>(cv.g.out.h) * cv.g.out.w;
    auto* blocks = reinterpret_cast<unsigned char*>(detail::align64(scratch));
    float* tmp = reinterpret_cast<float*>(blocks + gemm_units * lowp_block_bytes);
    float* tile = tmp + static_cast<std::size_t>(lowp_sub) * gemm_nc;
    constexpr std::size_t esize = P == precision::bf16 ? 2 : 1;
    constexpr std::size_t tile_bytes = sizeof(float) * gemm_nr;
    for (int k0 = 0; k0 < cv.g.k; k0 += cv.kc) {
        const int depth = std::min(cv.kc, cv.g.k - k0), kcp = cv.padded(depth);
        [[maybe_unused]] const bool first = k0 == 0, last = k0 + depth == cv.g.k;
        for (int u = 0; u < count; ++u)
            detail::pack_block_lowp<P>(cv, units[u].x, k0, depth, units[u].j0, units[u].cols,
                                       blocks + static_cast<std::size_t>(u) * lowp_block_bytes, tmp);
        for (int u = 0; u < count; ++u) {
            const conv_unit& unit = units[u];
            const int col_panels = (unit.cols + gemm_nr - 1) / gemm_nr;
            for (int cp = 0; cp < col_panels; ++cp) {
                const unsigned char* bp = blocks + static_cast<std::size_t>(u) * lowp_block_bytes +
                                          static_cast<std::size_t>(cp) * kcp * gemm_nr * esize;
                const int jc = cp * gemm_nr, n = std::min(gemm_nr, unit.cols - jc);
                for (int row = row0; row < row1; row += gemm_mr) {
                    const int rows = std::min(gemm_mr, row1 - row);
                    float bias[gemm_mr]{}, scale[gemm_mr]{};
                    std::int32_t off[gemm_mr]{};
                    std::copy(cv.g.bias.begin() + row, cv.g.bias.begin() + row + rows, bias);
                    if constexpr (P == precision::int8) {
                        std::copy(cv.row_scale.begin() + row, cv.row_scale.begin() + row + rows, scale);
                        std::copy(cv.row_off.begin() + row, cv.row_off.begin() + row + rows, off);
                    }
                    float* c = unit.y + static_cast<std::size_t>(row) * ldy + unit.j0 + jc;
                    const bool full = rows == gemm_mr && n == gemm_nr;
                    [[maybe_unused]] float* t = full ? c : tile;
                    const std::size_t ldt = full ? ldy : static_cast<std::size_t>(gemm_nr);
                    if (!full)  // edge: a full tile's worth in scratch, the valid part copied in and out (bits: int32 partial sums)
                        for (std::size_t i = 0; i < static_cast<std::size_t>(rows); ++i)
                            std::memcpy(tile + i * ldt, c + i * ldy, tile_bytes / gemm_nr * n);
                    const bool one = n <= 16;
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
                    if constexpr (P == precision::bf16) {
                        const auto* a = cv.a16.data() + cv.panel_offset(k0, row / gemm_mr);
                        const auto* b = reinterpret_cast<const std::uint16_t*>(bp);
                        if (one) detail::micro_kernel_bf16<1>(kcp / 2, a, b, t, ldt, first, last, bias, cv.g.relu);
                        else detail::micro_kernel_bf16<2>(kcp / 2, a, b, t, ldt, first, last, bias, cv.g.relu);
                    }
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
                    if constexpr (P == precision::int8) {
                        const auto* a = cv.a8.data() + cv.panel_offset(k0, row / gemm_mr);
                        if (one) detail::micro_kernel_int8<1>(kcp / 4, a, bp, t, ldt, first, last, bias, scale, off, cv.g.relu);
                        else detail::micro_kernel_int8<2>(kcp / 4, a, bp, t, ldt, first, last, bias, scale, off, cv.g.relu);
                    }
#endif
                    static_cast<void>(one);
                    static_cast<void>(bp);
                    if (!full)
                        for (std::size_t i = 0; i < static_cast<std::size_t>(rows); ++i)
                            std::memcpy(c + i * ldy, tile + i * ldt, tile_bytes / gemm_nr * n);
                }
            }
        }
    }
}

inline void lowp_units(const lowp_conv& cv, const conv_unit* units, int count, int row0, int row1, float* scratch) {
    if (cv.prec == precision::bf16) lowp_units<precision::bf16>(cv, units, count, row0, row1, scratch);
    else lowp_units<precision::int8>(cv, units, count, row0, row1, scratch);
}

// The whole output of one sample (tests, single-threaded use); rows [row0, row1) when given.
inline void lowp_gemm(const lowp_conv& cv, const float* x, float* y, float* scratch, int row0 = 0, int row1 = -1) {
    const int n = cv.g.out.h * cv.g.out.w;
    for (int j0 = 0; j0 < n; j0 += gemm_nc) {
        const conv_unit unit{x, y, j0, std::min(gemm_nc, n - j0)};
        lowp_units(cv, &unit, 1, row0, row1 < 0 ? cv.g.m : row1, scratch);
    }
}

}  // namespace ctnet::cpu
