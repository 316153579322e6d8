"""The fitted-per-image codec: conformance, exact priors, hostile side information, options."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import progcodec
from progcodec import BitstreamError, bitstream, testing
from progcodec.entropy import MEAN_STEPS, mean_parts
from progcodec_plugins.overfit import fit, nets, plugin, quant


def photo(w=64, h=48):
    from importlib import resources

    from PIL import Image

    img = Image.open(resources.files("progcodec") / "data" / "default.png").convert("RGB")
    return img.resize((w, h), Image.LANCZOS)


def psnr(a, b):
    return -10 * math.log10(float(((a - b) ** 2).mean()))


def test_conformance_kit():
    testing.check_plugin("overfit", rates=("lowest", "highest"), max_examples=2, max_side=24)


def test_every_prefix_renders_full_size_and_refines():
    img = photo()
    data = progcodec.encode(img, model="overfit", iters=120)
    steps = list(progcodec.decode_stream([data]))
    assert [s.layer for s in steps] == [1, 2, 3, 4, 5, 6]
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    quality = [psnr(s.tensor, x) for s in steps]
    assert all(s.tensor.shape == x.shape for s in steps)
    assert quality[-1] > quality[0] + 3, quality
    assert progcodec.info(data).extra["layer_steps"] == [5, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("version", ["v2", "v3", "v4"])
def test_a_stream_from_before_decodes_the_same(version):
    """64x48 streams written by earlier versions (side information v2: commit c41294b; v3,
    scale offsets and rounded means: ae29f14; v4, coded means, format 1.2 header: 8f8847e):
    same priors (no PriorMismatchError), same image to within one 8-bit level (rendering is
    float32)."""
    from pathlib import Path

    from PIL import Image

    here = Path(__file__).parent / "data"
    data = (here / f"overfit_{version}_64x48.pcs").read_bytes()
    assert bitstream.unpack_side(bitstream.read(data)[0])["v"] == int(version[1])
    want = np.asarray(Image.open(here / f"overfit_{version}_64x48.png")).astype(int)
    got = (progcodec.decode(data).tensor.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy().astype(int)
    assert np.abs(got - want).max() <= 1
    assert len(list(progcodec.decode_stream([data]))) == 6


def test_context_features_are_the_dense_windows():
    """``nets.context`` (stride-2 slices per sub-lattice) equals the plain definition: the 3x3
    window of the replicate-padded upsampled parent, then N, W, E, S, at each pass's positions."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(1)
    for h, w in ((7, 5), (1, 1), (2, 9), (16, 12)):
        grid = torch.randint(-9, 9, (h, w), generator=g).double()
        parent = torch.randint(-9, 9, (-(-h // 2), -(-w // 2)), generator=g).double()
        up = F.pad(nets.upsample2(parent[None, None], (h, w)), (1, 1, 1, 1), mode="replicate")[0, 0]
        pad = F.pad(grid, (1, 1, 1, 1))
        for p in "ab":
            pos = [(r, c) for i, j in nets.LATTICES[p] for r in range(i, h, 2) for c in range(j, w, 2)]
            rows = [[float(up[r + k // 3, c + k % 3]) for r, c in pos] for k in range(9)]
            if p == "b":
                rows += [[float(pad[r + di, c + dj]) for r, c in pos] for di, dj in ((0, 1), (1, 0), (1, 2), (2, 1))]
            assert nets.context(parent, grid, p).tolist() == rows
            none = nets.context(None, grid, p)
            assert none[:9].abs().sum() == 0 and none[9:].tolist() == rows[9:]


def test_more_iterations_fit_better():
    img = photo()
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    short = progcodec.decode(progcodec.encode(img, model="overfit", iters=10)).tensor
    long = progcodec.decode(progcodec.encode(img, model="overfit", iters=150)).tensor
    assert psnr(long, x) > psnr(short, x) + 2


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (2, 9), (37, 53)])
def test_fitting_first_layer_equals_the_context_features(size):
    """The fit's first entropy-model layer (strided convolutions per sub-lattice) computes the
    same function as the decoder's context features times the first weights, values and gradients."""
    g = torch.Generator().manual_seed(3)
    m = fit.Fitted(*size, fit.FitConfig(lmbda=0.01, iters=1)).double()
    for p in m.arm.parameters():
        p.data = torch.randn(p.shape, generator=g, dtype=torch.float64)
    ys = [torch.randn(1, 1, h, w, generator=g, dtype=torch.float64).requires_grad_() for h, w in m.sizes]
    def features():
        return [mlp.layers[0](f.t()).t() for mlp, (f, _) in zip((m.arm.a, m.arm.b), fit.contexts(ys))]

    grads = []
    for run in (features, lambda: list(fit.first_layers(m, ys))):
        outs = run()
        sum((o.sin() * (k + 1)).sum() for k, o in enumerate(outs)).backward()
        grad = [torch.zeros_like(t) if t.grad is None else t.grad.clone() for t in ys + list(m.arm.parameters())]
        grads.append(([o.detach() for o in outs], grad))
        for t in ys + list(m.arm.parameters()):
            t.grad = None
    (o1, g1), (o2, g2) = grads
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(o1 + g1, o2 + g2))


def test_entropy_model_is_exact_whatever_the_summation_order():
    """Dyadic weights on integer inputs: every partial sum is exact, so the order cannot matter."""
    g = torch.Generator().manual_seed(0)
    mlp = nets.MLP(13, 16)
    with torch.no_grad():
        for p in mlp.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    params = quant.from_ints(quant.to_ints(quant.mlp_tensors(mlp), 9), 9)
    feats = torch.randint(-300, 300, (13, 5000), generator=g).double() / 16
    out = quant.exact_mlp(params, feats)
    perm = torch.randperm(13, generator=g)
    shuffled = [p.clone() for p in params]
    shuffled[0] = shuffled[0][:, perm]
    assert torch.equal(quant.exact_mlp(shuffled, feats[perm]), out)
    assert torch.equal(quant.exact_mlp(params, feats, chunk=777), out)  # column chunks
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(quant.exact_mlp(params, feats), out)
    finally:
        torch.set_num_threads(before)


def _stream_with_side(data=None, **changes):
    data = data or progcodec.encode(photo(32, 24), model="overfit", iters=5)
    header, frames = bitstream.read(data)
    side = bitstream.unpack_side(header)
    side.update(changes)
    packed, codec = bitstream.pack_side(side)
    from dataclasses import replace

    header = replace(header, side=packed, extra={**header.extra, "side_codec": codec})
    return bitstream.write(header, [(f.payload, f.prior_check) for f in frames])


@pytest.mark.parametrize("changes", [
    {"ah": 10**9}, {"sh": 0}, {"ah": "16"}, {"q": [2, 2, 400]}, {"q": [1]}, {"ws": b"\x00"},
    {"ws": bytes([200] * 20)}, {"v": 6}, {"q": [2] * 19 + [25]}, {"q": [2] * 21}, {"q": [2] * 19 + [1.5]},
    {"q": [2, 2, 2], "v": 5}, {"q": [True] * 20}, {"q": [-1] + [2] * 19}, {"v": True}, {"ah": True},
    {"so": [65] + [0] * 13}, {"so": [0] * 13}, {"so": "x"}, {"so": None},
    {"so": [0.5] * 14},
])
def test_hostile_side_information_is_refused_before_allocation(changes):
    with pytest.raises(BitstreamError):
        progcodec.decode(_stream_with_side(**changes))


def test_scale_offsets_are_fitted_and_used_by_the_decoder():
    """v3 streams carry a fitted log-scale offset per grid and pass; a decoder that applied
    others would compute another prior, which the frame check refuses."""
    data = progcodec.encode(photo(), model="overfit", iters=60)
    so = bitstream.unpack_side(bitstream.read(data)[0])["so"]
    assert len(so) == 2 * nets.GRIDS and any(so), so
    with pytest.raises(progcodec.PriorMismatchError):
        progcodec.decode(_stream_with_side(data, so=[k + 4 for k in so]))


def test_latents_are_coded_under_their_means():
    """v4 (and after) codes each latent under its model's mean snapped to 1/8; read as v3
    (relative to the rounded mean) the same stream has other priors, which the frame check
    refuses."""
    from pathlib import Path

    data = (Path(__file__).parent / "data" / "overfit_v4_64x48.pcs").read_bytes()
    with pytest.raises(progcodec.PriorMismatchError):
        progcodec.decode(_stream_with_side(data, v=3))


def test_every_weight_tensor_has_its_own_step():
    """v5 carries a step per tensor (20), searched from the best step common to each network;
    the decoder uses them: another step for one tensor is another prior or image."""
    data = progcodec.encode(photo(), model="overfit", iters=40)
    side = bitstream.unpack_side(bitstream.read(data)[0])
    assert side["v"] == 5 and len(side["q"]) == 20, side["q"]
    for t in (0, 7):  # entropy model pass a's first weights, pass b's first biases
        q = list(side["q"])
        q[t] += 1
        with pytest.raises(progcodec.PriorMismatchError):
            progcodec.decode(_stream_with_side(data, q=q))
    q = list(side["q"])
    q[19] += 1  # the last synthesis bias: not in any prior, so another image
    assert not torch.equal(progcodec.decode(_stream_with_side(data, q=q)).tensor, progcodec.decode(data).tensor)


def test_step_checks_refuse_before_decoding():
    """The decoder itself refuses v4 steps out of range, v5 lists of the wrong length, bools."""
    side = bitstream.unpack_side(bitstream.read(progcodec.encode(photo(32, 24), model="overfit", iters=5))[0])
    model = progcodec.registry.load("overfit")
    for bad in ({"v": 4, "q": [2, 2, 400]}, {"v": 4, "q": [2] * 20}, {"q": [2] * 19}, {"q": [True] * 20},
                {"q": [-1] + [2] * 19}):
        with pytest.raises(ValueError, match="weight steps"):
            model.decoder(24, 32, {**side, **bad})


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 16), min_size=3, max_size=3), st.lists(st.booleans(), min_size=3, max_size=3),
       st.integers(0, 2**31 - 1))
def test_per_tensor_steps_round_trip_exactly(shifts, keep, seed):
    """Each tensor at its own step, coded relative to the base or kept at it: the coded
    integers plus the base's at that step give back the weights' integers; a kept tensor
    codes zeros and equals the base."""
    g = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(16, 9, generator=g), torch.randn(16, generator=g) * 3, torch.randn(2, 16, generator=g)]
    base = [t + 0.01 * torch.randn(t.shape, generator=g) for t in tensors]
    ints, coded = quant.tensor_choice(tensors, base, shifts, keep)
    for t, b, s, k, i, c in zip(tensors, base, shifts, keep, ints, coded):
        bi = quant.to_ints([b], s)[0]
        assert np.array_equal(c + bi, i)
        assert np.array_equal(i, bi if k else quant.to_ints([t], s)[0])
        assert not k or not c.any()
    back = quant.from_ints(ints, shifts)
    assert all(torch.equal(w, torch.from_numpy(i.astype(np.float64)) * 2.0**-s) for w, i, s in zip(back, ints, shifts))


