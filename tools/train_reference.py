#!/usr/bin/python3
"""One training step of torchvision's Inception v3 under torch autograd, for ctnet's step parity.

    /usr/bin/python3 tools/train_reference.py OUT_DIR [--batch 2] [--size 299] [--seed S]

The step is the paper's recipe: training mode with the auxiliary head, label smoothing 0.1 on
both heads, total loss = main + 0.4 * aux, gradients clipped to a global norm of 2.0, then
RMSProp (torch semantics: alpha 0.9, eps 1.0, momentum 0.9, weight decay 4e-5, lr 0.045).

Dropout is the one random op. Its mask is drawn here with ctnet's own generator (SplitMix64,
53-bit uniforms, sample-major, zero where u < 0.5), reimplemented from its definition, so
ctnet's trainer seeded with the same seed draws the same mask.

The step runs twice: in float64, the exact answer the test compares with, and in float32, whose
own distance from float64 measures how well-conditioned each gradient is. (With batch 2, batch
norm's backward pass cancels heavily: torch's float32 gradients of the early layers differ from
float64 by 2-4 %, so "within 1e-3 of torch float32" cannot be asked of any float32 code.)

Writes: weights.safetensors (before), input.npy, labels.npy (float32), loss.json (float64 losses
and gradient norm before clipping, and torch float32's), grads64.safetensors / grads32.safetensors
(every parameter's gradient after clipping), updated.safetensors (the float64 state_dict after
the step, as float32, running statistics included).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import random_model, save_safetensors  # noqa: E402

MASK64 = (1 << 64) - 1


class SplitMix64:
    """ctnet::rng (include/ctnet/core/random.hpp)."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53


class FixedDropout(torch.nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.mask = mask

    def forward(self, x):
        return x * self.mask.view(x.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1512)
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.out_dir, exist_ok=True)
    classes = 1000
    model = random_model(args.seed, classes)
    save_safetensors(model.state_dict(), os.path.join(args.out_dir, "weights.safetensors"))

    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(args.batch, 3, 299, 299, generator=g)
    labels = torch.randint(0, classes, (args.batch,), generator=g)
    gen = SplitMix64(args.seed)
    mask = torch.tensor([0.0 if gen.uniform() < 0.5 else 2.0 for _ in range(args.batch * 2048)])
    model.dropout = FixedDropout(mask)

    def step(model, x, mask):
        model = model.to(x.dtype)
        model.dropout = FixedDropout(mask.to(x.dtype))
        model.train()
        out = model(x)
        main_loss = F.cross_entropy(out.logits, labels, label_smoothing=0.1)
        aux_loss = F.cross_entropy(out.aux_logits, labels, label_smoothing=0.1)
        loss = main_loss + 0.4 * aux_loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        grads = {n: p.grad.float() for n, p in model.named_parameters()}
        opt = torch.optim.RMSprop(model.parameters(), lr=0.045, alpha=0.9, eps=1.0, momentum=0.9, weight_decay=4e-5)
        opt.step()
        losses = {"loss": loss.item(), "main": main_loss.item(), "aux": aux_loss.item(), "grad_norm": norm.item()}
        return losses, grads, {n: t.float() for n, t in model.state_dict().items()}

    import copy
    losses32, grads32, _ = step(copy.deepcopy(model), x, mask)
    losses, grads, updated = step(model, x.double(), mask)

    np.save(os.path.join(args.out_dir, "input.npy"), x.numpy())
    np.save(os.path.join(args.out_dir, "labels.npy"), labels.numpy().astype(np.float32))
    save_safetensors(grads, os.path.join(args.out_dir, "grads64.safetensors"))
    save_safetensors(grads32, os.path.join(args.out_dir, "grads32.safetensors"))
    save_safetensors(updated, os.path.join(args.out_dir, "updated.safetensors"))
    with open(os.path.join(args.out_dir, "loss.json"), "w") as f:
        json.dump({"seed": args.seed, "batch": args.batch, **losses, "float32": losses32, "torch": torch.__version__},
                  f, indent=1)
    print(f"train reference: loss {losses['loss']:.6f}, grad norm {losses['grad_norm']:.4f} (float64) in {args.out_dir}")


if __name__ == "__main__":
    main()
