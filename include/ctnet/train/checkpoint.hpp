// ctnet/train/checkpoint.hpp — everything needed to continue training, in one safetensors file.
//
//   save_checkpoint("run/checkpoint.safetensors", w, opt, &ema, state);   // atomic
//   train_state s = load_checkpoint("run/checkpoint.safetensors", w, opt, &ema);
//
// Contents: every tensor of the model under torchvision-style names (so the file also loads as
// plain weights with load_options{.ignore_prefix = "ctnet_state."}), the optimizer's momentum and
// mean-square buffers and the moving average as "ctnet_state.*" tensors, and the counters
// (epoch, step, optimizer steps, the moving average's update count "ema_updates", generator
// states, the run's configuration) as string metadata.
// Requires: the same network type and optimizer kind as the run that saved it.
// Formats: "ctnet-checkpoint 2" added "ema_updates" (written when a moving average is saved),
// which the average's warm-up needs (moving_average in optim.hpp). Files of format 1 still load:
// without a moving average, or into one with {.warmup = false} (format 1's averages used the
// fixed decay; the count is then taken to be the optimizer's step count, one update per
// train_step, or 0 for an empty average). Loading a format-1 file into a moving average with
// warm-up is refused: its update count is unknown, so it could not continue exactly.
// Guarantees: saving writes a temporary file, fsyncs it and renames it over the old checkpoint,
// so a crash at any moment leaves the previous or the new checkpoint, complete. Loading checks
// the format, every tensor's presence and size and every counter, and changes nothing unless
// the whole file is valid; errors name the file and the field.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../io/safetensors.hpp"
#include "optim.hpp"

