"""Atomic file output: a temporary file next to the target, then a rename over it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, data, suffix: str = ".part") -> None:
    """Write ``data`` (bytes, or a callable taking the open binary file) to ``path`` atomically.

    The file gets the permissions a plain ``open(path, "w")`` would give (0666 less the
    umask; ``mkstemp`` alone makes it 0600), is fsync'ed, and only then renamed into place,
    so no partial file ever appears under ``path``.
    """
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            data(f) if callable(data) else f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
