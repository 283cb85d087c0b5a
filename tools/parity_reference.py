#!/usr/bin/python3
"""Reference outputs of torchvision's Inception v3 for ctnet's parity tests.

    /usr/bin/python3 tools/parity_reference.py OUT_DIR [--seed S]

Writes OUT_DIR/weights.safetensors (seeded random init, randomised batch-norm statistics) and,
for every case below, OUT_DIR/CASE/input.npy, logits.npy, one MIXED.npy per Mixed_* block
output and, in training mode, aux.npy (the auxiliary logits). The C++ test
(tests/test_parity.cpp) runs the same cases through ctnet and compares.
"""
import argparse
import contextlib
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import random_model, save_safetensors  # noqa: E402

# name: (size, batch, transform_input, count_include_pad, training[, lowres])
# lowres: the paper's section 9 variants (ctnet's inception_v3_lowres<151> / <79>), built here
# from torchvision's modules: the first conv at stride 1, and for 79 the first max pool removed.
CASES = {
    "b1_299": (299, 1, False, True, False),
    "b3_299_transform": (299, 3, True, True, False),
    "b3_107": (107, 3, False, True, False),
    "b1_107_transform": (107, 1, True, True, False),
    "b2_139_slim": (139, 2, False, False, False),
    "train_b4_299": (299, 4, False, True, True),
    "lowres151_b2": (151, 2, False, True, False, 151),
    "lowres79_b2": (79, 2, False, True, False, 79),
    "train_lowres79_b4": (79, 4, False, True, True, 79),
}
BLOCKS = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
          "Mixed_7a", "Mixed_7b", "Mixed_7c"]


@contextlib.contextmanager
def block_pools_exclude_padding():
    """TF-slim's Inception: the blocks' 3x3 stride-1 average pools do not count padded zeros.
    torchvision hard-codes count_include_pad=True there, so swap the function for the run."""
    original = F.avg_pool2d

    def avg_pool2d(x, kernel_size, stride=None, padding=0, **kw):
        if padding == 1:
            kw["count_include_pad"] = False
        return original(x, kernel_size, stride, padding, **kw)

    F.avg_pool2d = avg_pool2d
    try:
        yield
    finally:
        F.avg_pool2d = original


def lowres(model, field):
    """Section 9 of the paper: the 151x151 and 79x79 receptive-field variants."""
    model.Conv2d_1a_3x3.conv.stride = (1, 1)
    if field == 79:
        model.maxpool1 = torch.nn.Identity()
    return model


def run_case(model, out_dir, name, size, batch, transform_input, count_include_pad, training, field=299, *, seed):
    model = copy.deepcopy(model)  # training mode updates running statistics
    if field != 299:
        lowres(model, field)
    model.transform_input = transform_input
    model.train(training)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    captured = {}
    for b in BLOCKS:
        getattr(model, b).register_forward_hook(lambda m, i, o, b=b: captured.__setitem__(b, o.detach().numpy()))
    pools = contextlib.nullcontext() if count_include_pad else block_pools_exclude_padding()
    with torch.no_grad(), pools:
        out = model(x)
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "input.npy"), x.numpy())
    if training:
        np.save(os.path.join(d, "aux.npy"), out.aux_logits.numpy())
    else:
        np.save(os.path.join(d, "logits.npy"), out.numpy())
        for b, v in captured.items():
            np.save(os.path.join(d, b + ".npy"), v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=2015)
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.out_dir, exist_ok=True)
    model = random_model(args.seed)
    save_safetensors(model.state_dict(), os.path.join(args.out_dir, "weights.safetensors"))
    for i, (name, spec) in enumerate(CASES.items()):
        run_case(model, args.out_dir, name, *spec, seed=args.seed + 100 + i)
    with open(os.path.join(args.out_dir, "cases.json"), "w") as f:
        json.dump({"seed": args.seed, "torch": torch.__version__, "cases": CASES}, f, indent=1)
    print(f"parity reference: {len(CASES)} cases in {args.out_dir} (seed {args.seed}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
