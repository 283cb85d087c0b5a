#!/usr/bin/env python3
"""Peak resident memory of `ctnet infer` (Inception v3, backend::cpu) against issue #4's target.

    /usr/bin/python3 bench/peak_memory.py build/apps/ctnet/ctnet [--batch N] [--threads T]

Writes seeded random weights (tools/export_torchvision.py) and a random input into a temporary
folder, runs `ctnet infer` once, and reads the child's peak resident set size (getrusage). The
target is the weights (float32 bytes of every parameter) + the planned activation arena at that
batch (both from `ctnet summary inception_v3`) + 30 MB. Prints one JSON line; exits 1 when the
target is missed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ctnet")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    summary = subprocess.run([a.ctnet, "summary", "inception_v3"], check=True, capture_output=True, text=True).stdout
    params = int(re.search(r"params +([\d,]+)", summary).group(1).replace(",", ""))
    arena = int(re.search(r"activations +([\d,]+) bytes / sample planned", summary).group(1).replace(",", ""))
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as d:
        w, x, y = (os.path.join(d, n) for n in ("w.safetensors", "x.npy", "y.npy"))
        subprocess.run([sys.executable, os.path.join(here, "..", "tools", "export_torchvision.py"), "--seed", "7", w],
                       check=True, capture_output=True)
        np.save(x, np.random.default_rng(0).standard_normal((a.batch, 3, 299, 299), dtype=np.float32))
        # In a fresh process whose only child is ctnet infer: ru_maxrss of children is the largest
        # child's, and the exporter (torch) above is much larger.
        probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", probe, a.ctnet, "infer", "--model", "inception_v3", "--weights", w,
                              "--input", x, "--output", y, "--threads", str(a.threads)],
                             check=True, capture_output=True, text=True).stdout
        peak_kib = int(out.split()[-1])
    mb = 1e6
    target = params * 4 + arena * a.batch + 30 * mb
    result = {"batch": a.batch, "threads": a.threads, "peak_rss_mb": round(peak_kib * 1024 / mb, 1),
              "weights_mb": round(params * 4 / mb, 1), "arena_mb": round(arena * a.batch / mb, 1),
              "target_mb": round(target / mb, 1), "met": peak_kib * 1024 <= target}
    print(json.dumps(result))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
