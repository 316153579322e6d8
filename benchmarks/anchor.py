"""Speed anchor: the bmshj2018-hyperprior architecture (Ballé et al. 2018, CompressAI's
``bmshj2018-hyperprior``, N=128, M=192), written here from the paper because CompressAI
does not install beside our torch. Runtime does not depend on the weights, so random
weights time it faithfully; the entropy coding goes through progcodec's coder.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from progcodec import entropy


class GDN(nn.Module):
    """Generalized divisive normalization (inverse=True: IGDN)."""

    def __init__(self, ch: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(ch))
        self.gamma = nn.Parameter(0.1 * torch.eye(ch).view(ch, ch, 1, 1))

    def forward(self, x):
        norm = torch.sqrt(nn.functional.conv2d(x * x, self.gamma.abs(), self.beta.abs()))
        return x * norm if self.inverse else x / norm


def conv(i, o, k=5, s=2):
    return nn.Conv2d(i, o, k, s, k // 2)


def deconv(i, o, k=5, s=2):
    return nn.ConvTranspose2d(i, o, k, s, k // 2, output_padding=s - 1)


class Hyperprior(nn.Module):
    def __init__(self, n: int = 128, m: int = 192):
        super().__init__()
        self.g_a = nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))
        self.g_s = nn.Sequential(deconv(m, n), GDN(n, True), deconv(n, n), GDN(n, True), deconv(n, n),
                                 GDN(n, True), deconv(n, 3))
        self.h_a = nn.Sequential(conv(m, n, 3, 1), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))
        self.h_s = nn.Sequential(deconv(n, n), nn.ReLU(), deconv(n, n), nn.ReLU(), conv(n, m, 3, 1), nn.ReLU())

    @torch.inference_mode()
    def compress(self, x):
        y = self.g_a(x)
        z = torch.round(self.h_a(y.abs()))
        scales = self.h_s(z)
        zs = z[0].numpy().astype(np.int32)
        yq = torch.round(y)[0].numpy().astype(np.int32)
        z_bytes, _ = entropy.encode_layer([zs], [entropy.Gaussian(np.full(zs.shape, 2.0))])
        y_bytes, _ = entropy.encode_layer([yq], [entropy.Gaussian(scales[0].numpy())])
        return z_bytes, y_bytes, zs.shape

    @torch.inference_mode()
    def decompress(self, z_bytes, y_bytes, z_shape):
        (zs,) = entropy.decode_layer(z_bytes, [entropy.Gaussian(np.full(z_shape, 2.0))])
        scales = self.h_s(torch.from_numpy(zs).float()[None])
        (yq,) = entropy.decode_layer(y_bytes, [entropy.Gaussian(scales[0].numpy())])
        return self.g_s(torch.from_numpy(yq).float()[None]).clamp(0, 1)
