"""Train the analysis network that gives every fit its starting latents.

    python -m progcodec_plugins.overfit.train_analysis [--iters 3000 --size 192 --batch 4]

Random crops (flipped at random) of the training photos (``data/train``, 768 px wide like the
test photos), each at a random lambda (log-uniform over the named rates): the network's
latents, rounded with straight-through gradients (``--proxy noise``: uniform noise instead),
go through the frozen warm-start synthesis and entropy model and the loss is the per-image
one, MSE + lambda * bpp. Writes ``weights/analysis.safetensors``.
Resumable: a checkpoint every 100 iterations (``--ckpt``).
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
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from progcodec import allocator
from progcodec.plugin import file_digest

from . import fit, nets
from .analysis_net import AnalysisNet
from .plugin import ANALYSIS, INIT, LAMBDAS, WEIGHTS
from .train_init import photos

ROOT = Path(__file__).resolve().parents[2]


def random_crop(rng: random.Random, imgs: list[torch.Tensor], size: int) -> torch.Tensor:
    img = imgs[rng.randrange(len(imgs))]
    h, w = img.shape[-2:]
    top, left = rng.randrange(h - size + 1), rng.randrange(w - size + 1)
    x = img[..., top:top + size, left:left + size]
    if rng.random() < 0.5:
        x = x.flip(-1)
    return x.contiguous()


def loss_of(net: AnalysisNet, shared: fit.Fitted, x: torch.Tensor, lmbda: float, noisy: bool):
    """(loss, mse, bpp) of the network's latents under the frozen networks, with noise or
    rounded (straight-through)."""
    ys = [fit._proxy(y, noisy) for y in net(x, lmbda)]
    xh = shared.synth(nets.upsample_grids(ys, x.shape[-2:]))
    mse = F.mse_loss(xh, x)
    bpp = fit.latent_bits(shared, ys, noisy) / (x.shape[-2] * x.shape[-1])
    return mse + lmbda * bpp, mse, bpp


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "train")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--proxy", choices=("noise", "round"), default="round")
    ap.add_argument("--ckpt", type=Path, default=ROOT / "data" / "cache" / "overfit-analysis.pt")
    ap.add_argument("--out", type=Path, default=WEIGHTS / ANALYSIS)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    imgs = photos(a.data)
    shared = fit.Fitted(1, 1, fit.FitConfig(lmbda=1.0, iters=1))
    fit.load_networks(shared, load_file(str(WEIGHTS / INIT)))
    shared.requires_grad_(False)
    net = AnalysisNet()
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    lo, hi = math.log(min(LAMBDAS.values())), math.log(max(LAMBDAS.values()))
    start, log = 0, []
    if a.ckpt.exists():
        ck = torch.load(a.ckpt, weights_only=False)
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        start, log = ck["iter"], ck["log"]
        print(f"resumed at iteration {start}", flush=True)
    t0, run = time.perf_counter(), []
    for it in range(start, a.iters):
        for g in opt.param_groups:
            g["lr"] = a.lr * (0.5 * (1 + math.cos(math.pi * it / a.iters)) * 0.95 + 0.05)
        rng = random.Random(a.seed * 100003 + it)
        loss = 0.0
        for _ in range(a.batch):
            lmbda = math.exp(rng.uniform(lo, hi))
            l, mse, bpp = loss_of(net, shared, random_crop(rng, imgs, a.size), lmbda, a.proxy == "noise")
            loss = loss + l / lmbda  # per-crop loss in units of bits: every rate counts alike
            run.append((float(mse.detach()), float(bpp.detach())))
        opt.zero_grad(set_to_none=True)
        (loss / a.batch).backward()
        opt.step()
        if (it + 1) % 50 == 0 or it == a.iters - 1:
            psnr = float(np.mean([-10 * math.log10(m) for m, _ in run]))
            bpp = float(np.mean([b for _, b in run]))
            log.append({"iter": it + 1, "psnr": round(psnr, 3), "bpp": round(bpp, 4)})
            print(f"{it + 1} psnr {psnr:.2f} bpp {bpp:.3f} {time.perf_counter() - t0:.0f} s", flush=True)
            run = []
        if (it + 1) % 100 == 0 or it == a.iters - 1:
            a.ckpt.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "iter": it + 1, "log": log}, a.ckpt)
    meta = {"proxy": a.proxy, "size": str(a.size), "batch": str(a.batch), "iters": str(a.iters),
            "init_digest": file_digest(WEIGHTS / INIT)}  # the networks it was trained for
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(a.out), metadata=meta)
    a.out.with_suffix(".json").write_text(json.dumps({**meta, "log": log[-5:]}, indent=1) + "\n")
    print(f"wrote {a.out}", flush=True)


if __name__ == "__main__":
    with allocator.retained():
        main()
