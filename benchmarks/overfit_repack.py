"""Quantize and code saved fits again with the installed ``overfit`` code: what a change to
quantization or coding alone (``Overfit.pack``: steps, side information, layers) does to the
same fits, without fitting again.

    python benchmarks/overfit.py --limit 16 --efforts medium --save-fits FITS --out ROWS.jsonl
    python benchmarks/overfit_repack.py --rows ROWS.jsonl --fits FITS --out NEW.jsonl
    python benchmarks/overfit.py --limit 16 --efforts medium --out NEW.jsonl --report-only

The fit does not depend on how it is packed, so each stream is the one a fresh encode with the
installed code would write; rows keep the original ``encode_s`` (fit and the old pack; the
new pack's time is ``pack_s``) and re-measure the decode. Resumable like overfit.py.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import progcodec
from common import test_images
from overfit import _commit, fit_path, measure
from progcodec_plugins.overfit import fit


def repack(path: Path, img, rate: str) -> tuple[bytes, float]:
    saved = torch.load(path)
    cfg = fit.FitConfig(**saved["cfg"])
    fitted = fit.Fitted(*saved["hw"], cfg, 3)
    fitted.load_state_dict(saved["state"])
    cls = type(progcodec.registry.load("overfit"))
    analyze = cls.analyze

    def packed(self, x, **_):  # warm starts only (cold rows are skipped)
        return self.pack(fitted, x, cfg, self.init_networks())

    cls.analyze = packed
    try:
        t0 = time.perf_counter()
        data = progcodec.encode(img, model="overfit", rate=rate)
        return data, time.perf_counter() - t0
    finally:
        cls.analyze = analyze


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=Path, required=True, help="overfit.py rows of the saved fits")
    ap.add_argument("--fits", type=Path, required=True, help="the --save-fits folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--images", type=Path)
    a = ap.parse_args()
    images = dict(test_images(a.images, None))
    done = set()
    if a.out.exists():
        done = {(r["image"], r["effort"], r["rate"], r["start"]) for r in map(json.loads, a.out.read_text().splitlines())}
    for line in a.rows.read_text().splitlines():
        r = json.loads(line)
        key = (r["image"], r["effort"], r["rate"], r.get("start", "cold"))
        path = fit_path(a.fits, *key)
        if key in done:
            continue
        if not path.exists() or key[3] == "cold" or r["image"] not in images:
            print(f"{'_'.join(key)}: skipped (no saved fit, a cold start or no such photo)", flush=True)
            continue
        data, pack_s = repack(path, images[r["image"]], r["rate"])
        new = {**{k: r[k] for k in ("image", "effort", "rate", "start", "threads", "encode_s", "curve")},
               **measure(data, images[r["image"]]), "pack_s": pack_s, "commit": _commit(),
               "fitted_at": r["commit"]}
        with a.out.open("a") as f:
            f.write(json.dumps(new) + "\n")
        old, got = r["layers"], new["layers"]
        print(f"{'_'.join(key)}: {r['bytes']} -> {new['bytes']} B, {old[-1]['psnr']:.3f} -> {got[-1]['psnr']:.3f} dB,"
              f" layer 1 {old[0]['bytes']} -> {got[0]['bytes']} B, pack {pack_s:.1f} s", flush=True)


if __name__ == "__main__":
    main()
