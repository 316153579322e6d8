"""Inputs and colour modes: what ``progcodec.encode`` accepts and what a decode gives back.

Inputs (:func:`load_input`): a path (``str`` / ``os.PathLike``), a PIL image, a numpy
``uint8`` array ``HxW`` / ``HxWxC`` (C = 1, 2, 3, 4), or a float torch tensor ``CxHxW`` /
``1xCxHxW`` in [0, 1] (C = 1, 2, 3, 4). Anything else is a ``TypeError`` (wrong kind of
object) or ``ValueError`` (right kind, wrong shape or values).

Modes (docs/bitstream.md §2.1): the model codes its own colour space (``channels`` 3 or 1).
An ``L`` image given to a 3-channel model is coded as gray RGB and comes back ``L``; an alpha
channel (``RGBA``, ``LA``) is carried losslessly in an extra ``alpha`` frame and comes back too.
A 1-channel model refuses an image with colour (``ValueError``: convert it to ``L`` first).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import zstandard
from PIL import Image

from . import errors
from .limits import LIMITS

ALPHA_NAME = "alpha"
ALPHA_CODEC = "delta-zstd"
OUTPUT_MODES = ("RGB", "L", "RGBA", "LA")
_NUMPY_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclass
class Prepared:
    """An input split into the colour the model codes and the alpha plane carried beside it."""

    image: Image.Image           # RGB or L, in the model's colour space
    mode: str                    # the input's mode as returned by a decode: RGB, L, RGBA or LA
    alpha: np.ndarray | None     # uint8 HxW, or None


def _check_size(w: int, h: int) -> None:
    if w < 1 or h < 1:
        raise ValueError(f"image of size {w}x{h} is empty")
    if w > LIMITS.max_side or h > LIMITS.max_side or w * h > LIMITS.max_pixels:
        raise errors.LimitError(f"image of {w}x{h} pixels exceeds progcodec.LIMITS.max_pixels ({LIMITS.max_pixels})")


def load_input(obj) -> Image.Image:
    """Any supported input as a PIL image (8 bits per channel), without losing alpha."""
    if isinstance(obj, Image.Image):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        img = Image.open(obj)
        img.load()
        return img
    if isinstance(obj, (bytes, bytearray)):
        raise TypeError("expected an image, got bytes: wrap encoded image bytes in io.BytesIO and Image.open them")
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in _NUMPY_MODES:
            raise ValueError(f"expected a float tensor of shape (C, H, W) or (1, C, H, W) with C in 1..4,"
                             f" got shape {tuple(obj.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"expected a float tensor in [0, 1], got {t.dtype} (divide 8-bit values by 255)")
        _check_size(t.shape[2], t.shape[1])
        t = t.float().cpu()
        if not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1:
            raise ValueError("tensor values must be finite and in [0, 1]")
        arr = t.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return _from_array(arr)
    if isinstance(obj, np.ndarray):
        if obj.dtype != np.uint8:
            raise TypeError(f"expected a uint8 array (H, W) or (H, W, C), got dtype {obj.dtype}"
                            " (for floats in [0, 1] use a torch tensor (C, H, W), or scale to uint8)")
        if obj.ndim == 2:
            obj = obj[:, :, None]
        if obj.ndim != 3 or obj.shape[2] not in _NUMPY_MODES:
            raise ValueError(f"expected an array of shape (H, W) or (H, W, C) with C in 1..4, got {obj.shape}")
        _check_size(obj.shape[1], obj.shape[0])
        return _from_array(obj)
    raise TypeError(f"expected an image: a path, a PIL image, a uint8 numpy array (H, W, C) or a float"
                    f" torch tensor (C, H, W) in [0, 1]; got {type(obj).__name__}")


def _from_array(arr: np.ndarray) -> Image.Image:
    arr = np.ascontiguousarray(arr)
    mode = _NUMPY_MODES[arr.shape[2]]
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, mode)


def prepare(obj, channels: int, model_name: str = "model") -> Prepared:
    """Split an input into what a ``channels``-channel model codes plus its alpha plane."""
    img = load_input(obj)
    _check_size(*img.size)
    src = img.mode
    has_alpha = src in ("RGBA", "LA", "PA", "La", "RGBa") or (src == "P" and "transparency" in img.info)
    if src in ("1", "L", "I;16", "I", "F", "LA", "La"):
        mode = "LA" if has_alpha else "L"
    else:
        mode = "RGBA" if has_alpha else "RGB"
    alpha = None
    if has_alpha:
        rgba = img.convert("RGBA") if src not in ("LA", "La") else img.convert("LA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint8).copy()
        img = rgba
    if src == "I;16" or src == "I":  # 16/32-bit gray: scale into 8 bits rather than clip
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr / (256.0 if arr.max() > 255 else 1.0), 0, 255).astype(np.uint8), "L")
    gray = mode in ("L", "LA")
    if channels == 3:
        coded = img.convert("L").convert("RGB") if gray else img.convert("RGB")
    elif channels == 1:
        if not gray:
            rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
            if (rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any():
                raise ValueError(f"{model_name} codes grayscale images only and this image has colour;"
                                 " pass image.convert('L') to code it as grayscale, or choose a colour model")
            mode = "RGBA" if alpha is not None else "RGB"
        coded = img.convert("L")
    else:
        raise ValueError(f"{model_name}: unsupported channel count {channels}")
    return Prepared(coded, mode, alpha)


def stream_extra(prep: Prepared, channels: int) -> dict:
    """Optional header fields (format 1.1) for a prepared input; empty for plain RGB/L streams."""
    coded = "RGB" if channels == 3 else "L"
    extra = {}
    if prep.mode != coded:
        extra["source_mode"] = prep.mode
    return extra


# alpha plane -----------------------------------------------------------------------------

def encode_alpha(alpha: np.ndarray) -> bytes:
    """Lossless: horizontal delta (mod 256, row-major, left of column 0 is 0), then one zstd frame."""
    a = np.ascontiguousarray(alpha, dtype=np.uint8)
    delta = np.diff(a, axis=1, prepend=np.zeros((a.shape[0], 1), np.uint8))
    return zstandard.ZstdCompressor(level=19).compress(delta.astype(np.uint8).tobytes())


def decode_alpha(payload: bytes, width: int, height: int) -> np.ndarray:
    """Inverse of :func:`encode_alpha`; damage is a :class:`progcodec.FormatError`."""
    n = width * height
    try:
        raw = zstandard.ZstdDecompressor().decompress(payload, max_output_size=n)
    except zstandard.ZstdError as exc:
        raise errors.FormatError(f"alpha layer is damaged: {exc}") from None
    if len(raw) != n:
        raise errors.FormatError(f"alpha layer holds {len(raw)} bytes, expected {n}")
    delta = np.frombuffer(raw, np.uint8).reshape(height, width)
    return np.cumsum(delta, axis=1, dtype=np.uint64).astype(np.uint8)  # sums mod 256


# decode side ---------------------------------------------------------------------------

def output_mode(header) -> str:
    """The mode a decode returns: the input's (``source_mode``), else the coded mode."""
    return header.extra.get("source_mode", header.mode)


