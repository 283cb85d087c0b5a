#!/usr/bin/env bash
# Builds each libFuzzer target with clang (+ AddressSanitizer and UndefinedBehaviorSanitizer) and
# runs it for SECONDS on a copy of its seed corpus. A crash leaves its input in WORK/crashes/;
# make it a regression test and fix the parser.
# Usage: run_fuzzers.sh SOURCE_DIR WORK_DIR [SECONDS] [SEED]
# SEED (default 1) fixes libFuzzer's random choices, so that what the test suite finds in CI is
# found again by the same command here; 0 lets libFuzzer pick one (for exploring by hand).
set -euo pipefail
src=$1 work=$2 seconds=${3:-60} seed=${4:-1}
cxx=$(command -v clang++-14 || command -v clang++)
mkdir -p "$work/crashes"
for target in safetensors npy image idx checkpoint; do
  libs=()
  [ "$target" = image ] && libs=(-lstb -lz)
  [ "$target" = idx ] && libs=(-lz)
  "$cxx" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
         -I "$src/include" "$src/tests/fuzz/fuzz_$target.cpp" -o "$work/fuzz_$target" "${libs[@]}"
  rm -rf "$work/corpus_$target" && cp -r "$src/tests/fuzz/corpus/$target" "$work/corpus_$target"
  echo "fuzz_$target: $seconds s, seed $seed"
  "$work/fuzz_$target" -seed="$seed" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="$work/crashes/${target}-" -print_final_stats=1 "$work/corpus_$target" 2>&1 \
      | grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)" || true
  if ls "$work/crashes/${target}-"* > /dev/null 2>&1; then
    echo "fuzz_$target found a crash: $(ls "$work/crashes/${target}-"*)"
    exit 1
  fi
done
echo "fuzzers: no crash in ${seconds} s each"
