"""Issue 17 items 5, 6, 8: the server under slowloris, its headers, symlinks, wide headers.

Loopback only (127.0.0.x), few connections, every wait bounded.
"""
import http.client
import os
import socket
import time
import urllib.error
import urllib.request

import pytest

import progcodec
import progcodec.server
from conftest import smooth_image
from progcodec.server import ProgcodecServer, running
from test_hostile import wide_header_stream

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, stream):
    root = tmp_path_factory.mktemp("served")
    (root / "a.pcs").write_bytes(stream)
    (root / "big.pcs").write_bytes(progcodec.encode(smooth_image(256, 192), model="pyramid", rate="high"))
    (root / ".secret.pcs").write_bytes(stream)
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.pcs").write_bytes(stream)
    os.symlink(".secret.pcs", root / "link.pcs")
    os.symlink(".hidden", root / "dirlink")
    (root / "wide.pcs").write_bytes(wide_header_stream(stream))
    return root


def connect(server, source="127.0.0.1", timeout=5.0):
    host, port = server.server_address[:2]
    try:
        return socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
    except OSError as exc:
        pytest.skip(f"cannot connect from {source}: {exc}")


def get(server, path, method="GET", headers=None):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read() if method != "HEAD" else b""
    conn.close()
    return resp, body


def closed_within(sock, seconds: float, drip: bytes = b"X-A: b\r\n", every: float = 0.2) -> float:
    """Send ``drip`` every ``every`` s until the server closes; the time it took (or inf)."""
    t0 = time.monotonic()
    sock.settimeout(every)
    while time.monotonic() - t0 < seconds:
        try:
            sock.sendall(drip)
            if sock.recv(4096) == b"":
                return time.monotonic() - t0
            return time.monotonic() - t0  # an answer (408/503) ends it too
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t0
    return float("inf")


# -- item 6: slowloris ---------------------------------------------------------------------
def test_request_head_has_a_deadline(folder):
    """Was: a header line every 2 s (or 1 byte per 10 s) kept a connection for 80 s and more."""
    with running(folder, quiet=True, head_timeout=1.0, request_timeout=5.0) as server:
        lines = connect(server)
        lines.sendall(b"GET / HTTP/1.1\r\n")
        assert closed_within(lines, 6) < 3
        byte = connect(server)
        assert closed_within(byte, 6, drip=b"G", every=0.4) < 3
        lines.close(), byte.close()


def test_slow_clients_do_not_lock_out_others(folder):
    """Was: 200 slow connections held all 32 slots; every legitimate probe got 503."""
    with running(folder, quiet=True, max_connections=8, max_per_client=4, reserved_slots=2,
                 head_timeout=5.0) as server:
        slow = []
        for _ in range(8):  # one attacker address: only 4 get a slot, the rest 503 at once
            s = connect(server, "127.0.0.2")
            s.sendall(b"GET / HTTP/1.1\r\n")
            slow.append(s)
        time.sleep(0.3)
        refused = 0
        for s in slow:
            s.settimeout(0.2)
            try:
                refused += s.recv(100).startswith(b"HTTP/1.1 503")
            except socket.timeout:
                pass
        assert refused == 4
        for src in ("127.0.0.3", "127.0.0.3"):  # a second attacker takes 2 more: 6 of 8 held
            s = connect(server, src)
            s.sendall(b"GET / HTTP/1.1\r\n")
            slow.append(s)
        time.sleep(0.2)
        third = connect(server, "127.0.0.3")  # would take a reserved slot: refused
        third.settimeout(2)
        assert third.recv(100).startswith(b"HTTP/1.1 503")
        resp, _ = get(server, "/")           # a new client still gets in
        assert resp.status == 200
        for s in slow + [third]:
            s.close()


def test_admission_rules():
    srv = ProgcodecServer.__new__(ProgcodecServer)
    srv.max_connections, srv.max_per_client, srv.reserved_slots = 6, 3, 2
    import threading

    srv._conn_lock, srv._active, srv._per_client = threading.Lock(), 0, {}
    assert [srv._admit("a") for _ in range(4)] == [True, True, True, False]  # per-client cap
    assert [srv._admit("b") for _ in range(3)] == [True, False, False]      # b may not take the reserve
    assert srv._admit("c") and srv._admit("d") and not srv._admit("e")      # new clients use it; full
    srv._release("a")
    assert not srv._admit("a") and srv._admit("e")                          # the freed slot is reserved
    assert srv._per_client == {"a": 2, "b": 1, "c": 1, "d": 1, "e": 1}


