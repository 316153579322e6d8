"""Speed of the official qres34m layout at full size, with random weights of its exact shape.

    python -m progcodec_plugins.qres_vae.bench_official [--threads 1 2] [--runs 2] [--image PATH]

No checkpoint is needed (or touched): a qres34m-shaped network (ch 96, 34.0 M parameters)
is drawn with a fixed seed, written in the official layout, imported with the converter into
a temporary weights folder, and a 768x512 photo (data/test/blinds.png, or ``--image``, or the
bundled image) is coded with it. Per torch thread count, median of ``--runs``: encode, full
decode (only the final layer rendered, as benchmarks/speed.py does), first preview (layer 1
decoded and rendered from a cut stream), and all 12 refinements, as wall seconds and as
CPU seconds of the process (core-seconds: on a shared machine the fairer figure). Random weights give other
symbol statistics than trained ones, so only the network time is representative; the prior
chain runs on one thread whatever ``--threads`` says (see official.one_thread).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image


def timed(fn, runs):
    """(median wall seconds, median CPU seconds of this process: core-seconds, all threads), result."""
    out, wall, cpu = None, [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return (statistics.median(wall), statistics.median(cpu)), out


def cell(t) -> str:
    return f"{t[0]:6.2f} s ({t[1]:5.2f})"


def random_official_state(seed: int = 0) -> dict:
    from .model import OfficialQResVAE, official_key_map, official_preset

    torch.manual_seed(seed)
    c = official_preset("qres34m")
    ours = OfficialQResVAE(c).state_dict()
    return {theirs: ours[o] for theirs, o in official_key_map(c).items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--image", type=Path)
    ap.add_argument("--size", type=int, nargs=2, default=[768, 512], metavar=("W", "H"))
    a = ap.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="progcodec-bench-")
    os.environ["PROGCODEC_WEIGHTS"] = folder
    import progcodec
    from progcodec.stream import decode_stream

    from . import official

    official.import_weights(random_official_state(), name="qres34m", rate="random")
    src = a.image or Path("data/test/blinds.png")
    if not src.exists():
        from importlib import resources

        src = resources.files("progcodec") / "data" / "default.png"
    img = Image.open(src).convert("RGB").resize(tuple(a.size), Image.LANCZOS)
    model = progcodec.registry.load("qres34m", "random")
    print(f"qres34m-shaped random weights ({sum(p.numel() for p in model.net.parameters()) / 1e6:.1f} M "
          f"parameters), {img.width}x{img.height}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print("wall seconds (CPU core-seconds of the process), median of", a.runs)
    print("threads  encode              full decode         first preview       all 12 refinements  stream bytes")
    for n in a.threads:
        torch.set_num_threads(n)
        progcodec.encode(img.resize((128, 64)), model="qres34m", rate="random")  # warm-up
        enc, data = timed(lambda: progcodec.encode(img, model="qres34m", rate="random"), a.runs)
        full, _ = timed(lambda: list(decode_stream([data], latest_only=True))[-1], a.runs)
        cut = data[: progcodec.info(data).layer_ends()[0]]
        first, _ = timed(lambda: progcodec.decode(cut, layers=1), a.runs)
        every, _ = timed(lambda: list(decode_stream([data])), 1)
        print(f"{n:>7}  {cell(enc)}  {cell(full)}  {cell(first)}  {cell(every)}  {len(data):>12}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
