"""Fitting one image: latent grids and networks trained for D + lambda * R, then quantized.

Schedule (after Cool-chic / C3): Adam with a cosine learning rate; additive uniform noise on
the latents for the first part, then hard rounding with straight-through gradients (and the
coded mean, snapped to 1/8, in the rate). Each iteration also renders a random prefix of the layers
(finer grids at zero) and adds its distortion, so every preview is trained. The fit ends on the
rounded phase's best state (``keep_best``). Finally each
network's weights are quantized with the power-of-two step that minimises the loss.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import nets, quant
from .nets import GRIDS


@dataclass
class FitConfig:
    lmbda: float
    iters: int
    arm_hidden: int = 16
    synth_hidden: int = 24
    lr: float = 0.2                 # latents (with the warm start; 0.05 was best from random networks)
    net_lr: float | None = None     # networks; None: net_lr_for(lmbda)
    prefix_weight: float = 0.25     # weight of the random-prefix distortion term
    noise_frac: float = 0.9         # share of iterations with noise (then straight-through rounding)
    offset_lr: float = 0.05         # the per-grid log-scale offsets of the entropy model
    keep_best: bool = True          # end on the rounded phase's best state (coded D + lambda R)
    soft_round: tuple[float, float] | None = None  # noise phase: softround temperature start, end
    soft_sigma: tuple[float, float] = (0.22, 0.15)  # ... and its Gaussian noise's deviation
    round_lr: tuple[float, float] = (1.0, 1.0)  # rounded phase: lr factors (latents, networks + offsets)
    seed: int = 0


class Fitted(nn.Module):
    """The per-image state being fitted."""

    def __init__(self, height: int, width: int, cfg: FitConfig, channels: int = 3):
        super().__init__()
        self.sizes = nets.grid_sizes(height, width)
        self.latents = nn.ParameterList([nn.Parameter(torch.zeros(1, 1, h, w)) for h, w in self.sizes])
        self.arm = nets.EntropyModel(cfg.arm_hidden)
        self.synth = nets.Synthesis(cfg.synth_hidden, channels)
        # added to the entropy model's log-scale per pass (a, b) and grid: the shared MLP cannot
        # tell the grids apart, and anchors of different grids need different scales
        self.scale_offsets = nn.Parameter(torch.zeros(2, GRIDS))


def offset_columns(offsets: torch.Tensor, sizes, p: str) -> torch.Tensor:
    """Pass ``p``'s row of (2, GRIDS) offsets repeated over its latents, in coding order."""
    counts = torch.tensor([nets.pass_count(h, w, p) for h, w in sizes])
    return offsets["ab".index(p)].repeat_interleave(counts)


def softround(y: torch.Tensor, t: float) -> torch.Tensor:
    """A differentiable rounding: ``round(y)`` as ``t`` -> 0, ``y`` as ``t`` grows (Agustsson &
    Theis 2020)."""
    f = torch.floor(y)
    return f + 0.5 * torch.tanh((y - f - 0.5) / t) / math.tanh(0.5 / t) + 0.5


def _proxy(y: torch.Tensor, noisy: bool, soft: tuple[float, float] | None = None) -> torch.Tensor:
    """The latents as the loss sees them: ``y`` plus uniform noise; or, with ``soft`` (temperature,
    deviation), softround(softround(y) + Gaussian noise) (C3, Cool-chic); or rounded with
    straight-through gradients (``noisy`` false)."""
    if noisy and soft is not None:
        return softround(softround(y, soft[0]) + soft[1] * torch.randn_like(y), soft[0])
    if noisy:
        return y + torch.empty_like(y).uniform_(-0.5, 0.5)
    return y + (torch.round(y) - y).detach()


def contexts(ys: list[torch.Tensor]):
    """Context features (C, N) and values (N,) of every latent, per pass: ((f_a, y_a), (f_b, y_b))."""
    out = []
    for p in ("a", "b"):
        feats, vals = [], []
        for l in range(GRIDS):
            g = ys[l][0, 0]
            parent = ys[l + 1][0, 0] if l + 1 < GRIDS else None
            feats.append(nets.context(parent, g, p))
            vals.append(nets.take(g[None], p)[0])
        out.append((torch.cat(feats, 1), torch.cat(vals)))
    return out