def test_step_refinement_gives_a_tiny_bias_its_own_step():
    """``refine_steps`` starts from the common step and only takes moves that lower the cost."""
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(8, 4, generator=g), torch.randn(8, generator=g) * 0.01]
    target = [t.double() for t in tensors]

    def cost(shifts, ints, coded):
        err = sum(float(((torch.from_numpy(i.astype(np.float64)) * 2.0**-s - t) ** 2).sum())
                  for i, s, t in zip(ints, shifts, target))
        return err + 1e-3 * quant.weight_bits(coded)

    start = cost([6, 6], *quant.tensor_choice(tensors, None, [6, 6], [False, False]))
    shifts, coded, ints = quant.refine_steps(cost, tensors, None, 6, False)
    assert cost(shifts, ints, coded) <= start and shifts != [6, 6]  # the tiny bias wants a coarser step


@given(st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=50), st.sampled_from([torch.float32, torch.float64]))
def test_fit_and_coder_snap_means_alike(sixteenths, dtype):
    """The fit's rate (``quant.coded_mean``) and the coder (``entropy.mean_parts``) snap a
    mean to the same eighth, ties (odd sixteenths) included."""
    m = torch.tensor(sixteenths, dtype=torch.float64) / 16 + torch.tensor([0.0, 0.01, -0.01])[
        torch.arange(len(sixteenths)) % 3]
    m = m.to(dtype)
    centre, k = mean_parts(m.numpy())
    assert np.array_equal(centre * MEAN_STEPS + k, (quant.coded_mean(m).double() * MEAN_STEPS).numpy())


