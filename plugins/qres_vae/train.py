"""Train a QRes-VAE rate point: ``python -m progcodec_plugins.qres_vae.train --rate low --lmbda 280``.

Loss (paper Eq. 7): bits per pixel + lambda * MSE (images in [0, 1]). Adam with warm-up and
cosine decay over a wall-clock budget (``--minutes``), gradient clipping, NaN batches skipped.
Checkpoints (with optimizer state) go to runs/qres_vae_<rate>/ every few minutes, and a run
resumes from there; ``--init`` starts from another checkpoint or shipped weights (fine-tuning).
The result is exported to weights/<rate>.safetensors (float16) + <rate>.json, whose
``phases`` list every training phase the weights went through.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .data import Crops
from .model import Config, QResVAE, bits_per_pixel, psnr_of

WEIGHTS = Path(__file__).with_name("weights")


def export(model: QResVAE, rate: str, lmbda: float, phases: list[dict], folder: Path = WEIGHTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rate}.safetensors"
    save_file({k: v.detach().half().contiguous() for k, v in model.state_dict().items()}, str(path))
    meta = {"rate": rate, "lmbda": lmbda, "steps": sum(p["steps"] for p in phases), "phases": phases,
            "config": model.c.to_dict(), "data": "data/train (scripts/fetch_data.py)",
            "loss": "bpp + lmbda * MSE[0,1]"}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", required=True)
    ap.add_argument("--lmbda", type=float, required=True)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--data", default="data/train")
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--weights", default=WEIGHTS, type=Path, help="export folder (default: the plugin's)")
    ap.add_argument("--init", help="checkpoint (runs/.../ckpt.pt) or weights (.safetensors) to start from")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quant", choices=("noise", "hard", "mixed"), default="noise",
                    help="noise: the paper's additive uniform noise (from scratch); mixed: the coded "
                         "rounding in the top-down path, noisy rate gradient (fine-tuning); hard: "
                         "rounding with a straight-through rate; see QResVAE.forward")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    run = Path(a.runs) / f"qres_vae_{a.rate}"
    run.mkdir(parents=True, exist_ok=True)
    ckpt = run / "ckpt.pt"
    model = QResVAE(Config()).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    step, spent, history = 0, 0.0, []  # history: the earlier phases this run builds on
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, spent, history = state["step"], state["spent"], state.get("phases", [])[:-1]
    elif a.init and a.init.endswith(".safetensors"):  # e.g. shipped weights: fine-tune them
        state = {k: v.float() for k, v in load_file(a.init).items()}
        model.load_state_dict(state)
        meta = Path(a.init).with_suffix(".json")
        history = json.loads(meta.read_text()).get("phases", []) if meta.exists() else []
    elif a.init:
        state = torch.load(a.init, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        history = state.get("phases", [])
    data = Crops(a.data, a.crop, seed=step)

    def phases():
        return history + [{"lmbda": a.lmbda, "quant": a.quant, "crop": a.crop, "batch": a.batch, "lr": a.lr,
                           "steps": step, "minutes": round((time.time() - start) / 60, 1)}]

    def save():  # atomically: a run killed mid-save keeps its previous checkpoint
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "spent": time.time() - start, "phases": phases()}, tmp)
        os.replace(tmp, ckpt)

    budget = a.minutes * 60
    start, last_save = time.time() - spent, time.time()
    bar = tqdm(desc=f"qres-vae {a.rate}", unit="step", initial=step)
    ema = None
    while time.time() - start < budget:
        frac = (time.time() - start) / budget
        lr = a.lr * min(1.0, (step + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        x = data.batch(a.batch).to(device)
        x_hat, bits = model(x, quant=a.quant)
        mse = torch.mean((x_hat - x) ** 2)
        bpp = bits_per_pixel(bits, x)
        loss = bpp + a.lmbda * mse
        if not torch.isfinite(loss):
            opt.zero_grad(set_to_none=True)
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        step += 1
        cur = (bpp.item(), psnr_of(mse.item()))
        ema = cur if ema is None else tuple(0.98 * e + 0.02 * c for e, c in zip(ema, cur))
        bar.update()
        bar.set_postfix(bpp=f"{ema[0]:.3f}", psnr=f"{ema[1]:.2f}", lr=f"{lr:.1e}")
        if time.time() - last_save > 300:
            save()
            last_save = time.time()
            print(f"step {step} bpp {ema[0]:.4f} psnr {ema[1]:.2f}", flush=True)
    save()
    path = export(model.cpu(), a.rate, a.lmbda, phases(), a.weights)
    print(f"exported {path} after {step} steps", flush=True)


if __name__ == "__main__":
    main()
