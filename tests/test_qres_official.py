"""The official lossy-vae QRes-VAE (qres34m, qres17m): exact port, checkpoint import, plugin.

The fixtures in tests/data were written by plugins/qres_vae/make_fixture.py from the authors'
own code (github.com/duanzhiihao/lossy-vae) at width ch 4 with random weights: their state
dict, an 8-bit image, and their per-block posterior means, prior means, prior scales, rates
and the reconstruction. The conftest imports them as rate ``fixture`` of both plugins.
"""
import json
import re
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import progcodec
from progcodec import PriorMismatchError, UnknownModelError, WeightsMismatchError, registry
from progcodec_plugins.qres_vae import official
from progcodec_plugins.qres_vae.model import OfficialQResVAE, official_key_map, official_preset

DATA = Path(__file__).parent / "data"
ARCHS = official.ARCHS


def fixture(arch):
    t = load_file(str(DATA / f"qres_official_{arch}.safetensors"))
    meta = json.loads((DATA / f"qres_official_{arch}.json").read_text())
    state = {k[len("state."):]: v for k, v in t.items() if k.startswith("state.")}
    out = {k[len("out."):]: v for k, v in t.items() if k.startswith("out.")}
    return state, t["image"], out, meta


def image_of(im8):
    return Image.fromarray(im8[0].permute(1, 2, 0).numpy(), "RGB")


def same_8bit(ours, theirs, tie=1e-3):
    """Identical once stored as 8-bit, except where theirs sits within ``tie`` of a rounding
    boundary (float32 sums differ across CPUs, AVX2 vs AVX-512, by ~1e-6): there off by one."""
    a, b = torch.round(ours * 255), torch.round(theirs * 255)
    off = (a - b).abs()
    near = ((theirs * 255) - torch.floor(theirs * 255) - 0.5).abs() < tie
    return bool(off.max() <= 1) and bool(near[off > 0].all())


def official_bits(z, mean, scale):
    """Their eval-mode rate: discretized Gaussian, scale floored at 0.11, likelihood at 1e-9."""
    d = (z - mean).abs().double()
    s = scale.double().clamp_min(0.11)
    p = torch.special.ndtr((0.5 - d) / s) - torch.special.ndtr((-0.5 - d) / s)
    return float(-torch.log2(p.clamp_min(1e-9)).sum())


@pytest.mark.parametrize("arch", ARCHS)
def test_port_matches_the_official_outputs(arch, one_torch_thread):
    """Through the installed plugin: every prior mean / scale / posterior mean within float
    tolerance of theirs (scales relative above 1), the residual-rounded symbols identical,
    per-block rate equal, and the reconstruction equal to theirs (8-bit: see same_8bit)."""
    _, im8, ref, _ = fixture(arch)
    model = registry.load(arch, "fixture")
    x = im8.float() / 255
    with torch.no_grad():
        feats = model.net.features(x)
        state = model.decoder(x.shape[-2], x.shape[-1], {})
        worst = {"posterior": 0.0, "prior mean": 0.0, "prior scale": 0.0}
        for k in range(model.layers):
            h, mean, _ = state._params(k)
            scale = state._params(k)[2]
            mu = model.net.posterior(k, h, feats)
            worst["posterior"] = max(worst["posterior"], (mu - ref[f"posterior_mean.{k}"]).abs().max().item())
            worst["prior mean"] = max(worst["prior mean"], (mean - ref[f"prior_mean.{k}"]).abs().max().item())
            rel = (scale - ref[f"prior_scale.{k}"]).abs() / ref[f"prior_scale.{k}"].abs().clamp_min(1)
            worst["prior scale"] = max(worst["prior scale"], rel.max().item())  # relative above 1
            theirs = torch.round(ref[f"posterior_mean.{k}"] - ref[f"prior_mean.{k}"])
            ours = torch.round(mu - mean)
            assert torch.equal(ours, theirs), f"block {k}: symbols differ"
            bits = official_bits(mean + ours, mean, scale)
            assert bits == pytest.approx(ref[f"rate_bits.{k}"].item(), rel=1e-5, abs=1e-3)
            state.push(k, [ours[0].numpy().astype(np.int32)])
        recon = state.image()
    assert all(v < 1e-5 for v in worst.values()), worst
    assert (recon - ref["reconstruction"][0]).abs().max().item() < 1e-5
    assert same_8bit(recon, ref["reconstruction"][0])


