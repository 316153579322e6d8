"""``progcodec`` command line: encode, decode, info, truncate, plugins, demo, serve, view."""
from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from . import bitstream, codec, errors, registry
from .image import psnr, to_tensor
from .stream import decode_stream


def _chunks(path: str, size: int = 1 << 16):
    with (sys.stdin.buffer if path == "-" else open(path, "rb")) as f:
        while chunk := f.read(size):
            yield chunk


def _write_steps(steps, outdir: Path | None, stem: str, original=None):
    rows = []
    for step in steps:
        if outdir is not None:
            outdir.mkdir(parents=True, exist_ok=True)
            step.image.save(outdir / f"{stem}-layer{step.layer:02d}.png")
        quality = f"{psnr(step.tensor, original):7.2f}" if original is not None else "      -"
        rows.append(step)
        print(f"{step.layer:>5}  {step.header.layer_names[step.layer - 1]:<16} {step.bytes_consumed:>10}"
              f"  {step.bpp:7.4f}  {quality}", flush=True)
    return rows


def cmd_encode(a):
    img = Image.open(a.input)
    data = codec.encode(img, model=a.model, rate=a.rate)
    Path(a.output).write_bytes(data)
    h = codec.info(data)
    print(f"{a.output}: {len(data)} bytes, {8 * len(data) / (h.width * h.height):.4f} bpp, "
          f"{h.layers} layers ({h.model} {h.rate})")


def cmd_decode(a):
    steps_dir = Path(a.steps) if a.steps else None
    stem = Path(a.output).stem
    print("layer  name                  bytes      bpp     PSNR")
    last = None
    for last in _write_steps(decode_stream(_chunks(a.input), layers=a.layers), steps_dir, stem):
        pass
    last.image.save(a.output)
    print(f"wrote {a.output} ({last.layer}/{last.layers_total} layers)")


def cmd_info(a):
    data = b"".join(_chunks(a.input))
    h = codec.info(data)
    print(f"model     {h.model} (rate {h.rate}, version {h.model_version}, weights {h.weights})")
    print(f"image     {h.width}x{h.height} {h.mode}")
    print(f"layers    {h.layers} of {h.encoded_layers} encoded; coder {h.coder}")
    print(f"header    {h.header_bytes()} bytes; file {len(data)} bytes")
    print("layer  name              bytes    cum.bytes      bpp  complete")
    for k, (name, size, end) in enumerate(zip(h.layer_names, h.layer_sizes, h.layer_ends())):
        print(f"{k + 1:>5}  {name:<16} {size:>6} {end:>12} {8 * end / (h.width * h.height):8.4f}  "
              f"{'yes' if end <= len(data) else 'no'}")


def cmd_truncate(a):
    data = Path(a.input).read_bytes()
    out = bitstream.truncate(data, layers=a.layers, max_bytes=a.bytes)
    Path(a.output).write_bytes(out)
    print(f"{a.output}: {codec.info(out).layers} layers, {len(out)} bytes")


def cmd_plugins(a):
    for p in registry.plugins():
        if p.error:
            print(f"{p.name:<12} BROKEN: {p.error}")
            continue
        try:
            rates = []
            for rate in p.cls.rates:
                rates.append(f"{rate}={registry.load(p.name, rate).digest}")
            detail = ", ".join(rates)
        except errors.ProgcodecError as exc:
            detail = f"BROKEN: {exc}"
        print(f"{p.name:<12} {len(p.cls.layer_names)} layers  rates: {detail}  ({p.source})")


def cmd_demo(a):
    src = a.image or resources.files("progcodec") / "data" / "default.png"
    img = Image.open(src).convert("RGB")
    t0 = time.perf_counter()
    data = codec.encode(img, model=a.model, rate=a.rate)
    t1 = time.perf_counter()
    h = codec.info(data)
    out = Path(a.out)
    print(f"encoded {img.width}x{img.height} with {h.model} ({h.rate}): {len(data)} bytes, "
          f"{h.layers} layers, {1000 * (t1 - t0):.0f} ms")
    print(f"decoding progressively from {a.chunk}-byte chunks, refinements -> {out}/")
    print("layer  name                  bytes      bpp     PSNR")
    chunks = (data[i : i + a.chunk] for i in range(0, len(data), a.chunk))
    _write_steps(decode_stream(chunks), out, "demo", to_tensor(img)[0])
    print(f"decoded in {1000 * (time.perf_counter() - t1):.0f} ms")


