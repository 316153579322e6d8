"""Network weights as integers: power-of-two steps searched per tensor, exact float64 use.

Every weight and bias tensor becomes ``round(w * 2**shift)`` at its own shift (v5; one per
network before); the decoder rebuilds
``int * 2**-shift`` in float64. With integer latents as inputs, dyadic weights and hidden
activations rounded to ``2**-ACT_BITS``, every value the entropy model computes is exact in
float64, so its output is the same on every thread count and BLAS.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from progcodec.entropy import MEAN_STEPS, SCALE_TABLE, scale_index

from . import nets

SHIFTS = range(2, 15)        # candidate steps 2**-2 .. 2**-14 common to a network
TENSOR_SHIFTS = range(0, 17)  # a tensor's own step, refined from there (v5)
MAX_SHIFT = 24
MAX_WEIGHT = 1 << 20         # |integer weight| a stream may carry
ACT_CLAMP = 4096.0
OFFSET_STEP = 8              # per-grid log-scale offsets travel as integers k: + k / 8
MAX_OFFSET = 64              # |k| (offsets within +-8)


def mlp_tensors(mlp) -> list[torch.Tensor]:
    return [t for layer in mlp.layers for t in (layer.weight, layer.bias)]


def synth_tensors(synth) -> list[torch.Tensor]:
    return [t for conv in (synth.c1, synth.c2, synth.r1, synth.r2) for t in (conv.weight, conv.bias)]


def mlp_shapes(inputs: int, hidden: int) -> list[tuple]:
    return [(hidden, inputs), (hidden,), (hidden, hidden), (hidden,), (2, hidden), (2,)]


def synth_shapes(hidden: int, channels: int) -> list[tuple]:
    return [(hidden, nets.GRIDS, 1, 1), (hidden,), (channels, hidden, 1, 1), (channels,),
            (channels, channels, 3, 3), (channels,), (channels, channels, 3, 3), (channels,)]


def _each(shift, n: int) -> list[int]:
    """One shift per tensor: ``shift`` as given (a list) or repeated (an int)."""
    return list(shift) if isinstance(shift, (list, tuple)) else [shift] * n


def to_ints(tensors, shift: int | list[int]) -> list[np.ndarray]:
    tensors = list(tensors)
    return [np.round(t.detach().double().numpy() * 2.0**s).astype(np.int32)
            for t, s in zip(tensors, _each(shift, len(tensors)), strict=True)]


def from_ints(ints, shift: int | list[int]) -> list[torch.Tensor]:
    ints = list(ints)
    return [torch.from_numpy(np.asarray(i, dtype=np.float64) * 2.0**-s)
            for i, s in zip(ints, _each(shift, len(ints)), strict=True)]


def coding_scale(ints: np.ndarray) -> int:
    """Table index of the Gaussian that codes a tensor's integers (its RMS)."""
    rms = float(np.sqrt(np.mean(np.asarray(ints, dtype=np.float64) ** 2))) if ints.size else 0.0
    return int(scale_index(np.array([max(rms, 0.11)]))[0])


def weight_bits(ints: list[np.ndarray]) -> float:
    """Estimated bits of integer tensors, each under a zero-mean Gaussian of its RMS scale."""
    bits = 0.0
    for a in ints:
        s = float(SCALE_TABLE[coding_scale(a)])
        t = torch.from_numpy(a.astype(np.float64))
        bits += float(nets.gaussian_bits(t, torch.zeros_like(t), torch.full_like(t, math.log(s))).sum())
    return bits


