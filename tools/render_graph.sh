#!/usr/bin/env bash
# Regenerates the pictures of docs/ from the network types (needs Debian's graphviz):
#   docs/inception_v3.svg           one box per block, shapes on the edges
#   docs/inception_v3_expanded.svg  Mixed_6e (the 7x7 factorized into 1x7 and 7x1, the aux tap) and
#                                   Mixed_7b (nested concat) opened up to their ops
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dot > /dev/null || { echo "render_graph: install graphviz (apt-get install graphviz)" >&2; exit 1; }
cmake -S . -B build > /dev/null
cmake --build build --target ctnet_tool -j "$(nproc)" > /dev/null
./build/apps/ctnet/ctnet graph inception_v3 > docs/inception_v3.dot
./build/apps/ctnet/ctnet graph inception_v3 --expand=Mixed_6e,Mixed_7b > docs/inception_v3_expanded.dot
dot -Tsvg docs/inception_v3.dot -o docs/inception_v3.svg
dot -Tsvg docs/inception_v3_expanded.dot -o docs/inception_v3_expanded.svg
echo "wrote docs/inception_v3.svg and docs/inception_v3_expanded.svg"
