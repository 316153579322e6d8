"""The contract between core and a model plugin.

A plugin subclasses :class:`Model` and registers the class under the ``progcodec.models``
entry-point group. Core pads the image to ``stride``, calls ``analyze`` on the encoder, and
drives a :class:`LayerDecoder` on both sides: ``prior(k)`` gives the entropy parameters of
layer k from the layers pushed so far (a pure function of them), ``push(k, symbols)`` adds a
decoded layer, ``image()`` renders the best image from the layers pushed so far. The
encoder runs the very same ``prior``/``push`` sequence, so both sides code with one prior.
A layer may take several sequential coding steps (``coding_steps(k) > 1``: ``step_prior`` /
``step_push`` per step, e.g. checkerboard passes). Plugins never see bytes; core never sees
a network.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .entropy import Categorical, Gaussian  # noqa: F401  (re-exported for plugin authors)


@dataclass
class Analysis:
    """Encoder output: per layer, a list of integer symbol arrays (for a layer of ``n > 1``
    coding steps: a list of ``n`` such lists); plus msgpack-able side info. ``rate``, when
    set, is written to the header instead of the model's rate point (e.g. ``custom``)."""

    symbols: list[list]
    side: dict = field(default_factory=dict)
    rate: str | None = None


class LayerDecoder(ABC):
    """Per-stream decoding state (one per image; never shared between threads)."""

    def coding_steps(self, k: int) -> int:
        """Sequential coding steps inside layer ``k`` (default 1). With ``n > 1``, core calls
        ``step_prior(k, s)`` then ``step_push(k, s, symbols)`` for s = 0 .. n-1, all coded in
        one frame, so step s's prior may depend on the symbols of steps < s."""
        return 1

    def step_prior(self, k: int, s: int) -> list:
        """Entropy parameters of step ``s`` of layer ``k`` (default: ``prior(k)``, one step)."""
        if s:
            raise NotImplementedError(f"{type(self).__name__} declares several steps but no step_prior")
        return self.prior(k)

    def step_push(self, k: int, s: int, symbols: list[np.ndarray]) -> None:
        """Add the decoded symbols of step ``s`` of layer ``k`` (default: ``push``)."""
        if s:
            raise NotImplementedError(f"{type(self).__name__} declares several steps but no step_push")
        self.push(k, symbols)

    @abstractmethod
    def prior(self, k: int) -> list:
        """Entropy parameters (``Gaussian``/``Categorical``) for every symbol array of layer ``k``."""

    @abstractmethod
    def push(self, k: int, symbols: list[np.ndarray]) -> None:
        """Add the decoded symbols of layer ``k`` (layers arrive in order 0, 1, ...)."""

    @abstractmethod
    def image(self) -> torch.Tensor:
        """Float ``(C, H, W)`` image in [0, 1] at the padded size, from the layers pushed so far."""


class Model(ABC):
    """A progressive codec. Instances are read-only after construction and thread-safe."""

    name: str = ""
    version: str = "1"
    rates: tuple[str, ...] = ("default",)
    default_rate: str = "default"
    channels: int = 3
    stride: int = 1
    layer_names: tuple[str, ...] = ()
    description: str = ""
    weights_path: Path | None = None  # set it and ``digest`` is derived from the file
    options: tuple[str, ...] = ()  # keyword options ``analyze`` takes (``progcodec.encode(..., **options)``)
    # Peak decode memory per padded pixel in bytes (beyond the loaded model), measured; the
    # decoder refuses a header whose size times this exceeds ``Limits.max_decode_bytes``.
    decode_bytes_per_pixel: int = 4096
    # Write format 1.2 (the compressed header, docs/bitstream.md 2.2) unless the caller says
    # otherwise: set it when no reader older than 1.2 can decode this model's streams anyway.
    compact_header: bool = False

    def __init__(self, rate: str | None = None):
        self.rate = rate or self.default_rate
        if self.rate not in self.rates:
            from .errors import UnknownModelError

            raise UnknownModelError(f"model {self.name!r} has no rate point {self.rate!r}; it has {list(self.rates)}")

    @property
    def layers(self) -> int:
        return len(self.layer_names)

    @cached_property
    def digest(self) -> str:
        """Identifies the weights (and anything else decoding depends on); stored in the header.

        Default: the short SHA-256 of ``weights_path``, computed once; ``none`` without weights.
        """
        return "none" if self.weights_path is None else file_digest(self.weights_path)

    def accepts_weights(self, digest: str) -> bool:
        """Whether a stream whose header names weights ``digest`` decodes with this install.

        Default: only this install's own digest. A model that still decodes streams written
        against other weights (say, older self-contained streams) widens it.
        """
        return digest == self.digest

    @abstractmethod
    def analyze(self, x: torch.Tensor) -> Analysis:
        """Symbols of every layer for a ``(1, C, H, W)`` image in [0, 1] at the padded size."""

    @abstractmethod
    def decoder(self, height: int, width: int, side: dict) -> LayerDecoder:
        """A fresh decoding state for a padded ``height`` x ``width`` image."""


def file_digest(*paths: Path | str) -> str:
    """Short SHA-256 of one or more weight files, for :attr:`Model.digest`."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]
