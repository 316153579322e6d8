"""Network decoding and `progcodec serve`: real HTTP on 127.0.0.1, ephemeral ports, no timing asserts."""
import asyncio
import base64
import http.client
import io
import json
import socket
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

import progcodec
from progcodec import cli, net
from progcodec.server import parse_range, running


def pixels(im):
    return np.asarray(im).astype(int)


def same(a, b):
    return pixels(a).shape == pixels(b).shape and (pixels(a) == pixels(b)).all()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def site(tmp_path_factory, stream):
    root = tmp_path_factory.mktemp("site")
    outside = tmp_path_factory.mktemp("outside")
    ends = progcodec.info(stream).layer_ends()
    (root / "photo.pcs").write_bytes(stream)
    (root / "sub").mkdir()
    (root / "sub" / "two layers.pcs").write_bytes(progcodec.truncate(stream, 2))
    (root / "cut.pcs").write_bytes(stream[: ends[1] + 10])   # the file ends inside layer 3
    (root / "notes.txt").write_text("not a stream")
    (root / ".hidden.pcs").write_bytes(stream)
    (outside / "secret.pcs").write_bytes(stream)
    (root / "link.pcs").symlink_to(outside / "secret.pcs")
    return root


@pytest.fixture(scope="module")
def server(site):
    with running(site, quiet=True, request_timeout=5) as srv:
        yield srv


@pytest.fixture(scope="module")
def expected(stream):
    return list(progcodec.decode_stream([stream]))


def get(url, headers=None, method="GET"):
    """(status, headers, body) without raising on HTTP errors."""
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def raw_get(server, path):
    """Send ``path`` exactly as written (urllib would normalise it)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@contextmanager
def misbehaving_server(body: bytes, length: int, stall: bool = False):
    """A loopback HTTP server that announces ``length`` bytes, sends ``body`` and then drops
    the connection (or, with ``stall``, keeps it open without sending anything more)."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def handle(conn):
        with conn:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/x-progcodec\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % length + body)
            if stall:
                stop.wait(20)

    def loop():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/photo.pcs"
    finally:
        stop.set()
        thread.join(5)
        sock.close()


# -- helpers ----------------------------------------------------------------------------------
def test_parse_rate():
    assert net.parse_rate("256kbit") == 32000
    assert net.parse_rate("2mbit") == net.parse_rate("2Mbps") == 250000
    assert net.parse_rate("64kB") == 64000 and net.parse_rate("1MiB/s") == 1 << 20
    assert net.parse_rate("1500") == 1500 and net.parse_rate("off") is None and net.parse_rate(None) is None
    for bad in ("64kb", "fast", "-1kbit", "1e3kbit", "kbit"):
        with pytest.raises(ValueError):
            net.parse_rate(bad)


def test_token_bucket_paces_slices_with_a_fake_clock():
    now = [0.0]
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    bucket = net.TokenBucket(1000, burst=100, clock=lambda: now[0], sleep=sleep)
    pieces = list(bucket.slices(bytes(1000)))
    assert [len(p) for p in pieces] == [100] * 10 and b"".join(pieces) == bytes(1000)
    assert sum(sleeps) == pytest.approx(1.0)  # 1000 B at 1000 B/s (the bucket starts empty)
    now[0] += 10  # idle time refills only up to the burst
    sleeps.clear()
    list(bucket.slices(bytes(300)))
    assert sum(sleeps) == pytest.approx(0.2)


def test_parse_range():
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=95-200", 100) == (95, 99)
    assert parse_range("bytes=100-", 100) == "unsatisfiable"
    assert parse_range("bytes=-0", 100) == "unsatisfiable"
    for ignored in ("bytes=0-1,5-6", "items=0-1", "bytes=9-2", "bytes=-", "nonsense"):
        assert parse_range(ignored, 100) is None


# -- clients ----------------------------------------------------------------------------------
def check_steps(steps, expected, offsets=True):
    assert [s.layer for s in steps] == [s.layer for s in expected]
    if offsets:  # (a server-side cut rewrites the header, which shifts them)
        assert [s.bytes_consumed for s in steps] == [s.bytes_consumed for s in expected]
    assert same(steps[-1].image, expected[-1].image)


def test_decode_stream_straight_from_urlopen(server, expected):
    with urllib.request.urlopen(server.url + "/files/photo.pcs", timeout=10) as resp:
        check_steps(list(progcodec.decode_stream(resp)), expected)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 13, 4096])
