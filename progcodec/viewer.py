"""Desktop viewer (Tk through Pillow's ImageTk): shows the preview at once and refines in place.

``progcodec view FILE_OR_URL`` opens a window; in your own Tk app embed the widget::

    from progcodec.viewer import ProgressiveImage
    widget = ProgressiveImage(root, "http://127.0.0.1:8000/files/photo.pcs")
    widget.pack()

The network and the decoder run in a worker thread (:func:`progcodec.net.progressive`); the Tk
event loop only polls a queue, so a slow or stalled connection never blocks it. When several
refinements are waiting, only the newest is drawn (latest wins). A connection that drops
leaves the last complete refinement on screen with the status
``connection lost after layer k/N: <reason>``.
"""
from __future__ import annotations

import queue
import threading
import time
import tkinter as tk
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from PIL import ImageTk

from . import net

POLL_MS = 30
STALL_S = 2.0


def source_name(source) -> str:
    if net.is_url(source):
        return PurePosixPath(urlsplit(source).path).name or source
    return getattr(source, "name", None) or str(source)


class ProgressiveImage(tk.Frame):
    """A Tk widget that shows a progcodec stream refining as it arrives, with a status line.

    ``source``: URL, path, ``-`` or binary file object. ``on_status(progress)`` is called (in
    the Tk thread) with each :class:`progcodec.net.Progress` shown. ``fit``: largest displayed
    size (default: 90% of the screen); bigger images are reduced in the worker thread.
    """

    def __init__(self, master, source, layers: int | None = None, throttle: float | str | None = None,
                 timeout: float = 30.0, on_status=None, fit: tuple[int, int] | None = None,
                 autostart: bool = True, **kw):
        super().__init__(master, **kw)
        self.source, self.layers, self.throttle, self.timeout = source, layers, throttle, timeout
        self.on_status = on_status
        self.fit = fit or (int(self.winfo_screenwidth() * 0.9), int(self.winfo_screenheight() * 0.85))
        self.picture = tk.Label(self, bd=0, highlightthickness=0, padx=0, pady=0, background="#303134")
        self.picture.pack(side="top", anchor="nw")
        self.status = tk.Label(self, text="connecting…", anchor="w", justify="left", padx=6, pady=3)
        self.status.pack(side="top", fill="x")
        self._fg = self.status.cget("foreground")
        self.progress: net.Progress | None = None   # the latest report shown
        self.step = None                              # the refinement on screen
        self._photo = None
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_report = time.monotonic()
        self.bind("<Destroy>", self._on_destroy, add="+")
        if autostart:
            self.start()

    # worker thread -----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._work, name="progcodec-viewer", daemon=True)
        self._thread.start()
        self.after(POLL_MS, self._poll)

    def _work(self) -> None:
        for progress in net.progressive(self.source, layers=self.layers, throttle_rate=self.throttle,
                                        timeout=self.timeout, stop=self._stop, fit=self.fit):
            self._queue.put(progress)

    def stop(self) -> None:
        """Stop reading (the worker ends at its next chunk or timeout)."""
        self._stop.set()

    @property
    def finished(self) -> bool:
        return self.progress is not None and self.progress.finished

    # Tk thread -----------------------------------------------------------------------------
    def _poll(self) -> None:
        latest, newest_step = None, None
        while True:
            try:
                latest = self._queue.get_nowait()
            except queue.Empty:
                break
            if latest.new_step:
                newest_step = latest  # older refinements still queued are stale: skip them
        now = time.monotonic()
        if newest_step is not None:
            self._show(newest_step)
        if latest is not None:
            self._last_report = now
            self.progress = latest
            self.status.configure(text=latest.text, foreground="#b00020" if latest.state in ("lost", "error") else self._fg)
            if self.on_status is not None:
                self.on_status(latest)
        elif self.progress is not None and self.progress.state == "receiving" and now - self._last_report > STALL_S:
            self.status.configure(text=f"{self.progress.text} · no data for {now - self._last_report:.0f} s")
        if not self.finished and not self._stop.is_set():
            self.after(POLL_MS, self._poll)

    def _show(self, progress: net.Progress) -> None:
        image = progress.image if progress.image is not None else progress.step.image
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        if self._photo is not None and (self._photo.width(), self._photo.height()) == image.size:
            self._photo.paste(image)  # refine in place
        else:
            self._photo = ImageTk.PhotoImage(image)
            self.picture.configure(image=self._photo, width=image.width, height=image.height)
            self.status.configure(wraplength=max(image.width, 320) - 12)  # long messages wrap, not widen
        self.step = progress.step

    def _on_destroy(self, event) -> None:
        if event.widget is self:
            self._stop.set()


def open_window(source, layers: int | None = None, throttle: float | str | None = None,
                timeout: float = 30.0, screen: str | None = None) -> tuple[tk.Tk, ProgressiveImage]:
    """A top-level window showing ``source``; its title follows the status (``layer k/N``)."""
    root = tk.Tk(screenName=screen, className="progcodec")
    name = source_name(source)
    root.title(f"progcodec: {name}")

    def retitle(progress: net.Progress) -> None:
        s = progress.step
        where = f"layer {s.layer}/{s.layers_total}" if s else progress.state
        suffix = {"lost": " (connection lost)", "error": " (error)"}.get(progress.state, "")
        root.title(f"progcodec: {name} — {where}{suffix}")

    widget = ProgressiveImage(root, source, layers=layers, throttle=throttle, timeout=timeout,
                              on_status=retitle)
    widget.pack(side="top", anchor="nw")
    root.bind("<Escape>", lambda e: root.destroy())
    root.bind("<Control-w>", lambda e: root.destroy())
    root.bind("q", lambda e: root.destroy())
    return root, widget


def view(source, layers: int | None = None, throttle: float | str | None = None, timeout: float = 30.0) -> int:
    """Open a window on ``source`` and run the Tk main loop until it is closed."""
    root, widget = open_window(source, layers, throttle, timeout)
    root.mainloop()
    widget.stop()
    return 0
