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