def test_iter_body_any_chunk_size(server, expected, chunk_size, chunked):
    url = server.url + "/files/photo.pcs" + ("?chunked=1" if chunked else "")
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert (resp.headers["Transfer-Encoding"] == "chunked") == chunked
        check_steps(list(progcodec.decode_stream(net.iter_body(resp, chunk_size))), expected)


def test_throttled_response_is_intact(server, stream):
    status, headers, body = get(server.url + "/files/photo.pcs?throttle=400kB")
    assert status == 200 and body == stream


def test_requests_response(server, expected):
    requests = pytest.importorskip("requests")
    for query in ("", "?chunked=1"):
        with requests.get(server.url + "/files/photo.pcs" + query, stream=True, timeout=10) as r:
            check_steps(list(progcodec.decode_stream(net.iter_body(r))), expected)
        with requests.get(server.url + "/files/photo.pcs" + query, stream=True, timeout=10) as r:
            check_steps(list(progcodec.decode_stream(r.iter_content(chunk_size=7))), expected)


def test_httpx_sync_and_async(server, expected):
    httpx = pytest.importorskip("httpx")
    url = server.url + "/files/photo.pcs?chunked=1"
    with httpx.stream("GET", url, timeout=10) as r:
        check_steps(list(progcodec.decode_stream(r.iter_bytes())), expected)

    async def main():
        async with httpx.AsyncClient(timeout=10) as client:
            async with client.stream("GET", url) as r:
                return [s async for s in progcodec.adecode_stream(r.aiter_bytes(), latest_only=True)]

    steps = asyncio.run(main())  # latest_only: layers that arrive together render only the newest
    assert steps[-1].layer == 5 and same(steps[-1].image, expected[-1].image)


@pytest.mark.parametrize("query", ["", "?chunked=1", "?layers=3"])
def test_asyncio_streams_client(server, expected, query):
    async def main():
        chunks = net.aopen_url(server.url + "/files/photo.pcs" + query, timeout=10, chunk_size=97)
        return [s async for s in progcodec.adecode_stream(chunks)]

    steps = asyncio.run(main())
    check_steps(steps, expected[:3] if query == "?layers=3" else expected, offsets=query != "?layers=3")


def test_asyncio_client_error_status(server):
    async def main():
        async for _ in net.aopen_url(server.url + "/files/missing.pcs", timeout=10):
            pass

    with pytest.raises(net.HTTPStatusError, match="404"):
        asyncio.run(main())


# -- server -----------------------------------------------------------------------------------
def test_layers_param_cuts_at_the_layer_table(server, stream):
    status, headers, body = get(server.url + "/files/photo.pcs?layers=2")
    assert status == 200 and body == progcodec.truncate(stream, 2)
    assert headers["X-Progcodec-Layers"] == "2"
    assert headers["X-Progcodec-Layer-Ends"] == ",".join(map(str, progcodec.info(body).layer_ends()))
    assert same(progcodec.decode(body).image, progcodec.decode(stream, layers=2).image)
    status, headers, body = get(server.url + "/files/photo.pcs?layers=99")  # more than there are: all
    assert status == 200 and body == progcodec.truncate(stream, 5)
    cut = progcodec.truncate(stream, 2)
    status, headers, part = get(server.url + "/files/photo.pcs?layers=2", {"Range": "bytes=10-"})
    assert status == 206 and part == cut[10:] and headers["Content-Range"] == f"bytes 10-{len(cut) - 1}/{len(cut)}"


