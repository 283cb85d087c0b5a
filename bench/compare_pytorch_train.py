#!/usr/bin/python3
"""Training throughput: ctnet against PyTorch, one training step, side by side in one run.

    /usr/bin/python3 bench/compare_pytorch_train.py path/to/ctnet [--model fashion|fashion_wide|inception_v3]
                     [--batch 64] [--threads 2] [--rounds 5] [--iters 5]

The step on both sides: forward in training mode (batch statistics, dropout, aux head),
cross-entropy with label smoothing 0.1 on the logits plus 0.4 x the aux head's, backward,
gradient clipping to norm 2.0, RMSProp (momentum 0.9, eps 1.0, weight decay 4e-5).
PyTorch: eager mode (autograd has no frozen/JIT training path), channels_last when --channels-last,
torch.set_num_threads(T), Debian's python3-torch. ctnet: `ctnet bench --train` (backend::cpu).
Rounds alternate the two; prints images/s per round and the ratio of the medians
(ctnet / torch; above 1 means ctnet is faster), then the median time of each phase on both
sides: forward and losses, backward, clipping and update (ctnet's update also checks that the
gradients and the new parameters are finite).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def torch_blas():
    """The BLAS Debian's torch loads (libblas.so.3's alternative). With only the reference BLAS
    (libblas3) torch's training convolutions run 3-5x slower than with OpenBLAS
    (libopenblas0-pthread): a comparison against that is not against PyTorch at its best."""
    path = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    return path, "openblas" in path or "blis" in path or "mkl" in path


def basic(cin, cout, k, s=1, p=0):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout, eps=0.001), nn.ReLU(inplace=True))


class Concat(nn.Module):
    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


class FashionNet(nn.Module):
    """apps/ctnet/fashion_net.hpp, fashion_net<> (factorized, BN-auxiliary), layer for layer;
    wide=True is fashion_net<{.wide = true}> (`ctnet train --wide`): 1.5x the channels after the stem."""

    def __init__(self, wide=False):
        super().__init__()
        w = 3 if wide else 2

        def c(n):  # apps/ctnet/fashion_net.hpp's ch<n, W>
            return n * w // 2

        self.stem = nn.Sequential(basic(1, 32, 3, 1, 1), basic(32, 32, 3, 1, 1))
        a_in = 32 + c(48)
        self.reduce_28_14 = Concat(basic(32, c(48), 3, 2, 1), nn.MaxPool2d(3, 2, 1))
        self.mixed_14 = Concat(basic(a_in, c(32), 1),
                               nn.Sequential(basic(a_in, c(24), 1), basic(c(24), c(32), 3, 1, 1)),
                               nn.Sequential(basic(a_in, c(24), 1), basic(c(24), c(24), 3, 1, 1), basic(c(24), c(32), 3, 1, 1)),
                               nn.Sequential(nn.AvgPool2d(3, 1, 1), basic(a_in, c(16), 1)))
        a_out = c(32) * 3 + c(16)
        self.aux = nn.Sequential(nn.AvgPool2d(5, 3), basic(a_out, 64, 1), basic(64, 128, 4), nn.Flatten(),
                                 nn.Linear(128, 10, bias=False), nn.BatchNorm1d(10, eps=0.001))
        self.reduce_14_7 = Concat(nn.Sequential(basic(a_out, c(64), 1), basic(c(64), c(96), 3, 2, 1)), nn.MaxPool2d(3, 2, 1))
        c_in = c(96) + a_out
        self.mixed_7 = Concat(basic(c_in, c(64), 1),
                              nn.Sequential(basic(c_in, c(48), 1), basic(c(48), c(48), (1, 7), 1, (0, 3)),
                                            basic(c(48), c(64), (7, 1), 1, (3, 0))),
                              nn.Sequential(nn.AvgPool2d(3, 1, 1), basic(c_in, c(32), 1)))
        self.fc = nn.Linear(c(160), 10)

    def forward(self, x):
        x = self.mixed_14(self.reduce_28_14(self.stem(x)))
        aux = self.aux(x) if self.training else None
        x = self.mixed_7(self.reduce_14_7(x))
        x = F.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), 0.2, self.training)
        return self.fc(x), aux


def torch_step_fn(model_name, batch, channels_last):
    if model_name.startswith("fashion"):
        model, shape, classes = FashionNet(wide=model_name == "fashion_wide"), (batch, 1, 28, 28), 10
    else:
        model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
        shape, classes = (batch, 3, 299, 299), 1000
    model.train()
    x = torch.randn(*shape)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,))
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-4, alpha=0.9, eps=1.0, momentum=0.9, weight_decay=4e-5)

    def step(phases=None):
        """One step; with a list, appends (forward and losses, backward, clipping and update) in seconds."""
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(x)
        logits, aux = (out.logits, out.aux_logits) if not model_name.startswith("fashion") else out
        loss = F.cross_entropy(logits, y, label_smoothing=0.1) + 0.4 * F.cross_entropy(aux, y, label_smoothing=0.1)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        if phases is not None:
            phases.append((t1 - t0, t2 - t1, time.perf_counter() - t2))

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ctnet")
    ap.add_argument("--model", default="fashion", choices=["fashion", "fashion_wide", "inception_v3"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--channels-last", action="store_true")
    a = ap.parse_args()
    blas, fast = torch_blas()
    print(f"torch's BLAS: {blas}" + ("" if fast else "  (the reference BLAS: install libopenblas0-pthread for a fair comparison)"))
    torch.set_num_threads(a.threads)
    step = torch_step_fn(a.model, a.batch, a.channels_last)
    step()  # warm-up
    ours, theirs = [], []
    our_phases, their_phases = [], []  # per round: medians of (forward, backward, update) in ms
    for r in range(a.rounds):
        out = subprocess.run([a.ctnet, "bench", "--train", "--model", a.model, "--batch", str(a.batch), "--threads",
                              str(a.threads), "--iters", str(a.iters)], check=True, capture_output=True, text=True)
        line = json.loads(out.stdout)
        ours.append(line["images_per_s"])
        if "forward_ms" in line:
            our_phases.append((line["forward_ms"], line["backward_ms"], line["update_ms"]))
        times, phases = [], []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            step(phases)
            times.append(time.perf_counter() - t0)
        theirs.append(a.batch / statistics.median(times))
        their_phases.append(tuple(1e3 * statistics.median(p[i] for p in phases) for i in range(3)))
        print(f"round {r + 1}: ctnet {ours[-1]:8.1f} img/s   torch {theirs[-1]:8.1f} img/s", flush=True)
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"{a.model} training, batch {a.batch}, {a.threads} threads: ctnet {statistics.median(ours):.1f} img/s, "
          f"torch {statistics.median(theirs):.1f} img/s, ctnet / torch = {ratio:.2f}")
    if our_phases:
        # Where the time goes: each phase's median over the rounds (of the per-round medians).
        print("phase (median ms)              ctnet     torch   torch / ctnet")
        names = ["forward + losses", "backward", "clipping + RMSProp"]
        for i, name in enumerate(names):
            o = statistics.median(p[i] for p in our_phases)
            t = statistics.median(p[i] for p in their_phases)
            print(f"{name:28s} {o:9.1f} {t:9.1f}   {t / o:6.2f}")

if __name__ == "__main__":
    main()
