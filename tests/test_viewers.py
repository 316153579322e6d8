"""The desktop viewer under Xvfb and the web viewer in headless Chromium, checked by screenshots.

Needs the Debian packages xvfb, xdotool and chromium (.ci/setup-system.sh installs them);
each test skips with the reason where they are missing. Screenshots are written to the test's
tmp folder, and also to $PROGCODEC_SCREENSHOTS when set (to look at them).
"""
import base64
import fcntl
import gc
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import progcodec
from progcodec.server import running

SIZE = (160, 120)
THROTTLE = "32kbit"   # 4 kB/s: the ~5 kB stream takes over a second, its first layer ~0.15 s


@pytest.fixture(autouse=True)
def tk_garbage_collected_in_the_main_thread():
    """Tk objects must be freed by the thread that made them: a garbage collection that runs
    in a viewer's worker thread and frees an earlier test's window aborts the interpreter
    (Tcl_AsyncDelete). Collect before and after each test, here, in the main thread."""
    gc.collect()
    yield
    gc.collect()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    src = Path(progcodec.__file__).parent / "data" / "default.png"
    if src.exists():
        img = Image.open(src).convert("RGB").resize(SIZE, Image.LANCZOS)
    else:
        from progcodec.testing import sample_image

        img = sample_image(*SIZE)
    return progcodec.encode(img, model="pyramid")


@pytest.fixture(scope="module")
def final(data):
    return np.asarray(progcodec.decode(data).image).astype(int)


@pytest.fixture(scope="module")
def server(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("viewer-site")
    (root / "photo.pcs").write_bytes(data)
    (root / "cut.pcs").write_bytes(data[: progcodec.info(data).layer_ends()[1] + 20])  # ends inside layer 3
    with running(root, quiet=True, request_timeout=10) as srv:
        yield srv


def keep(path: Path) -> Path:
    """Copy a screenshot to $PROGCODEC_SCREENSHOTS (if set) so a person can look at it."""
    out = os.environ.get("PROGCODEC_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / path.name)
    return path


def region(img: Image.Image, x=0, y=0) -> np.ndarray:
    return np.asarray(img.convert("RGB").crop((x, y, x + SIZE[0], y + SIZE[1]))).astype(int)


def wait_for(predicate, timeout=30.0, interval=0.05, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


# -- Tk under Xvfb ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def display():
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (apt-get install xvfb; see .ci/setup-system.sh)")
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        ready = []
        reader = threading.Thread(target=lambda: ready.append(os.read(r, 64)), daemon=True)
        reader.start()
        reader.join(20)
        if not ready or not ready[0].strip():
            pytest.skip("Xvfb did not start")
        yield ":" + ready[0].decode().strip()
    finally:
        os.close(r)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def tk(display):
    tkinter = pytest.importorskip("tkinter")
    pytest.importorskip("PIL.ImageTk")
    from PIL import features

    if not features.check("xcb"):
        pytest.skip("this Pillow build has no XCB support (ImageGrab cannot take X screenshots)")
    return tkinter


def grab(display: str, bbox=None) -> Image.Image:
    from PIL import ImageGrab

    return ImageGrab.grab(bbox=bbox, xdisplay=display)


def xdotool(display, *args) -> str:
    out = subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display},
                         capture_output=True, text=True, timeout=10)
    return out.stdout.strip() if out.returncode == 0 else ""


def test_progcodec_view_refines_in_place(tk, display, server, final, tmp_path):
    """`progcodec view URL` in a real window: a preview first, then the full decode, pixel for pixel."""
    if not shutil.which("xdotool"):
        pytest.skip("xdotool is not installed (apt-get install xdotool)")
    env = {**os.environ, "DISPLAY": display, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "progcodec.cli", "view",
                             f"{server.url}/files/photo.pcs?throttle={THROTTLE}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def window(text):
            if proc.poll() is not None:
                raise AssertionError(f"progcodec view exited: {proc.stdout.read().decode(errors='replace')}")
            return (xdotool(display, "search", "--name", text) or "").split("\n")[0]

        wait_for(lambda: window("layer [1-4]/5") or window("layer 5/5"), what="the first refinement")
        first = grab(display)
        first.save(tmp_path / "tk-first.png")
        keep(tmp_path / "tk-first.png")
        win = wait_for(lambda: window("layer 5/5"), what="the final refinement")
        geometry = dict(line.split("=") for line in xdotool(display, "getwindowgeometry", "--shell", win).split())
        time.sleep(0.2)  # let Tk paint
        last = grab(display)
        last.save(tmp_path / "tk-last.png")
        keep(tmp_path / "tk-last.png")
        x, y = int(geometry["X"]), int(geometry["Y"])
        assert np.abs(region(last, x, y) - final).max() <= 2, "the window does not show the full decode"
        assert np.abs(region(first, x, y) - final).mean() > 1, "the first screenshot already showed the final image"
        title = xdotool(display, "getwindowname", win)
        assert title.endswith("layer 5/5")
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = b""
    assert b"Traceback" not in out, out.decode(errors="replace")


def test_tk_widget_keeps_last_layer_when_the_connection_drops(tk, display, server, data, tmp_path):
    from progcodec.viewer import open_window

    root, widget = open_window(f"{server.url}/files/cut.pcs?throttle=64kbit", screen=display)
    try:
        ticks = []
        def tick():
            ticks.append(1)
            root.after(20, tick)
        tick()
        end = time.monotonic() + 30
        while not widget.finished and time.monotonic() < end:
            root.update()
            time.sleep(0.01)
        root.update()
        text = widget.status.cget("text")
        assert text.startswith("connection lost after layer 2/5: stream ended after 2 of 5 layers"), text
        assert "connection lost" in root.title()
        assert widget.step.layer == 2 and len(ticks) > 3
        shot = grab(display, (0, 0, root.winfo_width(), root.winfo_height()))
        shot.save(tmp_path / "tk-lost.png")
        keep(tmp_path / "tk-lost.png")
        want = np.asarray(progcodec.decode(data, layers=2).image).astype(int)
        assert np.abs(region(shot) - want).max() <= 2
    finally:
        root.destroy()


def test_tk_event_loop_runs_through_a_stalled_connection(tk, display, data):
    """A server that stops sending after the first layer: the window stays responsive."""
    import socket

    from progcodec.viewer import open_window

    first = progcodec.info(data).layer_ends()[0]
    sock = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()

    def serve():
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data) + data[: first + 5])
            release.wait(20)

    threading.Thread(target=serve, daemon=True).start()
    root, widget = open_window(f"http://127.0.0.1:{sock.getsockname()[1]}/x.pcs", timeout=20, screen=display)
    try:
        end = time.monotonic() + 20
        while (widget.step is None) and time.monotonic() < end:
            root.update()
            time.sleep(0.01)
        assert widget.step is not None and widget.step.layer == 1
        ticks = []
        root.after(0, lambda: ticks.append(1))
        for _ in range(30):  # 0.6 s of the stall: every update() returns, callbacks keep firing
            root.after(0, lambda: ticks.append(1))
            root.update()
            time.sleep(0.02)
        assert len(ticks) > 25 and not widget.finished and widget.status.cget("text").startswith("layer 1/5")
    finally:
        release.set()
        root.destroy()
        sock.close()


