#!/usr/bin/python3
"""`ctnet train` end to end on a slice of Fashion-MNIST.

    /usr/bin/python3 tests/train_cli_test.py CTNET WORK_DIR

1. Resume is exact: 2 epochs in one run, and 1 epoch + `--resume` to 2, give byte-identical
   checkpoints (weights, optimizer state, moving average and its update count, counters) and
   final weights. The count is what the warm-up's decay depends on: it is checked by value too.
2. Resuming with other settings is refused, naming both configurations.
3. A learning rate that explodes in epoch 2 stops training with a message naming the non-finite
   value; the checkpoint of epoch 1 is kept and still loads.
4. Truncated or corrupted checkpoints give a one-line error and exit 1, never a signal.
5. The log, the curve and the progress line exist and say what they should; every test accuracy
   printed names the weights it is for.
6. --ema-warmup: recorded in the settings; a checkpoint from before the warm-up (format 1, fixed
   decay) resumes with --ema-warmup off and is refused, with that hint, without it.
7. Bad option values are usage errors (exit 2) that name the option, before anything is written;
   the start-up line gives the threads per process.
"""
import json
import os
import re
import shutil
import subprocess
import sys

ctnet, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
small = ["--limit", "192", "--test-limit", "100", "--batch", "32", "--threads", "2"]
failures = []


