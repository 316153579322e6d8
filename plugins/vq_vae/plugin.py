"""progcodec plugin ``vq-vae``: a two-level VQ-VAE, one bitstream layer per code map.

* Layer 1 (``top-1/16``): top code indices, coded with their marginal histogram over the
  training photos (a buffer in the weights).
* Layer 2 (``bottom-1/4``): bottom code indices, coded with the learned conditional prior:
  per-position categorical probabilities predicted from the top layer alone.

After layer 1, ``image()`` renders a full-size preview from the top layer alone with a small
preview head (the main decoder needs bottom codes; fed guessed ones, it does much worse).
"""
from __future__ import annotations

import copy

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from progcodec import errors
from progcodec.plugin import Analysis, Categorical, LayerDecoder, Model

from .model import VQVAE2

WEIGHTS = Path(__file__).parent / "weights"
LOGIT_STEP = 1 / 16  # logits are snapped to this grid so that tiny float differences between
                     # machines rarely change the integer tables (which core CRC-checks)


def load_net(rate: str) -> tuple[VQVAE2, Path]:
    """The trained network of rate point ``rate`` in eval mode, and its weights file."""
    path, config = WEIGHTS / f"{rate}.safetensors", WEIGHTS / f"{rate}.json"
    if not (path.is_file() and config.is_file()):
        raise errors.PluginLoadError(f"vq-vae weights {path} (+ .json) are missing; train them with"
                                     f" `python -m progcodec_plugins.vq_vae.train --rate {rate}`")
    net = VQVAE2(**json.loads(config.read_text())["model"])
    try:
        missing, unexpected = net.load_state_dict(load_file(str(path)), strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise errors.PluginLoadError(f"{path} does not match {config.name}: {exc}") from exc
    missing = [k for k in missing if ".ema_" not in k]  # EMA statistics are training-only
    if missing or unexpected:
        raise errors.PluginLoadError(f"{path} does not match {config.name}: missing {missing}, unexpected {unexpected}")
    return net.eval().requires_grad_(False), path


class _Prior64(torch.nn.Module):
    """The bottom prior's path (top codes -> t -> logits) in float64: float32 convolutions
    round differently with torch's thread count, and a logit that lands on the other side of
    a snapping boundary makes encoder and decoder tables differ (PriorMismatchError)."""

    def __init__(self, net: VQVAE2):
        super().__init__()
        self.vq_top = copy.deepcopy(net.vq_top).double()
        self.dec_top = copy.deepcopy(net.dec_top).double()
        self.prior = copy.deepcopy(net.prior).double()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = self.prior(self.dec_top(self.vq_top.lookup(idx)))[0]
        return torch.round(logits / LOGIT_STEP) * LOGIT_STEP


class _Decoder(LayerDecoder):
    def __init__(self, net: VQVAE2, height: int, width: int, prior64: _Prior64):
        if height % 16 or width % 16:
            raise ValueError(f"padded size {height}x{width} is not a multiple of 16")
        self.net, self.prior64 = net, prior64
        self.top_shape = (height // 16, width // 16)
        self.t = None       # (1, width, H/4, W/4) top features, after layer 1
        self.probs = None   # (H/4, W/4, K) float64 bottom prior, after layer 1
        self.bot = None     # (1, H/4, W/4) bottom indices, after layer 2

    def prior(self, k: int) -> list:
        if k == 0:
            top = self.net.hist_top.double()
            return [Categorical((top / top.sum()).numpy(), shape=self.top_shape)]
        if k == 1 and self.probs is not None:
            return [Categorical(self.probs.numpy())]
        raise ValueError(f"prior of layer {k} asked out of order")

    def push(self, k: int, symbols: list[np.ndarray]) -> None:
        idx = torch.from_numpy(symbols[0].astype(np.int64))[None]
        if k == 0:
            self.t = self.net.dec_top(self.net.vq_top.lookup(idx))
            self.probs = torch.softmax(self.prior64(idx), 0).permute(1, 2, 0).contiguous()
        else:
            self.bot = idx

    def image(self) -> torch.Tensor:
        if self.bot is None:
            return (self.net.preview(self.t)[0] + 0.5).clamp(0, 1)
        return self.net.decode(self.net.vq_bot.lookup(self.bot), self.t)[0].clamp(0, 1)


class VQVAE(Model):
    name = "vq-vae"
    version = "1"
    rates = ("k256",)
    default_rate = "k256"
    channels = 3
    stride = 16
    decode_bytes_per_pixel = 850  # measured 587-654 B/px (benchmarks/hostile.py --measure), +30%
    layer_names = ("top-1/16", "bottom-1/4")
    description = "two-level VQ-VAE; top codes with a marginal prior, bottom codes with a learned conditional prior"

    def __init__(self, rate: str | None = None):
        super().__init__(rate)
        self.net, self.weights_path = load_net(self.rate)
        self.prior64 = _Prior64(self.net)


    def analyze(self, x: torch.Tensor) -> Analysis:
        top, bot = self.net.encode(x)
        return Analysis(symbols=[[top[0].numpy().astype(np.int32)], [bot[0].numpy().astype(np.int32)]])

    def decoder(self, height: int, width: int, side: dict) -> LayerDecoder:
        return _Decoder(self.net, height, width, self.prior64)
