"""Build the official lossy-vae QRes-VAE from its own source and record an exactness fixture.

    python -m progcodec_plugins.qres_vae.make_fixture SOURCE [--out tests/data] [--ch 4]

SOURCE is the official repository (github.com/duanzhiihao/lossy-vae): a checkout, or a bare git
directory (e.g. the mirror the project's ``fetch`` tool gives), read at ``HEAD``. Nothing of it
is copied into this tree: its modules are compiled in memory from that source.

Its imports that are not installable here are replaced by minimal shims defined below, and
this is the part of the proof that rests on reading, not on running their code:

* ``timm.models.convnext.ConvNeXtBlock``: the attributes their ``MyConvNeXtBlock.forward``
  uses (``conv_dw`` depthwise with padding (k-1)//2 and bias, ``norm`` = LayerNorm eps 1e-6,
  ``mlp`` = fc1/GELU/fc2, ``gamma`` of shape (dim,), ``use_conv_mlp`` False, ``drop_path``
  identity), as in timm's ConvNeXtBlock; the forward itself is theirs.
* ``compressai.entropy_models.GaussianConditional`` and ``compressai.ops.LowerBound``: only
  what evaluation touches: ``quantize`` (round(x - mean) + mean), the discretized-Gaussian
  likelihood with the scale bounded below at 0.11 and the likelihood at 1e-9 (CompressAI's
  ``_likelihood``), and no-op scale tables. No range coder: the symbols are what we check.
* ``torchvision.transforms.functional``: imported for their file helpers only (unused here).

With a fixed seed, at width ``ch`` (the official qres34m is ch 96, qres17m ch 72), every
parameter is re-drawn at a useful magnitude (their init zeroes biases and the prior's last
conv and sets layer scales to 1e-6, which would make a weak test). The model runs in eval mode
on a small 8-bit image; the fixture holds its state dict (their names), the image, and per
latent block the posterior mean, prior mean, prior scale and rate (bits, their eval-mode
likelihood), and the reconstruction in [0, 1] (their ``process_output``):
``qres_official_<arch>.safetensors`` + ``.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FILES = ["lvae/models/common.py", "lvae/models/entropy_coding.py", "lvae/models/registry.py",
         "lvae/models/qresvae/model.py", "lvae/models/qresvae/zoo.py"]
SIZES = {"qres34m": (64, 64), "qres17m": (64, 64)}  # (height, width) of the fixture image (kept small)


def read_source(source: Path, rel: str) -> str:
    if (source / rel).is_file():
        return (source / rel).read_text()
    return subprocess.run(["git", f"--git-dir={source}", "show", f"HEAD:{rel}"], check=True,
                          capture_output=True, text=True).stdout


# ---------------------------------------------------------------- shims (see module docstring)
class _LowerBound(nn.Module):
    def __init__(self, bound):
        super().__init__()
        self.register_buffer("bound", torch.tensor([float(bound)]))

    def forward(self, x):
        return torch.max(x, self.bound)


class _GaussianConditional(nn.Module):
    def __init__(self, scale_table, *args, scale_bound=0.11, tail_mass=1e-9, **kwargs):
        super().__init__()
        self.lower_bound_scale = _LowerBound(scale_bound)
        self.likelihood_lower_bound = _LowerBound(1e-9)

    def update_scale_table(self, scale_table, force=False):
        return True

    def update(self):
        return True

    def quantize(self, inputs, mode, means=None):
        out = inputs.clone()
        if means is not None:
            out -= means
        out = torch.round(out)
        if mode == "dequantize":
            return out + means if means is not None else out
        if mode == "symbols":
            return out.int()
        raise NotImplementedError(mode)

    @staticmethod
    def _standardized_cumulative(x):
        return 0.5 * torch.erfc(-(2 ** -0.5) * x)

    def forward(self, inputs, scales, means=None, training=None):
        assert not self.training, "the shim only evaluates"
        outputs = self.quantize(inputs, "dequantize", means)
        values = (outputs - means if means is not None else outputs).abs()
        scales = self.lower_bound_scale(scales)
        upper = self._standardized_cumulative((0.5 - values) / scales)
        lower = self._standardized_cumulative((-0.5 - values) / scales)
        return outputs, self.likelihood_lower_bound(upper - lower)


class _Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _ConvNeXtBlock(nn.Module):
    def __init__(self, in_chs, out_chs=None, kernel_size=7, mlp_ratio=4, ls_init_value=1e-6, **kw):
        super().__init__()
        dim = out_chs or in_chs
        self.use_conv_mlp = False
        self.conv_dw = nn.Conv2d(in_chs, dim, kernel_size, padding=(kernel_size - 1) // 2, groups=in_chs)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(mlp_ratio * dim))
        self.gamma = nn.Parameter(ls_init_value * torch.ones(dim))
        self.drop_path = nn.Identity()


def install_shims() -> None:
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    module("compressai"), module("compressai.ops", LowerBound=_LowerBound)
    module("compressai.entropy_models", GaussianConditional=_GaussianConditional)
    module("timm"), module("timm.models"), module("timm.models.convnext", ConvNeXtBlock=_ConvNeXtBlock)
    module("torchvision"), module("torchvision.transforms")
    module("torchvision.transforms.functional")


def load_official(source: Path):
    """Their ``lvae.models.qresvae.zoo`` module, compiled from ``source``."""
    install_shims()
    for pkg in ("lvae", "lvae.models", "lvae.models.qresvae"):
        m = types.ModuleType(pkg)
        m.__path__ = []
        sys.modules[pkg] = m
    for rel in FILES:
        name = rel[:-3].replace("/", ".")
        m = types.ModuleType(name)
        m.__file__ = f"<{source}>/{rel}"
        sys.modules[name] = m
        exec(compile(read_source(source, rel), m.__file__, "exec"), m.__dict__)
        parent, _, leaf = name.rpartition(".")
        setattr(sys.modules[parent], leaf, m)
    return sys.modules["lvae.models.qresvae.zoo"]


# ---------------------------------------------------------------- the fixture
def build(zoo, arch: str, ch: int, source: Path):
    code = read_source(source, "lvae/models/qresvae/zoo.py")
    default = {"qres34m": "ch = 96", "qres17m": "ch = 72"}[arch]
    start = code.index(f"def {arch}(")
    end = code.find("\n@register_model", start)
    fn = code[start:end if end > 0 else None]
    assert fn.count(default) == 1, f"{arch}: expected one '{default}' in their zoo function"
    ns = dict(zoo.__dict__)
    exec(compile(fn.replace(default, f"ch = {ch}"), f"<{arch} at ch={ch}>", "exec"), ns)
    return ns[arch](pretrained=False)


def randomize(model: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.3 + 0.7 * torch.rand(p.shape, generator=gen))
            elif name.endswith("bias") and p.dim() == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            elif name.endswith("weight") and p.dim() == 1:  # LayerNorm
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name == "decoder.bias":
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))  # 1/sqrt(fan-in)
        for block in model.decoder.dec_blocks:
            if hasattr(block, "posterior"):
                block.posterior.c4.weight.mul_(3.0)  # posterior means spread over several bins
                z = block.prior.c4.bias.numel() // 2
                block.prior.c4.bias[z:] = torch.linspace(-3.0, 1.0, z)  # log-scales from 0.1 to ~3


def image(h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h) / h, torch.arange(w) / w, indexing="ij")
    base = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + 3 * c) * torch.cos(4 * yy + c) for c in range(3)])
    noisy = base + 0.05 * torch.randn(base.shape, generator=gen)
    return torch.round(noisy.clamp(0, 1) * 255).to(torch.uint8)[None]


def run(model, im8: torch.Tensor) -> dict[str, torch.Tensor]:
    """Their evaluation forward (model.forward without the loss), recording every block."""
    out: dict[str, torch.Tensor] = {}
    blocks = [b for b in model.decoder.dec_blocks if hasattr(b, "transform_prior")]
    for k, block in enumerate(blocks):
        def prior(feature, _block=block, _k=k, _orig=block.transform_prior):
            feature, pm, plogv = _orig(feature)
            out[f"prior_mean.{_k}"], out[f"prior_scale.{_k}"] = pm.clone(), torch.exp(plogv)
            return feature, pm, plogv
        block.transform_prior = prior
        block.posterior.register_forward_hook(
            lambda mod, args, res, _k=k: out.__setitem__(f"posterior_mean.{_k}", res.clone()))
    im = im8.float() / 255
    with torch.no_grad():
        x = model.preprocess_input(im)
        feature, stats = model.decoder(model.encoder(x), get_latents=True)
        x_hat = model.out_net.mean(feature)
        out["reconstruction"] = model.process_output(x_hat)
    for k, st in enumerate(stats):  # their kl is -ln(likelihood) per element
        out[f"rate_bits.{k}"] = (st["kl"].double().sum() / math.log(2)).reshape(1)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="official lossy-vae checkout or bare git dir")
    ap.add_argument("--out", type=Path, default=Path("tests/data"))
    ap.add_argument("--ch", type=int, default=4, help="width (official: 96 for qres34m, 72 for qres17m)")
    ap.add_argument("--arch", nargs="+", default=["qres34m", "qres17m"])
    ap.add_argument("--seed", type=int, default=14)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from safetensors.torch import save_file

    zoo = load_official(a.source)
    commit = subprocess.run(["git", f"--git-dir={a.source}" if not (a.source / "lvae").is_dir() else
                             f"--git-dir={a.source / '.git'}", "rev-parse", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    for arch in a.arch:
        gen = torch.Generator().manual_seed(a.seed)
        torch.manual_seed(a.seed)
        model = build(zoo, arch, a.ch, a.source)
        randomize(model, gen)
        model.eval()
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        im8 = image(*SIZES[arch], gen)
        outputs = run(model, im8)
        tensors = {f"state.{k}": v for k, v in state.items()}
        tensors.update({f"out.{k}": v.contiguous() for k, v in outputs.items()})
        tensors["image"] = im8.contiguous()
        a.out.mkdir(parents=True, exist_ok=True)
        path = a.out / f"qres_official_{arch}.safetensors"
        save_file(tensors, str(path))
        symbols = [torch.round(outputs[f"posterior_mean.{k}"] - outputs[f"prior_mean.{k}"])
                   for k in range(len(model.decoder.dec_blocks)) if f"posterior_mean.{k}" in outputs]
        meta = {"arch": arch, "ch": a.ch, "seed": a.seed, "image_hw": list(SIZES[arch]),
                "source": "github.com/duanzhiihao/lossy-vae", "commit": commit,
                "torch": torch.__version__, "shims": ["timm ConvNeXtBlock", "compressai GaussianConditional",
                                                      "compressai LowerBound", "torchvision (unused)"],
                "nonzero_symbols": int(sum((s != 0).sum().item() for s in symbols)),
                "symbols": int(sum(s.numel() for s in symbols)),
                "rate_bits": [round(outputs[f"rate_bits.{k}"].item(), 3) for k in range(len(symbols))]}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"{path}: {path.stat().st_size} bytes, {meta['nonzero_symbols']}/{meta['symbols']} "
              f"nonzero symbols, {sum(meta['rate_bits']):.0f} bits")


if __name__ == "__main__":
    main()
