"""Fetch and prepare the natural photographs progcodec's models train and are measured on.

    python scripts/fetch_data.py [--out data]

Run once by hand (never at run time). Downloads Debian wallpaper packages with ``apt-get
download`` into ``data/cache`` (kept: re-runs download nothing), unpacks them with ``dpkg -x``,
keeps the explicit allow-list of *photographs* below (the packages also hold renders and
illustrations; ukui-wallpapers was inspected and holds none), adds scikit-image's bundled sample
photos when scikit-image is importable, and writes:

* ``data/test/<name>.png``: the held-out photos, 768x512 centre crops, never used in training;
* ``data/train/<name>.png``: the other photos, long side at most 2048 px;
* ``data/manifest.json``: package, version, path, licence, original size and split of each;
* the small committed samples ``progcodec/data/default.png`` and ``tests/data/photo_128.png``.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PLASMA, MATE = "plasma-workspace-wallpapers", "mate-backgrounds"
# lomiri-wallpapers itself ships one artwork; its photos are in these two dependencies
LOMIRI16, LOMIRI20 = "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04"
PK = "usr/share/wallpapers/{}/contents/images/*"  # several resolutions each: the largest is kept
NAT, BG = "usr/share/backgrounds/mate/nature/{}.jpg", "usr/share/backgrounds/{}.jpg"
# The allow-list (every other image in the packages is artwork, a render or a duplicate):
# name: (package, path or glob inside it, split). The test split is the 11 photos of the first
# release of this data (alternate photos of each package in name order; its render "volna" is
# dropped) plus 5 Lomiri photos picked for variety; it is never trained on.
PHOTOS = {
    "bythewater": (PLASMA, PK.format("BytheWater"), "test"),
    "coldripple": (PLASMA, PK.format("ColdRipple"), "train"),
    "colorfulcups": (PLASMA, PK.format("ColorfulCups"), "test"),
    "darkesthour": (PLASMA, PK.format("DarkestHour"), "train"),
    "eveningglow": (PLASMA, PK.format("EveningGlow"), "test"),
    "fallenleaf": (PLASMA, PK.format("FallenLeaf"), "train"),
    "grey": (PLASMA, PK.format("Grey"), "test"),
    "kite": (PLASMA, PK.format("Kite"), "train"),
    "onestandsout": (PLASMA, PK.format("OneStandsOut"), "test"),
    "path": (PLASMA, PK.format("Path"), "train"),
    "summer1am": (PLASMA, PK.format("summer_1am"), "train"),
    "aqua": (MATE, NAT.format("Aqua"), "train"),
    "blinds": (MATE, NAT.format("Blinds"), "test"),
    "dune": (MATE, NAT.format("Dune"), "train"),
    "freshflower": (MATE, NAT.format("FreshFlower"), "test"),
    "garden": (MATE, NAT.format("Garden"), "train"),
    "greenmeadow": (MATE, NAT.format("GreenMeadow"), "test"),
    "ladybird": (MATE, NAT.format("LadyBird"), "train"),
    "raindrops": (MATE, NAT.format("RainDrops"), "test"),
    "storm": (MATE, NAT.format("Storm"), "train"),
    "twowings": (MATE, NAT.format("TwoWings"), "test"),
    "wood": (MATE, NAT.format("Wood"), "train"),
    "yellowflower": (MATE, NAT.format("YellowFlower"), "test"),
    "aitzgorri": (LOMIRI16, BG.format("aitzgorri_by_Aitzol_Berasategi"), "train"),
    "analogpattern": (LOMIRI16, BG.format("analogpattern_by_Peter_Nerlich"), "train"),
    "bridge": (LOMIRI16, BG.format("Bridge_by_Sander_Klootwijk"), "train"),
    "dragonfly": (LOMIRI16, BG.format("Dragonfly_by_Bolly"), "train"),
    "free": (LOMIRI16, BG.format("free_by_Peter_Nerlich"), "train"),
    "friends": (LOMIRI16, BG.format("friends_by_Aitzol_Berasategi"), "train"),
    "greentock": (LOMIRI16, BG.format("greentock_by_Peter_Nerlich"), "train"),
    "life": (LOMIRI16, BG.format("life_by_Aitzol_Berasategi"), "test"),
    "picosdeeuropa": (LOMIRI16, BG.format("picosdeeuropa_by_Aitzol_Berasategi"), "test"),
    "picture0b": (LOMIRI16, BG.format("Picture_0B_by_freespace"), "test"),
    "picture1a": (LOMIRI16, BG.format("Picture_1A_by_freespace"), "test"),
    "seeding": (LOMIRI16, BG.format("seeding_by_Clements_Engelhardt"), "train"),
    "sunset": (LOMIRI16, BG.format("sunset_by_Aitzol_Berasategi"), "train"),
    "wine": (LOMIRI16, BG.format("Wine_by_Jakkub_Mede"), "train"),
    "kleiber": (LOMIRI20, BG.format("Kleiber_by_Lukas_Baubkus"), "test"),
}
# scikit-image's bundled RGB photographs (all smaller than 768x512, so training only).
SKIMAGE = {"astronaut": "public domain (NASA)", "chelsea": "CC0-1.0 (Stefan van der Walt)",
           "coffee": "CC0-1.0 (Rachel Michetti)", "rocket": "public domain (SpaceX)"}
TEST_SIZE, TRAIN_MAX_SIDE = (768, 512), 2048
SAMPLES = {ROOT / "progcodec/data/default.png": ("eveningglow", (512, 384)),
           ROOT / "tests/data/photo_128.png": ("colorfulcups", (128, 96))}


def fetch(cache: Path, pkg: str) -> tuple[Path, str]:
    """Download (once) and unpack (once) one package; returns its root and version."""
    debs = sorted(cache.glob(f"{pkg}_*.deb"))
    if not debs:
        cmd = ["apt-get", "download", pkg]
        if subprocess.run(cmd, cwd=cache).returncode != 0:  # stale or missing lists
            subprocess.run(["apt-get", "update"], check=False)
            subprocess.run(cmd, cwd=cache, check=True)
        debs = sorted(cache.glob(f"{pkg}_*.deb"))
    root = cache / pkg
    if not root.exists():
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(root)], check=True)
    version = subprocess.run(["dpkg-deb", "-f", str(debs[-1]), "Version"], check=True,
                             capture_output=True, text=True).stdout.strip()
    return root, version


def licence(root: Path, rel: str) -> str:
    """The License of the last stanza of the package's DEP-5 copyright file matching rel's name."""
    found = "unknown"
    for text in (root / "usr/share/doc").glob("*/copyright"):
        for stanza in re.split(r"\n\s*\n", text.read_text(errors="replace")):
            files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", stanza, re.M)
            lic = re.search(r"^License:\s*(\S.*)", stanza, re.M)
            pats = files.group(1).split() if files else []
            pats = [p for p in pats if not p.startswith("debian/")]
            if lic and any(fnmatch.fnmatch(Path(rel).name, Path(p).name) for p in pats):
                found = lic.group(1).strip()
    return found


def largest(root: Path, pattern: str) -> Path:
    """Among the resolutions a package ships of one photo, the one with the most pixels
    (plasma's smaller "resolutions" are mostly symbolic links to the largest file)."""
    paths = sorted(p for p in root.glob(pattern) if not p.is_symlink())
    if not paths:
        raise FileNotFoundError(root / pattern)
    return max(paths, key=lambda p: np.prod(Image.open(p).size))


def dhash(img: Image.Image) -> int:
    """64-bit difference hash: finds the same photo at another resolution."""
    a = np.asarray(img.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.int16)
    return int("".join("1" if d else "0" for d in (a[:, 1:] > a[:, :-1]).ravel()), 2)


def cover(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize until the image just covers size, then crop its centre (a portrait: its middle)."""
    w, h = size
    scale = max(w / img.width, h / img.height)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    left, top = (img.width - w) // 2, (img.height - h) // 2
    return img.crop((left, top, left + w, top + h))


def sources(cache: Path):
    """Yield (name, image, manifest entry) for every allow-listed photo."""
    pkgs = {}
    for name, (pkg, pattern, split) in sorted(PHOTOS.items()):
        if pkg not in pkgs:
            pkgs[pkg] = fetch(cache, pkg)
        root, version = pkgs[pkg]
        path = largest(root, pattern)
        rel = str(path.relative_to(root))
        yield name, Image.open(path).convert("RGB"), {
            "package": pkg, "version": version, "path": rel, "licence": licence(root, rel),
            "split": split}
    try:
        import skimage
        from skimage import data
    except ImportError:
        print("scikit-image is not importable: its sample photos are skipped")
        return
    for name, lic in sorted(SKIMAGE.items()):
        yield name, Image.fromarray(getattr(data, name)()).convert("RGB"), {
            "package": f"scikit-image (skimage.data.{name})", "version": skimage.__version__,
            "path": f"skimage/data/{name}", "licence": lic, "split": "train"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data", type=Path, help="output folder (default: data)")
    out = ap.parse_args().out
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    manifest, hashes = [], {}
    for name, img, entry in sources(cache):
        h = dhash(img)
        twin = next((n for n, g in hashes.items() if bin(g ^ h).count("1") <= 2), None)
        if twin:
            print(f"skipping {name}: same photo as {twin}")
            continue
        hashes[name] = h
        split = entry["split"]
        dest = out / split / f"{name}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            if split == "test":
                small = cover(img, TEST_SIZE)
            else:
                small = img.copy()
                small.thumbnail((TRAIN_MAX_SIDE, TRAIN_MAX_SIDE), Image.LANCZOS)
            small.save(dest)
        manifest.append({"name": name, **entry, "original_size": list(img.size),
                         "size": list(Image.open(dest).size)})
    for split in ("train", "test"):  # drop outputs of photos no longer listed
        keep = {m["name"] for m in manifest if m["split"] == split}
        for stale in (out / split).glob("*.png"):
            if stale.stem not in keep:
                stale.unlink()
    for dest, (name, size) in SAMPLES.items():  # made from the 768x512 test crops
        dest.parent.mkdir(parents=True, exist_ok=True)
        img = Image.open(out / "test" / f"{name}.png").convert("RGB")
        cover(img, size).save(dest, optimize=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for split in ("train", "test"):
        ms = [m for m in manifest if m["split"] == split]
        px = sum(np.prod(m["size"]) for m in ms)
        print(f"{split}: {len(ms)} photos, {px / 1e6:.1f} Mpixel in {out / split}")
    for lic in sorted({(m["package"].split(" ")[0], m["licence"]) for m in manifest}):
        print("licence:", *lic)


if __name__ == "__main__":
    main()