def test_range_requests(server, stream):
    url, n = server.url + "/files/photo.pcs", len(stream)
    status, headers, body = get(url, {"Range": "bytes=0-99"})
    assert status == 206 and body == stream[:100] and headers["Content-Range"] == f"bytes 0-99/{n}"
    assert get(url, {"Range": "bytes=-50"})[2] == stream[-50:]
    status, headers, _ = get(url, {"Range": f"bytes={n}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{n}"
    assert get(url, {"Range": "bytes=0-1,4-5"})[:3:2] == (200, stream)   # several ranges: whole file
    etag = get(url, method="HEAD")[1]["ETag"]
    assert get(url, {"Range": "bytes=0-9", "If-Range": etag})[0] == 206
    assert get(url, {"Range": "bytes=0-9", "If-Range": '"stale"'})[:3:2] == (200, stream)
    status, headers, body = get(url, method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(n) and headers["Accept-Ranges"] == "bytes"


def test_client_fetches_layers_one_range_at_a_time(server, expected):
    """A client can ask for the preview first and the rest later, using the advertised layer ends."""
    url = server.url + "/files/photo.pcs"
    dec = progcodec.StreamDecoder()
    ends = [int(x) for x in get(url, method="HEAD")[1]["X-Progcodec-Layer-Ends"].split(",")]
    start, steps = 0, []
    for end in ends:
        status, _, part = get(url, {"Range": f"bytes={start}-{end - 1}"})
        assert status == 206
        steps += dec.feed(part)
        start = end
    dec.close()
    check_steps(steps, expected)


@pytest.mark.parametrize("path", [
    "/files/../outside/secret.pcs", "/files/%2e%2e/%2e%2e/etc/passwd", "/files/..%2Fsecret.pcs",
    "/files/notes.txt", "/files/.hidden.pcs", "/files/link.pcs", "/files//etc/passwd.pcs",
    "/files/%00.pcs", "/files/%ff.pcs", "/files/missing.pcs", "/files/", "/static/../server.py",
    "/static/view.html", "/nowhere",
])
def test_only_pcs_files_under_the_folder(server, path):
    assert raw_get(server, path)[0] == 404


@pytest.mark.parametrize("query", ["layers=0", "layers=x", "layers=-1", "layers=1&layers=2", "layers=1e3",
                                   "throttle=1bit", "throttle=fast", "layers=" + "9" * 5000])
def test_bad_query_values(server, query):
    assert raw_get(server, "/files/photo.pcs?" + query)[0] == 400


def test_subfolders_and_quoted_names(server, stream):
    status, _, body = get(server.url + "/files/sub/two%20layers.pcs")
    assert status == 200 and body == progcodec.truncate(stream, 2)
    status, _, page = get(server.url + "/")
    page = page.decode()
    assert status == 200 and "photo.pcs" in page and "sub/two%20layers.pcs" in page
    assert ".hidden" not in page and "link.pcs" not in page and "notes.txt" not in page


def test_connection_cap_answers_503(site, stream):
    with running(site, quiet=True, max_connections=1, request_timeout=3) as srv:
        idle = socket.create_connection(srv.server_address[:2], timeout=5)  # holds the only slot
        try:
            idle.sendall(b"GET /files/photo.pcs HTTP/1.1\r\n")  # ... and never finishes its request
            assert get(srv.url + "/files/photo.pcs")[0] == 503
        finally:
            idle.close()
        for _ in range(100):  # the slot comes back once the server notices
            status, _, body = get(srv.url + "/files/photo.pcs")
            if status == 200:
                break
            threading.Event().wait(0.05)
        assert status == 200 and body == stream


# -- web viewer plumbing (the browser test is in test_viewers.py) -----------------------------
def sse(body: bytes):
    events = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def png(data_url):
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_events_stream_one_png_per_refinement(server, expected, stream):
    # read at 8 kB/s in 256-byte slices: layers that complete in the same slice render only the newest
    status, headers, body = get(server.url + "/events/photo.pcs?throttle=8kB")
    events = sse(body)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    steps = [d for e, d in events if e == "step"]
    layers = [s["layer"] for s in steps]
    ends = progcodec.info(stream).layer_ends()
    first_slice = -(-ends[0] // 256) * 256  # the first 256-byte slice that completes a layer
    first = sum(e <= first_slice for e in ends)
    assert layers[0] == first and layers[-1] == 5 and layers == sorted(set(layers)) and events[-1][0] == "done"
    assert len(layers) >= 2
    for s in steps:
        assert same(png(s["png"]), expected[s["layer"] - 1].image)


def test_events_stream_reports_a_cut_stream(server, expected):
    events = sse(get(server.url + "/events/cut.pcs")[2])
    assert [d["layer"] for e, d in events if e == "step"][-1] == 2
    kind, data = events[-1]
    assert kind == "fail" and data["kind"] == "lost" and data["layer"] == 2 and data["total"] == 5
    assert "ended after 2 of 5 layers" in data["reason"]


def test_view_page(server):
    status, headers, page = get(server.url + "/view/photo.pcs?layers=3&throttle=64kbit")
    page = page.decode()
    assert status == 200 and "default-src 'self'" in headers["Content-Security-Policy"]
    assert 'data-events="/events/photo.pcs?layers=3&amp;throttle=64kbit"' in page and 'width="96"' in page
    for asset in ("viewer.js", "viewer.css"):
        assert get(server.url + "/static/" + asset)[0] == 200
    assert get(server.url + "/view/notes.txt")[0] == 404


# -- failures seen by a client ----------------------------------------------------------------
def test_connection_dropped_mid_layer(stream, expected):
    cut = progcodec.info(stream).layer_ends()[1] + 10
    with misbehaving_server(stream[:cut], len(stream)) as url:
        got = []
        with pytest.raises(ConnectionError, match="still to come"):
            with urllib.request.urlopen(url, timeout=10) as resp:
                for step in progcodec.decode_stream(net.iter_body(resp)):
                    got.append(step)
        assert [s.layer for s in got] == [1, 2]
        reports = list(net.progressive(url, timeout=10))
    last = reports[-1]
    assert last.state == "lost" and last.step.layer == 2
    assert last.text.startswith("connection lost after layer 2/5: ")
    assert same(last.step.image, expected[1].image)
    assert reports[0].state == "connecting" and all(not r.finished for r in reports[:-1])


def test_file_cut_mid_layer_and_bad_url(server):
    last = list(net.progressive(server.url + "/files/cut.pcs", timeout=10))[-1]
    assert last.state == "lost" and last.text.startswith("connection lost after layer 2/5: stream ended after 2")
    last = list(net.progressive(server.url + "/files/missing.pcs", timeout=10))[-1]
    assert last.state == "error" and last.step is None and "404" in last.text
    last = list(net.progressive(server.url + "/files/photo.pcs?layers=3", timeout=10))[-1]
    assert last.state == "done" and last.step.layer == 3 and last.text.endswith("done")


def test_stalled_connection_times_out(stream):
    first = progcodec.info(stream).layer_ends()[0]
    with misbehaving_server(stream[:first + 3], len(stream), stall=True) as url:
        last = list(net.progressive(url, timeout=0.5))[-1]
        assert last.state == "lost" and last.step.layer == 1 and "timed out" in last.text

        async def main():
            ticks, got = 0, []

            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.02)
                    ticks += 1

            task = asyncio.create_task(ticker())
            try:
                async for step in progcodec.adecode_stream(net.aopen_url(url, timeout=0.5)):
                    got.append(step.layer)
            except TimeoutError:
                pass
            finally:
                task.cancel()
            return ticks, got

        ticks, got = asyncio.run(main())
        assert got == [1] and ticks > 5  # the event loop kept running through the stall


def test_local_file_with_client_throttle(site, expected):
    reports = list(net.progressive(str(site / "photo.pcs"), throttle_rate="400kB"))
    assert reports[-1].state == "done" and same(reports[-1].step.image, expected[-1].image)


def test_cli_parser_has_serve_and_view(capsys):
    a = cli.build_parser().parse_args(["serve", "dir", "--throttle", "256kbit", "--port", "0"])
    assert (a.cmd, a.dir, a.throttle, a.host) == ("serve", "dir", "256kbit", "127.0.0.1")
    a = cli.build_parser().parse_args(["view", "http://127.0.0.1:1/x.pcs", "--layers", "2"])
    assert (a.cmd, a.layers) == ("view", 2)
    assert cli.main(["serve", ".", "--throttle", "fast"]) == 2
    assert "bad bandwidth" in capsys.readouterr().err


def test_network_benchmark_runs(capsys, monkeypatch):
    """benchmarks/network.py end to end on a tiny image and a fast link (no timing asserted)."""
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    had_common = "common" in sys.modules
    try:
        spec = importlib.util.spec_from_file_location("network_benchmark", root / "benchmarks" / "network.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        bench.main(["--image", str(root / "tests" / "data" / "photo_128.png"), "--rates", "4mbit",
                    "--repeat", "1", "--plugins", "pyramid"])
    finally:
        if not had_common:
            sys.modules.pop("common", None)  # benchmarks/common.py: not a module other tests should see
    out = capsys.readouterr().out
    assert "| 4mbit | pyramid" in out and "| 4mbit | progressive JPEG" in out and "| 4mbit | baseline JPEG" in out


def test_unexpected_server_error_is_a_500(server, monkeypatch):
    import progcodec.server

    def boom(f):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(progcodec.server, "read_header", boom)
    assert get(server.url + "/files/photo.pcs")[0] == 500
    monkeypatch.undo()
    assert get(server.url + "/files/photo.pcs")[0] == 200  # and the server keeps serving


def test_load_many_concurrent_streams_from_the_server(server, expected):
    """N clients decode at once from the local server (shared model): nothing lost, all exact."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    def fetch(i):
        url = server.url + "/files/photo.pcs" + ("?chunked=1" if i % 2 else "")
        with urllib.request.urlopen(url, timeout=30) as resp:
            return list(progcodec.decode_stream(net.iter_body(resp, 1 + 97 * i)))

    n = 16
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(fetch, range(n)))
    elapsed = time.perf_counter() - start
    for steps in results:
        assert [s.layer for s in steps] == [s.layer for s in expected]
        assert all(same(a.image, b.image) for a, b in zip(steps, expected))
    print(f"load: {n} streams, 8 client threads, {elapsed:.2f} s, {n / elapsed:.1f} streams/s")
