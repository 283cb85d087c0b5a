#!/usr/bin/python3
"""The paper's Table 3 on Fashion-MNIST: each row one real `ctnet train` run, cumulative.

    /usr/bin/python3 tools/ablation.py CTNET OUT_DIR [--epochs 4] [--threads 2]

Rows: baseline (SGD with momentum, no label smoothing, unfactorized 5x5 / 7x7, plain aux head),
then + RMSProp, + label smoothing, + factorized convolutions, + BN-auxiliary. Every other
setting is the same in every row (seed, schedule, batch, augmentation, clipping, moving average).
Writes OUT_DIR/ROW/ (log.csv, curve.svg, checkpoint) and prints a Markdown table with each
row's command, final test accuracy (moving average and raw) and wall time.
"""
import argparse
import csv
import os
import subprocess
import time

ROWS = [
    ("baseline (SGD, unfactorized, plain aux)", ["--optimizer", "sgd", "--smoothing", "0", "--no-factorized", "--no-bn-aux"]),
    ("+ RMSProp", ["--smoothing", "0", "--no-factorized", "--no-bn-aux"]),
    ("+ label smoothing", ["--no-factorized", "--no-bn-aux"]),
    ("+ factorized convolutions", ["--no-bn-aux"]),
    ("+ BN-auxiliary", []),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ctnet")
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--common", default="--lr-decay 0.5 --decay-epochs 1")  # short runs: anneal fast
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    lines = ["| row | command | test accuracy (EMA) | raw | wall time |", "|---|---|---|---|---|"]
    for i, (name, flags) in enumerate(ROWS):
        out = os.path.join(a.out, f"row{i}")
        cmd = [a.ctnet, "train", "--epochs", str(a.epochs), "--threads", str(a.threads), *a.common.split(), *flags,
               "--out", out]
        t0 = time.time()
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        secs = time.time() - t0
        with open(os.path.join(out, "log.csv")) as f:
            last = list(csv.DictReader(f))[-1]
        shown = " ".join(c if not c.startswith("/") else os.path.basename(c) for c in cmd[1:])
        lines.append(f"| {name} | `ctnet {shown}` | {float(last['test_acc']):.2f} % | "
                     f"{float(last['test_acc_raw']):.2f} % | {secs / 60:.1f} min |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
