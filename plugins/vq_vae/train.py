"""Train the ``vq-vae`` plugin: the autoencoder, then the bottom-code prior, then export.

    nice -n 15 python -m progcodec_plugins.vq_vae.train --steps 2000 --prior-steps 600

Phase 1 trains the VQ-VAE (MSE of the image and of the top-only preview + commitment, EMA
codebooks). Phase 2 freezes it and trains the conditional prior with cross-entropy on its codes. Export fills the code histograms over
the training photos and writes ``weights/<rate>.safetensors`` + ``.json``. Checkpoints (with
optimizer state) go to ``runs/vq_vae/``; rerunning the command resumes.
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

from .model import DEFAULTS, VQVAE2

HERE = Path(__file__).parent
SCALES = (1, 2, 3, 4)  # random downscale factors: photos at several "zoom levels"


def load_photos(folder: Path, min_side: int) -> list[torch.Tensor]:
    """Every photo at every downscale factor that leaves ``min_side`` px, as uint8 (3, H, W) in RAM."""
    out = []
    for path in sorted(folder.glob("*.png")):
        im = Image.open(path).convert("RGB")
        for s in (s for s in SCALES if min(im.size) // s >= min_side):
            small = im.resize((im.width // s, im.height // s), Image.LANCZOS) if s > 1 else im
            out.append(torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1))
    return out


def batch(photos: list[torch.Tensor], n: int, size: int) -> torch.Tensor:
    """Random crops with random horizontal flips, float in [0, 1]."""
    crops = []
    for _ in range(n):
        im = random.choice(photos)
        y, x = random.randint(0, im.shape[1] - size), random.randint(0, im.shape[2] - size)
        c = im[:, y:y + size, x:x + size]
        crops.append(c.flip(-1) if random.random() < 0.5 else c)
    return torch.stack(crops).float() / 255.0


def cosine_lr(opt, step: int, total: int, base: float):
    for g in opt.param_groups:
        g["lr"] = base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0))))


def train_vqvae(model, opt, photos, args, start: int, save):
    model.train()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="vq-vae", mininterval=30)
    for step in bar:
        cosine_lr(opt, step, args.steps, args.lr)
        x = batch(photos, args.batch, args.crop)
        x_hat, preview, commit, top, bot = model(x)
        mse = F.mse_loss(x_hat, x)
        # The preview term makes the top codes carry a coarse image on their own.
        loss = mse + F.mse_loss(preview, x) + 0.25 * commit
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            bar.set_postfix(psnr=f"{-10 * math.log10(mse.item()):.2f}", used_top=int(top.unique().numel()),
                            used_bot=int(bot.unique().numel()))
        if (step + 1) % 250 == 0 or step + 1 == args.steps:
            save("vq", step + 1)


def train_prior(model, opt, photos, args, start: int, save):
    model.eval()  # frozen autoencoder; only the prior's parameters are in ``opt``
    bar = tqdm(range(start, args.prior_steps), initial=start, total=args.prior_steps, desc="prior", mininterval=30)
    for step in bar:
        cosine_lr(opt, step, args.prior_steps, args.lr)
        with torch.no_grad():
            top, bot = model.encode(batch(photos, args.batch, args.crop))
            t = model.dec_top(model.vq_top.lookup(top))
        ce = F.cross_entropy(model.prior(t), bot)
        opt.zero_grad()
        ce.backward()
        opt.step()
        if step % 50 == 0:
            bar.set_postfix(bits=f"{ce.item() / math.log(2):.3f}")
        if (step + 1) % 250 == 0 or step + 1 == args.prior_steps:
            save("prior", step + 1)


@torch.no_grad()
def export(model, photos, args, info: dict):
    """Fill the code histograms over whole training photos and write the weights + config."""
    model.eval()
    model.hist_top.fill_(1.0)
    model.hist_bot.fill_(1.0)
    for im in photos:
        h, w = im.shape[1] // 16 * 16, im.shape[2] // 16 * 16
        top, bot = model.encode(im[None, :, :h, :w].float() / 255.0)
        model.hist_top += torch.bincount(top.flatten(), minlength=model.hist_top.numel())
        model.hist_bot += torch.bincount(bot.flatten(), minlength=model.hist_bot.numel())
    # EMA statistics are only needed for training; the codebooks themselves are ``embed``.
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "ema_" not in k}
    out = HERE / "weights"
    out.mkdir(exist_ok=True)
    save_file(state, str(out / f"{args.rate}.safetensors"))
    config = dict(model=model_kwargs(args), training=info)
    (out / f"{args.rate}.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {out / args.rate}.safetensors ({sum(v.numel() for v in state.values())} values)")


def model_kwargs(args) -> dict:
    return {k: getattr(args, k) for k in DEFAULTS}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data/train"))
    p.add_argument("--runs", type=Path, default=Path("runs/vq_vae"))
    p.add_argument("--rate", default="k256")
    p.add_argument("--steps", type=int, default=2000, help="VQ-VAE steps")
    p.add_argument("--prior-steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=96, help="crop size, a multiple of 16")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    for k, v in DEFAULTS.items():
        p.add_argument(f"--{k.replace('_', '-')}", type=int, default=v)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)

    photos = load_photos(args.data, args.crop)
    if not photos:
        raise SystemExit(f"no PNG photos in {args.data} (run scripts/fetch_data.py)")
    model = VQVAE2(**model_kwargs(args))
    ae_params = [p for n, p in model.named_parameters() if not n.startswith("prior.")]
    opt_vq = torch.optim.Adam(ae_params, lr=args.lr)
    opt_prior = torch.optim.Adam(model.prior.parameters(), lr=args.lr)
    args.runs.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.runs / f"{args.rate}.pt"
    state = dict(phase="vq", step=0, seconds={"vq": 0.0, "prior": 0.0})
    if ckpt_path.exists():
        ck = torch.load(ckpt_path)
        model.load_state_dict(ck["model"])
        opt_vq.load_state_dict(ck["opt_vq"])
        opt_prior.load_state_dict(ck["opt_prior"])
        state = ck["state"]
        print(f"resumed {state['phase']} at step {state['step']}")
    t0 = {"t": time.time()}

    def save(phase: str, step: int):
        now = time.time()
        state["seconds"][phase] += now - t0["t"]
        t0["t"] = now
        state.update(phase=phase, step=step)
        torch.save(dict(model=model.state_dict(), opt_vq=opt_vq.state_dict(), opt_prior=opt_prior.state_dict(),
                        state=state), ckpt_path)

    if state["phase"] == "vq":
        train_vqvae(model, opt_vq, photos, args, state["step"], save)
        state.update(phase="prior", step=0)
    train_prior(model, opt_prior, photos, args, state["step"], save)
    info = dict(steps=args.steps, prior_steps=args.prior_steps, batch=args.batch, crop=args.crop, lr=args.lr,
                seconds={k: round(v) for k, v in state["seconds"].items()}, data=str(args.data))
    export(model, photos, args, info)


if __name__ == "__main__":
    main()
