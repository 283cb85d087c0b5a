// apps/ctnet/cli_options.hpp — what the ctnet tool's commands share on top of CLI11: value checks
// whose errors name the option and say what is wanted ("--batch: 'x' is not an integer",
// "--lr: must be positive, not '-1'"), and the help layout (each option's default after its
// description).
#pragma once

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

namespace ctnet_tool {

// An integer in [lo, hi], written in decimal; `why` is added to the range message. The value is
// passed on in canonical form (CLI11 itself would read "010" as octal).
inline CLI::Validator whole(long long lo, long long hi = 1'000'000'000, std::string why = {}) {
    return CLI::Validator{[lo, hi, why](std::string& s) -> std::string {
                              long long v = 0;
                              const char* end = s.data() + s.size();
                              const auto [ptr, ec] = std::from_chars(s.data(), end, v);
                              if (s.empty() || ptr != end || ec == std::errc::invalid_argument)
                                  return "'" + s + "' is not an integer";
                              if (ec == std::errc::result_out_of_range || v > hi)
                                  return "must be at most " + std::to_string(hi) + why + ", not " + s;
                              if (v < lo) return "must be at least " + std::to_string(lo) + why + ", not " + s;
                              s = std::to_string(v);
                              return {};
                          },
                          ""};
}

// A finite number above lo (or at least lo when !lo_open) and below hi (or at most hi when
// !hi_open); `why` is added to the range message.
inline CLI::Validator real(double lo, bool lo_open, double hi = std::numeric_limits<double>::infinity(),
                           bool hi_open = true, std::string why = {}) {
    const auto num = [](double v) {
        char buf[32];
        return std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
    };
    std::string want;
    if (std::isinf(hi))
        want = lo == 0.0 ? (lo_open ? "must be positive" : "must not be negative")
                         : (lo_open ? "must be greater than " : "must be at least ") + num(lo);
    else
        want = "must be in " + std::string(lo_open ? "(" : "[") + num(lo) + ", " + num(hi) + (hi_open ? ")" : "]");
    want += why;
    return CLI::Validator{[=](std::string& s) -> std::string {
                              char* end = nullptr;
                              const double v = std::strtod(s.c_str(), &end);
                              if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v))
                                  return "expects a number, got '" + s + "'";
                              if ((lo_open ? v <= lo : v < lo) || (hi_open ? v >= hi : v > hi))
                                  return want + ", not " + s;
                              return {};
                          },
                          ""};
}

// One of the listed words; the help shows them as the option's value ("cpu|reference").
inline CLI::Option* one_of(CLI::Option* opt, const std::vector<std::string>& words) {
    std::string shown;
    for (const std::string& w : words) shown += (shown.empty() ? "" : "|") + w;
    return opt->check(CLI::IsMember(words).description(""))->type_name(shown);
}

// Each option's value name, then its description and default: "--batch N   images per step (default 1)".
class help_layout : public CLI::Formatter {
  public:
    help_layout() { column_width(32); }
    std::string make_option_opts(const CLI::Option* opt) const override {
        if (opt->get_type_size() == 0) return {};
        std::string s = " " + opt->get_type_name();
        if (opt->get_expected_max() == CLI::detail::expected_max_vector_size) s += " ...";
        return s;
    }
    std::string make_option_desc(const CLI::Option* opt) const override {
        std::string d = opt->get_description();
        if (opt->get_required()) d += " (required)";
        else if (opt->get_type_size() != 0 && !opt->get_default_str().empty())
            d += " (default " + opt->get_default_str() + ")";
        return d;
    }
};

// The app's settings: defaults captured for the help; an option given twice takes the last value.
inline void configure(CLI::App& app) {
    app.formatter(std::make_shared<help_layout>());
    app.option_defaults()->always_capture_default()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

// A usage error found after parsing (options that do not go together): exit status 2, like
// CLI11's own errors.
inline CLI::ValidationError usage_error(const std::string& option, const std::string& message) {
    return CLI::ValidationError{option, message};
}

}  // namespace ctnet_tool
