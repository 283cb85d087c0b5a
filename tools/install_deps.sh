#!/usr/bin/env bash
# Installs what ctnet builds and tests with, from Debian's packages. Idempotent: installs only
# what is missing, and runs `apt-get update` only when something is.
set -euo pipefail

packages=(
  g++ cmake make pkg-config
  libxtensor-dev libxsimd-dev   # containers and SIMD (CPU kernels)
  nlohmann-json3-dev            # safetensors headers (io/)
  libstb-dev                    # JPEG / PNG decoding (io/image.hpp)
  zlib1g-dev                    # gzip-compressed IDX files (io/idx.hpp)
  dataset-fashion-mnist         # Fashion-MNIST in /usr/share/datasets (tests/test_idx.cpp needs it)
  doctest-dev                   # unit tests
  libcli11-dev                  # the ctnet tool's command line (apps/ctnet/main.cpp)
  libopenmpi-dev openmpi-bin    # data-parallel training over MPI (train/mpi.hpp, the distributed.mpi2 test)
  libbenchmark-dev              # bench/
  clang clang-tidy graphviz     # header warnings under clang 14, lint, `ctnet graph` pictures
  libclang-rt-14-dev            # libFuzzer and the sanitizers' runtimes (tests/fuzz)
  libonnx-dev libprotobuf-dev   # ONNX import / export (ctnet::onnx)
  python3-torch python3-torchvision python3-numpy   # parity references (tools/*.py, /usr/bin/python3)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm (ONNX Runtime for the ONNX export test, tools/ort/): Debian's only where the machine
# has none — a node from elsewhere (NodeSource's package bundles npm) conflicts with Debian's npm.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
