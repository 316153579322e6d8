"""Rate-distortion after every layer for every plugin and rate point, against JPEG, WebP, AVIF.

    python benchmarks/rd.py [--images data/test] [--limit N] [--out docs/figures]

Held-out photos: data/test (scripts/fetch_data.py; never used in training). Prints Markdown
tables (mean over images of bpp, PSNR, MS-SSIM after each layer; classic codecs per
quality; BD-rate of each plugin's final layer against baseline JPEG), writes ``rd.csv`` and
plots (R-D curves and "quality versus bytes received") into ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

import progcodec
from common import bd_rate, classic, decode_classic, loadable_plugins, metrics, test_images
from progcodec import registry
from progcodec.image import to_tensor

QUALITIES = {"jpeg": [10, 20, 30, 45, 60, 75, 85, 95], "jpeg-progressive": [10, 20, 30, 45, 60, 75, 85, 95],
             "webp": [10, 25, 40, 55, 70, 85, 95], "avif": [15, 30, 45, 60, 75, 90]}
FRACTIONS = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0]


def measure(images, plugins, formats):
    rows = []
    for name in plugins:
        for rate in registry.get_class(name).rates:
            for img_name, img in images:
                x = to_tensor(img)[0]
                data = progcodec.encode(img, model=name, rate=rate)
                for step in progcodec.decode_stream([data]):
                    p, m = metrics(step.tensor, x)
                    rows.append(dict(codec=name, setting=rate, layer=step.layer, image=img_name,
                                     bytes=step.bytes_consumed, bpp=step.bpp, psnr=p, msssim=m))
    for fmt in formats:
        for q in QUALITIES[fmt]:
            for img_name, img in images:
                x = to_tensor(img)[0]
                data = classic(img, fmt, q)
                p, m = metrics(decode_classic(data), x)
                rows.append(dict(codec=fmt, setting=str(q), layer=0, image=img_name, bytes=len(data),
                                 bpp=8 * len(data) / (img.width * img.height), psnr=p, msssim=m))
    for img_name, img in images:  # progressive JPEG previews from truncated files
        x = to_tensor(img)[0]
        data = classic(img, "jpeg-progressive", 75)
        for f in FRACTIONS:
            cut = data[: max(1, int(len(data) * f))]
            try:
                p, m = metrics(decode_classic(cut), x)
            except OSError:  # too little to show anything
                continue
            rows.append(dict(codec="jpeg-progressive-prefix", setting="75", layer=f, image=img_name,
                             bytes=len(cut), bpp=8 * len(cut) / (img.width * img.height), psnr=p, msssim=m))
    return rows


def mean_table(rows):
    groups = defaultdict(list)
    for r in rows:
        groups[(r["codec"], r["setting"], r["layer"])].append(r)
    return {k: {m: float(np.nanmean([r[m] for r in v])) for m in ("bytes", "bpp", "psnr", "msssim")} | {"n": len(v)}
            for k, v in groups.items()}


def fmt_bd(v):
    return "n/a (curves do not overlap, or one point)" if math.isnan(v) else f"{v:+.1f}%"


def fmt_ms(v):
    return "-" if math.isnan(v) else f"{v:.4f}"


def report(table, plugins, formats):
    for name in plugins:
        cls = registry.get_class(name)
        for rate in cls.rates:
            print(f"\n### {name} ({rate})\n\n| layer | name | bpp | PSNR (dB) | MS-SSIM |\n|---:|---|---:|---:|---:|")
            for k, layer_name in enumerate(cls.layer_names, 1):
                t = table.get((name, rate, k))
                if t:
                    print(f"| {k} | {layer_name} | {t['bpp']:.4f} | {t['psnr']:.2f} | {fmt_ms(t['msssim'])} |")
    print("\n### classic codecs (Pillow)\n\n| codec | quality | bpp | PSNR (dB) | MS-SSIM |\n|---|---:|---:|---:|---:|")
    for fmt in formats:
        for q in QUALITIES[fmt]:
            t = table[(fmt, str(q), 0)]
            print(f"| {fmt} | {q} | {t['bpp']:.4f} | {t['psnr']:.2f} | {fmt_ms(t['msssim'])} |")
    jpeg = [(table[("jpeg", str(q), 0)]["bpp"], table[("jpeg", str(q), 0)]["psnr"]) for q in QUALITIES["jpeg"]]
    print("\n### BD-rate of the final layer against baseline JPEG (negative: fewer bits at equal PSNR)\n")
    print("| codec | points | BD-rate |\n|---|---:|---:|")
    for name in plugins:
        cls = registry.get_class(name)
        pts = [(table[(name, r, len(cls.layer_names))]["bpp"], table[(name, r, len(cls.layer_names))]["psnr"]) for r in cls.rates]
        print(f"| {name} | {len(pts)} | {fmt_bd(bd_rate(jpeg, pts))} |")
    for fmt in formats:
        if fmt != "jpeg":
            pts = [(table[(fmt, str(q), 0)]["bpp"], table[(fmt, str(q), 0)]["psnr"]) for q in QUALITIES[fmt]]
            print(f"| {fmt} | {len(pts)} | {fmt_bd(bd_rate(jpeg, pts))} |")


def plot(table, plugins, formats, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for metric, label in (("psnr", "PSNR (dB)"), ("msssim", "MS-SSIM")):
        fig, ax = plt.subplots(figsize=(7, 5))
        for fmt in formats:
            pts = [table[(fmt, str(q), 0)] for q in QUALITIES[fmt]]
            ax.plot([p["bpp"] for p in pts], [p[metric] for p in pts], "--", marker=".", label=fmt)
        for name in plugins:
            cls = registry.get_class(name)
            pts = [table[(name, r, len(cls.layer_names))] for r in cls.rates]
            ax.plot([p["bpp"] for p in pts], [p[metric] for p in pts], "-o", label=f"{name} (final layer)")
        ax.set(xlabel="bits per pixel", ylabel=label, title="Rate-distortion, held-out photos (mean)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.savefig(out / f"rd_{metric}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 5))
    for name in plugins:
        cls = registry.get_class(name)
        pts = [table[(name, cls.default_rate, k)] for k in range(1, len(cls.layer_names) + 1)]
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "-o", label=f"{name} ({cls.default_rate})")
    pts = [table[k] for k in sorted(k for k in table if k[0] == "jpeg-progressive-prefix")]
    ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "--.", label="progressive JPEG q75, truncated")
    ax.set(xlabel="bits per pixel received", ylabel="PSNR (dB) of what can be shown",
           title="Quality versus bytes received")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(out / "progressive.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--plugins", nargs="*")
    ap.add_argument("--formats", nargs="*", default=list(QUALITIES))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "figures")
    a = ap.parse_args()
    images = test_images(a.images, a.limit)
    plugins = loadable_plugins(a.plugins)
    rows = measure(images, plugins, a.formats)
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "rd.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    table = mean_table(rows)
    print(f"{len(images)} held-out photos ({', '.join(n for n, _ in images)}); plugins: {', '.join(plugins)}")
    report(table, plugins, a.formats)
    plot(table, plugins, a.formats, a.out)
    print(f"\nwrote {a.out / 'rd.csv'} and plots rd_psnr.png, rd_msssim.png, progressive.png")


if __name__ == "__main__":
    main()
