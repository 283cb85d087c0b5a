#!/usr/bin/python3
"""Write a torchvision Inception v3 state_dict as a safetensors file that ctnet loads by name.

    /usr/bin/python3 tools/export_torchvision.py --pretrained inception_v3.safetensors
    /usr/bin/python3 tools/export_torchvision.py --seed 7 random.safetensors

--pretrained takes torchvision's ImageNet weights (IMAGENET1K_V1; needs a machine that can
download them, or a copy in torch's hub cache). Otherwise the weights are torchvision's own
seeded initialisation with randomised batch-norm statistics, so that every part of the
arithmetic (including the BN folding) is exercised.

Uses Debian's python3-torch and python3-torchvision (run it with /usr/bin/python3).
"""
import argparse
import json
import struct
import sys

import torch
import torchvision

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


def save_safetensors(state_dict, path, dtype=None):
    """The safetensors format: u64 header length, JSON header, raw little-endian data."""
    header, blobs, offset = {}, [], 0
    for name, t in state_dict.items():
        t = t.detach().cpu().contiguous()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        raw = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def randomize_bn(model, generator):
    """Batch-norm weights, biases and running statistics drawn at random (not 1, 0, 0, 1)."""
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))


def random_model(seed, num_classes=1000):
    torch.manual_seed(seed)
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True,
                                            num_classes=num_classes)
    randomize_bn(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output")
    ap.add_argument("--pretrained", action="store_true", help="torchvision's ImageNet weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--dtype", choices=["F32", "F16", "BF16"], default="F32")
    args = ap.parse_args()
    if args.pretrained:
        try:
            model = torchvision.models.inception_v3(weights="IMAGENET1K_V1", aux_logits=True)
        except Exception as e:  # no network, no cached copy
            sys.exit(f"export_torchvision: cannot get the pretrained weights: {e}")
    else:
        model = random_model(args.seed, args.num_classes)
    dtype = {"F32": None, "F16": torch.float16, "BF16": torch.bfloat16}[args.dtype]
    save_safetensors(model.state_dict(), args.output, dtype)
    print(f"wrote {args.output}: {len(model.state_dict())} tensors")


if __name__ == "__main__":
    main()
