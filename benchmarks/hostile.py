"""Hostile-input resource benchmark (issue 17): peak RSS of small crafted streams, per model.

    python benchmarks/hostile.py                  # attack table: worst stream under 1 kB per model
    python benchmarks/hostile.py --measure 1024   # decode memory per pixel of a legit decode

Every decode runs in a fresh subprocess (one torch thread); its peak RSS (``ru_maxrss``, read
as VmHWM on Linux and reset after loading the model and decoding a 16x16 stream) is the
decode's peak; "base" is the RSS before the decode, "growth" the peak above it. Attack candidates per model, each declaring the largest image the default
``LIMITS.max_decode_bytes`` admits (or more):

* ``zeros``: layer 1 has the right prior check and a payload of 4 zero bytes (constriction
  reads zeros past the end of a payload; this used to decode the full image from nothing),
* ``random``: the same with 256 random payload bytes,
* ``rewrite``: a valid 24x16 stream with width and height rewritten,
* ``flat``: a real encode of a flat grey image at that size (a legit small stream),
* ``over``: 4096x4096 declared, over the budget (refused at the header).

The worst candidate under 1 kB is the table row; ``--all`` prints every candidate.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_kib() -> int:
    """Peak RSS of this process: VmHWM where Linux has it (ru_maxrss of an exec'd child can
    carry its parent's peak), else ``ru_maxrss``."""
    return _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> int:
    """Reset the peak to the current RSS (Linux clear_refs 5) and return it (KiB)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS") or _rss_kib()
    except OSError:
        return _rss_kib()


def child(model: str, path: str, trusted: bool) -> None:
    """Decode ``path`` once; print peak/base RSS, time and the outcome as JSON."""
    import numpy as np
    import torch
    from PIL import Image

    import progcodec

    torch.set_num_threads(1)
    m = progcodec.registry.load(model)
    tiny = Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).convert("L" if m.channels == 1 else "RGB")
    progcodec.decode(progcodec.encode(tiny, model=model))
    data = Path(path).read_bytes()
    base = _reset_peak()
    limits = progcodec.Limits(max_decode_bytes=1 << 40, max_pixels=1 << 30) if trusted else None
    t0, err, layers = time.perf_counter(), None, 0
    try:
        for step in progcodec.decode_stream([data], limits=limits):
            layers = step.layer
    except progcodec.ProgcodecError as exc:
        err = f"{type(exc).__name__}: {exc}"[:120]
    print(json.dumps({"base_kib": base, "peak_kib": _rss_kib(), "seconds": time.perf_counter() - t0,
                      "layers": layers, "error": err}))


def run_child(model: str, data: bytes, trusted: bool = False, timeout: float = 900) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".pcs", delete=False) as f:
        f.write(data)
    try:
        out = subprocess.run([sys.executable, __file__, "--child", model, f.name] + (["--trusted"] if trusted else []),
                             capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return {"base_kib": 0, "peak_kib": 0, "seconds": timeout, "layers": 0, "error": "timeout"}
    finally:
        os.unlink(f.name)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        return {"base_kib": 0, "peak_kib": 0, "seconds": 0, "layers": 0,
                "error": f"child failed rc={out.returncode}: {out.stderr.strip()[-200:]}"}
    return json.loads(lines[-1])


def _image(w: int, h: int, channels: int, flat: bool = False):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if flat:
        img = np.full((h, w, 3), 128.0)
    else:
        img = np.stack([128 + 90 * np.sin(xx / (7 + 5 * c) + yy / 11 + c) * np.cos(yy / (9 + 3 * c))
                        for c in range(3)], axis=-1) + rng.normal(0, 6, (h, w, 3))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return im.convert("L") if channels == 1 else im


def craft(model: str, w: int, h: int, payload: bytes) -> bytes:
    """A stream for ``model`` declaring ``w`` x ``h`` whose layer 1 is ``payload`` with the
    prior check the decoder will compute (an attacker can compute it: the first prior needs no
    data); later layers are 4 zero bytes each."""
    import torch

    import progcodec
    from progcodec import bitstream, entropy
    from progcodec.image import padded_size

    m = progcodec.registry.load(model)
    small = progcodec.encode(_image(24, 16, m.channels), model=model)
    header, _ = bitstream.read(small)
    side = bitstream.unpack_side(header)
    ph, pw = padded_size(h, w, m.stride)
    with torch.inference_mode():
        check = entropy.prior_check(m.decoder(ph, pw, side).prior(0))
    header = replace(header, width=w, height=h, stored_size=None)
    frames = [(payload, check)] + [(bytes(4), 0)] * (header.layers - 1)
    return bitstream.write(header, frames)


def rewrite(model: str, w: int, h: int) -> bytes:
    import progcodec
    from progcodec import bitstream

    m = progcodec.registry.load(model)
    small = progcodec.encode(_image(24, 16, m.channels), model=model)
    header, frames = bitstream.read(small)
    return bitstream.write(replace(header, width=w, height=h, stored_size=None),
                           [(f.payload, f.prior_check) for f in frames])


def max_side(model: str) -> int:
    """The largest square side whose decode the default budget admits."""
    import progcodec

    m = progcodec.registry.load(model)
    px = progcodec.LIMITS.max_decode_bytes // m.decode_bytes_per_pixel
    side = int(px ** 0.5) // m.stride * m.stride
    return side


def attack(model: str, show_all: bool) -> list[dict]:
    import progcodec

    m = progcodec.registry.load(model)
    side = max_side(model)
    cands = {
        "zeros": lambda: craft(model, side, side, bytes(4)),
        "random": lambda: craft(model, side, side, random.Random(0).randbytes(256)),
        "rewrite": lambda: rewrite(model, side, side),
        "flat": lambda: progcodec.encode(_image(side, side, m.channels, flat=True), model=model),
        "over": lambda: craft(model, 4096, 4096, bytes(4)),
    }
    rows = []
    for name, make in cands.items():
        try:
            data = make()
        except progcodec.ProgcodecError as exc:
            print(f"  {model} {name}: could not craft ({exc})", file=sys.stderr)
            continue
        size = 4096 if name == "over" else side
        r = run_child(model, data)
        r.update(model=model, case=name, side=size, bytes=len(data))
        rows.append(r)
        if show_all:
            _print_row(r)
    return rows


def _print_row(r: dict) -> None:
    growth = max(0, r["peak_kib"] - r["base_kib"]) / 1024
    per_byte = growth * 1024 * 1024 / r["bytes"] if r["bytes"] else float("nan")
    outcome = r["error"].split(":")[0] if r["error"] else f"decoded {r['layers']} layers"
    print(f"| {r['model']} | {r['case']} | {r['side']}x{r['side']} | {r['bytes']} | {outcome} | {r['seconds']:.2f} |"
          f" {r['peak_kib'] / 1024:.0f} | {growth:.0f} | {per_byte / 1024:.1f} |", flush=True)


def measure(models: list[str], side: int) -> None:
    """Legit decode memory per padded pixel (what ``decode_bytes_per_pixel`` is set from)."""
    import progcodec
    from progcodec.image import padded_size

    print(f"| model | image | bytes | peak RSS (MiB) | base (MiB) | growth bytes/pixel | declared |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model in models:
        m = progcodec.registry.load(model)
        data = progcodec.encode(_image(side, side, m.channels), model=model)
        r = run_child(model, data, trusted=True)
        ph, pw = padded_size(side, side, m.stride)
        per_px = (r["peak_kib"] - r["base_kib"]) * 1024 / (ph * pw)
        print(f"| {model} | {side}x{side} | {len(data)} | {r['peak_kib'] / 1024:.0f} | {r['base_kib'] / 1024:.0f} |"
              f" {per_px:.0f} | {m.decode_bytes_per_pixel} |" + (f" {r['error']}" if r["error"] else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["pyramid", "hqa", "hqa-digits", "vq-vae", "pq-mim", "qres-vae"])
    ap.add_argument("--measure", type=int, metavar="SIDE", help="measure a legit SIDExSIDE decode instead")
    ap.add_argument("--all", action="store_true", help="print every attack candidate, not only the worst")
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "FILE"), help=argparse.SUPPRESS)
    ap.add_argument("--trusted", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.trusted)
    import torch

    torch.set_num_threads(1)
    if args.measure:
        return measure(args.models, args.measure)
    import progcodec

    print(f"default LIMITS.max_decode_bytes = {progcodec.LIMITS.max_decode_bytes >> 20} MiB; one torch thread")
    print("| model | worst case | declared | stream bytes | outcome | seconds | peak RSS (MiB) | growth (MiB) |"
          " growth per stream byte (KiB) |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|")
    for model in args.models:
        rows = [r for r in attack(model, args.all) if r["bytes"] < 1024]
        if rows and not args.all:
            _print_row(max(rows, key=lambda r: r["peak_kib"] - r["base_kib"]))


if __name__ == "__main__":
    main()
