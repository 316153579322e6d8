"""One-shot encode and decode."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
from PIL import Image

from . import bitstream, entropy, modes, registry
from .image import pad, to_tensor
from .stream import DecodeStep, decode_stream


def encode(image, model: str = registry.DEFAULT_MODEL, rate: str | None = None, *,
           compact_header: bool | None = None, **options) -> bytes:
    """Encode an image into a layered progcodec stream, coarsest layer first.

    ``image``: a path, a PIL image, a uint8 numpy array ``(H, W[, C])`` or a float torch tensor
    ``(C, H, W)`` in [0, 1] (:mod:`progcodec.modes`). Its mode (RGB, L, RGBA, LA) comes back on
    decode; alpha travels losslessly in an extra ``alpha`` layer after the first model layer.
    ``options`` go to the model's ``analyze`` (those it lists in ``Model.options``, e.g.
    ``effort=`` for ``overfit``). ``compact_header``: write format 1.2, whose header is ~200
    bytes smaller (docs/bitstream.md §2.2) but which progcodec before 1.2 cannot read; None
    (default): the model's ``compact_header`` (on for ``overfit``, off for the rest).
    """
    m = registry.load(model, rate)
    unknown = sorted(set(options) - set(m.options))
    if unknown:
        takes = f"it takes {', '.join(m.options)}" if m.options else "it takes none"
        raise TypeError(f"model {m.name!r} has no encode option {unknown[0]!r}; {takes}")
    prep = modes.prepare(image, m.channels, m.name)
    x = to_tensor(prep.image, m.channels)
    height, width = x.shape[-2:]
    with torch.inference_mode():
        xp = pad(x, m.stride)
        analysis = m.analyze(xp, **options)
        frames, steps = code_layers(m, analysis, xp.shape[-2], xp.shape[-1])
    side, side_codec = bitstream.pack_side(analysis.side)
    compact = m.compact_header if compact_header is None else compact_header
    names, extra = list(m.layer_names), {"side_codec": side_codec, **modes.stream_extra(prep, m.channels)}
    if any(n > 1 for n in steps):
        extra["layer_steps"] = steps  # format 1.1: layers with several coding steps
    if prep.alpha is not None:  # format 1.1: the alpha plane as its own frame, after model layer 1
        at = min(1, len(frames))
        frames.insert(at, (modes.encode_alpha(prep.alpha), 0))
        names.insert(at, modes.ALPHA_NAME)
        extra["alpha"] = {"frame": at, "codec": modes.ALPHA_CODEC}
    header = bitstream.Header(
        model=m.name, rate=analysis.rate or m.rate, model_version=m.version, weights=m.digest,
        width=int(width), height=int(height), mode="RGB" if m.channels == 3 else "L",
        layer_sizes=(), layer_names=tuple(names), encoded_layers=len(names),
        coder=entropy.CODER_ID, side=side, extra=extra, compact=bool(compact),
    )
    return bitstream.write(header, frames)


def code_layers(m, analysis, height: int, width: int) -> tuple[list[tuple[bytes, int]], list[int]]:
    """Entropy-code every layer of ``analysis`` with the priors of a fresh decoding state.

    Returns ``(payload, prior_check)`` per layer and the number of coding steps of each.
    """
    if len(analysis.symbols) != m.layers:
        raise RuntimeError(f"{m.name}.analyze returned {len(analysis.symbols)} layers, declared {m.layers}")
    state = m.decoder(height, width, analysis.side)
    frames, steps = [], []
    for k, symbols in enumerate(analysis.symbols):
        n = state.coding_steps(k)
        parts = [symbols] if n == 1 else symbols
        if len(parts) != n:
            raise RuntimeError(f"{m.name}.analyze gave {len(parts)} steps for layer {k + 1}, its decoder {n}")
        writer = entropy.LayerWriter()
        for s, part in enumerate(parts):
            writer.code(part, state.step_prior(k, s))
            state.step_push(k, s, part)
        frames.append(writer.finish())
        steps.append(n)
    return frames, steps


def decode(data: bytes, layers: int | None = None) -> DecodeStep:
    """Decode ``layers`` layers (default: all) of a complete or cut stream; returns the last step.
    Only that step is rendered (the earlier layers' images would be thrown away)."""
    step = None
    for step in decode_stream([data], layers=layers, latest_only=True):
        pass
    return step


def info(data: bytes) -> bitstream.Header:
    """The header of a stream (only its first bytes are needed)."""
    reader = bitstream.Reader()
    events = reader.feed(data[: 1 << 22])
    if not events:
        reader.close()
    return events[0]


@dataclass(frozen=True)
class LayerCheck:
    """One entry of :func:`check`: ``status`` is ``intact``, ``damaged`` or ``missing``."""

    layer: int        # 1-based frame position
    name: str
    size: int         # payload bytes the header announces
    end: int          # stream offset just past the frame
    status: str
    detail: str = ""  # why damaged / how much of a cut frame is there


def check(data: bytes) -> tuple[bitstream.Header, list[LayerCheck], int]:
    """Verify every frame's index, length and CRC-32 without decoding (``progcodec info``).

    Returns the header, one :class:`LayerCheck` per entry of its layer table, and the number
    of bytes after the last frame. A damaged header raises its ``BitstreamError``. CRCs catch
    damaged bytes; a stream whose decoder computes another prior is only found by decoding.
    """
    header = info(data)
    pos, out = header.header_bytes(), []
    for k, (name, size) in enumerate(zip(header.layer_names, header.layer_sizes)):
        end = pos + bitstream.FRAME_OVERHEAD + size
        if end > len(data):
            have = max(0, len(data) - pos)
            out.append(LayerCheck(k + 1, name, size, end, "missing",
                                  f"file ends {have} of {end - pos} bytes into it" if have else "not in the file"))
        else:
            index, length, _ = bitstream._FRAME.unpack_from(data, pos)
            (crc,) = bitstream._CRC.unpack_from(data, end - 4)
            if index != k or length != size:
                out.append(LayerCheck(k + 1, name, size, end, "damaged",
                                      f"frame header says layer {index + 1}, {length} bytes"))
            elif zlib.crc32(memoryview(data)[pos : end - 4]) != crc:
                out.append(LayerCheck(k + 1, name, size, end, "damaged", "checksum mismatch"))
            else:
                out.append(LayerCheck(k + 1, name, size, end, "intact"))
        pos = end
    return header, out, max(0, len(data) - pos)
