"""Measure an HQA plugin through progcodec's real ``encode`` / ``decode_stream`` path.

    python -m progcodec_plugins.hqa.evaluate digits               # 297 held-out digits
    python -m progcodec_plugins.hqa.evaluate photo --data data/test

Prints Markdown tables (per layer: bytes, bpp, PSNR, MSE, codebook usage, layer-above prior
versus marginal histogram, digits: classifier error) and writes ``plugins/hqa/strip_<preset>.png``.
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
from progcodec import entropy, registry
from progcodec.image import pad, psnr, to_pil, to_tensor
from progcodec.plugin import Categorical

from .plugin import HQA, HQADigits
from .train import digits

HERE = Path(__file__).parent


def load_images(preset: str, folder: str) -> list[Image.Image]:
    if preset == "digits":
        return [to_pil(x) for x in digits("test")]
    paths = sorted(Path(folder).glob("*.png"))
    if not paths:
        raise SystemExit(f"no *.png under {folder}")
    return [Image.open(p).convert("RGB") for p in paths]


def ideal_bits(symbols: np.ndarray, params) -> float:
    """Shannon bits of ``symbols`` under the integer tables the coder uses."""
    f = entropy.quantize(params)[0].astype(np.float64)
    f = np.broadcast_to(f, symbols.shape + f.shape[-1:])
    return float(-np.log2(np.take_along_axis(f, symbols[..., None].astype(np.int64), -1)[..., 0] / f.sum(-1)).sum())


def code_bytes(model, img: Image.Image) -> tuple[np.ndarray, list]:
    """Per bitstream layer: payload bytes and ideal bits with the layer-above prior and with the
    marginal histogram (4 columns), and the codes."""
    xp = pad(to_tensor(img, model.channels), model.stride)
    with torch.inference_mode():
        analysis = model.analyze(xp)
        state = model.decoder(xp.shape[-2], xp.shape[-1], analysis.side)
        out = np.zeros((model.layers, 4))
        for k, symbols in enumerate(analysis.symbols):
            counts = model.net.marginals[model.layers - 1 - k].double().numpy()
            marg = [Categorical(counts / counts.sum(), shape=symbols[0].shape)]
            for j, params in enumerate((state.prior(k), marg)):
                out[k, 2 * j] = len(entropy.encode_layer(symbols, params)[0])
                out[k, 2 * j + 1] = ideal_bits(symbols[0], params[0])
            state.push(k, symbols)
    return out, [s[0] for s in analysis.symbols]


def classifier():
    """Logistic regression on the training digits: the paper's 'classification error' measure."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    order = np.random.default_rng(0).permutation(1797)
    x = digits("train").flatten(1).numpy()
    return LogisticRegression(max_iter=2000).fit(x, load_digits().target[order[297:]]), load_digits().target[order[:297]]


def strip(rows: list[list[torch.Tensor]], path: Path, crop: int | None, zoom: int) -> None:
    """One row per image: original, then the reconstruction from each layer (top first)."""
    tiles = []
    for row in rows:
        if crop:
            h, w = row[0].shape[-2:]
            y, x = (h - crop) // 2, (w - crop) // 2
            row = [t[:, y:y + crop, x:x + crop] for t in row]
        tiles.append(torch.cat(row, -1))
    img = to_pil(torch.cat(tiles, -2))
    img.resize((img.width * zoom, img.height * zoom), Image.NEAREST).save(path, optimize=True)


