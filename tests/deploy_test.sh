#!/usr/bin/env bash
# The deployment example runs alone: copied into an empty folder, with the weights file gone,
# it gives the logits that the same model computes from the weights file.
# Usage: deploy_test.sh DEPLOY MAKE_WEIGHTS WEIGHTS WORK_DIR
set -euo pipefail
deploy=$1 make_weights=$2 weights=$3 work=$4
rm -rf "$work" && mkdir -p "$work/alone"
cp "$deploy" "$work/alone/deploy"
cp "$weights" "$work/weights.safetensors"
"$make_weights" "$work/weights.safetensors" --logits > "$work/want.txt"
(cd "$work/alone" && ./deploy) > "$work/got.txt"
diff "$work/want.txt" "$work/got.txt"
# standard input: the same sample as numbers gives the same logits; too few numbers is an error
(cd "$work/alone" && ./deploy --stdin < /dev/null) 2> "$work/err.txt" && { echo "deploy accepted empty input"; exit 1; }
grep -q "standard input ended before 784 numbers" "$work/err.txt"
echo "deploy: $(wc -l < "$work/got.txt") logits from the embedded weights equal those from the file"
