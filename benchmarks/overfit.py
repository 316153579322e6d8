"""The fitted-per-image codec: R-D per layer, effort and rate, encode/decode time, fitting curve.

    python benchmarks/overfit.py [--limit 3] [--rates lowest low medium high] [--efforts fast medium] [--shard 0/2]
                                 [--start latents] [--out docs/figures/overfit.jsonl] [--report-only]

``--start``: ``warm`` (the library's default: warm-start networks, latents from zero),
``latents`` (warm-start networks and the analysis network's starting latents) or ``cold``
(random networks). Each (image, effort,
rate, start) encode is one JSON line in ``--out`` (appended as it finishes, so
an interrupted run resumes where it stopped). The report prints, per effort: mean bpp / PSNR /
MS-SSIM after each layer, encode and decode seconds (768x512, this CPU), time to the first
preview, bytes of the networks, BD-rate of the final layer against baseline JPEG, WebP and
AVIF on the same photos, and PSNR against fitting iterations for the first photo.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import progcodec
from common import bd_rate, classic, decode_classic, metrics, test_images
from progcodec import bitstream, entropy
from progcodec.image import to_tensor
from progcodec.stream import StreamDecoder

CLASSIC = {"jpeg": [10, 20, 30, 45, 60, 75, 85, 95], "webp": [10, 25, 40, 55, 70, 85, 95],
           "avif": [15, 30, 45, 60, 75, 90]}


def network_bytes(data: bytes) -> int:
    """Bytes of step 0 of layer 1 (the quantized networks) in a stream, coded on their own
    (before 2026-12-02 this subtracted 16 bytes of step checks that such a payload has not)."""
    header, frames = bitstream.read(data)
    model = progcodec.registry.load("overfit", header.rate)
    state = model.decoder(header.height, header.width, bitstream.unpack_side(header))
    reader = entropy.LayerReader(frames[0].payload, frames[0].prior_check, state.coding_steps(0))
    syms = reader.decode(state.step_prior(0, 0))
    writer = entropy.LayerWriter()
    writer.code(syms, state.step_prior(0, 0))
    return len(writer.finish()[0])


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


START = {"latents": {"latent_init": "analysis"}, "warm": {"latent_init": "zero"}, "cold": {"warm_start": False}}


def one(img_name, img, effort, rate, start, save_fits: Path | None = None):
    """Encode one photo; with ``save_fits``, also save the fit's float state there
    (``<image>_<effort>_<rate>_<start>.pt``) for ``overfit_repack.py``."""
    curve = []
    t0 = time.perf_counter()
    fit_threads = []

    def progress(it, n, p, b):
        fit_threads[:] = [progcodec.get_threads()]
        curve.append((it, round(p, 3), round(b, 4), round(time.perf_counter() - t0, 2)))

    with saving_fits(save_fits and fit_path(save_fits, img_name, effort, rate, start)):
        data = progcodec.encode(img, model="overfit", rate=rate, effort=effort, progress=progress, **START[start])
    enc = time.perf_counter() - t0
    return {"image": img_name, "effort": effort, "rate": rate, "start": start,
            "threads": fit_threads[0], "encode_s": enc, **measure(data, img), "commit": _commit(), "curve": curve}


def measure(data: bytes, img) -> dict:
    """Decode times (every layer rendered; the final image alone; the first preview) and each
    layer's bytes / bpp / PSNR / MS-SSIM of a stream of ``img``."""
    x = to_tensor(img)[0]
    t1 = time.perf_counter()
    dec = StreamDecoder()
    first = None
    steps = []
    for i in range(0, len(data), 4096):
        for s in dec.feed(data[i : i + 4096]):
            steps.append(s)
            first = first or time.perf_counter() - t1
    dec.close()
    full = time.perf_counter() - t1
    t2 = time.perf_counter()
    progcodec.decode(data)  # all layers, only the last rendered
    final = time.perf_counter() - t2
    header = bitstream.read(data)[0]
    layers = []
    for s in steps:
        p, m = metrics(s.tensor, x)
        layers.append({"layer": s.layer, "bytes": s.bytes_consumed, "bpp": s.bpp, "psnr": p, "msssim": m})
    return {"decode_s": full, "final_decode_s": final, "first_preview_s": first, "net_bytes": network_bytes(data),
            "bytes": len(data), "header_bytes": header.header_bytes(),
            "scale_offsets": bitstream.unpack_side(header).get("so"), "layers": layers}