def alpha_frame(header) -> int | None:
    """Frame index (0-based) of the alpha layer, or None; refuses inconsistent headers."""
    mode = header.extra.get("source_mode", header.mode)
    if mode not in OUTPUT_MODES:
        raise errors.HeaderError(f"unknown source mode {mode!r}")
    info = header.extra.get("alpha")
    if info is None:
        if mode in ("RGBA", "LA"):
            raise errors.HeaderError(f"source mode {mode} without an alpha layer")
        return None
    if mode not in ("RGBA", "LA"):
        raise errors.HeaderError(f"an alpha layer in a stream of mode {mode}")
    if not isinstance(info, dict) or info.get("codec") != ALPHA_CODEC or type(info.get("frame")) is not int:
        raise errors.HeaderError(f"alpha layer description {info!r} is not understood"
                                 f" (this build reads codec {ALPHA_CODEC!r})")
    k = info["frame"]
    if not 0 < k < header.encoded_layers:
        raise errors.HeaderError(f"alpha frame index {k} is outside 1..{header.encoded_layers - 1}")
    if k < header.layers and header.layer_names[k] != ALPHA_NAME:
        raise errors.HeaderError(f"frame {k + 1} should be the alpha layer, the table names it"
                                 f" {header.layer_names[k]!r}")
    return k


def model_layers(header) -> tuple[int, tuple[str, ...]]:
    """(encoded model layers, names of the model layers in this file), without the alpha frame."""
    k = alpha_frame(header)
    if k is None:
        return header.encoded_layers, tuple(header.layer_names)
    names = tuple(n for i, n in enumerate(header.layer_names) if i != k)
    return header.encoded_layers - 1, names


def finish(colour: torch.Tensor, mode: str, alpha: np.ndarray | None) -> torch.Tensor:
    """Decoded colour ``(C, H, W)`` -> the output mode's channels; missing alpha is opaque."""
    if mode in ("L", "LA") and colour.shape[0] == 3:
        # ITU-R 601 luma, as PIL's convert("L")
        colour = (colour[0:1] * 0.299 + colour[1:2] * 0.587 + colour[2:3] * 0.114)
    elif mode in ("RGB", "RGBA") and colour.shape[0] == 1:
        colour = colour.expand(3, -1, -1)
    if mode in ("RGBA", "LA"):
        a = (torch.ones_like(colour[:1]) if alpha is None
             else torch.from_numpy(alpha.astype(np.float32) / 255.0).unsqueeze(0).to(colour.dtype))
        colour = torch.cat([colour, a], 0)
    return colour
