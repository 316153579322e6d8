"""The ``overfit`` plugin: per-image fitted latent grids, decoded coarse grids first.

Layers: layer 1 holds the quantized networks and the two coarsest grids (1/64, 1/32), each
further layer one finer grid (1/16 .. 1/1). Within a layer every grid takes two coding steps
(checkerboard anchors, then the rest), so layers are *multi-step* (see
docs/writing-plugins.md). Any prefix renders a full-size image, missing grids at zero.
Fits start from the shipped warm-start networks; side information v2 codes the weights
relative to them (v1: absolute, from a cold start or before the warm start existed). v3 adds
a log-scale offset per grid and pass (``so``) to the entropy model, and codes the weights
relative to the warm start when it names one (``init``), else absolutely. v4 (what the
encoder wrote before v5) codes each latent under its model's mean snapped to 1/8 (the coder's
``Gaussian(scales, means)``) instead of relative to the rounded mean. v5 (what the encoder
writes) gives every weight tensor its own step (``q``: 20 shifts, not one per network) and
no longer carries the fit's ``lmbda`` and ``iters`` (not needed to decode; 23 bytes).
"""
from __future__ import annotations

import math
import os
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from progcodec import allocator, errors, threads
from progcodec.entropy import SCALE_TABLE
from progcodec.plugin import Analysis, Gaussian, LayerDecoder, Model, file_digest

from . import fit, nets, quant
from .analysis_net import AnalysisNet
from .nets import GRIDS, PLAN

# lambda per named rate point (loss = MSE on [0, 1] + lambda * bits per pixel)
LAMBDAS = {"lowest": 0.02, "low": 0.008, "medium": 0.003, "high": 0.0012, "highest": 0.0005}
EFFORTS = {"fast": 150, "medium": 600, "slow": 1200}
MAX_HIDDEN = 64
WEIGHTS = Path(__file__).parent / "weights"
INIT = "init.safetensors"  # the warm-start networks, in WEIGHTS (train_init.py writes them)
ANALYSIS = "analysis.safetensors"  # the starting-latents network (train_analysis.py)


