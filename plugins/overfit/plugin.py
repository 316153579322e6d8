"""The ``overfit`` plugin: per-image fitted latent grids, decoded coarse grids first.

Layers: layer 1 holds the quantized networks and the two coarsest grids (1/64, 1/32), each
further layer one finer grid (1/16 .. 1/1). Within a layer every grid takes two coding steps
(checkerboard anchors, then the rest), so layers are *multi-step* (see
docs/writing-plugins.md). Any prefix renders a full-size image, missing grids at zero.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from progcodec.entropy import SCALE_TABLE
from progcodec.plugin import Analysis, Gaussian, LayerDecoder, Model

from . import fit, nets, quant
from .nets import GRIDS, PLAN

# lambda per named rate point (loss = MSE on [0, 1] + lambda * bits per pixel)
LAMBDAS = {"lowest": 0.02, "low": 0.008, "medium": 0.003, "high": 0.0012, "highest": 0.0005}
EFFORTS = {"fast": 150, "medium": 400, "slow": 1200}
MAX_HIDDEN = 64


class OverfitDecoder(LayerDecoder):
    """Decoding state: networks after step 0 of layer 1, then grids as they arrive."""

    def __init__(self, height: int, width: int, side: dict, channels: int):
        if side.get("v") != 1:
            raise ValueError(f"unsupported overfit side information version {side.get('v')!r}")
        ah, sh, shifts, ws = side.get("ah"), side.get("sh"), side.get("q"), side.get("ws")
        if not all(isinstance(v, int) and 1 <= v <= MAX_HIDDEN for v in (ah, sh)):
            raise ValueError("network sizes out of range")
        if not (isinstance(shifts, list) and len(shifts) == 3
                and all(isinstance(s, int) and 0 <= s <= quant.MAX_SHIFT for s in shifts)):
            raise ValueError("weight steps out of range")
        self.shapes = (quant.mlp_shapes(nets.PARENT, ah) + quant.mlp_shapes(nets.PARENT + nets.NEIGH, ah)
                       + quant.synth_shapes(sh, channels))
        if not (isinstance(ws, bytes) and len(ws) == len(self.shapes) and max(ws) < len(SCALE_TABLE)):
            raise ValueError("weight coding scales are damaged")
        self.shifts, self.ws = shifts, ws
        self.sizes = nets.grid_sizes(height, width)
        self.grids: list[torch.Tensor | None] = [None] * GRIDS
        self.params = None
        self._pending = None

    def coding_steps(self, k: int) -> int:
        return len(PLAN[k])

    def step_prior(self, k: int, s: int) -> list:
        item = PLAN[k][s]
        if item == ("nets",):
            return [Gaussian(np.full(shape, SCALE_TABLE[i])) for shape, i in zip(self.shapes, self.ws)]
        l, p = item
        if p == "a":
            self.grids[l] = torch.zeros(self.sizes[l], dtype=torch.float64)
        parent = self.grids[l + 1] if l + 1 < GRIDS else None
        out = quant.exact_mlp(self.params[0 if p == "a" else 1], nets.context(parent, self.grids[l], p))
        mu = torch.floor(out[0] + 0.5)
        scales = torch.exp(out[1].clamp(-30.0, 30.0))
        self._pending = (l, p, mu)
        return [Gaussian(scales.numpy())]

    def step_push(self, k: int, s: int, symbols: list[np.ndarray]) -> None:
        if PLAN[k][s] == ("nets",):
            if any(np.abs(a).max(initial=0) > quant.MAX_WEIGHT for a in symbols):
                raise ValueError("network weight out of range")
            n_arm = len(quant.mlp_shapes(1, 1))
            groups = (symbols[:n_arm], symbols[n_arm:2 * n_arm], symbols[2 * n_arm:])
            self.params = [quant.from_ints(g, sh) for g, sh in zip(groups, self.shifts)]
            return
        l, p, mu = self._pending
        y = mu + torch.from_numpy(symbols[0].astype(np.float64))
        if y.numel() and float(y.abs().max()) > quant.MAX_WEIGHT:
            raise ValueError("latent value out of range")
        nets.put(self.grids[l], y, p)
        self._pending = None

    def prior(self, k: int) -> list:
        raise NotImplementedError("overfit layers have several coding steps: use step_prior")

    def push(self, k: int, symbols) -> None:
        raise NotImplementedError("overfit layers have several coding steps: use step_push")

    def image(self) -> torch.Tensor:
        if self.params is None:
            raise ValueError("no layer decoded yet")
        # rendering is not part of the prior: float32 (oneDNN kernels; float64 3x3 convolutions
        # were 10x slower), so renders may differ by one 8-bit level across thread counts
        ys = [(g.float() if g is not None else torch.zeros(size))[None, None] for g, size in zip(self.grids, self.sizes)]
        with torch.no_grad():
            x = nets.synthesize([p.float() for p in self.params[2]], nets.upsample_grids(ys, self.sizes[0]))
        return x[0].clamp(0, 1)


class Overfit(Model):
    name = "overfit"
    version = "1"
    rates = tuple(LAMBDAS) + ("custom",)
    default_rate = "medium"
    channels = 3
    stride = 1
    layer_names = ("nets+grids-1/64,1/32", "grid-1/16", "grid-1/8", "grid-1/4", "grid-1/2", "grid-1/1")
    description = "fitted per image: latent grids 1/64..1/1 + tiny networks (C3 / Cool-chic family), coarse grids first"
    options = ("effort", "lmbda", "target_bpp", "iters", "progress")
    decode_bytes_per_pixel = 960  # 735 B/px measured (peak RSS over baseline, 1024x1024), x1.3

    def analyze(self, x: torch.Tensor, effort: str = "medium", lmbda: float | None = None,
                target_bpp: float | None = None, iters: int | None = None, progress=None) -> Analysis:
        if effort not in EFFORTS:
            raise ValueError(f"effort must be one of {list(EFFORTS)}, got {effort!r}")
        iters = int(iters or os.environ.get("PROGCODEC_OVERFIT_ITERS") or EFFORTS[effort])
        custom = lmbda is not None or target_bpp is not None
        if lmbda is None:
            lmbda = LAMBDAS.get(self.rate, LAMBDAS["medium"])  # 'custom' alone: medium's lambda
        if not (0 < float(lmbda) < 10):
            raise ValueError(f"lmbda must be in (0, 10), got {lmbda}")
        if target_bpp is not None and not (0.001 <= float(target_bpp) <= 24):
            raise ValueError(f"target_bpp must be in [0.001, 24], got {target_bpp}")
        with torch.inference_mode(False), torch.enable_grad():
            x = x.detach().clone().float()
            if target_bpp is not None:
                lmbda = search_lambda(x, float(target_bpp), iters, lmbda)
            cfg = fit.FitConfig(lmbda=float(lmbda), iters=iters)
            fitted, log = fit.fit(x, cfg, progress)
        analysis = self.pack(fitted, x, cfg)
        analysis.rate = "custom" if custom else None
        return analysis

    def pack(self, fitted: fit.Fitted, x: torch.Tensor, cfg: fit.FitConfig) -> Analysis:
        """Quantize a fitted image into symbols and side information."""
        ys = [torch.round(y.detach()).double() for y in fitted.latents]
        best = quant.search(fitted, x.detach(), ys, cfg.lmbda)
        ints = best["a"][1] + best["b"][1] + best["s"][1]
        side = {"v": 1, "ah": cfg.arm_hidden, "sh": cfg.synth_hidden,
                "q": [best["a"][0], best["b"][0], best["s"][0]],
                "ws": bytes(quant.coding_scale(a) for a in ints),
                "lmbda": round(cfg.lmbda, 8), "iters": cfg.iters}
        state = self.decoder(x.shape[-2], x.shape[-1], side)
        symbols = []
        for k, plan in enumerate(PLAN):
            layer = []
            for s, item in enumerate(plan):
                state.step_prior(k, s)
                if item == ("nets",):
                    syms = ints
                else:
                    l, p, mu = state._pending
                    syms = [(nets.take(ys[l][0], p)[0] - mu).numpy().astype(np.int32)]
                state.step_push(k, s, syms)
                layer.append(syms)
            symbols.append(layer)
        return Analysis(symbols=symbols, side=side)

    def decoder(self, height: int, width: int, side: dict) -> LayerDecoder:
        return OverfitDecoder(height, width, side, self.channels)


def search_lambda(x: torch.Tensor, target: float, iters: int, lmbda: float) -> float:
    """Lambda whose fit lands at ``target`` bpp: secant steps in log-log on short fits."""
    short = max(50, iters // 5)
    npx = x.shape[-2] * x.shape[-1]
    pts = []
    for _ in range(3):
        fitted, log = fit.fit(x, fit.FitConfig(lmbda=lmbda, iters=short))
        bpp = log[-1]["bpp"] + 8 * 1200 / npx  # + about 1.2 kB of networks
        pts.append((math.log(lmbda), math.log(max(bpp, 1e-4))))
        if abs(bpp / target - 1) < 0.05:
            break
        if len(pts) == 1:
            slope = -0.6  # typical d log(bpp) / d log(lambda)
        else:
            (l0, b0), (l1, b1) = pts[-2], pts[-1]
            slope = (b1 - b0) / (l1 - l0) if abs(l1 - l0) > 1e-9 else -0.6
            slope = min(-0.1, max(-2.0, slope))
        lmbda = math.exp(pts[-1][0] + (math.log(target) - pts[-1][1]) / slope)
        lmbda = min(1.0, max(1e-5, lmbda))
    return lmbda
