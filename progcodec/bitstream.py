"""The layered container format (see docs/bitstream.md): header, then one framed layer each.

Layout (all integers little-endian)::

    preamble  magic(8) major(u8) minor(u8) header_len(u32)
    header    msgpack map (header_len bytes; from 1.2 zstd-compressed with a fixed dictionary),
              then crc32(u32) of bytes 8 .. end of header
    frame k   index(u16) length(u32) prior_check(u32) payload(length) crc32(u32) of the frame

``Reader`` is an incremental (push) parser: feed it bytes in any split, it returns events.
"""
from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import msgpack
import zstandard

from . import errors
from .limits import LIMITS, Limits

MAGIC = b"\x89PCS\r\n\x1a\n"
VERSION = (1, 2)  # what this reader understands
V1_1_KEYS = ("source_mode", "alpha", "layer_steps")  # format 1.1 (docs/bitstream.md §2.1)
COMPACT_MINOR = 2  # format 1.2: the header map is zstd-compressed with HEADER_DICT (§2.2)
HEADER_DICT = Path(__file__).parent / "data" / "header-dict-1.bin"  # scripts/header_dictionary.py
HEADER_DICT_SHA256 = "deb84437c32a5846d03fd116fed662dc7350d2bc4e5060cd03937d7e352d3b08"
_PRE = struct.Struct("<8sBBI")
_FRAME = struct.Struct("<HII")
_CRC = struct.Struct("<I")
PREAMBLE_SIZE = _PRE.size
FRAME_OVERHEAD = _FRAME.size + _CRC.size
MODES = {"RGB": 3, "L": 1}


@dataclass(frozen=True)
class Header:
    """Everything a decoder needs before the first layer arrives."""

    model: str
    rate: str
    model_version: str
    weights: str
    width: int
    height: int
    mode: str
    layer_sizes: tuple[int, ...]
    layer_names: tuple[str, ...]
    encoded_layers: int
    coder: str
    side: bytes = b""
    extra: dict = field(default_factory=dict)
    # preamble + header + CRC as read from a stream (None: not read, computed by re-packing);
    # another writer's msgpack may use wider encodings than ours, so offsets come from this
    stored_size: int | None = field(default=None, compare=False, repr=False)
    # written as format 1.2 (compressed header, opt-in: 1.0/1.1 readers cannot read it); a
    # stream read from bytes keeps its form when re-packed (truncate)
    compact: bool = field(default=False, compare=False, repr=False)

    @property
    def layers(self) -> int:
        return len(self.layer_sizes)

    def header_bytes(self) -> int:
        """Size of preamble + header + its CRC, i.e. the offset of the first frame."""
        return self.stored_size if self.stored_size is not None else len(pack_header(self))

    def layer_ends(self) -> list[int]:
        """Byte offset just past each layer's frame: cut the file there to keep k layers."""
        ends, pos = [], self.header_bytes()
        for size in self.layer_sizes:
            pos += FRAME_OVERHEAD + size
            ends.append(pos)
        return ends


@dataclass(frozen=True)
class Frame:
    """One complete, checksum-verified layer."""

    index: int
    payload: bytes
    prior_check: int
    end: int  # stream offset just past this frame


def pack_side(side: dict) -> tuple[bytes, str]:
    """msgpack the plugin's side information, zstd-compressed only when that is smaller."""
    raw = msgpack.packb(side, use_bin_type=True)
    packed = zstandard.ZstdCompressor(level=10).compress(raw)
    return (packed, "zstd") if len(packed) < len(raw) else (raw, "raw")


@lru_cache(maxsize=1)
def header_dict() -> zstandard.ZstdCompressionDict:
    """The fixed dictionary of format 1.2 headers (checked against its published SHA-256).
    A missing or altered file makes 1.2 streams unreadable here: ``UnsupportedVersionError``."""
    try:
        data = HEADER_DICT.read_bytes()
    except OSError as exc:
        raise errors.UnsupportedVersionError(
            f"this progcodec installation cannot read format 1.2 headers: {HEADER_DICT} is missing ({exc})") from None
    if hashlib.sha256(data).hexdigest() != HEADER_DICT_SHA256:
        raise errors.UnsupportedVersionError(
            f"this progcodec installation cannot read format 1.2 headers: {HEADER_DICT} is not the format's dictionary")
    return zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def _unzstd(data: bytes, cap: int, what: str = "side information", dict_data=None) -> bytes:
    """zstd-decompress at most ``cap`` bytes: the declared content size is checked first (the
    one-shot API ignores ``max_output_size`` when a frame declares it), then a streaming read
    with a hard cap, so a bomb never allocates more than ``cap + 1`` bytes."""
    declared = zstandard.get_frame_parameters(data).content_size
    if declared != zstandard.CONTENTSIZE_UNKNOWN and declared > cap:
        raise errors.LimitError(f"{what} declares {declared} bytes, over the {cap}-byte limit")
    window = 1 << max(20, (max(cap, 1) - 1).bit_length())
    dctx = zstandard.ZstdDecompressor(max_window_size=window, dict_data=dict_data)
    try:
        with dctx.stream_reader(data, read_across_frames=True, read_size=65536) as reader:
            out = reader.read(cap + 1)
            while len(out) <= cap:  # read() may stop at a frame boundary
                more = reader.read(cap + 1 - len(out))
                if not more:
                    break
                out += more
    except zstandard.ZstdError as exc:
        if "memory" in str(exc):  # a window larger than the limit allows
            raise errors.LimitError(f"{what} needs a larger zstd window than the limit allows: {exc}") from None
        raise
    if len(out) > cap:
        raise errors.LimitError(f"{what} exceeds the {cap}-byte limit")
    return out


