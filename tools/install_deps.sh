#!/usr/bin/env bash
# Installs what ctnet builds and tests with, from Debian's packages. Idempotent: installs only
# what is missing, and runs `apt-get update` only when something is.
set -euo pipefail

packages=(
  g++ cmake make
  libxtensor-dev libxsimd-dev   # containers and SIMD (CPU kernels)
  doctest-dev                   # unit tests
  libbenchmark-dev              # bench/
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
