"""``progcodec serve DIR``: an HTTP server for .pcs streams and a progressive web viewer.

Standard library only (``http.server.ThreadingHTTPServer``). Routes::

    GET/HEAD /                    list of the .pcs files under DIR
    GET/HEAD /files/<path>.pcs    the stream; Range requests (one range); ?layers=K serves only the
                                  first K layers as a valid stream (cut at the header's layer table,
                                  no re-encoding); ?chunked=1 uses chunked transfer encoding
    GET/HEAD /view/<path>.pcs     a page whose image refines while the stream arrives
    GET      /events/<path>.pcs   server-sent events: one PNG (data URL) per refinement, decoded
                                  here while the file is read at the link's rate, then done/fail
    GET/HEAD /static/<file>       the page's script and style (package data progcodec/web)

``?throttle=RATE`` (e.g. 64kbit) slows one response further (never faster than ``--throttle``).
Responses carry ``X-Progcodec-Layers`` (layers in the representation) and
``X-Progcodec-Layer-Ends`` (byte offset just past each layer), so a client can fetch further
layers with Range requests.

Safety: files are served only from under DIR (no ``..``, hidden or non-.pcs paths, symlinks
leading out or to hidden files or folders: every path component is resolved and checked), the
default bind is 127.0.0.1, every connection has a socket timeout and handles one request, the
whole request head must arrive within ``head_timeout`` (10 s; slowloris), connections are
capped (32) and so is each client IP (8), the last 4 slots only admit clients holding none;
concurrent decodes are capped (4, half of them at most for client-throttled /events), 503
beyond; query values are validated (400, ASCII digits only). Every response, error pages
included, carries ``X-Content-Type-Options: nosniff``; pages and error pages a CSP.
"""
from __future__ import annotations

import base64
import email.utils
import html
import io
import ipaddress
import json
import mimetypes
import re
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from string import Template
from urllib.parse import parse_qs, quote, unquote, urlsplit

from . import bitstream, errors
from .codec import info
from .net import TokenBucket, parse_rate
from .stream import StreamDecoder

MEDIA_TYPE = "image/x-progcodec"
MIN_CLIENT_RATE = 1000.0          # bytes/s: ?throttle= below this is refused
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".png": "image/png", ".svg": "image/svg+xml", ".ico": "image/x-icon"}
PAGE_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'"
ERROR_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


