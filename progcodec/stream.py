"""Streaming decoder: bytes in any split -> one refined image per completed layer."""
from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import AsyncIterable, Iterable, Iterator

import torch

from . import bitstream, entropy, errors, modes, registry
from .image import padded_size, to_pil
from .limits import LIMITS, Limits


@dataclass
class DecodeStep:
    """One refinement: the image after ``layer`` of ``layers_total`` layers."""

    tensor: torch.Tensor          # float (C, H, W) in [0, 1], original size; C fits the mode (L 1, LA 2, RGB 3, RGBA 4)
    layer: int                    # 1-based
    layers_total: int             # layers in the stream
    bytes_consumed: int           # stream bytes read up to the end of this layer
    header: bitstream.Header
    _image: object = field(default=None, repr=False)

    @property
    def image(self):
        """The refinement as a PIL image (converted on first access)."""
        if self._image is None:
            self._image = to_pil(self.tensor)
        return self._image

    @property
    def bpp(self) -> float:
        """Bits per pixel of the stream read so far."""
        return 8.0 * self.bytes_consumed / (self.header.width * self.header.height)

    @property
    def final(self) -> bool:
        return self.layer == self.layers_total


def _guard(what: str, fn, *args):
    """Run plugin code; anything it raises on stream data becomes a BitstreamError."""
    try:
        return fn(*args)
    except errors.ProgcodecError:
        raise
    except Exception as exc:
        raise errors.FormatError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def open_model(header: bitstream.Header):
    """The installed model a header names, checked against the header's weights digest."""
    model = registry.load(header.model, header.rate)
    if not model.accepts_weights(header.weights):
        raise errors.WeightsMismatchError(
            f"stream was encoded with {header.model} rate {header.rate} weights {header.weights}"
            f" (model version {header.model_version}); installed weights are {model.digest}"
            f" (version {model.version})")
    if bitstream.MODES[header.mode] != model.channels:
        raise errors.HeaderError(f"mode {header.mode} does not fit model {model.name} ({model.channels} channels)")
    encoded, names = modes.model_layers(header)  # without a format-1.1 alpha frame
    if encoded != model.layers or names != tuple(model.layer_names[: len(names)]):
        raise errors.HeaderError(f"layer table does not match model {model.name} ({model.layers} layers)")
    steps = layer_steps(header)
    if steps is not None and len(steps) != encoded:
        raise errors.HeaderError(f"layer_steps lists {len(steps)} layers; the stream encodes {encoded}")
    if header.coder != entropy.CODER_ID:
        raise errors.HeaderError(f"entropy coder {header.coder!r} is not supported (this build: {entropy.CODER_ID})")
    return model


MAX_STEPS = 1 << 12  # coding steps one layer may declare (format 1.1 ``layer_steps``)


def layer_steps(header: bitstream.Header) -> list[int] | None:
    """Format 1.1: coding steps per model layer, or None (every layer one step)."""
    steps = header.extra.get("layer_steps")
    if steps is None:
        return None
    if not (isinstance(steps, list) and all(isinstance(n, int) and 1 <= n <= MAX_STEPS for n in steps)):
        raise errors.HeaderError("layer_steps must be a list of step counts (1 .. 4096)")
    return steps


def check_memory(header: bitstream.Header, model, limits: Limits | None = None) -> int:
    """The decode memory a header asks of ``model``; ``LimitError`` if over ``max_decode_bytes``.

    Checked as soon as the header arrives, before the model allocates anything.
    """
    limits = limits or LIMITS
    ph, pw = padded_size(header.height, header.width, model.stride)
    need = ph * pw * int(getattr(model, "decode_bytes_per_pixel", 4096))
    if need > limits.max_decode_bytes:
        raise errors.LimitError(
            f"decoding {header.width}x{header.height} with {model.name} needs about {need >> 20} MiB,"
            f" over the {limits.max_decode_bytes >> 20} MiB limit for untrusted input;"
            " raise progcodec.LIMITS.max_decode_bytes if this file is trusted")
    return need