# -- the web viewer in headless Chromium ----------------------------------------------------------
class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4; no websockets)."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-pipe", "--force-color-profile=srgb", "--hide-scrollbars",
             "--window-size=640,480"]

    def __init__(self, binary: str, profile: str):
        to_child, self._w = os.pipe()
        self._r, from_child = os.pipe()

        def fds():  # in the child: the pipe ends become fds 3 (commands in) and 4 (replies out)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (to_child, from_child)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen([binary, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     pass_fds=(3, 4), preexec_fn=fds,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._id, self._replies, self._cv = 0, {}, threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 640, "height": 480, "deviceScaleFactor": 1, "mobile": False}, self.session)

    def _read(self):
        buf = b""
        while data := os.read(self._r, 1 << 16):
            buf += data
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cv:
                        self._replies[msg["id"]] = msg
                        self._cv.notify_all()

    def send(self, method, params=None, session=None, timeout=30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        with self._cv:
            if not self._cv.wait_for(lambda: msg["id"] in self._replies, timeout):
                raise TimeoutError(f"chromium did not answer {method}")
            reply = self._replies.pop(msg["id"])
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def page(self, method, params=None):
        return self.send(method, params, self.session)

    def evaluate(self, expression):
        return self.page("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def screenshot(self) -> Image.Image:
        return Image.open(io.BytesIO(base64.b64decode(self.page("Page.captureScreenshot", {"format": "png"})["data"])))

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


@pytest.fixture(scope="module")
def chromium():
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not binary:
        pytest.skip("chromium is not installed (apt-get install chromium; see .ci/setup-system.sh)")
    with tempfile.TemporaryDirectory(prefix="progcodec-chromium-") as profile:
        browser = Chromium(binary, profile)
        try:
            yield browser
        finally:
            browser.close()


STATE = "[document.body.dataset.shown, document.body.dataset.state, document.getElementById('status').textContent]"


def test_web_viewer_refines_in_the_browser(chromium, server, final, tmp_path):
    chromium.page("Page.navigate", {"url": f"{server.url}/view/photo.pcs?throttle={THROTTLE}"})
    state = wait_for(lambda: (s := chromium.evaluate(f"document.body && {STATE}")) and s[0] not in (None, "0") and s,
                     what="the first refinement on the page")
    first = chromium.screenshot()
    first.save(tmp_path / "web-first.png")
    keep(tmp_path / "web-first.png")
    assert state[0] != "5", "the stream was over before the first screenshot"
    state = wait_for(lambda: (s := chromium.evaluate(STATE)) and s[0] == "5" and s, what="the last refinement")
    last = chromium.screenshot()
    last.save(tmp_path / "web-last.png")
    keep(tmp_path / "web-last.png")
    assert state[2].startswith("layer 5/5")
    assert np.abs(region(last) - final).max() <= 2, "the page does not show the full decode"
    assert np.abs(region(first) - region(last)).mean() > 1, "first and last screenshots do not differ"


def test_web_viewer_reports_a_lost_stream(chromium, server, data, tmp_path):
    chromium.page("Page.navigate", {"url": f"{server.url}/view/cut.pcs"})
    state = wait_for(lambda: (s := chromium.evaluate(f"document.body && {STATE}")) and s[1] == "lost" and s,
                     what="the lost-connection status")
    assert state[2].startswith("connection lost after layer 2/5: stream ended after 2 of 5 layers"), state
    wait_for(lambda: chromium.evaluate(STATE)[0] == "2", what="layer 2 on screen")
    shot = chromium.screenshot()
    shot.save(tmp_path / "web-lost.png")
    keep(tmp_path / "web-lost.png")
    want = np.asarray(progcodec.decode(data, layers=2).image).astype(int)
    assert np.abs(region(shot) - want).max() <= 2
