"""``progcodec`` command line: encode, decode, info, truncate, plugins, demo, serve, view.

Exit status: 0 success; 2 error or bad usage (nothing written); 3 partial: ``decode`` wrote the
last complete refinement of a cut or damaged stream (stderr says what was missing; ``--strict``
makes that an error), or ``info`` found damaged or missing layers.
"""
from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from . import bitstream, codec, errors, files, registry
from .image import psnr, to_tensor
from .stream import decode_stream


EXIT_ERROR, EXIT_PARTIAL = 2, 3


class UsageError(Exception):
    """A bad command line found before any work: argparse-style message, exit 2."""


def _check_input(path: str) -> None:
    if path != "-" and not Path(path).is_file():
        if Path(path).is_dir():
            raise IsADirectoryError(f"{path} is a folder, not a file")
        raise FileNotFoundError(f"No such file: {path}")


def _check_output(path: str, image: bool) -> str | None:
    """Refuse an output path before the work; for images return the Pillow format to save in."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"output {path} is a folder; give a file name"
                         + (" such as out.png" if image else " such as out.pcs"))
    if not p.parent.is_dir():
        raise UsageError(f"output folder {p.parent} does not exist")
    if not image:
        return None
    ext = p.suffix.lower()
    Image.init()
    fmt = Image.registered_extensions().get(ext)
    if not ext or fmt is None or fmt not in Image.SAVE or fmt == "PCS":
        what = f"extension {ext!r}" if ext else "no extension"
        raise UsageError(f"output {path} has {what}; name an image file such as out.png, out.webp, out.tif")
    return fmt


def _atomic(path, write) -> None:
    """``write(file)`` into a temporary file next to ``path``, then rename it over ``path``."""
    files.write_atomic(path, write)


def _save_image(img, path, fmt: str) -> None:
    _atomic(path, lambda f: img.save(f, format=fmt))


def _chunks(path: str, size: int = 1 << 16):
    with (sys.stdin.buffer if path == "-" else open(path, "rb")) as f:
        while chunk := f.read(size):
            yield chunk


TABLE_HEAD = "layer  name                  bytes      bpp     PSNR"


def _write_steps(steps, outdir: Path | None, stem: str, original=None):
    """Save a PNG and print a table row per step (the table head before the first); yields them."""
    for n, step in enumerate(steps):
        if outdir is not None:
            outdir.mkdir(parents=True, exist_ok=True)
            _save_image(step.image, outdir / f"{stem}-layer{step.layer:02d}.png", "PNG")
        quality = f"{psnr(step.tensor[: original.shape[0]], original):7.2f}" if original is not None else "      -"
        if n == 0:
            print(TABLE_HEAD)
        print(f"{step.layer:>5}  {step.header.layer_names[step.layer - 1]:<16} {step.bytes_consumed:>10}"
              f"  {step.bpp:7.4f}  {quality}", flush=True)
        yield step


def _encode_options(a) -> dict:
    """Model options given on the command line (``--effort`` ...), checked against the model."""
    given = {k: v for k, v in (("effort", a.effort), ("lmbda", a.lmbda), ("target_bpp", a.target_bpp),
                               ("iters", a.iters), ("warm_start", False if a.cold_start else None),
                               ("latent_init", a.latent_init))
             if v is not None}
    takes = registry.get_class(a.model).options
    for key in given:
        if key not in takes:
            flag = "cold-start" if key == "warm_start" else key.replace("_", "-")
            raise UsageError(f"model {a.model} has no option --{flag}"
                             f" (it takes: {', '.join(takes) or 'none'})")
    if "progress" in takes and sys.stderr.isatty():
        given["progress"] = _progress_bar()
    return given


def _progress_bar():
    """A progress callback ``(done, total, psnr, bpp)`` drawing on stderr (tqdm if installed)."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    bar = {}

    def show(done, total, psnr, bpp):
        if tqdm is None:
            print(f"\rfitting {done}/{total}  {psnr:.2f} dB  {bpp:.3f} bpp", end="" if done < total else "\n",
                  file=sys.stderr, flush=True)
            return
        if "t" not in bar:
            bar["t"] = tqdm(total=total, desc="fitting", unit="it", file=sys.stderr, leave=False)
        bar["t"].update(done - bar["t"].n)
        bar["t"].set_postfix_str(f"{psnr:.2f} dB {bpp:.3f} bpp")
        if done >= total:
            bar["t"].close()
    return show


def cmd_encode(a):
    _check_output(a.output, image=False)
    _check_input(a.input)
    data = codec.encode(a.input, model=a.model, rate=a.rate, compact_header=a.compact_header, **_encode_options(a))
    _atomic(a.output, lambda f: f.write(data))
    h = codec.info(data)
    print(f"{a.output}: {len(data)} bytes, {8 * len(data) / (h.width * h.height):.4f} bpp, "
          f"{h.layers} layers ({h.model} {h.rate})")


