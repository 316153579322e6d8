"""``progcodec batch`` / ``progcodec.batch.encode_many`` on a real Dask LocalCluster (2 worker processes)."""
import json
import os
import sys
import time
from pathlib import Path

import pytest

import progcodec
from progcodec import batch, bitstream, cli, registry

from conftest import smooth_image

try:
    import distributed
except ImportError:  # the cluster tests need the batch extra; the plan/atomic-write tests do not
    distributed = None

needs_dask = pytest.mark.skipif(distributed is None, reason="dask[distributed] is not installed "
                                "(pip install '.[batch]'); progcodec batch needs it")


def make_tree(root: Path, n: int = 3, corrupt: bool = True) -> list[Path]:
    """n small photos in a nested tree (odd sizes included), a corrupt .png, and files to ignore."""
    (root / "a" / "b").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = root / ("a/b" if i % 3 == 0 else "a" if i % 3 == 1 else ".") / f"p{i}.png"
        smooth_image(64 - (i % 2), 48 + (i % 3), seed=i).save(p)
        paths.append(p.resolve())
    if corrupt:
        (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really a png")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"ignored")
    return paths


def out_of(src_root: Path, out_root: Path, p: Path) -> Path:
    return (out_root / p.relative_to(src_root.resolve())).with_suffix(".pcs")


# --------------------------------------------------------------------------- no cluster needed


def test_plan_mirrors_the_tree_and_leaves_out_the_output_folder(tmp_path):
    src = tmp_path / "src"
    paths = make_tree(src, n=3)
    (src / "out").mkdir()
    smooth_image(8, 8).save(src / "out" / "old.png")  # OUT inside SRC is not walked
    pairs = batch.plan(src, src / "out")
    got = {s.relative_to(src.resolve()).as_posix(): d.relative_to((src / "out").resolve()).as_posix()
           for s, d in pairs}
    assert got == {"a/b/p0.png": "a/b/p0.pcs", "a/p1.png": "a/p1.pcs", "p2.png": "p2.pcs",
                   "a/broken.png": "a/broken.pcs"}
    assert [d for _, d in batch.plan([paths[0]], tmp_path / "o")] == [(tmp_path / "o" / "p0.pcs").resolve()]
    (tmp_path / "x").mkdir()
    smooth_image(8, 8).save(tmp_path / "x" / "p0.png")
    with pytest.raises(ValueError, match="both be written"):
        batch.plan([paths[0], tmp_path / "x" / "p0.png"], tmp_path / "o")


def test_atomic_write_never_leaves_a_partial_file_under_the_final_name(tmp_path, monkeypatch):
    dst = tmp_path / "sub" / "x.pcs"
    batch.write_atomic(dst, b"old complete stream")

    def dies(*a):
        raise OSError("disk full")

    monkeypatch.setattr(batch.os, "replace", dies)
    with pytest.raises(OSError):
        batch.write_atomic(dst, b"new")
    assert dst.read_bytes() == b"old complete stream"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["x.pcs"]  # the temporary is gone too


def test_a_task_reports_each_failure_with_its_reason(tmp_path, monkeypatch):
    """encode_file is the task body: it never raises for a bad input, it says why."""
    make_tree(tmp_path / "s", n=1)
    job = lambda name, **kw: batch.Job(str(tmp_path / "s" / name), str(tmp_path / "o" / "x.pcs"),
                                       kw.pop("model", "pyramid"), "medium", **kw)
    monkeypatch.setattr(progcodec.LIMITS, "max_pixels", progcodec.LIMITS.max_pixels)  # restored afterwards
    assert batch.encode_file(job("a/broken.png"))["error"].startswith("unreadable image")
    assert batch.encode_file(job("missing.png"))["error"].startswith("unreadable image: no such file")
    rec = batch.encode_file(job("a/b/p0.png", limits={"max_pixels": 1000}))
    assert rec["status"] == "failed" and rec["error"].startswith("too large") and "LIMITS" in rec["error"]
    assert progcodec.LIMITS.max_pixels == 1000  # the job carried the client's limits into this "worker"
    progcodec.LIMITS.max_pixels = 1 << 26
    assert batch.encode_file(job("a/b/p0.png", model="no-such"))["error"].startswith("model error")
    assert not (tmp_path / "o" / "x.pcs").exists()
    rec = batch.encode_file(job("a/b/p0.png", verify=True))
    assert rec["status"] == "encoded" and rec["psnr"] > 25 and (tmp_path / "o" / "x.pcs").exists(), rec


def test_existing_output_is_complete_newer_and_of_the_same_model(tmp_path):
    src, dst = tmp_path / "p.png", tmp_path / "p.pcs"
    smooth_image(40, 30).save(src)
    data = progcodec.encode(smooth_image(40, 30), model="pyramid", rate="medium")
    dst.write_bytes(data)
    assert batch.existing_output(src, dst, "pyramid", "medium") is not None
    assert batch.existing_output(src, dst, "pyramid", "high") is None
    dst.write_bytes(bitstream.truncate(data, layers=3))     # valid but not every layer
    assert batch.existing_output(src, dst, "pyramid", "medium") is None
    dst.write_bytes(data[:-5])                               # cut mid-frame
    assert batch.existing_output(src, dst, "pyramid", "medium") is None
    dst.write_bytes(data)
    os.utime(src, (time.time() + 60, time.time() + 60))      # the input changed since
    assert batch.existing_output(src, dst, "pyramid", "medium") is None


# --------------------------------------------------------------------------- a real LocalCluster


@pytest.fixture(scope="module")
def client():
    if distributed is None:
        pytest.skip("dask[distributed] is not installed (pip install '.[batch]')")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       memory_limit="2GiB", dashboard_address=":0")
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@needs_dask
def test_outputs_are_identical_to_progcodec_encode(client, tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    paths = make_tree(src, n=4)
    result = batch.encode_many(src, out, model="pyramid", rate="medium", client=client, measure=True)
    assert len(result.encoded) == 4 and len(result.failed) == 1 and not result.ok
    for p in paths:
        ref = tmp_path / "ref.pcs"
        assert cli.main(["encode", str(p), str(ref), "--model", "pyramid", "--rate", "medium"]) == 0
        assert out_of(src, out, p).read_bytes() == ref.read_bytes(), p
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 5
    good = [r for r in lines if r["status"] == "encoded"]
    for r in good:
        assert {"input", "output", "model", "rate", "bytes", "bpp", "encode_seconds", "psnr", "error"} <= set(r)
        assert r["bytes"] == Path(r["output"]).stat().st_size and r["psnr"] > 25 and r["bpp"] > 0
    assert sum("model_load_seconds" in r for r in good) <= 2  # each worker process loaded the model once
    (bad,) = [r for r in lines if r["status"] == "failed"]
    assert bad["input"].endswith("broken.png") and bad["error"].startswith("unreadable image")
    assert not Path(bad["output"]).exists()
    assert "4 encoded" in result.summary() and "1 failed" in result.summary() and "images/minute" in result.summary()
    assert not list(out.rglob("*.tmp"))


@needs_dask
def test_limits_reach_the_workers(client, tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src, n=2, corrupt=False)
    smooth_image(200, 150).save(src / "big.png")
    monkeypatch.setattr(progcodec.LIMITS, "max_pixels", 150 * 150)
    result = batch.encode_many(src, out, client=client, manifest=None)
    (bad,) = result.failed
    assert bad["input"].endswith("big.png") and bad["error"].startswith("too large")
    assert len(result.encoded) == 2 and not (out / "manifest.jsonl").exists()


def idle_workers(client, timeout=60):
    deadline = time.monotonic() + timeout
    while sum(client.run(lambda dask_worker: dask_worker.state.executing_count).values()):
        assert time.monotonic() < deadline, "workers still busy"
        time.sleep(0.1)


@needs_dask
def test_an_interrupted_run_resumes_where_it_stopped(client, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    paths = make_tree(src, n=6, corrupt=False)
    seen = []

    def interrupt(rec):
        seen.append(rec)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch.encode_many(src, out, client=client, max_in_flight=2, progress=interrupt)
    idle_workers(client)  # a task that had started may still land (atomically): let it
    done = [p for p in paths if batch.existing_output(p, out_of(src, out, p), "pyramid", "medium")]
    assert 2 <= len(done) < 6
    # what a killed process or a crashing non-atomic writer could leave: a temporary and a cut file
    victim = out_of(src, out, done[0])
    (victim.parent / f".{victim.name}.x1y2z3.tmp").write_bytes(b"partial")
    victim.write_bytes(victim.read_bytes()[:-7])
    result = batch.encode_many(src, out, client=client)
    assert len(result.skipped) == len(done) - 1 and len(result.encoded) == 6 - len(done) + 1 and result.ok
    assert str(done[0]) in {r["input"] for r in result.encoded}
    assert all(batch.existing_output(p, out_of(src, out, p), "pyramid", "medium") for p in paths)
    assert not list(out.rglob("*.tmp"))
    again = batch.encode_many(src, out, client=client, measure=True)
    assert len(again.skipped) == 6
    carried = {r["output"]: r["encode_seconds"] for r in again.skipped}
    assert all(carried[r["output"]] == r["encode_seconds"] for r in result.encoded)  # from the run that encoded it
    assert len(batch.encode_many(src, out, client=client, force=True).encoded) == 6
    assert len(batch.encode_many(src, out, rate="high", client=client).encoded) == 6  # other rate: redone


@needs_dask
def test_cli_batch_on_a_scheduler_address(client, tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src, n=2)
    address = client.scheduler.address
    code = cli.main(["batch", str(src), str(out), "--scheduler", address, "--verify", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1, captured
    assert "2 encoded" in captured.out and "1 failed" in captured.out
    assert "FAILED" in captured.err and "broken.png" in captured.err and "unreadable image" in captured.err
    (src / "a" / "broken.png").unlink()
    code = cli.main(["batch", str(src), str(out), "--scheduler", address, "--manifest", str(tmp_path / "m.jsonl")])
    captured = capsys.readouterr()
    assert code == 0 and "2 skipped" in captured.out
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 2
    assert cli.main(["batch", str(src), str(out), "--model", "no-such-model"]) == 2
    assert "unknown model" in capsys.readouterr().err


def make_killer(marker: str):
    """A pyramid that kills its own worker process the first time it encodes (marker file)."""
    from progcodec_plugins.pyramid import Pyramid

    class Killer(Pyramid):
        name = "killer"

        def analyze(self, x):
            if not os.path.exists(marker):
                with open(marker, "w") as f:
                    f.write(str(os.getpid()))
                os._exit(1)  # the worker process dies mid-task, as under the OOM killer
            return super().analyze(x)

    return Killer


@needs_dask
def test_a_worker_killed_mid_batch_has_its_task_retried_elsewhere(client, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    class InstallKiller(distributed.WorkerPlugin):  # runs on every worker, restarted ones too
        def __init__(self, marker):
            self.marker = marker

        def setup(self, worker):
            from progcodec import registry as reg

            reg.register(make_killer(self.marker))

    marker = str(tmp_path / "killed-once")
    src, out = tmp_path / "src", tmp_path / "out"
    paths = make_tree(src, n=4, corrupt=False)
    registry.register(make_killer(marker))
    try:
        client.register_plugin(InstallKiller(marker), name="install-killer")
        pids_before = set(client.run(os.getpid).values())
        result = batch.encode_many(src, out, model="killer", client=client)
    finally:
        registry.unregister("killer")
    assert Path(marker).exists() and int(Path(marker).read_text()) in pids_before  # a worker did die
    assert result.ok and len(result.encoded) == 4, result.failed
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the dead one
    assert int(Path(marker).read_text()) not in set(client.run(os.getpid).values())
    for p in paths:
        h = progcodec.info(out_of(src, out, p).read_bytes())
        assert h.model == "killer" and h.layers == h.encoded_layers
    assert not list(out.rglob("*.tmp"))


POISON = '''
import os
from progcodec import registry
from progcodec_plugins.pyramid import Pyramid

class Poison(Pyramid):
    """Kills its worker process on every image 80 pixels wide (a crash in a model, the OOM killer)."""
    name = "poison"

    def analyze(self, x):
        if x.shape[-1] == 80:
            os._exit(1)
        return super().analyze(x)

registry.register(Poison)
'''


@needs_dask
def test_own_local_cluster_reports_an_image_that_kills_every_worker(tmp_path, capsys):
    """client=None: a LocalCluster is started and closed; an image whose task kills each worker that
    tries it is reported (after the scheduler's allowed failures) and the rest of the batch goes on."""
    import dask
    import psutil

    preload = tmp_path / "poison_preload.py"
    preload.write_text(POISON)
    exec(compile(POISON, str(preload), "exec"), {})  # the client knows the model too
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src, n=2, corrupt=False)
    smooth_image(80, 48).save(src / "poison.png")
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    try:
        with dask.config.set({"distributed.worker.preload": [str(preload)],
                              "distributed.scheduler.allowed-failures": 0}):
            code = cli.main(["batch", str(src), str(out), "--model", "poison", "--workers", "1",
                             "--max-in-flight", "1", "--quiet"])
    finally:
        registry.unregister("poison")
    captured = capsys.readouterr()
    assert code == 1 and "2 encoded" in captured.out and "1 failed" in captured.out
    assert "poison.png: worker died while encoding it" in captured.err
    assert {p.name for p in out.rglob("*.pcs")} == {"p0.pcs", "p1.pcs"} and not list(out.rglob("*.tmp"))
    time.sleep(0.5)
    left = [p.cmdline() for p in psutil.Process().children(recursive=True) if p.pid not in children
            and p.is_running() and "resource_tracker" not in " ".join(p.cmdline())]  # that one stays by design
    assert not left, f"the LocalCluster's worker processes outlived encode_many: {left}"