def fit_path(folder: Path, image: str, effort: str, rate: str, start: str) -> Path:
    """Where ``--save-fits`` keeps one encode's fit."""
    return folder / f"{image}_{effort}_{rate}_{start}.pt"


@contextmanager
def saving_fits(path: Path | None):
    """While encoding: save the fitted state that ``Overfit.pack`` quantizes to ``path``."""
    if path is None:
        yield
        return
    cls = type(progcodec.registry.load("overfit"))
    pack = cls.pack

    def saving(self, fitted, x, cfg, init=None):
        torch.save({"state": fitted.state_dict(), "cfg": dataclasses.asdict(cfg), "hw": tuple(x.shape[-2:])}, path)
        return pack(self, fitted, x, cfg, init)

    cls.pack = saving
    try:
        yield
    finally:
        cls.pack = pack


def classic_points(images):
    pts = defaultdict(list)
    for fmt, qs in CLASSIC.items():
        for q in qs:
            bpp, ps = [], []
            for _, img in images:
                data = classic(img, fmt, q)
                bpp.append(8 * len(data) / (img.width * img.height))
                ps.append(metrics(decode_classic(data), to_tensor(img)[0])[0])
            pts[fmt].append((float(np.mean(bpp)), float(np.mean(ps))))
    return pts


def progressive_prefixes(img, layers) -> list[float]:
    """PSNR of progressive JPEG cut at each layer's bytes; the quality whose whole file is
    closest in size to the stream (so both end at about the same rate)."""
    x = to_tensor(img)[0]
    total = layers[-1]["bytes"]
    data = min((classic(img, "jpeg-progressive", q) for q in range(5, 100, 5)), key=lambda d: abs(len(d) - total))
    out = []
    for layer in layers:
        try:
            out.append(metrics(decode_classic(data[: layer["bytes"]]), x)[0])
        except OSError:  # too little to show anything
            out.append(float("nan"))
    return out


def prefix_table(er, images):
    imgs = dict(images)
    print("\nprefixes vs progressive JPEG cut at the same bytes (mean PSNR; wins = prefixes at or above JPEG):")
    print("| rate | " + " | ".join(f"layer {k + 1}" for k in range(len(er[0]["layers"]))) + " | wins |")
    print("|---|" + "---:|" * (len(er[0]["layers"]) + 1))
    for rate in dict.fromkeys(r["rate"] for r in er):
        rr = [r for r in er if r["rate"] == rate]
        ours = np.array([[layer["psnr"] for layer in r["layers"]] for r in rr])
        jpeg = np.array([progressive_prefixes(imgs[r["image"]], r["layers"]) for r in rr])
        wins = int(np.sum(ours >= np.nan_to_num(jpeg, nan=0.0)))
        cells = " | ".join(f"{o:.2f} / {j:.2f}" for o, j in zip(ours.mean(0), np.nanmean(jpeg, 0)))
        print(f"| {rate} | {cells} | {wins}/{ours.size} |")