@pytest.mark.parametrize("arch", ARCHS)
def test_stream_symbols_and_image_are_the_official_ones(arch, one_torch_thread):
    """A real .pcs stream: its decoded symbols are their round(mu - mean) in every layer, and
    the decoded image is their reconstruction (8-bit: see same_8bit); the coded size follows
    their rate (our 64-scale table and range coder, not CompressAI's)."""
    _, im8, ref, _ = fixture(arch)
    data = progcodec.encode(image_of(im8), model=arch, rate="fixture")
    h = progcodec.info(data)
    assert (h.model, h.rate, h.layers) == (arch, "fixture", 12)
    from progcodec.stream import StreamDecoder

    dec = StreamDecoder()
    dec.feed(data)
    dec.close()
    symbols = dec.symbols
    for k, layer in enumerate(symbols):
        theirs = torch.round(ref[f"posterior_mean.{k}"] - ref[f"prior_mean.{k}"])[0].numpy()
        assert np.array_equal(layer[0], theirs), f"layer {k}"
    final = progcodec.decode(data).tensor
    assert (final - ref["reconstruction"]).abs().max().item() < 1e-5
    assert same_8bit(final, ref["reconstruction"][0])
    theirs = sum(ref[f"rate_bits.{k}"].item() for k in range(12))
    assert 0.9 * theirs < 8 * sum(h.layer_sizes) < 1.1 * theirs + 12 * 48


def test_priors_do_not_depend_on_the_thread_count():
    """Encode with 3 threads, decode with 1 and 2: the same priors (no PriorMismatchError)."""
    _, im8, _, _ = fixture("qres34m")
    img = image_of(im8).resize((128, 128))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        data = progcodec.encode(img, model="qres34m", rate="fixture")
        out = []
        for n in (1, 2):
            torch.set_num_threads(n)
            out.append(progcodec.decode(data).tensor)
    finally:
        torch.set_num_threads(before)
    assert torch.allclose(out[0], out[1], atol=1 / 255)


def test_key_map_is_one_to_one():
    for arch in ARCHS:
        c = official_preset(arch)
        ours = OfficialQResVAE(c).state_dict()
        m = official_key_map(c)
        assert sorted(m.values()) == sorted(ours) and len(set(m)) == len(m)
    assert sum(p.numel() for p in OfficialQResVAE(official_preset("qres34m")).parameters()) == 34_036_602


def _checkpoint(tmp_path, state, name="qres34m-lmb64.pt", wrap=True):
    path = tmp_path / name
    torch.save({"model": state, "epoch": 1} if wrap else state, path)
    return path


@pytest.fixture()
def weights(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    monkeypatch.setenv("PROGCODEC_WEIGHTS", str(folder))
    yield folder
    for arch in ARCHS:
        registry.unregister(arch)  # drop instances cached from this folder


def test_import_refuses_wrong_checkpoints_naming_the_first_wrong_key(tmp_path, weights):
    state, _, _, _ = fixture("qres34m")
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "decoder.dec_blocks.3.prior.c2.weight"},
                    "'decoder.dec_blocks.3.prior.c2.weight' is missing"),
        "shape": ({**state, "encoder.enc_blocks.5.mlp.fc1.bias": torch.zeros(7)},
                  "'encoder.enc_blocks.5.mlp.fc1.bias' has shape (7,), expected (16,)"),
        "foreign": ({**state, "decoder.extra.weight": torch.zeros(1)}, "unexpected key 'decoder.extra.weight'"),
        "nan": ({**state, "decoder.bias": torch.full_like(state["decoder.bias"], float("nan"))}, "NaN"),
        "other arch": (fixture("qres17m")[0], "is not qres34m (ch 4)"),
        "full width": (state, "is not qres34m (ch 96)"),
    }
    for what, (bad, message) in cases.items():
        with pytest.raises(WeightsMismatchError, match=re.escape(message)):
            official.import_weights(bad, name="qres34m", rate="lmb64", ch=None if what == "full width" else 4)
    assert not weights.exists() or not list(weights.rglob("*.safetensors"))
    # entropy-coder buffers and a DistributedDataParallel prefix are accepted
    extra = {"module." + k: v for k, v in state.items()}
    extra["module.decoder.dec_blocks.0.discrete_gaussian._quantized_cdf"] = torch.zeros(64, 10, dtype=torch.int32)
    path = official.import_weights(official.read_checkpoint(_checkpoint(tmp_path, extra)), name="qres34m",
                                   rate="lmb64", ch=4)
    assert path == weights / "qres34m" / "lmb64.safetensors"


