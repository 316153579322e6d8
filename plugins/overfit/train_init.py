"""Train the warm-start networks: one entropy model and synthesis shared by many training crops.

    python -m progcodec_plugins.overfit.train_init [--crops 24 --size 256 --iters 2400]

Every crop of the training photos (``data/train``, brought to 768 px wide like the test
photos) gets its own latent grids; the networks are shared and trained on all of them with
the per-image loss (D + lambda R + the prefix term), each crop at one of the named rates.
The result, ``weights/init.safetensors``, is where every per-image fit starts instead of
random networks (the decoder never needs it: the fitted networks travel in the stream).
Resumable: a checkpoint is written every 100 iterations (``--ckpt``).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from progcodec import allocator

from . import fit
from .plugin import INIT, LAMBDAS, WEIGHTS

ROOT = Path(__file__).resolve().parents[2]


def photos(folder: Path) -> list[torch.Tensor]:
    """The photos of ``folder`` (name-sorted) at 768 px wide, (1, 3, H, W) in [0, 1]."""
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise SystemExit(f"no training photos in {folder}: run python scripts/fetch_data.py")
    out = []
    for p in paths:
        img = Image.open(p).convert("RGB")
        scale = 768 / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
        out.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None].contiguous())
    return out


def crops(folder: Path, n: int, size: int, seed: int) -> list[torch.Tensor]:
    """``n`` random size x size crops (1, 3, s, s) in [0, 1] from the photos in ``folder``."""
    rng = random.Random(seed)
    imgs = photos(folder)
    out = []
    for i in range(n):
        img = imgs[i % len(imgs)]
        h, w = img.shape[-2:]
        left, top = rng.randrange(w - size + 1), rng.randrange(h - size + 1)
        out.append(img[..., top:top + size, left:left + size].contiguous())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "train")
    ap.add_argument("--crops", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=2400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt", type=Path, default=ROOT / "data" / "cache" / "overfit-init.pt")
    ap.add_argument("--out", type=Path, default=WEIGHTS / INIT)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    xs = crops(a.data, a.crops, a.size, a.seed)
    rates = list(LAMBDAS)
    cfg = fit.FitConfig(lmbda=LAMBDAS["medium"], iters=a.iters, net_lr=1e-2)  # as the shipped warm start was trained
    shared = fit.Fitted(a.size, a.size, cfg)
    models = [fit.Fitted(a.size, a.size, cfg) for _ in xs]
    for m in models:
        m.arm, m.synth = shared.arm, shared.synth
    net_params = list(shared.arm.parameters()) + list(shared.synth.parameters())
    opt_net = torch.optim.Adam(net_params, lr=cfg.net_lr)
    opt_lat = [torch.optim.Adam(list(m.latents), lr=cfg.lr) for m in models]
    start, log = 0, []
    if a.ckpt.exists():
        ck = torch.load(a.ckpt, weights_only=False)
        shared.load_state_dict(ck["shared"])
        for m, s, o, so in zip(models, ck["latents"], opt_lat, ck["opt_lat"]):
            m.latents.load_state_dict(s)
            o.load_state_dict(so)
        opt_net.load_state_dict(ck["opt_net"])
        start, log = ck["iter"], ck["log"]
        print(f"resumed at iteration {start}", flush=True)
    t0 = time.perf_counter()
    for it in range(start, a.iters):
        decay = 0.5 * (1 + math.cos(math.pi * it / a.iters)) * 0.9 + 0.1
        for g in opt_net.param_groups:
            g["lr"] = cfg.net_lr * decay
        batch = random.Random(a.seed * 100003 + it).sample(range(len(xs)), a.batch)
        loss, mses, bpps = 0.0, [], []
        for i in batch:
            z, _, mse, bpp = fit.terms(models[i], xs[i], True)
            loss = loss + mse + LAMBDAS[rates[i % len(rates)]] * bpp + cfg.prefix_weight * fit.prefix_mse(models[i], z, xs[i])
            mses.append(float(mse.detach()))
            bpps.append(float(bpp.detach()))
        opt_net.zero_grad(set_to_none=True)
        for i in batch:
            opt_lat[i].zero_grad(set_to_none=True)
        loss.backward()
        opt_net.step()
        for i in batch:
            opt_lat[i].step()
        if it % 20 == 0 or it == a.iters - 1:
            psnr = float(np.mean([-10 * math.log10(v) for v in mses]))
            log.append({"iter": it, "psnr": round(psnr, 3), "bpp": round(float(np.mean(bpps)), 4)})
            print(f"{it} psnr {psnr:.2f} bpp {np.mean(bpps):.3f} {time.perf_counter() - t0:.0f} s", flush=True)
        if (it + 1) % 100 == 0 or it == a.iters - 1:
            a.ckpt.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"shared": shared.state_dict(), "latents": [m.latents.state_dict() for m in models],
                        "opt_lat": [o.state_dict() for o in opt_lat], "opt_net": opt_net.state_dict(),
                        "iter": it + 1, "log": log}, a.ckpt)
    tensors = {f"arm.{k}": v.detach().contiguous() for k, v in shared.arm.state_dict().items()}
    tensors.update({f"synth.{k}": v.detach().contiguous() for k, v in shared.synth.state_dict().items()})
    meta = {"arm_hidden": str(cfg.arm_hidden), "synth_hidden": str(cfg.synth_hidden),
            "crops": str(a.crops), "size": str(a.size), "iters": str(a.iters)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(a.out), metadata=meta)
    a.out.with_suffix(".json").write_text(json.dumps({**meta, "log": log[-5:]}, indent=1) + "\n")
    print(f"wrote {a.out}", flush=True)


if __name__ == "__main__":
    with allocator.retained():  # page faults on freed activations were a third of an iteration
        main()
