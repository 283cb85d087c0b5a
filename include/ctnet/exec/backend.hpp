// ctnet/exec/backend.hpp — what every executor shares: the backend tags, the two modes, and the
// primary templates that each backend specialises.
//
//   runner<net> r{w};                          // backend::reference (cpu/runner.hpp)
//   runner<net, backend::cpu> fast{w};         // cpu/fast_runner.hpp
//   runner<net, backend::cuda> gpu{w};         // cuda/runner.hpp
//   trainer<net, backend::cpu> t{w};           // cpu/trainer.hpp
//
// A backend is a folder (cpu/, cuda/) that owns its runner and its trainer; it includes exec/
// and graph/, never another backend and never train/ (which holds what is backend-neutral:
// losses, optimizers, schedules, checkpoints, the step orchestration).
#pragma once

namespace ctnet {

enum class mode : unsigned char { eval, train };

namespace backend {
struct reference {};  // plain loops (cpu/reference.hpp): the oracle
struct cpu {};        // SIMD kernels (xsimd), folded batch norm, fused ReLU, threads (cpu/fast_runner.hpp)
struct cuda {};       // CUDA kernels: tensor-core implicit GEMM, device arena, CUDA Graphs (cuda/runner.hpp)
}  // namespace backend

// Inference on a network type: a specialisation per backend.
template <class Net, class Backend = backend::reference>
class runner;

// Training (forward with batch statistics, backward, gradients): a specialisation per backend.
template <class Net, class Backend = backend::reference>
class trainer;

}  // namespace ctnet