class OverfitDecoder(LayerDecoder):
    """Decoding state: networks after step 0 of layer 1, then grids as they arrive."""

    def __init__(self, height: int, width: int, side: dict, channels: int, model: "Overfit"):
        if type(side.get("v")) is not int or side["v"] not in (1, 2, 3, 4, 5):
            raise ValueError(f"unsupported overfit side information version {side.get('v')!r}")
        ah, sh, shifts, ws = side.get("ah"), side.get("sh"), side.get("q"), side.get("ws")
        if not all(type(v) is int and 1 <= v <= MAX_HIDDEN for v in (ah, sh)):  # (not bool)
            raise ValueError("network sizes out of range")
        self.shapes = (quant.mlp_shapes(nets.PARENT, ah) + quant.mlp_shapes(nets.PARENT + nets.NEIGH, ah)
                       + quant.synth_shapes(sh, channels))
        n_arm = len(quant.mlp_shapes(1, 1))
        self.cuts = (0, n_arm, 2 * n_arm, len(self.shapes))  # tensors of passes a, b, the synthesis
        # v5: a step per tensor; before, one per network
        if not (isinstance(shifts, list) and len(shifts) == (len(self.shapes) if side["v"] >= 5 else 3)
                and all(type(s) is int and 0 <= s <= quant.MAX_SHIFT for s in shifts)):
            raise ValueError("weight steps out of range")
        if side["v"] < 5:
            shifts = [sh for q, i, j in zip(shifts, self.cuts, self.cuts[1:]) for sh in [q] * (j - i)]
        if not (isinstance(ws, bytes) and len(ws) == len(self.shapes) and max(ws) < len(SCALE_TABLE)):
            raise ValueError("weight coding scales are damaged")
        so = side.get("so") if side["v"] >= 3 else [0] * 2 * GRIDS
        if not (isinstance(so, list) and len(so) == 2 * GRIDS
                and all(type(k) is int and abs(k) <= quant.MAX_OFFSET for k in so)):
            raise ValueError("entropy-model scale offsets out of range")
        self.offsets = {p: [k / quant.OFFSET_STEP for k in so[i * GRIDS : (i + 1) * GRIDS]] for i, p in enumerate("ab")}
        self.shifts, self.ws = shifts, ws
        self.base = None  # v2, v3+ naming one: weights are coded relative to the warm-start networks
        self.means = side["v"] >= 4  # coded under the (snapped) means, else relative to the rounded ones
        if side["v"] == 2 or (side["v"] >= 3 and "init" in side):
            if side.get("init") != model.init_digest:
                raise errors.WeightsMismatchError(
                    f"stream was fitted from warm-start networks {side.get('init')!r}; installed ones are"
                    f" {model.init_digest!r} ({WEIGHTS / INIT})")
            self.base = base_tensors(model.init_networks(), ah, sh, channels)
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
        scales = torch.exp((out[1] + self.offsets[p][l]).clamp(-30.0, 30.0))
        if self.means:
            self._pending = (l, p, None)
            return [Gaussian(scales.numpy(), out[0].numpy())]
        self._pending = (l, p, torch.floor(out[0] + 0.5))
        return [Gaussian(scales.numpy())]

    def step_push(self, k: int, s: int, symbols: list[np.ndarray]) -> None:
        if PLAN[k][s] == ("nets",):
            if any(np.abs(a).max(initial=0) > quant.MAX_WEIGHT for a in symbols):
                raise ValueError("network weight out of range")
            groups = [(symbols[i:j], self.shifts[i:j]) for i, j in zip(self.cuts, self.cuts[1:])]
            if self.base is not None:
                groups = [([d + b for d, b in zip(g, quant.to_ints(self.base[key], sh))], sh)
                          for (g, sh), key in zip(groups, "abs")]
                if any(np.abs(a).max(initial=0) > quant.MAX_WEIGHT for g, _ in groups for a in g):
                    raise ValueError("network weight out of range")
            self.params = [quant.from_ints(g, sh) for g, sh in groups]
            return
        l, p, mu = self._pending
        y = torch.from_numpy(symbols[0].astype(np.float64))
        if mu is not None:
            y = y + mu
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
    options = ("effort", "lmbda", "target_bpp", "iters", "warm_start", "latent_init", "progress")
    decode_bytes_per_pixel = 960  # 735 B/px measured (peak RSS over baseline, 1024x1024), x1.3
    # Format 1.2 headers (~230 B smaller at 768x512) by default: side information v4 is newer than
    # format 1.2, so every progcodec that decodes these streams reads compressed headers.
    compact_header = True

    def analyze(self, x: torch.Tensor, effort: str = "medium", lmbda: float | None = None,
                target_bpp: float | None = None, iters: int | None = None, warm_start: bool = True,
                latent_init: str = "zero", progress=None) -> Analysis:
        if effort not in EFFORTS:
            raise ValueError(f"effort must be one of {list(EFFORTS)}, got {effort!r}")
        if latent_init not in ("analysis", "zero"):
            raise ValueError(f"latent_init must be 'analysis' or 'zero', got {latent_init!r}")
        iters = int(iters or os.environ.get("PROGCODEC_OVERFIT_ITERS") or EFFORTS[effort])
        custom = lmbda is not None or target_bpp is not None
        if lmbda is None:
            lmbda = LAMBDAS.get(self.rate, LAMBDAS["medium"])  # 'custom' alone: medium's lambda
        if not (0 < float(lmbda) < 10):
            raise ValueError(f"lmbda must be in (0, 10), got {lmbda}")
        if target_bpp is not None and not (0.001 <= float(target_bpp) <= 24):
            raise ValueError(f"target_bpp must be in [0.001, 24], got {target_bpp}")
        init = self.init_networks() if warm_start else None
        # the analysis network was trained for the warm-start networks: zeros from a cold start
        start = self.analysis_net() if warm_start and latent_init == "analysis" else None
        with torch.inference_mode(False), torch.enable_grad(), threads.fitting(), allocator.retained():
            x = x.detach().clone().float()
            if target_bpp is not None:
                lmbda = search_lambda(x, float(target_bpp), iters, lmbda, init, start)
            cfg = fit.FitConfig(lmbda=float(lmbda), iters=iters)
            fitted, log = fit.fit(x, cfg, progress, init, start_latents(start, x, cfg.lmbda))
        analysis = self.pack(fitted, x, cfg, init)
        analysis.rate = "custom" if custom else None
        return analysis

    @property
    def digest(self) -> str:
        """The warm-start networks' digest (v2 streams code weights relative to them)."""
        return self.init_digest

    def accepts_weights(self, digest: str) -> bool:
        return digest in ("none", self.init_digest)  # "none": v1 streams, self-contained

    @cached_property
    def init_digest(self) -> str:
        path = WEIGHTS / INIT
        return file_digest(path) if path.is_file() else "none"

    def init_networks(self) -> dict:
        """The shipped warm-start networks (``weights/init.safetensors``, train_init.py)."""
        if getattr(self, "_init", None) is None:
            path = WEIGHTS / INIT
            if not path.is_file():
                raise errors.PluginLoadError(f"overfit warm-start networks {path} are missing; train them with"
                                             " `python -m progcodec_plugins.overfit.train_init` or pass warm_start=False")
            tensors = load_file(str(path))
            try:
                fit.load_networks(fit.Fitted(1, 1, fit.FitConfig(lmbda=1.0, iters=1), self.channels), tensors)
            except ValueError as e:
                raise errors.WeightsMismatchError(f"{path}: {e}") from None
            self._init = tensors
        return self._init

    def analysis_net(self) -> AnalysisNet:
        """The shipped analysis network (``weights/analysis.safetensors``, train_analysis.py)."""
        if getattr(self, "_analysis", None) is None:
            path = WEIGHTS / ANALYSIS
            if not path.is_file():
                raise errors.PluginLoadError(f"overfit analysis network {path} is missing; train it with"
                                             " `python -m progcodec_plugins.overfit.train_analysis` or pass"
                                             " latent_init='zero'")
            net = AnalysisNet()
            try:
                net.load_state_dict(load_file(str(path)))
            except RuntimeError as e:
                raise errors.WeightsMismatchError(f"{path}: {str(e).splitlines()[0]}") from None
            self._analysis = net.requires_grad_(False)
        return self._analysis

    def pack(self, fitted: fit.Fitted, x: torch.Tensor, cfg: fit.FitConfig, init: dict | None = None) -> Analysis:
        """Quantize a fitted image into symbols and side information."""
        ys = [torch.round(y.detach()).double() for y in fitted.latents]
        base = base_tensors(init, cfg.arm_hidden, cfg.synth_hidden, self.channels) if init is not None else None
        best = quant.search(fitted, x.detach(), ys, cfg.lmbda, base)
        ints = best["a"][1] + best["b"][1] + best["s"][1]
        side = {"v": 5, "ah": cfg.arm_hidden, "sh": cfg.synth_hidden,
                "q": best["a"][0] + best["b"][0] + best["s"][0], "so": best["so"],
                "ws": bytes(quant.coding_scale(a) for a in ints)}  # v5 dropped lmbda, iters: 23 B
        if init is not None:
            side["init"] = self.init_digest
        state = self.decoder(x.shape[-2], x.shape[-1], side)
        symbols = []
        for k, plan in enumerate(PLAN):
            layer = []
            for s, item in enumerate(plan):
                state.step_prior(k, s)
                if item == ("nets",):
                    syms = ints
                else:
                    l, p, _ = state._pending  # v4+: the latents themselves, coded under the means
                    syms = [nets.take(ys[l][0], p)[0].numpy().astype(np.int32)]
                state.step_push(k, s, syms)
                layer.append(syms)
            symbols.append(layer)
        return Analysis(symbols=symbols, side=side)

    def decoder(self, height: int, width: int, side: dict) -> LayerDecoder:
        return OverfitDecoder(height, width, side, self.channels, self)


