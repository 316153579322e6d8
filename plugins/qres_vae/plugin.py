"""The ``qres-vae`` plugin: each of the 12 latent blocks is one bitstream layer, coarsest first.

Layer k carries ``round(mu_k - mu_hat_k)`` coded with the block's prior scale (residual
rounding, paper Eq. 8). A prefix of k layers is rendered by running the remaining blocks
with their prior means (temperature 0, paper Fig. 5); the decoder keeps the top-down
feature between layers, so a full progressive decode costs one top-down pass plus one
completion per rendered layer.

The chain of latent blocks that yields the priors runs in float64: float32 convolutions sum
in an order that depends on torch's thread count, and a scale that lands on the other side of
a table boundary on the decoder is a prior mismatch (seen with 2 encoder / 1 decoder threads).
Rendering a refinement (prior-mean completion, synthesis) runs in float64 as well, so renders
are bit-identical across thread counts (float32 differed by one 8-bit level on a few pixels).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from progcodec.plugin import Analysis, Gaussian, LayerDecoder, Model

from .model import Config, QResVAE as Network

WEIGHTS = Path(__file__).with_name("weights")


class _Decoder(LayerDecoder):
    def __init__(self, top_down, render, height: int, width: int):
        self.top_down, self.render = top_down, render  # float64 copy, float32 original
        self.feature = top_down.start(height, width)
        self.k = 0
        self._prior = None  # (k, pre-activated feature, prior mean, prior scale)

    def _params(self, k: int):
        if k != self.k:
            raise ValueError(f"layer {k + 1} requested, the decoder is at layer {self.k + 1}")
        if self._prior is None:
            self._prior = self.top_down.blocks[k].prior_params(self.feature)
        return self._prior

    def prior(self, k: int) -> list:
        return [Gaussian(self._params(k)[2][0].numpy())]

    def push(self, k: int, symbols: list[np.ndarray]) -> None:
        h, mean, _ = self._params(k)
        z = mean + torch.from_numpy(symbols[0]).to(mean.dtype)[None]
        self.feature = self.top_down.advance(k, h, z)
        self.k, self._prior = k + 1, None

    def image(self) -> torch.Tensor:
        # float64 too (issue 17): float32 renders differed by one 8-bit level between 1 and 2 threads
        return ((self.top_down.complete(self.k, self.feature)[0].float() + 1) / 2).clamp(0, 1)


class QResVAE(Model):
    name = "qres-vae"
    version = "1"
    rates = ("low", "high")
    default_rate = "high"
    channels = 3
    stride = 64
    decode_bytes_per_pixel = 850  # measured 403-645 B/px (benchmarks/hostile.py --measure), +30%
    layer_names = tuple(f"z{i + 1}-1/{s}" for i, s in enumerate((64, 32, 32, 16, 16, 16, 8, 8, 8, 4, 4, 4)))
    description = "QRes-VAE (Duan et al. 2023), 12 latent blocks, scaled down"

    def __init__(self, rate: str | None = None):
        super().__init__(rate)
        path = WEIGHTS / f"{self.rate}.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: train it with python -m progcodec_plugins.qres_vae.train")
        meta = json.loads(path.with_suffix(".json").read_text())
        self.net = Network(Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}))
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path} does not fit the architecture (missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.net.eval()
        self._setup_prior_chain()
        self.lmbda = meta["lmbda"]
        self.weights_path = path

    def _setup_prior_chain(self):
        self.top_down = copy.deepcopy(self.net.decoder).double()

    def analyze(self, x: torch.Tensor) -> Analysis:
        feats = self.net.features(x)
        state = self.decoder(x.shape[-2], x.shape[-1], {})
        symbols = []
        for k in range(len(self.net.decoder.blocks)):
            h, mean, _ = state._params(k)
            # float32 is enough here: mu only picks the symbol; the decoder never recomputes it
            mu = self.net.posterior(k, h.float(), feats).double()
            r = torch.round(mu - mean)[0].numpy().astype(np.int32)
            symbols.append([r])
            state.push(k, [r])
        return Analysis(symbols=symbols)

    def decoder(self, height: int, width: int, side: dict) -> LayerDecoder:
        return _Decoder(self.top_down, self.net.decoder, height, width)
