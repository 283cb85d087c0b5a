#!/usr/bin/python3
"""Reference data for tests/test_image.cpp: real image files and what torchvision makes of them.

Usage: /usr/bin/python3 tools/image_reference.py OUT_DIR

Needs Debian's python3-torchvision 0.14 / python3-torch 1.13 / python3-pil / python3-numpy
(installed for /usr/bin/python3, not necessarily for the `python3` on PATH).

For every image file NAME (e.g. landscape_500x375.png) it writes, all as .npy (numpy's own writer, little-endian, C order):
  NAME.pixels.npy   uint8   (H, W, 3)     PIL.Image.open(path).convert("RGB")
  NAME.resized.npy  uint8   (h, w, 3)     after transforms.Resize(342) (BILINEAR, PIL path)
  NAME.tensor.npy   float32 (3, 299, 299) the whole ImageNet pipeline below
plus resize_N.src.npy / resize_N.dst.npy: small random images resized by Pillow's BILINEAR to
sizes chosen to mix up- and down-sampling per axis, and a few broken files for the error paths.
The output is deterministic (seeded), so reruns give identical files.
"""
import io
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms

PIPELINE = transforms.Compose([
    transforms.Resize(342),
    transforms.CenterCrop(299),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])


def synthetic(width, height, seed):
    """A natural-looking RGB picture: smooth gradients, hard-edged shapes, sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / width, y / height
    img = np.empty((height, width, 3))
    img[..., 0] = 120 + 90 * np.sin(2.1 * np.pi * u + 0.7) * np.cos(1.3 * np.pi * v)
    img[..., 1] = 60 + 150 * v + 30 * np.sin(9 * np.pi * u * v)
    img[..., 2] = 200 - 140 * u + 25 * np.cos(5 * np.pi * (u + v))
    for _ in range(6):  # hard-edged discs and boxes (sharp edges: worst case for resampling)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.05, 0.25) * min(width, height)
        colour = rng.uniform(0, 255, size=3)
        if rng.random() < 0.5:
            mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        else:
            mask = (abs(x - cx) < r) & (abs(y - cy) < 0.6 * r)
        img[mask] = colour
    stripes = (np.floor(x / 3) % 2 == 0) & (y > 0.8 * height)  # fine detail near the Nyquist limit
    img[stripes] = 255 - img[stripes]
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def save_npy(out_dir, name, array):
    np.save(os.path.join(out_dir, name), np.ascontiguousarray(array))


def write_case(out_dir, filename, pil_image, **save_args):
    path = os.path.join(out_dir, filename)
    pil_image.save(path, **save_args)
    stem = filename  # keeps the extension: x.png and x.jpg get separate .npy files
    img = Image.open(path).convert("RGB")  # exactly what `ctnet classify` is compared against
    save_npy(out_dir, stem + ".pixels.npy", np.asarray(img, dtype=np.uint8))
    save_npy(out_dir, stem + ".resized.npy", np.asarray(transforms.Resize(342)(img), dtype=np.uint8))
    tensor = PIPELINE(img)
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (3, 299, 299)
    save_npy(out_dir, stem + ".tensor.npy", tensor.numpy())


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: image_reference.py OUT_DIR")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    rgb = lambda w, h, seed: Image.fromarray(synthetic(w, h, seed), "RGB")

    # PNG (lossless: decoding must match PIL exactly). Sizes chosen for the crop rounding:
    # 500x375 -> 456x342, left 78.5 -> 78 (half to even), top 21.5 -> 22;
    # 640x427 -> 512x342, left 106.5 -> 106; 299x299 is upsampled to 342x342.
    write_case(out_dir, "landscape_500x375.png", rgb(500, 375, 1))
    write_case(out_dir, "portrait_375x500.png", rgb(375, 500, 2))
    write_case(out_dir, "square_299x299.png", rgb(299, 299, 3))
    write_case(out_dir, "wide_640x427.png", rgb(640, 427, 4))
    write_case(out_dir, "gray_400x301.png", rgb(400, 301, 5).convert("L"))
    rgba = rgb(333, 250, 6).convert("RGBA")
    alpha = Image.fromarray(synthetic(333, 250, 7)[..., 0], "L")
    rgba.putalpha(alpha)  # convert("RGB") drops alpha (no compositing), as stb does
    write_case(out_dir, "rgba_333x250.png", rgba)
    write_case(out_dir, "palette_345x520.png", rgb(345, 520, 8).convert("P", palette=Image.ADAPTIVE))

    # JPEG (lossy: libjpeg-turbo and stb_image may differ by a little in IDCT / colour / upsampling).
    write_case(out_dir, "landscape_500x375.jpg", rgb(500, 375, 1), quality=90)  # 4:2:0
    write_case(out_dir, "wide_640x427.jpg", rgb(640, 427, 4), quality=75)
    write_case(out_dir, "portrait_375x500_progressive.jpg", rgb(375, 500, 2), quality=85,
               progressive=True)
    write_case(out_dir, "square_299x299_444.jpg", rgb(299, 299, 3), quality=95, subsampling=0)
    write_case(out_dir, "odd_343x301.jpg", rgb(343, 301, 9), quality=90)  # odd sizes, 4:2:0 edges
    write_case(out_dir, "gray_400x301.jpg", rgb(400, 301, 5).convert("L"), quality=90)

    # Pillow's BILINEAR on its own, at sizes that mix up- and down-sampling per axis.
    rng = np.random.default_rng(100)
    resize_cases = [((37, 23), (10, 7)), ((5, 9), (17, 4)), ((64, 48), (64, 13)),
                    ((31, 40), (90, 40)), ((7, 7), (3, 3)), ((1, 5), (4, 2)), ((100, 3), (33, 1))]
    for i, ((w, h), (ow, oh)) in enumerate(resize_cases):
        src = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        dst = Image.fromarray(src, "RGB").resize((ow, oh), Image.BILINEAR)
        save_npy(out_dir, f"resize_{i}.src.npy", src)
        save_npy(out_dir, f"resize_{i}.dst.npy", np.asarray(dst, dtype=np.uint8))

    # Broken files for the error paths.
    buf = io.BytesIO()
    rgb(200, 150, 10).save(buf, format="PNG")
    png = buf.getvalue()
    with open(os.path.join(out_dir, "truncated.png"), "wb") as f:
        f.write(png[: len(png) // 2])
    buf = io.BytesIO()
    rgb(200, 150, 10).save(buf, format="JPEG", quality=90)
    jpg = buf.getvalue()
    with open(os.path.join(out_dir, "truncated.jpg"), "wb") as f:
        f.write(jpg[: len(jpg) // 2])
    with open(os.path.join(out_dir, "not_an_image.txt"), "w") as f:
        f.write("this is a text file, not an image\n")
    # A valid PNG over the 30000-pixel side limit (tiny on disk: one row of zeros compresses well).
    Image.new("L", (30001, 1)).save(os.path.join(out_dir, "too_wide_30001x1.png"))

    print(f"wrote {len(os.listdir(out_dir))} files to {out_dir} "
          f"(torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"Pillow {Image.__version__})")


if __name__ == "__main__":
    main()
