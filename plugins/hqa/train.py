"""Greedy layer-by-layer HQA training (paper Sec. 5.2.2), resumable, then export.

    nice -n 15 python -m progcodec_plugins.hqa.train digits
    nice -n 15 python -m progcodec_plugins.hqa.train photo --data data/train --steps 1500 1500 1500 800 800

Checkpoints (model + optimizer + step) go to ``runs/hqa_<preset>/ckpt.pt`` every ``--save-every``
steps; rerunning the same command resumes. The finished model is exported to
``plugins/hqa/weights/hqa-<preset>.safetensors`` (+ ``.json`` config).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

from .model import Hierarchy

WEIGHTS = Path(__file__).parent / "weights"
PRESETS = {
    "photo": dict(channels=3, layers=5, dim=32, codes=256, widths=[64, 64, 64, 64, 64], crop=64, batch=16, commit=[0.25, 0.25, 1e-3, 1e-3, 1e-3],
                  steps=[1500, 1500, 1500, 800, 800]),
    "digits": dict(channels=1, layers=5, dim=32, codes=256, widths=[32, 48, 64, 64, 64], crop=32, batch=32, commit=[0.25, 0.25, 1e-3, 1e-3, 1e-3],
                   steps=[2000, 2000, 2000, 2000, 2000]),
}


def digits(split: str) -> torch.Tensor:
    """scikit-learn's ``load_digits`` (1,797 8x8 images), bilinearly upsampled to 32x32 in [0, 1];
    a fixed seeded split keeps 297 images out for testing."""
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().images).float().div(16.0).unsqueeze(1)
    x = F.interpolate(x, size=32, mode="bilinear", align_corners=False).clamp(0, 1)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    return x[order[297:]] if split == "train" else x[order[:297]]


class Photos:
    """Random crops of the training photos at a random downscale factor in [1, 4], random flips."""

    def __init__(self, folder: str, seed: int):
        self.images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(Path(folder).glob("*.png"))]
        if not self.images:
            raise SystemExit(f"no *.png under {folder}")
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int, crop: int) -> torch.Tensor:
        out = []
        for _ in range(n):
            img = self.images[self.rng.integers(len(self.images))]
            h, w = img.shape[:2]
            s = min(self.rng.uniform(1, 4), h / crop, w / crop)
            size = max(crop, int(crop * s))
            y, x = self.rng.integers(h - size + 1), self.rng.integers(w - size + 1)
            t = torch.from_numpy(img[y:y + size, x:x + size].copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
            if size != crop:
                t = F.interpolate(t, size=crop, mode="bilinear", antialias=True, align_corners=False)
            if self.rng.random() < 0.5:
                t = t.flip(-1)
            out.append(t)
        return torch.cat(out).clamp(0, 1)


class Digits:
    def __init__(self, seed: int):
        self.x = digits("train")
        self.gen = torch.Generator().manual_seed(seed)

    def batch(self, n: int, crop: int) -> torch.Tensor:
        return self.x[torch.randint(len(self.x), (n,), generator=self.gen)]


def reset_dead_codes(layer, usage: torch.Tensor, opt) -> int:
    """Sec. 5.3: move codes used < 3% as often as the most used one next to popular codes."""
    dead = (usage < 0.03 * usage.max()).nonzero().flatten()
    if len(dead) == 0:
        return 0
    src = torch.multinomial(usage, len(dead), replacement=True)
    with torch.no_grad():
        layer.codebook[dead] = layer.codebook[src] + 0.01 * torch.randn_like(layer.codebook[dead])
    state = opt.state.get(layer.codebook, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][dead] = 0
    usage[dead] = usage.mean()
    return len(dead)


def train_layer(model: Hierarchy, lv: int, data, cfg: dict, ckpt: dict, args) -> None:
    layer, below = model.layers[lv], (model.layers[lv - 1] if lv else None)
    crop, steps = max(cfg["crop"], min(2 ** (lv + 4), 128)), cfg["steps"][lv]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in layer.parameters():
        p.requires_grad_(True)

    def inputs():
        x = data.batch(cfg["batch"], crop)
        with torch.no_grad():
            x = x.to(args.device)
            return model.encode(x, lv)[-1] if lv else x

    opt = torch.optim.Adam(layer.parameters(), lr=args.lr)
    usage = torch.ones(cfg["codes"], device=args.device)
    start = 0
    if ckpt.get("layer") == lv and ckpt.get("opt"):
        opt.load_state_dict(ckpt["opt"])
        usage, start = ckpt["usage"].to(args.device), ckpt["step"]
    else:  # fix the input normalisation from the data, once
        with torch.no_grad():
            u = torch.cat([inputs() for _ in range(8)])
            layer.in_mean.copy_(u.mean((0, 2, 3)))
            layer.in_std.copy_(u.std((0, 2, 3)).clamp_min(1e-3))
            z = layer.encoder(layer.norm(u)).permute(0, 2, 3, 1).reshape(-1, cfg["dim"])
            layer.codebook.copy_(z[torch.randperm(len(z))[: cfg["codes"]]])  # init codes on data
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"layer {lv + 1}/{cfg['layers']}", mininterval=10)
    for step in bar:
        frac = step / steps
        for g in opt.param_groups:
            g["lr"] = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        tau = max(0.667 * (1 - frac), 0.01)  # Gumbel temperature, linearly to ~0
        u = inputs()
        if below is not None and step % 100 == 0:
            layer.calibrate(below, u, 0.0)
        loss, stats, q = layer.loss(u, tau, below, args.ce_weight, cfg["commit"][lv])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(layer.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            usage.mul_(0.9).add_(0.1 * torch.bincount(q.argmax(1).flatten(), minlength=cfg["codes"]).float())
            reset = reset_dead_codes(layer, usage, opt) if step % 20 == 19 and frac < 0.8 else 0
            p = usage / usage.sum()
            stats["ppl"] = math.exp(-(p * p.clamp_min(1e-12).log()).sum().item())
        if reset:
            stats["reset"] = reset
        bar.set_postfix({k: round(v, 4) for k, v in stats.items()}, refresh=False)
        if (step + 1) % args.save_every == 0 or step + 1 == steps:
            save_ckpt(args.run, model, lv, step + 1, opt, usage)
    save_ckpt(args.run, model, lv + 1, 0, None, None)


def save_ckpt(run: Path, model, layer, step, opt, usage) -> None:
    tmp = run / "ckpt.pt.tmp"
    torch.save({"model": model.state_dict(), "layer": layer, "step": step,
                "opt": opt.state_dict() if opt else None, "usage": usage}, tmp)
    tmp.replace(run / "ckpt.pt")


@torch.no_grad()
def export(model: Hierarchy, data, cfg: dict, preset: str) -> Path:
    """Code histograms on training data (top-layer prior, marginal baseline), then safetensors."""
    model.eval()
    counts = torch.zeros_like(model.marginals)
    for _ in range(16):
        x = data.batch(cfg["batch"], max(cfg["crop"], 2 ** (cfg["layers"] + 3))).to(model.marginals.device)
        for lv, c in enumerate(model.code_map(x)):
            counts[lv] += torch.bincount(c.flatten(), minlength=cfg["codes"]).float()
    model.marginals.copy_(counts + 0.5)
    for lv in range(1, cfg["layers"]):
        layer = model.layers[lv]
        x = torch.cat([data.batch(cfg["batch"], 2 ** (lv + 5)) for _ in range(4)]).to(model.marginals.device)
        bits = layer.calibrate(model.layers[lv - 1], model.encode(x, lv)[-1], model.log_marginal(lv - 1))
        print(f"layer {lv + 1} prior for layer {lv} codes: tau {layer.log_tau.exp():.3g}, beta {layer.beta.item():.2f},"
              f" {bits:.3f} bits/code")
    WEIGHTS.mkdir(exist_ok=True)
    path = WEIGHTS / f"hqa-{preset}.safetensors"
    conf = {k: cfg[k] for k in ("channels", "layers", "dim", "codes", "widths")}
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": json.dumps(conf)})
    path.with_suffix(".json").write_text(json.dumps(conf, indent=1) + "\n")
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", choices=sorted(PRESETS))
    ap.add_argument("--data", default="data/train", help="folder of training PNGs (photo preset)")
    ap.add_argument("--steps", type=int, nargs="+", help="training steps per layer, bottom first")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ce-weight", type=float, default=0.1, help="weight of the layer-below code cross-entropy")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = dict(PRESETS[args.preset])
    if args.steps:
        cfg["steps"] = args.steps
    args.run = Path("runs") / f"hqa_{args.preset}"
    args.run.mkdir(parents=True, exist_ok=True)
    args.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"hqa {args.preset}: {cfg} on {args.device}", flush=True)
    model = Hierarchy(cfg["channels"], cfg["layers"], cfg["dim"], cfg["codes"], cfg["widths"]).to(args.device)
    data = Digits(args.seed) if args.preset == "digits" else Photos(args.data, args.seed)
    ckpt = {}
    if (args.run / "ckpt.pt").exists():
        ckpt = torch.load(args.run / "ckpt.pt", map_location=args.device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        print(f"resuming: {ckpt['layer']} layers done, step {ckpt['step']} of the next", flush=True)
    t0 = time.time()
    for lv in range(ckpt.get("layer", 0), cfg["layers"]):
        model.train()
        train_layer(model, lv, data, cfg, ckpt, args)
    print(f"trained in {time.time() - t0:.0f} s (this session); exported {export(model, data, cfg, args.preset)}")


if __name__ == "__main__":
    main()
