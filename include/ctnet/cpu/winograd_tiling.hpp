// ctnet/cpu/winograd_tiling.hpp — which convs run as Winograd, with which output tile: the
// variants cpu/winograd.hpp implements and the choice among them (winograd_tiling_for). Apart
// from the kernels so that a packed conv (cpu/conv_packed.hpp) can name its tiling.
#pragma once

#include "../graph/program.hpp"
#include "gemm_kernel.hpp"

namespace ctnet::cpu {

// The output tile of a conv run as Winograd (cpu/winograd.hpp): h x w; 0 x 0 for the GEMM.
struct winograd_tiling {
    int h = 0, w = 0;
};

// The variants cpu/winograd.hpp implements: a tiling and the window it serves (winograd_tiling_for
// picks among them; benchmarks and tests run every one).
struct winograd_variant {
    winograd_tiling tiling;
    int kh, kw;
};
inline constexpr winograd_variant winograd_variants[] = {
    {{4, 4}, 3, 3}, {{2, 2}, 3, 3}, {{2, 2}, 5, 5}, {{1, 2}, 1, 7}, {{2, 1}, 7, 1},
};

// Output tiles (the last row and column of tiles may reach past the map).
[[nodiscard]] constexpr int winograd_tiles(shape out, winograd_tiling t) {
    return ((out.h + t.h - 1) / t.h) * ((out.w + t.w - 1) / t.w);
}

// The tiling a conv runs with as Winograd, or {} for the GEMM: a 3x3, 5x5, 1x7 or 7x1 window at
// stride 1, at least 16 input channels, and enough tiles per sample to fill panels of NR (below
// that the padded panel wastes what the transform saves). 3x3: 4x4 tiles from 2 panels of them
// (35x35 maps, 81 tiles, where they still beat 2x2), else 2x2 tiles from 4 panels; 5x5: 2x2
// tiles, 1x7: 1x2, 7x1: 2x1, each from 4 panels. The timings behind each threshold: bench/RESULTS.md.
[[nodiscard]] constexpr winograd_tiling winograd_tiling_for(const window& g, shape in, shape out) {
    if (g.sh != 1 || g.sw != 1 || in.c < 16) return {};
    const auto enough = [&](winograd_tiling t, int panels) { return winograd_tiles(out, t) >= panels * gemm_nr; };
    winograd_tiling t{};
    if (g.kh == 3 && g.kw == 3) t = enough({4, 4}, 2) ? winograd_tiling{4, 4} : winograd_tiling{2, 2};
    else if (g.kh == 5 && g.kw == 5) t = {2, 2};
    else if (g.kh == 1 && g.kw == 7) t = {1, 2};
    else if (g.kh == 7 && g.kw == 1) t = {2, 1};
    else return {};
    return enough(t, t.h * t.w == 16 ? 2 : 4) ? t : winograd_tiling{};
}

}  // namespace ctnet::cpu
