"""Measure the shipped rate points on the held-out photos through the real bitstream path.

    python -m progcodec_plugins.qres_vae.evaluate [--images data/test]

Prints, per rate point, the mean cumulative bpp and PSNR after each of the 12 layers, the
PSNR of Pillow's JPEG at the final layer's bpp, encode/decode wall time of a 768x512 photo,
the parameter count; saves a strip of refinements as refinements.png.
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import progcodec
from progcodec import registry
from progcodec.image import psnr, to_tensor


def jpeg_at_bpp(img: Image.Image, bpp: float) -> tuple[float, float]:
    """(bpp, PSNR) of the JPEG quality whose size is closest to ``bpp``."""
    x, best = to_tensor(img)[0], None
    for q in range(1, 101):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q, optimize=True)
        b = 8 * buf.tell() / (img.width * img.height)
        if best is None or abs(b - bpp) < abs(best[0] - bpp):
            best = (b, psnr(to_tensor(Image.open(buf))[0], x))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="data/test", type=Path)
    ap.add_argument("--limit", type=int, help="use only the first N photos (name order)")
    ap.add_argument("--strip", default=Path(__file__).with_name("refinements.png"), type=Path)
    a = ap.parse_args()
    paths = sorted(a.images.glob("*.png"))[: a.limit]
    images = [Image.open(p).convert("RGB") for p in paths]
    cls = registry.get_class("qres-vae")
    print(f"{len(images)} held-out photos from {a.images}: {', '.join(p.stem for p in paths)}\n")
    for rate in cls.rates:
        model = registry.load("qres-vae", rate)
        per_layer = np.zeros((len(images), model.layers, 2))
        jpeg = []
        for i, img in enumerate(images):
            data = progcodec.encode(img, model="qres-vae", rate=rate)
            x = to_tensor(img)[0]
            for s in progcodec.decode_stream([data]):
                per_layer[i, s.layer - 1] = (s.bpp, psnr(s.tensor, x))
            jpeg.append(jpeg_at_bpp(img, per_layer[i, -1, 0]))
        mean = per_layer.mean(0)
        params = sum(p.numel() for p in model.net.parameters())
        img = images[0]
        t = time.perf_counter()
        data = progcodec.encode(img, model="qres-vae", rate=rate)
        enc = time.perf_counter() - t
        t = time.perf_counter()
        list(progcodec.decode_stream([data], latest_only=True))
        dec = time.perf_counter() - t
        t = time.perf_counter()
        steps = list(progcodec.decode_stream([data]))
        dec_all = time.perf_counter() - t
        print(f"### rate {rate} (lambda {model.lmbda}), {params / 1e6:.2f} M parameters\n")
        print("| layer | name | bpp | PSNR (dB) |\n|---:|---|---:|---:|")
        for k, name in enumerate(cls.layer_names):
            print(f"| {k + 1} | {name} | {mean[k, 0]:.4f} | {mean[k, 1]:.2f} |")
        jb, jp = np.mean(jpeg, axis=0)
        print(f"\nJPEG (Pillow) at the final layer's bpp: {jb:.4f} bpp, {jp:.2f} dB "
              f"(QRes-VAE {mean[-1, 0]:.4f} bpp, {mean[-1, 1]:.2f} dB; better than JPEG on "
              f"{sum(q[1] > j[1] for q, j in zip(per_layer[:, -1], jpeg))} of {len(images)} photos)")
        print(f"768x512 on this CPU ({torch.get_num_threads()} threads): encode {enc:.2f} s, decode {dec:.2f} s "
              f"(final layer only), {dec_all:.2f} s rendering all 12 refinements\n")
        if rate == cls.default_rate:
            keep = [0, 1, 3, 6, 9, 11]
            strip = Image.new("RGB", (len(keep) * 256, 171 + 0))
            for j, k in enumerate(keep):
                strip.paste(steps[k].image.resize((256, 171), Image.LANCZOS), (j * 256, 0))
            strip.save(a.strip)
            print(f"strip of layers {[k + 1 for k in keep]} saved to {a.strip}")


if __name__ == "__main__":
    main()
