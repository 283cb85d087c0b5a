#!/usr/bin/python3
"""ctnet against the CPU peers — PyTorch's best variant and ONNX Runtime — side by side in one run.

    /usr/bin/python3 bench/compare_cpu.py path/to/ctnet [--batch 1] [--threads 2] [--rounds 5] [--iters 5]
                     [--no-ort] [--ort-profile PREFIX] [--per-layer] [--precisions fp32,bf16,int8]

--batch and --threads take comma-separated lists (--batch 1,8 --threads 1,2: every pair, one after
the other, then a summary table of all of them).

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
--per-layer: after the rounds, ctnet (`ctnet bench --profile`) and ONNX Runtime (its profiler,
`enableProfiling`) each time --iters passes per step / per node, after warm-up ones; per
torchvision layer and per block (the first part of the names: ORT's nodes keep torch's module
path, /Mixed_5b/branch1x1/..., ctnet's steps the program's, Mixed_5b.branch1x1.conv) the medians
of both side by side, with ctnet's ratio to ORT's. ORT's unnamed nodes (layout reorders) count
with the node before them; its average pool before a block's branch_pool conv (torchvision's
F.avg_pool2d) counts with that conv, as ctnet runs both as one step.
"""
import argparse
import glob
import itertools
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
    ap.add_argument("--batch", default="1", help="batch sizes, comma-separated")
    ap.add_argument("--threads", default="2", help="thread counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--no-ort", action="store_true", help="PyTorch only")
    ap.add_argument("--ort-profile", metavar="PREFIX", help="also write ORT's per-node profile (one extra run)")
    ap.add_argument("--per-layer", action="store_true", help="per-layer and per-block times of ctnet and ORT, side by side")
    ap.add_argument("--precisions", default="fp32", help="ctnet's precisions, comma-separated: fp32,bf16,int8")
    a = ap.parse_args()
    if a.per_layer and a.no_ort:
        sys.exit("--per-layer compares with ONNX Runtime: not with --no-ort")
    blas, fast = torch_blas()
    print(f"torch's BLAS: {blas}" + ("" if fast else "  (the reference BLAS: install libopenblas0-pthread for a fair comparison)"))
    results = []
    for batch in (int(b) for b in a.batch.split(",")):
        for threads in (int(t) for t in a.threads.split(",")):
            print(f"== batch {batch}, {threads} thread{'s' if threads > 1 else ''}", flush=True)
            results.append(compare(a, batch, threads))
    if len(results) > 1:
        names = list(results[0]["peers"])
        print("\n| batch | threads | ctnet | " + " | ".join(names) + " | ctnet / best peer |")
        print("|---|---|---|" + "---|" * len(names) + "---|")
        for r in results:
            print(f"| {r['batch']} | {r['threads']} | {r['ctnet']:.1f} ms | "
                  + " | ".join(f"{r['peers'][k]:.1f} ms" for k in names) + f" | {r['ratio']:.2f} |")


