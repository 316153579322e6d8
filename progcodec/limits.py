"""Resource limits checked before any allocation (like Pillow's ``MAX_IMAGE_PIXELS``).

The defaults in ``LIMITS`` are meant for **untrusted input** (a file from the web, an upload):
with them, a hostile stream of any size costs at most about ``max_decode_bytes`` of memory on
top of the loaded model, and every refusal is a :class:`progcodec.LimitError` raised before the
buffers are sized. For files you trust, raise them, either globally
(``progcodec.LIMITS.max_decode_bytes = 16 << 30``) or per call
(``decode_stream(chunks, limits=Limits(max_decode_bytes=16 << 30, max_pixels=1 << 28))``).

``max_decode_bytes`` is compared with the image's padded pixel count times the model's
declared :attr:`progcodec.Model.decode_bytes_per_pixel` (its measured peak decode memory per
pixel; see ``benchmarks/hostile.py``) as soon as the header arrives: a 300-byte stream that
declares a 4096x4096 image no longer makes a neural model allocate tens of gigabytes.
"""
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
    max_decode_bytes: int = 2 << 30    # decoder memory: padded pixels x model.decode_bytes_per_pixel
    max_side_info_depth: int = 32      # nesting of maps/arrays in side information
    max_side_info_items: int = 1 << 20  # elements of any one map/array/str/bin in side information


LIMITS = Limits()
"""The process-wide defaults: safe for untrusted input (see the module docstring)."""
