"""Resource limits checked before any allocation (like Pillow's MAX_IMAGE_PIXELS)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    """Upper bounds a reader enforces; change the module-level ``LIMITS`` to adjust them."""

    max_pixels: int = 1 << 26          # 67 Mpx, a little under Pillow's default bomb limit
    max_side: int = 1 << 16
    max_layers: int = 256
    max_header_bytes: int = 1 << 20
    max_frame_bytes: int = 1 << 30
    max_side_info_bytes: int = 1 << 24
    max_alphabet: int = 1 << 16


LIMITS = Limits()
