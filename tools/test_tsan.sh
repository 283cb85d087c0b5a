#!/usr/bin/env bash
# The threaded tests under ThreadSanitizer: backend::cpu inference at 1-4 threads, one model
# shared read-only by 4 runners on 4 threads, and the trainer's threaded GEMMs against the
# reference gradients. Any data race reported fails the run.
# Usage: bash tools/test_tsan.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-tsan}"
bash tools/install_deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCTNET_BUILD_BENCHMARKS=OFF -DCTNET_BUILD_EXAMPLES=OFF -DCTNET_CUDA=OFF \
      -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" > /dev/null
cmake --build "$build" -j "$(nproc)" --target ctnet_tests ctnet_train_tests
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
"$build/tests/ctnet_tests" -tc="*any thread count*,*shared read-only by 4 threads*"
"$build/tests/ctnet_train_tests" -tc="*backend::cpu*"
echo "tsan: no data race reported"
