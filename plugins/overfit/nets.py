"""The per-image networks: grid layout, upsampling, synthesis and the checkerboard entropy model.

Everything here is plain torch and runs in float32 while fitting. The decoder evaluates the
entropy model in float64 on integer latents with power-of-two-quantized weights, where every
intermediate value is an exact dyadic number, so its output does not depend on summation
order or thread count (``exact_arm``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

GRIDS = 7          # latent grids at 1/1 .. 1/64 of the image size
PARENT = 9         # 3x3 window of the (upsampled) coarser grid
NEIGH = 4          # N, W, E, S neighbours in the same grid (pass B only)
ACT_BITS = 8       # hidden activations of the exact entropy model are rounded to 2**-8


def grid_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Size of grid l (0 = full resolution): ceil(H / 2**l) x ceil(W / 2**l)."""
    return [(-(-height // (1 << l)), -(-width // (1 << l))) for l in range(GRIDS)]


def _up2_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    near = x * 0.75
    out = torch.stack([near + prev * 0.25, near + nxt * 0.25], dim + 1 if dim >= 0 else dim)
    return out.flatten(dim, dim + 1) if dim >= 0 else out.flatten(dim - 1, dim)


def upsample2(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """2x bilinear upsampling of a (B, C, h, w) grid, cropped to ``size`` (exact on dyadics)."""
    x = _up2_axis(_up2_axis(x, 2), 3)
    return x[..., : size[0], : size[1]]


class GridIndex:
    """Gather indices of one h x w grid's checkerboard contexts.

    Contexts are read from two flat vectors: the coarser grid upsampled to h x w and padded by
    one (replicate), and this grid padded by one (zeros), both (h + 2) * (w + 2) long.
    ``a_par`` (Na, 9) / ``b_par`` (Nb, 9): 3x3 parent windows of anchors / non-anchors;
    ``b_nb`` (Nb, 4): N, W, E, S neighbours of non-anchors (all anchors); ``a_self`` /
    ``b_self``: positions in the flat grid.
    """

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        i, j = i.reshape(-1), j.reshape(-1)
        anchor = (i + j) % 2 == 0
        wp = w + 2
        win = torch.tensor([di * wp + dj for di in range(3) for dj in range(3)])
        nb = torch.tensor([0 * wp + 1, 1 * wp + 0, 1 * wp + 2, 2 * wp + 1])
        corner = i * wp + j  # top-left of the 3x3 window in padded coordinates
        self.a_self = torch.nonzero(anchor)[:, 0]
        self.b_self = torch.nonzero(~anchor)[:, 0]
        self.a_par = corner[self.a_self, None] + win
        self.b_par = corner[self.b_self, None] + win
        self.b_nb = corner[self.b_self, None] + nb
        self.padded = (h + 2) * wp


def padded_parent(parent: torch.Tensor | None, size: tuple[int, int], dtype=torch.float32) -> torch.Tensor:
    """Flat (h + 2) * (w + 2) vector: the coarser grid upsampled to ``size``, replicate-padded."""
    h, w = size
    if parent is None:
        return torch.zeros((h + 2) * (w + 2), dtype=dtype)
    return F.pad(upsample2(parent, size), (1, 1, 1, 1), mode="replicate").reshape(-1)


def padded_grid(grid: torch.Tensor) -> torch.Tensor:
    """Flat (h + 2) * (w + 2) vector of a (1, 1, h, w) grid, zero-padded."""
    return F.pad(grid, (1, 1, 1, 1)).reshape(-1)


class MLP(nn.Module):
    """in -> hidden -> hidden -> 2 (mean, log-scale), ReLU between."""

    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(inputs, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 2)])
        with torch.no_grad():
            self.layers[-1].weight.mul_(0.1)
            self.layers[-1].bias.copy_(torch.tensor([0.0, 0.0]))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            f = layer(f)
            if i < len(self.layers) - 1:
                f = F.relu(f)
        return f


class EntropyModel(nn.Module):
    """Checkerboard context model: pass A (anchors) sees the coarser grid, pass B also the
    four anchor neighbours. Shared by all grids."""

    def __init__(self, hidden: int):
        super().__init__()
        self.a = MLP(PARENT, hidden)
        self.b = MLP(PARENT + NEIGH, hidden)


class Synthesis(nn.Module):
    """Upsampled grids (7 channels) -> 1x1 MLP -> RGB, then two 3x3 residual convolutions."""

    def __init__(self, hidden: int, channels: int = 3):
        super().__init__()
        self.c1 = nn.Conv2d(GRIDS, hidden, 1)
        self.c2 = nn.Conv2d(hidden, channels, 1)
        self.r1 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="replicate")
        self.r2 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="replicate")
        with torch.no_grad():
            for r in (self.r1, self.r2):
                r.weight.mul_(0.01)
                r.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.c2(F.relu(self.c1(z)))
        x = x + self.r2(F.relu(self.r1(x)))
        return x + 0.5


def upsample_grids(grids: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """(1, GRIDS, H, W): every grid brought to full size (bilinear) and stacked, finest first."""
    out = [grids[0]]
    for g in grids[1:]:
        out.append(F.interpolate(g, size=size, mode="bilinear", align_corners=False))
    return torch.cat(out, 1)


def gaussian_bits(y: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(y) under a Gaussian(mu, scale) integrated over [y - 1/2, y + 1/2]."""
    scale = torch.exp(log_scale.clamp(math.log(0.11), math.log(64.0)))
    d = (y - mu).abs()
    c = 1 / (scale * math.sqrt(2))
    p = 0.5 * (torch.erfc((d - 0.5) * c) - torch.erfc((d + 0.5) * c))
    return -torch.log2(p.clamp_min(1e-9))
