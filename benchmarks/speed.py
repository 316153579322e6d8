"""Encode / decode latency, time to first preview, peak memory and scaling, per plugin.

    python benchmarks/speed.py [--runs 3] [--sizes 256 512 1024 2048] [--device cpu]
    python benchmarks/speed.py --threads [--thread-counts 1 2] [--load N] [--plugins pyramid qres-vae]

Each plugin is measured in a fresh subprocess (so peak RSS is its own) on a 768x512
held-out photo: median of ``--runs`` runs of encode, full decode (only the final layer is
rendered, as a fast link would), and time to the first preview (header + layer 1 decoded
and rendered). Then one encode and decode per square size. The bmshj2018-hyperprior
architecture (benchmarks/anchor.py) is measured alongside as the field's speed anchor.

``--threads``: encode and full-decode time per torch thread count, on the machine as it is
("idle") and with ``--load`` busy-looping processes (default: one per CPU) competing for it
("loaded"), each run in a fresh subprocess with ``torch.set_num_threads`` set first. This is
what progcodec's thread defaults (progcodec/threads.py) were chosen from.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time

import torch
from PIL import Image

import progcodec
from common import loadable_plugins, test_images


def timed(fn, runs):
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def full_decode(data):
    return list(progcodec.decode_stream([data], latest_only=True))[-1]


def image_of(size, base: Image.Image) -> Image.Image:
    w, h = size
    return base.resize((w, h), Image.LANCZOS)


def measure_plugin(name, img, sizes, runs, queue):
    progcodec.registry.load(name)  # weights load is not part of the latency
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    progcodec.encode(img.resize((64, 64)), model=name)  # warm-up
    enc, data = timed(lambda: progcodec.encode(img, model=name), runs)
    dec, _ = timed(lambda: full_decode(data), runs)
    first, _ = timed(lambda: progcodec.decode(data[: progcodec.info(data).layer_ends()[0]], layers=1), runs)
    scaling = []
    for s in sizes:
        big = image_of((s, s), img)
        t = time.perf_counter()
        d = progcodec.encode(big, model=name)
        te = time.perf_counter() - t
        t = time.perf_counter()
        full_decode(d)
        scaling.append((s, te, time.perf_counter() - t))
    queue.put(dict(name=name, enc=enc, dec=dec, first=first, bytes=len(data),
                   rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rss0=rss0 / 1024, scaling=scaling))


def measure_anchor(img, sizes, runs, queue):
    from anchor import Hyperprior
    from progcodec.image import pad, to_tensor

    torch.manual_seed(0)
    model = Hyperprior().eval()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def run(im):
        x = pad(to_tensor(im), 64)
        t = time.perf_counter()
        bits = model.compress(x)
        te = time.perf_counter() - t
        t = time.perf_counter()
        model.decompress(*bits)
        return te, time.perf_counter() - t
    run(img.resize((64, 64)))
    results = [run(img) for _ in range(runs)]
    enc = statistics.median(r[0] for r in results)
    dec = statistics.median(r[1] for r in results)
    scaling = [(s, *run(image_of((s, s), img))) for s in sizes]
    queue.put(dict(name="bmshj2018-hyperprior (anchor, random weights)", enc=enc, dec=dec, first=float("nan"),
                   bytes=0, rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rss0=rss0 / 1024,
                   scaling=scaling))


def measure_threads(name, img, threads, runs, queue):
    torch.set_num_threads(threads)
    progcodec.registry.load(name)
    progcodec.encode(img.resize((64, 64)), model=name)  # warm-up
    enc, data = timed(lambda: progcodec.encode(img, model=name), runs)
    dec, _ = timed(lambda: full_decode(data), runs)
    queue.put(dict(name=name, threads=threads, enc=enc, dec=dec))


def _busy():
    while True:
        pass


def thread_table(names, img, counts, runs, load):
    """Rows of (model, threads, idle enc/dec, loaded enc/dec)."""
    import os

    results = {}
    for loaded in (False, True):
        hogs = []
        if loaded:
            ctx = mp.get_context("spawn")
            hogs = [ctx.Process(target=_busy, daemon=True) for _ in range(load)]
            for h in hogs:
                h.start()
        try:
            for name in names:
                for n in counts:
                    results[name, n, loaded] = in_subprocess(measure_threads, name, img, n, runs)
        finally:
            for h in hogs:
                h.terminate()
                h.join()
    print(f"{img.width}x{img.height} photo, CPU ({os.cpu_count()} logical CPUs), torch {torch.__version__},"
          f" median of {runs} runs; loaded = {load} busy-looping processes alongside\n")
    print("| model | torch threads | encode idle (s) | full decode idle (s) | encode loaded (s) | full decode loaded (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        for n in counts:
            i, l = results[name, n, False], results[name, n, True]
            print(f"| {name} | {n} | {i['enc']:.3f} | {i['dec']:.3f} | {l['enc']:.3f} | {l['dec']:.3f} |")
    return results


def in_subprocess(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="*", default=[256, 512, 1024, 2048])
    ap.add_argument("--plugins", nargs="*")
    ap.add_argument("--image", help="a 768x512 photo (default: the first held-out test photo)")
    ap.add_argument("--no-anchor", action="store_true")
    ap.add_argument("--threads", action="store_true", help="measure torch thread counts, idle and loaded")
    ap.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--load", type=int, help="busy processes for the loaded runs (default: one per CPU)")
    ap.add_argument("--omp-wait-policy", choices=("passive", "active"),
                    help="OMP_WAIT_POLICY for the measuring subprocesses (progcodec's default: passive)")
    a = ap.parse_args()
    # our own streams are trusted: the untrusted-input decode budget would refuse the 2048² runs
    progcodec.LIMITS.max_decode_bytes = 1 << 40
    img = Image.open(a.image).convert("RGB") if a.image else test_images(limit=1)[0][1]
    if a.threads:
        import os

        if a.omp_wait_policy:  # read by OpenMP when torch loads: the spawned subprocesses inherit it
            os.environ["OMP_WAIT_POLICY"] = a.omp_wait_policy.upper()
        print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
        thread_table(loadable_plugins(a.plugins or ["pyramid", "qres-vae"]), img, a.thread_counts, a.runs,
                     a.load if a.load is not None else os.cpu_count())
        return
    rows = [in_subprocess(measure_plugin, n, img, a.sizes, a.runs) for n in loadable_plugins(a.plugins)]
    if not a.no_anchor:
        rows.append(in_subprocess(measure_anchor, img, a.sizes, a.runs))
    print(f"{img.width}x{img.height} photo, CPU, torch {torch.__version__}, {torch.get_num_threads()} threads,"
          f" median of {a.runs} runs\n")
    print("| model | encode (s) | full decode (s) | first preview (s) | bytes | peak RSS (MiB) | RSS after load (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['enc']:.3f} | {r['dec']:.3f} | {r['first']:.3f} | {r['bytes']} |"
              f" {r['rss']:.0f} | {r['rss0']:.0f} |")
    if a.sizes:
        print("\n| model | " + " | ".join(f"{s}² enc / dec (s)" for s in a.sizes) + " |")
        print("|---|" + "---:|" * len(a.sizes))
        for r in rows:
            print(f"| {r['name']} | " + " | ".join(f"{te:.2f} / {td:.2f}" for _, te, td in r["scaling"]) + " |")
    print("\n" + json.dumps(rows))


if __name__ == "__main__":
    main()
