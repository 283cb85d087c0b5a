#!/usr/bin/env bash
# The main demo: installs dependencies, builds the ctnet tool, prints the Inception v3 summary
# and times a forward pass of the embedded sample image. Usage: bash tools/demo.sh [ctnet demo args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" --target ctnet_tool
./build/examples/ctnet demo "$@"
