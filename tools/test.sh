#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds everything, runs ctest (unit tests,
# compile-fail cases, CLI checks). Usage: bash tools/test.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
bash tools/install_deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
