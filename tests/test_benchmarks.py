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


def test_overfit_benchmark_saves_fits_that_repack_to_the_same_stream(tmp_path, monkeypatch):
    """overfit.py --save-fits, then overfit_repack.py with the same code: the very same streams
    (quantization and coding depend on the saved fit alone), so a change to them can be
    measured on saved fits."""
    import json

    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(PHOTO).convert("RGB").resize((48, 32)).save(photos / "tiny.png")
    monkeypatch.setenv("PROGCODEC_OVERFIT_ITERS", "6")
    rows, again = tmp_path / "rows.jsonl", tmp_path / "again.jsonl"
    run("overfit.py", "--images", photos, "--efforts", "fast", "--rates", "low", "medium",
        "--save-fits", tmp_path / "fits", "--out", rows)
    assert sorted(p.name for p in (tmp_path / "fits").iterdir()) == ["tiny_fast_low_warm.pt", "tiny_fast_medium_warm.pt"]
    out = run("overfit_repack.py", "--rows", rows, "--fits", tmp_path / "fits", "--out", again, "--images", photos)
    assert len(out.splitlines()) == 2
    first, second = ([json.loads(line) for line in p.read_text().splitlines()] for p in (rows, again))
    assert [(r["rate"], r["bytes"], r["layers"]) for r in first] == [(r["rate"], r["bytes"], r["layers"]) for r in second]
