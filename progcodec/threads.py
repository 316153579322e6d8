"""How many CPU threads torch may use for progcodec's model work.

``torch.set_num_threads`` is **process-global**: one intra-op pool serves every thread of the
process, and each Python thread that runs a torch op at the same time brings its own team
of that size. So progcodec decides once per process, not per call:

* ``progcodec.set_threads(n)``, ``PROGCODEC_THREADS=n`` or the CLI's ``--threads n`` set n.
* Otherwise, the first time progcodec loads a model it applies :func:`default_threads` —
  unless the process already chose (``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` set, or
  ``torch.set_num_threads`` called with another value since progcodec was imported), which
  it then leaves alone.
* Long encoder-side fits (the ``overfit`` plugin) run inside :func:`fitting`: all CPUs, at
  most 4, for the fit's duration, then the previous count again — unless the process chose,
  and only where OpenMP's idle threads spin between ops. Where they sleep (``PASSIVE``,
  progcodec's default, below) waking them for each of an iteration's ops ate the gain: a
  768x512 iteration took 0.55-0.8 s on 2 threads against 0.52-0.61 s on 1 (spinning: 0.37-0.49 s
  on 2), so on machines with up to 2 CPUs (the case measured) the fit keeps the library's
  count. ``OMP_WAIT_POLICY=ACTIVE`` gets the faster fit on an idle machine.
* The HTTP server runs several decodes at once: it uses 1 torch thread per decode and at
  most one concurrent decode per CPU (``ProgcodecServer(max_decodes=...)``), so N decodes
  never run more than N busy threads. The Tk viewer decodes one stream in one worker
  thread and uses the library default.

OpenMP's wait policy: ``import progcodec`` sets ``OMP_WAIT_POLICY=PASSIVE`` when it is unset and
torch is not imported yet (OpenMP reads it when torch loads). Idle OpenMP threads then sleep
instead of spinning; with spinning, 2 threads on a loaded 2-core machine made a small qres-vae
encode 14-41 s instead of 0.6 s. Import progcodec before torch (or set the variable) to get it.

Why these defaults (``python benchmarks/speed.py --threads``, README "Threads"): on a
2-core machine with other work running, torch's default team spins against the other
load (a qres-vae decode took 6x longer than with one thread), while a second thread
gains little even when the machine is idle. The default is therefore 1 thread on machines
with up to 4 CPUs and half the CPUs, at most 4, on larger ones.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import torch

ENV = "PROGCODEC_THREADS"
_lock = threading.Lock()
_torch_at_import = torch.get_num_threads()
_chosen: int | None = None  # set by set_threads
_applied = False


def _parse(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV}={value!r}: expected a whole number of threads >= 1")
    return n


def default_threads(cpus: int | None = None) -> int:
    """The library default: 1 on up to 4 CPUs, else half of them, at most 4."""
    cpus = cpus or os.cpu_count() or 1
    return 1 if cpus <= 4 else min(4, cpus // 2)


def set_threads(n: int) -> None:
    """Use ``n`` torch threads from now on (process-wide: it calls ``torch.set_num_threads``)."""
    global _chosen, _applied
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {n!r}")
    with _lock:
        _chosen, _applied = n, True
        torch.set_num_threads(n)


def get_threads() -> int:
    """Torch's current intra-op thread count."""
    return torch.get_num_threads()


def user_chose() -> bool:
    """True when the process picked a thread count itself (environment, set_threads or a torch call)."""
    if _chosen is not None or os.environ.get(ENV):
        return True
    if any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return True
    return torch.get_num_threads() not in (_torch_at_import, _ours)


_ours: int | None = None  # the count progcodec itself applied


def ensure(role: str = "library") -> int:
    """Apply the policy (called when a model is loaded, and by the server); returns the count in use.

    ``role="library"``: once per process, :func:`default_threads` unless the process chose.
    ``role="server"``: 1 thread per decode (the server runs decodes side by side, bounded by its
    CPU slots) unless the process chose explicitly.
    """
    global _applied, _ours
    if role not in ("library", "server"):
        raise ValueError(f"unknown role {role!r}")
    with _lock:
        first, env = not _applied, os.environ.get(ENV)
        if first and env and _chosen is None:
            n = _parse(env)          # once: a later set_threads or torch call still wins
        elif user_chose():
            n = None
        elif role == "server":
            n = 1
        elif first:
            n = default_threads()
        else:
            n = None
        _applied = True  # after _parse: a bad PROGCODEC_THREADS fails every load, not just the first
        if n is not None and torch.get_num_threads() != n:
            torch.set_num_threads(n)
        if n is not None:
            _ours = n
    return torch.get_num_threads()


def decode_slots(cpus: int | None = None) -> int:
    """How many decodes may compute at once without more busy threads than CPUs."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, torch.get_num_threads()))


_fits = 0          # fits running inside ``fitting()``
_before_fit = None  # the count to restore when the last one ends


def threads_sleep() -> bool:
    """Whether OpenMP's idle threads sleep between ops (``OMP_WAIT_POLICY=PASSIVE``)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


@contextmanager
def fitting(cpus: int | None = None):
    """Run a long encoder fit on all CPUs (at most 4) unless the process chose a thread count,
    or OpenMP's threads sleep between ops (:func:`threads_sleep`) on a machine with up to 2
    CPUs (measured: the second thread gained nothing; the count stays).

    Process-wide while any fit runs (torch's pool is global): a decode running beside a fit
    in the same process uses the same count.
    """
    global _fits, _before_fit, _ours
    ensure()
    with _lock:
        if _fits == 0 and not user_chose() and not (threads_sleep() and (os.cpu_count() or 1) <= 2):
            _before_fit = torch.get_num_threads()
            n = min(4, cpus or os.cpu_count() or 1)
            torch.set_num_threads(n)
            _ours = n
        _fits += 1
    try:
        yield torch.get_num_threads()
    finally:
        with _lock:
            _fits -= 1
            if _fits == 0 and _before_fit is not None:
                torch.set_num_threads(_before_fit)
                _ours, _before_fit = _before_fit, None