def test_streams_name_their_warm_start_networks(monkeypatch):
    """Streams code weights relative to the shipped warm start (v2, v3 with ``init``); other
    networks are refused by name, and cold-start streams (self-contained) need none."""
    with pytest.raises(progcodec.WeightsMismatchError, match="warm-start networks"):
        progcodec.decode(_stream_with_side(init="0123456789abcdef"))
    data = progcodec.encode(photo(32, 24), model="overfit", iters=5)
    assert "init" in bitstream.unpack_side(bitstream.read(data)[0])
    cold = progcodec.encode(photo(32, 24), model="overfit", iters=5, warm_start=False)
    header, frames = bitstream.read(cold)
    assert bitstream.unpack_side(header)["v"] == 5 and "init" not in bitstream.unpack_side(header)
    from dataclasses import replace

    old = bitstream.write(replace(header, weights="none"), [(f.payload, f.prior_check) for f in frames])
    monkeypatch.setitem(progcodec.registry.load("overfit").__dict__, "init_digest", "ffffffffffffffff")
    with pytest.raises(progcodec.WeightsMismatchError):
        progcodec.decode(data)
    assert progcodec.decode(old).tensor.shape == (3, 24, 32)   # streams of format 1 name no weights


def test_a_wrong_step_count_is_refused():
    data = progcodec.encode(photo(32, 24), model="overfit", iters=5)
    header, frames = bitstream.read(data)
    from dataclasses import replace

    header = replace(header, extra={**header.extra, "layer_steps": [5, 2, 2, 2, 2, 3]})
    bad = bitstream.write(header, [(f.payload, f.prior_check) for f in frames])
    with pytest.raises(progcodec.HeaderError):
        progcodec.decode(bad)


