"""Time to first preview and time to final over a throttled loopback link, progcodec vs JPEG.

    python benchmarks/network.py [--rates 256kbit 2mbit] [--repeat 3] [--image FILE] [--threads 1]

One run, side by side: the image (the bundled progcodec/data/default.png, or the tests'
synthetic photo if it is absent) is encoded by every loadable plugin, and as baseline and
progressive JPEG (Pillow, optimized Huffman tables) at the lowest quality whose PSNR reaches
the plugin's final PSNR. All files are served by ``progcodec serve``'s server on 127.0.0.1,
throttled per connection (token bucket) to each rate; a client fetches each file with
urllib and decodes as bytes arrive:

* progcodec: ``StreamDecoder(latest_only=True)``; first preview = layer 1 decoded and rendered
  to a PIL image; final = last layer.
* progressive JPEG: Pillow decodes the prefix that ends with the first scan (what a browser
  shows first); final = the whole file decoded.
* baseline JPEG: no full-image preview (rows arrive top-down): first preview = final.

Times include the HTTP request, the transfer and the decoding; the median of ``--repeat``
runs is printed as a Markdown table. Decoding uses ``--threads`` torch threads (1 by default:
the reference machine is a shared 2-core box).
"""
from __future__ import annotations

import argparse
import io
import shutil
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image, ImageFile

import progcodec
from common import decode_classic, jpeg_at_psnr, loadable_plugins
from progcodec import net
from progcodec.image import psnr, to_tensor
from progcodec.server import running

ROOT = Path(__file__).resolve().parents[1]


def load_image(path: str | None) -> tuple[str, Image.Image]:
    src = Path(path) if path else ROOT / "progcodec" / "data" / "default.png"
    if src.exists():
        return src.name, Image.open(src).convert("RGB")
    from progcodec.testing import sample_image  # the tests' synthetic photo

    return "synthetic 512x384", sample_image(512, 384)