def cmd_decode(a):
    fmt = _check_output(a.output, image=True)
    if a.steps and Path(a.steps).exists() and not Path(a.steps).is_dir():
        raise UsageError(f"--steps {a.steps} is a file, not a folder")
    if a.layers is not None and a.layers < 1:
        raise UsageError("--layers must be at least 1")
    _check_input(a.input)
    steps_dir = Path(a.steps) if a.steps else None
    last = failure = None
    try:
        for last in _write_steps(decode_stream(_chunks(a.input), layers=a.layers), steps_dir, Path(a.output).stem):
            pass
    except errors.ProgcodecError as exc:
        if a.strict or last is None:
            raise
        failure = exc
    _save_image(last.image, a.output, fmt)
    if failure is None:
        print(f"wrote {a.output} ({last.layer}/{last.layers_total} layers)")
        return 0
    want = last.layers_total if a.layers is None else min(a.layers, last.layers_total)
    print(f"wrote {a.output} ({last.layer}/{last.layers_total} layers, partial)")
    print(f"progcodec: warning: {failure}", file=sys.stderr)
    lost = f"layer {want}" if want == last.layer + 1 else f"layers {last.layer + 1}-{want}"
    print(f"progcodec: warning: wrote {a.output} from layers 1-{last.layer}; {lost} missing or damaged"
          f" (exit status {EXIT_PARTIAL}; --strict makes this an error)", file=sys.stderr)
    return EXIT_PARTIAL


def cmd_info(a):
    _check_input(a.input)
    data = b"".join(_chunks(a.input))
    h, layers, trailing = codec.check(data)
    print(f"model     {h.model} (rate {h.rate}, version {h.model_version}, weights {h.weights})")
    mode = h.extra.get("source_mode")
    print(f"image     {h.width}x{h.height} {mode or h.mode}" + (f" (coded as {h.mode})" if mode else ""))
    print(f"layers    {h.layers} of {h.encoded_layers} encoded; coder {h.coder}")
    print(f"header    {h.header_bytes()} bytes, checksum ok; file {len(data)} bytes")
    print("layer  name              bytes    cum.bytes      bpp  CRC-checked")
    for c in layers:
        print(f"{c.layer:>5}  {c.name:<16} {c.size:>6} {c.end:>12} {8 * c.end / (h.width * h.height):8.4f}  "
              f"{c.status}" + (f" ({c.detail})" if c.detail else ""))
    bad = [c for c in layers if c.status != "intact"]
    if trailing:
        print(f"damaged   {trailing} unexpected bytes after the last layer")
    if bad or trailing:
        intact = next((c.layer - 1 for c in layers if c.status != "intact"), len(layers))
        summary = ", ".join(f"layer {c.layer} {c.status}" for c in bad) or "trailing bytes"
        print(f"result    {f'layers 1-{intact} decode' if intact else 'no layer decodes'}; {summary}")
        print(f"progcodec: warning: {a.input} is damaged or cut: {summary}", file=sys.stderr)
        return EXIT_PARTIAL
    print("result    every layer intact (frame CRCs checked; not decoded, so a prior mismatch would"
          " only show on decode)")
    return 0


def cmd_truncate(a):
    _check_output(a.output, image=False)
    _check_input(a.input)
    data = Path(a.input).read_bytes()
    out = bitstream.truncate(data, layers=a.layers, max_bytes=a.bytes)
    _atomic(a.output, lambda f: f.write(out))
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
            if not rates and hasattr(p.cls, "no_rates_hint"):  # weights the user imports
                detail = f"none imported; {p.cls.no_rates_hint()}"
        except errors.ProgcodecError as exc:
            detail = f"BROKEN: {exc}"
        print(f"{p.name:<12} {len(p.cls.layer_names)} layers  rates: {detail}  ({p.source})")


def cmd_import_weights(a):
    """Convert a published checkpoint for a plugin that can import one (e.g. qres34m)."""
    importers = {}
    for p in registry.plugins():
        if p.cls is not None and hasattr(p.cls, "import_weights"):
            importers[p.name] = p.cls
    name = a.name or next((n for n, c in importers.items() if c.claims_checkpoint(a.input)), None)
    if name is None or name not in importers:
        have = ", ".join(sorted(importers)) or "none installed"
        raise errors.UnknownModelError(f"say which model {a.input} is for: --name NAME (models that import checkpoints: {have})")
    if not Path(a.input).is_file():
        raise FileNotFoundError(f"No such file: {a.input}")
    target, rate = importers[name].import_weights(a.input, rate=a.rate, ch=a.ch)
    from .plugin import file_digest

    print(f"imported {a.input} as {name} rate {rate} (weights {file_digest(target)}) -> {target}")


def _model_options(p) -> None:
    """Options a model may take (``Model.options``), for encode and demo."""
    p.add_argument("--effort", choices=("fast", "medium", "slow"), help="fitting effort (overfit)")
    p.add_argument("--lmbda", type=float, help="rate-distortion trade-off, any value (overfit)")
    p.add_argument("--target-bpp", type=float, metavar="BPP", help="search lambda for this rate (overfit)")
    p.add_argument("--iters", type=int, help="fitting iterations, overriding --effort (overfit)")
    p.add_argument("--cold-start", action="store_true",
                   help="fit from random networks instead of the shipped warm start (overfit)")
    p.add_argument("--latent-init", choices=("analysis", "zero"),
                   help="starting latents: zeros (default) or the shipped analysis network's (overfit)")


