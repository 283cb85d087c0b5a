#!/usr/bin/python3
"""Exports a torchvision model to ONNX with seeded random weights, plus torch's answer.

    onnx_torchvision.py MODEL OUT_DIR [--seed N] [--fold-bn] [--batch N]

MODEL: inception_v3 | googlenet (aux heads off, eval mode). Writes OUT_DIR/model.onnx,
OUT_DIR/input.npy (N x 3 x H x W), OUT_DIR/logits.npy (torch's eval output) and OUT_DIR/stats.json:
  params  sum of p.numel() over model.parameters() (what ctnet::param_count_v counts), or with
          --fold-bn the parameters of the fused graph (conv weights + a bias per conv + fc)
  macs    multiply-accumulates per sample of every Conv2d and Linear, from forward hooks on one
          sample: out.numel() * in_channels / groups * kh * kw, and in * out (ctnet::macs_v)
  seed    the seed used (a fresh one when --seed is 0 or absent)
Batch norm is kept as BatchNormalization nodes (training=TrainingMode.PRESERVE on an eval model,
no constant folding) unless --fold-bn, where torch's eval export fuses it into the convolutions.
The BN statistics and affine parameters are random too, so that folding and eps matter.
"""
import argparse
import json
import os
import random
import sys

import numpy as np
import torch
import torchvision


def build(name):
    if name == "inception_v3":
        return torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True), 299
    if name == "googlenet":
        return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True,
                                            transform_input=False), 224
    sys.exit(f"onnx_torchvision.py: unknown model {name!r} (inception_v3, googlenet)")


def count_macs(model, x):
    macs = 0

    def conv_hook(m, inp, out):
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m, inp, out):
        nonlocal macs
        macs += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    with torch.no_grad():
        model(x[:1])
    for h in hooks:
        h.remove()
    return macs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fold-bn", action="store_true")
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args()
    seed = a.seed or random.SystemRandom().randrange(1, 2**31)
    torch.manual_seed(seed)
    model, size = build(a.model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(a.batch, 3, size, size)
    with torch.no_grad():
        logits = model(x)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "model.onnx")
    if a.fold_bn:
        torch.onnx.export(model, x, path, opset_version=13, training=torch.onnx.TrainingMode.EVAL,
                          do_constant_folding=True, input_names=["input"], output_names=["logits"])
    else:
        torch.onnx.export(model, x, path, opset_version=13, training=torch.onnx.TrainingMode.PRESERVE,
                          do_constant_folding=False, input_names=["input"], output_names=["logits"])
    params = sum(p.numel() for p in model.parameters())
    if a.fold_bn:  # BN's weight and bias vanish; each conv followed by a BN gains a bias
        bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        params -= sum(m.weight.numel() + m.bias.numel() for m in bn)
        params += sum(m.num_features for m in bn)
    np.save(os.path.join(a.out, "input.npy"), x.numpy().astype(np.float32))
    np.save(os.path.join(a.out, "logits.npy"), logits.numpy().astype(np.float32))
    stats = {"model": a.model, "seed": seed, "params": int(params), "macs": int(count_macs(model, x)),
             "fold_bn": a.fold_bn, "batch": a.batch}
    with open(os.path.join(a.out, "stats.json"), "w") as f:
        json.dump(stats, f)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
