"""Entropy coding of integer symbols with constriction's range coder.

Two model kinds reach the coder, both as *integer* frequency tables so encoder and decoder
agree bit for bit:

* ``Gaussian(scales)``: zero-mean discretized Gaussians. Scales are snapped to a fixed
  log-spaced table of ``len(SCALE_TABLE)`` entries (as CompressAI does); each entry has a
  16-bit integer pmf over ``[-L, L]`` plus an escape bin. Values outside ``[-L, L]`` are
  coded as escape + Exp-Golomb-style raw bits, so every int32 round-trips.
  ``Gaussian(scales, means)``: the same centred on ``means`` snapped to multiples of
  ``1 / MEAN_STEPS``: a symbol is coded relative to its mean's nearest integer under the
  table of the mean's fractional part (tables for fractions 1/8 .. 4/8; negative fractions
  code the mirrored value).
* ``Categorical(probs)``: per-symbol or shared probability vectors over ``{0..K-1}``,
  turned into integer tables deterministically (every symbol keeps a nonzero frequency).

All symbols of one layer share one range-coder stream (its payload: little-endian u32 words).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import constriction
import mpmath
import numpy as np

from . import errors
from .limits import LIMITS

CODER_ID = "range-v1/scales64-0.11-64/p16"
PRECISION = 16
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 64.0, 64
SCALE_TABLE = np.exp(np.linspace(np.log(SCALE_MIN), np.log(SCALE_MAX), SCALE_LEVELS))
_LOG_MIDS = (np.log(SCALE_TABLE[1:]) + np.log(SCALE_TABLE[:-1])) / 2
TAIL = 6.0  # support half-width in units of sigma before the escape bin
MEAN_STEPS = 8  # Gaussian means are snapped to multiples of 1/8
MEAN_LIMIT = float(1 << 30)  # |mean| beyond it (and inf) clamps; NaN means 0
CAT_TOTAL = 1 << 24

_model = constriction.stream.model
_queue = constriction.stream.queue
_UNIFORM_NBITS = _model.Uniform(64)
_UNIFORM_CHUNK = _model.Uniform(1 << 16)
_CATEGORICAL = _model.Categorical(perfect=False)


@dataclass(frozen=True)
class Gaussian:
    """Discretized Gaussian per symbol, zero-mean unless ``means`` (snapped to 1/8) are given;
    ``scales`` (and ``means``) broadcast to the symbols' shape."""

    scales: np.ndarray
    means: np.ndarray | None = None


@dataclass(frozen=True)
class Categorical:
    """Categorical over ``{0..K-1}``: ``probs`` per symbol, shape ``symbols.shape + (K,)``,
    or one shared ``(K,)`` vector together with the symbols' ``shape``."""

    probs: np.ndarray
    shape: tuple | None = None


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def symbol_shape(params) -> tuple:
    """Shape of the symbol array that ``params`` models."""
    if isinstance(params, Gaussian):
        if params.means is None:
            return tuple(_np(params.scales).shape)
        return tuple(np.broadcast_shapes(_np(params.scales).shape, _np(params.means).shape))
    if isinstance(params, Categorical):
        probs = _np(params.probs)
        if probs.ndim == 1:
            if params.shape is None:
                raise ValueError("a shared categorical table needs the symbols' shape")
            return tuple(params.shape)
        return tuple(probs.shape[:-1])
    raise TypeError(f"unknown entropy parameters {type(params).__name__}")


def scale_index(scales) -> np.ndarray:
    """Snap scales to the nearest (in log space) table entry; NaN/inf/<=0 clamp to the ends."""
    s = _np(scales).astype(np.float64)
    s = np.nan_to_num(s, nan=SCALE_MIN, posinf=SCALE_MAX, neginf=SCALE_MIN)
    logs = np.log(np.clip(s, SCALE_MIN, SCALE_MAX))
    return np.searchsorted(_LOG_MIDS, logs).astype(np.uint8)