def test_options_and_custom_rate():
    img = photo(32, 24)
    with pytest.raises(TypeError, match="no encode option"):
        progcodec.encode(img, model="overfit", quality=3)
    with pytest.raises(TypeError, match="no encode option"):
        progcodec.encode(img, model="pyramid", effort="fast")
    with pytest.raises(ValueError, match="effort"):
        progcodec.encode(img, model="overfit", effort="ludicrous")
    data = progcodec.encode(img, model="overfit", lmbda=0.01, iters=5)
    assert progcodec.info(data).rate == "custom"
    assert progcodec.decode(data).final


def test_target_bpp_search_moves_lambda_the_right_way():
    x = torch.from_numpy(np.array(photo())).permute(2, 0, 1)[None].float() / 255
    low = plugin.search_lambda(x, 0.5, 100, 0.003)
    high = plugin.search_lambda(x, 4.0, 100, 0.003)
    assert high < low


def test_progress_is_reported():
    seen = []
    progcodec.encode(photo(32, 24), model="overfit", iters=60, progress=lambda *a: seen.append(a))
    assert seen and seen[-1][0] == 60 and seen[-1][1] == 60


def test_preview_objective_improves_previews():
    img = photo()
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    got = {}
    for w in (0.0, 0.5):
        cfg = fit.FitConfig(lmbda=0.003, iters=150, prefix_weight=w)
        with torch.enable_grad():
            fitted, _ = fit.fit(x, cfg)
        ys = [torch.round(y.detach()) for y in fitted.latents]
        with torch.no_grad():
            got[w] = psnr(fit.render(fitted, ys, keep=4).clamp(0, 1), x)
    assert got[0.5] > got[0.0] + 1, got