class Problem(Exception):
    """An HTTP error response."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def parse_range(value: str, size: int):
    """``(start, end)`` (inclusive) of a single ``bytes=`` range, ``None`` to ignore it, or
    ``"unsatisfiable"``. Multiple or malformed ranges are ignored (RFC 9110 allows that)."""
    m = re.fullmatch(r"\s*bytes\s*=\s*([0-9]{0,18})\s*-\s*([0-9]{0,18})\s*", value or "")
    if not m or not (m[1] or m[2]):
        return None
    if m[1]:
        start = int(m[1])
        end = int(m[2]) if m[2] else size - 1
        if m[2] and end < start:
            return None
        if start >= size:
            return "unsatisfiable"
        return start, min(end, size - 1)
    n = int(m[2])
    if n == 0 or size == 0:
        return "unsatisfiable"
    return max(0, size - n), size - 1


def read_header(f, limit: int = 1 << 22) -> bitstream.Header:
    """The header of the stream in file ``f`` (read from its start, at most ``limit`` bytes)."""
    reader = bitstream.Reader()
    f.seek(0)
    read = 0
    while reader.header is None:
        chunk = f.read(65536)
        if not chunk or read >= limit:
            raise errors.TruncatedError("the file ends inside the header")
        read += len(chunk)
        reader.feed(chunk)  # damage after the header is stored in the reader, not raised here
    return reader.header


def web_asset(name: str) -> bytes:
    return (resources.files("progcodec") / "web" / name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    server_version = "progcodec"
    protocol_version = "HTTP/1.1"
    server: "ProgcodecServer"

    def setup(self):
        self.timeout = self.server.request_timeout  # socket timeout for every read and write
        super().setup()
        # the whole request head (request line + headers) must arrive within head_timeout:
        # the socket timeout alone is per read, so a header line every few seconds held a slot
        self._deadline_io = _DeadlineReader(self.connection, self.timeout,
                                            time.monotonic() + self.server.head_timeout)
        self.rfile = io.BufferedReader(self._deadline_io, 65536)

    def parse_request(self):
        ok = super().parse_request()
        self._deadline_io.deadline = None  # the head is in; GET/HEAD have no body to read
        return ok

    def end_headers(self):
        # every response, error pages included, says what it is and forbids sniffing
        self.send_header("X-Content-Type-Options", "nosniff")
        if getattr(self, "_error_page", False):
            self.send_header("Content-Security-Policy", ERROR_CSP)
        super().end_headers()

    def send_error(self, code, message=None, explain=None):
        """http.server's own error pages (bad request line, 414, 501...) with nosniff and a CSP."""
        self._error_page = True
        super().send_error(code, message, explain)

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            super().log_message(fmt, *args)

    def send_response(self, code, message=None):
        self._responded = True
        super().send_response(code, message)

    def do_GET(self):
        self._dispatch(head=False)

    def do_HEAD(self):
        self._dispatch(head=True)

    # -- plumbing -------------------------------------------------------------------------
    def _dispatch(self, head: bool):
        self.close_connection = True  # one request per connection keeps the handling bounded
        self._head, self._responded = head, False
        try:
            url = urlsplit(self.path)
            try:
                self.query = parse_qs(url.query, keep_blank_values=True, max_num_fields=16,
                                      strict_parsing=False)
            except ValueError:
                raise Problem(400, "too many query fields") from None
            route, _, rest = url.path.lstrip("/").partition("/")
            if url.path in ("/", "/index.html"):
                return self._index()
            handler = {"files": self._files, "view": self._view, "events": self._events,
                       "static": self._static}.get(route)
            if handler is None:
                raise Problem(404, "not found")
            if route == "events" and head:
                raise Problem(405, "use GET", {"Allow": "GET"})
            handler(rest)
        except Problem as p:
            self._send_plain(p.status, p.message, p.headers)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away or stalled: nothing left to tell it
        except Exception as exc:  # noqa: BLE001 - a bug or an unreadable file: answer 500, keep serving
            self.log_error("error serving %s: %s: %s", self.path, type(exc).__name__, exc)
            if not self._responded:
                try:
                    self._send_plain(500, "internal error")
                except OSError:
                    pass

    def _send_plain(self, status: int, message: str, headers: dict | None = None):
        body = (message + "\n").encode()
        self._error_page = status >= 400
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not self._head:
            self.wfile.write(body)

    def _send_page(self, body: bytes, content_type: str = "text/html; charset=utf-8", csp: bool = True):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        if csp:
            self.send_header("Content-Security-Policy", PAGE_CSP)
        self.end_headers()
        if not self._head:
            self.wfile.write(body)

    def _param(self, name: str) -> str | None:
        values = self.query.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise Problem(400, f"{name} given more than once")
        return values[0]

    def _layers_param(self) -> int | None:
        value = self._param("layers")
        if value is None:
            return None
        if not re.fullmatch(r"[0-9]{1,6}", value) or int(value) < 1:  # ASCII only: int() reads other digits
            raise Problem(400, f"layers must be a whole number >= 1, not {value[:20]!r}")
        return int(value)

    def _rate(self) -> float | None:
        """The response's bandwidth: the server's limit, or the client's ?throttle= if lower."""
        rate = self.server.throttle
        value = self._param("throttle")
        if value is not None:
            try:
                asked = parse_rate(value[:32])
            except ValueError as exc:
                raise Problem(400, str(exc)) from None
            if asked is not None:
                if asked < MIN_CLIENT_RATE:
                    raise Problem(400, f"throttle below {MIN_CLIENT_RATE * 8 / 1000:g} kbit/s is refused")
                rate = asked if rate is None else min(rate, asked)
        return rate

    def _resolve(self, rel: str, suffixes: tuple[str, ...] = (".pcs",)) -> Path:
        """The .pcs file under the served folder that ``rel`` (still %-encoded) names, or 404."""
        try:
            rel = unquote(rel, errors="strict")
        except UnicodeDecodeError:
            raise Problem(404, "not found") from None
        parts = rel.split("/")
        if (not rel or "\x00" in rel or "\\" in rel or len(rel) > 1024
                or any(p in ("", ".", "..") or p.startswith(".") for p in parts)):
            raise Problem(404, "not found")
        root = self.server.root
        path = visible_path(root, parts)
        if path is None or path.suffix.lower() not in suffixes or not path.is_file():
            raise Problem(404, "not found")
        return path

    def _write(self, pieces, rate: float | None, chunked: bool = False):
        """Send the body pieces, at most ``rate`` bytes/s (token bucket, small slices)."""
        bucket = TokenBucket(rate) if rate else None
        for piece in pieces:
            for part in (bucket.slices(piece) if bucket else (piece,)):
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    self.wfile.write(part)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    # -- routes -----------------------------------------------------------------------------
    def _index(self):
        rows = []
        for path in self.server.list_streams():
            rel = path.relative_to(self.server.root).as_posix()
            q = quote(rel)
            rows.append(f'<li><a href="/view/{q}">{html.escape(rel)}</a> '
                        f'(<a href="/files/{q}">.pcs</a>, {path.stat().st_size} bytes)</li>')
        body = Template(web_asset("index.html").decode()).substitute(
            folder=html.escape(self.server.root.name or str(self.server.root)),
            items="\n".join(rows) or "<li>no .pcs files</li>")
        self._send_page(body.encode())

    def _static(self, name: str):
        if not re.fullmatch(r"[a-z0-9_-]+\.[a-z]+", name) or Path(name).suffix not in STATIC_TYPES:
            raise Problem(404, "not found")
        try:
            body = web_asset(name)
        except (FileNotFoundError, IsADirectoryError):
            raise Problem(404, "not found") from None
        self._send_page(body, STATIC_TYPES[Path(name).suffix], csp=False)

    def _files(self, rel: str):
        path = self._resolve(rel, self.server.suffixes)
        layers, rate = self._layers_param(), self._rate()
        chunked = self._param("chunked") in ("1", "true", "yes")
        with open(path, "rb") as f:
            st = path.stat()
            try:
                header = read_header(f)
            except errors.BitstreamError as exc:
                if layers is not None:
                    raise Problem(422, f"not a readable progcodec stream: {exc}") from None
                header = None
            data = None
            if layers is not None:  # cut after layer K at the layer table: no decoding, no re-encoding
                keep = min(layers, header.layers)
                f.seek(0)
                prefix = f.read(header.layer_ends()[keep - 1])
                try:
                    data = bitstream.truncate(prefix, layers=keep)
                except errors.BitstreamError as exc:
                    raise Problem(422, f"cannot cut the stream after layer {keep}: {exc}") from None
                header = info(data)
                size = len(data)
            else:
                size = st.st_size
            etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}-{layers or 0}"'
            extra = {"Accept-Ranges": "bytes", "ETag": etag,
                     "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
                     "Cache-Control": "no-cache"}
            if header is not None:
                extra["X-Progcodec-Layers"] = str(header.layers)
                extra["X-Progcodec-Layer-Ends"] = ",".join(map(str, header.layer_ends()))
            rng = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if rng is not None and if_range is not None and if_range.strip() != etag:
                rng = None  # the client's copy is stale: send everything
            span = parse_range(rng, size) if rng is not None else None
            if span == "unsatisfiable":
                raise Problem(416, "range not satisfiable", {"Content-Range": f"bytes */{size}", **extra})
            start, end = span if span else (0, size - 1)
            length = end - start + 1
            self.send_response(206 if span else 200)
            self.send_header("Content-Type", MEDIA_TYPE if path.suffix.lower() == ".pcs" else
                             mimetypes.guess_type(path.name)[0] or "application/octet-stream")
            if span:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            chunked = chunked and not span  # HEAD answers with the headers GET would send
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(length))
            self.send_header("Connection", "close")
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            if self._head or length <= 0:
                return
            if data is not None:
                pieces = (data[start : end + 1],)
            else:
                pieces = _file_pieces(f, start, length)
            self._write(pieces, rate, chunked)

    def _view(self, rel: str):
        path = self._resolve(rel)
        layers, _ = self._layers_param(), self._rate()
        try:
            with open(path, "rb") as f:
                header = read_header(f)
        except errors.BitstreamError as exc:
            raise Problem(422, f"not a readable progcodec stream: {exc}") from None
        relpath = path.relative_to(self.server.root).as_posix()
        keep = {k: v[0] for k, v in self.query.items() if k in ("layers", "throttle")}
        qs = "&".join(f"{k}={quote(v)}" for k, v in keep.items())
        total = header.layers if layers is None else min(layers, header.layers)
        page = Template(web_asset("view.html").decode()).substitute(
            title=html.escape(relpath), width=header.width, height=header.height, layers=total,
            events=html.escape(f"/events/{quote(relpath)}" + (f"?{qs}" if qs else "")),
            file=html.escape(f"/files/{quote(relpath)}"),
            info=html.escape(f"{header.width}x{header.height}, {header.model} {header.rate}, "
                             f"{header.layers} layers"))
        self._send_page(page.encode())

    def _events(self, rel: str):
        path = self._resolve(rel)
        layers, rate = self._layers_param(), self._rate()
        slow = self._param("throttle") is not None and rate is not None and rate != self.server.throttle
        if slow and not self.server.slow_decode_slots.acquire(blocking=False):
            raise Problem(503, "too many client-throttled decodes in progress", {"Retry-After": "2"})
        try:
            self._events_slot(path, layers, rate)
        finally:
            if slow:
                self.server.slow_decode_slots.release()

    def _events_slot(self, path: Path, layers: int | None, rate: float | None):
        if not self.server.decode_slots.acquire(timeout=self.server.decode_wait):
            raise Problem(503, "too many decodes in progress", {"Retry-After": "2"})
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            self._stream_events(path, layers, rate)
        finally:
            self.server.decode_slots.release()

    def _event(self, name: str, payload: dict):
        self.wfile.write(f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode())

    def _stream_events(self, path: Path, layers: int | None, rate: float | None):
        """Read the file at ``rate``, decode it here, send one PNG per refinement (latest wins)."""
        import torch

        t0 = time.monotonic()
        dec = StreamDecoder(layers, latest_only=True)
        bucket = TokenBucket(rate) if rate else None
        received, last, progress_at = 0, None, t0
        self.wfile.write(b"retry: 3600000\n\n")  # the page closes the stream itself when it ends

        def fail(kind: str, exc: BaseException):
            self._event("fail", {"kind": kind, "reason": str(exc), "layer": last.layer if last else 0,
                                 "total": dec.header.layers if dec.header else 0, "bytes": received,
                                 "elapsed": round(time.monotonic() - t0, 3)})

        with open(path, "rb") as f:
            while not dec.finished:
                chunk = f.read(bucket.burst if bucket else 65536)
                if not chunk:
                    break
                if bucket:
                    bucket.take(len(chunk))
                received += len(chunk)
                try:
                    with self.server.cpu_slots, torch.inference_mode():  # at most cpu_slots decoding at once
                        steps = dec.feed(chunk)
                except errors.ProgcodecError as exc:
                    return fail("damaged", exc)
                now = time.monotonic()
                if steps:
                    last = steps[-1]
                    buf = io.BytesIO()
                    last.image.save(buf, "PNG", compress_level=1)
                    self._event("step", {
                        "layer": last.layer, "total": last.layers_total, "bytes": last.bytes_consumed,
                        "received": received, "bpp": round(last.bpp, 4), "elapsed": round(now - t0, 3),
                        "name": last.header.layer_names[last.layer - 1],
                        "png": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()})
                    progress_at = now
                elif now - progress_at > 0.25:
                    self._event("progress", {"received": received, "elapsed": round(now - t0, 3),
                                             "total": dec.header.layers if dec.header else 0})
                    progress_at = now
        try:
            dec.close()
        except errors.TruncatedError as exc:
            return fail("lost", exc)
        except errors.ProgcodecError as exc:
            return fail("damaged", exc)
        self._event("done", {"layer": last.layer, "total": last.layers_total, "bytes": last.bytes_consumed,
                             "bpp": round(last.bpp, 4), "elapsed": round(time.monotonic() - t0, 3)})


