"""``pyramid``: a Laplacian-pyramid reference codec that needs no training.

Layer 1 is a 1/16-scale YCbCr thumbnail (DPCM symbols); layers 2-5 add quantized residuals
at 1/8, 1/4, 1/2 and full scale. Encoding is closed-loop (each residual is taken against
the decoder's own reconstruction). The prior of a residual layer is a zero-mean Gaussian
whose scale is a per-channel value from the side information times a local-activity map
computed from the layers already decoded.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from progcodec.plugin import Analysis, Gaussian, LayerDecoder, Model

LEVELS = 4  # residual levels; the thumbnail is at 1 / 2**LEVELS
# quantizer steps (8-bit units, all channels) for [thumb, 1/8, 1/4, 1/2, 1/1]: each finer level
# 1.7x coarser, the best of a sweep on held-out photos (BD-rate vs JPEG +75% -> +27%)
STEPS = {rate: tuple(round(base * 1.7**i, 2) for i in range(5)) for rate, base in
         (("low", 9.0), ("medium", 4.5), ("high", 2.25))}
_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC2RGB = torch.linalg.inv(_RGB2YCC)


def _color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", m, x)


def _up2(x: torch.Tensor, dim: int) -> torch.Tensor:
    """2x linear upsampling along ``dim`` (weights 3/4, 1/4; edges replicated)."""
    n = x.shape[dim]
    prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    near = x * 0.75
    out = torch.stack([near + prev * 0.25, near + nxt * 0.25], dim + 1)
    return out.flatten(dim, dim + 1)


def _up(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling (as align_corners=False) from separate elementwise ops only:
    F.interpolate's fused kernel rounds differently with torch's thread count, which would
    make encoder and decoder priors differ."""
    return _up2(_up2(x, 2), 3)


def _activity(x: torch.Tensor) -> np.ndarray:
    """Local detail of an (upsampled) reconstruction, normalised to mean 1 per channel.

    Only per-pixel ops and fixed 3x3 windows run in torch; the image-wide mean is taken in
    numpy float64, whose summation order does not depend on torch's thread count (a float32
    torch mean did, and snapped a few scales differently on encoder and decoder).
    """
    detail = (x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)).abs()
    detail = F.avg_pool2d(F.pad(detail, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    d = detail[0].double().numpy()
    return 0.25 + d / (np.array([c.mean() for c in d])[:, None, None] + 1e-6)


def _rms(x: np.ndarray) -> list[float]:
    return [round(float(np.sqrt(np.mean(c.astype(np.float64) ** 2)) + 0.05), 3) for c in x]


class _Decoder(LayerDecoder):
    def __init__(self, model: "Pyramid", height: int, width: int, side: dict):
        self.steps = model.steps
        self.shape = (model.channels, height >> LEVELS, width >> LEVELS)
        scales = side.get("scales")
        if not (isinstance(scales, list) and len(scales) == LEVELS + 1
                and all(isinstance(s, list) and len(s) == 3 for s in scales)):
            raise ValueError("side information lacks per-layer scales")
        self.scales = torch.tensor(scales, dtype=torch.float64).clamp(0.01, 1e4)
        self.recon: torch.Tensor | None = None  # YCbCr, 0..255 units, current level

    def _step(self, k: int) -> float:
        return self.steps[k]

    def prior(self, k: int) -> list:
        if k == 0:
            scales = self.scales[0].view(3, 1, 1).expand(self.shape)
        else:
            scales = self.scales[k].view(3, 1, 1).numpy() * _activity(_up(self.recon))
        return [Gaussian(np.asarray(scales))]

    def push(self, k: int, symbols: list[np.ndarray]) -> None:
        q = torch.from_numpy(symbols[0].astype(np.float32)).unsqueeze(0)
        if k == 0:
            q = torch.cumsum(torch.cumsum(q, dim=-1), dim=-2)  # undo 2-D DPCM
            self.recon = q * self._step(0)
        else:
            self.recon = _up(self.recon) + q * self._step(k)

    def image(self) -> torch.Tensor:
        x = self.recon
        while x.shape[-1] < self.shape[-1] << LEVELS:
            x = _up(x)
        return _color(x, _YCC2RGB.to(x.dtype))[0].div(255.0)


class Pyramid(Model):
    name = "pyramid"
    version = "1"
    rates = tuple(STEPS)
    default_rate = "medium"
    channels = 3
    stride = 1 << LEVELS
    decode_bytes_per_pixel = 340  # measured 250-258 B/px (benchmarks/hostile.py --measure), +30%
    layer_names = ("thumb-1/16", "residual-1/8", "residual-1/4", "residual-1/2", "residual-1/1")
    description = "Laplacian pyramid, closed-loop quantized residuals (reference codec, no training)"

    def __init__(self, rate: str | None = None):
        super().__init__(rate)
        self.steps = STEPS[self.rate]

    def analyze(self, x: torch.Tensor) -> Analysis:
        ycc = _color(x * 255.0, _RGB2YCC)
        gauss = [ycc]
        for _ in range(LEVELS):
            gauss.append(F.avg_pool2d(gauss[-1], 2))
        side = {"scales": [[1.0] * 3 for _ in range(LEVELS + 1)]}
        state = self.decoder(x.shape[-2], x.shape[-1], side)
        q = torch.round(gauss[-1] / state._step(0))
        dpcm = torch.diff(torch.diff(q, dim=-1, prepend=torch.zeros_like(q[..., :1])), dim=-2,
                          prepend=torch.zeros_like(q[..., :1, :]))
        symbols = [[dpcm[0].numpy().astype(np.int32)]]
        side["scales"][0] = _rms(symbols[0][0])
        state.scales[0] = torch.tensor(side["scales"][0], dtype=torch.float64)
        state.push(0, symbols[0])
        for k in range(1, LEVELS + 1):
            target = gauss[LEVELS - k]
            pred = _up(state.recon)
            r = torch.round((target - pred) / state._step(k))
            sym = r[0].numpy().astype(np.int32)
            act = _activity(pred)
            side["scales"][k] = _rms(sym / act)
            state.scales[k] = torch.tensor(side["scales"][k], dtype=torch.float64)
            symbols.append([sym])
            state.push(k, [sym])
        return Analysis(symbols=symbols, side=side)

    def decoder(self, height: int, width: int, side: dict) -> LayerDecoder:
        return _Decoder(self, height, width, side)
