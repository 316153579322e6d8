"""``pq-mim``: PQ-VAE tokens sent in S = 5 quincunx stages, coded with a masked image model.

Layer s carries the tokens (all M sub-indices) of quincunx stage s. Stage 1 is coded with
the marginal codebook histograms; stage s > 1 with the MIM's distributions given the stages
already sent. After any prefix, tokens not yet received are filled with the MIM's most likely
prediction and the PQ-VAE decoder renders a full image. One MIM evaluation per received
prefix 1..S-1 serves both the next stage's prior and the fill: S - 1 evaluations per image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from progcodec.errors import PluginLoadError
from progcodec.plugin import Analysis, Categorical, LayerDecoder, Model

from .model import MIM, PQVAE, Config
from .quincunx import stage_positions

WEIGHTS = Path(__file__).parent / "weights"
LOGP_GRID = 64.0  # log-probabilities are snapped to 1/64 nat before coding (numerical robustness)


def load_weights(path: Path) -> tuple[Config, PQVAE, MIM, torch.Tensor]:
    """Config, networks (float32, eval mode) and marginal histograms ``(M, V)`` of a weights file."""
    if not path.is_file():
        raise PluginLoadError(f"pq-mim weights not found: {path} (train with plugins/pq_mim/train.py)")
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        cfg = Config.from_json(meta["config"])
    except Exception as exc:
        raise PluginLoadError(f"{path} is not a pq-mim weights file: {type(exc).__name__}: {exc}") from None
    vae, mim = PQVAE(cfg), MIM(cfg)
    try:
        vae.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("vae.")})
        mim.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("mim.")})
    except RuntimeError as exc:
        raise PluginLoadError(f"{path} does not match the pq-mim architecture: {exc}") from None
    if state.get("marginal", torch.zeros(0)).shape != (cfg.M, cfg.V):
        raise PluginLoadError(f"{path} lacks the (M, V) marginal histograms")
    return cfg, vae.eval(), mim.eval(), state["marginal"]


class _Decoder(LayerDecoder):
    def __init__(self, model: "PQMIM", height: int, width: int, side: dict):
        f = model.cfg.f
        if height % f or width % f:
            raise ValueError(f"padded size {height}x{width} is not a multiple of {f}")
        self.model, self.h, self.w = model, height // f, width // f
        self.pos = stage_positions(self.h, self.w, model.stages)
        self.tokens = torch.zeros(self.h * self.w, model.cfg.M, dtype=torch.long)
        self.known = torch.zeros(self.h * self.w, dtype=torch.bool)
        self.pushed = 0
        self._logp: tuple[int, torch.Tensor] | None = None  # (stages pushed, MIM log-probs)

    def _predict(self) -> torch.Tensor:
        """Snapped MIM log-probabilities ``(h*w, M, V)`` given the stages pushed so far (cached)."""
        if self._logp is None or self._logp[0] != self.pushed:
            cfg = self.model.cfg
            with torch.inference_mode():
                logits = self.model.mim(self.tokens.view(1, self.h, self.w, cfg.M), self.known.view(1, self.h, self.w))
                logp = torch.log_softmax(logits.float(), -1).view(-1, cfg.M, cfg.V)
            self._logp = (self.pushed, torch.round(logp * LOGP_GRID) / LOGP_GRID)
        return self._logp[1]

    def prior(self, k: int) -> list:
        if k != self.pushed:
            raise ValueError(f"stage {k + 1} requested after {self.pushed} stages")
        n, cfg = len(self.pos[k]), self.model.cfg
        if k == 0:
            probs = np.broadcast_to(self.model.marginal, (n, cfg.M, cfg.V))
        else:
            probs = torch.exp(self._predict()[self.pos[k]].double()).numpy()
        return [Categorical(probs)]

    def push(self, k: int, symbols: list[np.ndarray]) -> None:
        if k != self.pushed:
            raise ValueError(f"stage {k + 1} pushed after {self.pushed} stages")
        sym = np.asarray(symbols[0])
        if sym.shape != (len(self.pos[k]), self.model.cfg.M):
            raise ValueError(f"stage {k + 1} symbols of shape {sym.shape}")
        self.tokens[self.pos[k]] = torch.from_numpy(sym.astype(np.int64))
        self.known[self.pos[k]] = True
        self.pushed += 1

    def image(self) -> torch.Tensor:
        tokens = self.tokens
        if not bool(self.known.all()):
            guess = self._predict().argmax(-1)
            tokens = torch.where(self.known[:, None], tokens, guess)
        with torch.inference_mode():
            x = self.model.vae.decode(tokens.view(1, self.h, self.w, -1))
        return x[0].clamp(0, 1)


class PQMIM(Model):
    name = "pq-mim"
    version = "1"
    rates = ("f8m4v64",)
    default_rate = "f8m4v64"
    channels = 3
    stride = 8
    decode_bytes_per_pixel = 1050  # measured 679-793 B/px (benchmarks/hostile.py --measure), +30%
    stages = 5
    layer_names = ("stage1", "stage2", "stage3", "stage4", "stage5")
    description = "PQ-VAE tokens in 5 quincunx stages, masked-image-model entropy coding (El-Nouby et al. 2023)"

    def __init__(self, rate: str | None = None):
        super().__init__(rate)
        self.weights_path = WEIGHTS / f"{self.rate}.safetensors"
        self.cfg, self.vae, self.mim, marginal = load_weights(self.weights_path)
        if self.cfg.f != self.stride:
            raise PluginLoadError(f"{self.weights_path}: f = {self.cfg.f}, plugin stride {self.stride}")
        self.marginal = (marginal.double() / marginal.double().sum(-1, keepdim=True)).numpy()


    def analyze(self, x: torch.Tensor) -> Analysis:
        with torch.inference_mode():
            idx = self.vae.encode(x.float())[0]
        flat = idx.reshape(-1, self.cfg.M).numpy().astype(np.int32)
        pos = stage_positions(idx.shape[0], idx.shape[1], self.stages)
        return Analysis(symbols=[[flat[p]] for p in pos], side={})

    def decoder(self, height: int, width: int, side: dict) -> LayerDecoder:
        return _Decoder(self, height, width, side)
