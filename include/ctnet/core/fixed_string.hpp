// ctnet/core/fixed_string.hpp — a string usable as a template argument.
//
// Requires: a string literal of at most 63 characters (node names, layer paths).
// Guarantees: structural type, so `node<"Mixed_5b", ...>` is a distinct type per name.
#pragma once

#include <cstddef>
#include <string_view>

namespace ctnet {

template <std::size_t N>
struct fixed_string {
    char s[N]{};

    constexpr fixed_string(const char (&str)[N]) {  // NOLINT: implicit by design
        for (std::size_t i = 0; i < N; ++i) s[i] = str[i];
    }
    [[nodiscard]] constexpr std::string_view view() const { return {s, N - 1}; }
    [[nodiscard]] static constexpr std::size_t size() { return N - 1; }
};

}  // namespace ctnet
