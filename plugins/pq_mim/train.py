"""Train the PQ-MIM plugin: ``vae`` (PQ-VAE), then ``mim`` (entropy model on frozen tokens), then ``export``.

    nice -n 10 python -m progcodec_plugins.pq_mim.train vae --minutes 40
    nice -n 10 python -m progcodec_plugins.pq_mim.train mim --minutes 25
    python -m progcodec_plugins.pq_mim.train export

Each phase checkpoints (model + optimizer + elapsed time) under ``runs/pq_mim`` and resumes
from it; the learning rate follows a warm-up + cosine schedule over the phase's time budget.
Uses a GPU when one is available, else the CPU with ``--threads`` threads.
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
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

from progcodec.plugin import file_digest

from .model import MIM, PQVAE, Config
from .quincunx import stage_map

PIXEL_VAR = 0.06   # rough variance of photo pixels in [0, 1]: MSE / var as in VQ-VAE
ETA, BETA = 0.5, 0.25  # L = L_rec + ETA * (codebook + BETA * commitment), Sec. 3.3
RATE = "f8m4v64"


def load_pyramids(folder: Path, scales=(1, 2, 3, 4)) -> list[list[np.ndarray]]:
    """Every training photo at every downscale factor, uint8 HWC, kept in RAM."""
    files = sorted(folder.glob("*.png"))
    if not files:
        raise SystemExit(f"no training images in {folder}")
    out = []
    for p in tqdm(files, desc="loading photos"):
        img = Image.open(p).convert("RGB")
        out.append([np.asarray(img.reduce(s) if s > 1 else img) for s in scales])
    return out


def lr_at(progress: float, peak: float, warmup: float = 0.05, floor: float = 5e-5) -> float:
    if progress < warmup:
        return peak * progress / warmup
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * t))


class Trainer:
    """Shared loop: time-budgeted steps, checkpointing and resuming, tqdm progress."""

    def __init__(self, args, name: str, model: torch.nn.Module, peak_lr: float):
        self.args, self.name, self.model, self.peak = args, name, model, peak_lr
        self.ckpt = Path(args.run) / f"{name}.pt"
        self.opt = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.02, betas=(0.9, 0.95))
        self.step, self.elapsed = 0, 0.0
        if self.ckpt.exists():
            state = torch.load(self.ckpt, map_location=args.device)
            model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
            self.step, self.elapsed = state["step"], state["elapsed"]
            print(f"resumed {name} at step {self.step}, {self.elapsed / 60:.1f} min")

    def save(self):
        tmp = self.ckpt.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                    "elapsed": self.elapsed}, tmp)
        tmp.replace(self.ckpt)

    def run(self, loss_fn):
        budget = self.args.minutes * 60
        log = open(Path(self.args.run) / f"{self.name}.log", "a")
        bar = tqdm(total=int(budget), initial=int(min(self.elapsed, budget)), unit="s", desc=self.name, mininterval=10)
        last_save, avg = time.time(), {}
        while self.elapsed < budget:
            t0 = time.time()
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.elapsed / budget, self.peak)
            loss, stats = loss_fn(self.step)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 4.0)
            self.opt.step()
            self.step += 1
            dt = time.time() - t0
            self.elapsed += dt
            avg = {k: 0.98 * avg.get(k, v) + 0.02 * v for k, v in stats.items()}
            bar.update(int(self.elapsed) - bar.n)
            bar.set_postfix(step=self.step, **{k: f"{v:.4g}" for k, v in avg.items()})
            if self.step % 50 == 0:
                log.write(json.dumps({"step": self.step, "min": round(self.elapsed / 60, 2), **avg}) + "\n")
                log.flush()
            if time.time() - last_save > 120:
                self.save()
                last_save = time.time()
        self.save()
        bar.close()


def random_crops(pyr, n: int, size: int, rng: random.Random) -> torch.Tensor:
    """``n`` random crops (random photo, downscale 1..4, position, horizontal flip) in [0, 1]."""
    out = []
    while len(out) < n:
        img = rng.choice(rng.choice(pyr))
        h, w = img.shape[:2]
        if h < size or w < size:
            continue
        y, x = rng.randrange(h - size + 1), rng.randrange(w - size + 1)
        c = img[y:y + size, x:x + size]
        out.append(c[:, ::-1] if rng.random() < 0.5 else c)
    return torch.from_numpy(np.stack(out).copy()).permute(0, 3, 1, 2).float().div(255)


def train_vae(args, cfg: Config):
    pyr = load_pyramids(Path(args.data))
    vae = PQVAE(cfg).to(args.device)
    tr = Trainer(args, "vae", vae, args.lr)
    rng = random.Random(tr.step)
    usage = torch.zeros(cfg.M, cfg.V, device=args.device)

    def loss_fn(step):
        x = random_crops(pyr, args.batch, args.crop, rng).to(args.device)
        xh, idx, pq = vae(x)
        mse = F.mse_loss(xh, x)
        # restart dead codes (unused for 100 steps) at random encoder look-up vectors of this batch
        usage.mul_(0.99).add_(F.one_hot(idx, cfg.V).flatten(0, 2).sum(0).float())
        if step % 100 == 99:
            with torch.no_grad():
                z = vae.quantizer.lookup(vae.encoder(x - 0.5)).permute(1, 0, 3, 4, 2).reshape(cfg.M, -1, cfg.lookup_dim)
                for m in range(cfg.M):
                    dead = (usage[m] < 1e-3 * usage[m].sum()).nonzero().flatten()
                    if len(dead):
                        vae.quantizer.codebook.data[m, dead] = z[m, torch.randint(z.shape[1], (len(dead),))]
        psnr = -10 * math.log10(max(mse.item(), 1e-10))
        used = (usage > 1e-3 * usage.sum(1, keepdim=True)).float().sum(1).mean().item()
        return mse / PIXEL_VAR + ETA * pq, {"psnr": psnr, "pq": pq.item(), "codes": used}

    tr.run(loss_fn)


@torch.no_grad()
def token_maps(args, cfg: Config) -> dict:
    """Token grids of every training photo at downscales 2..4 (cached; scale 1 is slow to encode
    and further from the test photos' scale) and the marginal histograms (counts + 1)."""
    cache = Path(args.run) / "tokens.pt"
    vae_state = torch.load(Path(args.run) / "vae.pt", map_location="cpu")
    if cache.exists():
        tok = torch.load(cache)
        if tok["vae_step"] == vae_state["step"]:
            return tok
    vae = PQVAE(cfg)
    vae.load_state_dict(vae_state["model"])
    vae.eval().to(args.device)
    maps = []
    for scales in tqdm(load_pyramids(Path(args.data), scales=(2, 3, 4)), desc="encoding tokens"):
        for img in scales:
            x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float().div(255).to(args.device)
            h, w = (x.shape[-2] // cfg.f) * cfg.f, (x.shape[-1] // cfg.f) * cfg.f
            maps.append(vae.encode(x[..., :h, :w])[0].cpu().to(torch.uint8))
    counts = torch.zeros(cfg.M, cfg.V)
    for t in maps:
        counts += F.one_hot(t.long(), cfg.V).flatten(0, 1).sum(0).float()
    tok = {"vae_step": vae_state["step"], "maps": maps, "marginal": counts + 1}
    torch.save(tok, cache)
    return tok


def quincunx_known(size: int, rng: random.Random) -> torch.Tensor:
    """Visibility of stages < s for a random s in 2..5 and a random lattice phase."""
    s = rng.randrange(1, 5)
    full = stage_map(size + 4, size + 4, 5)
    dy, dx = rng.randrange(4), rng.randrange(4)
    return torch.from_numpy(full[dy:dy + size, dx:dx + size] < s)


def train_mim(args, cfg: Config):
    maps = [t for t in token_maps(args, cfg)["maps"] if min(t.shape[:2]) >= args.tokens]
    mim = MIM(cfg).to(args.device)
    tr = Trainer(args, "mim", mim, args.lr)
    rng = random.Random(tr.step)
    n = args.tokens

    def loss_fn(step):
        idx, known = [], []
        for b in range(args.batch):
            t = rng.choice(maps)
            y, x = rng.randrange(t.shape[0] - n + 1), rng.randrange(t.shape[1] - n + 1)
            idx.append(t[y:y + n, x:x + n].long())
            if b % 2:  # half the batch: quincunx contexts, half: uniform mask ratio (Sec. 3.3)
                known.append(quincunx_known(n, rng))
            else:
                known.append(torch.rand(n, n, generator=torch.Generator().manual_seed(rng.getrandbits(32))) > rng.random())
        idx, known = torch.stack(idx).to(args.device), torch.stack(known).to(args.device)
        logits = mim(idx, known)
        masked = ~known
        ce = F.cross_entropy(logits[masked].flatten(0, 1), idx[masked].flatten())
        return ce, {"bits": ce.item() / math.log(2) * cfg.M}

    tr.run(loss_fn)


def export(args, cfg: Config):
    run = Path(args.run)
    vae_state = torch.load(run / "vae.pt", map_location="cpu")
    mim_state = torch.load(run / "mim.pt", map_location="cpu")
    tensors = {f"vae.{k}": v.half().contiguous() for k, v in vae_state["model"].items()}
    tensors |= {f"mim.{k}": v.half().contiguous() for k, v in mim_state["model"].items()}
    tensors["marginal"] = torch.load(run / "tokens.pt")["marginal"].float().contiguous()
    out = Path(__file__).parent / "weights" / f"{RATE}.safetensors"
    out.parent.mkdir(exist_ok=True)
    save_file(tensors, str(out), metadata={"config": cfg.to_json(), "format": "pq-mim/1"})
    out.chmod(0o644)
    info = {"rate": RATE, "config": json.loads(cfg.to_json()), "digest": file_digest(out),
            "vae": {"steps": vae_state["step"], "minutes": round(vae_state["elapsed"] / 60, 1)},
            "mim": {"steps": mim_state["step"], "minutes": round(mim_state["elapsed"] / 60, 1)},
            "params": {"vae": sum(v.numel() for v in vae_state["model"].values()),
                       "mim": sum(v.numel() for v in mim_state["model"].values())}}
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["vae", "mim", "export"])
    ap.add_argument("--data", default="data/train")
    ap.add_argument("--run", default="runs/pq_mim")
    ap.add_argument("--minutes", type=float, default=30.0, help="time budget of the phase")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64, help="VAE crop size in pixels")
    ap.add_argument("--tokens", type=int, default=32, help="MIM crop size in tokens")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    Path(args.run).mkdir(parents=True, exist_ok=True)
    cfg = Config()
    {"vae": train_vae, "mim": train_mim, "export": export}[args.phase](args, cfg)


if __name__ == "__main__":
    main()
