// ctnet/core/text.hpp — fixed-capacity text built during constant evaluation.
//
// Used for layer paths ("Mixed_5b.branch1x1.conv") and for compile-time diagnostics, which
// g++ prints verbatim when a network fails to type-check. Structural, so it can be part of a
// template argument.
// Requires: nothing. Guarantees: appending past the capacity truncates, never overflows.

#pragma once

#include <cstddef>
#include <string_view>

#include "shape.hpp"

namespace ctnet {

template <std::size_t Cap>
struct text {
    char s[Cap]{};
    int len = 0;

    constexpr text& operator+=(std::string_view v) {
        for (char ch : v) {
            if (len + 1 >= static_cast<int>(Cap)) break;  // truncate, never overflow
            s[len++] = ch;
        }
        return *this;
    }
    constexpr text& operator+=(long long v) {
        if (v < 0) { *this += "-"; v = -v; }
        char digits[24]{};
        int n = 0;
        do { digits[n++] = static_cast<char>('0' + v % 10); v /= 10; } while (v != 0);
        while (n > 0) { char d[1] = {digits[--n]}; *this += std::string_view{d, 1}; }
        return *this;
    }
    constexpr text& operator+=(int v) { return *this += static_cast<long long>(v); }
    constexpr text& operator+=(shape v) {
        *this += "(";
        *this += v.c;
        if (v.flat()) return *this += ",)";
        *this += ",";
        *this += v.h;
        *this += ",";
        *this += v.w;
        return *this += ")";
    }
    [[nodiscard]] constexpr std::string_view view() const { return {s, static_cast<std::size_t>(len)}; }
    constexpr bool operator==(const text&) const = default;
};

using name_text = text<64>;   // a layer path; torchvision's longest is 29 characters
using diag_text = text<240>;  // one compile-time diagnostic

}  // namespace ctnet