def compare(a, batch, threads):
    """One batch size and thread count: every engine's rounds (and --per-layer's profiles);
    returns the medians."""
    torch.set_num_threads(threads)
    model = random_model(7)
    model.aux_logits, model.AuxLogits = False, None
    x = torch.randn(batch, 3, 299, 299, generator=torch.Generator().manual_seed(1))

    work = tempfile.TemporaryDirectory()
    ort = None if a.no_ort else ort_engine(model, x, work.name, a, threads)
    # The same numbers first.
    with tempfile.TemporaryDirectory() as d, torch.no_grad():
        full = random_model(7)
        save_safetensors(full.state_dict(), os.path.join(d, "w.safetensors"))
        np.save(os.path.join(d, "x.npy"), x.numpy())
        subprocess.run([a.ctnet, "infer", "--model", "inception_v3", "--weights", os.path.join(d, "w.safetensors"),
                        "--input", os.path.join(d, "x.npy"), "--output", os.path.join(d, "y.npy"),
                        "--threads", str(threads)], check=True, capture_output=True)
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
            out = subprocess.run([a.ctnet, "bench", "--model", "inception_v3", "--batch", str(batch), "--threads",
                                  str(threads), "--iters", str(a.iters)], check=True, capture_output=True, text=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            ctnet_ms.append(res["median_ms"])
            line = (f"round {r + 1}: torch {torch_ms[-1]:.1f} ms, ctnet {ctnet_ms[-1]:.1f} ms "
                    f"({res['peak_fraction'] * 100:.0f}% of the measured FMA peak)")
            if ort:
                ort_ms.append(ort["time"]())
                line += f", onnxruntime {ort_ms[-1]:.1f} ms"
            for p in extra:
                out = subprocess.run([a.ctnet, "bench", "--model", "inception_v3", "--batch", str(batch), "--threads",
                                      str(threads), "--iters", str(a.iters), "--precision", p], check=True,
                                     capture_output=True, text=True)
                low_ms[p].append(json.loads(out.stdout.strip().splitlines()[-1])["median_ms"])
                line += f", ctnet {p} {low_ms[p][-1]:.1f} ms"
            print(line, flush=True)
    c = statistics.median(ctnet_ms)
    peers = {"torch": statistics.median(torch_ms)}
    if ort:
        peers["onnxruntime"] = statistics.median(ort_ms)
    best = min(peers, key=peers.get)
    print(f"batch {batch}, {threads} threads, medians: ctnet {c:.1f} ms, "
          + ", ".join(f"{k} {v:.1f} ms (ctnet/{k} = {c / v:.2f})" for k, v in peers.items())
          + f"; ctnet / best peer ({best}) = {c / peers[best]:.2f}")
    for p in extra:
        m = statistics.median(low_ms[p])
        print(f"ctnet {p}: {m:.1f} ms, {c / m:.2f}x ctnet fp32's throughput, {m / peers[best]:.2f} of the best peer's time")
    if a.per_layer:
        per_layer(a, batch, threads, ort, work.name)
    return {"batch": batch, "threads": threads, "ctnet": c, "peers": peers, "ratio": c / peers[best]}


def ort_engine(model, x, d, a, threads):
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
    base = ["node", run_js, onnx_path, x_path, y_path, "--threads", str(threads)]
    subprocess.run(base, check=True, capture_output=True, env=env)

    profiles = itertools.count()

    def profile(prefix, iters=1, warmup=0):
        """Runs with ORT's profiler on; returns the path of its JSON trace (ORT names it PREFIX_<date>.json)."""
        prefix = f"{prefix}_{os.getpid()}_{next(profiles)}"  # ORT's file name has the date to the second only
        before = set(glob.glob(glob.escape(prefix) + "_*.json"))
        subprocess.run(base + ["--profile", prefix, "--iters", str(iters), "--warmup", str(warmup)], check=True,
                       capture_output=True, env=env)
        return max(set(glob.glob(glob.escape(prefix) + "_*.json")) - before, key=os.path.getmtime)

    if a.ort_profile and not a.per_layer:  # --per-layer writes it there
        print(f"ONNX Runtime's per-node profile: {profile(f'{a.ort_profile}_b{x.shape[0]}_t{threads}')}")

    def time_it():
        out = subprocess.run(base + ["--iters", str(a.iters), "--warmup", "2"], check=True, capture_output=True,
                             text=True, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])["median_ms"]

    return {"logits": np.load(y_path), "version": version, "time": time_it, "profile": profile}


def layer_name(name):
    """A torchvision layer's name from a ctnet step's (Mixed_5b.branch1x1.conv) or an ORT node's
    module path (Mixed_5b.branch1x1, or Mixed_5b.branch1x1.conv where ORT kept the Conv node's
    own name): without a trailing .conv / .bn, so both sides meet."""
    for tail in (".conv", ".bn"):
        if name.endswith(tail):
            return name[: -len(tail)]
    return name


