"""`progcodec batch` throughput: images per minute on 1 and 2 local workers, and the scheduling
overhead per image against a plain loop of ``progcodec.encode`` (one torch thread everywhere).

    python benchmarks/batch.py [--models pyramid hqa] [--images data/test] [--limit 6]

For each model: a plain loop in this process (model loaded first, not timed), then
``encode_many`` on a LocalCluster of 1 and of 2 worker processes, timed warm (cluster started
and the model loaded on every worker before the clock starts; ``--force`` so every image is
encoded) and cold (what one ``progcodec batch`` command costs: cluster start, model loads).
Non-encode time per image = (1-worker wall time - the encode seconds the worker measured) / images:
scheduling, reading, writing and the result's trip back. "1 worker vs loop" compares wall times
(a plain loop runs before each round, so both see the same background load). Inputs are the
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


def run_batch(client, paths, model, out: Path) -> dict:
    result = batch.encode_many(paths, out, model=model, client=client, force=True, manifest=False)
    assert result.ok, result.failed
    return {"wall": result.seconds, "encode_sum": sum(r["encode_seconds"] for r in result.encoded)}


def on_cluster(paths, model, out: Path, workers: int, rounds: int, loop_times: list | None = None) -> dict:
    """Best of ``rounds`` warm runs on one LocalCluster (with ``loop_times``: a plain loop before
    each round, so both see the same background load); plus the cold costs of this cluster."""
    import distributed

    t0 = time.perf_counter()
    cluster = batch.local_cluster(workers, silence_logs=40)  # as encode_many(client=None) starts it
    client = distributed.Client(cluster)
    try:
        start = time.perf_counter() - t0
        rate = registry.get_class(model).default_rate
        t1 = time.perf_counter()
        client.run(batch._model, model, rate)  # load on every worker (as its first task would) ...
        load = time.perf_counter() - t1
        client.run(warm, model)                 # ... and pay the first-call costs before the clock starts
        runs = []
        for _ in range(rounds):
            if loop_times is not None:
                loop_times.append(plain_loop(paths, model, out / "loop"))
            runs.append(run_batch(client, paths, model, out / "batch"))
        best = min(runs, key=lambda r: r["wall"])
        return dict(best, start=start, load=load)
    finally:
        client.close()
        cluster.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["pyramid", "hqa"])
    ap.add_argument("--images", type=Path, help="folder of .png inputs (default data/test)")
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2, help="warm runs per configuration; the best is shown")
    a = ap.parse_args()
    torch.set_num_threads(1)
    scratch = Path(tempfile.mkdtemp(prefix="progcodec-batch-bench-"))
    load_before = os.getloadavg()
    try:
        paths = inputs(a.images, a.limit, scratch)
        sizes = {Image.open(p).size for p in paths}
        n = len(paths)
        print(f"{n} images {sorted(sizes)}, {os.cpu_count()} cores, 1 torch thread per process, best of "
              f"{a.rounds} warm runs; load average before: {load_before[0]:.2f}")
        print()
        print("| model | loop s/image | loop img/min | 1 worker img/min | 2 workers img/min | "
              "non-encode time/image (1 worker) | 1 worker vs loop | cold run, 2 workers: start + load + encode |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for model in a.models:
            warm(model)
            loops: list[float] = []
            one = on_cluster(paths, model, scratch / model / "w1", 1, a.rounds, loops)
            two = on_cluster(paths, model, scratch / model / "w2", 2, a.rounds)
            loop = min(loops)
            sched = (one["wall"] - one["encode_sum"]) / n  # scheduling + read + write + result, per image
            vs = (one["wall"] - loop) / loop
            print(f"| {model} | {loop / n:.3f} | {60 * n / loop:.1f} | {60 * n / one['wall']:.1f} | "
                  f"{60 * n / two['wall']:.1f} | {1000 * sched:.0f} ms ({100 * sched * n / one['wall']:.1f}%) | "
                  f"{100 * vs:+.1f}% | {two['start']:.1f} + {two['load']:.1f} + {two['wall']:.1f} s |", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(f"load average after: {os.getloadavg()[0]:.2f} (other jobs share these cores: numbers are upper bounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