def unpack_bounded(data: bytes, limits: Limits, what: str, strict_map_key: bool = True):
    """msgpack with bounded total size, element counts and nesting depth (``LimitError``)."""
    items = [0]
    cap = limits.max_side_info_items

    def count(obj):
        items[0] += len(obj) + 1
        if items[0] > cap:
            raise errors.LimitError(f"{what} holds more than {cap} msgpack elements")
        return obj

    n = min(len(data), cap)
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=strict_map_key,
                              max_str_len=len(data), max_bin_len=len(data), max_ext_len=len(data),
                              max_array_len=n, max_map_len=n, object_hook=count, list_hook=count)
    except ValueError as exc:
        if "exceeds max_" in str(exc):
            raise errors.LimitError(f"{what}: {exc}") from None
        raise
    stack = [(obj, 1)]
    while stack:  # iterative: a deep nesting must not recurse here
        node, depth = stack.pop()
        if depth > limits.max_side_info_depth:
            raise errors.LimitError(f"{what} nests deeper than {limits.max_side_info_depth} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return obj


def unpack_side(header: Header, limits: Limits | None = None) -> dict:
    """Inverse of :func:`pack_side`; damage raises :class:`HeaderError`, bombs :class:`LimitError`."""
    limits = limits or LIMITS
    codec = header.extra.get("side_codec", "raw")
    data = header.side
    try:
        if codec == "zstd":
            data = _unzstd(data, limits.max_side_info_bytes)
        elif codec != "raw":
            raise errors.HeaderError(f"unknown side-information codec {codec!r}")
        if len(data) > limits.max_side_info_bytes:
            raise errors.LimitError("side information exceeds the limit")
        side = unpack_bounded(data, limits, "side information", strict_map_key=False)
    except errors.BitstreamError:
        raise
    except Exception as exc:
        raise errors.HeaderError(f"side information is damaged: {exc}") from None
    if not isinstance(side, dict):
        raise errors.HeaderError("side information is not a map")
    return side


def pack_header(h: Header) -> bytes:
    """Preamble + msgpack header + CRC."""
    body = {
        "model": h.model, "rate": h.rate, "model_version": h.model_version, "weights": h.weights,
        "width": h.width, "height": h.height, "mode": h.mode,
        "layers": [[n, s] for n, s in zip(h.layer_names, h.layer_sizes)],
        "encoded_layers": h.encoded_layers, "coder": h.coder, "side": h.side, **h.extra,
    }
    raw = msgpack.packb(body, use_bin_type=True)
    if h.compact:  # 1.2: key names and common strings come from the dictionary (~360 -> ~130 B)
        raw = zstandard.ZstdCompressor(level=19, dict_data=header_dict(), write_checksum=False,
                                       write_dict_id=False).compress(raw)
        minor = COMPACT_MINOR
    else:  # uncompressed streams stay 1.0 unless they use a 1.1 field, byte for byte
        minor = 1 if any(k in h.extra for k in V1_1_KEYS) else 0
    pre = _PRE.pack(MAGIC, VERSION[0], minor, len(raw))
    return pre + raw + _CRC.pack(zlib.crc32(pre[8:] + raw))


def pack_frame(index: int, payload: bytes, prior_check: int) -> bytes:
    head = _FRAME.pack(index, len(payload), prior_check & 0xFFFFFFFF)
    return head + payload + _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))


def write(header: Header, frames: list[tuple[bytes, int]]) -> bytes:
    """Serialize a header and ``(payload, prior_check)`` per layer; the layer table is filled in."""
    header = replace(header, layer_sizes=tuple(len(p) for p, _ in frames), stored_size=None)
    parts = [pack_header(header)]
    parts += [pack_frame(i, p, c) for i, (p, c) in enumerate(frames)]
    return b"".join(parts)


