"""Encode whole image collections on all local cores or on a Dask cluster.

>>> from progcodec.batch import encode_many
>>> result = encode_many("photos/", "out/", model="pyramid", rate="medium")   # a LocalCluster
>>> result = encode_many(paths, "out/", client=dask_client)                   # an existing cluster
>>> print(result.summary()); result.failed

Built on ``dask.distributed`` (``pip install "progcodec[batch]"``): one task per image, the
image is read on the worker (only paths travel), each worker process loads a model once and
reuses it, results stream back with ``as_completed`` and at most ``max_in_flight`` tasks are
submitted at a time. The output tree mirrors the input tree (``a/b.png -> a/b.pcs``); every
output is written to a temporary file in its own folder and renamed, so no partial file ever
has a final name. A re-run skips outputs that are complete (header and every layer's CRC
check, all encoded layers present, same model and rate) and newer than their input. A worker
that dies mid-task has its task rescheduled on another worker by the scheduler (up to
``distributed.scheduler.allowed-failures`` deaths, then the image is reported as failed).
Every other failure is a per-image record with a reason; the batch goes on.

Input and output paths must be visible under the same names on the client and on every
worker (one machine, or a shared file system).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable

from . import bitstream, errors, registry
from .files import write_atomic as _write_atomic
from .limits import LIMITS

OUTPUT_SUFFIX = ".pcs"
MANIFEST_NAME = "manifest.jsonl"
_TMP_SUFFIX = ".tmp"


def _require_distributed():
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "progcodec batch needs Dask distributed: pip install 'progcodec[batch]' "
            f"(or: pip install 'dask[distributed]') ({exc})") from None
    return distributed


# ---------------------------------------------------------------------------------------------
# the plan: which inputs, which outputs, which are already done


@dataclass(frozen=True)
class Job:
    """One image to encode; only this (paths and settings, no pixels) is sent to a worker."""

    input: str
    output: str
    model: str
    rate: str
    verify: bool = False
    measure: bool = False
    torch_threads: int | None = 1
    limits: dict = field(default_factory=dict)


def image_extensions() -> set[str]:
    """File name endings taken as images when a folder is walked (Pillow's readers, not .pcs)."""
    from PIL import Image

    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN and ext.lower() != OUTPUT_SUFFIX}


