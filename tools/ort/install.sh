#!/usr/bin/env bash
# Installs ONNX Runtime for Node (npm's onnxruntime-node, CPU binaries included) on first use, into
# a cache folder, and prints that folder. Later calls print it at once.
#   tools/ort/install.sh            -> e.g. /root/.cache/ctnet/ort (node_modules/onnxruntime-node inside)
# CTNET_ORT_DIR overrides the folder, CTNET_ORT_VERSION the version (default below).
# --ignore-scripts: the package's install script only fetches optional GPU binaries.
# Exits non-zero with a message when npm cannot install it (no registry): never a silent pass.
set -euo pipefail
# 1.30.0: 1.19-1.20 fuse a Pad into a following AveragePool with the wrong divisor at the borders
# (microsoft/onnxruntime#22177, fixed in 1.21): torch's export of count_include_pad pools is
# exactly that pattern (Inception's block pools: 0.8 % off the logits with 1.20.1).
version=${CTNET_ORT_VERSION:-1.30.0}
dir=${CTNET_ORT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ctnet/ort}
marker="$dir/node_modules/onnxruntime-node/package.json"
if [ -f "$marker" ] && grep -q "\"version\": \"$version\"" "$marker"; then
  echo "$dir"
  exit 0
fi
command -v npm > /dev/null || { echo "tools/ort/install.sh: npm is not installed (Debian's npm)" >&2; exit 1; }
mkdir -p "$dir"
lock="$dir/.install.lock"
exec 9> "$lock"
flock 9  # two tests installing at once share one install
if ! [ -f "$marker" ] || ! grep -q "\"version\": \"$version\"" "$marker"; then
  echo "tools/ort/install.sh: installing onnxruntime-node@$version into $dir" >&2
  if ! npm install --ignore-scripts --no-audit --no-fund --loglevel=error --prefix "$dir" \
       "onnxruntime-node@$version" >&2; then
    echo "tools/ort/install.sh: npm could not install onnxruntime-node@$version (is the npm registry reachable?)" >&2
    exit 1
  fi
fi
[ -f "$marker" ] || { echo "tools/ort/install.sh: onnxruntime-node is missing after npm install" >&2; exit 1; }
echo "$dir"
