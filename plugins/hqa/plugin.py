"""progcodec plugins ``hqa`` (RGB photos) and ``hqa-digits`` (grayscale digits).

Bitstream layer k carries the codes of HQA layer L-k (top, coarsest first). The top codes are
coded with their empirical marginal from the training set; every lower layer with the
categorical distribution that the layer above's decoder predicts for it (Eq. 3 on the
predicted ``z_e``, with a fitted temperature). ``image()`` decodes the most recent layer's
codes alone down through the decoders below (nearest-code re-quantization, Alg. 1).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from progcodec import errors
from progcodec.plugin import Analysis, Categorical, LayerDecoder, Model

from .model import Hierarchy

WEIGHTS = Path(__file__).parent / "weights"


def load_hierarchy(path: Path, channels: int, layers: int) -> Hierarchy:
    """The network stored in ``path`` (safetensors, config in its metadata), in eval mode."""
    if not path.is_file():
        raise errors.PluginLoadError(f"HQA weights {path} are missing; train them with"
                                     f" `python -m progcodec_plugins.hqa.train {path.stem.removeprefix('hqa-')}`")
    with safe_open(str(path), "pt") as f:
        conf = json.loads((f.metadata() or {}).get("config", "{}"))
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if conf.get("channels") != channels or conf.get("layers") != layers:
        raise errors.PluginLoadError(f"{path} holds a {conf.get('layers')}-layer, {conf.get('channels')}-channel"
                                     f" model; expected {layers} layers, {channels} channels")
    net = Hierarchy(**conf)
    net.load_state_dict(tensors)
    return net.eval().requires_grad_(False)


class _Decoder(LayerDecoder):
    def __init__(self, model: "HQA", height: int, width: int):
        if height % model.stride or width % model.stride:
            raise ValueError(f"padded size {height}x{width} is not a multiple of {model.stride}")
        self.net, self.top = model.net, model.top_prior
        self.levels = len(self.net.layers)
        self.top_shape = (height // model.stride, width // model.stride)
        self.codes: torch.Tensor | None = None  # (1, h, w) codes of the last pushed layer
        self.pushed = 0

    def prior(self, k: int) -> list:
        if k != self.pushed or k >= self.levels:
            raise ValueError(f"prior of layer {k} asked after {self.pushed} layers")
        if k == 0:
            return [Categorical(self.top, shape=self.top_shape)]
        with torch.inference_mode():
            logp = self.net.prior_below(self.levels - k, self.codes)
        # C-contiguous: constriction 0.5's batched categorical ignores numpy strides
        return [Categorical(logp[0].exp().permute(1, 2, 0).contiguous().numpy())]

    def push(self, k: int, symbols: list[np.ndarray]) -> None:
        if k != self.pushed:
            raise ValueError(f"layer {k} pushed after {self.pushed} layers")
        sym = np.asarray(symbols[0])
        shape = (self.top_shape[0] << k, self.top_shape[1] << k)
        if len(symbols) != 1 or sym.shape != shape:
            raise ValueError(f"layer {k} needs one {shape} code map, got {[np.shape(s) for s in symbols]}")
        if sym.min() < 0 or sym.max() >= self.net.layers[0].codebook.shape[0]:
            raise ValueError("code index outside the codebook")
        self.codes = torch.from_numpy(sym.astype(np.int64))[None]
        self.pushed += 1

    def image(self) -> torch.Tensor:
        if self.codes is None:
            raise ValueError("no layer decoded yet")
        with torch.inference_mode():
            return self.net.reconstruct(self.levels - self.pushed, self.codes)[0].clamp(0, 1)


class HQA(Model):
    name = "hqa"
    version = "1"
    rates = ("photo",)
    default_rate = "photo"
    channels = 3
    stride = 32
    decode_bytes_per_pixel = 2800  # measured 1983-2140 B/px (benchmarks/hostile.py --measure), +30%
    layer_names = ("top-1/32", "codes-1/16", "codes-1/8", "codes-1/4", "codes-1/2")
    description = "Hierarchical Quantized Autoencoder (5 VQ layers, 256 codes each); each layer is the next one's prior"

    def __init__(self, rate: str | None = None):
        super().__init__(rate)
        self.weights_path = WEIGHTS / f"hqa-{self.rate}.safetensors"
        self.net = load_hierarchy(self.weights_path, self.channels, len(self.layer_names))
        counts = self.net.marginals[-1].double().numpy()
        self.top_prior = counts / counts.sum()


    def analyze(self, x: torch.Tensor) -> Analysis:
        codes = self.net.code_map(x)
        return Analysis(symbols=[[c[0].numpy().astype(np.int32)] for c in reversed(codes)])

    def decoder(self, height: int, width: int, side: dict) -> LayerDecoder:
        return _Decoder(self, height, width)


class HQADigits(HQA):
    name = "hqa-digits"
    rates = ("digits",)
    default_rate = "digits"
    channels = 1
    decode_bytes_per_pixel = 3100  # measured 1862-2393 B/px (benchmarks/hostile.py --measure), +30%
    description = "HQA on scikit-learn digits upsampled to 32x32 (5 layers down to one 8-bit code, as in the paper)"
