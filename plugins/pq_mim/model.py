"""PQ-VAE (conv encoder/decoder + product quantizer) and the MIM entropy model (PQ-MIM Sec. 3).

Scaled down from the paper's XCiT-L6 autoencoder and XCiT-L12 MIM to run on a CPU:
a convolutional encoder/decoder with downsampling ``f``, ``M`` sub-quantizers of ``V`` codes
each (look-up in ``lookup_dim`` dimensions with l2 normalisation, Sec. 4.1), and a small
XCiT-style MIM (cross-covariance attention + local patch interaction) that predicts ``M``
categorical distributions for every masked token.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    f: int = 8              # downsampling factor (pixels per token side)
    M: int = 4              # sub-vectors per token
    V: int = 64             # codes per sub-quantizer
    lookup_dim: int = 8     # per sub-vector look-up dimension (l2-normalised)
    latent: int = 128       # encoder/decoder channels at token resolution
    widths: tuple = (48, 96)  # conv widths at 1/2 and 1/4 resolution
    mim_dim: int = 96
    mim_depth: int = 3
    mim_heads: int = 4
    mim_mlp: int = 2        # MLP expansion ratio

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        d = json.loads(text)
        d["widths"] = tuple(d["widths"])
        return cls(**d)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.GELU(), nn.Conv2d(ch, ch, 3, padding=1), nn.GELU(), nn.Conv2d(ch, ch, 1))

    def forward(self, x):
        return x + self.body(x)


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), ResBlock(cout))


def _up(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(ResBlock(cin), nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2))


class ProductQuantizer(nn.Module):
    """Split a token into M sub-vectors; each is projected to ``lookup_dim``, l2-normalised and
    snapped to the nearest of V normalised codes, then projected back (straight-through)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.M, self.V, sub = cfg.M, cfg.V, cfg.latent // cfg.M
        self.proj_in = nn.Conv2d(cfg.latent, cfg.M * cfg.lookup_dim, 1, groups=cfg.M)
        self.proj_out = nn.Conv2d(cfg.M * cfg.lookup_dim, cfg.latent, 1, groups=cfg.M)
        self.codebook = nn.Parameter(torch.randn(cfg.M, cfg.V, cfg.lookup_dim))
        self.sub = sub

    def lookup(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised look-up vectors ``(B, M, D, h, w)`` of encoder features."""
        b, _, h, w = y.shape
        return F.normalize(self.proj_in(y).view(b, self.M, -1, h, w), dim=2)

    def codes(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=-1)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code per sub-vector: ``(B, h, w, M)`` int64."""
        sim = torch.einsum("bmdhw,mvd->bhwmv", z, self.codes())
        return sim.argmax(-1)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Decoder input ``(B, latent, h, w)`` from indices ``(B, h, w, M)``."""
        e = self.codes()[torch.arange(self.M), idx]  # (B, h, w, M, D)
        b, h, w = idx.shape[:3]
        return self.proj_out(e.permute(0, 3, 4, 1, 2).reshape(b, -1, h, w))

    def forward(self, y: torch.Tensor):
        """Straight-through quantization; returns (decoder input, indices, PQ loss)."""
        z = self.lookup(y)
        idx = self.indices(z)
        e = self.codes()[torch.arange(self.M), idx].permute(0, 3, 4, 1, 2)  # (B, M, D, h, w)
        loss = F.mse_loss(e, z.detach()) + 0.25 * F.mse_loss(z, e.detach())  # codebook + commitment
        q = z + (e - z).detach()
        b, _, _, h, w = q.shape
        return self.proj_out(q.reshape(b, -1, h, w)), idx, loss


class PQVAE(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        w1, w2 = cfg.widths
        assert cfg.f == 8, "the conv stack downsamples by 8"
        self.encoder = nn.Sequential(_down(3, w1), _down(w1, w2), _down(w2, cfg.latent), ResBlock(cfg.latent))
        self.quantizer = ProductQuantizer(cfg)
        self.decoder = nn.Sequential(nn.Conv2d(cfg.latent, cfg.latent, 3, padding=1), ResBlock(cfg.latent),
                                     _up(cfg.latent, w2), _up(w2, w1), _up(w1, w1), nn.GELU(),
                                     nn.Conv2d(w1, 3, 3, padding=1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Token indices ``(B, h, w, M)`` of images in [0, 1]."""
        return self.quantizer.indices(self.quantizer.lookup(self.encoder(x - 0.5)))

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.embed(idx)) + 0.5

    def forward(self, x: torch.Tensor):
        q, idx, pq_loss = self.quantizer(self.encoder(x - 0.5))
        return self.decoder(q) + 0.5, idx, pq_loss


class XCA(nn.Module):
    """Cross-covariance attention (XCiT): heads attend over channels, so cost is linear in tokens."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))

    def forward(self, x):  # (B, N, C)
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 4, 1)  # (B, h, d, N)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(-1)  # (B, h, d, d)
        return self.proj((attn @ v).permute(0, 3, 1, 2).reshape(b, n, c))


class Block(nn.Module):
    """XCiT block: XCA, local patch interaction (two depthwise 3x3 convs), MLP; all pre-norm."""

    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.n1, self.n2, self.n3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.xca = XCA(dim, heads)
        self.lpi = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.GELU(),
                                 nn.Conv2d(dim, dim, 3, padding=1, groups=dim))
        self.mlp = nn.Sequential(nn.Linear(dim, mlp * dim), nn.GELU(), nn.Linear(mlp * dim, dim))

    def forward(self, x, h: int, w: int):
        b, n, c = x.shape
        x = x + self.xca(self.n1(x))
        x = x + self.lpi(self.n2(x).transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return x + self.mlp(self.n3(x))


class MIM(nn.Module):
    """Masked image model over PQ tokens: M index embeddings summed per visible token, a learned
    mask embedding elsewhere; M linear heads give the sub-index logits of every token.
    Positions enter only through the convolutions (relative), so any grid size works."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.M, self.V = cfg.M, cfg.V
        self.embed = nn.Embedding(cfg.M * cfg.V, cfg.mim_dim)
        self.mask = nn.Parameter(torch.zeros(cfg.mim_dim))
        self.pos = nn.Conv2d(cfg.mim_dim, cfg.mim_dim, 3, padding=1, groups=cfg.mim_dim)
        self.blocks = nn.ModuleList(Block(cfg.mim_dim, cfg.mim_heads, cfg.mim_mlp) for _ in range(cfg.mim_depth))
        self.norm = nn.LayerNorm(cfg.mim_dim)
        self.heads = nn.Linear(cfg.mim_dim, cfg.M * cfg.V)

    def forward(self, idx: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, h, w, M, V)`` from indices ``(B, h, w, M)`` and a visibility mask ``(B, h, w)``."""
        b, h, w, m = idx.shape
        offset = torch.arange(m, device=idx.device) * self.V
        x = self.embed(idx + offset).sum(-2)
        x = torch.where(known[..., None], x, self.mask)
        x = x.permute(0, 3, 1, 2)
        x = (x + self.pos(x)).flatten(2).transpose(1, 2)
        for blk in self.blocks:
            x = blk(x, h, w)
        return self.heads(self.norm(x)).view(b, h, w, m, self.V)
