#!/usr/bin/env bash
# The main demo: installs dependencies, builds the ctnet tool, prints the Inception v3 summary
# and times a forward pass of the embedded sample image, then trains the Fashion-MNIST example for
# one epoch (runs/demo/: log.csv, curve.svg, checkpoint, weights.safetensors). Its epoch line gives
# the test accuracy of the weights' moving average (warmed up as TF's ExponentialMovingAverage
# with num_updates) and of the raw weights, each named. Usage: bash tools/demo.sh [ctnet demo args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" --target ctnet_tool
./build/apps/ctnet/ctnet demo "$@"
echo
echo "One epoch of training on Fashion-MNIST (the paper's recipe; ctnet train --help for more)."
echo "Test accuracy is printed for the moving average of the weights (what is saved) and for the raw weights:"
./build/apps/ctnet/ctnet train --epochs 1 --out runs/demo