def ort_layers(trace, warmup):
    """ORT's profile: for each run after the first `warmup`, {torchvision layer: ms} (node times
    summed; layer: the node name's module path, /Mixed_5b/branch1x1/Relu_output_0_nchwc ->
    Mixed_5b.branch1x1), and the runs' wall times (model_run)."""
    with open(trace) as f:
        events = json.load(f)
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    runs = runs[warmup:]
    nodes = sorted((e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")),
                   key=lambda e: e["ts"])
    per_run = []
    for t0, t1 in runs:
        seq = []  # (layer or None, ms) in execution order
        for e in nodes:
            if not t0 <= e["ts"] <= t1:
                continue
            name = e["name"][: -len("_kernel_time")]
            layer = None
            if name.startswith("/"):
                parts = name.strip("/").split("/")
                layer = layer_name(".".join(parts[:-1]) or parts[0])
                if e["args"].get("op_name") == "AveragePool" and layer.startswith("Mixed_") and "." not in layer:
                    layer += ".branch_pool"  # F.avg_pool2d before branch_pool: one step in ctnet
            seq.append([layer, e["dur"] / 1e3])
        named = [l for l, _ in seq if l]
        prev = named[0] if named else "?"
        layers = {}
        for l, ms in seq:  # unnamed nodes (reorders) with the node before them
            prev = l or prev
            layers[prev] = layers.get(prev, 0.0) + ms
        per_run.append(layers)
    return per_run, [(t1 - t0) / 1e3 for t0, t1 in runs]


def per_layer(a, batch, threads, ort, work):
    """ctnet's and ORT's per-layer, per-block and per-kind medians side by side (--per-layer)."""
    out = subprocess.run([a.ctnet, "bench", "--model", "inception_v3", "--batch", str(batch), "--threads",
                          str(threads), "--iters", str(a.iters), "--profile"], check=True, capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    c_layers, kinds = {}, {}
    for name, kind, ms in res["step_ms"]:
        layer = layer_name(name)
        c_layers[layer] = c_layers.get(layer, 0.0) + ms
        kinds[layer] = kind
    prefix = f"{a.ort_profile}_b{batch}_t{threads}" if a.ort_profile else os.path.join(work, "ort_profile")
    trace = ort["profile"](prefix, a.iters, 2)
    runs, walls = ort_layers(trace, 2)
    if not runs:
        sys.exit(f"ONNX Runtime's trace {trace} has no timed runs (model_run events after the 2 warm-up ones)")
    o_layers = {l: statistics.median(r.get(l, 0.0) for r in runs) for l in runs[0]}

    def block(layer):
        return layer.split(".")[0]

    # Rows in run order: ctnet's, with ORT's own (a block's Concat, Flatten) after their block's last.
    order = list(c_layers)
    for l in o_layers:
        if l not in c_layers:
            at = max((i for i, k in enumerate(order) if block(k) == block(l)), default=len(order) - 1)
            order.insert(at + 1, l)
    blocks = list(dict.fromkeys(block(l) for l in order))
    c_blocks = res["profile_ms"]
    o_blocks = {b: statistics.median(sum(ms for l, ms in r.items() if block(l) == b) for r in runs) for b in blocks}
    o_blocks = {b: ms for b, ms in o_blocks.items() if any(block(l) == b for l in o_layers)}
    kind_of = {l: kinds.get(l, "ORT only (Concat, Flatten)") for l in order}
    for l in order:  # by kind, without the stride / precision detail: "conv 3x3 winograd 4x4", "max_pool 3x3/2"
        kind_of[l] = kind_of[l].replace(" + avg_pool 3x3", " + avg_pool")
    k_names = list(dict.fromkeys(kind_of[l] for l in order))
    c_kinds = {k: sum(c_layers.get(l, 0.0) for l in order if kind_of[l] == k) for k in k_names}
    o_kinds = {k: sum(o_layers.get(l, 0.0) for l in order if kind_of[l] == k) for k in k_names}
    count = {k: sum(1 for l in order if kind_of[l] == k) for k in k_names}

    def table(what, keys, rows_c, rows_o, label=str):
        print(f"\nper {what}: ctnet (`ctnet bench --profile`, median of {a.iters} passes) against ONNX Runtime "
              f"(its profiler, median of {len(runs)} runs), batch {batch}, {threads} thread{'s' if threads > 1 else ''}")
        print(f"| {what} | ctnet ms | ORT ms | ctnet / ORT | ctnet - ORT ms |")
        print("|---|---|---|---|---|")
        for k in keys:
            c, o = rows_c.get(k), rows_o.get(k)
            ratio = f"{c / o:.2f}" if c and o else "-"
            print(f"| {label(k)} | {'-' if c is None else f'{c:.2f}'} | {'-' if o is None else f'{o:.2f}'} | {ratio} "
                  f"| {(c or 0) - (o or 0):+.2f} |")
        tc, to = sum(rows_c.values()), sum(rows_o.values())
        print(f"| total (sum) | {tc:.2f} | {to:.2f} | {f'{tc / to:.2f}' if to else '-'} | {tc - to:+.2f} |")

    table("layer", order, c_layers, o_layers, lambda l: f"{l} ({kind_of[l]})")
    table("block", blocks, c_blocks, o_blocks)
    table("kind (ctnet's step kinds)", sorted(k_names, key=lambda k: c_kinds[k] - o_kinds[k], reverse=True),
          c_kinds, o_kinds, lambda k: f"{k} (x{count[k]})")
    print(f"whole passes while profiling: ctnet {res['median_ms']:.1f} ms (its untimed passes before), "
          f"ORT {statistics.median(walls):.1f} ms (profiler on); ORT trace: {trace}")

if __name__ == "__main__":
    main()