def visible_path(root: Path, parts) -> Path | None:
    """``root/parts`` resolved, or None if it, or any folder on the way once symlinks are
    resolved, lies outside ``root`` or is hidden (a name starting with a dot)."""
    cur = root
    for i, part in enumerate(parts):
        cur = cur / part
        try:
            real = cur.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(root) or any(p.startswith(".") for p in real.relative_to(root).parts):
            return None
    return real if parts else None


class _DeadlineReader(io.RawIOBase):
    """The request's socket reads, failing with ``TimeoutError`` once ``deadline`` passed."""

    def __init__(self, sock, timeout: float | None, deadline: float | None):
        self.sock, self.timeout, self.deadline = sock, timeout, deadline

    def readable(self):
        return True

    def readinto(self, b):
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request head did not arrive in time")
            self.sock.settimeout(left if self.timeout is None else min(self.timeout, left))
        elif self.timeout is not None:
            self.sock.settimeout(self.timeout)
        return self.sock.recv_into(b)


def _file_pieces(f, start: int, length: int, size: int = 65536):
    f.seek(start)
    while length > 0:
        data = f.read(min(size, length))
        if not data:
            raise ConnectionResetError("file shrank while being served")  # ends the response
        length -= len(data)
        yield data


class ProgcodecServer(ThreadingHTTPServer):
    """The ``progcodec serve`` server; ``throttle`` in bytes/s per connection (None: no limit)."""

    daemon_threads = True
    request_queue_size = 16

    def __init__(self, root, address=("127.0.0.1", 8000), throttle: float | str | None = None,
                 max_connections: int = 32, max_decodes: int = 4, request_timeout: float = 30.0,
                 max_per_client: int = 8, reserved_slots: int = 4, head_timeout: float = 10.0,
                 quiet: bool = False, suffixes: tuple[str, ...] = (".pcs",), cpu_slots: int | None = None):
        self.root = Path(root).resolve(strict=True)
        self.suffixes = tuple(x.lower() for x in suffixes)  # /files/ serves these (benchmarks add .jpg)
        if not self.root.is_dir():
            raise NotADirectoryError(f"{root} is not a folder")
        self.throttle = parse_rate(throttle) if isinstance(throttle, str) else (throttle or None)
        self.request_timeout, self.quiet = request_timeout, quiet
        self.max_connections, self.max_per_client = max_connections, max(1, min(max_per_client, max_connections))
        self.reserved_slots = min(reserved_slots, max_connections - 1)
        self.head_timeout = head_timeout
        self._conn_lock, self._active, self._per_client = threading.Lock(), 0, {}
        self.decode_slots = threading.BoundedSemaphore(max_decodes)
        # responses slowed by the client's own ?throttle= hold a decode slot for the whole file:
        # they may take only half of them, the rest stay for clients that read at full speed
        self.slow_decode_slots = threading.BoundedSemaphore(max(1, max_decodes // 2))
        # threads (progcodec/threads.py): 1 torch thread per decode unless the process chose, and
        # no more decodes computing at once than CPUs, so concurrent viewers never oversubscribe
        from . import threads

        threads.ensure("server")
        self.cpu_slots = threading.BoundedSemaphore(cpu_slots or threads.decode_slots())
        self.decode_wait = 5.0
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def list_streams(self, limit: int = 1000) -> list[Path]:
        out = []
        for path in sorted(self.root.rglob("*.pcs")):
            rel = path.relative_to(self.root)
            if any(p.startswith(".") for p in rel.parts) or not path.is_file():
                continue
            if visible_path(self.root, rel.parts) is None:  # a symlink out, or to a hidden file
                continue
            out.append(path)
            if len(out) >= limit:
                break
        return out

    def _admit(self, client: str) -> bool:
        """Take a connection slot for ``client`` (an IP): at most ``max_per_client`` each, and
        the last ``reserved_slots`` only for clients holding none, so new clients get in."""
        with self._conn_lock:
            mine = self._per_client.get(client, 0)
            free = self.max_connections - self._active
            if mine >= self.max_per_client or free <= 0 or (mine and free <= self.reserved_slots):
                return False
            self._active += 1
            self._per_client[client] = mine + 1
            return True

    def _release(self, client: str) -> None:
        with self._conn_lock:
            self._active -= 1
            left = self._per_client.get(client, 1) - 1
            if left > 0:
                self._per_client[client] = left
            else:
                self._per_client.pop(client, None)

    def process_request(self, request, client_address):
        if not self._admit(client_address[0]):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                                b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release(client_address[0])
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(client_address[0])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def running(root, host: str = "127.0.0.1", port: int = 0, **kw):
    """A server on an ephemeral loopback port in a background thread (tests, benchmarks)::

        with running("streams/", throttle="256kbit") as server:
            urllib.request.urlopen(server.url + "/files/photo.pcs")
    """
    server = ProgcodecServer(root, (host, port), **kw)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="progcodec-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve(root, host: str = "127.0.0.1", port: int = 8000, throttle: float | str | None = None,
          quiet: bool = False, **kw) -> None:
    """Serve ``root`` until interrupted (what ``progcodec serve`` runs)."""
    with ProgcodecServer(root, (host, port), throttle=throttle, quiet=quiet, **kw) as server:
        rate = f", throttled to {server.throttle * 8 / 1000:g} kbit/s per connection" if server.throttle else ""
        print(f"serving {server.root} at {server.url}/{rate}", flush=True)
        if not is_loopback(host):
            print("warning: listening beyond this machine; every .pcs file under the folder is public",
                  flush=True)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            print("stopped", flush=True)
