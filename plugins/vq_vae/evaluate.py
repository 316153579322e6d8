"""Measure ``vq-vae`` on the held-out photos through the real encode / streaming-decode path.

    python -m progcodec_plugins.vq_vae.evaluate [--data data/test] [--rate k256]

Prints Markdown tables (per-layer bpp and PSNR; bottom-layer rate with the marginal vs the
learned conditional prior; codebook perplexity; timings) and writes ``strip.png`` here.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import progcodec
from progcodec import registry
from progcodec.image import to_tensor

from .plugin import VQVAE

HERE = Path(__file__).parent


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = (a * 255).round(), (b * 255).round()  # as 8-bit images
    return 10 * math.log10(255**2 / (a - b).pow(2).mean().item())


def bits(probs: torch.Tensor, idx: torch.Tensor) -> float:
    """Ideal code length (bits) of ``idx`` under per-position or shared ``probs``."""
    p = probs.expand(*idx.shape, -1) if probs.dim() == 1 else probs
    return -torch.log2(p.gather(-1, idx[..., None])).sum().item()


def perplexity(counts: torch.Tensor) -> float:
    p = counts[counts > 0] / counts.sum()
    return math.exp(-(p * p.log()).sum().item())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data/test"))
    p.add_argument("--rate", default=VQVAE.default_rate)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--strip", default="bythewater", help="test photo shown in strip.png")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if VQVAE.name not in registry.names():  # until the entry point is installed
        registry.register(VQVAE)
    net = registry.load(VQVAE.name, args.rate).net
    k_top, k_bot = net.hist_top.numel(), net.hist_bot.numel()
    marg_bot = net.hist_bot.double() / net.hist_bot.sum()

    rows, extra = [], []
    use_top, use_bot = torch.zeros(k_top), torch.zeros(k_bot)
    enc_s, dec_s = [], []
    for path in sorted(args.data.glob("*.png")):
        im = Image.open(path).convert("RGB")
        x = to_tensor(im, 3)[0]
        t0 = time.perf_counter()
        data = progcodec.encode(im, VQVAE.name, args.rate)
        t1 = time.perf_counter()
        steps = list(progcodec.decode_stream(data))
        dec_s.append(time.perf_counter() - t1)
        enc_s.append(t1 - t0)
        rows.append([path.stem] + [v for s in steps for v in (s.bpp, psnr(s.tensor, x))])

        # Ablations on the same codes, outside the stream: bottom rate under the marginal vs the
        # conditional prior, and a layer-1 image from the main decoder fed the prior's expected
        # bottom code vectors instead of the preview head.
        with torch.inference_mode():
            top, bot = net.encode(x[None])
            t = net.dec_top(net.vq_top.lookup(top))
            probs = torch.softmax(net.prior(t)[0].double(), 0).permute(1, 2, 0)
            guess = net.decode((probs.float() @ net.vq_bot.embed).permute(2, 0, 1)[None], t)[0].clamp(0, 1)
        n = x.shape[1] * x.shape[2]
        extra.append((bits(marg_bot, bot[0]) / n, bits(probs, bot[0]) / n, psnr(guess, x)))
        use_top += torch.bincount(top.flatten(), minlength=k_top)
        use_bot += torch.bincount(bot.flatten(), minlength=k_bot)
        if path.stem == args.strip:
            crop = (slice(None), slice(128, 384), slice(256, 512))
            tiles = [x[crop]] + [s.tensor[crop] for s in steps]
            strip = (torch.cat(tiles, 2).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(strip).save(HERE / "strip.png")

    print(f"### vq-vae `{args.rate}` on {len(rows)} photos of {args.data} (768x512)\n")
    print("| photo | L1 bpp | L1 PSNR | L1+L2 bpp | L1+L2 PSNR |\n|---|---:|---:|---:|---:|")
    for r in rows + [["**mean**"] + list(np.mean([r[1:] for r in rows], 0))]:
        print(f"| {r[0]} | {r[1]:.4f} | {r[2]:.2f} | {r[3]:.4f} | {r[4]:.2f} |")
    m = np.mean(extra, 0)
    l2 = np.mean([r[3] - r[1] for r in rows])
    print("\n| bottom-layer rate (bpp, mean) | value |\n|---|---:|")
    print(f"| uniform, log2 K = {math.log2(k_bot):.0f} bits/code | {math.log2(k_bot) / 16:.4f} |")
    print(f"| marginal histogram (ideal) | {m[0]:.4f} |\n| learned conditional prior (ideal) | {m[1]:.4f} |")
    print(f"| learned conditional prior (coded, incl. framing) | {l2:.4f} |")
    print(f"\nLayer-1 PSNR, preview head (used) vs main decoder on the prior's mean bottom codes: "
          f"{np.mean([r[2] for r in rows]):.2f} vs {m[2]:.2f} dB")
    print(f"\nCodebook perplexity on the test codes: top {perplexity(use_top):.1f} of {k_top} "
          f"({int((use_top > 0).sum())} used), bottom {perplexity(use_bot):.1f} of {k_bot} "
          f"({int((use_bot > 0).sum())} used)")
    print(f"\nTime per 768x512 photo ({args.threads} thread): encode {np.mean(enc_s):.2f} s, "
          f"decode both layers {np.mean(dec_s):.2f} s (mean of {len(rows)})")


if __name__ == "__main__":
    main()
