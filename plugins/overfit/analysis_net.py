"""The analysis network: a small CNN giving a fit its starting latent grids from the image.

Encoder-only (the decoder never runs it, streams do not depend on it), opt-in
(``latent_init="analysis"``): a short fit that starts from these latents instead of zeros
ends lower on most photos (plugin README, "Starting latents"). Trained by ``train_analysis.py`` with
the warm-start networks frozen, so its latents suit the networks every fit starts from.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .nets import GRIDS

LOG_LMBDA_MID, LOG_LMBDA_SPAN = math.log(0.003), math.log(10.0)


def rate_code(lmbda: float) -> float:
    """The rate input: log lambda, 0 at rate medium, about -1 .. 1 over the named rates."""
    return (math.log(lmbda) - LOG_LMBDA_MID) / LOG_LMBDA_SPAN


class AnalysisNet(nn.Module):
    """(1, 3, H, W) image in [0, 1] and lambda -> GRIDS latent grids (1, 1, ceil(H / 2^l), ...).

    Bottom-up stride-2 convolutions give features at every grid's resolution; a top-down pass
    tells each finer grid what the coarser ones hold; a per-grid head (seeing the rate) gives
    the latents."""

    def __init__(self, ch: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(4, ch, 3, padding=1)
        self.down = nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1) for _ in range(GRIDS - 1)])
        self.merge = nn.ModuleList([nn.Conv2d(2 * ch, ch, 1) for _ in range(GRIDS - 1)])
        self.head1 = nn.ModuleList([nn.Conv2d(ch + 1, ch, 1) for _ in range(GRIDS)])
        self.head2 = nn.ModuleList([nn.Conv2d(ch, 1, 1) for _ in range(GRIDS)])

    def forward(self, x: torch.Tensor, lmbda: float) -> list[torch.Tensor]:
        t = rate_code(lmbda)
        f = F.relu(self.stem(torch.cat([x - 0.5, torch.full_like(x[:, :1], t)], 1)))
        feats = [f]
        for conv in self.down:
            f = F.relu(conv(f))
            feats.append(f)
        out = [None] * GRIDS
        up = None
        for l in range(GRIDS - 1, -1, -1):
            f = feats[l]
            if up is not None:
                up = F.interpolate(up, size=f.shape[-2:], mode="bilinear", align_corners=False)
                f = F.relu(self.merge[l](torch.cat([f, up], 1)))
            up = f
            h = F.relu(self.head1[l](torch.cat([f, torch.full_like(f[:, :1], t)], 1)))
            out[l] = self.head2[l](h)
        return out
