"""Two-level VQ-VAE (VQ-VAE-2 style) with a conditional prior for the bottom codes.

    x --enc_bottom--> h (1/4) --enc_top--> z_top (1/16) --VQ--> top codes
    top codes --dec_top--> t (1/4 features, the decoder's view of the top layer)
    [h, t] --1x1--> z_bot (1/4) --VQ--> bottom codes
    [e_bot, t] --dec--> x_hat

The bottom codes are entropy-coded with ``prior(t)``: per-position logits over the bottom
codebook, computed from the top layer only (no autoregression inside a layer).
``preview(t)`` renders an image from the top layer alone (the progressive first step).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULTS = dict(width=64, dim=32, k_top=256, k_bot=256, prior_width=64)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 1))

    def forward(self, x):
        return x + self.body(x)


def down2(cin: int, cout: int) -> nn.Module:
    return nn.Conv2d(cin, cout, 4, stride=2, padding=1)


def up2(cin: int, cout: int) -> nn.Module:
    return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)


class VectorQuantizer(nn.Module):
    """Nearest-neighbour VQ with an EMA codebook (no codebook loss) and dead-code restarts."""

    def __init__(self, k: int, dim: int, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("embed", torch.randn(k, dim) * 0.1)
        # Every code starts "dead", so the first training batch re-initialises the codebook
        # from encoder outputs (a data-dependent init).
        self.register_buffer("ema_count", torch.zeros(k))
        self.register_buffer("ema_sum", torch.zeros(k, dim))

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) -> (B, H, W) int64 index of the nearest code."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed.t() + self.embed.pow(2).sum(1)
        return d.argmin(1).view(z.shape[0], *z.shape[2:])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, H, W) indices -> (B, D, H, W) code vectors."""
        return self.embed[idx].permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor):
        """Quantize with a straight-through gradient; update the codebook when training."""
        idx = self.indices(z)
        q = self.lookup(idx)
        if self.training:
            self._ema_update(z.detach(), idx)
        commit = F.mse_loss(z, q.detach())
        return z + (q - z).detach(), idx, commit

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, idx: torch.Tensor):
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        onehot = F.one_hot(idx.view(-1), self.embed.shape[0]).type_as(flat)
        self.ema_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        self.embed.copy_(self.ema_sum / self.ema_count.clamp(min=1e-5).unsqueeze(1))
        # Restart codes that are (almost) never chosen on random encoder outputs of this batch,
        # so the whole codebook stays in use.
        # A restarted code gets a small count, so it is restarted again within ~70 steps if
        # it still wins no vectors.
        mean = self.ema_count.mean()
        dead = self.ema_count < 0.1 * mean
        if dead.any():
            pick = flat[torch.randint(0, flat.shape[0], (int(dead.sum()),), device=flat.device)]
            self.embed[dead] = pick
            self.ema_count[dead] = 0.2 * mean
            self.ema_sum[dead] = pick * 0.2 * mean


class VQVAE2(nn.Module):
    """The autoencoder with its top-only preview, plus the bottom-code prior (trained afterwards)."""

    def __init__(self, width=64, dim=32, k_top=256, k_bot=256, prior_width=64):
        super().__init__()
        w = width
        self.enc_bottom = nn.Sequential(down2(3, w), nn.ReLU(), down2(w, w), ResBlock(w), ResBlock(w))
        self.enc_top = nn.Sequential(down2(w, w), nn.ReLU(), down2(w, w), ResBlock(w), nn.ReLU(), nn.Conv2d(w, dim, 1))
        self.dec_top = nn.Sequential(nn.Conv2d(dim, w, 3, padding=1), ResBlock(w), nn.ReLU(), up2(w, w), nn.ReLU(),
                                     up2(w, w))
        self.pre_bot = nn.Conv2d(2 * w, dim, 1)
        self.dec = nn.Sequential(nn.Conv2d(dim + w, w, 3, padding=1), ResBlock(w), ResBlock(w), nn.ReLU(),
                                 up2(w, w), nn.ReLU(), up2(w, 3))
        self.vq_top = VectorQuantizer(k_top, dim)
        self.vq_bot = VectorQuantizer(k_bot, dim)
        p = prior_width
        self.prior = nn.Sequential(nn.Conv2d(w, p, 3, padding=1), nn.ReLU(), nn.Conv2d(p, p, 3, padding=1),
                                   nn.ReLU(), nn.Conv2d(p, p, 3, padding=1), nn.ReLU(), nn.Conv2d(p, k_bot, 1))
        # Layer-1 preview: the image from the top features alone.
        self.preview = nn.Sequential(nn.Conv2d(w, w, 3, padding=1), ResBlock(w), nn.ReLU(), up2(w, w), nn.ReLU(),
                                     up2(w, 3))
        # Code histograms (+1 smoothing), filled after training: the top layer's prior, and the
        # marginal baseline that the learned bottom prior is measured against.
        self.register_buffer("hist_top", torch.ones(k_top))
        self.register_buffer("hist_bot", torch.ones(k_bot))

    def encode(self, x: torch.Tensor):
        """Image in [0, 1] -> (top indices at 1/16, bottom indices at 1/4)."""
        h = self.enc_bottom(x - 0.5)
        top = self.vq_top.indices(self.enc_top(h))
        t = self.dec_top(self.vq_top.lookup(top))
        bot = self.vq_bot.indices(self.pre_bot(torch.cat([h, t], 1)))
        return top, bot

    def decode(self, e_bot: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Bottom code vectors and top features (both at 1/4) -> image (unclamped)."""
        return self.dec(torch.cat([e_bot, t], 1)) + 0.5

    def forward(self, x: torch.Tensor):
        """Training pass: reconstruction, top-only preview, commitment loss, both index maps."""
        h = self.enc_bottom(x - 0.5)
        q_top, top, c_top = self.vq_top(self.enc_top(h))
        t = self.dec_top(q_top)
        q_bot, bot, c_bot = self.vq_bot(self.pre_bot(torch.cat([h, t], 1)))
        return self.decode(q_bot, t), self.preview(t) + 0.5, c_top + c_bot, top, bot