def plan(paths_or_dir, out_dir) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs, sorted: a folder's images mirror into ``out_dir`` (``a/b.png ->
    out_dir/a/b.pcs``), a file given by name goes to ``out_dir/<stem>.pcs``. Hidden files and
    anything under ``out_dir`` are left out; two inputs that map to one output are an error."""
    out = Path(out_dir).resolve()
    items = [paths_or_dir] if isinstance(paths_or_dir, (str, os.PathLike)) else list(paths_or_dir)
    exts = image_extensions()
    pairs: dict[Path, Path] = {}
    for item in items:
        src = Path(item).resolve()
        if src.is_dir():
            found = []
            for root, dirs, files in os.walk(src):
                rootp = Path(root)
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _inside(rootp / d, out))
                found += [rootp / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in exts]
            for f in found:
                _add(pairs, f, (out / f.relative_to(src)).with_suffix(OUTPUT_SUFFIX))
        else:  # a file named explicitly; a missing or unreadable one is reported per file
            _add(pairs, src, out / (src.stem + OUTPUT_SUFFIX))
    return sorted(pairs.items(), key=lambda kv: str(kv[1]))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _add(pairs: dict, src: Path, dst: Path) -> None:
    for other, o_dst in pairs.items():
        if o_dst == dst and other != src:
            raise ValueError(f"{other} and {src} would both be written to {dst}")
    pairs[src] = dst


def existing_output(src: Path, dst: Path, model: str, rate: str) -> bitstream.Header | None:
    """The header of ``dst`` if it is a complete stream of ``model``/``rate`` newer than ``src``
    (header CRC, every frame's CRC, all encoded layers, nothing after them); else ``None``."""
    try:
        if dst.stat().st_mtime < src.stat().st_mtime:
            return None
        header, _frames = bitstream.read(dst.read_bytes())
    except (OSError, errors.BitstreamError):
        return None
    if header.layers != header.encoded_layers or header.model != model or header.rate != rate:
        return None
    return header


def _previous_records(manifest: Path) -> dict[str, dict]:
    """output -> record of an earlier run's manifest (encoded or skipped ones), if it is readable."""
    out = {}
    try:
        with open(manifest, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                if isinstance(rec, dict) and rec.get("status") in ("encoded", "skipped") and "output" in rec:
                    out[rec["output"]] = rec
    except OSError:
        pass
    return out


def _stale_temporaries(dst: Path) -> list[Path]:
    return list(dst.parent.glob(f".{dst.name}.*{_TMP_SUFFIX}")) if dst.parent.is_dir() else []


# ---------------------------------------------------------------------------------------------
# the task (runs on a worker)

_loaded: dict[tuple[str, str], float] = {}  # per worker process: model -> seconds its load took


def _model(name: str, rate: str):
    """The model, loaded once per worker process (registry.load caches it) and reused; the
    second value is the seconds this call spent loading it, ``None`` when it was loaded already."""
    key = (name, rate)
    if key in _loaded:
        return registry.load(name, rate), None
    t0 = time.perf_counter()
    m = registry.load(name, rate)
    _loaded[key] = time.perf_counter() - t0
    return m, _loaded[key]


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def _apply_limits(limits: dict) -> None:
    for key, value in limits.items():  # the client's progcodec.LIMITS govern the workers too
        if getattr(LIMITS, key, None) != value:
            setattr(LIMITS, key, value)


def _record(job: Job, **kw) -> dict:
    rec = {"input": job.input, "output": job.output, "model": job.model, "rate": job.rate,
           "bytes": None, "bpp": None, "encode_seconds": None, "psnr": None, "status": "failed", "error": None}
    rec.update(kw)
    return rec


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in ``path``'s folder, fsync, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, data, suffix=_TMP_SUFFIX)


def _unverified(rec: dict, dst: Path, why: str) -> dict:
    dst.unlink(missing_ok=True)  # a stream that does not decode must not look complete to a re-run
    return dict(rec, status="failed", error=f"verify failed: {why}")


def encode_file(job: Job) -> dict:
    """Encode one image exactly as ``progcodec encode`` does, write it atomically, return its
    manifest record. Never raises for a bad image or model: the record says why it failed."""
    from PIL import Image, UnidentifiedImageError

    from . import codec
    from .image import psnr, to_tensor

    _set_threads(job.torch_threads)
    _apply_limits(job.limits)
    src, dst = Path(job.input), Path(job.output)
    rec = _record(job)
    try:
        m, load_s = _model(job.model, job.rate)
    except errors.ProgcodecError as exc:
        return _record(job, error=f"model error: {exc}")
    if load_s is not None:  # only the first image of each worker process pays for the load
        rec["model_load_seconds"] = round(load_s, 4)
    try:
        img = Image.open(src)
    except FileNotFoundError:
        return _record(job, error=f"unreadable image: no such file {src}")
    except Image.DecompressionBombError as exc:
        return _record(job, error=f"too large: {exc}")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return _record(job, error=f"unreadable image: {exc}")
    with img:
        w, h = img.size
        if w < 1 or h < 1 or w > LIMITS.max_side or h > LIMITS.max_side or w * h > LIMITS.max_pixels:
            return _record(job, error=f"too large: {w}x{h} pixels exceeds progcodec.LIMITS "
                                      f"(max_pixels={LIMITS.max_pixels}, max_side={LIMITS.max_side})")
        try:
            img.load()
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged pixel data
            return _record(job, error=f"unreadable image: {exc}")
        t0 = time.perf_counter()
        try:
            data = codec.encode(img, model=job.model, rate=job.rate)
        except errors.LimitError as exc:
            return _record(job, error=f"too large: {exc}")
        except MemoryError:
            return _record(job, error="model error: out of memory while encoding")
        except Exception as exc:  # a plugin's own failure: report it, keep the batch going
            return _record(job, error=f"model error: {type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - t0
        original = to_tensor(img, m.channels) if (job.verify or job.measure) else None
    try:
        write_atomic(dst, data)
    except OSError as exc:
        return _record(job, error=f"cannot write output: {exc}")
    rec.update(bytes=len(data), bpp=round(8 * len(data) / (w * h), 5), encode_seconds=round(seconds, 4),
               width=w, height=h, status="encoded")
    if original is not None:
        try:
            stream = dst.read_bytes() if job.verify else data
            step = codec.decode(stream)
        except Exception as exc:
            return _unverified(rec, dst, f"the output does not decode: {exc}")
        if job.verify and (step.layer != step.header.encoded_layers or step.image.size != (w, h)):
            return _unverified(rec, dst, f"decoded {step.layer}/{step.header.encoded_layers} layers "
                                         f"at {step.image.size}, expected {w}x{h}")
        q = psnr(to_tensor(step.image, m.channels), original)  # the coded colour (alpha is lossless)
        rec["psnr"] = None if q == float("inf") else round(q, 3)
    return rec


# ---------------------------------------------------------------------------------------------
# the client side


@dataclass
class BatchResult:
    records: list[dict]
    seconds: float              # wall time of the whole call, cluster start included
    startup_seconds: float = 0.0  # of which starting (or connecting to) the cluster

    def _with(self, status):
        return [r for r in self.records if r["status"] == status]

    @property
    def encoded(self) -> list[dict]:
        return self._with("encoded")

    @property
    def skipped(self) -> list[dict]:
        return self._with("skipped")

    @property
    def failed(self) -> list[dict]:
        return self._with("failed")

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        done = [r for r in self.records if r["status"] != "failed"]
        total = sum(r["bytes"] or 0 for r in done)
        bpps = [r["bpp"] for r in done if r["bpp"] is not None]
        mean_bpp = f"{sum(bpps) / len(bpps):.4f}" if bpps else "-"
        rate = len(self.encoded) / (self.seconds / 60) if self.seconds > 0 else 0.0
        return (f"{len(self.records)} images: {len(self.encoded)} encoded, {len(self.skipped)} skipped "
                f"(complete), {len(self.failed)} failed; {total} bytes, mean {mean_bpp} bpp; "
                f"{rate:.1f} images/minute ({self.seconds:.1f} s, {self.startup_seconds:.1f} s of it starting "
                f"the cluster)")


def encode_many(paths_or_dir, out_dir, model: str = registry.DEFAULT_MODEL, rate: str | None = None, *,
                client=None, workers: int | None = None, memory_limit="auto", verify: bool = False,
                measure: bool = False, force: bool = False, max_in_flight: int | None = None,
                manifest: str | os.PathLike | None | bool = True, retries: int = 1,
                torch_threads: int | None = 1, progress: Callable[[dict], None] | None = None) -> BatchResult:
    """Encode every image of ``paths_or_dir`` (a folder, a file, or a list of them) into ``out_dir``.

    ``client``: a ``distributed.Client`` or a scheduler address (``"tcp://host:8786"``); with
    ``None`` a ``LocalCluster`` of ``workers`` processes (default: one per core, one thread each,
    ``memory_limit`` each) is started and closed. ``manifest``: a JSON-lines file (default
    ``out_dir/manifest.jsonl``; ``None``/``False``: none). ``progress`` is called with every
    record as it arrives (skipped ones first). ``torch_threads``: torch threads per task
    (``None`` leaves the worker's setting). Returns a :class:`BatchResult`.
    """
    _require_distributed()
    cls = registry.get_class(model)  # an unknown model or rate fails before any cluster starts
    rate = rate or cls.default_rate
    if rate not in cls.rates:
        raise errors.UnknownModelError(f"model {model!r} has no rate point {rate!r}; it has {list(cls.rates)}")
    out = Path(out_dir)
    pairs = plan(paths_or_dir, out)
    t0 = time.perf_counter()
    limits = dataclasses.asdict(LIMITS)
    records: list[dict] = []
    timing = {"startup": 0.0}
    manifest_path = (out / MANIFEST_NAME) if manifest is True else (Path(manifest) if manifest else None)
    mf, before = None, {}
    if manifest_path is not None:
        before = _previous_records(manifest_path)
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        mf = open(manifest_path, "w", encoding="utf-8")

    def emit(rec):
        records.append(rec)
        if mf is not None:
            mf.write(json.dumps(rec) + "\n")
            mf.flush()
        if progress is not None:
            progress(rec)

    try:
        jobs = []
        for src, dst in pairs:
            for tmp in _stale_temporaries(dst):  # left by a process killed mid-write
                tmp.unlink(missing_ok=True)
            header = None if force else existing_output(src, dst, model, rate)
            if header is not None:
                size = dst.stat().st_size
                old = before.get(str(dst), {})  # keep what the run that wrote it measured
                if old.get("bytes") != size:
                    old = {}
                emit({**old, "input": str(src), "output": str(dst), "model": model, "rate": rate, "bytes": size,
                      "bpp": round(8 * size / (header.width * header.height), 5),
                      "encode_seconds": old.get("encode_seconds"), "psnr": old.get("psnr"), "status": "skipped",
                      "error": None})
                continue
            jobs.append(Job(str(src), str(dst), model, rate, verify, measure, torch_threads, limits))
        if jobs:
            _run(jobs, client, workers, memory_limit, max_in_flight, retries, emit, timing)
    finally:
        if mf is not None:
            mf.close()
    return BatchResult(records, time.perf_counter() - t0, timing["startup"])


# Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in every worker process (it returns freed memory
# to the OS sooner). Setting it turns off glibc's adaptive mmap threshold, so each large tensor
# an encoder allocates is a fresh mmap + page faults + munmap: pyramid encoded 2-2.5x slower in a
# worker than in a plain loop here. None unsets it (the nanny's documented way).
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def local_cluster(workers: int | None = None, memory_limit="auto", **kwargs):
    """The ``LocalCluster`` that ``encode_many(client=None)`` starts: one process per core (or
    ``workers``), one thread each, ``memory_limit`` each (``"auto"``: RAM / workers), one torch
    thread per process (OMP_NUM_THREADS=1 from the nanny; each task also sets torch's count)."""
    import dask

    distributed = _require_distributed()
    with dask.config.set(WORKER_CONFIG):
        return distributed.LocalCluster(
            n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
            memory_limit=memory_limit, dashboard_address=":0", **kwargs)


def _run(jobs, client, workers, memory_limit, max_in_flight, retries, emit, timing) -> None:
    distributed = _require_distributed()
    t0 = time.perf_counter()
    own_cluster = own_client = None
    if client is None:
        n = min(workers or os.cpu_count() or 1, len(jobs))
        own_cluster = local_cluster(n, memory_limit)
        client = own_client = distributed.Client(own_cluster)
    elif isinstance(client, str):
        client = own_client = distributed.Client(client)
    timing["startup"] = time.perf_counter() - t0
    try:
        _consume(client, jobs, max_in_flight, retries, emit, distributed)
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()


def _consume(client, jobs, max_in_flight, retries, emit, distributed) -> None:
    if max_in_flight is None:
        threads = sum(client.nthreads().values()) or 1
        max_in_flight = max(2, 2 * threads)
    todo = iter(jobs)
    inflight: dict = {}
    done = distributed.as_completed()

    def submit(job):
        fut = client.submit(encode_file, job, key=f"progcodec-encode-{os.urandom(8).hex()}",
                            pure=False, retries=retries)
        inflight[fut] = job
        done.add(fut)

    try:
        for job in islice(todo, max_in_flight):
            submit(job)
        for fut in done:
            job = inflight.pop(fut)
            try:
                rec = fut.result()
            except distributed.KilledWorker as exc:
                rec = _record(job, error=f"worker died while encoding it, on every retry (out of memory, "
                                         f"or a crash in the model?): {exc}")
            except Exception as exc:
                rec = _record(job, error=f"task failed: {type(exc).__name__}: {exc}")
            fut.release()
            nxt = next(todo, None)
            if nxt is not None:
                submit(nxt)
            emit(rec)
    except BaseException:
        client.cancel(list(inflight))  # interrupted: what already started may still finish (atomically)
        raise


# ---------------------------------------------------------------------------------------------
# `progcodec batch`


def add_arguments(p) -> None:
    """The options of ``progcodec batch`` (called by progcodec.cli)."""
    p.add_argument("src", nargs="+", metavar="SRC", help="folder(s) or image file(s); folders are walked")
    p.add_argument("out", metavar="OUT", help="output folder; the input tree is mirrored (a/b.png -> a/b.pcs)")
    p.add_argument("--model", default=registry.DEFAULT_MODEL), p.add_argument("--rate")
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786 "
                   "(default: start a local cluster of processes)")
    p.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    p.add_argument("--memory-limit", default="auto", help="per local worker, e.g. 4GiB (default: RAM / workers)")
    p.add_argument("--max-in-flight", type=int, help="tasks submitted at once (default: 2 per worker thread)")
    p.add_argument("--verify", action="store_true", help="read back and decode every output, record its PSNR")
    p.add_argument("--measure", action="store_true", help="record the PSNR of every output")
    p.add_argument("--force", action="store_true", help="re-encode even complete, up-to-date outputs")
    p.add_argument("--manifest", metavar="FILE", help=f"JSON-lines manifest (default: OUT/{MANIFEST_NAME})")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only failures and the summary")


class _Progress:
    """A tqdm bar when tqdm is installed and stderr is a terminal, else one line per image."""

    def __init__(self, total: int, quiet: bool):
        import sys

        self.n, self.total, self.quiet, self.bar = 0, total, quiet, None
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="img", dynamic_ncols=True)
            except ImportError:
                pass

    def __call__(self, rec: dict) -> None:
        import sys

        self.n += 1
        line = None
        if rec["status"] == "failed":
            line = f"FAILED {rec['input']}: {rec['error']}"
        elif not self.quiet and self.bar is None:
            extra = f", {rec['psnr']} dB" if rec.get("psnr") is not None else ""
            line = f"[{self.n}/{self.total}] {rec['status']} {rec['output']} ({rec['bytes']} bytes, {rec['bpp']} bpp{extra})"
        if self.bar is not None:
            if line:
                self.bar.write(line, file=sys.stderr)
            self.bar.update(1)
        elif line:
            print(line, file=sys.stderr if rec["status"] == "failed" else sys.stdout, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_cli(a) -> int:
    import sys

    pairs = plan(a.src if len(a.src) > 1 else a.src[0], a.out)
    progress = _Progress(len(pairs), a.quiet)
    try:
        result = encode_many(
            a.src if len(a.src) > 1 else a.src[0], a.out, model=a.model, rate=a.rate, client=a.scheduler,
            workers=a.workers, memory_limit=a.memory_limit, verify=a.verify, measure=a.measure, force=a.force,
            max_in_flight=a.max_in_flight, manifest=a.manifest or True, progress=progress)
    except ImportError as exc:
        print(f"progcodec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.close()
        print("progcodec: interrupted; finished outputs are kept, run the same command again to resume",
              file=sys.stderr)
        return 130
    progress.close()
    print(result.summary())
    if result.failed:
        print(f"progcodec: {len(result.failed)} of {len(result.records)} images failed "
              f"(reasons above and in the manifest)", file=sys.stderr)
        return 1
    return 0
