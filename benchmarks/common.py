"""Shared helpers of the benchmark scripts: test images, metrics, classic codecs, BD-rate."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile

from progcodec import registry
from progcodec.image import psnr, to_tensor

ROOT = Path(__file__).resolve().parents[1]
TEST_DIR = ROOT / "data" / "test"


def test_images(folder: Path | None = None, limit: int | None = None) -> list[tuple[str, Image.Image]]:
    """The held-out photos (``python scripts/fetch_data.py`` makes them), name-sorted."""
    folder = Path(folder or TEST_DIR)
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise SystemExit(f"no test photos in {folder}: run python scripts/fetch_data.py first")
    return [(p.stem, Image.open(p).convert("RGB")) for p in paths[:limit]]


def loadable_plugins(names=None) -> list[str]:
    # by default, plugins whose weights the user imports (qres34m...) only once some are imported
    names = names or [p.name for p in registry.plugins() if p.error is None and p.cls.rates]
    return [n for n in names if registry.get_class(n).channels == 3]


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """MS-SSIM (5 scales, Wang et al. 2003) of two (C, H, W) images in [0, 1]; NaN if too small."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(a.shape[-2:]) <= 160:
        return float("nan")
    return float(_ms_ssim(a[None].float().clamp(0, 1), b[None].float().clamp(0, 1), data_range=1.0))


def metrics(decoded: torch.Tensor, original: torch.Tensor) -> tuple[float, float]:
    return psnr(decoded, original), ms_ssim(decoded, original)


def classic(img: Image.Image, fmt: str, quality: int) -> bytes:
    """Encode with Pillow: fmt in jpeg, jpeg-progressive, webp, avif."""
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=quality, optimize=True)
    elif fmt == "jpeg-progressive":
        img.save(buf, "JPEG", quality=quality, optimize=True, progressive=True)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=4)
    elif fmt == "avif":
        img.save(buf, "AVIF", quality=quality, speed=6)
    else:
        raise ValueError(fmt)
    return buf.getvalue()


def decode_classic(data: bytes) -> torch.Tensor:
    """Decode (a possibly truncated) classic file; returns (3, H, W) in [0, 1]."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        return to_tensor(Image.open(io.BytesIO(data)).convert("RGB"))[0]
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def jpeg_at_psnr(img: Image.Image, target: float, progressive: bool = False) -> tuple[int, bytes]:
    """The lowest JPEG quality whose PSNR reaches ``target`` (binary search), and its bytes."""
    x = to_tensor(img)[0]
    fmt = "jpeg-progressive" if progressive else "jpeg"
    lo, hi = 1, 100
    while lo < hi:
        mid = (lo + hi) // 2
        if psnr(decode_classic(classic(img, fmt, mid)), x) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo, classic(img, fmt, lo)


def bd_rate(anchor: list[tuple[float, float]], test: list[tuple[float, float]]) -> float:
    """Bjontegaard delta rate (%) of ``test`` vs ``anchor``; points are (bpp, psnr).

    Piecewise-linear interpolation of log-rate over the overlapping PSNR range (robust with
    few points); NaN if the curves do not overlap or a curve has fewer than 2 points.
    """
    if len(anchor) < 2 or len(test) < 2:
        return float("nan")
    a = sorted((q, math.log(r)) for r, q in anchor)
    t = sorted((q, math.log(r)) for r, q in test)
    lo, hi = max(a[0][0], t[0][0]), min(a[-1][0], t[-1][0])
    if hi <= lo:
        return float("nan")
    grid = np.linspace(lo, hi, 100)
    la = np.interp(grid, [p[0] for p in a], [p[1] for p in a])
    lt = np.interp(grid, [p[0] for p in t], [p[1] for p in t])
    return float((math.exp(np.mean(lt - la)) - 1) * 100)