def exact_mlp(params: list[torch.Tensor], f: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """The entropy-model MLP on float64 (inputs, N) features with dyadic weights: exact.
    Column chunks keep the hidden values in cache (exact, so chunking cannot change them)."""
    n = len(params) // 2
    out = f.new_empty((params[-2].shape[0], f.shape[1]))
    scale = 2.0**nets.ACT_BITS
    for s in range(0, f.shape[1], chunk):
        h = f[:, s : s + chunk]
        for i in range(n):
            h = torch.addmm(params[2 * i + 1][:, None], params[2 * i], h)
            if i < n - 1:  # relu, clamp, round to 2**-ACT_BITS; in place
                h.clamp_(0.0, ACT_CLAMP).mul_(scale).round_().mul_(1 / scale)
        out[:, s : s + chunk] = h
    return out


def coded_mean(mu: torch.Tensor) -> torch.Tensor:
    """The exact model's means as the coder uses them (v4): snapped to multiples of 1/8, as
    ``progcodec.entropy.mean_parts`` does (both round half to even)."""
    return torch.round(mu * MEAN_STEPS) / MEAN_STEPS


def coded_bits(params: list[torch.Tensor], feats: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor) -> float:
    """Bits of latents ``y`` under the exact entropy model (means as coded), its log-scales
    plus ``offsets`` (one per latent)."""
    out = exact_mlp(params, feats)
    mu = coded_mean(out[0])
    return float(nets.gaussian_bits(y, mu, out[1] + offsets).sum())


def offset_ints(offsets: torch.Tensor) -> list[int]:
    """(2, GRIDS) fitted log-scale offsets -> the integers a stream carries (pass a, then b)."""
    k = torch.round(offsets.detach().double() * OFFSET_STEP).clamp(-MAX_OFFSET, MAX_OFFSET)
    return [int(v) for v in k.flatten()]


def refine_offsets(params, feats, y, counts, ks: list[int], reach: int = 8) -> list[int]:
    """Each grid's offset integer re-chosen (within ``reach`` of ``ks``) for the fewest bits of
    the integer latents under the quantized network; ``counts``: latents per grid."""
    out = exact_mlp(params, feats)
    mu = coded_mean(out[0])
    best, at = [], 0
    for n, k in zip(counts, ks):
        yy, mm, ll = y[at : at + n], mu[at : at + n], out[1][at : at + n]
        at += n
        cands = range(max(-MAX_OFFSET, k - reach), min(MAX_OFFSET, k + reach) + 1)
        best.append(min(cands, key=lambda c: (float(nets.gaussian_bits(yy, mm, ll + c / OFFSET_STEP).sum()), abs(c)))
                    if n else k)
    return best


def candidates(tensors, base, shift: int):
    """(weights as integers, integers to code) at one step: the weights themselves, or with a
    base (the warm-start networks) their difference from the base at that step, and the base
    itself unchanged (all-zero differences, almost free to code)."""
    n = len(tensors)
    keeps = (False,) if base is None else (False, True)
    return [tensor_choice(tensors, base, [shift] * n, [keep] * n) for keep in keeps]


def tensor_choice(tensors, base, shifts: list[int], keep: list[bool]):
    """(weights as integers, integers to code) with a step and, given a base, a choice per
    tensor: coded relative to the base, or the base itself unchanged (``keep``: all zeros)."""
    ints, coded = [], []
    for t, b, s, k in zip(tensors, base or [None] * len(tensors), shifts, keep):
        i = to_ints([t], s)[0]
        j = i if b is None else to_ints([b], s)[0]
        if b is not None and k:
            i = j
        ints.append(i)
        coded.append(i if b is None else i - j)
    return ints, coded


def in_range(ints, coded) -> bool:
    """Whether a decoder accepts these integers (a step too fine for large weights does not)."""
    return max(int(np.abs(a).max(initial=0)) for a in list(ints) + list(coded)) <= MAX_WEIGHT


def best_steps(cost, tensors, base):
    """The best step common to all ``tensors`` (``SHIFTS``, each with and without keeping the
    base), then refined per tensor; ``cost(shifts, ints, coded)`` to minimise. Returns
    (shifts, coded ints, weights as integers)."""
    cands = [(cost([s] * len(tensors), ints, coded), s, bool(kept)) for s in SHIFTS
             for kept, (ints, coded) in enumerate(candidates(tensors, base, s)) if in_range(ints, coded)]
    _, s, kept = min(cands, key=lambda c: c[0])
    return refine_steps(cost, tensors, base, s, kept)


def refine_steps(cost, tensors, base, shift: int, keep: bool, reach: int = 2, sweeps: int = 2):
    """Per-tensor steps (v5) from a network's best common ``shift``: coordinate descent over
    each tensor's shift within ``reach`` (and, with a base, keeping that tensor at the base),
    ``cost(shifts, ints, coded)`` to minimise. Returns (shifts, coded ints, weights as integers)."""
    n = len(tensors)
    shifts, keeps = [shift] * n, [keep] * n
    cur = cost(shifts, *tensor_choice(tensors, base, shifts, keeps))
    for _ in range(sweeps):
        moved = False
        for t in range(n):
            opts = [(shifts[t] + d, False) for d in range(-reach, reach + 1) if d and shifts[t] + d in TENSOR_SHIFTS]
            opts += [(shifts[t], not keeps[t])] if base is not None else []
            for s, k in opts:
                trial_s, trial_k = shifts[:t] + [s] + shifts[t + 1:], keeps[:t] + [k] + keeps[t + 1:]
                ints, coded = tensor_choice(tensors, base, trial_s, trial_k)
                if not in_range(ints, coded):
                    continue
                c = cost(trial_s, ints, coded)
                if c < cur:
                    cur, shifts, keeps, moved = c, trial_s, trial_k, True
        if not moved:
            break
    ints, coded = tensor_choice(tensors, base, shifts, keeps)
    return shifts, coded, ints


def search(model, x: torch.Tensor, ys: list[torch.Tensor], lmbda: float, base: dict | None = None) -> dict:
    """Pick each weight tensor's step minimising D + lambda * R (R: latent + weight bits per
    pixel): the best step common to a network, then per tensor (``refine_steps``).

    ``ys``: the final integer latents (float64). ``base``: ``{"a"|"b"|"s": tensors}`` of the
    warm-start networks, whose integers the coded ones are relative to. Returns
    ``{"a"|"b"|"s": (shifts per tensor, coded ints, weights as integers), "so": offset
    integers}`` (the per-grid log-scale offsets, re-chosen for the chosen entropy model).
    """
    from .fit import contexts, offset_columns

    npx = x.shape[-2] * x.shape[-1]
    base = base or {}
    best = {}
    ks = offset_ints(model.scale_offsets)
    fitted_offsets = torch.tensor(ks, dtype=torch.float64).view(2, -1) / OFFSET_STEP
    sizes = [tuple(y.shape[-2:]) for y in ys]
    best["so"] = []
    with torch.no_grad():
        ctx = contexts(ys)
        for i, (key, mlp, (feats, y)) in enumerate((("a", model.arm.a, ctx[0]), ("b", model.arm.b, ctx[1]))):
            row = ks[i * nets.GRIDS : (i + 1) * nets.GRIDS]
            off = offset_columns(fitted_offsets, sizes, key)

            def cost(shifts, ints, coded):
                return lmbda * (coded_bits(from_ints(ints, shifts), feats, y, off) + weight_bits(coded)) / npx

            best[key] = best_steps(cost, mlp_tensors(mlp), base.get(key))
            counts = [nets.pass_count(h, w, key) for h, w in sizes]
            best["so"] += refine_offsets(from_ints(best[key][2], best[key][0]), feats, y, counts, row)
        # float32, as the decoder renders (float64 3x3 convolutions made this search 10x slower)
        z = nets.upsample_grids([y.float() for y in ys], model.sizes[0])
        x32 = x.float()

        def cost(shifts, ints, coded):
            mse = float(F.mse_loss(nets.synthesize([p.float() for p in from_ints(ints, shifts)], z).clamp(0, 1), x32))
            return mse + lmbda * weight_bits(coded) / npx

        best["s"] = best_steps(cost, synth_tensors(model.synth), base.get("s"))
    return best