def test_the_fit_ends_on_the_best_rounded_state(monkeypatch):
    x = torch.from_numpy(np.array(photo(32, 24))).permute(2, 0, 1)[None].float() / 255
    cfg = fit.FitConfig(lmbda=0.003, iters=100, noise_frac=0.5)  # its last state is not its best
    seen, terms = [], fit.terms

    def recording(model, x, noisy, soft=None):
        out = terms(model, x, noisy, soft)
        if not noisy:
            seen.append(float((out[2] + cfg.lmbda * out[3]).detach()))
        return out

    monkeypatch.setattr(fit, "terms", recording)
    with torch.enable_grad():
        fitted, log = fit.fit(x, cfg)
    assert len(seen) == 51 and log[-1]["kept_loss"] == min(seen) < seen[-1]
    assert log[-1]["kept"] == 50 + seen.index(min(seen))
    with torch.no_grad():
        _, _, mse, bpp = terms(fitted, x, False)
    assert float(mse + cfg.lmbda * bpp) == pytest.approx(min(seen), rel=1e-6)
    monkeypatch.setattr(fit, "terms", terms)
    with torch.enable_grad():
        last, log = fit.fit(x, fit.FitConfig(lmbda=0.003, iters=100, noise_frac=0.5, keep_best=False))
    assert "kept" not in log[-1]
    with torch.no_grad():
        _, _, mse, bpp = terms(last, x, False)
    assert float(mse + cfg.lmbda * bpp) == pytest.approx(seen[-1], rel=1e-6)


def test_overfit_streams_default_to_the_compact_header():
    img = photo(24, 16)
    compact = progcodec.encode(img, model="overfit", rate="low", iters=3)
    plain = progcodec.encode(img, model="overfit", rate="low", iters=3, compact_header=False)
    assert compact[9] == 2 and plain[9] == 1  # format 1.2; plain is 1.1 (several coding steps)
    assert len(plain) - len(compact) > 150
    assert progcodec.info(compact) == progcodec.info(plain)
    assert torch.equal(progcodec.decode(compact).tensor, progcodec.decode(plain).tensor)


def test_round_lr_scales_only_the_rounded_phase(monkeypatch):
    x = torch.from_numpy(np.array(photo(32, 24))).permute(2, 0, 1)[None].float() / 255
    at_switch, terms = [], fit.terms

    def recording(model, x, noisy, soft=None):
        if not noisy and not at_switch:
            at_switch.append([p.detach().clone() for p in (*model.latents, *model.arm.parameters())])
        return terms(model, x, noisy, soft)

    monkeypatch.setattr(fit, "terms", recording)
    with torch.enable_grad():
        fitted, _ = fit.fit(x, fit.FitConfig(lmbda=0.003, iters=40, noise_frac=0.5, round_lr=(0.0, 1.0)))
    lat = len(fitted.latents)
    after = [p.detach() for p in (*fitted.latents, *fitted.arm.parameters())]
    assert all(torch.equal(a, b) for a, b in zip(at_switch[0][:lat], after[:lat]))  # latents frozen
    assert not all(torch.equal(a, b) for a, b in zip(at_switch[0][lat:], after[lat:]))  # networks moved
    monkeypatch.setattr(fit, "terms", terms)
    with torch.enable_grad():
        default, _ = fit.fit(x, fit.FitConfig(lmbda=0.003, iters=40, noise_frac=0.5))
    assert not all(torch.equal(a, b.detach()) for a, b in zip(after[:lat], default.latents))


