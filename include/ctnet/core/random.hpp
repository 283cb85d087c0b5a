// ctnet/core/random.hpp — a small seeded generator with the same stream on every platform.
//
// std::normal_distribution differs between standard libraries; seeded weights and dropout
// masks must not, so this is SplitMix64 with a Box–Muller transform.
// Requires: nothing. Guarantees: the same seed gives the same stream on every platform.

#pragma once

#include <cmath>
#include <cstdint>

namespace ctnet {

class rng {
public:
    explicit rng(std::uint64_t seed) : state_{seed} {}

    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    // The whole state: rng{g.state()} continues exactly where g is (checkpoints save it).
    [[nodiscard]] std::uint64_t state() const { return state_; }
    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    // Standard normal.
    double normal() {
        const double u1 = 1.0 - uniform();  // (0, 1]
        const double u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }

private:
    std::uint64_t state_;
};

}  // namespace ctnet
