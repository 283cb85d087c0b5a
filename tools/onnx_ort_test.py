#!/usr/bin/python3
"""ctnet's ONNX export run by ONNX Runtime (tests/onnx, the onnx.ort test).

    onnx_ort_test.py TOOL WORK_DIR [--seed N]

TOOL is tests/onnx's ctnet_onnx_tool (`export`, `run`, `compare`, `import`). For inception_v3
(batch 1) and fashion (batch 2), with weights from a fresh seed (init_seeded with random batch
norm, printed), batch norm kept and folded: `TOOL export` writes the ONNX file, tools/ort/run.js
runs it in ONNX Runtime (onnxruntime-node from npm, installed on first use by tools/ort/install.sh,
graph optimizations 'all'), `TOOL run` computes ctnet's logits with the reference kernels, and
`TOOL compare` requires max |ort - ctnet| / max |ctnet| <= 1e-4 (tests/check.hpp). Each exported
file is imported back too (`TOOL import` must accept what ctnet writes). Exits 1 on any failure,
including npm not being able to install ONNX Runtime: this test never passes without running it.
"""
import os
import random
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = [("inception_v3", (1, 3, 299, 299)), ("fashion", (2, 1, 28, 28))]


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(r.stdout, end="", flush=True)
    if r.returncode != 0:
        print(f"onnx_ort_test.py: failed ({r.returncode}): {' '.join(cmd)}")
        sys.exit(1)
    return r.stdout


def main():
    args = sys.argv[1:]
    if len(args) not in (2, 4):
        sys.exit(__doc__)
    tool, work = args[0], args[1]
    seed = int(args[3]) if len(args) == 4 else random.SystemRandom().randrange(1, 2**31)
    print(f"onnx_ort_test.py: seed {seed} (replay: {sys.argv[0]} {tool} {work} --seed {seed})")
    os.makedirs(work, exist_ok=True)
    r = subprocess.run(["bash", os.path.join(HERE, "ort", "install.sh")], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        print("onnx_ort_test.py: ONNX Runtime (npm's onnxruntime-node) could not be installed; failing")
        sys.exit(1)
    ort_dir = r.stdout.strip().splitlines()[-1]
    os.environ["CTNET_ORT_DIR"] = ort_dir
    rng = np.random.default_rng(seed)
    for model, dims in MODELS:
        x = os.path.join(work, f"{model}_input.npy")
        np.save(x, rng.standard_normal(dims).astype(np.float32))
        want = os.path.join(work, f"{model}_ctnet.npy")
        run([tool, "run", "--model", model, "--seed", str(seed), "--input", x, "--output", want])
        for fold in (False, True):
            tag = f"{model}_{'folded' if fold else 'bn'}"
            onnx = os.path.join(work, tag + ".onnx")
            got = os.path.join(work, tag + "_ort.npy")
            run([tool, "export", "--model", model, "--seed", str(seed), "-o", onnx, "--batch", str(dims[0])] +
                (["--fold-bn"] if fold else []))
            run(["node", os.path.join(HERE, "ort", "run.js"), onnx, x, got, "--threads", "2"])
            run([tool, "compare", got, want, "1e-4"])
            run([tool, "import", onnx, "--name", "reimported_" + tag, "-o", os.path.join(work, tag + ".hpp"),
                 "--weights", os.path.join(work, tag + ".safetensors")])
    print("onnx_ort_test.py: ONNX Runtime agrees with ctnet on every exported model")


if __name__ == "__main__":
    main()
