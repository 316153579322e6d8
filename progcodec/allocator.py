"""Keeping freed memory in the process during long fits (glibc's malloc only).

torch allocates every large CPU tensor with ``malloc``; glibc serves big requests with fresh
``mmap`` pages and hands freed ones straight back to the kernel, so each iteration of a fit
page-faults its 10-40 MB activations in again. On a 768x512 ``overfit`` fit that was ~45,000
page faults per iteration and a third of its time on one thread (README "Threads").
:func:`retained` makes glibc serve them from its heap and keep freed memory (``mallopt``:
no ``mmap`` chunks, no trimming) while any fit runs, then sets glibc's limits back (below)
and returns the free memory to the system (``malloc_trim``). Peak memory is unchanged; memory
freed during the fit stays with the process until the fit ends (then up to 64 MB, as glibc
keeps by itself).

Process-wide, like the thread count. ``PROGCODEC_MALLOC=default`` leaves malloc alone, and so
does a process that tuned malloc itself (``MALLOC_*`` variables, ``GLIBC_TUNABLES`` with
``glibc.malloc``); other C libraries (macOS, Windows, musl) are left alone always. Afterwards
glibc's thresholds are set to the values its own adjustment reaches with large blocks (mmap
32 MB, trim 64 MB), not back to its start values: an explicit setting cannot re-enable that
adjustment.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from contextlib import contextmanager

ENV = "PROGCODEC_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
# afterwards: glibc's own defaults for the mmap count, and for the thresholds the values its
# dynamic adjustment reaches once a process has freed one large block (any image work does);
# setting a threshold explicitly switches that adjustment off for good
_AFTER = ((_M_MMAP_MAX, 65536), (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20))
_lock = threading.Lock()
_active = 0
_libc = None


def _glibc():
    """The process's glibc (``None`` elsewhere)."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                libc.gnu_get_libc_version.restype = ctypes.c_char_p
                libc.gnu_get_libc_version()
                _libc = libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else False
            except (OSError, AttributeError):
                _libc = False
    return _libc or None


def user_tuned() -> bool:
    """Whether the process set glibc malloc options itself (then progcodec leaves them)."""
    env = os.environ
    return any(k.startswith("MALLOC_") for k in env) or "glibc.malloc" in env.get("GLIBC_TUNABLES", "")


def enabled() -> bool:
    """Whether :func:`retained` will tune malloc here."""
    return os.environ.get(ENV, "").strip().lower() != "default" and not user_tuned() and _glibc() is not None


@contextmanager
def retained():
    """While inside (nestable, thread-safe): glibc keeps freed memory for reuse."""
    global _active
    libc = _glibc() if enabled() else None
    if libc is None:
        yield False
        return
    with _lock:
        if _active == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        _active += 1
    try:
        yield True
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                for param, value in _AFTER:
                    libc.mallopt(param, value)
                libc.malloc_trim(0)
