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

    def features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Bottom-up features of a [0, 1] image, by stride."""
        return self.encoder(x * 2 - 1)

    def posterior(self, k: int, h: torch.Tensor, feats: dict) -> torch.Tensor:
        """Posterior mean of block k from its pre-activated top-down feature."""
        return self.decoder.blocks[k].posterior(torch.cat([h, feats[self.block_stride[k]]], dim=1))

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


# ---------------------------------------------------------------------------------------------
# The official lossy-vae layout (Duan et al.'s released qres34m / qres17m), written here from
# the paper and the description of their modules: checkpoints load one to one through
# ``official_key_map`` (their parameter name -> ours). Only inference is needed: no training
# pass, no noise. Numerics follow theirs: image (x + shift) * scale, timm-style ConvNeXt blocks
# (depthwise conv, LayerNorm over channels, MLP ratio 2, per-channel layer scale), VDVAE-style
# 4-conv bottleneck branches with GELU before every conv, prior log-scale softplus-bounded at
# -2.3, z = prior mean + round(posterior mean - prior mean).
# ---------------------------------------------------------------------------------------------


@dataclass
class OfficialConfig:
    """One of the official architectures. Widths are multiples of ``ch``; stages finest first
    for the encoder, coarsest first for the decoder (one latent group per decoder stride)."""

    name: str = "qres34m"
    ch: int = 96
    enc_blocks: tuple = (6, 6, 6, 4, 2)        # ConvNeXt blocks per encoder stage (stride 4 first)
    enc_kernels: tuple = (7, 7, 5, 3, 1)       # their depthwise kernel per encoder stage
    enc_mult: tuple = (2, 4, 4, 4, 4)          # stage width / ch
    enc_down: tuple = (4, 2, 2, 2, 2)          # stem rate, then each patch-down rate
    down_kernel: int = 7                       # kernel of the ConvNeXt inside each patch-down
    latents: tuple = (1, 2, 3, 3, 3)           # latent blocks per decoder stride (coarsest first)
    dec_kernels: tuple = (1, 3, 5, 7, 7)
    dec_mult: tuple = (4, 4, 4, 4, 2)
    z_channels: tuple = (16, 14, 12, 10, 8)
    ups: tuple = ("shuffle2", "shuffle2", "shuffle2", "shuffle2")  # between decoder groups
    final_up: int = 4                          # pixel-shuffle rate of the output conv
    im_shift: float = -0.4546259594901961      # their ImageNet statistics
    im_scale: float = 3.67572653978347
    mlp_ratio: int = 2

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "OfficialConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @property
    def enc_strides(self) -> list[int]:
        out, s = [], 1
        for r in self.enc_down:
            s *= r
            out.append(s)
        return out

    @property
    def dec_strides(self) -> list[int]:
        out, s = [], self.enc_strides[-1]
        for i in range(len(self.latents)):
            out.append(s)
            if i < len(self.ups):
                s //= _up_rate(self.ups[i])
        return out


def _up_rate(kind: str) -> int:
    return 2 if kind.startswith("deconv") else int(kind.removeprefix("shuffle").removeprefix("nearest"))


def official_preset(name: str, ch: int | None = None) -> OfficialConfig:
    """``qres34m`` (Kodak-class photos) or ``qres17m`` (CelebA 64x64), optionally at another ``ch``."""
    if name == "qres34m":
        c = OfficialConfig()
    elif name == "qres17m":
        c = OfficialConfig(name="qres17m", ch=72, enc_blocks=(6, 6, 4, 2), enc_kernels=(7, 5, 3, 1),
                           enc_mult=(2, 4, 4, 4), enc_down=(4, 2, 2, 4), latents=(1, 2, 4, 5),
                           dec_kernels=(1, 3, 5, 7), dec_mult=(4, 4, 4, 2), z_channels=(16, 8, 6, 4),
                           ups=("nearest4", "deconv3", "deconv5"), im_shift=-0.4356,
                           im_scale=3.397893306150187)
    else:
        raise ValueError(f"unknown official architecture {name!r} (qres34m or qres17m)")
    if ch is not None:
        c.ch = int(ch)
    return c


class LNConvNeXt(nn.Module):
    """timm-style ConvNeXt block: depthwise conv, LayerNorm over channels (eps 1e-6), Linear
    MLP with GELU, per-channel layer scale, residual."""

    def __init__(self, dim: int, kernel: int, mlp_ratio: int = 2):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + y * self.gamma.view(1, -1, 1, 1)


class PatchDown(nn.Module):
    """A ConvNeXt block at the finer stride, then a rate x rate patch-embedding conv."""

    def __init__(self, cin: int, cout: int, rate: int, kernel: int, mlp_ratio: int):
        super().__init__()
        self.block = LNConvNeXt(cin, kernel, mlp_ratio)
        self.down = nn.Conv2d(cin, cout, rate, stride=rate)

    def forward(self, x):
        return self.down(self.block(x))


class Bottleneck(nn.Module):
    """Four convs (1x1, kxk, kxk, 1x1; k = 3, or 1 at 1x1 kernels), GELU before each, no residual."""

    def __init__(self, cin: int, hidden: int, cout: int, k3: bool):
        super().__init__()
        k = 3 if k3 else 1
        self.c1 = nn.Conv2d(cin, hidden, 1)
        self.c2 = nn.Conv2d(hidden, hidden, k, padding=k // 2)
        self.c3 = nn.Conv2d(hidden, hidden, k, padding=k // 2)
        self.c4 = nn.Conv2d(hidden, cout, 1)

    def forward(self, x):
        for conv in (self.c1, self.c2, self.c3, self.c4):
            x = conv(F.gelu(x))
        return x


class OfficialLatentBlock(nn.Module):
    """Their latent block: ConvNeXt, prior branch (mean, log-scale >= -2.3 via softplus),
    posterior branch from [feature, encoder feature], z projected back, ConvNeXt."""

    def __init__(self, width: int, zc: int, kernel: int, mlp_ratio: int):
        super().__init__()
        hidden = width // 4
        k3 = kernel >= 3
        self.resnet_front = LNConvNeXt(width, kernel, mlp_ratio)
        self.resnet_end = LNConvNeXt(width, kernel, mlp_ratio)
        self.posterior = Bottleneck(2 * width, hidden, zc, k3)
        self.prior = Bottleneck(width, hidden, 2 * zc, k3)
        k = 3 if k3 else 1
        self.z_in = nn.Conv2d(zc, hidden // 2, k, padding=k // 2)
        self.z_out = nn.Conv2d(hidden // 2, width, 1)

    def prior_params(self, feature):
        h = self.resnet_front(feature)
        mean, log_scale = self.prior(h).chunk(2, dim=1)
        return h, mean, torch.exp(F.softplus(log_scale + 2.3) - 2.3)

    def merge(self, h, z):
        return self.resnet_end(h + self.z_out(F.gelu(self.z_in(z))))


def _upsampler(kind: str, cin: int, cout: int) -> nn.Module:
    if kind.startswith("shuffle"):
        r = int(kind.removeprefix("shuffle"))
        return nn.Sequential(nn.Conv2d(cin, cout * r * r, 1), nn.PixelShuffle(r))
    if kind.startswith("nearest"):
        if cin != cout:
            raise ValueError("a nearest-neighbour upsampler keeps the width")
        return nn.Upsample(scale_factor=int(kind.removeprefix("nearest")), mode="nearest")
    if kind.startswith("deconv"):
        k = int(kind.removeprefix("deconv"))
        return nn.ConvTranspose2d(cin, cout, k, stride=2, padding=k // 2, output_padding=1)
    raise ValueError(f"unknown upsampler {kind!r}")


class OfficialEncoder(nn.Module):
    """Image (already shifted and scaled) -> {stride: feature} (the last feature at each stride)."""

    def __init__(self, c: OfficialConfig):
        super().__init__()
        w = [m * c.ch for m in c.enc_mult]
        layers: list[nn.Module] = [nn.Conv2d(3, w[0], c.enc_down[0], stride=c.enc_down[0])]
        self.layer_stride = [c.enc_strides[0]]
        for i, n in enumerate(c.enc_blocks):
            if i > 0:
                layers.append(PatchDown(w[i - 1], w[i], c.enc_down[i], c.down_kernel, c.mlp_ratio))
                self.layer_stride.append(c.enc_strides[i])
            for _ in range(n):
                layers.append(LNConvNeXt(w[i], c.enc_kernels[i], c.mlp_ratio))
                self.layer_stride.append(c.enc_strides[i])
        self.layers = nn.ModuleList(layers)

    def forward(self, x) -> dict[int, torch.Tensor]:
        feats = {}
        for stride, layer in zip(self.layer_stride, self.layers):
            x = layer(x)
            feats[stride] = x
        return feats


class OfficialTopDown(nn.Module):
    """Learned constant -> latent blocks (coarsest first) with upsamplers between strides ->
    image in [-1, 1] (before clamping). Same stepping interface as :class:`TopDown`."""

    def __init__(self, c: OfficialConfig):
        super().__init__()
        self.c = c
        w = [m * c.ch for m in c.dec_mult]
        self.const = nn.Parameter(torch.zeros(1, w[0], 1, 1))
        self.blocks = nn.ModuleList()
        self.group_end = []
        for g, n in enumerate(c.latents):
            for i in range(n):
                self.blocks.append(OfficialLatentBlock(w[g], c.z_channels[g], c.dec_kernels[g], c.mlp_ratio))
                self.group_end.append(g if i == n - 1 else -1)
        self.ups = nn.ModuleList(_upsampler(k, w[g], w[g + 1]) for g, k in enumerate(c.ups))
        self.final = _upsampler(f"shuffle{c.final_up}", w[-1], 3)
        self.top = c.enc_strides[-1]

    def start(self, height: int, width: int) -> torch.Tensor:
        return self.const.expand(1, -1, height // self.top, width // self.top)

    def advance(self, k: int, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        feature = self.blocks[k].merge(h, z)
        g = self.group_end[k]
        return self.ups[g](feature) if 0 <= g < len(self.ups) else feature

    def complete(self, k: int, feature: torch.Tensor) -> torch.Tensor:
        for j in range(k, len(self.blocks)):
            h, mean, _ = self.blocks[j].prior_params(feature)
            feature = self.advance(j, h, mean)
        return self.final(feature)


class OfficialQResVAE(nn.Module):
    """Inference-only port of the official model; ``features``/``posterior`` as in :class:`QResVAE`."""

    def __init__(self, c: OfficialConfig):
        super().__init__()
        self.c = c
        self.encoder = OfficialEncoder(c)
        self.decoder = OfficialTopDown(c)
        self.block_stride = [s for s, n in zip(c.dec_strides, c.latents) for _ in range(n)]
        enc_w = dict(zip(c.enc_strides, (m * c.ch for m in c.enc_mult)))
        for g, s in enumerate(c.dec_strides):
            if enc_w.get(s) != c.dec_mult[g] * c.ch:
                raise ValueError(f"decoder stride {s} has no encoder feature of width {c.dec_mult[g] * c.ch}")

    def features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        return self.encoder((x + self.c.im_shift) * self.c.im_scale)

    def posterior(self, k: int, h: torch.Tensor, feats: dict) -> torch.Tensor:
        return self.decoder.blocks[k].posterior(torch.cat([h, feats[self.block_stride[k]]], dim=1))


def official_key_map(c: OfficialConfig) -> dict[str, str]:
    """Every parameter of the official state dict (their name -> ours), built from the config."""
    m: dict[str, str] = {}

    def convnext(theirs: str, ours: str):
        for a, b in (("conv_dw.weight", "conv_dw.weight"), ("conv_dw.bias", "conv_dw.bias"),
                     ("norm.weight", "norm.weight"), ("norm.bias", "norm.bias"),
                     ("mlp.fc1.weight", "fc1.weight"), ("mlp.fc1.bias", "fc1.bias"),
                     ("mlp.fc2.weight", "fc2.weight"), ("mlp.fc2.bias", "fc2.bias"), ("gamma", "gamma")):
            m[f"{theirs}.{a}"] = f"{ours}.{b}"

    def conv(theirs: str, ours: str):
        m[f"{theirs}.weight"], m[f"{theirs}.bias"] = f"{ours}.weight", f"{ours}.bias"

    i = 0
    conv("encoder.enc_blocks.0", "encoder.layers.0")
    for s, n in enumerate(c.enc_blocks):
        if s > 0:
            i += 1
            convnext(f"encoder.enc_blocks.{i}", f"encoder.layers.{i}.block")
            conv(f"encoder.enc_blocks.{i}.downsapmle", f"encoder.layers.{i}.down")
        for _ in range(n):
            i += 1
            convnext(f"encoder.enc_blocks.{i}", f"encoder.layers.{i}")
    m["decoder.bias"] = "decoder.const"
    i, k = 0, 0
    for g, n in enumerate(c.latents):
        for _ in range(n):
            t, o = f"decoder.dec_blocks.{i}", f"decoder.blocks.{k}"
            convnext(f"{t}.resnet_front", f"{o}.resnet_front")
            convnext(f"{t}.resnet_end", f"{o}.resnet_end")
            for branch in ("posterior", "prior"):
                for j in (1, 2, 3, 4):
                    conv(f"{t}.{branch}.c{j}", f"{o}.{branch}.c{j}")
            conv(f"{t}.z_proj.0", f"{o}.z_in")
            conv(f"{t}.z_proj.2", f"{o}.z_out")
            i, k = i + 1, k + 1
        if g < len(c.ups):
            kind = c.ups[g]
            if kind.startswith("shuffle"):
                conv(f"decoder.dec_blocks.{i}.0", f"decoder.ups.{g}.0")
            elif kind.startswith("deconv"):
                conv(f"decoder.dec_blocks.{i}", f"decoder.ups.{g}")
            i += 1
    conv(f"decoder.dec_blocks.{i}.0", "decoder.final.0")
    return m