@given(st.floats(-50, 50, allow_nan=False, width=32))
def test_softround_goes_from_rounding_to_identity(v):
    y = torch.tensor([v])
    assert float(fit.softround(y, 1e-3)) == pytest.approx(float(torch.round(y)), abs=1e-3) or abs(v % 1 - 0.5) < 0.01
    assert float(fit.softround(y, 50.0)) == pytest.approx(v, abs=1e-3)


def test_soft_rounding_is_opt_in_and_changes_the_fit():
    x = torch.from_numpy(np.array(photo(32, 24))).permute(2, 0, 1)[None].float() / 255
    got = {}
    for sr in (None, (0.35, 0.08)):
        with torch.enable_grad():
            fitted, _ = fit.fit(x, fit.FitConfig(lmbda=0.003, iters=20, soft_round=sr))
        got[sr] = torch.cat([y.detach().flatten() for y in fitted.latents])
    assert fit.FitConfig(lmbda=0.003, iters=1).soft_round is None
    assert not torch.equal(got[None], got[(0.35, 0.08)])
    assert fit._soft(fit.FitConfig(lmbda=1, iters=1, soft_round=(0.4, 0.1)), 1.0) == pytest.approx((0.1, 0.15))


def test_command_line_options(tmp_path, capsys):
    from progcodec import cli

    src = tmp_path / "in.png"
    photo(32, 24).save(src)
    out = tmp_path / "out.pcs"
    assert cli.main(["encode", str(src), str(out), "--model", "overfit", "--effort", "fast", "--iters", "8"]) == 0
    assert progcodec.info(out.read_bytes()).model == "overfit"
    assert cli.main(["encode", str(src), str(out), "--model", "overfit", "--lmbda", "0.01", "--iters", "4"]) == 0
    assert progcodec.info(out.read_bytes()).rate == "custom"
    assert cli.main(["encode", str(src), str(out), "--model", "overfit", "--cold-start", "--iters", "4"]) == 0
    assert cli.main(["encode", str(src), str(out), "--model", "overfit", "--latent-init", "analysis", "--iters", "4"]) == 0
    start = progcodec.encode(photo(32, 24), model="overfit", iters=4, latent_init="analysis")
    assert out.read_bytes() == start != progcodec.encode(photo(32, 24), model="overfit", iters=4)
    with pytest.raises(SystemExit) as exc:
        cli.main(["encode", str(src), str(tmp_path / "p.pcs"), "--model", "pyramid", "--cold-start"])
    assert exc.value.code == 2 and "no option --cold-start" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["encode", str(src), str(tmp_path / "p.pcs"), "--model", "pyramid", "--effort", "fast"])
    assert exc.value.code == 2 and "no option --effort" in capsys.readouterr().err
    assert cli.main(["decode", str(out), str(tmp_path / "preview.png"), "--layers", "3"]) == 0


def test_warm_start_networks_are_shipped_and_checked(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    init = progcodec.registry.load("overfit").init_networks()
    fresh = fit.Fitted(8, 8, fit.FitConfig(lmbda=0.01, iters=1))
    assert set(init) == {f"arm.{k}" for k in fresh.arm.state_dict()} | {f"synth.{k}" for k in fresh.synth.state_dict()}
    monkeypatch.setattr(plugin, "WEIGHTS", tmp_path)
    with pytest.raises(progcodec.errors.PluginLoadError, match="train_init"):
        plugin.Overfit().init_networks()
    save_file({**init, "synth.c1.weight": torch.zeros(5, 7, 1, 1)}, str(tmp_path / "init.safetensors"))
    with pytest.raises(progcodec.errors.WeightsMismatchError, match=r"synth.c1.weight is \(5, 7, 1, 1\)"):
        plugin.Overfit().init_networks()
    data = progcodec.encode(photo(24, 16), model="overfit", iters=5, warm_start=False)  # cold start needs no file
    assert progcodec.decode(data).tensor.shape == (3, 16, 24)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 14), st.integers(0, 2**31 - 1))