namespace ctnet {

struct train_state {
    int epoch = 0;               // completed epochs
    std::int64_t step = 0;       // completed optimizer steps
    std::uint64_t dropout_rng = 0;  // trainer's generator state
    std::string config;          // what the run was started with (compared on resume by the caller)
};

inline constexpr const char* checkpoint_format = "ctnet-checkpoint 2";
inline constexpr const char* checkpoint_format_1 = "ctnet-checkpoint 1";  // loadable, see above

template <class Net>
std::vector<std::uint8_t> checkpoint_bytes(const weights<Net>& w, optimizer& opt, const moving_average* ema,
                                           const train_state& s) {
    std::vector<io::named_tensor> tensors;
    for (const tensor_info& t : weights<Net>::tensors())
        tensors.push_back({t.name, {t.dims.begin(), t.dims.end()}, {w.data().data() + t.offset, t.count}});
    const auto flat = [](const std::vector<float>& v) { return std::vector<std::int64_t>{static_cast<std::int64_t>(v.size())}; };
    tensors.push_back({"ctnet_state.momentum", flat(opt.momentum()), opt.momentum()});
    tensors.push_back({"ctnet_state.mean_square", flat(opt.mean_square()), opt.mean_square()});
    if (ema) tensors.push_back({"ctnet_state.ema", flat(ema->shadow()), ema->shadow()});
    std::map<std::string, std::string> meta{
        {"format", checkpoint_format},
        {"epoch", std::to_string(s.epoch)},
        {"step", std::to_string(s.step)},
        {"optimizer", opt.type() == optimizer::kind::sgd ? "sgd" : "rmsprop"},
        {"optimizer_steps", std::to_string(opt.steps())},
        {"dropout_rng", std::to_string(s.dropout_rng)},
        {"config", s.config},
    };
    if (ema) meta.emplace("ema_updates", std::to_string(ema->updates()));
    return io::safetensors_bytes(tensors, meta);
}

template <class Net>
void save_checkpoint(const std::string& path, const weights<Net>& w, optimizer& opt, const moving_average* ema,
                     const train_state& s) {
    io::write_file_atomic(path, checkpoint_bytes(w, opt, ema, s));
}

namespace detail {

[[noreturn]] inline void ck_fail(const std::string& path, const std::string& what) {
    throw error("ctnet: checkpoint '" + path + "': " + what);
}

inline std::string ck_meta(const io::safetensors_file& f, const std::string& key) {
    const auto it = f.metadata().find(key);
    if (it == f.metadata().end()) ck_fail(f.path(), "metadata field '" + key + "' is missing");
    return it->second;
}

inline std::uint64_t ck_number(const io::safetensors_file& f, const std::string& key, std::uint64_t max) {
    const std::string text = ck_meta(f, key);
    if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
        ck_fail(f.path(), "metadata field '" + key + "' is '" + text + "', expected a non-negative integer");
    if (text.size() == 20 && text > "18446744073709551615")  // before stoull, which would throw out_of_range
        ck_fail(f.path(), "metadata field '" + key + "' is " + text + ", out of range");
    const unsigned long long v = std::stoull(text);
    if (v > max) ck_fail(f.path(), "metadata field '" + key + "' is " + text + ", above " + std::to_string(max));
    return v;
}

// A state tensor: `want` F32 values, or none at all (saved before the first optimizer step or
// moving-average update, which create the state lazily).
inline void ck_tensor(const io::safetensors_file& f, const std::string& name, std::vector<float>& out, std::size_t want) {
    const auto it = f.entries().find(name);
    if (it == f.entries().end()) ck_fail(f.path(), "tensor '" + name + "' is missing");
    const std::size_t bytes = it->second.end - it->second.begin;
    if (it->second.dtype == "F32" && bytes == 0) {
        out.clear();
        return;
    }
    if (it->second.dtype != "F32" || bytes != want * 4)
        ck_fail(f.path(), "tensor '" + name + "' has " + std::to_string(bytes) + " bytes of " + it->second.dtype +
                              ", expected " + std::to_string(want) + " F32 values");
    out.assign(want, 0.0F);
    f.read_f32(name, out.data());
}

}  // namespace detail

template <class Net>
train_state load_checkpoint(const io::safetensors_file& f, weights<Net>& w, optimizer& opt, moving_average* ema) {
    const std::string format = detail::ck_meta(f, "format");
    if (format != checkpoint_format && format != checkpoint_format_1)
        detail::ck_fail(f.path(), "format is '" + format + "', expected '" + std::string{checkpoint_format} + "' (or '" +
                                      checkpoint_format_1 + "')");
    const bool format_1 = format == checkpoint_format_1;
    const std::string kind = detail::ck_meta(f, "optimizer");
    const std::string want_kind = opt.type() == optimizer::kind::sgd ? "sgd" : "rmsprop";
    if (kind != want_kind) detail::ck_fail(f.path(), "was saved with optimizer " + kind + ", this run uses " + want_kind);
    train_state s;
    s.epoch = static_cast<int>(detail::ck_number(f, "epoch", 1u << 30));
    s.step = static_cast<std::int64_t>(detail::ck_number(f, "step", std::uint64_t{1} << 62));
    const auto opt_steps = static_cast<std::int64_t>(detail::ck_number(f, "optimizer_steps", std::uint64_t{1} << 62));
    s.dropout_rng = detail::ck_number(f, "dropout_rng", ~std::uint64_t{0});
    s.config = detail::ck_meta(f, "config");
    const std::size_t storage = w.data().size();
    std::vector<float> momentum, square, shadow;
    detail::ck_tensor(f, "ctnet_state.momentum", momentum, storage);
    detail::ck_tensor(f, "ctnet_state.mean_square", square, storage);
    if (momentum.empty() != square.empty())  // the optimizer creates both at its first step
        detail::ck_fail(f.path(), "tensor 'ctnet_state." + std::string{momentum.empty() ? "mean_square" : "momentum"} +
                                      "' holds the optimizer state but 'ctnet_state." +
                                      (momentum.empty() ? "momentum" : "mean_square") + "' is empty; both or neither");
    if (ema) detail::ck_tensor(f, "ctnet_state.ema", shadow, storage);
    std::int64_t ema_updates = 0;
    if (ema && format_1) {
        if (ema->warmup())
            detail::ck_fail(f.path(), "format '" + format + "' has no moving-average update count ('ema_updates'), " +
                                          "which the warm-up needs; its average used the fixed decay: load it into a " +
                                          "moving_average with {.warmup = false} (ctnet train: --ema-warmup off)");
        ema_updates = shadow.empty() ? 0 : opt_steps;
    } else if (ema) {
        ema_updates = static_cast<std::int64_t>(detail::ck_number(f, "ema_updates", std::uint64_t{1} << 62));
        if (shadow.empty() && ema_updates != 0)
            detail::ck_fail(f.path(), "metadata field 'ema_updates' is " + std::to_string(ema_updates) +
                                          ", but the moving average is empty");
    }
    weights<Net> staged = w;
    io::load_safetensors(f, staged, {.ignore_prefix = "ctnet_state."});
    // Everything is valid: commit.
    w = std::move(staged);
    opt.momentum() = std::move(momentum);
    opt.mean_square() = std::move(square);
    opt.set_steps(opt_steps);
    if (ema) {
        ema->shadow() = std::move(shadow);
        ema->set_updates(ema_updates);
    }
    return s;
}

template <class Net>
train_state load_checkpoint(const std::string& path, weights<Net>& w, optimizer& opt, moving_average* ema) {
    return load_checkpoint(io::safetensors_file{path}, w, opt, ema);
}

}  // namespace ctnet
