"""Conversions between PIL images and float tensors, padding, and quality metrics."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import errors
from .limits import LIMITS


def to_tensor(img, channels: int = 3) -> torch.Tensor:
    """Any supported input (path, PIL image, uint8 array, float tensor; see :mod:`progcodec.modes`)
    -> float ``(1, C, H, W)`` in [0, 1] with C = ``channels``; refuses absurd sizes before converting."""
    from .modes import load_input

    img = load_input(img)
    w, h = img.size
    if w < 1 or h < 1:
        raise ValueError(f"image of size {w}x{h} is empty")
    if w > LIMITS.max_side or h > LIMITS.max_side or w * h > LIMITS.max_pixels:
        raise errors.LimitError(f"image of {w}x{h} pixels exceeds progcodec.LIMITS.max_pixels ({LIMITS.max_pixels})")
    img = img.convert("RGB" if channels == 3 else "L")
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)


_PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def to_pil(x: torch.Tensor) -> Image.Image:
    """Float ``(C, H, W)`` or ``(1, C, H, W)`` in [0, 1] -> PIL image (C = 1, 2, 3, 4: L, LA, RGB, RGBA)."""
    x = x.detach().float().cpu()
    if x.ndim == 4:
        x = x[0]
    arr = x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    mode = _PIL_MODES[arr.shape[2]]
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, mode)


def padded_size(height: int, width: int, stride: int) -> tuple[int, int]:
    return -(-height // stride) * stride, -(-width // stride) * stride


def pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Replicate-pad the bottom/right of ``(1, C, H, W)`` to a multiple of ``stride``."""
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w, stride)
    if (ph, pw) == (h, w):
        return x
    return F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1], after 8-bit rounding of both."""
    a = (a.detach().float().clamp(0, 1) * 255).round()
    b = (b.detach().float().clamp(0, 1) * 255).round()
    mse = torch.mean((a - b) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)
