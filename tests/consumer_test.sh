#!/usr/bin/env bash
# ctnet as a user's dependency, three ways: the installed CMake package (find_package with
# COMPONENTS cpu io), the source tree (add_subdirectory), and pkg-config (ctnet, ctnet-cpu,
# ctnet-io, ctnet-cuda, ctnet-onnx). Each builds examples/consumer's programs and runs them: app
# (the core), app_cpu_io (backend::cpu against the reference runner, weights through safetensors,
# input through .npy: exits 1 on a mismatch), where nvcc is found app_cuda (it reports the
# missing GPU and exits 0, or checks the GPU's output), and where libonnx-dev is found app_onnx
# (a model through ONNX bytes and back). The package config's component handling is
# checked too: plain find_package for the core, an unknown component, a component whose
# dependencies are missing.
# Usage: consumer_test.sh SOURCE_DIR WORK_DIR CXX
set -euo pipefail
src=$1 work=$2 cxx=$3
rm -rf "$work" && mkdir -p "$work"
step() { echo "consumer: $*"; }

# 1. install into a prefix, then find_package(ctnet CONFIG REQUIRED COMPONENTS cpu io)
step "installing into $work/prefix"
cmake -S "$src" -B "$work/ctnet-build" -DCTNET_BUILD_TESTS=OFF -DCTNET_BUILD_EXAMPLES=OFF \
      -DCTNET_BUILD_BENCHMARKS=OFF -DCMAKE_INSTALL_PREFIX="$work/prefix" > /dev/null
cmake --build "$work/ctnet-build" > /dev/null  # the compiled components (cuda, onnx), when built
cmake --install "$work/ctnet-build" > /dev/null
cmakedir="$work/prefix/share/cmake/ctnet" pcdir="$work/prefix/share/pkgconfig"
for f in "$cmakedir/ctnetConfig.cmake" "$cmakedir/ctnetTargets.cmake" "$cmakedir/ctnet-cpu-targets.cmake" \
         "$cmakedir/ctnet-io-targets.cmake" "$pcdir/ctnet.pc" "$pcdir/ctnet-cpu.pc" "$pcdir/ctnet-io.pc" \
         "$work/prefix/include/ctnet/ctnet.hpp"; do
    test -f "$f" || { echo "consumer: not installed: $f"; exit 1; }
done
cuda=0 onnx=0
if [ -f "$cmakedir/ctnet-onnx-targets.cmake" ]; then
    onnx=1
    test -f "$pcdir/ctnet-onnx.pc"
fi
if [ -f "$cmakedir/ctnet-cuda-targets.cmake" ]; then
    cuda=1
    test -f "$pcdir/ctnet-cuda.pc"
    test -f "$work/prefix/lib/libctnet_cuda.a" || test -f "$work/prefix/lib64/libctnet_cuda.a"
fi
# The installed files must not point back into the build machine's source or build trees.
if grep -rl -e "$src/include" -e "$src/src" -e "$work/ctnet-build" "$cmakedir" "$pcdir"; then
    echo "consumer: installed package files name the source or build tree"; exit 1
fi

step "find_package(ctnet CONFIG REQUIRED COMPONENTS cpu io)"
cmake -S "$src/examples/consumer" -B "$work/installed" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_COMPILER="$cxx" > /dev/null
cmake --build "$work/installed" > /dev/null
"$work/installed/app"
"$work/installed/app_cpu_io" "$work/installed"
if [ $cuda = 1 ]; then
    test -x "$work/installed/app_cuda"
    "$work/installed/app_cuda"
fi
if [ $onnx = 1 ]; then
    test -x "$work/installed/app_onnx"
    "$work/installed/app_onnx"
fi

