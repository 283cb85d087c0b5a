#!/usr/bin/env bash
# Builds each libFuzzer target with clang (+ AddressSanitizer and UndefinedBehaviorSanitizer) and
# runs it for SECONDS on a copy of its seed corpus. A target fails when libFuzzer exits non-zero
# (crash, sanitizer report, timeout, out of memory), leaves an input in WORK/crashes/ (make it a
# regression test and fix the parser), or executes fewer than MIN_PER_SECOND inputs per second
# (a target that hardly runs finds nothing, and would pass quietly).
# Usage: run_fuzzers.sh SOURCE_DIR WORK_DIR [SECONDS] [SEED] [MIN_PER_SECOND]
# SEED (default, or 0: a fresh one each run, printed) fixes libFuzzer's random choices: pass the
# printed seed to replay a failing run. MIN_PER_SECOND defaults to 200: on 2 cores at load 5 the
# slowest target (image) ran about 3,000 inputs a second over 60 s, the others 7,000 to 60,000.
set -euo pipefail
src=$1 work=$2 seconds=${3:-60} seed=${4:-} min_per_second=${5:-200}
if [ -z "$seed" ] || [ "$seed" = 0 ]; then seed=$(( ($(date +%s) ^ ($$ << 16) ^ RANDOM) % 2147483647 + 1 )); fi
min_units=$(( seconds * min_per_second ))
cxx=$(command -v clang++-14 || command -v clang++)
mkdir -p "$work/crashes"
echo "fuzzers: seed $seed, $seconds s and at least $min_units inputs per target" \
     "(replay: $0 $src $work $seconds $seed $min_per_second)"
targets=(safetensors npy image idx checkpoint)
# ONNX (src/onnx/, compiled into the target) when libonnx-dev / libprotobuf-dev are installed
if [ -f /usr/include/onnx/onnx-ml.pb.h ]; then targets+=(onnx); else echo "fuzz_onnx: left out (no libonnx-dev)"; fi
for target in "${targets[@]}"; do
  libs=()
  [ "$target" = image ] && libs=(-lstb -lz)
  [ "$target" = idx ] && libs=(-lz)
  [ "$target" = onnx ] && libs=(-DONNX_NAMESPACE=onnx -DONNX_ML=1 -lonnx_proto -lprotobuf)
  "$cxx" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
         -I "$src/include" "$src/tests/fuzz/fuzz_$target.cpp" -o "$work/fuzz_$target" "${libs[@]}"
  rm -rf "$work/corpus_$target" && cp -r "$src/tests/fuzz/corpus/$target" "$work/corpus_$target"
  log="$work/fuzz_$target.log"
  rc=0
  "$work/fuzz_$target" -seed="$seed" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="$work/crashes/${target}-" -print_final_stats=1 "$work/corpus_$target" > "$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log"  # the sanitizer's report and libFuzzer's statistics
    echo "fuzz_$target: libFuzzer exited with $rc (seed $seed; log $log)"
    exit 1
  fi
  grep -E "^#[0-9]+.*DONE" "$log" || true  # the last status line: coverage, corpus, exec/s
  units=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  if ls "$work/crashes/${target}-"* > /dev/null 2>&1; then
    echo "fuzz_$target found a crash: $(ls "$work/crashes/${target}-"*)"
    exit 1
  fi
  if [ -z "$units" ] || [ "$units" -lt "$min_units" ]; then
    echo "fuzz_$target: ${units:-no} inputs executed in $seconds s, want at least $min_units (log $log)"
    exit 1
  fi
  echo "fuzz_$target: $units inputs in $seconds s, no crash"
done
echo "fuzzers: no crash in $seconds s each (seed $seed)"
