"""The benchmark scripts run end to end on a tiny input (no timing is asserted anywhere)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
PHOTO = ROOT / "tests" / "data" / "photo_128.png"


def run(script, *args):
    out = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], capture_output=True,
                         text=True, cwd=BENCH, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_entropy_benchmark():
    assert "progcodec Gaussian" in run("entropy.py", "--n", "20000")


def test_rd_benchmark(tmp_path):
    out = run("rd.py", "--images", PHOTO.parent, "--plugins", "pyramid", "--formats", "jpeg", "webp",
              "--out", tmp_path)
    assert "BD-rate" in out and "| pyramid | 3 |" in out
    assert {p.name for p in tmp_path.iterdir()} == {"rd.csv", "rd_psnr.png", "rd_msssim.png", "progressive.png"}


def test_speed_benchmark():
    out = run("speed.py", "--runs", "1", "--sizes", "64", "--plugins", "pyramid", "--image", PHOTO)
    assert "| pyramid |" in out and "bmshj2018-hyperprior" in out


def test_speed_threads_benchmark():
    out = run("speed.py", "--threads", "--runs", "1", "--plugins", "pyramid", "--thread-counts", "1", "2",
              "--load", "1", "--image", PHOTO)
    assert "| pyramid | 1 |" in out and "| pyramid | 2 |" in out and "loaded" in out
