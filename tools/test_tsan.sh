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
# Runs the test cases of BINARY that FILTER selects and requires that exactly WANT of them ran and
# passed: a renamed test case would otherwise leave a filter that matches nothing, and pass.
run_cases() {
  local want=$1 binary=$2 filter=$3 log counts
  log="$build/tsan_$(basename "$binary").log"
  "$binary" -nc -tc="$filter" 2>&1 | tee "$log"  # pipefail: a race (halt_on_error) or a failed check stops here
  counts=$(sed -nE 's/^\[doctest\] test cases: *([0-9]+) \| *([0-9]+) passed.*/\1 \2/p' "$log")
  if [ "$counts" != "$want $want" ]; then
    echo "tsan: $(basename "$binary") -tc=\"$filter\": test cases run, passed: ${counts:-none}; want $want, all passed"
    exit 1
  fi
}
run_cases 2 "$build/tests/ctnet_tests" "*any thread count*,*shared read-only by 4 threads*"
run_cases 1 "$build/tests/ctnet_train_tests" "*backend::cpu*"
echo "tsan: 3 threaded test cases, no data race reported"
