"""The overfit fit's keep-best, A/B from one fit per photo and rate:

    python benchmarks/overfit_keep_best.py --first 8 --stop 16 --rates lowest low --effort medium \
        --best best.jsonl --last last.jsonl

Each fit is encoded at its kept state (a benchmarks/overfit.py row, to --best) and at its last
state (what ``keep_best=False`` gives byte for byte: keep-best changes no trajectory), to
--last, with the fit's encode time. Photos [first:stop] of data/test. Report either file with
``overfit.py --report-only --out FILE``.
"""
import argparse
import copy
import json
from pathlib import Path

import overfit as bench
from common import test_images
from progcodec_plugins.overfit import fit

STASH = {}
real_end, real_fit = fit._end_on_best, fit.fit


def end_stash(model, x, lmbda, best, iters):
    STASH["last"] = copy.deepcopy(model)
    return real_end(model, x, lmbda, best, iters)


def fit_ab(x, cfg, progress=None, init=None, latents=None):
    if STASH.get("replay"):
        if progress:
            progress(cfg.iters, cfg.iters, 0.0, 0.0)
        return STASH["last"], STASH["log"]
    model, log = real_fit(x, cfg, progress, init, latents)
    STASH["log"] = [{k: v for k, v in e.items() if k not in ("kept", "kept_loss")} for e in log]
    STASH["kept"] = log[-1].get("kept")
    return model, log


fit._end_on_best, fit.fit = end_stash, fit_ab
ap = argparse.ArgumentParser()
ap.add_argument("--first", type=int, default=8)
ap.add_argument("--stop", type=int, default=16)
ap.add_argument("--rates", nargs="*", default=["lowest", "low", "medium", "high"])
ap.add_argument("--effort", default="medium")
ap.add_argument("--best", type=Path, required=True)
ap.add_argument("--last", type=Path, required=True)
a = ap.parse_args()
images = test_images(None, None)[a.first:a.stop]
have = {(r["image"], r["rate"]) for r in map(json.loads, a.best.read_text().splitlines())} if a.best.exists() else set()
for rate in a.rates:
    for name, img in images:
        if (name, rate) in have:
            continue
        STASH.clear()
        r = bench.one(name, img, a.effort, rate, "warm")
        r["keep_best"], r["kept"] = True, STASH["kept"]
        STASH["replay"] = True
        b = bench.one(name, img, a.effort, rate, "warm")
        b.update(keep_best=False, encode_s=r["encode_s"], curve=r["curve"], threads=r["threads"],
                 note="replayed: the keep-best fit's last state, encoded (keep_best=False gives this)")
        with a.last.open("a") as f:
            f.write(json.dumps(b) + "\n")
        with a.best.open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"{name} {rate}: best {r['layers'][-1]['bpp']:.4f} bpp {r['layers'][-1]['psnr']:.3f} dB kept {r['kept']}"
              f" | last {b['layers'][-1]['bpp']:.4f} {b['layers'][-1]['psnr']:.3f} | {r['encode_s']:.0f} s", flush=True)
