#!/usr/bin/env bash
# The deployment example runs alone: copied into an empty folder, with the weights file gone,
# it gives the logits that the same model computes from the weights file, for its built-in
# sample and for the same sample read as numbers from standard input.
# Usage: deploy_test.sh DEPLOY MAKE_WEIGHTS WEIGHTS WORK_DIR
set -euo pipefail
deploy=$1 make_weights=$2 weights=$3 work=$4
rm -rf "$work" && mkdir -p "$work/alone"
cp "$deploy" "$work/alone/deploy"
cp "$weights" "$work/weights.safetensors"
"$make_weights" "$work/weights.safetensors" --logits > "$work/want.txt"
(cd "$work/alone" && ./deploy) > "$work/got.txt"
diff "$work/want.txt" "$work/got.txt"
# standard input: the sample as numbers (printed by the build tool, from the same model.hpp)
# gives the same logits
"$make_weights" --sample > "$work/sample.txt"
[ "$(wc -l < "$work/sample.txt")" -eq 784 ] || { echo "make_weights --sample: not 784 numbers"; exit 1; }
(cd "$work/alone" && ./deploy --stdin < "$work/sample.txt") > "$work/got_stdin.txt"
diff "$work/want.txt" "$work/got_stdin.txt"
# ... and the numbers are really read: the inverted image (1 - x) gives other logits
awk '{ print 1 - $1 }' "$work/sample.txt" > "$work/inverted.txt"
(cd "$work/alone" && ./deploy --stdin < "$work/inverted.txt") > "$work/got_inverted.txt"
if cmp -s "$work/want.txt" "$work/got_inverted.txt"; then
  echo "deploy --stdin: the inverted image gives the sample's logits; is standard input read?"
  exit 1
fi
# too few numbers is an error
(cd "$work/alone" && ./deploy --stdin < /dev/null) 2> "$work/err.txt" && { echo "deploy accepted empty input"; exit 1; }
grep -q "standard input ended before 784 numbers" "$work/err.txt"
echo "deploy: $(wc -l < "$work/got.txt") logits from the embedded weights equal those from the file," \
     "for the built-in sample and for it read from standard input"