def evaluate(preset: str, folder: str, strip_rows: int) -> None:
    cls = HQADigits if preset == "digits" else HQA
    registry.register(cls)
    model = registry.load(cls.name)
    imgs = load_images(preset, folder)
    L, K = model.layers, model.net.layers[0].codebook.shape[0]
    stream_bytes = np.zeros((len(imgs), L))
    psnrs, mses = np.zeros((len(imgs), L)), np.zeros((len(imgs), L))
    coded = np.zeros((len(imgs), L, 4))
    counts = np.zeros((L, K))
    recons, rows = [[] for _ in range(L)], []
    for i, img in enumerate(imgs):
        data = progcodec.encode(img, model=cls.name)
        x = to_tensor(img, model.channels)[0]
        steps = list(progcodec.decode_stream([data]))
        stream_bytes[i] = [s.bytes_consumed for s in steps]
        for k, s in enumerate(steps):
            t = (s.tensor * 255).round() / 255
            psnrs[i, k], mses[i, k] = psnr(s.tensor, x), float(((t - x) ** 2).mean())
            recons[k].append(t)
        coded[i], codes = code_bytes(model, img)
        for k, c in enumerate(codes):
            counts[k] += np.bincount(c.ravel(), minlength=K)
        if i < strip_rows:
            rows.append([x] + [s.tensor for s in steps])
    pixels = imgs[0].width * imgs[0].height
    n = len(imgs)
    print(f"\n### `{cls.name}`: {n} held-out images of {imgs[0].width}x{imgs[0].height}\n")
    print("| layers decoded | codes | stream bytes (cum.) | bpp | PSNR dB | MSE | fixed-rate log2 K bpp (paper) |")
    print("|---|---|---|---|---|---|---|")
    for k in range(L):
        ncodes = int(np.prod(codes[k].shape))
        print(f"| {k + 1} `{model.layer_names[k]}` | {ncodes} | {stream_bytes[:, k].mean():.0f} |"
              f" {8 * stream_bytes[:, k].mean() / pixels:.4f} | {psnrs[:, k].mean():.2f} | {mses[:, k].mean():.4f} |"
              f" {ncodes * math.log2(K) / pixels:.4f} |")
    overhead = stream_bytes[:, -1].mean() - coded[:, :, 0].sum(1).mean()
    print(f"\nStream bytes include {overhead:.0f} B of container (header, frame headers, CRCs). The image after"
          " layer k is decoded from layer k's codes alone (the bytes of layers 1..k are needed to decode them).\n")
    print("| layer | payload B: layer-above prior / marginal | saved | ideal bits/code: prior / marginal / log2 K | saved (ideal) |")
    print("|---|---|---|---|---|")
    mean = coded.mean(0)
    for k in range(L + 1):
        ncodes = sum(int(np.prod(c.shape)) for c in codes) if k == L else int(np.prod(codes[k].shape))
        pb, pi, mb, mi = mean.sum(0) if k == L else mean[k]
        tag = ("(marginal itself)", "") if k == 0 else (f"{100 * (1 - pb / mb):.1f}%", f"{100 * (1 - pi / mi):.1f}%")
        name = "all" if k == L else f"{k + 1} `{model.layer_names[k]}`"
        print(f"| {name} | {pb:.1f} / {mb:.1f} | {tag[0]} | {pi / ncodes:.3f} / {mi / ncodes:.3f} / {math.log2(K):.0f} | {tag[1]} |")
    print("\n| layer | codes used (test) | perplexity | effective bits log2(ppl) |")
    print("|---|---|---|---|")
    for k in range(L):
        q = counts[k] / counts[k].sum()
        ppl = math.exp(-(q[q > 0] * np.log(q[q > 0])).sum())
        print(f"| {k + 1} `{model.layer_names[k]}` | {int((counts[k] > 0).sum())}/{K} | {ppl:.1f} | {math.log2(ppl):.2f} |")
    if preset == "digits":
        clf, labels = classifier()
        orig = np.stack([to_tensor(im, 1)[0].flatten().numpy() for im in imgs])
        print(f"\nClassifier error (logistic regression on the training digits): originals {100 * (clf.predict(orig) != labels).mean():.1f}%")
        for k in range(L):
            pred = clf.predict(torch.stack(recons[k]).flatten(1).numpy())
            print(f"- from layer {k + 1} `{model.layer_names[k]}`: {100 * (pred != labels).mean():.1f}%")
    else:
        img = imgs[0]
        data = progcodec.encode(img, model=cls.name)
        enc, dec, first = [], [], []
        for _ in range(3):
            t = time.perf_counter(); progcodec.encode(img, model=cls.name); enc.append(time.perf_counter() - t)
            t = time.perf_counter(); progcodec.decode(data, layers=1); first.append(time.perf_counter() - t)
            t = time.perf_counter(); list(progcodec.decode_stream([data])); dec.append(time.perf_counter() - t)
        print(f"\nTime for one {img.width}x{img.height} image ({torch.get_num_threads()} thread(s), best of 3):"
              f" encode {min(enc):.3f} s; decode to the first preview {min(first):.3f} s;"
              f" all {L} layers, rendering each {min(dec):.3f} s")
    out = HERE / f"strip_{preset}.png"
    strip(rows, out, None if preset == "digits" else 192, 2 if preset == "digits" else 1)
    print(f"\nStrip (rows: images; columns: original, then layers 1..{L} top first): {out.name}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", choices=["photo", "digits"])
    ap.add_argument("--data", default="data/test", help="folder of held-out PNGs (photo)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--strip-rows", type=int, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    evaluate(args.preset, args.data, args.strip_rows or (10 if args.preset == "digits" else 3))


if __name__ == "__main__":
    main()
