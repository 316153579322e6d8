"""Fetch and prepare the natural photographs progcodec's models train and are measured on.

    python scripts/fetch_data.py [--out data]

Downloads two Debian wallpaper packages (apt-get download; no install, no root needed for
the download itself), keeps an explicit list of *photographs* (the packages also hold
renders and illustrations), and writes:

* ``data/train/<name>.png``: 12 photos, long side at most 2048 px (training crops come from these);
* ``data/test/<name>.png``: 12 other photos as 768x512 centre crops, never used in training;
* ``data/manifest.json``: source package, licence, original size and split of every photo.

Idempotent: downloads are cached in ``data/cache``. Nothing is fetched at run time.
"""
from __future__ import annotations

import argparse
import glob
import json
import subprocess
from pathlib import Path

from PIL import Image

PACKAGES = {"plasma-workspace-wallpapers": "GPL-2+ (KDE Visual Design Group)",
            "mate-backgrounds": "GPL-2+ (authors listed in the package's copyright file)"}
# name: (package, path glob inside the package, split)
PHOTOS = {
    "bythewater": ("plasma-workspace-wallpapers", "usr/share/wallpapers/BytheWater/contents/images/2560x1600.jpg", "test"),
    "coldripple": ("plasma-workspace-wallpapers", "usr/share/wallpapers/ColdRipple/contents/images/2560x1600.jpg", "train"),
    "colorfulcups": ("plasma-workspace-wallpapers", "usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg", "test"),
    "darkesthour": ("plasma-workspace-wallpapers", "usr/share/wallpapers/DarkestHour/contents/images/2560x1600.jpg", "train"),
    "eveningglow": ("plasma-workspace-wallpapers", "usr/share/wallpapers/EveningGlow/contents/images/2560x1600.jpg", "test"),
    "fallenleaf": ("plasma-workspace-wallpapers", "usr/share/wallpapers/FallenLeaf/contents/images/2560x1600.jpg", "train"),
    "grey": ("plasma-workspace-wallpapers", "usr/share/wallpapers/Grey/contents/images/2560x1600.jpg", "test"),
    "kite": ("plasma-workspace-wallpapers", "usr/share/wallpapers/Kite/contents/images/2560x1600.jpg", "train"),
    "onestandsout": ("plasma-workspace-wallpapers", "usr/share/wallpapers/OneStandsOut/contents/images/2560x1600.jpg", "test"),
    "path": ("plasma-workspace-wallpapers", "usr/share/wallpapers/Path/contents/images/2560x1600.jpg", "train"),
    "volna": ("plasma-workspace-wallpapers", "usr/share/wallpapers/Volna/contents/images/5120x2880.jpg", "test"),
    "summer1am": ("plasma-workspace-wallpapers", "usr/share/wallpapers/summer_1am/contents/images/2560x1600.jpg", "train"),
    "aqua": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Aqua.jpg", "train"),
    "blinds": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Blinds.jpg", "test"),
    "dune": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Dune.jpg", "train"),
    "freshflower": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/FreshFlower.jpg", "test"),
    "garden": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Garden.jpg", "train"),
    "greenmeadow": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/GreenMeadow.jpg", "test"),
    "ladybird": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/LadyBird.jpg", "train"),
    "raindrops": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/RainDrops.jpg", "test"),
    "storm": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Storm.jpg", "train"),
    "twowings": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/TwoWings.jpg", "test"),
    "wood": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/Wood.jpg", "train"),
    "yellowflower": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/YellowFlower.jpg", "test"),
}
TEST_SIZE = (768, 512)
TRAIN_MAX_SIDE = 2048


def fetch(cache: Path) -> dict[str, Path]:
    """Download and unpack each package once; returns package -> extraction root."""
    roots = {}
    for pkg in PACKAGES:
        root = cache / pkg
        if not root.exists():
            debs = glob.glob(str(cache / f"{pkg}_*.deb"))
            if not debs:
                subprocess.run(["apt-get", "download", pkg], cwd=cache, check=True)
                debs = glob.glob(str(cache / f"{pkg}_*.deb"))
            subprocess.run(["dpkg", "-x", debs[0], str(root)], check=True)
        roots[pkg] = root
    return roots


def centre_crop(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    w, h = size
    scale = max(w / img.width, h / img.height)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    left, top = (img.width - w) // 2, (img.height - h) // 2
    return img.crop((left, top, left + w, top + h))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data", type=Path)
    out = ap.parse_args().out
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    roots = fetch(cache)
    manifest = []
    for name, (pkg, rel, split) in sorted(PHOTOS.items()):
        src = Image.open(roots[pkg] / rel).convert("RGB")
        dest = out / split / f"{name}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            if split == "test":
                img = centre_crop(src, TEST_SIZE)
            else:
                img = src.copy()
                img.thumbnail((TRAIN_MAX_SIDE, TRAIN_MAX_SIDE), Image.LANCZOS)
            img.save(dest)
        manifest.append({"name": name, "package": pkg, "path": rel, "licence": PACKAGES[pkg],
                         "original_size": list(src.size), "split": split})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for split in ("train", "test"):
        print(f"{split}: {sum(m['split'] == split for m in manifest)} photos in {out / split}")


if __name__ == "__main__":
    main()
