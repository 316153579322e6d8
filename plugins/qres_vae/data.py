"""Random training crops from the photos in data/train (made by scripts/fetch_data.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

SCALES = (1.0, 1.5, 2.0, 3.0, 4.0)  # photos are 2-5 Mpx: downscale so crops hold whole objects


class Crops:
    """Preloads every training photo at several scales; ``batch()`` draws random flipped crops."""

    def __init__(self, folder: str | Path, crop: int, seed: int = 0):
        paths = sorted(Path(folder).glob("*.png"))
        if not paths:
            raise SystemExit(f"no training photos in {folder}: run python scripts/fetch_data.py")
        self.crop, self.rng = crop, np.random.default_rng(seed)
        self.images = []
        for p in paths:
            img = Image.open(p).convert("RGB")
            for s in SCALES:
                w, h = round(img.width / s), round(img.height / s)
                if min(w, h) >= crop:
                    self.images.append(np.asarray(img.resize((w, h), Image.LANCZOS)))

    def batch(self, n: int) -> torch.Tensor:
        out = np.empty((n, self.crop, self.crop, 3), dtype=np.uint8)
        for i in range(n):
            img = self.images[self.rng.integers(len(self.images))]
            y = self.rng.integers(img.shape[0] - self.crop + 1)
            x = self.rng.integers(img.shape[1] - self.crop + 1)
            patch = img[y : y + self.crop, x : x + self.crop]
            out[i] = patch[:, ::-1] if self.rng.random() < 0.5 else patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)
