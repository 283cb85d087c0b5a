// ctnet/cpu/quantize.hpp — int8 quantisation for backend::cpu's int8 inference
// (cpu/gemm_lowp.hpp, docs/precision.md).
//
//   cpu::act_quant q = cpu::act_quant::of_range(lo, hi);   // activations: u8 with a zero point
//   std::uint8_t v = q.quantize(x);
//   cpu::weight_quant w = cpu::quantize_weights(folded_w, rows, depth);   // s8 per output channel
//
// Activations (per tensor, asymmetric): x ~ scale * (q - zero), q in [0, 255]. The range is
// widened to hold 0, so 0 (the convs' zero padding) is exactly `zero`; a range of ReLU outputs
// ([0, hi]) gets zero = 0 and all 256 levels.
//   q = clamp(nearbyint(clamp(x * inv, -2^20, 2^20)) + zero, 0, 255),  inv = 1 / scale (a float)
// with the default rounding (to nearest, ties to even), exactly as the SIMD packer does it; a
// NaN becomes 0 (the SIMD max's rule), so it never turns into undefined behaviour.
// Weights (per output channel, symmetric): w ~ scale[m] * q, q in [-127, 127],
// scale[m] = max_k |w[m][k]| / 127 (1 for an all-zero row), q = nearbyint(w / scale[m]).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ctnet::cpu {

inline constexpr float quant_clip = 1048576.0F;  // |x * inv| is clipped here before rounding

struct act_quant {
    float scale = 1.0F, inv = 1.0F;
    int zero = 0;

    // The u8 parameters of a tensor whose values were seen in [lo, hi].
    [[nodiscard]] static act_quant of_range(float lo, float hi) {
        lo = std::min(lo, 0.0F);
        hi = std::max(hi, 0.0F);
        act_quant q;
        if (!(hi - lo > 0.0F) || !std::isfinite(hi - lo)) return q;  // all zeros (or unusable): scale 1
        q.scale = (hi - lo) / 255.0F;
        q.inv = 1.0F / q.scale;
        q.zero = static_cast<int>(std::clamp(std::nearbyint(-lo / q.scale), 0.0F, 255.0F));
        return q;
    }

    [[nodiscard]] std::uint8_t quantize(float x) const {
        float t = x * inv;
        t = t > quant_clip ? quant_clip : t;
        t = t >= -quant_clip ? t : -quant_clip;  // NaN -> -clip, as _mm512_max_ps(t, -clip)
        const int q = static_cast<int>(std::nearbyint(t)) + zero;
        return static_cast<std::uint8_t>(std::clamp(q, 0, 255));
    }
    [[nodiscard]] float dequantize(std::uint8_t q) const { return scale * static_cast<float>(static_cast<int>(q) - zero); }
};

struct weight_quant {
    std::vector<std::int8_t> q;   // rows x depth, row-major
    std::vector<float> scale;     // rows
    std::vector<std::int32_t> sum;  // rows: sum_k q[m][k], for the zero point's correction
};

// w: rows x depth row-major floats.
[[nodiscard]] inline weight_quant quantize_weights(const float* w, int rows, int depth) {
    weight_quant r;
    r.q.resize(static_cast<std::size_t>(rows) * depth);
    r.scale.assign(static_cast<std::size_t>(rows), 1.0F);
    r.sum.assign(static_cast<std::size_t>(rows), 0);
    for (int m = 0; m < rows; ++m) {
        const float* wm = w + static_cast<std::size_t>(m) * depth;
        float amax = 0.0F;
        for (int k = 0; k < depth; ++k) amax = std::max(amax, std::fabs(wm[k]));
        if (amax > 0.0F && std::isfinite(amax)) r.scale[m] = amax / 127.0F;
        std::int32_t s = 0;
        for (int k = 0; k < depth; ++k) {
            const float v = std::clamp(std::nearbyint(wm[k] / r.scale[m]), -127.0F, 127.0F);
            const auto q = static_cast<std::int8_t>(std::isnan(v) ? 0.0F : v);
            r.q[static_cast<std::size_t>(m) * depth + k] = q;
            s += q;
        }
        r.sum[m] = s;
    }
    return r;
}

// Activation ranges from a calibration pass (cpu/calibrate.hpp): for each conv, by its path
// ("Mixed_5b.branch1x1.conv"), the smallest and largest value of the tensor it reads in
// backend::cpu's plan (for a branch-pool conv, which runs before its average pool, the block's
// input). Convs reading one tensor record the same range, so they quantise it alike.
struct quant_scales {
    struct range {
        std::string conv;
        float lo = 0.0F, hi = 0.0F;
    };
    std::vector<range> ranges;

    [[nodiscard]] const range* find(std::string_view conv) const {
        for (const range& r : ranges)
            if (r.conv == conv) return &r;
        return nullptr;
    }
    void widen(std::string_view conv, float lo, float hi) {
        for (range& r : ranges)
            if (r.conv == conv) {
                r.lo = std::min(r.lo, lo);
                r.hi = std::max(r.hi, hi);
                return;
            }
        ranges.push_back({std::string{conv}, lo, hi});
    }
};

}  // namespace ctnet::cpu