def first_layers(model: Fitted, ys: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Both passes' first MLP layer over all grids, (hidden, N) each: the same function as
    ``contexts`` then ``layers[0]``, as stride-2 3x3 convolutions of the upsampled coarser grid
    (and, pass b, of the grid) per sub-lattice: a few ops per grid instead of one per feature row."""
    la, lb = model.arm.a.layers[0], model.arm.b.layers[0]
    hid = la.weight.shape[0]
    taps = torch.tensor([3 * di + dj for di, dj in nets.NEIGHBOURS])
    cross = lb.weight.new_zeros(hid, 9).index_copy(1, taps, lb.weight[:, nets.PARENT:])
    ka = la.weight.view(hid, 1, 3, 3)
    kb = torch.stack([lb.weight[:, : nets.PARENT], cross], 1).view(hid, 2, 3, 3)
    outs = ([], [])
    for l in range(GRIDS):
        g = ys[l]
        h, w = g.shape[-2:]
        gp = F.pad(g, (1, 1, 1, 1))
        if l + 1 < GRIDS:
            up = F.pad(nets.upsample2(ys[l + 1], (h, w)), (1, 1, 1, 1), mode="replicate")
            sources = {"a": (up, ka), "b": (torch.cat([up, gp], 1), kb)}
        else:  # the coarsest grid: no parent (zero features), pass b sees only its neighbours
            sources = {"a": None, "b": (gp, kb[:, 1:])}
        for p, out in zip("ab", outs):
            for i, j in nets.LATTICES[p]:
                hs, ws = -(-(h - i) // 2), -(-(w - j) // 2)
                if sources[p] is None or hs * ws == 0:  # also an empty sub-lattice (1-wide grid)
                    f = g.new_zeros(1, hid, hs, ws)
                else:
                    x, k = sources[p]
                    f = F.conv2d(x[..., i:, j:], k, stride=2)
                out.append(f[0].flatten(1))
    return torch.cat(outs[0], 1) + la.bias[:, None], torch.cat(outs[1], 1) + lb.bias[:, None]


def latent_bits(model: Fitted, ys: list[torch.Tensor], noisy: bool) -> torch.Tensor:
    """Bits of all latent grids under the checkerboard model (one batched MLP per pass), its
    log-scales shifted per pass and grid by ``model.scale_offsets``."""
    bits = 0.0
    for mlp, f, p in zip((model.arm.a, model.arm.b), first_layers(model, ys), "ab"):
        y = torch.cat([nets.take(g[0], p)[0] for g in ys])
        out = mlp.after_first(f)
        mu, ls = out[0], out[1] + offset_columns(model.scale_offsets, [tuple(g.shape[-2:]) for g in ys], p)
        if not noisy:  # the mean as coded: snapped to 1/8 (side information v4)
            mu = mu + (quant.coded_mean(mu) - mu).detach()
        bits = bits + nets.gaussian_bits(y, mu, ls).sum()
    return bits


def _keep(z: torch.Tensor, keep: int) -> torch.Tensor:
    """Upsampled grids with all but the ``keep`` coarsest at zero."""
    if keep >= GRIDS:
        return z
    mask = torch.zeros(GRIDS, dtype=z.dtype)
    mask[GRIDS - keep:] = 1
    return z * mask[None, :, None, None]


def render(model: Fitted, ys: list[torch.Tensor], keep: int = GRIDS) -> torch.Tensor:
    """Image from the grids; grids finer than the ``keep`` coarsest are zero."""
    return model.synth(_keep(nets.upsample_grids(ys, model.sizes[0]), keep))


def terms(model: Fitted, x: torch.Tensor, noisy: bool, soft: tuple[float, float] | None = None):
    """One evaluation of the loss terms: (upsampled proxy latents, render, MSE, bits per pixel)."""
    ys = [_proxy(y, noisy, soft) for y in model.latents]
    z = nets.upsample_grids(ys, model.sizes[0])
    xh = model.synth(z)
    return z, xh, F.mse_loss(xh, x), latent_bits(model, ys, noisy) / (x.shape[-2] * x.shape[-1])


def prefix_mse(model: Fitted, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """MSE of a random prefix of the layers (finer grids at zero): the preview term.
    ``z``: the upsampled grids from ``terms``."""
    keep = nets.LAYER_KEEP[int(torch.randint(0, len(nets.LAYER_KEEP) - 1, ()).item())]
    return F.mse_loss(model.synth(_keep(z, keep)), x)


def fit(x: torch.Tensor, cfg: FitConfig, progress=None, init: dict | None = None,
        latents: list[torch.Tensor] | None = None) -> tuple[Fitted, list[dict]]:
    """Fit ``x`` (1, C, H, W) in [0, 1]; returns the model and a log of (iter, loss, psnr, bpp).
    ``init``: starting networks (``arm.*`` / ``synth.*`` tensors, the warm start) instead of random
    ones; ``latents``: starting grids (the analysis network's) instead of zeros."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    try:
        return _fit(x, cfg, progress, init, latents)
    finally:
        torch.random.set_rng_state(gen_state)


def load_networks(model: Fitted, init: dict) -> None:
    """Copy warm-start tensors into ``model``'s networks (ValueError naming the first mismatch)."""
    for prefix, net in (("arm.", model.arm), ("synth.", model.synth)):
        own = net.state_dict()
        for k, v in own.items():
            got = init.get(prefix + k)
            if got is None or tuple(got.shape) != tuple(v.shape):
                raise ValueError(f"warm-start tensor {prefix + k} is "
                                 f"{'missing' if got is None else tuple(got.shape)}, expected {tuple(v.shape)}")
        net.load_state_dict({k: init[prefix + k] for k in own})


def net_lr_for(lmbda: float) -> float:
    """Networks' learning rate: 0.01 at lambda >= 0.003 (rate medium and lower), rising
    log-linearly to 0.03 at 0.0012 (rate high) and kept there. Measured on 384x256 crops,
    400 iterations, coded loss at rate high: 5 of 6 photos lower (1-13%), life +6%; at rate
    medium mixed (-1% .. +3%) (plugin README)."""
    t = (math.log(0.003) - math.log(lmbda)) / (math.log(0.003) - math.log(0.0012))
    return 0.01 * 3.0 ** min(1.0, max(0.0, t))


def _fit(x, cfg, progress, init, latents):
    h, w = x.shape[-2:]
    model = Fitted(h, w, cfg, x.shape[1])
    if init is not None:
        load_networks(model, init)
    if latents is not None:
        with torch.no_grad():
            for p, y in zip(model.latents, latents, strict=True):
                p.copy_(y)
    net_lr = cfg.net_lr if cfg.net_lr is not None else net_lr_for(cfg.lmbda)
    params = [{"params": list(model.latents), "lr": cfg.lr},
              {"params": list(model.arm.parameters()) + list(model.synth.parameters()), "lr": net_lr},
              {"params": [model.scale_offsets], "lr": cfg.offset_lr}]
    opt = torch.optim.Adam(params)
    log, t0 = [], time.perf_counter()
    noise_iters = int(cfg.iters * cfg.noise_frac)
    best = (math.inf, -1, None)  # (coded loss, iteration, state) of the rounded phase
    for it in range(cfg.iters):
        frac = it / max(1, cfg.iters)
        decay = 0.5 * (1 + math.cos(math.pi * frac)) * 0.95 + 0.05
        f_lat, f_net = cfg.round_lr if it >= noise_iters else (1.0, 1.0)
        for g, base in zip(opt.param_groups, (cfg.lr * f_lat, net_lr * f_net, cfg.offset_lr * f_net)):
            g["lr"] = base * decay
        z, xh, mse, bpp = terms(model, x, it < noise_iters, _soft(cfg, it / max(1, noise_iters - 1)))
        loss = mse + cfg.lmbda * bpp
        if cfg.keep_best and it >= noise_iters and (coded := float(loss.detach())) < best[0]:
            best = (coded, it, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if cfg.prefix_weight > 0 and it % 2:  # every other iteration, at twice the weight
            loss = loss + 2 * cfg.prefix_weight * prefix_mse(model, z, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % 50 == 0 or it == cfg.iters - 1:
            psnr = -10 * math.log10(max(float(F.mse_loss(xh.detach().clamp(0, 1), x)), 1e-12))
            log.append({"iter": it, "loss": float(loss.detach()), "psnr": psnr, "bpp": float(bpp.detach()),
                        "seconds": time.perf_counter() - t0})
            if progress:
                progress(it + 1, cfg.iters, psnr, float(bpp.detach()))
    if best[2] is not None:
        log[-1].update(_end_on_best(model, x, cfg.lmbda, best, cfg.iters))
    return model, log


def _soft(cfg: FitConfig, t: float) -> tuple[float, float] | None:
    """Softround temperature and noise deviation at noise-phase progress ``t`` in [0, 1]
    (linear, as Cool-chic schedules them); None without ``cfg.soft_round``."""
    if cfg.soft_round is None:
        return None
    (t0, t1), (s0, s1) = cfg.soft_round, cfg.soft_sigma
    return t0 + (t1 - t0) * t, s0 + (s1 - s0) * t


def _end_on_best(model: Fitted, x: torch.Tensor, lmbda: float, best, iters: int) -> dict:
    """End on the best rounded state seen (the state after the last step included): the hard
    phase's straight-through steps are noisy and its last state is rarely its best. Measured on
    384x256 crops (8 of 8 lower, mean -3.0%) and on 8 full photos x 4 rates at ``medium`` (32 of
    32, mean -3.1%; plugin README). Returns ``{"kept": iteration, "kept_loss": loss}`` for the
    log (iteration ``iters``: the state after the last step)."""
    with torch.no_grad():
        _, _, mse, bpp = terms(model, x, False)
        last = float(mse + lmbda * bpp)
    if last <= best[0]:
        return {"kept": iters, "kept_loss": last}
    model.load_state_dict(best[2])
    return {"kept": best[1], "kept_loss": best[0]}
