"""Network helpers: feed the streaming decoder from HTTP responses, throttle links, report progress.

``decode_stream`` takes any iterable of bytes, so a response can be passed in directly::

    with urllib.request.urlopen(url) as resp:
        for step in progcodec.decode_stream(net.iter_body(resp)):   # or decode_stream(resp)
            show(step.image)

``iter_body`` reads whatever has arrived (``read1``) instead of waiting for a full buffer or a
newline, and turns a body that ends early into ``ConnectionError``. It accepts urllib /
``http.client`` responses, ``requests`` responses (``stream=True``), ``httpx`` responses and
plain file objects. ``aopen_url`` is a small HTTP/1.1 client on ``asyncio`` streams for
``adecode_stream``. ``progressive`` is what the viewers run: it never raises, and reports each
refinement, byte progress and a final state (``done``, ``lost`` or ``error``) with a status line.
"""
from __future__ import annotations

import asyncio
import http.client
import re
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterable, Iterator
from urllib.parse import urlsplit

from . import errors
from .stream import DecodeStep, StreamDecoder

_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "ki": 1024, "mi": 1024**2, "gi": 1024**3}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?)?(bit|bps|B|b)?(?:/s)?\s*")


def parse_rate(text: str | float | None) -> float | None:
    """Bytes per second of a bandwidth such as ``256kbit``, ``2mbit``, ``64kB``, ``1.5MiB/s``.

    Units ending in ``bit`` or ``bps`` count bits, ``B`` bytes; a bare number is bytes per
    second; ``0``, ``none`` and ``off`` mean unlimited (``None``). A lowercase ``kb`` is refused
    (or ``8b``) is refused as ambiguous.
    """
    if text is None or isinstance(text, (int, float)):
        return None if not text else float(text)
    if text.strip().lower() in ("", "0", "none", "off", "unlimited"):
        return None
    m = _RATE.fullmatch(text)
    if not m or m[3] == "b":
        raise ValueError(f"bad bandwidth {text!r}: use e.g. 256kbit, 2mbit, 64kB or a number of bytes/s")
    value = float(m[1]) * _UNITS[(m[2] or "").lower()]
    if m[3] in ("bit", "bps"):
        value /= 8
    if value <= 0:
        return None
    return value


