"""The KLT codec as a progcodec plugin (see the package docstring)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from progcodec import Analysis, LayerDecoder, Model
from progcodec.plugin import Gaussian, file_digest

WEIGHTS = Path(__file__).with_name("klt.safetensors")
B = 4                      # block size
GROUPS = [(0, 1), (1, 8), (8, 48)]  # coefficient ranges sent by layers 1, 2, 3
STEP = {"low": 24.0, "high": 8.0}   # quantizer step in 8-bit units


def blocks(x: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) -> (H/B * W/B, 48) block vectors."""
    return F.unfold(x, B, stride=B)[0].T


def unblocks(v: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.fold(v.T.unsqueeze(0), (height, width), B, stride=B)[0]


class _Decoder(LayerDecoder):
    def __init__(self, model: "KLTCodec", height: int, width: int):
        self.m, self.height, self.width = model, height, width
        self.coef = torch.zeros((height // B) * (width // B), 48)  # decoded coefficients so far
        self.sent = 0                                              # coefficients received

    def prior(self, k: int) -> list:
        a, b = GROUPS[k]
        scale = self.m.sigma[a:b].expand(self.coef.shape[0], -1) / self.m.step
        if k:  # busy blocks (large coefficients so far) get wider distributions
            energy = self.coef[:, : self.sent].abs().mean(1, keepdim=True)
            scale = scale * (0.5 + energy / (energy.mean() + 1e-6))
        return [Gaussian(scale.numpy())]

    def push(self, k: int, symbols: list[np.ndarray]) -> None:
        a, b = GROUPS[k]
        self.coef[:, a:b] = torch.from_numpy(symbols[0]).float() * self.m.step
        self.sent = b

    def image(self) -> torch.Tensor:
        v = self.coef @ self.m.basis.T + self.m.mean
        return unblocks(v, self.height, self.width).div(255).clamp(0, 1)


class KLTCodec(Model):
    name = "klt"
    version = "1"
    rates = tuple(STEP)
    default_rate = "high"
    channels = 3
    stride = B
    layer_names = ("dc-1/4", "coef-2..8", "coef-9..48")
    description = "progressive 4x4 block KLT (example plugin)"

    def __init__(self, rate: str | None = None):
        super().__init__(rate)
        if not WEIGHTS.exists():
            raise FileNotFoundError(f"{WEIGHTS} is missing; run python -m progcodec_klt.train")
        w = load_file(WEIGHTS)
        self.basis, self.mean, self.sigma = w["basis"], w["mean"], w["sigma"]
        if self.basis.shape != (48, 48):
            raise ValueError(f"{WEIGHTS} holds a basis of shape {tuple(self.basis.shape)}, expected (48, 48)")
        self.step = STEP[self.rate]
        self._digest = file_digest(WEIGHTS)

    @property
    def digest(self) -> str:
        return self._digest

    def analyze(self, x: torch.Tensor) -> Analysis:
        coef = (blocks(x * 255) - self.mean) @ self.basis
        q = torch.round(coef / self.step).to(torch.int32).numpy()
        return Analysis(symbols=[[np.ascontiguousarray(q[:, a:b])] for a, b in GROUPS])

    def decoder(self, height: int, width: int, side: dict) -> LayerDecoder:
        return _Decoder(self, height, width)
