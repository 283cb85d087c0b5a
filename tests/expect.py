#!/usr/bin/python3
"""Runs a command and checks its exit code, its output and the numbers in it.

    expect.py [--exit 0|N|nonzero] [--match REGEX]... [--number REGEX MIN MAX]... [--file PATH]...
              [--clean DIR] -- CMD ARGS...

ctest's PASS_REGULAR_EXPRESSION ignores the exit code, so a crash or a sanitizer report after the
expected line would pass; this wrapper requires both. Each --match must be found in stdout +
stderr; each --number's REGEX must match, and every match's first group must be a finite number
in [MIN, MAX]; each --file must exist and be non-empty afterwards. --exit nonzero requires a
failure (and still the messages). --clean removes DIR first, so that files found afterwards
were written by this run. Prints the output, then what failed, and exits 1 on any failure.
"""
import math
import os
import re
import shutil
import subprocess
import sys


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("expect.py: usage: expect.py [checks] -- CMD ARGS...")
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1:]
    want_exit, matches, numbers, files = "0", [], [], []
    i = 0
    while i < len(opts):
        o = opts[i]
        if o == "--exit":
            want_exit = opts[i + 1]
            i += 2
        elif o == "--match":
            matches.append(opts[i + 1])
            i += 2
        elif o == "--number":
            numbers.append((opts[i + 1], float(opts[i + 2]), float(opts[i + 3])))
            i += 4
        elif o == "--clean":
            shutil.rmtree(opts[i + 1], ignore_errors=True)
            i += 2
        elif o == "--file":
            files.append(opts[i + 1])
            i += 2
        else:
            sys.exit(f"expect.py: unknown option {o}")
    if not cmd:
        sys.exit("expect.py: no command")

    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    out = p.stdout
    sys.stdout.write(out)
    failures = []
    if want_exit == "nonzero":
        if p.returncode == 0:
            failures.append("exited 0, but the command must fail")
    elif p.returncode != int(want_exit):
        failures.append(f"exit code {p.returncode}, expected {want_exit}")
    for m in matches:
        if not re.search(m, out, re.MULTILINE):
            failures.append(f"no line matches {m!r}")
    for rx, lo, hi in numbers:
        found = re.findall(rx, out, re.MULTILINE)
        if not found:
            failures.append(f"no number matches {rx!r}")
        for f in found:
            text = f[0] if isinstance(f, tuple) else f
            try:
                v = float(text)
            except ValueError:
                failures.append(f"{rx!r} captured {text!r}, not a number")
                continue
            if not math.isfinite(v) or not lo <= v <= hi:
                failures.append(f"{rx!r} gave {v}, outside [{lo}, {hi}]")
    for f in files:
        if not os.path.isfile(f) or os.path.getsize(f) == 0:
            failures.append(f"file {f} is missing or empty")
    for f in failures:
        print(f"expect.py: FAILED: {f}")
    if failures:
        sys.exit(1)
    print(f"expect.py: passed ({len(matches)} texts, {len(numbers)} numbers, {len(files)} files, exit {p.returncode})")


if __name__ == "__main__":
    main()
