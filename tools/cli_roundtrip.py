#!/usr/bin/python3
"""End-to-end check of `ctnet infer` and `ctnet classify` against torchvision, on fresh seeds.

    /usr/bin/python3 tools/cli_roundtrip.py path/to/ctnet WORK_DIR [--seed S]

Every run draws a new seed (printed, so a failure can be replayed with --seed): random weights
with random batch-norm statistics are exported, a random batch goes through `ctnet infer` and
through torchvision, and the logits and a block dumped with --dump-blocks must agree within
1e-4 relative. A PNG goes through `ctnet classify` and torchvision's preprocessing + model, and
the top-5 classes and probabilities must agree. Bad inputs must give a one-line error and
exit status 1, never a signal. Prints 'N passed, M failed'.
"""
import argparse
import os
import re
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import random_model, save_safetensors  # noqa: E402
from image_reference import PIPELINE, synthetic  # noqa: E402

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ctnet")
    ap.add_argument("work")
    ap.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "little"))
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    p = lambda name: os.path.join(a.work, name)  # noqa: E731
    print(f"cli round trip, seed {a.seed}")
    torch.set_num_threads(2)
    model = random_model(a.seed)
    save_safetensors(model.state_dict(), p("w.safetensors"))

    # infer: batch 2 at 75x75 (the smallest compiled size), with and without transform_input;
    # --dump-blocks writes every block's output (the debug path): Mixed_6e must agree too
    x = torch.randn(2, 3, 75, 75, generator=torch.Generator().manual_seed(a.seed))
    np.save(p("x.npy"), x.numpy())
    captured = {}
    model.Mixed_6e.register_forward_hook(lambda m, i, o: captured.__setitem__("Mixed_6e", o.numpy()))
    for transform in (False, True):
        model.transform_input = transform
        with torch.no_grad():
            want = model(x).numpy()
        os.makedirs(p("blocks"), exist_ok=True)
        cmd = [a.ctnet, "infer", "--model", "inception_v3", "--weights", p("w.safetensors"), "--input", p("x.npy"),
               "--output", p("y.npy"), "--dump-blocks", p("blocks")] + (["--transform-input"] if transform else [])
        r = run(cmd)
        check(f"infer exit status (transform_input={transform})", r.returncode == 0, r.stderr.strip())
        if r.returncode == 0:
            e = rel(np.load(p("y.npy")), want)
            check(f"infer logits vs torchvision (transform_input={transform})", e <= 1e-4, f"relative error {e:.3g}")
            e = rel(np.load(p("blocks/Mixed_6e.npy")), captured["Mixed_6e"])
            check(f"--dump-blocks Mixed_6e vs torchvision (transform_input={transform})", e <= 1e-4,
                  f"relative error {e:.3g}")
    model.transform_input = False

    # --threads 2 splits the batch and gives the same numbers
    r = run([a.ctnet, "infer", "--model", "inception_v3", "--weights", p("w.safetensors"), "--input", p("x.npy"),
             "--output", p("y2.npy"), "--threads", "2"])
    r1 = run([a.ctnet, "infer", "--model", "inception_v3", "--weights", p("w.safetensors"), "--input", p("x.npy"),
              "--output", p("y1.npy")])
    check("infer --threads 2 equals 1 thread", r.returncode == 0 and r1.returncode == 0 and
          np.array_equal(np.load(p("y2.npy")), np.load(p("y1.npy"))))

    # classify: a PNG through torchvision's preprocessing and the model with transform_input on.
    # The fc layer is scaled so that the logits' spread is about 3, and halved while one class
    # still takes 90 % or more (some seeds give one logit far above the rest): probabilities
    # spread out, so that the small ones are compared too.
    Image.fromarray(synthetic(500, 375, a.seed % 1000)).save(p("photo.png"))
    image = PIPELINE(Image.open(p("photo.png")).convert("RGB"))[None]
    model.transform_input = True
    with torch.no_grad():
        model.fc.bias.zero_()
        model.fc.weight.mul_(3.0 / float(model(image).std()))
        for _ in range(8):
            if float(torch.softmax(model(image), 1).max()) < 0.9:
                break
            model.fc.weight.mul_(0.5)
    save_safetensors(model.state_dict(), p("w_classify.safetensors"))
    with torch.no_grad():
        prob = torch.softmax(model(image), 1)[0]
    top = torch.topk(prob, 5)
    r = run([a.ctnet, "classify", "--weights", p("w_classify.safetensors"), p("photo.png")])
    check("classify exit status", r.returncode == 0, r.stderr.strip())
    rows = re.findall(r"^\s+([0-9.]+)%\s+(\d+)\s+(.+)$", r.stdout, re.M)
    got_idx = [int(i) for _, i, _ in rows]
    check("classify top-5 classes vs torchvision", got_idx == top.indices.tolist(), f"{got_idx} vs {top.indices.tolist()}")
    got_p = np.array([float(v) / 100 for v, _, _ in rows])
    check("classify top-5 probabilities vs torchvision", len(got_p) == 5 and
          np.abs(got_p - top.values.numpy()).max() < 1e-4 and top.values[0] < 0.9, f"{got_p} vs {top.values.numpy()}")
    check("classify prints class names", len(rows) == 5 and all(n.strip() for _, _, n in rows))

    # bad input: one line on stderr, exit status 1, no signal
    np.save(p("f64.npy"), np.zeros((1, 3, 75, 75)))
    np.save(p("fortran.npy"), np.asfortranarray(np.zeros((1, 3, 75, 75), np.float32)))
    np.save(p("rank3.npy"), np.zeros((3, 75, 75), np.float32))
    np.save(p("size.npy"), np.zeros((1, 3, 80, 80), np.float32))
    with open(p("x.npy"), "rb") as f:
        data = f.read()
    with open(p("trunc.npy"), "wb") as f:
        f.write(data[: len(data) // 2])
    with open(p("w.safetensors"), "rb") as f:
        head = f.read(4096)
    with open(p("trunc.safetensors"), "wb") as f:
        f.write(head)
    with open(p("notimage.png"), "w") as f:
        f.write("not an image\n")
    base = [a.ctnet, "infer", "--model", "inception_v3", "--output", p("bad_out.npy")]
    bad = {
        "float64 input": base + ["--weights", p("w.safetensors"), "--input", p("f64.npy")],
        "Fortran-order input": base + ["--weights", p("w.safetensors"), "--input", p("fortran.npy")],
        "rank-3 input": base + ["--weights", p("w.safetensors"), "--input", p("rank3.npy")],
        "uncompiled size": base + ["--weights", p("w.safetensors"), "--input", p("size.npy")],
        "truncated input": base + ["--weights", p("w.safetensors"), "--input", p("trunc.npy")],
        "truncated weights": base + ["--weights", p("trunc.safetensors"), "--input", p("x.npy")],
        "missing weights": base + ["--weights", p("nope.safetensors"), "--input", p("x.npy")],
        "not an image": [a.ctnet, "classify", "--weights", p("w.safetensors"), p("notimage.png")],
    }
    for name, cmd in bad.items():
        r = run(cmd)
        lines = r.stderr.strip().splitlines()
        check(f"bad input: {name}", r.returncode == 1 and len(lines) == 1, f"status {r.returncode}: {r.stderr.strip()}")

    # --check-finite: the layer that first produces a non-finite value is named, on both backends
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["Mixed_6b.branch7x7_2.conv.weight"][0, 0, 0, 3] = float("nan")  # the centre tap: 75x75 inputs give a 3x3 grid here
    save_safetensors(sd, p("w_nan.safetensors"))
    x_nan = x.clone()
    x_nan[1, 2, 10, 20] = float("inf")
    np.save(p("x_nan.npy"), x_nan.numpy())
    for backend in ("cpu", "reference"):
        r = run(base + ["--weights", p("w_nan.safetensors"), "--input", p("x.npy"), "--check-finite", "--backend", backend])
        lines = r.stderr.strip().splitlines()
        check(f"--check-finite names the layer ({backend})", r.returncode == 1 and len(lines) == 1 and
              "layer Mixed_6b.branch7x7_2.conv" in lines[0] and "first produced a non-finite value" in lines[0],
              r.stderr.strip())
        r = run(base + ["--weights", p("w.safetensors"), "--input", p("x_nan.npy"), "--check-finite", "--backend", backend])
        check(f"--check-finite names the input position ({backend})", r.returncode == 1 and
              "the input is not finite at sample 1, channel 2, position (10, 20): inf" in r.stderr, r.stderr.strip())
    r = run(base + ["--weights", p("w_nan.safetensors"), "--input", p("x.npy")])
    check("without --check-finite a NaN weight still runs (the check is opt-in)", r.returncode == 0, r.stderr.strip())

    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