def report(rows, images):
    names = {n for n, _ in images}
    rows = [r for r in rows if r["image"] in names]
    done_images = sorted({r["image"] for r in rows})
    cache = {}
    for effort, start in sorted({(r["effort"], r.get("start", "cold")) for r in rows}):
        er = [r for r in rows if r["effort"] == effort and r.get("start", "cold") == start]
        rates, names = {r["rate"] for r in er}, {r["image"] for r in er}
        full = {n for n in names if {r["rate"] for r in er if r["image"] == n} == rates}
        partial = sorted(names - full) if full else []  # mean curves only over photos with every rate
        if partial:
            er = [r for r in er if r["image"] in full]
        photos = tuple(sorted({r["image"] for r in er}))
        if photos not in cache:  # the anchors on exactly this group's photos
            cache[photos] = classic_points([(n, i) for n, i in images if n in photos])
        anchors = cache[photos]
        print(f"\n### effort {effort}, {start} start ({len(photos)} photos, 768x512)\n")
        if partial:
            print(f"(left out, not every rate measured: {', '.join(partial)})\n")
        print("| rate | layer | bpp | PSNR | MS-SSIM |")
        print("|---|---:|---:|---:|---:|")
        finals = []
        for rate in sorted({r["rate"] for r in er}, key=lambda k: np.mean([r["bytes"] for r in er if r["rate"] == k])):
            rr = [r for r in er if r["rate"] == rate]
            for k in range(len(rr[0]["layers"])):
                b = np.mean([r["layers"][k]["bpp"] for r in rr])
                p = np.mean([r["layers"][k]["psnr"] for r in rr])
                m = np.mean([r["layers"][k]["msssim"] for r in rr])
                print(f"| {rate} | {k + 1} | {b:.4f} | {p:.2f} | {m:.4f} |")
            finals.append((float(np.mean([r["layers"][-1]["bpp"] for r in rr])),
                           float(np.mean([r["layers"][-1]["psnr"] for r in rr]))))
        print()
        for fmt in CLASSIC:
            bd = bd_rate(anchors[fmt], finals)
            print(f"BD-rate vs {fmt}: " + (f"{bd:+.1f}%" if np.isfinite(bd) else "n/a (PSNR ranges do not overlap)"))
        prefix_table(er, images)
        fin = [r["final_decode_s"] for r in er if "final_decode_s" in r]
        print(f"encode s (mean): {np.mean([r['encode_s'] for r in er]):.1f}; progressive decode s (every layer"
              f" rendered): {np.mean([r['decode_s'] for r in er]):.3f}; final-image decode s: "
              + (f"{np.mean(fin):.3f} ({len(fin)} encodes)" if fin else "n/a")
              + f"; first preview s: {np.mean([r['first_preview_s'] for r in er]):.3f};"
              f" network bytes: {np.mean([r['net_bytes'] for r in er]):.0f}")
    print("\nclassic codecs on all these photos (mean bpp, PSNR):")
    for fmt, pts in classic_points([(n, i) for n, i in images if n in done_images]).items():
        print(f"  {fmt}: " + ", ".join(f"{b:.3f}/{p:.2f}" for b, p in pts))
    first = [r for r in rows if r["image"] == done_images[0]]
    for r in first:
        print(f"\nfitting curve, {r['image']} effort {r['effort']} rate {r['rate']} {r.get('start', 'cold')} start"
              " (iteration, PSNR, est. bpp, s):")
        print("  " + " ".join(f"{it}:{p:.2f}" for it, p, _, _ in r["curve"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path)
    ap.add_argument("--limit", type=int, default=3)
    ap.add_argument("--rates", nargs="*", default=["lowest", "low", "medium", "high"])
    ap.add_argument("--efforts", nargs="*", default=["fast", "medium"])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "figures" / "overfit.jsonl")
    ap.add_argument("--start", choices=tuple(START), default="warm", help="how fits start (see above)")
    ap.add_argument("--shard", default="0/1", help="K/N: encode only photos K, K+N, ... (run N at once)")
    ap.add_argument("--save-fits", type=Path, help="also save each fit's state here (for overfit_repack.py)")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    images = test_images(a.images, a.limit)
    k, n = (int(v) for v in a.shard.split("/"))
    if not 0 <= k < n:
        raise SystemExit(f"--shard K/N needs 0 <= K < N, got {a.shard}")
    if a.save_fits:
        a.save_fits.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in a.out.read_text().splitlines()] if a.out.exists() else []
    if not a.report_only:
        have = {(r["image"], r["effort"], r["rate"], r.get("start", "cold")) for r in rows}
        for name, img in images[k::n]:  # photo by photo, so a cut-short run leaves whole curves
            for effort in a.efforts:
                for rate in a.rates:
                    if (name, effort, rate, a.start) in have:
                        continue
                    r = one(name, img, effort, rate, a.start, a.save_fits)
                    rows.append(r)
                    with a.out.open("a") as f:
                        f.write(json.dumps(r) + "\n")
                    print(f"{name} {effort} {rate} {a.start}: {r['layers'][-1]['bpp']:.3f} bpp {r['layers'][-1]['psnr']:.2f} dB"
                          f" in {r['encode_s']:.0f} s", flush=True)
    report(rows, images)


if __name__ == "__main__":
    main()
