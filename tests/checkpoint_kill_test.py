#!/usr/bin/python3
"""Crash-safe checkpoints: SIGKILL `ctnet train` at random moments, many times.

    /usr/bin/python3 tests/checkpoint_kill_test.py CTNET WORK_DIR [ROUNDS]

Training on a tiny slice (one step per epoch) writes a checkpoint every ~0.1 s. Odd rounds kill
at a random moment; even rounds watch the folder and kill a random 0-3 ms after a temporary
file appears, i.e. while a save is under way (a leftover temporary file proves it). After every kill the checkpoint must load completely (`--resume --epochs 0`
loads and checks every tensor and counter, then exits), and the next round resumes from it.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import time

ctnet, work = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 30
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
args = ["--limit", "32", "--test-limit", "20", "--batch", "32", "--threads", "1", "--out", work]
ck = os.path.join(work, "checkpoint.safetensors")
rng = random.Random(int.from_bytes(os.urandom(4), "little"))
print(f"checkpoint kill test: seed {rng.random()}")
epochs_seen, kills, during_save = [], 0, 0
ck_tmp = os.path.basename(ck) + ".tmp-"
r = 0
while r < rounds:
    r += 1
    resume = ["--resume"] if os.path.exists(ck) else []
    p = subprocess.Popen([ctnet, "train", "--epochs", "100000", *args, *resume],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(rng.uniform(1.0, 2.5) if r % 2 else rng.uniform(0.5, 1.0))
    if r % 2 == 0:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not any(f.startswith(ck_tmp) for f in os.listdir(work)):
            time.sleep(0.0002)
        time.sleep(rng.uniform(0.0, 0.003))
    if p.poll() is not None:
        print("training ended early:\n" + p.stderr.read())
        sys.exit(1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    kills += 1
    torn = [f for f in os.listdir(work) if ".tmp-" in f]  # log.csv / curve.svg / checkpoint being written
    if any(f.startswith(ck_tmp) for f in torn):  # killed while the checkpoint was being written: what this test is after
        during_save += 1
        for f in torn:
            os.remove(os.path.join(work, f))
    if not os.path.exists(ck):
        continue  # killed before the first epoch ended
    q = subprocess.run([ctnet, "train", "--epochs", "0", "--resume", *args], capture_output=True, text=True)
    if q.returncode != 0:
        print(f"round {r}: the checkpoint does not load after SIGKILL:\n{q.stderr}")
        sys.exit(1)
    epoch = int(q.stderr.split("after epoch ")[1].split()[0])
    epochs_seen.append(epoch)
print(f"checkpoint kill test: {kills} kills ({during_save} while the checkpoint was being written), the checkpoint "
      f"loaded after each; epochs reached {epochs_seen}")
if during_save < rounds // 4 or epochs_seen != sorted(epochs_seen):
    print("expected kills during a write, and progress that never goes backwards")
    sys.exit(1)
