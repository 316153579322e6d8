"""Measure the pq-mim plugin on held-out photos through ``progcodec.encode`` / ``decode_stream``.

    python -m progcodec_plugins.pq_mim.evaluate [--data data/test] [--threads 2]

Prints Markdown tables: per-stage cumulative bpp and PSNR; total bpp of the quincunx MIM
prior against the marginal-only baseline and over the number of stages (1, 3, 5); encode and
decode time and MIM evaluations per 768x512 image. Writes ``refinements.png`` (the five
refinements of the first test photo, then the original) beside this file.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import progcodec
from progcodec import registry
from progcodec.image import psnr, to_tensor

from .plugin import PQMIM


class PQMIM1(PQMIM):
    """Ablation: all tokens in one stage, coded with the marginal histograms (the baseline)."""
    name, stages, layer_names = "pq-mim-s1", 1, ("all",)


class PQMIM3(PQMIM):
    """Ablation: three quincunx stages (1/4, 1/4, 1/2 of the tokens)."""
    name, stages, layer_names = "pq-mim-s3", 3, ("stage1", "stage2", "stage3")


def count_mim_calls(model: PQMIM) -> list[int]:
    """Wrap the model's MIM so that every forward pass is counted."""
    counter, forward = [0], model.mim.forward

    def counted(*a, **kw):
        counter[0] += 1
        return forward(*a, **kw)

    model.mim.forward = counted
    return counter


def bits(data: bytes, img: Image.Image) -> float:
    return 8 * len(data) / (img.width * img.height)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N photos (0: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for cls in (PQMIM, PQMIM1, PQMIM3):
        registry.register(cls)
    model = registry.load("pq-mim")
    calls = count_mim_calls(model)
    files = sorted(Path(args.data).glob("*.png"))[: args.limit or None]
    if not files:
        raise SystemExit(f"no test photos in {args.data}")

    S = model.layers
    cum_bpp, cum_psnr = np.zeros((len(files), S)), np.zeros((len(files), S))
    total = {1: [], 3: [], 5: []}
    t_enc, t_dec, n_enc, n_dec = [], [], [], []
    strip = []
    for i, f in enumerate(files):
        img = Image.open(f).convert("RGB")
        x = to_tensor(img)[0]
        calls[0] = 0
        t0 = time.perf_counter()
        data = progcodec.encode(img, model="pq-mim")
        t_enc.append(time.perf_counter() - t0)
        n_enc.append(calls[0])
        calls[0] = 0
        t0 = time.perf_counter()
        steps = list(progcodec.decode_stream([data]))
        t_dec.append(time.perf_counter() - t0)
        n_dec.append(calls[0])
        for k, step in enumerate(steps):
            cum_bpp[i, k], cum_psnr[i, k] = step.bpp, psnr(step.tensor, x)
        total[5].append(bits(data, img))
        total[1].append(bits(progcodec.encode(img, model="pq-mim-s1"), img))
        total[3].append(bits(progcodec.encode(img, model="pq-mim-s3"), img))
        if i == 0:
            strip = [s.image for s in steps] + [img]
        print(f"{f.name}: {img.width}x{img.height} {total[5][-1]:.4f} bpp (marginal {total[1][-1]:.4f}),"
              f" PSNR {cum_psnr[i, -1]:.2f} dB, enc {t_enc[-1]:.2f} s, dec {t_dec[-1]:.2f} s", flush=True)

    fractions = [len(p) for p in model.decoder(512, 768, {}).pos]
    print(f"\n### Per stage ({len(files)} held-out photos, mean; bpp includes the stream header)\n")
    print("| stages received | tokens sent | cumulative bpp | PSNR (dB) |")
    print("|---|---|---|---|")
    for k in range(S):
        frac = sum(fractions[: k + 1]) / sum(fractions)
        print(f"| {k + 1} | {frac:.4g} | {cum_bpp[:, k].mean():.4f} | {cum_psnr[:, k].mean():.2f} |")

    m, q = statistics.mean(total[1]), statistics.mean(total[5])
    print("\n### Entropy model: total bpp (same tokens, same PSNR)\n")
    print("| prior | stages | MIM evaluations | bpp | vs marginal |")
    print("|---|---|---|---|---|")
    for s in (1, 3, 5):
        b = statistics.mean(total[s])
        name = "marginal histogram only" if s == 1 else f"quincunx MIM, S = {s}"
        print(f"| {name} | {s} | {s - 1} | {b:.4f} | {b / m:.3f} ({100 * (b / m - 1):+.1f}%) |")
    print(f"\nQuincunx-5 / marginal = {q / m:.3f} (paper Table 2: 0.373 / 0.512 = 0.729).")

    sizes = {f"{Image.open(f).width}x{Image.open(f).height}" for f in files}
    print(f"\n### Speed (CPU, {args.threads} threads, shared machine; images {', '.join(sorted(sizes))})\n")
    print("| | median time (s) | MIM evaluations / image |")
    print("|---|---|---|")
    print(f"| encode (analysis + 5 priors + range coding) | {statistics.median(t_enc):.2f} | {max(n_enc)} |")
    print(f"| decode all 5 stages, rendering each | {statistics.median(t_dec):.2f} | {max(n_dec)} |")

    w, h = strip[0].width // 3, strip[0].height // 3
    canvas = Image.new("RGB", (w * len(strip), h))
    for j, im in enumerate(strip):
        canvas.paste(im.resize((w, h), Image.LANCZOS), (j * w, 0))
    out = Path(__file__).parent / "refinements.png"
    canvas.save(out, optimize=True)
    print(f"\nwrote {out} ({files[0].name}: stages 1..5, then the original, at 1/3 size)")


if __name__ == "__main__":
    main()
