"""The command line, as a user runs it."""
import pytest

from progcodec import cli


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_encode_info_truncate_decode(tmp_path, photo, capsys):
    src, pcs, cut = tmp_path / "in.png", tmp_path / "x.pcs", tmp_path / "cut.pcs"
    photo.save(src)
    assert run(capsys, "encode", src, pcs, "--rate", "high")[0] == 0
    code, out, _ = run(capsys, "info", pcs)
    assert code == 0 and "pyramid" in out and "96x64" in out and "residual-1/1" in out
    assert run(capsys, "truncate", pcs, cut, "--layers", "2")[0] == 0
    code, out, _ = run(capsys, "decode", cut, tmp_path / "out.png", "--steps", tmp_path / "steps")
    assert code == 0 and "2/2 layers" in out
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == ["out-layer01.png", "out-layer02.png"]
    code, out, _ = run(capsys, "decode", pcs, tmp_path / "full.png", "--layers", "3")
    assert code == 0 and "3/5 layers" in out


def test_errors_are_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.pcs"
    bad.write_bytes(b"not a stream at all")
    code, _, err = run(capsys, "decode", bad, tmp_path / "o.png")
    assert code == 2 and err.startswith("progcodec: error: not a progcodec stream")
    code, _, err = run(capsys, "info", tmp_path / "missing.pcs")
    assert code == 2 and "No such file" in err
    code, _, err = run(capsys, "encode", bad, tmp_path / "o.pcs")
    assert code == 2 and "error" in err


def test_plugins_lists_pyramid(capsys):
    code, out, _ = run(capsys, "plugins")
    assert code == 0 and "pyramid" in out and "medium=none" in out


def test_demo_writes_every_refinement(tmp_path, capsys):
    code, out, _ = run(capsys, "demo", "--out", tmp_path)
    assert code == 0 and "PSNR" in out
    assert len(list(tmp_path.glob("demo-layer*.png"))) == 5


def test_demo_takes_model_options(tmp_path, capsys):
    code, out, _ = run(capsys, "demo", "--model", "overfit", "--effort", "fast", "--iters", "2", "--out", tmp_path)
    assert code == 0 and "overfit" in out
    assert len(list(tmp_path.glob("demo-layer*.png"))) == 6


