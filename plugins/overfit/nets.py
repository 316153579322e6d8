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
NEIGH = 4          # N, W, E, S neighbours in the same grid (pass b only)
NEIGHBOURS = ((0, 1), (1, 0), (1, 2), (2, 1))  # their offsets in the grid padded by one
ACT_BITS = 8       # hidden activations of the exact entropy model are rounded to 2**-8


# the layers' coding steps: ("nets",) then (grid, pass) pairs, coarsest grid first
PLAN = ([("nets",), (6, "a"), (6, "b"), (5, "a"), (5, "b")],) + tuple([(l, "a"), (l, "b")] for l in range(4, -1, -1))
# how many of the coarsest grids an image after layer k has (layer 1: grids 1/64 and 1/32)
LAYER_KEEP = tuple(GRIDS - min(item[0] for plan in PLAN[: k + 1] for item in plan if item != ("nets",))
                   for k in range(len(PLAN)))


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


# checkerboard sub-lattices as (row start, col start) of stride-2 slices: anchors ((i + j)
# even) first, then the rest; a pass's symbols are its sub-lattices flattened in this order
LATTICES = {"a": ((0, 0), (1, 1)), "b": ((0, 1), (1, 0))}


def pass_count(h: int, w: int, p: str) -> int:
    """How many latents of an h x w grid pass ``p`` codes."""
    return sum(-(-(h - i) // 2) * -(-(w - j) // 2) for i, j in LATTICES[p])


def take(dense: torch.Tensor, p: str) -> torch.Tensor:
    """(C, N): the values of a (C, h, w) map at the positions of pass ``p``, in coding order."""
    return torch.cat([dense[:, i::2, j::2].reshape(dense.shape[0], -1) for i, j in LATTICES[p]], 1)


def put(grid: torch.Tensor, values: torch.Tensor, p: str) -> None:
    """Write a pass's values (N,) into a (h, w) grid, in place (inverse of ``take``)."""
    at = 0
    for i, j in LATTICES[p]:
        view = grid[i::2, j::2]
        view.copy_(values[at : at + view.numel()].view(view.shape))
        at += view.numel()


def context(parent: torch.Tensor | None, grid: torch.Tensor, p: str) -> torch.Tensor:
    """(9 or 13, N) context features of pass ``p`` of a (h, w) grid.

    Pass ``a`` (anchors): the 3x3 window of the coarser grid upsampled 2x (replicate-padded);
    pass ``b``: also the N, W, E, S neighbours in the grid itself (all anchors; zero outside).
    Each feature row is a stride-2 slice of the padded map per sub-lattice: no gathers, no
    dense windows. Exact on dyadic inputs.
    """
    h, w = grid.shape
    subs = LATTICES[p]
    sizes = [(-(-(h - i) // 2), -(-(w - j) // 2)) for i, j in subs]
    rows = PARENT + (NEIGH if p == "b" else 0)
    out = grid.new_zeros((rows, sum(a * b for a, b in sizes)))
    up = None if parent is None else F.pad(upsample2(parent[None, None], (h, w)), (1, 1, 1, 1), mode="replicate")[0, 0]
    g = F.pad(grid[None, None], (1, 1, 1, 1))[0, 0] if p == "b" else None
    at = 0
    for (i, j), (hs, ws) in zip(subs, sizes):
        cols = out[:, at : at + hs * ws].view(rows, hs, ws)
        if up is not None:
            for k in range(PARENT):
                cols[k] = up[i + k // 3 :: 2, j + k % 3 :: 2][:hs, :ws]
        if g is not None:
            for k, (di, dj) in enumerate(NEIGHBOURS):
                cols[PARENT + k] = g[i + di :: 2, j + dj :: 2][:hs, :ws]
        at += hs * ws
    return out


class MLP(nn.Module):
    """in -> hidden -> hidden -> 2 (mean, log-scale), ReLU between; features channels-first."""

    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(inputs, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 2)])
        with torch.no_grad():
            self.layers[-1].weight.mul_(0.1)
            self.layers[-1].bias.zero_()

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """(inputs, N) -> (2, N)."""
        first = self.layers[0]
        return self.after_first(torch.addmm(first.bias[:, None], first.weight, f))

    def after_first(self, f: torch.Tensor) -> torch.Tensor:
        """The rest of the MLP on the first layer's outputs (hidden, N) -> (2, N)."""
        for layer in self.layers[1:]:
            f = torch.addmm(layer.bias[:, None], layer.weight, F.relu(f))
        return f


class EntropyModel(nn.Module):
    """Checkerboard context model: pass A (anchors) sees the coarser grid, pass B also the
    four anchor neighbours. Shared by all grids."""

    def __init__(self, hidden: int):
        super().__init__()
        self.a = MLP(PARENT, hidden)
        self.b = MLP(PARENT + NEIGH, hidden)


class Synthesis(nn.Module):
    """Upsampled grids (7 channels) -> per-pixel MLP -> RGB, then two 3x3 residual convolutions."""

    def __init__(self, hidden: int, channels: int = 3):
        super().__init__()
        self.c1 = nn.Conv2d(GRIDS, hidden, 1)
        self.c2 = nn.Conv2d(hidden, channels, 1)
        self.r1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.r2 = nn.Conv2d(channels, channels, 3, padding=1)
        with torch.no_grad():
            for r in (self.r1, self.r2):
                r.weight.mul_(0.01)
                r.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return synthesize([t for c in (self.c1, self.c2, self.r1, self.r2) for t in (c.weight, c.bias)], z)


def synthesize(params: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """(1, GRIDS, H, W) -> (1, C, H, W) with explicit weights (float32 fitting, float64 decoding).
    The 1x1 layers run as channels-first matrix products (faster than 1x1 convolutions)."""
    w1, b1, w2, b2, r1w, r1b, r2w, r2b = params
    h, w = z.shape[-2:]
    f = F.relu(torch.addmm(b1[:, None], w1.flatten(1), z.reshape(z.shape[1], -1)))
    x = torch.addmm(b2[:, None], w2.flatten(1), f).view(1, -1, h, w)
    x = x + F.conv2d(F.relu(F.conv2d(x, r1w, r1b, padding=1)), r2w, r2b, padding=1)
    return x + 0.5


UPSAMPLE = "bilinear"


def upsample_grids(grids: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """(1, GRIDS, H, W): every grid brought to full size (``UPSAMPLE``) and stacked, finest first."""
    out = [grids[0]]
    for g in grids[1:]:
        out.append(F.interpolate(g, size=size, mode=UPSAMPLE, align_corners=False))
    return torch.cat(out, 1)


def gaussian_bits(y: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(y) under a Gaussian(mu, scale) integrated over [y - 1/2, y + 1/2]."""
    scale = torch.exp(log_scale.clamp(math.log(0.11), math.log(64.0)))
    d = (y - mu).abs()
    c = 1 / (scale * math.sqrt(2))
    p = 0.5 * (torch.erfc((d - 0.5) * c) - torch.erfc((d + 0.5) * c))
    return -torch.log2(p.clamp_min(1e-9))
