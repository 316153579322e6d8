"""QRes-VAE networks: a ResNet-VAE with ConvNeXt blocks, uniform posteriors and
Gaussian-convolved-with-uniform priors (Duan et al. 2023, Sec. 3), at a reduced width.

The top-down path is a flat list of 12 latent blocks grouped by stride (64, 32, 16, 8, 4);
``TopDown.step`` runs one block so decoders can stop after any block and keep the state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

LOG_SCALE_MIN = math.log(0.11)  # sigma >= 0.11, the bottom of progcodec's scale table


@dataclass
class Config:
    """Architecture. Paper (qres34m): widths 384/384/384/384/192, z 16/14/12/10/8, enc 6/6/6/4/2."""

    widths: tuple = (64, 64, 64, 48, 32)        # per stride 64, 32, 16, 8, 4
    z_channels: tuple = (16, 14, 12, 10, 8)
    latents: tuple = (1, 2, 3, 3, 3)            # latent blocks per stride (12 in all)
    enc_blocks: tuple = (1, 1, 2, 2, 2)         # ConvNeXt blocks in the bottom-up path per stride
    dec_blocks: int = 1                         # ConvNeXt blocks after the last latent block
    strides: tuple = field(default=(64, 32, 16, 8, 4))

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


class ChannelNorm(nn.Module):
    """LayerNorm over channels at each pixel (ConvNeXt's), independent of the image size."""

    def __init__(self, ch: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, ch, 1, 1))

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + 1e-6) * self.weight + self.bias