def base_tensors(init: dict, arm_hidden: int, synth_hidden: int, channels: int) -> dict:
    """Warm-start tensors per network (``a``, ``b``, ``s``) in coding order, for these sizes."""
    ref = fit.Fitted(1, 1, fit.FitConfig(lmbda=1.0, iters=1, arm_hidden=arm_hidden, synth_hidden=synth_hidden), channels)
    try:
        fit.load_networks(ref, init)
    except ValueError as e:
        raise errors.WeightsMismatchError(f"warm-start networks do not fit this stream's network sizes: {e}") from None
    return {"a": quant.mlp_tensors(ref.arm.a), "b": quant.mlp_tensors(ref.arm.b), "s": quant.synth_tensors(ref.synth)}


def start_latents(net: AnalysisNet | None, x: torch.Tensor, lmbda: float) -> list[torch.Tensor] | None:
    """The fit's starting grids from the analysis network (None: zeros), rounded: the integer
    latents it was trained to give (unrounded, values in the dead zone around +-0.5 cost the fit
    bits to take apart again: +16% loss on a crop at rate lowest)."""
    if net is None:
        return None
    with torch.no_grad():
        return [torch.round(y) for y in net(x, lmbda)]


def search_lambda(x: torch.Tensor, target: float, iters: int, lmbda: float, init: dict | None = None,
                  start: AnalysisNet | None = None) -> float:
    """Lambda whose fit lands at ``target`` bpp: secant steps in log-log on short fits."""
    short = max(50, iters // 5)
    npx = x.shape[-2] * x.shape[-1]
    pts = []
    for _ in range(3):
        fitted, log = fit.fit(x, fit.FitConfig(lmbda=lmbda, iters=short), init=init,
                              latents=start_latents(start, x, lmbda))
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
