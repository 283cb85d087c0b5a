# bench/gpu_table.py — one table from gpu_bench's and gpu_torch.py's JSON lines: images/s per
# (batch, input, precision) for ctnet's cuDNN engine, ctnet's own NHWC kernels, the NCHW
# baseline and PyTorch, and best ctnet over PyTorch.
#   python3 bench/gpu_table.py gpu_bench.txt torch.txt
import json, sys

rows = {}
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "images_per_s" not in r:
            continue
        key = (r["batch"], "host copies" if r["copies"] else "device", r["precision"])
        rows.setdefault(key, {})[r["engine"]] = r["images_per_s"]

cols = ["ctnet cudnn", "ctnet ctnet", "ctnet nchw", "pytorch"]
order = {"bf16": 0, "fp16": 1, "tf32": 2, "fp32": 3}
print("| batch | input | prec | ctnet cuDNN | ctnet own kernels | ctnet NCHW | PyTorch | best ctnet / PyTorch |")
print("|---|---|---|---|---|---|---|---|")
for key in sorted(rows, key=lambda k: (k[0], k[1] != "device", order.get(k[2], 9))):
    r = rows[key]
    cells = [f"{r[c]:,.0f}" if c in r else "—" for c in cols]
    best = max([r[c] for c in cols[:3] if c in r], default=None)
    ratio = f"{best / r['pytorch']:.2f}" if best and r.get("pytorch") else "—"
    print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + f" | {ratio} |")
print("(images/s, host wall clock per pass, median; device = input and logits in device memory, "
      "PyTorch replaying a CUDA graph; host copies = host input and logits, PyTorch eager)")
