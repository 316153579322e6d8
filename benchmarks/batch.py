"""`progcodec batch` throughput: images per minute on 1 and 2 local workers, and the scheduling
overhead per image against a plain loop of ``progcodec.encode`` (one torch thread everywhere).

    python benchmarks/batch.py [--models pyramid hqa] [--images data/test] [--limit 6]

For each model: a plain loop in this process (model loaded first, not timed), then
``encode_many`` on a LocalCluster of 1 and of 2 worker processes, timed warm (cluster started
and the model loaded on every worker before the clock starts; ``--force`` so every image is
encoded) and cold (what one ``progcodec batch`` command costs: cluster start, model loads).
Overhead per image = (1-worker warm wall time - loop wall time) / images. Inputs are the
held-out photos (``python scripts/fetch_data.py``), else tests/data/photo_128.png upscaled.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

import progcodec  # noqa: E402
from progcodec import batch, registry  # noqa: E402  (progcodec.batch, not this file)

ROOT = Path(__file__).resolve().parents[1]


def inputs(folder: Path | None, limit: int, scratch: Path) -> list[Path]:
    paths = sorted(Path(folder or ROOT / "data" / "test").glob("*.png"))[:limit]
    if paths:
        return paths
    src = ROOT / "tests" / "data" / "photo_128.png"
    if not src.exists():
        src = ROOT / "progcodec" / "data" / "default.png"
    img = Image.open(src).convert("RGB").resize((768, 512), Image.Resampling.BICUBIC)
    out = []
    for i in range(limit):
        p = scratch / "in" / f"img{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        img.rotate(0 if i % 2 == 0 else 180).save(p)
        out.append(p)
    return out


def warm(model: str) -> None:
    """Load the model and run one small encode (first-call costs: tables, torch kernels)."""
    torch.set_num_threads(1)
    progcodec.encode(Image.new("RGB", (64, 48), (90, 120, 150)), model=model)


def plain_loop(paths, model, out: Path) -> float:
    warm(model)  # like a warm worker: load and first call are not timed
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for p in paths:
        (out / (p.stem + ".pcs")).write_bytes(progcodec.encode(Image.open(p), model=model))
    return time.perf_counter() - t0


def on_cluster(paths, model, out: Path, workers: int) -> dict:
    import distributed

    t0 = time.perf_counter()
    cluster = batch.local_cluster(workers, silence_logs=40)  # as encode_many(client=None) starts it
    client = distributed.Client(cluster)
    try:
        start = time.perf_counter() - t0
        rate = registry.get_class(model).default_rate
        client.run(batch._model, model, rate)  # load on every worker (as its first task would) ...
        client.run(warm, model)                 # ... and pay the first-call costs before the clock starts
        load = time.perf_counter() - t0 - start
        result = batch.encode_many(paths, out, model=model, client=client, force=True, manifest=False)
        assert result.ok, result.failed
        enc = sum(r["encode_seconds"] for r in result.encoded)
        return {"wall": result.seconds, "start": start, "load": load, "encode_sum": enc}
    finally:
        client.close()
        cluster.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["pyramid", "hqa"])
    ap.add_argument("--images", type=Path, help="folder of .png inputs (default data/test)")
    ap.add_argument("--limit", type=int, default=6)
    a = ap.parse_args()
    torch.set_num_threads(1)
    scratch = Path(tempfile.mkdtemp(prefix="progcodec-batch-bench-"))
    load_before = os.getloadavg()
    try:
        paths = inputs(a.images, a.limit, scratch)
        sizes = {Image.open(p).size for p in paths}
        print(f"{len(paths)} images {sorted(sizes)}, {os.cpu_count()} cores, 1 torch thread per process; "
              f"load average before: {load_before[0]:.2f}")
        print()
        print("| model | s/image (loop) | loop img/min | 1 worker img/min | 2 workers img/min | "
              "overhead/image (1 worker) | overhead % | cold run, 2 workers (start + load + encode) |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for model in a.models:
            n = len(paths)
            loop = plain_loop(paths, model, scratch / model / "loop")
            one = on_cluster(paths, model, scratch / model / "w1", 1)
            two = on_cluster(paths, model, scratch / model / "w2", 2)
            over = (one["wall"] - loop) / n
            cold = two["start"] + two["load"] + two["wall"]
            print(f"| {model} | {loop / n:.3f} | {60 * n / loop:.1f} | {60 * n / one['wall']:.1f} | "
                  f"{60 * n / two['wall']:.1f} | {1000 * over:+.0f} ms | {100 * over * n / loop:+.1f}% | "
                  f"{cold:.1f} s = {two['start']:.1f} + {two['load']:.1f} + {two['wall']:.1f} |", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(f"load average after: {os.getloadavg()[0]:.2f} (other jobs share these cores: numbers are upper bounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
