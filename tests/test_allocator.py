"""progcodec.allocator: glibc keeps freed memory while a fit runs, and gets its defaults back."""
import os
import subprocess
import sys

import pytest

from progcodec import allocator

PROBE = """
import os, resource, torch, progcodec.allocator as a
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
def faults():
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.empty(10 << 20).fill_(1.0)   # 40 MB (above glibc's largest mmap threshold), freed at once
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) // 10
faults()
before = faults()
with a.retained() as on:
    faults()
    inside = faults()
    kept = rss()
print(int(on), before, inside, kept - rss())
"""


def probe(env=None):
    env = {**os.environ, **(env or {})}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [int(v) for v in out.stdout.split()]


@pytest.mark.skipif(not allocator.enabled(), reason="glibc malloc only")
def test_fit_reuses_freed_memory_then_restores():
    on, before, inside, returned_mb = probe()
    assert on == 1
    assert before > 2000            # 10240 pages per 40 MB tensor, faulted in every time
    assert inside < before / 20     # served from glibc's heap, no new pages
    assert returned_mb >= 30        # the freed 40 MB go back to the system when the fit ends


def test_opt_out_and_nesting():
    for env in ({allocator.ENV: "default"}, {"MALLOC_ARENA_MAX": "2"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}):
        on, before, inside, _ = probe(env)   # asked to, or the process tuned malloc itself
        assert on == 0 and inside > before / 2, env
    with allocator.retained() as a, allocator.retained() as b:
        assert a == b == allocator.enabled()
        assert allocator._active == (2 if a else 0)
    assert allocator._active == 0
