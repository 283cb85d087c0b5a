#!/usr/bin/python3
"""ctnet against PyTorch's best CPU variant, side by side in one run.

    /usr/bin/python3 bench/compare_pytorch.py path/to/ctnet [--batch 1] [--threads 2] [--rounds 5] [--iters 5]

PyTorch: torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model))) in
channels_last, torch.set_num_threads(T) (Debian's python3-torch, oneDNN). ctnet: `ctnet bench`
(backend cpu). Rounds alternate A and B, so both see the same machine state. Before timing,
both run the same weights and input and the logits must agree (relative error <= 1e-4).
Prints one line per round and the ratio of the medians (ctnet / torch; below 1 is faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from export_torchvision import random_model, save_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ctnet")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = random_model(7)
    model.aux_logits, model.AuxLogits = False, None
    x = torch.randn(a.batch, 3, 299, 299, generator=torch.Generator().manual_seed(1))

    # The same numbers first.
    with tempfile.TemporaryDirectory() as d, torch.no_grad():
        full = random_model(7)
        save_safetensors(full.state_dict(), os.path.join(d, "w.safetensors"))
        np.save(os.path.join(d, "x.npy"), x.numpy())
        subprocess.run([a.ctnet, "infer", "--model", "inception_v3", "--weights", os.path.join(d, "w.safetensors"),
                        "--input", os.path.join(d, "x.npy"), "--output", os.path.join(d, "y.npy"),
                        "--threads", str(a.threads)], check=True, capture_output=True)
        want = full(x).numpy()
        got = np.load(os.path.join(d, "y.npy"))
        err = float(np.abs(got - want).max() / np.abs(want).max())
    print(f"outputs agree: relative error {err:.3g}")
    if err > 1e-4:
        sys.exit("ctnet and torch disagree")

    with torch.no_grad():
        mc = model.to(memory_format=torch.channels_last)
        xc = x.to(memory_format=torch.channels_last)
        best = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(mc, xc).eval()))
        for _ in range(3):
            best(xc)
        torch_ms, ctnet_ms = [], []
        for r in range(a.rounds):
            ts = []
            for _ in range(a.iters):
                t0 = time.perf_counter()
                best(xc)
                ts.append((time.perf_counter() - t0) * 1e3)
            torch_ms.append(statistics.median(ts))
            out = subprocess.run([a.ctnet, "bench", "--model", "inception_v3", "--batch", str(a.batch), "--threads",
                                  str(a.threads), "--iters", str(a.iters)], check=True, capture_output=True, text=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            ctnet_ms.append(res["median_ms"])
            print(f"round {r + 1}: torch {torch_ms[-1]:.1f} ms, ctnet {ctnet_ms[-1]:.1f} ms "
                  f"({res['peak_fraction'] * 100:.0f}% of the measured FMA peak)")
    t, c = statistics.median(torch_ms), statistics.median(ctnet_ms)
    print(f"batch {a.batch}, {a.threads} threads: torch {t:.1f} ms, ctnet {c:.1f} ms, ctnet/torch = {c / t:.2f}")


if __name__ == "__main__":
    main()
