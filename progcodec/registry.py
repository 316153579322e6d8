"""Model plugins, found through the ``progcodec.models`` entry-point group.

A stream only names a model; the name is looked up here, so a bitstream can never make
progcodec import an arbitrary module.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.metadata import entry_points

from . import errors
from .plugin import Model

GROUP = "progcodec.models"
DEFAULT_MODEL = "pyramid"
_local: dict[str, type] = {}
_cache: dict[tuple[str, str], Model] = {}
_lock = threading.Lock()


@dataclass
class PluginInfo:
    """What ``progcodec plugins`` shows for one installed plugin."""

    name: str
    source: str
    cls: type | None = None
    error: str | None = None


def register(cls: type, name: str | None = None) -> type:
    """Register a ``Model`` subclass in this process (tests, notebooks); usable as a decorator."""
    _local[name or cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _local.pop(name, None)
    for key in [k for k in _cache if k[0] == name]:
        del _cache[key]


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    """Names of every registered model (loadable or not)."""
    return sorted(set(_entry_points()) | set(_local))


def get_class(name: str) -> type:
    if name in _local:
        return _local[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise errors.UnknownModelError(f"unknown model {name!r}; installed: {', '.join(names()) or 'none'}")
    try:
        cls = ep.load()
    except Exception as exc:
        raise errors.PluginLoadError(f"plugin {name!r} ({ep.value}) failed to import: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise errors.PluginLoadError(f"plugin {name!r} ({ep.value}) is not a progcodec.Model subclass")
    return cls


def load(name: str, rate: str | None = None) -> Model:
    """A ready model instance, cached per ``(name, rate)`` and shared (models are read-only)."""
    from . import threads

    threads.ensure()  # the process's torch thread count, decided once (progcodec/threads.py)
    cls = get_class(name)
    key = (name, rate or cls.default_rate)
    with _lock:
        model = _cache.get(key)
        if model is None:
            try:
                model = cls(rate=key[1])
            except errors.ProgcodecError:
                raise
            except Exception as exc:
                raise errors.PluginLoadError(f"model {name!r} rate {key[1]!r} failed to load: {exc}") from exc
            _cache[key] = model
    return model


def plugins() -> list[PluginInfo]:
    """Every installed plugin, broken ones included (with the error), for listings."""
    out = []
    eps = _entry_points()
    for name in names():
        source = "local" if name in _local else eps[name].value
        try:
            out.append(PluginInfo(name, source, cls=get_class(name)))
        except errors.ModelError as exc:
            out.append(PluginInfo(name, source, error=str(exc)))
    return out