def mean_parts(means) -> tuple[np.ndarray, np.ndarray]:
    """``(centre, k)``: means snapped to ``centre + k / MEAN_STEPS`` with integer centres
    (int64) and ``k`` in ``[-MEAN_STEPS / 2, MEAN_STEPS / 2)`` (int8)."""
    m = np.nan_to_num(_np(means).astype(np.float64), nan=0.0, posinf=MEAN_LIMIT, neginf=-MEAN_LIMIT)
    q = np.round(np.clip(m, -MEAN_LIMIT, MEAN_LIMIT) * MEAN_STEPS).astype(np.int64)
    centre = (q + MEAN_STEPS // 2) // MEAN_STEPS
    return centre, (q - MEAN_STEPS * centre).astype(np.int8)


TABLES = Path(__file__).parent / "data" / "gaussian-tables.npz"  # compute_table for every entry
MEAN_TABLES = TABLES.with_name("gaussian-mean-tables.npz")  # fractions 1..MEAN_STEPS/2 of 1/8
FRACTIONS = MEAN_STEPS // 2 + 1  # table sets: fraction 0 (TABLES), 1/8 .. 4/8 (MEAN_TABLES)


def _half(index: int) -> int:
    """L of table entry ``index``: its support is -L..L (then the escape bin)."""
    return int(np.ceil(TAIL * float(SCALE_TABLE[index])))


def compute_table(index: int, frac: int = 0) -> tuple[int, np.ndarray]:
    """``(L, freqs)`` for table entry ``index`` centred on ``frac / MEAN_STEPS``: 2L+1 bins
    for -L..L, then the escape bin.

    Computed with mpmath (not the platform's libm), so the integers are the same everywhere.
    """
    sigma = mpmath.mpf(float(SCALE_TABLE[index]))
    half = _half(index)
    with mpmath.workdps(30):
        mid = mpmath.mpf(0.5) - mpmath.mpf(frac) / MEAN_STEPS
        cdf = [mpmath.erfc(-(mpmath.mpf(r) + mid) / (sigma * mpmath.sqrt(2))) / 2 for r in range(-half - 1, half + 1)]
        probs = [cdf[i + 1] - cdf[i] for i in range(2 * half + 1)]
        probs.append(1 - (cdf[-1] - cdf[0]))
        n = len(probs)
        freqs = np.array([int(mpmath.floor(p * ((1 << PRECISION) - n))) + 1 for p in probs], dtype=np.int64)
    return half, freqs


def _entries(path: Path) -> list[tuple[int, int]]:
    """The (index, fraction) entries a tables file holds, in its order."""
    fracs = [0] if path == TABLES else range(1, FRACTIONS)
    return [(i, f) for f in fracs for i in range(SCALE_LEVELS)]


def write_tables(path: Path = TABLES) -> None:
    """Store every entry's table (``python scripts/gaussian_tables.py``); tests check it matches.
    ``TABLES``: the zero-mean tables; ``MEAN_TABLES``: those of the fractional means."""
    tables = [compute_table(i, f)[1] for i, f in _entries(path)]
    np.savez_compressed(path, coder=np.array(CODER_ID), freqs=np.concatenate(tables).astype(np.uint32),
                        offsets=np.cumsum([0] + [len(t) for t in tables]))


@lru_cache(maxsize=2)
def _stored(path: Path | None = None):
    """A shipped tables file (mpmath takes a fraction of a second per 64 tables, paid by a fresh
    process's first decode otherwise); ``None`` when absent, damaged, malformed or made for
    another coder. ``path``: ``TABLES`` (the default) or ``MEAN_TABLES``."""
    path = TABLES if path is None else path
    entries = _entries(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            coder, freqs, offsets = str(f["coder"]), f["freqs"].astype(np.int64), f["offsets"].astype(np.int64)
    except Exception:  # a damaged zip or array raises many kinds; the tables are then computed
        return None
    if coder != CODER_ID or offsets.shape != (len(entries) + 1,) or offsets[0] != 0 or offsets[-1] != len(freqs):
        return None
    for n, (i, _) in enumerate(entries):
        t = freqs[offsets[n] : offsets[n + 1]]
        if len(t) != 2 * _half(i) + 2 or t.min() < 1 or t.sum() > 1 << PRECISION:
            return None
    return freqs, offsets


@lru_cache(maxsize=None)
def gaussian_table(index: int, frac: int = 0) -> tuple[int, np.ndarray]:
    """``(L, freqs)`` for table entry ``index`` at mean fraction ``frac`` (0 .. MEAN_STEPS / 2)
    (:func:`compute_table`, read from ``TABLES`` or ``MEAN_TABLES``)."""
    stored = _stored(MEAN_TABLES) if frac else _stored()
    if stored is None:
        return compute_table(index, frac)
    freqs, offsets = stored
    n = index if frac == 0 else (frac - 1) * SCALE_LEVELS + index
    return _half(index), freqs[offsets[n] : offsets[n + 1]]


@lru_cache(maxsize=None)
def _gaussian_model(index: int, frac: int = 0):
    half, freqs = gaussian_table(index, frac)
    return half, _model.Categorical(freqs.astype(np.float64), perfect=False)


def quantize_probs(probs) -> np.ndarray:
    """Deterministic integer frequencies (sum <= 2**24, each >= 1) from float probabilities."""
    p = _np(probs).astype(np.float64)
    if p.ndim < 1 or p.shape[-1] < 2:
        raise ValueError("a categorical model needs at least 2 categories")
    if p.shape[-1] > LIMITS.max_alphabet:
        raise errors.LimitError(f"alphabet of {p.shape[-1]} exceeds {LIMITS.max_alphabet}")
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    total = p.sum(axis=-1, keepdims=True)
    k = p.shape[-1]
    p = np.where(total > 0, p / np.where(total > 0, total, 1), 1.0 / k)
    return (np.floor(p * (CAT_TOTAL - k)) + 1).astype(np.int64)


def quantize(params, shape=None) -> tuple[np.ndarray, bytes]:
    """Integer form of one part's parameters (what the coder sees) and its bytes for checks."""
    shape = symbol_shape(params) if shape is None else tuple(shape)
    if isinstance(params, Gaussian):
        idx = np.broadcast_to(scale_index(params.scales), shape)
        if params.means is None:
            return idx, b"G" + np.ascontiguousarray(idx).tobytes()
        centre, k = (np.broadcast_to(a, shape) for a in mean_parts(params.means))  # |centre| <= 2**30: fits i4
        check = b"M" + np.ascontiguousarray(idx).tobytes() + centre.astype("<i4").tobytes() + k.astype("i1").tobytes()
        return (idx, centre, k), check
    if isinstance(params, Categorical):
        freqs = quantize_probs(params.probs)
        if freqs.ndim > 1 and freqs.shape[:-1] != tuple(shape):
            raise ValueError(f"categorical probs of shape {freqs.shape} do not match symbols {tuple(shape)}")
        return freqs, b"C" + freqs.astype("<u4").tobytes()
    raise TypeError(f"unknown entropy parameters {type(params).__name__}")


def shape_bytes(shape) -> bytes:
    """What the prior check adds after each part's parameter bytes: ``b"S"`` + the shape (u32 each)."""
    return b"S" + np.asarray(tuple(shape), dtype="<u4").tobytes()


def prior_check(layer_params) -> int:
    """CRC-32 of a layer's quantized parameters and symbol shapes: equal on both sides or refused."""
    crc = 0
    for params in layer_params:
        crc = zlib.crc32(quantize(params)[1] + shape_bytes(symbol_shape(params)), crc)
    return crc


def legacy_prior_check(layer_params) -> int:
    """The prior check without shapes, as streams written before shapes were covered hold it."""
    crc = 0
    for params in layer_params:
        crc = zlib.crc32(quantize(params)[1], crc)
    return crc


class _Budget:
    """Refuses a layer whose decoded symbols need more bits than its payload holds.

    Each decoded symbol narrows the range coder's 64-bit range by at least its probability,
    and the decoder reads a 32-bit word each time the range drops below 2**32, so symbols
    carrying ``I`` bits need at least ``(I - 32) / 32`` words after the first two; the encoder
    writes all but at most one of the words its decoder reads. constriction pads an exhausted
    buffer with zeros instead of failing: this turns reading past the payload into an error.
    """

    def __init__(self, words: int):
        self.limit = 32.0 * words + 64.0
        self.bits = 0.0

    def add(self, bits: float) -> None:
        self.bits += float(bits)
        if self.bits > self.limit:
            raise errors.FormatError(
                f"entropy-coded payload ends before its symbols (they need over {self.bits:.0f} bits,"
                f" the payload holds {self.limit - 64:.0f}): truncated, corrupted or hostile layer")


def _bits(freqs: np.ndarray, totals) -> np.ndarray:
    """A lower bound on the information (bits) of symbols with these frequencies.

    The coder re-quantizes frequencies to 24 bits (every symbol keeps at least one unit), so its
    probability is bounded above by ``f / total`` plus two units, with a little slack.
    """
    p = np.minimum(1.0, freqs / np.asarray(totals, dtype=np.float64) * (1 + 1e-6) + 2.0**-22)
    return -np.log2(p)


@lru_cache(maxsize=None)
def _gaussian_bits(index: int, frac: int = 0) -> np.ndarray:
    _, freqs = gaussian_table(index, frac)
    return _bits(freqs.astype(np.float64), freqs.sum())


_CHUNK = 1 << 16  # symbols decoded between two budget checks


def _c(a: np.ndarray, dtype) -> np.ndarray:
    """A C-contiguous copy/view of ``a`` as ``dtype`` (what constriction requires)."""
    return np.ascontiguousarray(a, dtype=dtype)


def _zigzag(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.uint64)
    return ((u >> np.uint64(1)).astype(np.int64) ^ -(u & np.uint64(1)).astype(np.int64))


def _groups(table):
    """Flat ``(key, centre, mirrored)`` of a quantized Gaussian and its shape: key = fraction *
    SCALE_LEVELS + index (the index alone without means: the order streams before means were
    coded in)."""
    if not isinstance(table, tuple):
        idx = np.asarray(table)
        return idx.reshape(-1).astype(np.int64), None, None, idx.shape
    idx, centre, k = (np.asarray(a) for a in table)
    k = k.reshape(-1).astype(np.int64)
    return np.abs(k) * SCALE_LEVELS + idx.reshape(-1), centre.reshape(-1).astype(np.int64), k < 0, idx.shape


def _encode_gaussian(enc, symbols: np.ndarray, table) -> None:
    key, centre, mirror, _ = _groups(table)
    flat = symbols.reshape(-1).astype(np.int64)
    if centre is not None:
        flat = np.where(mirror, centre - flat, flat - centre)
    order = np.argsort(key, kind="stable")
    skey, svals = key[order], flat[order]
    bounds = np.searchsorted(skey, np.arange(FRACTIONS * SCALE_LEVELS + 1))
    escaped = []
    for g in np.unique(skey):
        half, model = _gaussian_model(int(g % SCALE_LEVELS), int(g // SCALE_LEVELS))
        v = svals[bounds[g] : bounds[g + 1]] + half
        out = (v < 0) | (v > 2 * half)
        if out.any():
            escaped.append(v[out] - half)
            v = np.where(out, 2 * half + 1, v)
        enc.encode(_c(v, np.int32), model)
    if escaped:
        u = _zigzag(np.concatenate(escaped))
        nbits = np.array([int(x).bit_length() for x in u], dtype=np.int32)
        enc.encode(nbits, _UNIFORM_NBITS)
        chunks = [(int(x) >> (16 * j)) & 0xFFFF for x, n in zip(u, nbits) for j in range((n + 15) // 16)]
        enc.encode(np.array(chunks, dtype=np.int32), _UNIFORM_CHUNK)


def _decode_gaussian(dec, table, budget: _Budget) -> np.ndarray:
    key, centre, mirror, shape = _groups(table)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    bounds = np.searchsorted(skey, np.arange(FRACTIONS * SCALE_LEVELS + 1))
    svals = np.empty(key.size, dtype=np.int64)
    esc_pos, esc_half = [], []
    for g in np.unique(skey):
        index, frac = int(g % SCALE_LEVELS), int(g // SCALE_LEVELS)
        half, model = _gaussian_model(index, frac)
        a, b = bounds[g], bounds[g + 1]
        bits = _gaussian_bits(index, frac)
        v = np.empty(int(b - a), dtype=np.int64)
        for c in range(0, int(b - a), _CHUNK):
            part = dec.decode(model, min(_CHUNK, int(b - a) - c)).astype(np.int64)
            budget.add(bits[part].sum())
            v[c : c + part.size] = part
        svals[a:b] = v - half
        hits = np.nonzero(v == 2 * half + 1)[0]
        if hits.size:
            esc_pos.append(hits + a)
            esc_half.append(np.full(hits.size, half))
    if esc_pos:
        pos, halves = np.concatenate(esc_pos), np.concatenate(esc_half)
        budget.add(6 * pos.size)
        nbits = dec.decode(_UNIFORM_NBITS, int(pos.size)).astype(np.int64)
        if (nbits < 1).any() or (nbits > 33).any():
            raise errors.FormatError("escape code out of range (corrupted or hostile payload)")
        nchunks = (nbits + 15) // 16
        budget.add(16 * int(nchunks.sum()))
        chunks = dec.decode(_UNIFORM_CHUNK, int(nchunks.sum())).astype(np.uint64)
        starts = np.concatenate([[0], np.cumsum(nchunks)[:-1]])
        u = np.zeros(pos.size, dtype=np.uint64)
        for j in range(int(nchunks.max())):
            has = nchunks > j
            u[has] |= chunks[starts[has] + j] << np.uint64(16 * j)
        vals = _unzigzag(u)
        # relative to a mean, a symbol may lie up to 2**32 from it
        if (np.abs(vals) <= halves).any() or (np.abs(vals) >= (2**31 if centre is None else 2**32)).any():
            raise errors.FormatError("escaped value inside the table support (corrupted payload)")
        svals[pos] = vals
    flat = np.empty(key.size, dtype=np.int64)
    flat[order] = svals
    if centre is not None:
        flat = np.where(mirror, centre - flat, centre + flat)
        if flat.size and (flat.min() < -(2**31) + 1 or flat.max() >= 2**31):
            raise errors.FormatError("decoded symbol outside int32 (corrupted or hostile payload)")
    return flat.astype(np.int32).reshape(shape)


def _encode_categorical(enc, symbols: np.ndarray, freqs: np.ndarray) -> None:
    k = freqs.shape[-1]
    flat = symbols.reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= k):
        raise ValueError(f"categorical symbol outside 0..{k - 1}")
    # constriction reads numpy buffers as C-contiguous whatever their strides: always copy in
    if freqs.ndim == 1:
        enc.encode(_c(flat, np.int32), _model.Categorical(_c(freqs, np.float64), perfect=False))
    else:
        enc.encode(_c(flat, np.int32), _CATEGORICAL, _c(freqs.reshape(-1, k), np.float64))


def _decode_categorical(dec, shape, freqs: np.ndarray, budget: _Budget) -> np.ndarray:
    k, n = freqs.shape[-1], int(np.prod(shape, dtype=np.int64))
    out = np.empty(n, dtype=np.int32)
    if freqs.ndim == 1:
        model = _model.Categorical(_c(freqs, np.float64), perfect=False)
        bits = _bits(freqs.astype(np.float64), freqs.sum())
        for c in range(0, n, _CHUNK):
            part = np.asarray(dec.decode(model, min(_CHUNK, n - c)), dtype=np.int64)
            budget.add(bits[part].sum())
            out[c : c + part.size] = part
    else:
        rows = freqs.reshape(-1, k)
        for c in range(0, n, _CHUNK):
            block = rows[c : c + _CHUNK]
            part = np.asarray(dec.decode(_CATEGORICAL, _c(block, np.float64)), dtype=np.int64)
            f = block[np.arange(part.size), part].astype(np.float64)
            budget.add(_bits(f, block.sum(axis=-1)).sum())
            out[c : c + part.size] = part
    return out.reshape(shape)


class LayerWriter:
    """Range-codes the steps of one layer into one payload (``encode_layer`` is one step).

    A layer of n > 1 steps is written as ``n - 1`` little-endian u32 prior checks (steps
    1 .. n-1) followed by the coder's words; step 0's check goes into the frame header.
    """

    def __init__(self):
        self.enc = _queue.RangeEncoder()
        self.checks: list[int] = []

    def code(self, symbols: list[np.ndarray], params: list) -> int:
        """Code one step's parts; returns its prior check."""
        if len(symbols) != len(params):
            raise ValueError(f"layer has {len(symbols)} symbol arrays but {len(params)} parameter sets")
        crc = 0
        for sym, par in zip(symbols, params):
            sym = np.asarray(sym)
            if sym.dtype.kind not in "iu":
                raise TypeError(f"symbols must be integers, got {sym.dtype}")
            if sym.size and (sym.min() < -(2**31) + 1 or sym.max() >= 2**31):
                raise ValueError("symbols must fit in int32")
            if tuple(sym.shape) != symbol_shape(par):
                raise ValueError(f"symbols of shape {sym.shape} but parameters for {symbol_shape(par)}")
            table, check = quantize(par)
            crc = zlib.crc32(check + shape_bytes(sym.shape), crc)
            if isinstance(par, Gaussian):
                _encode_gaussian(self.enc, sym, table)
            else:
                _encode_categorical(self.enc, sym, table)
        self.checks.append(crc)
        return crc

    def finish(self) -> tuple[bytes, int]:
        """``(payload, prior_check of step 0)``."""
        prefix = np.array(self.checks[1:], dtype="<u4").tobytes()
        return prefix + self.enc.get_compressed().astype("<u4").tobytes(), self.checks[0] if self.checks else 0


class LayerReader:
    """Decodes the ``steps`` steps of one layer's payload in order (inverse of ``LayerWriter``)."""

    def __init__(self, payload: bytes, check: int | None = None, steps: int = 1):
        if len(payload) % 4:
            raise errors.FormatError("entropy-coded payload is not a whole number of 32-bit words")
        words = _c(np.frombuffer(payload, dtype="<u4"), np.uint32)
        if words.size < steps - 1:
            raise errors.FormatError(f"layer payload lacks the prior checks of its {steps} coding steps")
        self.checks = [check] + [int(c) for c in words[: steps - 1]]
        self.steps, self.step = steps, 0
        words = _c(words[steps - 1 :], np.uint32)
        self.budget = _Budget(words.size)
        try:
            self.dec = _queue.RangeDecoder(words)
        except Exception as exc:
            raise errors.FormatError(f"entropy-coded payload is malformed: {exc}") from None

    def decode(self, params: list) -> list[np.ndarray]:
        """The next step's symbols; its prior is checked first (``PriorMismatchError``)."""
        if self.step >= self.steps:
            raise errors.FormatError("more coding steps than the layer declares")
        check, last = self.checks[self.step], self.step == self.steps - 1
        tables, crc, legacy = [], 0, 0
        shapes = [symbol_shape(par) for par in params]
        for par, shape in zip(params, shapes):
            table, chk = quantize(par)
            tables.append(table)
            crc = zlib.crc32(chk + shape_bytes(shape), crc)
            legacy = zlib.crc32(chk, legacy)  # streams written before the check covered shapes
        if check is not None and check not in ((crc, legacy) if self.steps == 1 else (crc,)):
            where = f" (coding step {self.step + 1} of {self.steps})" if self.steps > 1 else ""
            raise errors.PriorMismatchError(
                f"the decoder's prior differs from the encoder's{where} (different weights, software or"
                " numerics); refusing to decode garbage")
        try:
            out = []
            for par, shape, table in zip(params, shapes, tables):
                if isinstance(par, Gaussian):
                    out.append(_decode_gaussian(self.dec, table, self.budget))
                else:
                    out.append(_decode_categorical(self.dec, tuple(shape), table, self.budget))
            if last and not self.dec.maybe_exhausted():
                raise errors.FormatError(
                    "entropy-coded payload does not end with its symbols (corrupted or hostile layer)")
        except errors.BitstreamError:
            raise
        except Exception as exc:  # the coder library refuses malformed data
            raise errors.FormatError(f"entropy-coded payload is malformed: {exc}") from None
        self.step += 1
        return out


def encode_layer(symbols: list[np.ndarray], params: list) -> tuple[bytes, int]:
    """Range-code one layer's parts; returns ``(payload, prior_check)``."""
    writer = LayerWriter()
    writer.code(symbols, params)
    return writer.finish()


def decode_layer(payload: bytes, params: list, check: int | None = None) -> list[np.ndarray]:
    """Inverse of :func:`encode_layer` given the same parameters."""
    return LayerReader(payload, check).decode(params)