def cmd_serve(a):
    from . import server

    server.serve(a.dir, host=a.host, port=a.port, throttle=a.throttle, quiet=a.quiet,
                 max_connections=a.max_connections)


def cmd_view(a):
    from .net import parse_rate

    parse_rate(a.throttle)  # a bad value is a usage error before any window opens
    try:
        from . import viewer
    except ImportError as exc:  # tkinter missing (e.g. Debian without python3-tk)
        raise OSError(f"the viewer needs tkinter and Pillow's ImageTk: {exc}") from None
    try:
        viewer.view(a.source, layers=a.layers, throttle=a.throttle, timeout=a.timeout)
    except viewer.tk.TclError as exc:  # no display
        raise OSError(f"cannot open a window: {exc}") from None


def cmd_batch(a):
    from . import batch

    return batch.run_cli(a)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="progcodec", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode", help="encode an image into a layered .pcs stream")
    e.add_argument("input"), e.add_argument("output")
    e.add_argument("--model", default=registry.DEFAULT_MODEL), e.add_argument("--rate")
    d = sub.add_parser("decode", help="decode a stream (or its first layers) to an image")
    d.add_argument("input", help="stream file, or - for stdin"), d.add_argument("output")
    d.add_argument("--layers", type=int, help="decode only the first K layers")
    d.add_argument("--steps", metavar="DIR", help="write every refinement as a PNG into DIR")
    i = sub.add_parser("info", help="show the header and layer table")
    i.add_argument("input")
    t = sub.add_parser("truncate", help="cut a stream after K layers (or a byte budget), still valid")
    t.add_argument("input"), t.add_argument("output")
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--layers", type=int), g.add_argument("--bytes", type=int)
    sub.add_parser("plugins", help="list installed model plugins")
    m = sub.add_parser("demo", help="encode the bundled image and decode it progressively")
    m.add_argument("--model", default=registry.DEFAULT_MODEL), m.add_argument("--rate")
    m.add_argument("--image", help="use this image instead of the bundled one")
    m.add_argument("--out", default="progcodec-demo", help="folder for the refinement PNGs")
    m.add_argument("--chunk", type=int, default=1024, help="bytes per network-like chunk")
    s = sub.add_parser("serve", help="serve .pcs files over HTTP (Range, ?layers=K) with a web viewer")
    s.add_argument("dir", help="folder of .pcs files (only files under it are served)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    s.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    s.add_argument("--throttle", metavar="RATE", help="per-connection bandwidth limit, e.g. 256kbit, 2mbit, 64kB")
    s.add_argument("--max-connections", type=int, default=32, help="concurrent connections (503 beyond)")
    s.add_argument("--quiet", action="store_true", help="no request log")
    v = sub.add_parser("view", help="open a window that refines a stream (file or URL) as it arrives")
    v.add_argument("source", help="a .pcs file, an http(s) URL, or - for stdin")
    v.add_argument("--layers", type=int, help="stop after K layers")
    v.add_argument("--throttle", metavar="RATE", help="read no faster than this (demo a slow link), e.g. 64kbit")
    v.add_argument("--timeout", type=float, default=30.0, help="seconds without data before giving up")
    from . import batch  # `progcodec batch` (issue 15): its options live in progcodec/batch.py

    batch.add_arguments(sub.add_parser("batch", help="encode a folder of images on all cores or a Dask cluster"))
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = globals()[f"cmd_{args.cmd}"](args)  # None, or a status (batch: 1 when some images failed)
    except (errors.ProgcodecError, OSError, UnidentifiedImageError, ValueError) as exc:
        print(f"progcodec: error: {exc}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