class ConvNeXt(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv, LayerNorm, 1x1 expand x4, GELU, 1x1, residual."""

    def __init__(self, ch: int, out: int | None = None):
        super().__init__()
        out = out or ch
        self.dw = nn.Conv2d(ch, ch, 7, padding=3, groups=ch)
        self.norm = ChannelNorm(ch)
        self.pw1 = nn.Conv2d(ch, 4 * ch, 1)
        self.pw2 = nn.Conv2d(4 * ch, out, 1)
        self.skip = nn.Identity() if out == ch else nn.Conv2d(ch, out, 1)
        self.gamma = nn.Parameter(torch.full((1, out, 1, 1), 1e-2))

    def forward(self, x):
        return self.skip(x) + self.gamma * self.pw2(F.gelu(self.pw1(self.norm(self.dw(x)))))


def up(cin: int, cout: int) -> nn.Module:
    """Sub-pixel upsampling by 2: 1x1 conv then pixel shuffle."""
    return nn.Sequential(nn.Conv2d(cin, 4 * cout, 1), nn.PixelShuffle(2))


class BottomUp(nn.Module):
    """Image -> features at strides 4, 8, 16, 32, 64 (patch-embedding downsampling)."""

    def __init__(self, c: Config):
        super().__init__()
        w = c.widths[::-1]  # strides 4 .. 64
        blocks = c.enc_blocks[::-1]
        self.stem = nn.Conv2d(3, w[0], 4, stride=4)
        self.stages = nn.ModuleList()
        for i in range(5):
            down = nn.Identity() if i == 0 else nn.Conv2d(w[i - 1], w[i], 2, stride=2)
            self.stages.append(nn.Sequential(down, *[ConvNeXt(w[i]) for _ in range(blocks[i])]))

    def forward(self, x) -> dict[int, torch.Tensor]:
        feats, h = {}, self.stem(x)
        for stride, stage in zip((4, 8, 16, 32, 64), self.stages):
            h = stage(h)
            feats[stride] = h
        return feats


class LatentBlock(nn.Module):
    """One latent variable z_i: prior branch from the top-down feature, posterior branch from
    it and the bottom-up feature, and z merged back into the feature."""

    def __init__(self, width: int, zc: int):
        super().__init__()
        self.pre = ConvNeXt(width)
        self.prior = nn.Sequential(ConvNeXt(width), nn.Conv2d(width, 2 * zc, 1))
        self.posterior = nn.Sequential(ConvNeXt(2 * width, width), nn.Conv2d(width, zc, 1))
        self.z_proj = nn.Conv2d(zc, width, 1)
        self.post = ConvNeXt(width)

    def prior_params(self, feature):
        """(pre-activated feature, prior mean, prior scale)."""
        h = self.pre(feature)
        mean, log_scale = self.prior(h).chunk(2, dim=1)
        return h, mean, torch.exp(log_scale.clamp_min(LOG_SCALE_MIN))

    def merge(self, h, z):
        return self.post(h + self.z_proj(z))


class TopDown(nn.Module):
    """Learned constant -> 12 latent blocks (strides 64 .. 4) -> image at full resolution."""

    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.const = nn.Parameter(torch.zeros(1, c.widths[0], 1, 1))
        self.blocks = nn.ModuleList()
        self.group_end = []  # index of the stride group each block belongs to, -1 if not its last
        for g, (w, zc, n) in enumerate(zip(c.widths, c.z_channels, c.latents)):
            for i in range(n):
                self.blocks.append(LatentBlock(w, zc))
                self.group_end.append(g if i == n - 1 else -1)
        self.ups = nn.ModuleList(up(c.widths[g], c.widths[g + 1]) for g in range(4))
        self.final = nn.Sequential(*[ConvNeXt(c.widths[-1]) for _ in range(c.dec_blocks)],
                                   nn.Conv2d(c.widths[-1], 3 * 16, 1), nn.PixelShuffle(4))

    def start(self, height: int, width: int) -> torch.Tensor:
        return self.const.expand(1, -1, height // 64, width // 64)

    def advance(self, k: int, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Feature after block k given its pre-activated feature and its latent."""
        feature = self.blocks[k].merge(h, z)
        g = self.group_end[k]
        return self.ups[g](feature) if 0 <= g < 4 else feature

    def complete(self, k: int, feature: torch.Tensor) -> torch.Tensor:
        """Run blocks k.. with prior means (temperature 0) and render the image."""
        for j in range(k, len(self.blocks)):
            h, mean, _ = self.blocks[j].prior_params(feature)
            feature = self.advance(j, h, mean)
        return self.final(feature)


class QResVAE(nn.Module):
    def __init__(self, c: Config | None = None):
        super().__init__()
        self.c = c or Config()
        self.encoder = BottomUp(self.c)
        self.decoder = TopDown(self.c)
        self.block_stride = [s for s, n in zip(self.c.strides, self.c.latents) for _ in range(n)]

    def forward(self, x: torch.Tensor, quant: str = "noise"):
        """Training pass: (reconstruction, bits per block).

        ``noise`` is the paper's Eq. 7: z = mu + U(-1/2, 1/2) for the rate and the top-down path.
        ``hard`` trains what is coded: z = mean + round(mu - mean) (Eq. 8) for both, with a
        straight-through gradient, so the rate is the discretized-Gaussian mass the range
        coder spends. The noisy rate overstates it ~3x for narrow priors (a residual of 0 is
        nearly free when coded, not when noised) and the noisy path costs ~2.5 dB at test time
        (both measured on the shipped noise-trained weights). But the straight-through rate
        has no gradient inside a rounding bin, so with ``hard`` latents drift across bins
        and the rate climbs. ``mixed`` (Minnen & Singh 2020) keeps the rounded path and the
        coded bits as the value, with the noisy rate's gradient.
        """
        if quant not in ("noise", "hard", "mixed"):
            raise ValueError(f"quant must be 'noise', 'hard' or 'mixed', not {quant!r}")
        feats = self.encoder(x * 2 - 1)
        b, _, height, width = x.shape
        feature = self.decoder.const.expand(b, -1, height // 64, width // 64)
        bits = []
        for k, block in enumerate(self.decoder.blocks):
            h, mean, scale = block.prior_params(feature)
            mu = block.posterior(torch.cat([h, feats[self.block_stride[k]]], dim=1))
            if quant == "noise":
                z = mu + torch.empty_like(mu).uniform_(-0.5, 0.5)
            else:
                r = mu - mean
                z = mean + r + (torch.round(r) - r).detach()
            cost = gaussian_bits(z, mean, scale)
            if quant == "mixed":  # value: coded bits; gradient: the noisy rate's
                soft = gaussian_bits(mu + torch.empty_like(mu).uniform_(-0.5, 0.5), mean, scale)
                cost = cost.detach() + soft - soft.detach()
            bits.append(cost)
            feature = self.decoder.advance(k, h, z)
        return (self.decoder.final(feature) + 1) / 2, bits


def gaussian_bits(z, mean, scale):
    """-log2 of (Gaussian * Uniform)(z): the discretized-Gaussian mass of [z-1/2, z+1/2]."""
    d = (z - mean).abs()
    upper = torch.special.ndtr((0.5 - d) / scale)
    lower = torch.special.ndtr((-0.5 - d) / scale)
    return -torch.log2((upper - lower).clamp_min(1e-9)).sum()


def bits_per_pixel(bits, x):
    return sum(bits) / (x.shape[0] * x.shape[2] * x.shape[3])


def psnr_of(mse: float) -> float:
    return 10 * math.log10(1 / max(mse, 1e-12))