def jpeg_first_scan_end(data: bytes) -> int:
    """Offset just past the entropy-coded data of the first scan (SOS) of a JPEG."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"bad JPEG marker at {i}")
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker != 0xDA:
            i += 2 + length
            continue
        j = i + 2 + length
        while (j := data.find(b"\xff", j)) != -1 and j + 1 < len(data):
            nxt = data[j + 1]
            if nxt != 0 and not 0xD0 <= nxt <= 0xD7:
                return j
            j += 2
        return len(data)
    raise ValueError("no scan in this JPEG")


def fetch_pcs(url: str):
    """(seconds to first preview, seconds to final, first step) for one progcodec transfer."""
    import torch

    t0 = time.perf_counter()
    dec = progcodec.StreamDecoder(latest_only=True)
    first = first_t = last_t = None
    with urllib.request.urlopen(url, timeout=120) as resp, torch.inference_mode():
        for chunk in net.iter_body(resp):
            for step in dec.feed(chunk):
                step.image  # a PIL image, as Pillow's JPEG decoder gives
                if first is None:
                    first, first_t = step, time.perf_counter() - t0
                last_t = time.perf_counter() - t0
            if dec.finished:
                break
    dec.close()
    return first_t, last_t, first


def fetch_jpeg(url: str, preview_at: int | None):
    """(seconds to first preview, seconds to final, preview image) for one JPEG transfer."""
    t0 = time.perf_counter()
    buf = bytearray()
    preview = first_t = None
    with urllib.request.urlopen(url, timeout=120) as resp:
        for chunk in net.iter_body(resp):
            buf += chunk
            if preview_at is not None and preview is None and len(buf) >= preview_at:
                preview = decode_prefix(bytes(buf[:preview_at]))
                first_t = time.perf_counter() - t0
    Image.open(io.BytesIO(bytes(buf))).convert("RGB").load()
    last_t = time.perf_counter() - t0
    return (first_t if first_t is not None else last_t), last_t, preview


def decode_prefix(data: bytes) -> Image.Image:
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im.convert("RGB")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", nargs="+", default=["256kbit", "2mbit"], help="link bandwidths")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell (median is shown)")
    ap.add_argument("--image", help="image file (default: progcodec/data/default.png)")
    ap.add_argument("--plugins", nargs="+", help="default: every loadable RGB plugin")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for decoding")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    img_name, img = load_image(a.image)
    x = to_tensor(img)[0]
    tmp = Path(tempfile.mkdtemp(prefix="progcodec-bench-"))
    entries = []  # (codec label, file name, kind, final PSNR, first-preview bytes, preview PSNR, size)
    skipped = []
    try:
        for name in loadable_plugins(a.plugins):
            try:
                progcodec.registry.load(name)
            except progcodec.ProgcodecError as exc:  # e.g. weights not trained yet
                skipped.append(f"{name}: {exc}")
                continue
            data = progcodec.encode(img, model=name)
            h = progcodec.info(data)
            final = progcodec.decode(data)
            target = psnr(final.tensor, x)
            first = progcodec.decode(data, layers=1)
            (tmp / f"{name}.pcs").write_bytes(data)
            entries.append((f"{name} ({h.rate}, {h.layers} layers)", f"{name}.pcs", "pcs", target,
                            h.layer_ends()[0], psnr(first.tensor, x), len(data)))
            for progressive in (False, True):
                q, jpg = jpeg_at_psnr(img, target, progressive=progressive)
                label = f"{'progressive' if progressive else 'baseline'} JPEG q{q} (vs {name})"
                fname = f"{name}-{'prog' if progressive else 'base'}-q{q}.jpg"
                (tmp / fname).write_bytes(jpg)
                cut = jpeg_first_scan_end(jpg) if progressive else None
                pre = psnr(to_tensor(decode_prefix(jpg[:cut]))[0], x) if progressive else float("nan")
                entries.append((label, fname, "jpeg", psnr(decode_classic(jpg), x), cut, pre, len(jpg)))
        rows = []
        with running(tmp, quiet=True, suffixes=(".pcs", ".jpg"), max_connections=8, request_timeout=120) as srv:
            for label, fname, kind, *_ in entries:  # warm-up: model load, tables, caches
                (fetch_pcs if kind == "pcs" else lambda u: fetch_jpeg(u, None))(f"{srv.url}/files/{fname}")
            for rate in a.rates:
                bps = net.parse_rate(rate)
                for label, fname, kind, final_psnr, preview_bytes, preview_psnr, size in entries:
                    url = f"{srv.url}/files/{fname}?throttle={rate}"
                    runs = [fetch_pcs(url) if kind == "pcs" else fetch_jpeg(url, preview_bytes)
                            for _ in range(a.repeat)]
                    ttfp = statistics.median(r[0] for r in runs)
                    ttf = statistics.median(r[1] for r in runs)
                    rows.append((rate, label, size, final_psnr, preview_bytes, preview_psnr, ttfp, ttf, bps))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"image: {img_name} {img.width}x{img.height}; loopback HTTP throttled per connection; "
          f"median of {a.repeat} runs; torch threads: {a.threads}\n")
    print("| link | codec | bytes | final PSNR dB | first preview at | preview PSNR dB "
          "| time to first preview ms | time to final ms | transfer alone ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for rate, label, size, final_psnr, pb, pp, ttfp, ttf, bps in rows:
        at = f"{pb} B" if pb else "— (top-down rows)"
        pp = f"{pp:.2f}" if pp == pp else "—"
        print(f"| {rate} | {label} | {size} | {final_psnr:.2f} | {at} | {pp} | {1000 * ttfp:.0f} "
              f"| {1000 * ttf:.0f} | {1000 * size / bps:.0f} |")
    for line in skipped:
        print(f"skipped {line}")
    print("\nfirst preview: progcodec layer 1 (header included), progressive JPEG's first scan. "
          "transfer alone: bytes / rate, without HTTP or decoding.")


if __name__ == "__main__":
    main()
