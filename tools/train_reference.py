#!/usr/bin/python3
"""Two training steps of torchvision's Inception v3 under torch autograd, for ctnet's step parity.

    /usr/bin/python3 tools/train_reference.py OUT_DIR [--batch 2] [--seed S] [--threads 2]

Each step is the paper's recipe: training mode with the auxiliary head, label smoothing 0.1 on
both heads, total loss = main + 0.4 * aux, gradients clipped to a global norm of 2.0, then
RMSProp in torch's semantics (the hyperparameters are OPTIMIZER below, written to loss.json for
the test). Two steps, each on its own batch, so that the update depends on the optimizer's state:
the second step's momentum buffer and mean square hold the first step's gradient. The first
step's learning rate is 0 (LR below: why), so both gradients are taken at the same parameters.
The first step is the one this script made before it ran two (same draws, same reference).

Dropout is the one random op. Its masks are drawn here with ctnet's own generator (SplitMix64,
53-bit uniforms, sample-major, zero where u < 0.5), reimplemented from its definition: step 1
takes the first batch * 2048 draws of the stream seeded with S, step 2 the next batch * 2048, as
ctnet's trainer seeded with S draws them, one mask per forward pass from one generator.

The steps run twice: in float64, the exact answer the test compares with, and in float32, whose
own distance from float64 measures how well-conditioned each quantity is. (With batch 2, batch
norm's backward pass cancels heavily: torch's float32 gradients of the early layers differ from
float64 by 2-4 %, so "within 1e-3 of torch float32" cannot be asked of any float32 code.)

Writes: weights.safetensors (before), input.npy (steps x batch x 3 x 299 x 299), labels.npy
(steps x batch, as float32), loss.json (per step: float64 losses and gradient norm before
clipping, and torch float32's; the optimizer's hyperparameters), grads64_S.safetensors /
grads32_S.safetensors (step S's gradients, after clipping), change64.safetensors /
change32.safetensors (state_dict after the two steps minus before, subtracted in the run's own
precision and stored as float32: the parameters' updates and the running statistics' changes).
"""
import argparse
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import random_model, save_safetensors  # noqa: E402

MASK64 = (1 << 64) - 1
# torch.optim.RMSprop: square_avg = alpha * square_avg + (1 - alpha) * g^2 (from 0);
# buf = momentum * buf + g / (sqrt(square_avg) + eps); p -= lr * buf; g includes weight_decay * p.
# eps is smaller than the paper's 1.0 so that sqrt(square_avg) matters: with 1.0 the
# denominator is 1 + O(1e-4) at these gradients and the mean square would go untested.
OPTIMIZER = {"alpha": 0.9, "eps": 1e-3, "momentum": 0.9, "weight_decay": 4e-5}
# The learning rate of each step. The first is 0: it fills the momentum buffer and the mean
# square but leaves the parameters, so the second step's gradients are taken at the same point
# and are as well-conditioned as the first's. After a real first step (lr 0.045) torch's own
# float32 gradients of the second step are 85 % (median over the tensors) from float64: this
# random model at batch 2 is so steep (gradient norm ~1900) that float32's rounding of the
# first update moves the second gradient that much, and no float32 code could be held to it.
LR = [0.0, 0.045]


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


def train(model, xs, labels, masks, dtype):
    """The steps of LR on a copy of model in dtype: per-step losses, each step's clipped
    gradients, and the state_dict's change (after - before, in dtype)."""
    model = copy.deepcopy(model).to(dtype)
    model.train()
    before = {n: t.clone() for n, t in model.state_dict().items() if t.is_floating_point()}
    opt = torch.optim.RMSprop(model.parameters(), lr=LR[0], **OPTIMIZER)
    log, grads = [], []
    for s, lr in enumerate(LR):
        opt.param_groups[0]["lr"] = lr
        model.dropout = FixedDropout(masks[s].to(dtype))
        opt.zero_grad()
        out = model(xs[s].to(dtype))
        main_loss = F.cross_entropy(out.logits, labels[s], label_smoothing=0.1)
        aux_loss = F.cross_entropy(out.aux_logits, labels[s], label_smoothing=0.1)
        loss = main_loss + 0.4 * aux_loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        grads.append({n: p.grad.float().clone() for n, p in model.named_parameters()})  # not a view
        opt.step()
        log.append({"loss": loss.item(), "main": main_loss.item(), "aux": aux_loss.item(), "grad_norm": norm.item()})
    after = model.state_dict()
    change = {n: (after[n] - t).float() for n, t in before.items()}
    return log, grads, change


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1512)
    ap.add_argument("--threads", type=int, default=2, help="torch's CPU threads (the GPU check uses its machine's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    classes = 1000
    model = random_model(args.seed, classes)
    save_safetensors(model.state_dict(), os.path.join(args.out_dir, "weights.safetensors"))

    g = torch.Generator().manual_seed(args.seed + 1)
    xs, labels = [], []
    for _ in LR:  # each step's input, then its labels
        xs.append(torch.randn(args.batch, 3, 299, 299, generator=g))
        labels.append(torch.randint(0, classes, (args.batch,), generator=g))
    gen = SplitMix64(args.seed)  # one stream: step 2's mask is the draws after step 1's
    masks = [torch.tensor([0.0 if gen.uniform() < 0.5 else 2.0 for _ in range(args.batch * 2048)])
             for _ in LR]

    log32, grads32, change32 = train(model, xs, labels, masks, torch.float32)
    log64, grads64, change64 = train(model, xs, labels, masks, torch.float64)

    np.save(os.path.join(args.out_dir, "input.npy"), torch.stack(xs).numpy())
    np.save(os.path.join(args.out_dir, "labels.npy"), torch.stack(labels).numpy().astype(np.float32))
    for s in range(len(LR)):
        save_safetensors(grads64[s], os.path.join(args.out_dir, f"grads64_{s + 1}.safetensors"))
        save_safetensors(grads32[s], os.path.join(args.out_dir, f"grads32_{s + 1}.safetensors"))
    save_safetensors(change64, os.path.join(args.out_dir, "change64.safetensors"))
    save_safetensors(change32, os.path.join(args.out_dir, "change32.safetensors"))
    with open(os.path.join(args.out_dir, "loss.json"), "w") as f:
        json.dump({"seed": args.seed, "batch": args.batch, "steps": log64, "float32": log32,
                   "optimizer": {**OPTIMIZER, "lr": LR},
                   "torch": torch.__version__}, f, indent=1)
    for s, (a, b) in enumerate(zip(log64, log32)):
        print(f"train reference: step {s + 1}: loss {a['loss']:.6f}, grad norm {a['grad_norm']:.4f} (float64; "
              f"float32 {b['loss']:.6f}, {b['grad_norm']:.4f}) in {args.out_dir}")


if __name__ == "__main__":
    main()
