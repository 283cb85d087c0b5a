#!/usr/bin/env bash
# ctnet as a user's dependency, three ways: the installed CMake package (find_package), the
# source tree (add_subdirectory), and pkg-config; where nvcc is found the installed package has
# ctnet::cuda too, and a program linking it runs (it reports the missing GPU and exits 0).
# Usage: consumer_test.sh SOURCE_DIR WORK_DIR CXX
set -euo pipefail
src=$1 work=$2 cxx=$3
rm -rf "$work" && mkdir -p "$work"

# 1. install into a prefix, then find_package(ctnet CONFIG REQUIRED)
cmake -S "$src" -B "$work/ctnet-build" -DCTNET_BUILD_TESTS=OFF -DCTNET_BUILD_EXAMPLES=OFF \
      -DCTNET_BUILD_BENCHMARKS=OFF -DCMAKE_INSTALL_PREFIX="$work/prefix" > /dev/null
cmake --build "$work/ctnet-build" > /dev/null  # the CUDA kernels library, when nvcc is there
cmake --install "$work/ctnet-build" > /dev/null
test -f "$work/prefix/share/cmake/ctnet/ctnetConfig.cmake"
test -f "$work/prefix/include/ctnet/ctnet.hpp"
cmake -S "$src/examples/consumer" -B "$work/installed" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_COMPILER="$cxx" > /dev/null
cmake --build "$work/installed" > /dev/null
"$work/installed/app"
# With nvcc the installed package has ctnet::cuda (the kernels library); a user's program links it.
if [ -f "$work/prefix/lib/libctnet_cuda.a" ] || [ -f "$work/prefix/lib64/libctnet_cuda.a" ]; then
    test -x "$work/installed/app_cuda"
    "$work/installed/app_cuda"
fi

# 2. add_subdirectory on the source tree
cmake -S "$src/examples/consumer" -B "$work/subdir" -DCTNET_SOURCE_DIR="$src" -DCMAKE_CXX_COMPILER="$cxx" > /dev/null
cmake --build "$work/subdir" > /dev/null
"$work/subdir/app"

# 3. pkg-config, no CMake
PKG_CONFIG_PATH="$work/prefix/share/pkgconfig" pkg-config --exists ctnet
# shellcheck disable=SC2046
"$cxx" $(PKG_CONFIG_PATH="$work/prefix/share/pkgconfig" pkg-config --cflags ctnet) -O1 \
    "$src/examples/consumer/app.cpp" -o "$work/app-pkgconfig"
"$work/app-pkgconfig"
echo "consumer: installed package, add_subdirectory and pkg-config all build and run"
