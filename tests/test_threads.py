"""Issue 16 item 9: torch thread defaults for the library, the server and the CLI, and how to set them."""
import os
import subprocess
import sys

import pytest
import torch

from progcodec import cli, threads

PROBE = ("import tempfile, torch, progcodec, progcodec.threads as t, progcodec.server as s; {before};"
         " progcodec.registry.load('pyramid'); print(torch.get_num_threads());"
         " s.ProgcodecServer(tempfile.mkdtemp(), ('127.0.0.1', 0)).server_close(); print(torch.get_num_threads())")


def probe(env_extra=None, before="pass"):
    """(threads after loading a model, threads after starting a server) in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", threads.ENV)}
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return tuple(int(x) for x in out.stdout.split()[-2:])


def test_default_thread_counts():
    assert [threads.default_threads(n) for n in (1, 2, 4, 6, 8, 16, 64)] == [1, 1, 1, 3, 4, 4, 4]


def test_policy_in_a_fresh_process():
    """Nothing chosen: the library default, then 1 per decode in the server; a choice is kept."""
    assert probe() == (threads.default_threads(), 1)
    assert probe(before="t.default_threads = lambda cpus=None: 2") == (2, 1)   # as on a bigger machine
    assert probe({"PROGCODEC_THREADS": "2"}) == (2, 2)
    assert probe({"OMP_NUM_THREADS": "2"}) == (2, 2)
    assert probe(before="torch.set_num_threads(3)") == (3, 3)   # a count other than torch's own default


def test_bad_values_are_refused():
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError):
            threads.set_threads(bad)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(before="pass")],
                         env={**env, threads.ENV: "many"}, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "PROGCODEC_THREADS='many'" in out.stderr


def test_cli_threads_option(capsys):
    before = torch.get_num_threads()
    try:
        assert cli.main(["--threads", "2", "plugins"]) == 0 and torch.get_num_threads() == 2
        assert cli.main(["--threads", "1", "plugins"]) == 0 and torch.get_num_threads() == 1
        with pytest.raises(SystemExit) as exc:
            cli.main(["--threads", "0", "plugins"])
        assert exc.value.code == 2
    finally:
        torch.set_num_threads(before)
        threads._chosen = None


def test_server_bounds_concurrent_decodes(tmp_path):
    from progcodec import server

    with server.running(tmp_path, cpu_slots=3, quiet=True) as srv:
        assert srv.cpu_slots._initial_value == 3
    with server.running(tmp_path, quiet=True) as srv:
        assert srv.cpu_slots._initial_value == threads.decode_slots() >= 1


def test_environment_is_applied_once():
    """PROGCODEC_THREADS sets the count at the first model load; a later explicit choice stands."""
    code = ("import torch, progcodec; progcodec.registry.load('pyramid'); a = torch.get_num_threads();"
            " torch.set_num_threads(3); progcodec.registry.load('pyramid', 'low'); print(a, torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", threads.ENV)}
    out = subprocess.run([sys.executable, "-c", code], env={**env, threads.ENV: "2"}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "3"]


FIT_PROBE = ("import torch, progcodec.threads as t; {before}\n"
             "with t.fitting(cpus=2) as n:\n    print(n, torch.get_num_threads())\nprint(torch.get_num_threads())")


def test_fitting_uses_both_cpus_then_restores():
    """The overfit encoder's fit runs on every CPU (at most 4) unless the process chose a count
    or OpenMP's threads sleep between ops (PASSIVE: then waking them costs more than they give)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", threads.ENV)}

    def run(extra=None, before="pass"):
        out = subprocess.run([sys.executable, "-c", FIT_PROBE.format(before=before)], env={**env, **(extra or {})},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return [int(v) for v in out.stdout.split()]

    d = threads.default_threads()
    assert run({"OMP_WAIT_POLICY": "ACTIVE"}) == [2, 2, d]   # then back to the library's count
    if (os.cpu_count() or 1) <= 2:
        assert run({"OMP_WAIT_POLICY": "passive"}) == [d, d, d]
    else:
        assert run({"OMP_WAIT_POLICY": "passive"}) == [2, 2, d]
    assert run({"PROGCODEC_THREADS": "1"}) == [1, 1, 1]
    assert run(before="t.set_threads(1)") == [1, 1, 1]
