"""The authors' own QRes-VAE checkpoints (lossy-vae ``qres34m``, ``qres17m``) as progcodec plugins.

``progcodec import-weights qres34m-lmb64.pt`` reads an official checkpoint without unpickling
code (``torch.load(weights_only=True)``), checks every tensor's name and shape against the
architecture, renames them onto :class:`~.model.OfficialQResVAE` (``official_key_map``) and
writes float32 safetensors plus a JSON of the config into the weights folder:
``$PROGCODEC_WEIGHTS`` or ``platformdirs.user_data_dir("progcodec")/weights``, as
``<name>/<rate>.safetensors``; never into site-packages. The plugins ``qres34m`` and
``qres17m`` offer the rate points imported there; the digest of the written file goes into
every stream, so a receiver without the same weights gets ``WeightsMismatchError`` (other
weights) or ``UnknownModelError`` (none imported).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from progcodec import errors
from progcodec.plugin import Model

from .model import OfficialConfig, OfficialQResVAE, official_key_map, official_preset
from .plugin import QResVAE

ARCHS = ("qres34m", "qres17m")
IGNORED = re.compile(r"(^|\.)discrete_gaussian\.|(^|\.)_dummy$")  # entropy-coder buffers, not weights


def weights_dir() -> Path:
    """Where imported weights live: ``$PROGCODEC_WEIGHTS`` or the user data folder."""
    env = os.environ.get("PROGCODEC_WEIGHTS")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("progcodec")) / "weights"


def available_rates(arch: str) -> tuple[str, ...]:
    folder = weights_dir() / arch
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.stem for p in folder.glob("*.safetensors") if p.with_suffix(".json").is_file()),
                        key=_rate_order))


def _rate_order(rate: str):
    m = re.fullmatch(r"lmb(\d+)", rate)
    return (0, int(m.group(1)), "") if m else (1, 0, rate)


def import_hint(arch: str, rate: str | None = None) -> str:
    example = f"{arch}-{rate or 'lmb64'}.pt"
    return (f"import an official lossy-vae checkpoint first: progcodec import-weights {example}"
            f" (weights folder: {weights_dir()})")


def guess_name_rate(path: Path) -> tuple[str | None, str | None]:
    m = re.search(r"(qres34m|qres17m)[-_]?(lmb\d+)?", path.name)
    return (m.group(1), m.group(2)) if m else (None, None)


def read_checkpoint(path: Path) -> dict:
    """The state dict of an official ``.pt`` (``{"model": state_dict, ...}`` or a bare state dict)."""
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as exc:
            raise errors.WeightsMismatchError(f"{path} is not a readable safetensors file: {exc}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickled code, a zip that is not torch's, a truncated file...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise errors.WeightsMismatchError(
            f"{path} is not a plain tensor checkpoint (read with torch.load(weights_only=True)): {first}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        raise errors.WeightsMismatchError(f"{path} holds no state dict (expected {{'model': state_dict}})")
    bad = next((k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise errors.WeightsMismatchError(f"{path}: entry {bad!r} of the state dict is not a tensor")
    if all(k.startswith("module.") for k in obj):  # saved from DistributedDataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def convert(state: dict, config: OfficialConfig, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Their state dict -> ours (float32), refusing the first key that is missing, misshapen or foreign."""
    mapping = official_key_map(config)
    expected = OfficialQResVAE(config).state_dict()
    what = f"{config.name} (ch {config.ch})"
    out = {}
    for theirs, ours in mapping.items():
        if theirs not in state:
            raise errors.WeightsMismatchError(f"{source} is not {what}: key {theirs!r} is missing")
        t = state[theirs]
        if tuple(t.shape) != tuple(expected[ours].shape):
            raise errors.WeightsMismatchError(
                f"{source} is not {what}: key {theirs!r} has shape {tuple(t.shape)}, expected {tuple(expected[ours].shape)}")
        if not t.is_floating_point():
            raise errors.WeightsMismatchError(f"{source}: key {theirs!r} is {t.dtype}, not floating point")
        t = t.detach().to(torch.float32).contiguous()
        if not torch.isfinite(t).all():
            raise errors.WeightsMismatchError(f"{source}: key {theirs!r} holds NaN or infinite values")
        out[ours] = t
    extra = next((k for k in state if k not in mapping and not IGNORED.search(k)), None)
    if extra is not None:
        raise errors.WeightsMismatchError(f"{source} is not {what}: unexpected key {extra!r}")
    return out


def import_weights(src, name: str | None = None, rate: str | None = None, ch: int | None = None,
                   dest: Path | None = None) -> Path:
    """Convert an official checkpoint (a path, or an already loaded state dict) into the weights folder."""
    if isinstance(src, (str, Path)):
        src = Path(src)
        g_name, g_rate = guess_name_rate(src)
        name, rate = name or g_name, rate or g_rate
        label, state = str(src), read_checkpoint(src)
    else:
        label, state = "state dict", dict(src)
    if name not in ARCHS:
        raise errors.UnknownModelError(f"say which architecture {label} is: --name {' or --name '.join(ARCHS)}")
    if not rate or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", rate):
        raise errors.UnknownModelError(f"say which rate point {label} is, e.g. --rate lmb64 (letters, digits, . _ -)")
    config = official_preset(name, ch)
    ours = convert(state, config, label)
    folder = (dest or weights_dir()) / name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{rate}.safetensors"
    m = re.fullmatch(r"lmb(\d+)", rate)
    meta = {"arch": name, "rate": rate, "lmbda": int(m.group(1)) if m else None,
            "config": config.to_dict(), "source": Path(label).name,
            "parameters": sum(t.numel() for t in ours.values()),
            "note": "converted from the official lossy-vae checkpoint by progcodec import-weights"}
    for path, write in ((target, lambda p: save_file(ours, p)),
                        (target.with_suffix(".json"), lambda p: Path(p).write_text(json.dumps(meta, indent=1) + "\n"))):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