# The package config on its own: a project that only configures.
probe() {  # probe NAME FIND_PACKAGE_ARGS [EXTRA_CMAKE_ARGS...]: configure a project calling find_package(ctnet ARGS)
    local name=$1 args=$2
    shift 2
    mkdir -p "$work/probe/$name"
    cat > "$work/probe/$name/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.22)
project(probe LANGUAGES CXX)
find_package(ctnet $args)
message(STATUS "ctnet_FOUND=\${ctnet_FOUND}")
foreach(t ctnet::ctnet ctnet::cpu ctnet::io ctnet::cuda ctnet::onnx)
  if(TARGET \${t})
    message(STATUS "probe: target \${t}")
  endif()
endforeach()
EOF
    cmake -S "$work/probe/$name" -B "$work/probe/$name/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
          -DCMAKE_CXX_COMPILER="$cxx" "$@" > "$work/probe/$name.log" 2>&1
}
expect_log() {  # expect_log NAME REGEX
    grep -Eq "$2" "$work/probe/$1.log" || { echo "consumer: probe $1: no match for '$2':"; cat "$work/probe/$1.log"; exit 1; }
}
step "plain find_package(ctnet) gives the core"
probe plain "0.1 CONFIG REQUIRED"
expect_log plain "probe: target ctnet::ctnet"
# without COMPONENTS: also every installed component whose dependencies are found (here: all)
expect_log plain "probe: target ctnet::cpu"
expect_log plain "probe: target ctnet::io"
step "COMPONENTS cpu io gives those two and no other"
probe cpu_io "0.1 CONFIG REQUIRED COMPONENTS cpu io"
expect_log cpu_io "probe: target ctnet::cpu"
expect_log cpu_io "probe: target ctnet::io"
if grep -Eq "probe: target ctnet::(cuda|onnx)" "$work/probe/cpu_io.log"; then echo "consumer: cuda/onnx loaded unasked"; exit 1; fi
step "an unknown component fails, and says so"
if probe unknown "CONFIG REQUIRED COMPONENTS cpu nosuch"; then echo "consumer: COMPONENTS nosuch was accepted"; exit 1; fi
expect_log unknown "unknown ctnet component 'nosuch'"
for c in onnx cuda; do
    if [ ! -f "$cmakedir/ctnet-$c-targets.cmake" ]; then
        step "COMPONENTS $c, not built here, fails and says so"
        if probe "no_$c" "CONFIG REQUIRED COMPONENTS $c"; then echo "consumer: COMPONENTS $c was accepted"; exit 1; fi
        expect_log "no_$c" "ctnet component '$c' is not in this installation"
    fi
done
step "COMPONENTS cpu needs none of io's dependencies"
probe cpu_only "CONFIG REQUIRED COMPONENTS cpu" -DCMAKE_DISABLE_FIND_PACKAGE_ZLIB=ON \
      -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON
expect_log cpu_only "probe: target ctnet::cpu"
if grep -q "probe: target ctnet::io" "$work/probe/cpu_only.log"; then echo "consumer: io loaded unasked"; exit 1; fi
step "COMPONENTS io without zlib is not found"
probe io_missing "CONFIG COMPONENTS io" -DCMAKE_DISABLE_FIND_PACKAGE_ZLIB=ON
expect_log io_missing "ctnet_FOUND=(0|FALSE|False)"
if probe io_missing_required "CONFIG REQUIRED COMPONENTS io" -DCMAKE_DISABLE_FIND_PACKAGE_ZLIB=ON; then
    echo "consumer: REQUIRED COMPONENTS io without zlib was accepted"; exit 1
fi

# 2. add_subdirectory on the source tree
step "add_subdirectory"
cmake -S "$src/examples/consumer" -B "$work/subdir" -DCTNET_SOURCE_DIR="$src" -DCMAKE_CXX_COMPILER="$cxx" > /dev/null
cmake --build "$work/subdir" > /dev/null
"$work/subdir/app"
"$work/subdir/app_cpu_io" "$work/subdir"
if [ -x "$work/subdir/app_onnx" ]; then "$work/subdir/app_onnx"; fi

# 3. pkg-config, no CMake
step "pkg-config"
export PKG_CONFIG_PATH="$pcdir"
pkg-config --exists --print-errors ctnet ctnet-cpu ctnet-io
# shellcheck disable=SC2046
"$cxx" $(pkg-config --cflags ctnet) -O1 "$src/examples/consumer/app.cpp" -o "$work/app-pkgconfig"
"$work/app-pkgconfig"
# shellcheck disable=SC2046
"$cxx" $(pkg-config --cflags ctnet-cpu ctnet-io) -O2 -march=native "$src/examples/consumer/app_cpu_io.cpp" \
    -o "$work/app_cpu_io-pkgconfig" $(pkg-config --libs ctnet-cpu ctnet-io)
mkdir -p "$work/pkgconfig-run"
"$work/app_cpu_io-pkgconfig" "$work/pkgconfig-run"
if [ $cuda = 1 ]; then
    # shellcheck disable=SC2046
    "$cxx" $(pkg-config --cflags ctnet-cuda) -O1 "$src/examples/consumer/app_cuda.cpp" -o "$work/app_cuda-pkgconfig" \
        $(pkg-config --libs ctnet-cuda)
    "$work/app_cuda-pkgconfig"
fi
if [ $onnx = 1 ]; then
    # shellcheck disable=SC2046
    "$cxx" $(pkg-config --cflags ctnet-onnx) -O1 "$src/examples/consumer/app_onnx.cpp" -o "$work/app_onnx-pkgconfig" \
        $(pkg-config --libs ctnet-onnx)
    "$work/app_onnx-pkgconfig"
fi
echo "consumer: installed package (COMPONENTS cpu io$([ $cuda = 1 ] && echo ' cuda')$([ $onnx = 1 ] && echo ' onnx')), add_subdirectory and pkg-config all build and run"