def test_import_never_unpickles_code(tmp_path, weights):
    path = tmp_path / "qres34m-lmb16.pt"
    torch.save({"model": {}, "args": Path("x")}, path)  # a pickled object, not a tensor
    with pytest.raises(WeightsMismatchError, match="weights_only"):
        official.read_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMismatchError):
        official.read_checkpoint(path)


class Cli:
    """``progcodec ...`` in this process (a subprocess costs seconds of torch import each)."""

    def __init__(self, capsys, monkeypatch):
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def __call__(self, *args, weights):
        from progcodec import cli

        self.monkeypatch.setenv("PROGCODEC_WEIGHTS", str(weights))
        for arch in ARCHS:
            registry.unregister(arch)  # a receiver that starts afresh in that folder
        self.capsys.readouterr()
        rc = cli.main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        return rc, out, err


def test_cli_import_list_encode_decode(tmp_path, capsys, monkeypatch, one_torch_thread):
    """The user's path: nothing imported -> plugins says how; a wrong checkpoint is refused
    (exit 2, first wrong key, nothing written); the right one is listed with its digest and
    streams through encode/decode; a receiver without them or with other weights is refused."""
    from progcodec.plugin import file_digest

    run, w = Cli(capsys, monkeypatch), tmp_path / "w"
    state, im8, _, _ = fixture("qres34m")
    rc, out, _ = run("plugins", weights=w)
    assert "qres34m" in out and "progcodec import-weights qres34m-lmb64.pt" in out
    bad = _checkpoint(tmp_path, {k: v for k, v in state.items() if "enc_blocks.7." not in k})
    rc, _, err = run("import-weights", bad, "--ch", "4", weights=w)
    assert rc == 2 and "key 'encoder.enc_blocks.7.conv_dw.weight' is missing" in err
    assert "Traceback" not in err and not (w / "qres34m").exists()
    rc, out, err = run("import-weights", _checkpoint(tmp_path, state), "--ch", "4", weights=w)
    assert rc == 0, err
    digest = file_digest(w / "qres34m" / "lmb64.safetensors")
    assert f"lmb64={digest}" in run("plugins", weights=w)[1]
    image_of(im8).save(tmp_path / "a.png")
    rc, _, err = run("encode", tmp_path / "a.png", tmp_path / "a.pcs", "--model", "qres34m", "--rate", "lmb64", weights=w)
    assert rc == 0, err
    rc, out, err = run("decode", tmp_path / "a.pcs", tmp_path / "b.png", "--layers", "4", weights=w)
    assert rc == 0 and "4/12 layers" in out, err
    rc, _, err = run("decode", tmp_path / "a.pcs", tmp_path / "c.png", weights=tmp_path / "none")
    assert rc == 2 and "import-weights" in err and "lmb64" in err
    other = dict(state, **{"decoder.bias": state["decoder.bias"] + 1})
    rc, _, err = run("import-weights", _checkpoint(tmp_path, other), "--ch", "4", weights=tmp_path / "other")
    assert rc == 0, err
    rc, _, err = run("decode", tmp_path / "a.pcs", tmp_path / "c.png", weights=tmp_path / "other")
    assert rc == 2 and "weights" in err.lower() and digest in err
    for arch in ARCHS:
        registry.unregister(arch)


def test_missing_rate_names_the_import_command(weights):
    with pytest.raises(UnknownModelError, match="import-weights qres17m-lmb8.pt"):
        official.QRes17M("lmb8")
    assert official.QRes34M.rates == () and "import-weights" in official.QRes34M.no_rates_hint()


def test_imported_weights_live_in_the_user_folder(monkeypatch):
    monkeypatch.delenv("PROGCODEC_WEIGHTS")
    from platformdirs import user_data_dir

    folder = official.weights_dir()
    assert folder == Path(user_data_dir("progcodec")) / "weights"
    assert "site-packages" not in str(folder)