_ONE_THREAD = threading.Lock()


@contextmanager
def one_thread():
    """Run torch on one intra-op thread (process-wide lock, count restored after).

    float32 kernels are not the same function of their inputs at every thread count: oneDNN's
    1x1 and 1x1-depthwise convolutions and small GEMMs split their sums differently with 2
    threads than with 1 (measured on this CPU, torch 2.13), and a prior scale that
    moves by one ulp across a table boundary is a prior mismatch. With one thread the chain is
    one fixed sequence of float32 operations on encoder and decoder alike, 13x cheaper than
    the float64 chain the small ``qres-vae`` uses (44 s -> 3.3 s for qres34m at 768x512).
    """
    with _ONE_THREAD:
        before = torch.get_num_threads()
        if before != 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if before != 1:
                torch.set_num_threads(before)


class _Block:
    def __init__(self, block):
        self.block = block

    def prior_params(self, feature):
        with one_thread():
            return self.block.prior_params(feature)


class _OneThreadChain:
    """The top-down chain that yields the priors, in float32, on one thread (see ``one_thread``)."""

    def __init__(self, top_down):
        self.top_down = top_down
        self.blocks = [_Block(b) for b in top_down.blocks]

    def start(self, height: int, width: int):
        return self.top_down.start(height, width)

    def advance(self, k, h, z):
        with one_thread():
            return self.top_down.advance(k, h, z)

    def complete(self, k, feature):
        """A render on one thread too: bit-identical images whatever the thread count."""
        with one_thread():
            return self.top_down.complete(k, feature)


class _Rates:
    """``rates`` / ``default_rate`` read from the weights folder, on the class and on instances."""

    def __init__(self, default: bool = False):
        self.default = default

    def __get__(self, obj, owner):
        rates = available_rates(owner.arch)
        if not self.default:
            return rates
        return "lmb64" if "lmb64" in rates else (rates[0] if rates else "")


class _Official(QResVAE):
    arch = ""
    version = "1"
    # qres34m: measured 676 B/px at 1024x1024 (benchmarks/hostile.py --measure, random weights), +30%
    decode_bytes_per_pixel = 900
    rates = _Rates()
    default_rate = _Rates(default=True)

    def __init__(self, rate: str | None = None):
        rate = rate or self.default_rate
        if rate not in self.rates:
            have = ", ".join(self.rates) or "none"
            raise errors.UnknownModelError(
                f"model {self.name!r} has no imported rate point {rate or '(any)'!r} (imported: {have}); "
                + import_hint(self.arch, rate or None))
        Model.__init__(self, rate)
        path = weights_dir() / self.arch / f"{rate}.safetensors"
        meta = json.loads(path.with_suffix(".json").read_text())
        config = OfficialConfig.from_dict(meta["config"])
        if config != official_preset(self.arch, config.ch):
            raise errors.PluginLoadError(f"{path.with_suffix('.json')} does not describe {self.arch}")
        self.net = OfficialQResVAE(config)
        try:
            self.net.load_state_dict(load_file(str(path)), strict=True)
        except Exception as exc:
            raise errors.PluginLoadError(f"{path} does not fit {self.arch} (ch {config.ch}): "
                                         f"{str(exc).splitlines()[0]}; re-run progcodec import-weights") from None
        self.net.eval().requires_grad_(False)
        self.top_down = _OneThreadChain(self.net.decoder)
        self.lmbda = meta.get("lmbda")
        self.weights_path = path


    @classmethod
    def no_rates_hint(cls) -> str:
        return import_hint(cls.arch)

    @classmethod
    def claims_checkpoint(cls, path) -> bool:
        return guess_name_rate(Path(path))[0] == cls.arch

    @classmethod
    def import_weights(cls, path, rate: str | None = None, ch: int | None = None) -> tuple[Path, str]:
        target = import_weights(path, name=cls.arch, rate=rate, ch=ch)
        return target, target.stem


def _layer_names(arch: str) -> tuple[str, ...]:
    c = official_preset(arch)
    strides = [s for s, n in zip(c.dec_strides, c.latents) for _ in range(n)]
    return tuple(f"z{i + 1}-1/{s}" for i, s in enumerate(strides))


class QRes34M(_Official):
    name = arch = "qres34m"
    layer_names = _layer_names("qres34m")
    description = "QRes-VAE qres34m, the authors' checkpoints (import with progcodec import-weights)"


class QRes17M(_Official):
    name = arch = "qres17m"
    layer_names = _layer_names("qres17m")
    description = "QRes-VAE qres17m (CelebA 64x64), the authors' checkpoints (progcodec import-weights)"
