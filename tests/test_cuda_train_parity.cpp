// The GPU trainer against torch autograd: the two Inception v3 steps of tests/test_train_parity.cpp
// (batch 2, 299x299, aux head, label smoothing 0.1, clipping to norm 2.0, torch-style RMSProp
// with momentum and weight decay, the first step at lr 0), run by trainer<Net, backend::cuda>
// on tools/train_reference.py's files — the weights, inputs, labels and dropout masks torch used
// — and held to the bounds the CPU trainer's GEMM path meets there (tests/test_train_parity.cpp
// says why they are what they are): loss, heads and gradient norm within their floors or 4x
// torch float32's own error; the first step's gradient of every tensor within 1e-3 or 4x torch
// float32's; the change of every parameter and running statistic within 2e-2 or 4x; each whole
// within 1.5x torch float32's error. fp32 only, with cuDNN's convolutions and with ctnet's:
// tf32 and bf16 round each conv's operands to 10 and 8 bits, which this step amplifies far past
// float32's own error (torch float32 is already 2.4 % from float64 on the whole gradient); they
// are held to the CPU trainer in tests/test_cuda_trainer.cpp instead.
// The files: the directory CTNET_TRAIN_PARITY_DIR names in the environment (bench/gpu_check.sh
// makes them on the GPU machine), else the one ctest's train_parity.reference writes.
// Skips without a GPU.
#include <doctest/doctest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include <ctnet/cuda/trainer.hpp>

#include "train_parity.hpp"

using namespace ctnet;

namespace {

using net = models::inception_v3<>;

std::string reference_dir() {
    const char* env = std::getenv("CTNET_TRAIN_PARITY_DIR");
    return env != nullptr && *env != '\0' ? env : CTNET_TRAIN_PARITY_DIR;
}

void check_on_gpu(bool cudnn) {
    const auto make = [&](weights<net>& w, std::uint64_t seed) {
        return std::make_unique<trainer<net, backend::cuda>>(
            w, trainer<net, backend::cuda>::options{.precision = cuda::precision::fp32, .cudnn = cudnn, .seed = seed});
    };
    const auto [w, t] =
        test::check_train_parity(reference_dir(), make, {.who = cudnn ? "cuda, fp32, cuDNN convs" : "cuda, fp32, ctnet's convs"});
    MESSAGE("convolutions: " << t->conv_engine());  // after a batch: cuDNN's algorithms are chosen then
}

}  // namespace

TEST_CASE("cuda train parity: two Inception v3 steps on the GPU = torch autograd (fp32, cuDNN's convolutions)") {
    if (cuda::device_count() == 0) {
        MESSAGE("skipped: no CUDA device on this machine");
        return;
    }
    check_on_gpu(true);
}

TEST_CASE("cuda train parity: the same two steps with ctnet's own conv kernels (options::cudnn = false)") {
    if (cuda::device_count() == 0) {
        MESSAGE("skipped: no CUDA device on this machine");
        return;
    }
    check_on_gpu(false);
}