def format_bytes(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    if n < 1_000_000:
        return f"{n / 1e3:.1f} kB"
    return f"{n / 1e6:.2f} MB"


class TokenBucket:
    """Per-connection bandwidth limit: ``take(n)`` sleeps until ``n`` more bytes may pass.

    ``burst`` (default: 20 ms worth of bytes, at least 256) is both the bucket's capacity and
    the largest slice to write at once (see :meth:`slices`). The bucket starts empty, so even
    the first bytes take their time on the link, as they would on a real one.
    """

    def __init__(self, rate: float, burst: int | None = None, clock=time.monotonic, sleep=time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = int(burst or max(256, rate / 50))
        self._clock, self._sleep = clock, sleep
        self._tokens = 0.0
        self._last = clock()

    def take(self, n: int) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= n
        if self._tokens < 0:  # in debt: wait until it is paid back (refilled on the next call)
            self._sleep(-self._tokens / self.rate)

    def slices(self, data: bytes) -> Iterator[bytes]:
        """``data`` in pieces of at most ``burst`` bytes, each released at the allowed rate."""
        view = memoryview(data)
        for i in range(0, len(view), self.burst):
            piece = view[i : i + self.burst]
            self.take(len(piece))
            yield bytes(piece)


def throttle(chunks: Iterable[bytes], rate: float | str | None) -> Iterator[bytes]:
    """Re-emit ``chunks`` no faster than ``rate`` (bytes/s or a string for :func:`parse_rate`)."""
    rate = parse_rate(rate) if isinstance(rate, str) else rate
    if not rate:
        yield from chunks
        return
    bucket = TokenBucket(rate)
    for chunk in chunks:
        yield from bucket.slices(chunk)


def iter_body(resp, chunk_size: int = 16384) -> Iterator[bytes]:
    """The body of an HTTP response as it arrives, in pieces of at most ``chunk_size`` bytes.

    Works with ``urllib.request.urlopen`` / ``http.client`` responses (plain and chunked),
    ``requests`` responses opened with ``stream=True``, ``httpx`` responses (``client.stream``)
    and binary file objects. Raises ``ConnectionError`` if the body ends before its
    ``Content-Length``; timeouts and resets surface as the client library raises them.
    """
    if hasattr(resp, "iter_bytes"):  # httpx
        yield from resp.iter_bytes()
        return
    if hasattr(resp, "iter_content"):  # requests: read what arrived from urllib3 when possible
        raw = getattr(resp, "raw", None)
        read = getattr(raw, "read1", None)
        if read is None:
            yield from resp.iter_content(chunk_size)
            return
    else:
        read = getattr(resp, "read1", None) or getattr(resp, "read", None)
    if read is None:
        yield from resp
        return
    while data := read(chunk_size):
        yield data
    left = getattr(resp, "length", None)  # http.client: bytes of Content-Length still unread
    if isinstance(left, int) and left > 0 and not getattr(resp, "chunked", False):
        raise ConnectionError(f"connection closed with {left} bytes of the response still to come")


def is_url(source) -> bool:
    return isinstance(source, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", source) is not None


def user_agent() -> str:
    from . import __version__

    return f"progcodec/{__version__}"


def open_source(source, timeout: float = 30.0, chunk_size: int = 16384):
    """``(chunks, close)`` for a URL, a path, ``-`` (stdin) or a binary file object."""
    if is_url(source):
        req = urllib.request.Request(source, headers={"User-Agent": user_agent(),
                                                      "Accept": "image/x-progcodec, */*;q=0.5"})
        resp = urllib.request.urlopen(req, timeout=timeout)
        return iter_body(resp, chunk_size), resp.close
    if source == "-":
        import sys

        f = sys.stdin.buffer
    elif hasattr(source, "read"):
        f = source
    else:
        f = open(Path(source), "rb")

    def chunks():
        read = getattr(f, "read1", None) or f.read
        while data := read(chunk_size):
            yield data

    return chunks(), (lambda: None) if f is source else f.close


class HTTPStatusError(OSError):
    """The server answered with an error status."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status


async def aopen_url(url: str, timeout: float = 30.0, chunk_size: int = 65536,
                    headers: dict | None = None) -> AsyncIterator[bytes]:
    """GET ``url`` over asyncio streams and yield the body as it arrives (for ``adecode_stream``).

    HTTP/1.1 with ``Content-Length``, chunked transfer or read-until-close bodies; ``https``
    with the default certificate checks. ``timeout`` bounds the connect and every read, so a
    stalled server raises ``TimeoutError`` instead of hanging; a body cut short raises
    ``ConnectionError``; an error status raises :class:`HTTPStatusError`. Nothing here blocks
    the event loop.
    """
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = u.port or (443 if u.scheme == "https" else 80)
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    if any(c in target for c in " \r\n\t\x00"):
        raise ValueError(f"URL holds characters that must be %-encoded: {url!r}")
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(u.hostname, port, ssl=ssl.create_default_context() if u.scheme == "https" else None,
                                limit=1 << 16), timeout)
    try:
        lines = [f"GET {target} HTTP/1.1", f"Host: {u.netloc.rpartition('@')[2]}", f"User-Agent: {user_agent()}",
                 "Accept: image/x-progcodec, */*;q=0.5", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await asyncio.wait_for(writer.drain(), timeout)

        async def line() -> bytes:
            data = await asyncio.wait_for(reader.readline(), timeout)
            if not data.endswith(b"\n"):
                raise ConnectionError("connection closed inside the response head")
            return data

        status = (await line()).decode("latin-1").split(None, 2)
        if len(status) < 2 or not status[0].startswith("HTTP/") or not status[1].isdigit():
            raise ConnectionError(f"not an HTTP response: {' '.join(status)[:80]!r}")
        fields: dict[str, str] = {}
        for _ in range(100):
            raw = await line()
            if raw in (b"\r\n", b"\n"):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        else:
            raise ConnectionError("too many response header fields")
        code = int(status[1])
        if code >= 400:
            raise HTTPStatusError(code, status[2].strip() if len(status) > 2 else "")

        async def read(n: int) -> bytes:
            return await asyncio.wait_for(reader.read(n), timeout)

        if "chunked" in fields.get("transfer-encoding", "").lower():
            while True:
                size_line = (await line()).split(b";")[0].strip()
                try:
                    left = int(size_line, 16)
                except ValueError:
                    raise ConnectionError(f"bad chunk size {size_line[:20]!r}") from None
                if left == 0:
                    break
                while left:
                    data = await read(min(left, chunk_size))
                    if not data:
                        raise ConnectionError(f"connection closed inside a chunk ({left} bytes missing)")
                    left -= len(data)
                    yield data
                await line()  # CRLF after the chunk
        elif "content-length" in fields:
            left = int(fields["content-length"])
            while left:
                data = await read(min(left, chunk_size))
                if not data:
                    raise ConnectionError(f"connection closed with {left} bytes of the response still to come")
                left -= len(data)
                yield data
        else:
            while data := await read(chunk_size):
                yield data
    finally:
        writer.close()


@dataclass
class Progress:
    """One report of :func:`progressive`: the latest refinement and where the transfer stands.

    ``state``: ``connecting``, ``receiving``, ``done`` (every wanted layer arrived), ``lost``
    (the connection failed or ended early; ``step`` is the last complete refinement) or
    ``error`` (nothing to show: bad URL, HTTP error, damaged stream...). ``new_step`` is true
    when ``step`` is a refinement not reported before.
    """

    state: str
    step: DecodeStep | None
    received: int
    elapsed: float
    layers_total: int | None = None
    reason: str | None = None
    new_step: bool = False
    image: object = None  # step.image, possibly reduced to fit a screen (made in the worker)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "lost", "error")

    @property
    def text(self) -> str:
        """The status line: ``layer k/N · bytes · bpp · elapsed`` or what went wrong."""
        s, n = self.step, self.layers_total
        if self.state == "lost":
            where = f"after layer {s.layer}/{s.layers_total}" if s else "before the first layer"
            return f"connection lost {where}: {self.reason}"
        if self.state == "error":
            where = f" after layer {s.layer}/{s.layers_total}" if s else ""
            return f"error{where}: {self.reason}"
        if self.state == "connecting":
            return "connecting…"
        if s is None:
            total = f" (header: {n} layers)" if n else ""
            return f"waiting for the first layer · {format_bytes(self.received)}{total} · {self.elapsed:.2f} s"
        line = f"layer {s.layer}/{s.layers_total} · {format_bytes(s.bytes_consumed)} · {s.bpp:.3f} bpp"
        if self.state == "done":
            return f"{line} · {self.elapsed:.2f} s · done"
        return f"{line} · {self.elapsed:.2f} s · receiving ({format_bytes(self.received)})"


def _reason(exc: BaseException, timeout: float | None = None) -> str:
    """A short human reason for a transport or stream failure."""
    reason = getattr(exc, "reason", None)  # urllib's URLError wraps the socket error
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError) and reason:
        exc = reason if isinstance(reason, BaseException) else exc
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return f"timed out (no data for {timeout:g} s)" if timeout else "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed mid-transfer ({exc!r})"
    if isinstance(exc, (errors.ProgcodecError, urllib.error.HTTPError)):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def progressive(source, layers: int | None = None, throttle_rate: float | str | None = None,
                timeout: float = 30.0, chunk_size: int = 16384, stop=None, interval: float = 0.25,
                fit: tuple[int, int] | None = None) -> Iterator[Progress]:
    """Decode ``source`` (URL, path, ``-`` or file object) and report progress; never raises.

    Yields a :class:`Progress` for each refinement (only the newest when several layers
    arrive together: latest wins), at most every ``interval`` seconds while bytes arrive, and
    a final one with ``state`` ``done``, ``lost`` or ``error``. ``stop`` (a
    ``threading.Event``) ends it quietly. ``fit`` = (width, height): also make
    ``Progress.image``, the refinement reduced to fit that box (done here, off the UI thread).
    """
    import torch

    t0 = time.monotonic()
    received, last, dec, close = 0, None, None, lambda: None

    def report(state, reason=None, new=False):
        image = None
        if new and last is not None:
            image = last.image
            if fit and (image.width > fit[0] or image.height > fit[1]):
                image = image.copy()
                image.thumbnail(fit)
        total = dec.header.layers if dec is not None and dec.header is not None else None
        return Progress(state, last, received, time.monotonic() - t0, total, reason, new, image)

    yield report("connecting")
    try:
        try:
            chunks, close = open_source(source, timeout, chunk_size)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            yield report("error", f"cannot open {source}: {_reason(exc, timeout)}")
            return
        if throttle_rate:
            chunks = throttle(chunks, throttle_rate)
        dec = StreamDecoder(layers, latest_only=True)
        shown = time.monotonic()
        while True:
            if stop is not None and stop.is_set():
                return
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - any failure of the transport
                yield report("lost", _reason(exc, timeout))
                return
            received += len(chunk)
            try:
                with torch.inference_mode():
                    steps = dec.feed(chunk)
            except errors.ProgcodecError as exc:
                yield report("error", _reason(exc))
                return
            if steps:
                last = steps[-1]
                shown = time.monotonic()
                yield report("done" if dec.finished else "receiving", new=True)
            elif time.monotonic() - shown >= interval:
                shown = time.monotonic()
                yield report("receiving")
            if dec.finished:
                return
        try:
            dec.close()
        except errors.TruncatedError as exc:
            yield report("lost", _reason(exc))
            return
        except errors.ProgcodecError as exc:
            yield report("error", _reason(exc))
            return
        yield report("done")  # only reached for a complete stream whose steps were all reported
    finally:
        try:
            close()
        except Exception:  # noqa: BLE001
            pass