def test_throttled_events_leave_decode_slots_for_others(folder):
    """Was: four ?throttle=8kbit clients held every /events decode slot for the whole file."""
    with running(folder, quiet=True, max_decodes=2) as server:
        slow = connect(server)
        slow.sendall(b"GET /events/big.pcs?throttle=8kbit HTTP/1.1\r\nHost: x\r\n\r\n")
        slow.settimeout(10)
        assert slow.recv(100).startswith(b"HTTP/1.1 200")
        t = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.url + "/events/big.pcs?throttle=8kbit", timeout=10)
        assert info.value.code == 503 and time.monotonic() - t < 3
        with urllib.request.urlopen(server.url + "/events/a.pcs", timeout=30) as resp:
            assert resp.status == 200 and b"event: done" in resp.read()
        slow.close()


# -- item 8: headers, symlinks, digits -----------------------------------------------------
def test_nosniff_everywhere_and_csp_on_error_pages(folder):
    with running(folder, quiet=True) as server:
        for path in ("/files/a.pcs", "/", "/nosuch", "/files/nosuch.pcs", "/static/viewer.js"):
            resp, _ = get(server, path)
            assert resp.getheader("X-Content-Type-Options") == "nosniff", path
        resp, _ = get(server, "/nosuch")
        assert resp.status == 404 and "default-src 'none'" in resp.getheader("Content-Security-Policy")
        with urllib.request.urlopen(server.url + "/events/a.pcs", timeout=30) as r:
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            r.read()
        s = connect(server)  # http.server's own error page (bad request line)
        s.sendall(b"GET / x HTTP/1.1\r\n\r\n")
        s.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            more = s.recv(4096)
            if not more:
                break
            head += more
        s.close()
        assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0]
        assert b"X-Content-Type-Options: nosniff" in head and b"Content-Security-Policy: default-src 'none'" in head


def test_head_chunked_matches_get(folder):
    with running(folder, quiet=True) as server:
        g, body = get(server, "/files/a.pcs?chunked=1")
        h, _ = get(server, "/files/a.pcs?chunked=1", method="HEAD")
        assert g.getheader("Transfer-Encoding") == h.getheader("Transfer-Encoding") == "chunked"
        assert g.getheader("Content-Length") is None and h.getheader("Content-Length") is None
        assert body == (folder / "a.pcs").read_bytes()


def test_symlinks_to_hidden_files_are_neither_served_nor_listed(folder):
    with running(folder, quiet=True) as server:
        for path in ("/files/link.pcs", "/files/dirlink/x.pcs", "/view/link.pcs", "/files/.secret.pcs"):
            assert get(server, path)[0].status == 404, path
        _, index = get(server, "/")
        assert b"link.pcs" not in index and b"x.pcs" not in index and b"a.pcs" in index


def test_layers_accepts_ascii_digits_only(folder):
    with running(folder, quiet=True) as server:
        assert get(server, "/files/a.pcs?layers=%D9%A3")[0].status == 400  # ARABIC-INDIC DIGIT THREE
        assert get(server, "/files/a.pcs?layers=%EF%BC%92")[0].status == 400  # FULLWIDTH 2
        assert get(server, "/files/a.pcs?layers=3")[0].status == 200
    assert progcodec.server.parse_range("bytes=\u0663-", 100) is None  # Range: ASCII digits too


# -- item 5: offsets from the bytes --------------------------------------------------------
def test_wide_header_is_cut_at_its_real_offsets(folder):
    """Was: a header with map16/uint32 widths got offsets 11 bytes short: ?layers=2 gave 422."""
    wide = (folder / "wide.pcs").read_bytes()
    ends = progcodec.info(wide).layer_ends()
    with running(folder, quiet=True) as server:
        resp, _ = get(server, "/files/wide.pcs")
        assert resp.getheader("X-Progcodec-Layer-Ends") == ",".join(map(str, ends))
        resp, body = get(server, "/files/wide.pcs?layers=2")
        assert resp.status == 200 and progcodec.info(body).layers == 2
        assert progcodec.decode(body).layer == 2
