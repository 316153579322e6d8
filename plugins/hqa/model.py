"""Hierarchical Quantized Autoencoder (Williams et al., NeurIPS 2020), small convolutional version.

Each :class:`HQALayer` is a VQ-VAE whose input is the continuous ``z_e`` of the layer below
(the image for layer 1) and halves its resolution. Its posterior over the K codes is Eq. 3,
``q(k) ∝ exp(-||z_e - e_k||^2)``; training decodes a Gumbel-softmax sample of it (Sec. 5.1)
and minimises Eq. 4 (reconstruction, -entropy, probabilistic commitment). The decoder of
layer l reconstructs ``z_e`` of layer l-1, so Eq. 3 applied to its output is a distribution
over the codes of layer l-1: the prior the codec uses for them.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Mish(), nn.Conv2d(width, width, 3, padding=1), nn.Mish(),
                                  nn.Conv2d(width, width, 1))

    def forward(self, x):
        return x + self.body(x)


class HQALayer(nn.Module):
    """One VQ-VAE of the stack: ``cin`` channels at 2h x 2w <-> ``K`` codes of ``dim`` at h x w."""

    def __init__(self, cin: int, dim: int, codes: int, width: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * cin, width, 3, padding=1),
                                     ResBlock(width), nn.Mish(), nn.Conv2d(width, dim, 1))
        self.decoder = nn.Sequential(nn.Conv2d(dim, width, 3, padding=1), ResBlock(width), nn.Mish(),
                                     nn.Conv2d(width, 4 * cin, 3, padding=1), nn.PixelShuffle(2))
        self.codebook = nn.Parameter(torch.randn(codes, dim))
        # input normalisation (fixed before training this layer); temperature and marginal weight
        # of the prior for the codes of the layer below (fitted by ``calibrate``)
        self.register_buffer("in_mean", torch.zeros(cin))
        self.register_buffer("in_std", torch.ones(cin))
        self.register_buffer("log_tau", torch.zeros(()))
        self.register_buffer("beta", torch.zeros(()))

    def norm(self, u):
        return (u - self.in_mean.view(1, -1, 1, 1)) / self.in_std.view(1, -1, 1, 1)

    def denorm(self, u):
        return u * self.in_std.view(1, -1, 1, 1) + self.in_mean.view(1, -1, 1, 1)

    def encode(self, u):
        """Continuous ``z_e`` of an (un-normalised) input."""
        return self.encoder(self.norm(u))

    def logits(self, z):
        """Eq. 3 logits ``-||z - e_k||^2``, shape (B, K, h, w)."""
        e = self.codebook
        d2 = (z * z).sum(1, keepdim=True) - 2 * torch.einsum("bdhw,kd->bkhw", z, e) + (e * e).sum(1).view(1, -1, 1, 1)
        return -d2.clamp_min(0)

    def codes(self, z):
        """Deterministic (argmax posterior = nearest code) indices, (B, h, w)."""
        return self.logits(z).argmax(1)

    def embed(self, idx):
        return self.codebook[idx].permute(0, 3, 1, 2)

    def decode(self, zq):
        """Reconstruction of this layer's (un-normalised) input from code vectors."""
        return self.denorm(self.decoder(zq))

    def code_logits_below(self, below: "HQALayer", zq, log_marginal):
        """Log-probabilities over the codes of ``below`` predicted from this layer's code vectors:
        Eq. 3 on the decoded ``z_e`` at temperature tau, times the codes' marginal to the power beta."""
        return F.log_softmax(below.logits(self.decode(zq)) / self.log_tau.exp() + self.beta * log_marginal, dim=1)

    @torch.no_grad()
    def calibrate(self, below: "HQALayer", u, log_marginal) -> float:
        """Fit ``log_tau`` and ``beta`` to minimise the bits of the layer-below codes of ``u`` (its
        ``z_e``) under the codec's prior (from this layer's hard codes); returns bits per code."""
        logits = below.logits(self.decode(self.embed(self.codes(self.encode(u)))))
        target = below.codes(u)
        best = (math.inf, 0.0, 0.0)
        for beta in torch.linspace(0.0, 1.5, 7):
            for log_tau in torch.linspace(-4.0, 8.0, 49):
                ce = F.cross_entropy(logits / log_tau.exp() + beta * log_marginal, target).item()
                best = min(best, (ce, log_tau.item(), beta.item()))
        self.log_tau.fill_(best[1])
        self.beta.fill_(best[2])
        return best[0] / math.log(2)

    def loss(self, u, tau: float, below: "HQALayer | None" = None, ce_weight: float = 0.0, commit_weight: float = 1e-3):
        """Eq. 4 on input ``u`` (+ ``ce_weight`` x cross-entropy of the layer-below codes under the
        predicted distribution, an addition to the paper's MSE target); returns (loss, stats, q)."""
        target = self.norm(u)
        z = self.encoder(target)
        logits = self.logits(z)
        logq = F.log_softmax(logits, dim=1)
        q = logq.exp()
        y = F.gumbel_softmax(logits, tau=tau, dim=1)
        rec = self.decoder(torch.einsum("bkhw,kd->bdhw", y, self.codebook))
        dim = z.shape[1]
        mse = F.mse_loss(rec, target)
        kl = ((q * logq).sum(1).mean() + math.log(q.shape[1])) / dim        # KL(q || uniform) = log K - H[q]
        commit = (q * -logits).sum(1).mean() / dim                          # E_q ||z_e - e_z||^2
        loss = mse + 1e-3 * kl + commit_weight * commit
        stats = {"mse": mse.item(), "kl": kl.item() * dim, "commit": commit.item() * dim}
        if below is not None:
            codes = below.codes(u)
            ce = F.cross_entropy(below.logits(self.denorm(rec)) / self.log_tau.exp(), codes)
            loss = loss + ce_weight * ce
            stats["bits_below"] = ce.item() / math.log(2)
        return loss, stats, q


class Hierarchy(nn.Module):
    """The stack; ``layers[0]`` is the bottom (finest) layer. ``marginals``: code counts per layer."""

    def __init__(self, channels: int, layers: int, dim: int, codes: int, widths: list[int]):
        super().__init__()
        self.layers = nn.ModuleList(HQALayer(channels if i == 0 else dim, dim, codes, widths[i]) for i in range(layers))
        self.register_buffer("marginals", torch.ones(layers, codes))

    def encode(self, x, upto: int | None = None):
        """Continuous ``z_e`` of every layer (bottom first) up to ``upto`` (exclusive)."""
        zs, u = [], x
        for layer in self.layers[:upto]:
            u = layer.encode(u)
            zs.append(u)
        return zs

    def code_map(self, x):
        """Deterministic codes of every layer, bottom first."""
        return [layer.codes(z) for layer, z in zip(self.layers, self.encode(x))]

    def log_marginal(self, level: int):
        m = self.marginals[level]
        return (m / m.sum()).log().view(1, -1, 1, 1)

    def prior_below(self, level: int, idx):
        """Log-probabilities (B, K, 2h, 2w) of the codes of ``level - 1`` given the codes of ``level``."""
        layer = self.layers[level]
        return layer.code_logits_below(self.layers[level - 1], layer.embed(idx), self.log_marginal(level - 1))

    def reconstruct(self, level: int, idx):
        """Image from the codes of ``level`` alone (Alg. 1: decode, re-quantize to the nearest
        code, decode again, down to the pixels); deterministic."""
        zq = self.layers[level].embed(idx)
        for lv in range(level, 0, -1):
            below = self.layers[lv - 1]
            zq = below.embed(below.codes(self.layers[lv].decode(zq)))
        return self.layers[0].decode(zq)
