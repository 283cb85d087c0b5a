#!/usr/bin/env bash
# The test suite again, built with AddressSanitizer and UndefinedBehaviorSanitizer (any report
# fails the test that triggered it). Leaves out what a sanitized build adds nothing to: the
# fuzzers (sanitized already), lint, header and compile-fail checks, the consumer builds, and the
# SIGKILL checkpoint test (it times kills against a normal build), and the MPI runs (Open MPI's
# own allocations would be reported as leaks).
# Usage: bash tools/test_sanitizers.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-asan}"
bash tools/install_deps.sh
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCTNET_BUILD_BENCHMARKS=OFF -DCTNET_CUDA=OFF \
      -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined"
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" -E "fuzz|clang_tidy|headers|consumer|compile_fail|checkpoint_kill|distributed|mpi2"
