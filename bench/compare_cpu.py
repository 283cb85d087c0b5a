#!/usr/bin/python3
"""ctnet against the CPU peers — PyTorch's best variant and ONNX Runtime — side by side in one run.

    /usr/bin/python3 bench/compare_cpu.py path/to/ctnet [--batch 1] [--threads 2] [--rounds 5] [--iters 5]
                     [--no-ort] [--ort-profile PREFIX] [--precisions fp32,bf16,int8]

PyTorch: torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model))) in
channels_last, torch.set_num_threads(T) (Debian's python3-torch, oneDNN). ONNX Runtime: npm's
onnxruntime-node (tools/ort/install.sh puts it in a cache folder on first use; CTNET_ORT_VERSION
picks the version), intraOpNumThreads = T, graph optimisation level "all", on the ONNX file
Debian's torch exports from the same torchvision model (eval mode, batch norm folded by the
exporter, static batch). ctnet: `ctnet bench` (backend cpu). Rounds alternate the engines, so all
see the same machine state. Before timing, all run the same weights and input and the logits
must agree (relative error <= 1e-4). Prints one line per round, each engine's median and
ctnet's ratio to each peer and to the best of them (below 1: ctnet is faster). --precisions adds
ctnet's bf16 and int8 passes (`ctnet bench --precision P`, docs/precision.md; the peers stay
fp32) to every round, with their speed-up over ctnet fp32.
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


def torch_blas():
    """The BLAS Debian's torch loads (libblas.so.3's alternative). With only the reference BLAS
    (libblas3) torch's training convolutions run 3-5x slower than with OpenBLAS
    (libopenblas0-pthread): a comparison against that is not against PyTorch at its best."""
    path = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    return path, "openblas" in path or "blis" in path or "mkl" in path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ctnet")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--no-ort", action="store_true", help="PyTorch only")
    ap.add_argument("--ort-profile", metavar="PREFIX", help="also write ORT's per-node profile (one extra run)")
    ap.add_argument("--precisions", default="fp32", help="ctnet's precisions, comma-separated: fp32,bf16,int8")
    a = ap.parse_args()
    blas, fast = torch_blas()
    print(f"torch's BLAS: {blas}" + ("" if fast else "  (the reference BLAS: install libopenblas0-pthread for a fair comparison)"))
    torch.set_num_threads(a.threads)
    model = random_model(7)
    model.aux_logits, model.AuxLogits = False, None
    x = torch.randn(a.batch, 3, 299, 299, generator=torch.Generator().manual_seed(1))

    work = tempfile.TemporaryDirectory()
    ort = None if a.no_ort else ort_engine(model, x, work.name, a)
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
    print(f"outputs agree: ctnet against torch, relative error {err:.3g}")
    if err > 1e-4:
        sys.exit("ctnet and torch disagree")
    if ort:
        e = float(np.abs(ort["logits"] - want).max() / np.abs(want).max())
        print(f"outputs agree: ONNX Runtime {ort['version']} against torch, relative error {e:.3g}")
        if e > 1e-4:
            sys.exit("ONNX Runtime and torch disagree")

    with torch.no_grad():
        mc = model.to(memory_format=torch.channels_last)
        xc = x.to(memory_format=torch.channels_last)
        best = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(mc, xc).eval()))
        for _ in range(3):
            best(xc)
        torch_ms, ctnet_ms, ort_ms = [], [], []
        extra = [p for p in a.precisions.split(",") if p != "fp32"]
        low_ms = {p: [] for p in extra}
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
            line = (f"round {r + 1}: torch {torch_ms[-1]:.1f} ms, ctnet {ctnet_ms[-1]:.1f} ms "
                    f"({res['peak_fraction'] * 100:.0f}% of the measured FMA peak)")
            if ort:
                ort_ms.append(ort["time"]())
                line += f", onnxruntime {ort_ms[-1]:.1f} ms"
            for p in extra:
                out = subprocess.run([a.ctnet, "bench", "--model", "inception_v3", "--batch", str(a.batch), "--threads",
                                      str(a.threads), "--iters", str(a.iters), "--precision", p], check=True,
                                     capture_output=True, text=True)
                low_ms[p].append(json.loads(out.stdout.strip().splitlines()[-1])["median_ms"])
                line += f", ctnet {p} {low_ms[p][-1]:.1f} ms"
            print(line, flush=True)
    c = statistics.median(ctnet_ms)
    peers = {"torch": statistics.median(torch_ms)}
    if ort:
        peers["onnxruntime"] = statistics.median(ort_ms)
    best = min(peers, key=peers.get)
    print(f"batch {a.batch}, {a.threads} threads, medians: ctnet {c:.1f} ms, "
          + ", ".join(f"{k} {v:.1f} ms (ctnet/{k} = {c / v:.2f})" for k, v in peers.items())
          + f"; ctnet / best peer ({best}) = {c / peers[best]:.2f}")
    for p in extra:
        m = statistics.median(low_ms[p])
        print(f"ctnet {p}: {m:.1f} ms, {c / m:.2f}x ctnet fp32's throughput, {m / peers[best]:.2f} of the best peer's time")


def ort_engine(model, x, d, a):
    """Exports the model to ONNX, installs onnxruntime-node if needed, runs it once on x; returns
    its logits, version and a function that times a.iters runs (after 2 warm-up runs) and returns
    the median in ms."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    onnx_path, x_path, y_path = (os.path.join(d, f) for f in ("m.onnx", "x.npy", "y_ort.npy"))
    with torch.no_grad():
        torch.onnx.export(model.eval(), x, onnx_path, opset_version=13, do_constant_folding=True,
                          input_names=["x"], output_names=["logits"])
    np.save(x_path, x.numpy())
    ort_dir = subprocess.run(["bash", os.path.join(root, "tools", "ort", "install.sh")], check=True,
                             capture_output=True, text=True).stdout.strip()
    env = dict(os.environ, CTNET_ORT_DIR=ort_dir)
    with open(os.path.join(ort_dir, "node_modules", "onnxruntime-node", "package.json")) as f:
        version = json.load(f)["version"]
    run_js = os.path.join(root, "tools", "ort", "run.js")
    base = ["node", run_js, onnx_path, x_path, y_path, "--threads", str(a.threads)]
    subprocess.run(base, check=True, capture_output=True, env=env)
    if a.ort_profile:
        out = subprocess.run(base + ["--profile", a.ort_profile], check=True, capture_output=True, text=True, env=env)
        print(f"ONNX Runtime's per-node profile: {out.stdout.strip().splitlines()[-1]}")

    def time_it():
        out = subprocess.run(base + ["--iters", str(a.iters), "--warmup", "2"], check=True, capture_output=True,
                             text=True, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])["median_ms"]

    return {"logits": np.load(y_path), "version": version, "time": time_it}


if __name__ == "__main__":
    main()
