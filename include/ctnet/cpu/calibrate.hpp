// ctnet/cpu/calibrate.hpp — activation ranges for backend::cpu's int8 inference, and their file.
//
//   cpu::quant_scales s = cpu::calibrate(w, samples);          // samples: N x input floats
//   cpu::save_quant_scales("model.scales.json", s);             // next to the weights
//   runner<net, backend::cpu> run{w, {.precision = precision::int8, .scales = cpu::load_quant_scales("model.scales.json")}};
//
// calibrate runs the samples through an fp32 runner<Net, backend::cpu> (batches of `batch`) and
// records, for each conv, the smallest and largest finite value of the tensor it reads
// (cpu/quantize.hpp's quant_scales). The int8 runner turns each range into a u8 scale and zero
// point (act_quant::of_range). Use inputs like the ones inference will see: a few hundred
// typical images are enough for min/max ranges; an outlier widens a range and costs resolution.
// The file is JSON: {"format": "ctnet.quant_scales", "version": 1, "ranges": {"CONV": [lo, hi], ...}},
// floats written with 9 significant digits (they read back to the same bits).
// Guarantees: a malformed file is a ctnet::error naming the file and what was wrong.
#pragma once

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <span>
#include <sstream>
#include <string>

#include "../core/error.hpp"
#include "fast_runner.hpp"

namespace ctnet::cpu {

template <class Net>
[[nodiscard]] quant_scales calibrate(const weights<Net>& w, std::span<const float> samples, int batch = 8,
                                     int threads = 1) {
    constexpr std::size_t per = input_shape_v<Net>.size();
    if (samples.empty() || samples.size() % per != 0)
        throw error("ctnet: calibrate: the samples hold " + std::to_string(samples.size()) +
                    " floats, not a positive multiple of the input's " + std::to_string(per));
    runner<Net, backend::cpu> run{w, {.threads = threads}};
    quant_scales s;
    const std::size_t n = samples.size() / per;
    for (std::size_t i = 0; i < n; i += static_cast<std::size_t>(batch)) {
        const std::size_t b = std::min(n - i, static_cast<std::size_t>(batch));
        run.record_ranges(samples.subspan(i * per, b * per), s);
    }
    return s;
}

[[nodiscard]] inline std::string quant_scales_json(const quant_scales& s) {
    std::string out = "{\"format\": \"ctnet.quant_scales\", \"version\": 1, \"ranges\": {";
    char buf[64];
    for (std::size_t i = 0; i < s.ranges.size(); ++i) {
        const quant_scales::range& r = s.ranges[i];
        std::snprintf(buf, sizeof buf, "[%.9g, %.9g]", static_cast<double>(r.lo), static_cast<double>(r.hi));
        out += (i ? ",\n  \"" : "\n  \"") + r.conv + "\": " + buf;
    }
    return out + "\n}}\n";
}

[[nodiscard]] inline quant_scales parse_quant_scales(const std::string& text, const std::string& where = "quant scales") {
    std::size_t i = 0;
    const auto fail = [&](const std::string& what) -> void {
        throw error("ctnet: " + where + ": " + what + " at byte " + std::to_string(i));
    };
    const auto ws = [&] {
        while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    };
    const auto expect = [&](char c) {
        ws();
        if (i >= text.size() || text[i] != c) fail(std::string{"expected '"} + c + "'");
        ++i;
    };
    const auto str = [&] {
        expect('"');
        const std::size_t e = text.find('"', i);
        if (e == std::string::npos) fail("unterminated string");
        std::string v = text.substr(i, e - i);
        if (v.find('\\') != std::string::npos) fail("escapes are not used in this format");
        i = e + 1;
        return v;
    };
    const auto num = [&] {
        ws();
        const char* b = text.c_str() + i;
        char* e = nullptr;
        const double v = std::strtod(b, &e);
        if (e == b) fail("expected a number");
        i += static_cast<std::size_t>(e - b);
        return static_cast<float>(v);
    };
    quant_scales s;
    bool format = false, version = false, ranges = false;
    expect('{');
    for (bool more = true; more;) {
        const std::string key = str();
        expect(':');
        if (key == "format") {
            if (str() != "ctnet.quant_scales") fail("format is not ctnet.quant_scales");
            format = true;
        } else if (key == "version") {
            if (num() != 1.0F) fail("unknown version (this build reads version 1)");
            version = true;
        } else if (key == "ranges") {
            expect('{');
            ws();
            if (i < text.size() && text[i] == '}') ++i;
            else
                for (bool next = true; next;) {
                    std::string conv = str();
                    expect(':');
                    expect('[');
                    const float lo = num();
                    expect(',');
                    const float hi = num();
                    expect(']');
                    if (!(lo <= hi)) fail("range of " + conv + " has lo > hi or is not a number");
                    if (s.find(conv) != nullptr) fail("conv " + conv + " appears twice");
                    s.ranges.push_back({std::move(conv), lo, hi});
                    ws();
                    next = i < text.size() && text[i] == ',';
                    if (next) ++i;
                    else expect('}');
                }
            ranges = true;
        } else {
            fail("unknown key \"" + key + "\"");
        }
        ws();
        more = i < text.size() && text[i] == ',';
        if (more) ++i;
    }
    expect('}');
    ws();
    if (i != text.size()) fail("text after the object");
    if (!format || !version || !ranges) fail("missing \"format\", \"version\" or \"ranges\"");
    return s;
}

inline void save_quant_scales(const std::string& path, const quant_scales& s) {
    std::ofstream f(path, std::ios::binary);
    f << quant_scales_json(s);
    f.close();
    if (!f) throw error("ctnet: cannot write quant scales to " + path);
}

[[nodiscard]] inline quant_scales load_quant_scales(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw error("ctnet: cannot open quant scales file " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return parse_quant_scales(ss.str(), path);
}

}  // namespace ctnet::cpu