def run(*args, expect=0):
    p = subprocess.run([ctnet, "train", *small, *args], capture_output=True, text=True)
    if p.returncode != expect:
        failures.append(f"exit {p.returncode}, expected {expect}: ctnet train {' '.join(args)}\n{p.stderr[-2000:]}")
    if p.returncode < 0:
        failures.append(f"killed by signal {-p.returncode}: {' '.join(args)}")
    return p


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def header(data):
    """A safetensors file's JSON header."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n])


def with_header(data, h):
    """The file with another JSON header (data offsets are relative to the data section)."""
    n = int.from_bytes(data[:8], "little")
    text = json.dumps(h, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data 8-byte aligned, as ctnet writes it
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


a, b = os.path.join(work, "a"), os.path.join(work, "b")
run("--epochs", "2", "--out", a)
run("--epochs", "1", "--out", b)
p = run("--epochs", "2", "--resume", "--out", b)
check("resuming" in p.stderr and "after epoch 1" in p.stderr, "resume announces where it continues")
meta_a = header(read(os.path.join(a, "checkpoint.safetensors")))["__metadata__"]
meta_b = header(read(os.path.join(b, "checkpoint.safetensors")))["__metadata__"]
# 6 steps per epoch; the first update only initialises the average (before step 1): 12 averaging updates.
check(meta_a.get("ema_updates") == "12" and meta_b.get("ema_updates") == "12",
      f"the moving average's update count is saved and carried across the resume ({meta_a.get('ema_updates')}, "
      f"{meta_b.get('ema_updates')})")
check(meta_a.get("format") == "ctnet-checkpoint 2" and " ema=0.999 ema_warmup=1 " in meta_a.get("config", ""),
      "format 2; the settings record the warm-up")
line = re.search(r"^epoch 2: .*$", p.stdout, re.MULTILINE)
check(line is not None and re.search(r"test acc [0-9.]+% \(moving average\), [0-9.]+% \(raw weights\)", line[0]),
      f"the epoch line names the weights of each test accuracy ({line[0] if line else p.stdout!r})")
check(re.search(r"^final weights \(moving average, saved to .*/weights\.safetensors\): test acc [0-9.]+%, "
                r"[0-9.]+% with flip averaging", p.stdout, re.MULTILINE) is not None,
      "the final line names the weights (moving average) and where they are saved")
check(read(os.path.join(a, "checkpoint.safetensors")) == read(os.path.join(b, "checkpoint.safetensors")),
      "2 epochs == 1 epoch + resume: checkpoints byte-identical")
check(read(os.path.join(a, "weights.safetensors")) == read(os.path.join(b, "weights.safetensors")),
      "2 epochs == 1 epoch + resume: final weights byte-identical")
log = open(os.path.join(b, "log.csv")).read().splitlines()
check(log[0].startswith("epoch,step,lr,train_loss") and len(log) == 3 and log[2].startswith("2,12,"),
      "log.csv has a header and one row per epoch, steps counted across the resume")
check(open(os.path.join(b, "curve.svg")).read().startswith("<svg"), "curve.svg is an SVG picture")
check("img/s" in p.stderr and "ETA" in p.stderr and "loss" in p.stderr, "progress line shows img/s, loss and ETA")
check("ctnet train: 1 process, 2 threads per process" in p.stderr, "the start-up line gives the threads (--threads 2)")

p = run("--epochs", "3", "--resume", "--lr", "0.1", "--out", b, expect=1)
check("was made with" in p.stderr and "lr=0.045" in p.stderr and "lr=0.1" in p.stderr,
      "resume with other settings is refused, naming both")
p = run("--epochs", "3", "--resume", "--ema-warmup", "off", "--out", b, expect=1)
check("was made with" in p.stderr and "ema_warmup=1" in p.stderr, "resume with the warm-up switched off is refused")
p = run("--epochs", "3", "--resume", "--no-factorized", "--out", b, expect=1)
check("was made with" in p.stderr and "factorized=1" in p.stderr and "factorized=0" in p.stderr,
      "resume as another model variant is refused by its settings, not by a tensor's size")

# usage errors (exit status 2), each naming its option
for flag, value, says in [("--decay-epochs", "0", "--decay-epochs: must be positive"), ("--lr", "-1", "--lr: must be positive"),
                          ("--ema", "1", "--ema: must be in [0, 1)"), ("--lr", "nan", "--lr: expects a number"),
                          ("--ema-warmup", "no", "--ema-warmup: no not in {on,off}"), ("--batch", "1", "--batch: must be at least 2"),
                          ("--threads", "0", "--threads: must be at least 1"), ("--epochs", "x", "--epochs: 'x' is not an integer"),
                          ("--bogus", "1", "--bogus")]:
    p = run(flag, value, "--out", os.path.join(work, "bad"), expect=2)
    check(says in p.stderr and not os.path.exists(os.path.join(work, "bad", "checkpoint.safetensors")),
          f"{flag} {value} is refused before training: {says}")

c = os.path.join(work, "c")
p = run("--epochs", "3", "--lr-decay", "1e30", "--decay-epochs", "1", "--out", c, expect=1)
check("stopped in epoch 2" in p.stderr and "non-finite" in p.stderr, "exploding run stops with a clear message")
check("last good checkpoint" in p.stderr and "after epoch 1" in p.stderr, "it names the last good checkpoint")
p = run("--epochs", "1", "--resume", "--lr-decay", "1e30", "--decay-epochs", "1", "--out", c)
check(p.returncode == 0, "the last good checkpoint (epoch 1) still loads")

# Cosine: 6 steps per epoch here, so epoch 2 starts at step 6 of 12, half-way: half the rate.
e = os.path.join(work, "e")
p = run("--epochs", "2", "--schedule", "cosine", "--out", e)
rates = [float(l.split(",")[2]) for l in open(os.path.join(e, "log.csv")).read().splitlines()[1:]]
check(len(rates) == 2 and abs(rates[0] - 0.045) < 1e-9 and abs(rates[1] - 0.0225) < 1e-6,
      f"cosine schedule: epoch rates 0.045, 0.0225 ({rates})")
check("with flip averaging" in p.stdout, "the final weights are evaluated plain and with flip averaging")
p = run("--epochs", "3", "--schedule", "cosine", "--resume", "--out", e, expect=1)
check("was made with" in p.stderr and "epochs=2" in p.stderr and "epochs=3" in p.stderr,
      "a cosine run resumed with another length is refused (its rates would change)")
p = run("--schedule", "linear", "--out", os.path.join(work, "bad"), expect=2)
check("--schedule: linear not in {step,cosine}" in p.stderr, "an unknown schedule is refused")

# Without the warm-up: the fixed decay, nothing recorded beyond "ema=0.999" (as before the warm-up
# existed), and a different average from the same raw weights.
f = os.path.join(work, "f")
p = run("--epochs", "1", "--ema-warmup", "off", "--out", f)
meta_f = header(read(os.path.join(f, "checkpoint.safetensors")))["__metadata__"]
check("ema_warmup" not in meta_f["config"] and meta_f.get("ema_updates") == "6", "--ema-warmup off: the old settings")
check(re.search(r"\(moving average\), ([0-9.]+)% \(raw", p.stdout) is not None,
      "--ema-warmup off still evaluates the moving average and the raw weights")

# A checkpoint from before the warm-up (format 1: no ema_updates, no ema_warmup in the settings).
g = os.path.join(work, "g")
os.makedirs(g)
old = read(os.path.join(f, "checkpoint.safetensors"))
h = header(old)
h["__metadata__"]["format"] = "ctnet-checkpoint 1"
del h["__metadata__"]["ema_updates"]
with open(os.path.join(g, "checkpoint.safetensors"), "wb") as out:
    out.write(with_header(old, h))
shutil.copy(os.path.join(f, "log.csv"), g)
p = run("--epochs", "2", "--resume", "--out", g, expect=1)
check("was made with" in p.stderr and "resume it with --ema-warmup off" in p.stderr,
      "a format-1 checkpoint resumed with the warm-up is refused, with the hint")
p = run("--epochs", "2", "--resume", "--ema-warmup", "off", "--out", g)
check(p.returncode == 0 and header(read(os.path.join(g, "checkpoint.safetensors")))["__metadata__"].get("ema_updates") == "12",
      "a format-1 checkpoint resumes with --ema-warmup off (count = optimizer steps) and is saved as format 2")

ck = read(os.path.join(a, "checkpoint.safetensors"))
d = os.path.join(work, "d")
for name, data in [("truncated", ck[: len(ck) // 2]), ("empty", b""), ("header", ck[:8] + b"x" + ck[9:]),
                   ("format", ck.replace(b"ctnet-checkpoint 2", b"ctnet-checkpoint 9")),
                   ("counter", ck.replace(b'"epoch":"2"', b'"epoch":"x"'))]:
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "checkpoint.safetensors"), "wb") as f:
        f.write(data)
    shutil.copy(os.path.join(a, "log.csv"), d)
    p = run("--epochs", "3", "--resume", "--out", d, expect=1)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    check(p.returncode == 1 and len(lines) == 1 and "checkpoint.safetensors" in lines[0],
          f"{name} checkpoint: one-line error naming the file ({lines[0] if lines else ''})")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("train cli: all checks passed")