_STR_KEYS = ("model", "rate", "model_version", "weights", "mode", "coder")
_INT_KEYS = ("width", "height", "encoded_layers")


def _parse_header(raw: bytes, limits: Limits) -> Header:
    try:
        body = unpack_bounded(raw, limits, "the header")
    except errors.LimitError:
        raise
    except Exception as exc:
        raise errors.HeaderError(f"header is not valid msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise errors.HeaderError("header is not a map")
    for key in _STR_KEYS:
        if not isinstance(body.get(key), str):
            raise errors.HeaderError(f"header field {key!r} missing or not a string")
    for key in _INT_KEYS:
        if type(body.get(key)) is not int:
            raise errors.HeaderError(f"header field {key!r} missing or not an integer")
    layers = body.get("layers")
    if not isinstance(layers, list) or not all(
        isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and type(e[1]) is int and e[1] >= 0
        for e in layers
    ):
        raise errors.HeaderError("header layer table is malformed")
    side = body.get("side", b"")
    if not isinstance(side, bytes):
        raise errors.HeaderError("header field 'side' is not bytes")
    w, h = body["width"], body["height"]
    if w < 1 or h < 1:
        raise errors.HeaderError(f"image size {w}x{h} is not positive")
    if w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
        raise errors.LimitError(
            f"image size {w}x{h} exceeds the limit ({limits.max_pixels} pixels, {limits.max_side} per side);"
            " raise progcodec.LIMITS.max_pixels if this file is trusted"
        )
    if body["mode"] not in MODES:
        raise errors.HeaderError(f"unknown image mode {body['mode']!r}")
    if not 1 <= len(layers) <= limits.max_layers:
        raise errors.LimitError(f"{len(layers)} layers is outside 1..{limits.max_layers}")
    if not len(layers) <= body["encoded_layers"] <= limits.max_layers:
        raise errors.HeaderError("encoded_layers is smaller than the layer table")
    if any(s > limits.max_frame_bytes for _, s in layers):
        raise errors.LimitError(f"a layer claims more than {limits.max_frame_bytes} bytes")
    extra = {k: v for k, v in body.items() if k not in _STR_KEYS + _INT_KEYS + ("layers", "side")}
    return Header(
        model=body["model"], rate=body["rate"], model_version=body["model_version"], weights=body["weights"],
        width=w, height=h, mode=body["mode"], layer_sizes=tuple(s for _, s in layers),
        layer_names=tuple(n for n, _ in layers), encoded_layers=body["encoded_layers"],
        coder=body["coder"], side=side, extra=extra,
    )


class Reader:
    """Incremental parser. ``feed(bytes)`` returns the ``Header``/``Frame`` events now complete.

    Damage found after some complete events in the same chunk is raised on the next
    ``feed``/``close``, so every intact layer reaches the caller first.
    """

    def __init__(self, limits: Limits | None = None):
        self.limits = limits or LIMITS
        self.header: Header | None = None
        self.frames_read = 0
        self._buf = bytearray()
        self._pos = 0          # read position inside _buf
        self._offset = 0       # stream offset of _buf[0]
        self._header_len: int | None = None
        self._closed = False
        self._error: errors.BitstreamError | None = None

    @property
    def bytes_consumed(self) -> int:
        """Stream bytes turned into complete events so far."""
        return self._offset + self._pos

    @property
    def done(self) -> bool:
        return self.header is not None and self.frames_read == self.header.layers

    def feed(self, data: bytes) -> list:
        if self._closed:
            raise ValueError("Reader is closed")
        if self._error is not None:
            raise self._error
        if not data:
            return []
        if self.done:
            raise errors.TrailingDataError(f"{len(data)} unexpected bytes after the last layer")
        self._buf += data
        events = []
        try:
            while True:
                event = self._step()
                if event is None:
                    break
                events.append(event)
                if self.done:
                    if len(self._buf) > self._pos:
                        raise errors.TrailingDataError(
                            f"{len(self._buf) - self._pos} unexpected bytes after the last layer")
                    break
        except errors.BitstreamError as exc:
            if not events:
                raise
            self._error = exc  # deliver the intact events first, raise on the next call
        if self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._offset += self._pos
            self._pos = 0
        return events

    def close(self) -> None:
        """Declare the end of input; raises ``TruncatedError`` unless every layer arrived."""
        self._closed = True
        if self._error is not None:
            raise self._error
        if self.done:
            return
        have = len(self._buf) - self._pos
        if self.header is None:
            raise errors.TruncatedError(f"stream ended inside the header ({self._offset + len(self._buf)} bytes)")
        k, n = self.frames_read, self.header.layers
        want = self.header.layer_sizes[k] + FRAME_OVERHEAD
        raise errors.TruncatedError(
            f"stream ended after {k} of {n} layers ({have} of {want} bytes of layer {k + 1})")

    def _avail(self) -> int:
        return len(self._buf) - self._pos

    def _step(self):
        if self.header is None:
            return self._step_header()
        return self._step_frame()

    def _step_header(self):
        buf, limits = self._buf, self.limits
        head = bytes(buf[: min(len(buf), 8)])
        if head != MAGIC[: len(head)]:
            raise errors.FormatError("not a progcodec stream (bad magic bytes)")
        if len(buf) < PREAMBLE_SIZE:
            return None
        _, major, minor, hlen = _PRE.unpack_from(buf, 0)
        if major != VERSION[0]:
            raise errors.UnsupportedVersionError(
                f"format version {major}.{minor}; this progcodec reads {VERSION[0]}.x")
        if hlen > limits.max_header_bytes:
            raise errors.LimitError(f"header of {hlen} bytes exceeds the {limits.max_header_bytes}-byte limit")
        end = PREAMBLE_SIZE + hlen + _CRC.size
        if len(buf) < end:
            return None
        (crc,) = _CRC.unpack_from(buf, end - 4)
        if zlib.crc32(bytes(buf[8 : end - 4])) != crc:
            raise errors.ChecksumError("header checksum mismatch (corrupted header)")
        raw, compact = bytes(buf[PREAMBLE_SIZE : end - 4]), minor >= COMPACT_MINOR
        if compact:
            try:
                raw = _unzstd(raw, limits.max_header_bytes, "the header", header_dict())
            except zstandard.ZstdError as exc:
                raise errors.HeaderError(f"compressed header is damaged: {exc}") from None
        self.header = replace(_parse_header(raw, limits), stored_size=end, compact=compact)
        self._pos = end
        return self.header

    def _step_frame(self):
        buf, pos, k = self._buf, self._pos, self.frames_read
        if self._avail() < _FRAME.size:
            return None
        index, length, check = _FRAME.unpack_from(buf, pos)
        if index != k:
            raise errors.FormatError(f"expected layer {k + 1}, found a frame labelled {index + 1}")
        if length != self.header.layer_sizes[k]:
            raise errors.FormatError(
                f"layer {k + 1} frame holds {length} bytes, header says {self.header.layer_sizes[k]}")
        end = pos + _FRAME.size + length + _CRC.size
        if len(buf) < end:
            return None
        (crc,) = _CRC.unpack_from(buf, end - 4)
        if zlib.crc32(memoryview(buf)[pos : end - 4]) != crc:
            raise errors.ChecksumError(f"layer {k + 1} checksum mismatch (corrupted bytes)")
        payload = bytes(buf[pos + _FRAME.size : end - 4])
        self._pos = end
        self.frames_read += 1
        return Frame(index=k, payload=payload, prior_check=check, end=self._offset + end)


def read(data: bytes, limits: Limits | None = None) -> tuple[Header, list[Frame]]:
    """Parse a whole, complete stream."""
    reader = Reader(limits)
    events = reader.feed(data)
    reader.close()
    return events[0], events[1:]


def iter_events(chunks, limits: Limits | None = None) -> Iterator:
    """Events from an iterable of chunks; raises ``TruncatedError`` if it ends early."""
    reader = Reader(limits)
    for chunk in chunks:
        yield from reader.feed(chunk)
    reader.close()


def truncate(data: bytes, layers: int | None = None, max_bytes: int | None = None) -> bytes:
    """Keep the first ``layers`` layers (or as many as fit in ``max_bytes``) as a valid stream."""
    reader = Reader()
    events = reader.feed(data)
    header, frames = events[0] if events else None, events[1:]
    if header is None or not frames:
        raise errors.TruncatedError("the stream holds no complete layer")
    keep = len(frames) if layers is None else min(layers, len(frames))
    if layers is not None and layers > len(frames):
        raise errors.TruncatedError(f"asked for {layers} layers, the stream holds {len(frames)} complete ones")
    new = replace(header, layer_sizes=header.layer_sizes[:keep], layer_names=header.layer_names[:keep],
                  stored_size=None)
    if max_bytes is not None:
        while keep > 0 and len(pack_header(new)) + sum(header.layer_sizes[:keep]) + keep * FRAME_OVERHEAD > max_bytes:
            keep -= 1
            new = replace(new, layer_sizes=header.layer_sizes[:keep], layer_names=header.layer_names[:keep])
    if keep < 1:
        raise errors.LimitError("not even the first layer fits in the byte budget")
    return pack_header(new) + b"".join(pack_frame(f.index, f.payload, f.prior_check) for f in frames[:keep])