def cmd_demo(a):
    if Path(a.out).exists() and not Path(a.out).is_dir():
        raise UsageError(f"--out {a.out} is a file, not a folder")
    if a.image:
        _check_input(a.image)
    src = a.image or resources.files("progcodec") / "data" / "default.png"
    gray = registry.get_class(a.model).channels == 1  # a grayscale-only model: show it gray, knowingly
    img = Image.open(src).convert("L" if gray else "RGB")
    t0 = time.perf_counter()
    data = codec.encode(img, model=a.model, rate=a.rate, **_encode_options(a))
    t1 = time.perf_counter()
    h = codec.info(data)
    out = Path(a.out)
    print(f"encoded {img.width}x{img.height} with {h.model} ({h.rate}): {len(data)} bytes, "
          f"{h.layers} layers, {1000 * (t1 - t0):.0f} ms")
    print(f"decoding progressively from {a.chunk}-byte chunks, refinements -> {out}/")
    chunks = (data[i : i + a.chunk] for i in range(0, len(data), a.chunk))
    for _ in _write_steps(decode_stream(chunks), out, "demo", to_tensor(img, 1 if gray else 3)[0]):
        pass
    print(f"decoded in {1000 * (time.perf_counter() - t1):.0f} ms")


def cmd_serve(a):
    from . import server

    server.serve(a.dir, host=a.host, port=a.port, throttle=a.throttle, quiet=a.quiet,
                 max_connections=a.max_connections)


def cmd_view(a):
    from .net import parse_rate

    parse_rate(a.throttle)  # a bad value is a usage error before any window opens
    if "://" not in a.source and a.source != "-" and not Path(a.source).is_file():
        raise UsageError(f"{a.source}: no such file (give a .pcs file, an http(s) URL, or -)")
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
    p = argparse.ArgumentParser(prog="progcodec", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads for model work (default: PROGCODEC_THREADS, else 1 on up to 4 CPUs;"
                        " serve: 1 per decode); see progcodec/threads.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode", help="encode an image into a layered .pcs stream")
    e.add_argument("input"), e.add_argument("output")
    e.add_argument("--model", default=registry.DEFAULT_MODEL), e.add_argument("--rate")
    e.add_argument("--compact-header", action=argparse.BooleanOptionalAction, default=None,
                   help="format 1.2: a ~200-byte smaller header, unreadable by progcodec before 1.2"
                        " (default: the model's choice, on for overfit)")
    _model_options(e)
    d = sub.add_parser("decode", help="decode a stream (or its first layers) to an image")
    d.add_argument("input", help="stream file, or - for stdin"), d.add_argument("output")
    d.add_argument("--layers", type=int, help="decode only the first K layers")
    d.add_argument("--steps", metavar="DIR", help="write every refinement as a PNG into DIR")
    d.add_argument("--strict", action="store_true",
                   help="a cut or damaged stream is an error (exit 2, nothing written) instead of"
                        " writing its last complete refinement (exit 3)")
    i = sub.add_parser("info", help="show the header and layer table")
    i.add_argument("input")
    t = sub.add_parser("truncate", help="cut a stream after K layers (or a byte budget), still valid")
    t.add_argument("input"), t.add_argument("output")
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--layers", type=int), g.add_argument("--bytes", type=int)
    sub.add_parser("plugins", help="list installed model plugins")
    w = sub.add_parser("import-weights", help="convert an official checkpoint (e.g. qres34m-lmb64.pt) into the weights folder")
    w.add_argument("input", help="checkpoint file (.pt, read with torch.load(weights_only=True))")
    w.add_argument("--name", help="model (guessed from the file name, e.g. qres34m)")
    w.add_argument("--rate", help="rate point to file it under (guessed from the file name, e.g. lmb64)")
    w.add_argument("--ch", type=int, help=argparse.SUPPRESS)  # reduced-width variants (the exactness fixtures)
    m = sub.add_parser("demo", help="encode the bundled image and decode it progressively")
    m.add_argument("--model", default=registry.DEFAULT_MODEL), m.add_argument("--rate")
    m.add_argument("--image", help="use this image instead of the bundled one")
    m.add_argument("--out", default="progcodec-demo", help="folder for the refinement PNGs")
    m.add_argument("--chunk", type=int, default=1024, help="bytes per network-like chunk")
    _model_options(m)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        from . import threads

        threads.set_threads(args.threads)
    try:
        code = globals()[f"cmd_{args.cmd.replace('-', '_')}"](args)  # None, or a status (batch: 1 when some images failed)
    except UsageError as exc:
        sub = next((act.choices[args.cmd] for act in parser._actions  # the subcommand's usage line
                    if isinstance(act, argparse._SubParsersAction) and args.cmd in act.choices), parser)
        sub.error(str(exc))  # argparse style: usage, "progcodec CMD: error: ...", exit 2
    except (errors.ProgcodecError, OSError, UnidentifiedImageError, ValueError) as exc:
        print(f"progcodec: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