class StreamDecoder:
    """Push-style decoder: ``feed(bytes)`` returns the ``DecodeStep`` of each layer it completed.

    ``layers`` caps how many layers to decode (``None``: all the stream has). ``close()``
    raises ``TruncatedError`` if the input ended before those layers were complete.

    Errors are sticky: once ``feed()`` or ``close()`` raised, every later call raises the same
    error. One decoder reads one stream from one thread at a time: a call made while another
    thread is inside ``feed()``/``close()`` raises :class:`progcodec.ConcurrentUseError` (and
    so does every later call, since a chunk was lost); use one decoder per stream.
    """

    def __init__(self, layers: int | None = None, limits: Limits | None = None, render: bool = True,
                 latest_only: bool = False):
        if layers is not None and layers < 1:
            raise ValueError("layers must be >= 1")
        self.reader = bitstream.Reader(limits)
        self.want = layers
        self.render = render
        self.latest_only = latest_only
        self.header: bitstream.Header | None = None
        self.symbols: list[list] = []
        self._model = self._state = None
        self.frames_done = 0          # frames decoded: model layers plus a format-1.1 alpha frame
        self._alpha_at = self._alpha = self._colour = None
        self._error: Exception | None = None
        self._busy = threading.Lock()

    @property
    def target(self) -> int | None:
        """Number of layers this decoder will deliver (known once the header arrived)."""
        if self.header is None:
            return None
        return self.header.layers if self.want is None else min(self.want, self.header.layers)

    @property
    def finished(self) -> bool:
        return self.target is not None and self.frames_done >= self.target

    @contextmanager
    def _exclusive(self, what: str):
        """One caller at a time; any error becomes the decoder's permanent state."""
        if not self._busy.acquire(blocking=False):
            exc = errors.ConcurrentUseError(
                f"StreamDecoder.{what}() called while another thread is inside feed()/close():"
                " a StreamDecoder reads one stream from one thread at a time")
            self._error = self._error or exc
            raise exc
        try:
            if self._error is not None:
                raise self._error
            try:
                yield
            except Exception as exc:
                self._error = self._error or exc
                raise
        finally:
            self._busy.release()

    def feed(self, data: bytes) -> list[DecodeStep]:
        """Steps completed by ``data``; an error after some steps is raised on the next call."""
        with self._exclusive("feed"):
            return self._feed(data)

    def close(self) -> None:
        """End of input: raises what went wrong, or ``TruncatedError`` if layers are missing."""
        with self._exclusive("close"):
            self._close()

    def _feed(self, data: bytes) -> list[DecodeStep]:
        if self.finished:
            return []
        steps, good = [], None
        try:
            with torch.inference_mode():
                events = self.reader.feed(bytes(data))
                frames = [e for e in events if isinstance(e, bitstream.Frame)]
                if events and isinstance(events[0], bitstream.Header):
                    self._start(events[0])
                frames = frames[: max(0, self.target - self.frames_done)] if self.target is not None else []
                for i, frame in enumerate(frames):
                    stale = self.latest_only and i < len(frames) - 1  # a newer layer is already here
                    step = self._layer(frame, render=self.render and not stale)
                    good = None if not stale else (frame, len(self.symbols))
                    if not stale:
                        steps.append(step)
        except Exception as exc:
            if good is not None and self.render:
                steps.extend(self._rerender(*good))  # a stale layer before the error: deliver it
            if not steps:
                raise
            self._error = exc
        return steps

    def _rerender(self, frame: bitstream.Frame, layers: int) -> list[DecodeStep]:
        """Render the state after the first ``layers`` model layers again (a later layer failed
        part-way, so the live state holds part of it): a fresh state replays their symbols."""
        self._state = None  # the error is sticky: free the live state before building another
        try:
            with torch.inference_mode():
                state = self._new_state()
                for k, parts in enumerate(self.symbols[:layers]):
                    n = state.coding_steps(k)
                    for s, part in enumerate([parts] if n == 1 else parts):
                        state.step_prior(k, s)
                        state.step_push(k, s, part)
                tensor = self._render(state, f"{self.header.model}: rendering")
        except Exception:
            return []  # the error that stopped the stream is what the caller gets
        return [self._step(frame, modes.finish(tensor, modes.output_mode(self.header), self._alpha))]

    def _close(self) -> None:
        if self.finished and not self.reader.done:
            return  # fewer layers were asked for than the stream holds
        try:
            self.reader.close()
        except errors.TruncatedError as exc:
            asked = f" (asked for {self.target})" if self.want else ""
            raise errors.TruncatedError(f"{exc}{asked}") from None

    def _start(self, header: bitstream.Header) -> None:
        self.header = header
        self._model = open_model(header)
        check_memory(header, self._model, self.reader.limits)
        self._alpha_at = modes.alpha_frame(header)
        self._state = self._new_state()
        self._steps = layer_steps(header) or []  # validated by open_model; [] = one step per layer

    def _new_state(self):
        """A fresh decoding state from the header's side information."""
        h = self.header
        side = bitstream.unpack_side(h, self.reader.limits)
        ph, pw = padded_size(h.height, h.width, self._model.stride)
        return _guard(f"{h.model}: reading side information", self._model.decoder, ph, pw, side)

    def _render(self, state, what: str) -> torch.Tensor:
        """The state's image, cropped to the header's size, in [0, 1]."""
        return _guard(what, state.image)[..., : self.header.height, : self.header.width].clamp(0, 1)

    def _step(self, frame: bitstream.Frame, tensor) -> DecodeStep:
        return DecodeStep(tensor=tensor, layer=frame.index + 1, layers_total=self.header.layers,
                          bytes_consumed=frame.end, header=self.header)

    def _layer(self, frame: bitstream.Frame, render: bool) -> DecodeStep:
        if self._alpha_at is not None and frame.index == self._alpha_at:
            return self._alpha_layer(frame, render)
        step = self._model_layer(frame, render)
        self.frames_done += 1
        self._colour = step.tensor  # None when not rendered: the alpha step then renders afresh
        if step.tensor is not None:
            step.tensor = modes.finish(step.tensor, modes.output_mode(self.header), self._alpha)
        return step

    def _alpha_layer(self, frame: bitstream.Frame, render: bool) -> DecodeStep:
        """Format 1.1: the lossless alpha plane; the step shows the colour so far with it."""
        self._alpha = modes.decode_alpha(frame.payload, self.header.width, self.header.height)
        self.frames_done += 1
        tensor = None
        if render:
            if self._colour is None:
                self._colour = self._render(self._state, f"{self.header.model}: rendering")
            tensor = modes.finish(self._colour, modes.output_mode(self.header), self._alpha)
        return self._step(frame, tensor)

    def _model_layer(self, frame: bitstream.Frame, render: bool) -> DecodeStep:
        k, name = frame.index, self.header.model
        if self._alpha_at is not None and k > self._alpha_at:
            k -= 1  # model layer index: the alpha frame sits between model layers
        n = _guard(f"{name}: coding steps of layer {k + 1}", self._state.coding_steps, k)
        if n != (self._steps[k] if k < len(self._steps) else 1):
            raise errors.HeaderError(f"layer {k + 1} of {name} has {n} coding steps; the stream says otherwise")
        reader = entropy.LayerReader(frame.payload, frame.prior_check, n)
        parts = []
        for s in range(n):
            at = f"layer {k + 1}" + (f" step {s + 1}" if n > 1 else "")
            params = _guard(f"{name}: prior of {at}", self._state.step_prior, k, s)
            parts.append(reader.decode(params))
            _guard(f"{name}: {at}", self._state.step_push, k, s, parts[-1])
        self.symbols.append(parts[0] if n == 1 else parts)
        return self._step(frame, self._render(self._state, f"{name}: rendering layer {k + 1}") if render else None)


def decode_stream(chunks: Iterable[bytes], layers: int | None = None, limits: Limits | None = None,
                  latest_only: bool = False) -> Iterator[DecodeStep]:
    """Yield a refined image each time a layer completes; ``chunks`` may be split anywhere.

    Stops reading once ``layers`` layers are out. Raises ``TruncatedError`` (after yielding
    every intact layer) if the chunks end early, and another ``BitstreamError`` on damage.
    ``latest_only``: when one chunk completes several layers, render and yield only the last.
    """
    if isinstance(chunks, (bytes, bytearray, memoryview)):
        chunks = [bytes(chunks)]
    dec = StreamDecoder(layers, limits, latest_only=latest_only)
    for chunk in chunks:
        yield from dec.feed(chunk)
        if dec.finished:
            break
    dec.close()


async def adecode_stream(chunks: AsyncIterable[bytes], layers: int | None = None, limits: Limits | None = None,
                         latest_only: bool = False):
    """``async for`` variant of :func:`decode_stream`; model work runs in a worker thread."""
    dec = StreamDecoder(layers, limits, latest_only=latest_only)

    async for chunk in chunks:
        for step in await asyncio.to_thread(dec.feed, chunk):
            yield step
        if dec.finished:
            break
    dec.close()
