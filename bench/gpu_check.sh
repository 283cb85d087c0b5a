#!/usr/bin/env bash
# bench/gpu_check.sh — on a machine with an NVIDIA GPU: build the CUDA backend, run its tests
# (parity with the CPU reference runner: FP32 <= 1e-5, TF32 <= 1e-2 relative), and benchmark
# Inception v3 at batch 1, 32 and 128 against cuDNN (and PyTorch when it imports with CUDA); the
# same test binary checks the training kernels against the reference kernels.
# Prints a short table last. Needs the CUDA Toolkit (nvcc, cuDNN), cmake, g++ and doctest;
# meant to finish in a few minutes on an H100 with 16 cores.
#   bash bench/gpu_check.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
jobs=$(nproc)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCTNET_CUDA=ON -DCTNET_BUILD_EXAMPLES=OFF \
      -DCMAKE_CUDA_ARCHITECTURES="80;90" > "$build.cmake.log" 2>&1 || { tail -30 "$build.cmake.log"; exit 1; }
# Tests first, on their own: gpu_bench exists only where cuDNN was found.
cmake --build "$build" -j "$jobs" --target ctnet_cuda_tests
cmake --build "$build" -j "$jobs" --target ctnet_nccl_tests || echo "(no NCCL: its test is not built)"
have_bench=0
if cmake --build "$build" --target help | grep -q "gpu_bench"; then
  cmake --build "$build" -j "$jobs" --target gpu_bench && have_bench=1
else
  echo "(no cuDNN: bench/gpu_bench is not built)"
fi
echo "== tests"
status=0
# Once, with every MESSAGE (the measured errors) kept in a log; its summary and failures shown.
"$build/tests/ctnet_cuda_tests" -s > "$build/cuda_tests.log" 2>&1 || status=1
grep -E "MESSAGE|skipped|test cases|assertions|FAILED|ERROR" -A1 "$build/cuda_tests.log" | grep -v "^--$" || true
if [ -x "$build/tests/ctnet_nccl_tests" ]; then "$build/tests/ctnet_nccl_tests" || status=1; fi
if [ "$have_bench" = 0 ]; then
  echo "== no benchmark (no cuDNN)"
  exit "$status"
fi
echo "== benchmark (ctnet vs cuDNN)"
"$build/bench/gpu_bench" --iters "${ITERS:-30}" | tee "$build/gpu_bench.txt" || status=1
if /usr/bin/python3 -c "import torch, torchvision; assert torch.cuda.is_available()" 2> /dev/null; then
  echo "== PyTorch $( /usr/bin/python3 -c 'import torch; print(torch.__version__)' ) (eval, channels_last, TF32 allowed, same copies)"
  /usr/bin/python3 - << 'PY'
import time, torch, torchvision
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
torch.backends.cudnn.benchmark = True
m = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).eval().cuda()
m = m.to(memory_format=torch.channels_last)
for n in (1, 32, 128):
    x = torch.randn(n, 3, 299, 299).pin_memory()
    with torch.inference_mode():
        for _ in range(5):
            m(x.cuda(non_blocking=True)).cpu()
        ms = []
        for _ in range(30):
            torch.cuda.synchronize(); t = time.perf_counter()
            m(x.cuda(non_blocking=True).contiguous(memory_format=torch.channels_last)).cpu()
            torch.cuda.synchronize(); ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    print(f"| {n:5d} | pytorch tf32        | {ms[len(ms)//2]:9.3f} | {ms[0]:9.3f} | {n * 1e3 / ms[len(ms)//2]:9.1f} |")
PY
else
  echo "== PyTorch with CUDA not importable: skipped"
fi
echo "== table (also in $build/gpu_bench.txt)"
sed -n '/^| batch/,$p' "$build/gpu_bench.txt"
exit "$status"