def test_weights_relative_to_the_warm_start_round_trip_exactly(shift, seed):
    """Coded differences plus the base at the same step give back exactly the weights' integers,
    and the 'keep the base' candidate codes nothing but zeros."""
    g = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(16, 9, generator=g), torch.randn(16, generator=g) * 3]
    base = [t + 0.01 * torch.randn(t.shape, generator=g) for t in tensors]
    (ints, coded), (kept, zeros) = quant.candidates(tensors, base, shift)
    b = quant.to_ints(base, shift)
    assert all(np.array_equal(c + j, i) for c, j, i in zip(coded, b, ints))
    assert all(np.array_equal(k, j) and not z.any() for k, j, z in zip(kept, b, zeros))
    assert quant.weight_bits(zeros) < 0.1 * quant.weight_bits(ints)
    [(alone, same)] = quant.candidates(tensors, None, shift)   # no warm start: the integers themselves
    assert all(np.array_equal(a, i) and np.array_equal(s, i) for a, s, i in zip(alone, same, ints))


def test_network_learning_rate_follows_the_rate_point():
    """0.01 up to rate medium (unchanged there), 0.03 from rate high on, monotone between."""
    from progcodec_plugins.overfit.fit import net_lr_for
    from progcodec_plugins.overfit.plugin import LAMBDAS

    assert [net_lr_for(LAMBDAS[r]) for r in ("lowest", "low", "medium")] == [0.01] * 3
    assert net_lr_for(LAMBDAS["high"]) == pytest.approx(0.03) and net_lr_for(LAMBDAS["highest"]) == pytest.approx(0.03)
    between = [net_lr_for(l) for l in (0.0028, 0.002, 0.0014)]
    assert 0.01 < between[0] < between[1] < between[2] < 0.03


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (2, 9), (37, 53)])
def test_analysis_network_gives_every_grid_its_size(size):
    net = progcodec.registry.load("overfit").analysis_net()
    ys = net(torch.rand(1, 3, *size), plugin.LAMBDAS["low"])
    assert [tuple(y.shape[-2:]) for y in ys] == nets.grid_sizes(*size)
    assert all(torch.isfinite(y).all() for y in ys)


def test_starting_latents_fit_faster():
    """From the analysis network's latents a short fit ends at a lower loss than from zeros."""
    x = torch.from_numpy(np.array(photo(96, 64))).permute(2, 0, 1)[None].float() / 255
    model = progcodec.registry.load("overfit")
    cfg = fit.FitConfig(lmbda=plugin.LAMBDAS["medium"], iters=20)
    start = plugin.start_latents(model.analysis_net(), x, cfg.lmbda)
    loss = {name: fit.fit(x, cfg, init=model.init_networks(), latents=ys)[1][-1]["loss"]
            for name, ys in (("zero", None), ("analysis", start))}
    assert loss["analysis"] < 0.9 * loss["zero"], loss  # measured: 0.78


def test_analysis_network_is_shipped_and_checked(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    with pytest.raises(ValueError, match="latent_init"):
        progcodec.encode(photo(24, 16), model="overfit", iters=2, latent_init="random")
    monkeypatch.setattr(plugin, "WEIGHTS", tmp_path)
    with pytest.raises(progcodec.errors.PluginLoadError, match="train_analysis"):
        plugin.Overfit().analysis_net()
    save_file({"stem.weight": torch.zeros(3, 4, 3, 3)}, str(tmp_path / plugin.ANALYSIS))
    with pytest.raises(progcodec.errors.WeightsMismatchError, match=plugin.ANALYSIS):
        plugin.Overfit().analysis_net()


def test_analysis_network_was_trained_for_the_shipped_warm_start():
    """Retrain it (train_analysis.py) whenever init.safetensors changes."""
    from safetensors import safe_open

    from progcodec.plugin import file_digest

    with safe_open(str(plugin.WEIGHTS / plugin.ANALYSIS), "pt") as f:
        assert f.metadata()["init_digest"] == file_digest(plugin.WEIGHTS / plugin.INIT)