@pytest.mark.parametrize("argv", [["decode"], ["truncate", "a", "b"], ["nope"]])
def test_bad_usage_exits_nonzero(argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


def test_a_broken_plugin_is_reported_not_fatal(capsys):
    from progcodec import registry
    from progcodec_plugins.pyramid import Pyramid

    class Broken(Pyramid):
        name = "broken"

        def __init__(self, rate=None):
            raise FileNotFoundError("weights/broken.safetensors is missing")

    registry.register(Broken)
    try:
        code, out, _ = run(capsys, "plugins")
    finally:
        registry.unregister("broken")
    assert code == 0 and "pyramid" in out
    assert "broken" in out and "BROKEN" in out and "missing" in out


# issue 16 ------------------------------------------------------------------------------

@pytest.fixture
def pcs(tmp_path, stream):
    path = tmp_path / "x.pcs"
    path.write_bytes(stream)
    return path


def _cut(tmp_path, stream, name="half.pcs"):
    import progcodec

    path = tmp_path / name
    path.write_bytes(stream[: progcodec.info(stream).layer_ends()[3] + 10])
    return path


def _flipped(tmp_path, stream, name="flip.pcs"):
    import progcodec

    bad = bytearray(stream)
    bad[progcodec.info(stream).layer_ends()[3] + 20] ^= 1   # inside layer 5's payload
    path = tmp_path / name
    path.write_bytes(bytes(bad))
    return path


@pytest.mark.parametrize("damage", [_cut, _flipped])
def test_decode_of_a_cut_or_damaged_file_writes_the_last_refinement(tmp_path, stream, capsys, damage):
    """Item 1: exit 3, the layer-4 image written, stderr says what is missing; --strict: old behaviour."""
    import numpy as np
    from PIL import Image

    import progcodec

    src = damage(tmp_path, stream)
    code, out, err = run(capsys, "decode", src, tmp_path / "o.png")
    assert code == cli.EXIT_PARTIAL == 3
    assert "4/5 layers, partial" in out and "layer 5" in err and "warning" in err
    ref = np.asarray(progcodec.decode(stream, layers=4).image)
    assert (np.asarray(Image.open(tmp_path / "o.png")) == ref).all()
    code, out, err = run(capsys, "decode", src, tmp_path / "strict.png", "--strict")
    assert code == 2 and "error" in err and not (tmp_path / "strict.png").exists()


def test_decode_of_a_file_with_no_complete_layer_is_an_error(tmp_path, stream, capsys):
    import progcodec

    src = tmp_path / "head.pcs"
    src.write_bytes(stream[: progcodec.info(stream).header_bytes() + 5])
    code, out, err = run(capsys, "decode", src, tmp_path / "o.png")
    assert code == 2 and "ended after 0 of 5" in err and out == ""
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("output, match", [
    (".", "is a folder"), ("noext", "no extension"), ("o.xyz", "'.xyz'"), ("o.pcs", "'.pcs'"),
    ("nodir/o.png", "does not exist"),
])
def test_decode_output_is_checked_before_any_work(tmp_path, pcs, capsys, monkeypatch, output, match):
    """Item 2: a bad output is a usage error (exit 2) before decoding: nothing on stdout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "decode_stream", lambda *a, **k: pytest.fail("decoded before checking the output"))
    with pytest.raises(SystemExit) as exc:
        cli.main(["decode", str(pcs), output])
    out = capsys.readouterr()
    assert exc.value.code == 2 and match in out.err and "progcodec decode: error" in out.err and out.out == ""


def test_encode_output_is_checked_before_any_work(tmp_path, photo, capsys, monkeypatch):
    src = tmp_path / "in.png"
    photo.save(src)
    monkeypatch.setattr(cli.codec, "encode", lambda *a, **k: pytest.fail("encoded before checking the output"))
    for output in (tmp_path, tmp_path / "nodir" / "x.pcs"):
        with pytest.raises(SystemExit) as exc:
            cli.main(["encode", str(src), str(output)])
        assert exc.value.code == 2
    assert capsys.readouterr().out == ""


def test_missing_input_prints_nothing_on_stdout(tmp_path, capsys):
    for argv in (["decode", tmp_path / "nosuch.pcs", tmp_path / "o.png"], ["info", tmp_path / "nosuch.pcs"],
                 ["encode", tmp_path / "nosuch.png", tmp_path / "o.pcs"]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and "No such file" in err


def test_outputs_are_written_atomically(tmp_path, pcs, capsys, monkeypatch):
    """Item 2: a failure while writing leaves no file under the final name, and no temporary."""
    from PIL import Image

    target = tmp_path / "o.png"

    def boom(self, fp, format=None, **kw):
        fp.write(b"half an image")
        raise OSError("disk full")
    monkeypatch.setattr(Image.Image, "save", boom)
    code, _, err = run(capsys, "decode", pcs, target)
    assert code == 2 and "disk full" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pcs"]


def test_info_checks_every_frame_crc(tmp_path, stream, capsys, pcs):
    """Item 3: info said 'complete yes' for a flipped byte; now it reports each layer's state."""
    code, out, _ = run(capsys, "info", pcs)
    assert code == 0 and out.count("  intact\n") == 5 and "every layer intact" in out
    code, out, err = run(capsys, "info", _flipped(tmp_path, stream))
    rows = [line.split() for line in out.splitlines() if line[:5].strip().isdigit()]
    assert code == 3 and [r[-1] for r in rows[:4]] == ["intact"] * 4
    assert rows[4][5] == "damaged" and "checksum mismatch" in out and "layers 1-4 decode" in out
    code, out, _ = run(capsys, "info", _cut(tmp_path, stream))
    assert code == 3 and "missing (file ends 10 of" in out
    cut2 = tmp_path / "cut2.pcs"
    assert run(capsys, "truncate", pcs, cut2, "--layers", "2")[0] == 0   # a valid shorter stream
    code, out, _ = run(capsys, "info", cut2)
    assert code == 0 and "2 of 5 encoded" in out and out.count("  intact\n") == 2


def test_info_reports_a_wrong_frame_header(tmp_path, stream, capsys):
    import struct

    import progcodec

    bad = bytearray(stream)
    start = progcodec.info(stream).layer_ends()[1]               # frame 3's index field
    bad[start : start + 2] = struct.pack("<H", 7)
    path = tmp_path / "relabelled.pcs"
    path.write_bytes(bytes(bad))
    code, out, _ = run(capsys, "info", path)
    assert code == 3 and "frame header says layer 8" in out


def test_view_of_a_missing_file_is_a_usage_error_before_any_window(tmp_path, capsys, monkeypatch):
    """Item 4: it opened a window showing the error and never exited."""
    import sys

    monkeypatch.setitem(sys.modules, "progcodec.viewer", None)  # importing the viewer would fail the test
    with pytest.raises(SystemExit) as exc:
        cli.main(["view", str(tmp_path / "nosuch.pcs")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "progcodec view: error" in err and "no such file" in err


def test_encode_keeps_grayscale_and_alpha(tmp_path, photo, capsys):
    src, pcs, out = tmp_path / "in.png", tmp_path / "x.pcs", tmp_path / "out.png"
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(src)
    assert run(capsys, "encode", src, pcs)[0] == 0
    code, info_out, _ = run(capsys, "info", pcs)
    assert code == 0 and "RGBA (coded as RGB)" in info_out and "alpha" in info_out
    assert run(capsys, "decode", pcs, out)[0] == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.getchannel("A").getextrema() == (128, 128)


def test_outputs_get_ordinary_permissions(tmp_path):
    """Atomic writes go through mkstemp (0600); the final file gets 0666 less the umask."""
    import os
    import stat

    from progcodec import files

    mask = os.umask(0o022)
    try:
        files.write_atomic(tmp_path / "a.bin", b"x")
        files.write_atomic(tmp_path / "b.bin", lambda f: f.write(b"y"))
    finally:
        os.umask(mask)
    for name in ("a.bin", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


def test_encode_compact_header(tmp_path, capsys):
    """--compact-header writes format 1.2 (smaller header, same image); the default stays plain."""
    import torch
    from PIL import Image

    import progcodec
    from progcodec import bitstream

    src = tmp_path / "in.png"
    Image.new("RGB", (40, 30), (200, 80, 20)).save(src)
    for flag, minor in (([], 0), (["--no-compact-header"], 0), (["--compact-header"], 2)):
        out = tmp_path / f"o{minor}.pcs"
        assert cli.main(["encode", str(src), str(out), *flag]) == 0
        assert out.read_bytes()[9] == minor
    plain, compact = (progcodec.info((tmp_path / f"o{m}.pcs").read_bytes()) for m in (0, 2))
    assert compact.header_bytes() < plain.header_bytes() - 100 and compact == plain
    assert torch.equal(progcodec.decode((tmp_path / "o2.pcs").read_bytes()).tensor,
                       progcodec.decode((tmp_path / "o0.pcs").read_bytes()).tensor)
    assert bitstream.read((tmp_path / "o2.pcs").read_bytes())[0].compact
