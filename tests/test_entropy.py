"""Lossless round-trips of the entropy layer for any symbols and parameters."""
import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from progcodec import entropy as E
from progcodec.errors import FormatError, PriorMismatchError


def _ndtr(v):
    """The standard normal CDF (torch's, as the tests' reference)."""
    import torch

    return torch.special.ndtr(torch.from_numpy(v)).numpy()


shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=12)
extreme_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                           st.sampled_from([0.0, -1.0, 1e-30, 0.11, 64.0, 1e30]))


@given(data=st.data(), shape=shapes)
def test_gaussian_roundtrip_any_symbols_and_scales(data, shape):
    scales = data.draw(hnp.arrays(np.float64, shape, elements=extreme_floats))
    symbols = data.draw(hnp.arrays(np.int64, shape, elements=st.one_of(
        st.integers(-3, 3), st.integers(-(2**31) + 1, 2**31 - 1))))
    payload, check = E.encode_layer([symbols], [E.Gaussian(scales)])
    (out,) = E.decode_layer(payload, [E.Gaussian(scales)], check)
    assert out.dtype == np.int32 and out.shape == symbols.shape
    np.testing.assert_array_equal(out, symbols)


@given(data=st.data(), shape=shapes)
def test_gaussian_with_means_roundtrip_any_symbols_means_and_scales(data, shape):
    scales = data.draw(hnp.arrays(np.float64, shape, elements=extreme_floats))
    means = data.draw(hnp.arrays(np.float64, shape, elements=st.one_of(
        extreme_floats, st.floats(-40, 40), st.sampled_from([-0.5, -0.4375, 0.4375, 0.5, -2.0**31, 2.0**31]))))
    symbols = data.draw(hnp.arrays(np.int64, shape, elements=st.one_of(
        st.integers(-3, 3), st.integers(-(2**31) + 1, 2**31 - 1))))
    payload, check = E.encode_layer([symbols], [E.Gaussian(scales, means)])
    (out,) = E.decode_layer(payload, [E.Gaussian(scales, means)], check)
    assert out.dtype == np.int32 and out.shape == symbols.shape
    np.testing.assert_array_equal(out, symbols)


def test_mean_parts_snap_to_eighths_with_the_fraction_in_range():
    centre, k = E.mean_parts(np.array([0.0, 0.06, 0.07, 0.49, 0.5, -0.5, -0.51, 3.3, -7.7, np.nan, np.inf, -np.inf]))
    np.testing.assert_array_equal(centre + k / 8, [0, 0, 0.125, 0.5, 0.5, -0.5, -0.5, 3.25, -7.75, 0, 2.0**30, -2.0**30])
    assert k.min() >= -4 and k.max() <= 3


def test_means_cost_what_the_ideal_code_costs_and_change_the_prior_check():
    """Coded under its mean, a symbol costs what the discretized Gaussian centred there says
    (within 1.5%), clearly less than relative to the rounded mean; a mean moved by 1/8 is
    another prior, one moved within its snap is the same."""
    rng = np.random.default_rng(3)
    n = 60_000
    scales = np.exp(rng.uniform(np.log(0.15), np.log(4), n))
    means = np.round(rng.uniform(-20, 20, n) * 8) / 8 + rng.uniform(-0.05, 0.05, n)  # 0.0125 off a snap edge
    x = np.round(rng.normal(means, scales)).astype(np.int64)
    payload, check = E.encode_layer([x], [E.Gaussian(scales, means)])
    snapped = np.round(means * 8) / 8
    p = _ndtr((x + 0.5 - snapped) / scales) - _ndtr((x - 0.5 - snapped) / scales)
    assert len(payload) < -np.log2(p).sum() / 8 * 1.015
    rounded, _ = E.encode_layer([x - np.round(means).astype(np.int64)], [E.Gaussian(scales)])
    assert len(payload) < 0.95 * len(rounded)
    assert E.decode_layer(payload, [E.Gaussian(scales, means + 0.01)], check)[0].tolist() == x.tolist()
    with pytest.raises(PriorMismatchError):
        E.decode_layer(payload, [E.Gaussian(scales, means + 0.125)], check)
    with pytest.raises(PriorMismatchError):  # without means: another kind of prior
        E.decode_layer(payload, [E.Gaussian(scales)], check)


@given(data=st.data(), shape=shapes, k=st.integers(2, 300), shared=st.booleans())
def test_categorical_roundtrip_with_zero_and_extreme_probs(data, shape, k, shared):
    pshape = (k,) if shared else shape + (k,)
    probs = data.draw(hnp.arrays(np.float64, pshape, elements=st.one_of(
        st.floats(0, 1), st.sampled_from([0.0, 1e-300, 1e300, float("nan")]))))
    symbols = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, k - 1)))
    params = E.Categorical(probs, shape=shape if shared else None)
    payload, check = E.encode_layer([symbols], [params])
    (out,) = E.decode_layer(payload, [params], check)
    np.testing.assert_array_equal(out, symbols)


def test_mixed_parts_in_one_layer():
    rng = np.random.default_rng(1)
    g = rng.integers(-20, 20, (4, 5))
    c = rng.integers(0, 7, (3,))
    params = [E.Gaussian(np.full((4, 5), 2.0)), E.Categorical(np.ones(7), shape=(3,))]
    payload, check = E.encode_layer([g, c], params)
    out = E.decode_layer(payload, params, check)
    np.testing.assert_array_equal(out[0], g)
    np.testing.assert_array_equal(out[1], c)


def test_prior_mismatch_is_detected():
    sym = np.arange(-5, 5)
    payload, check = E.encode_layer([sym], [E.Gaussian(np.full(10, 3.0))])
    with pytest.raises(PriorMismatchError):
        E.decode_layer(payload, [E.Gaussian(np.full(10, 5.0))], check)


def test_malformed_payload_is_a_bitstream_error():
    with pytest.raises(FormatError):
        E.decode_layer(b"\x01\x02\x03", [E.Gaussian(np.ones(4))])


def test_symbols_outside_categorical_alphabet_are_refused():
    with pytest.raises(ValueError):
        E.encode_layer([np.array([0, 5])], [E.Categorical(np.ones(5), shape=(2,))])


def test_scale_table_snapping_is_monotone_and_bounded():
    s = np.exp(np.linspace(-10, 10, 1000))
    idx = E.scale_index(s)
    assert idx.min() == 0 and idx.max() == E.SCALE_LEVELS - 1
    assert (np.diff(idx.astype(int)) >= 0).all()
    np.testing.assert_array_equal(E.scale_index(E.SCALE_TABLE), np.arange(E.SCALE_LEVELS))


def test_integer_tables_are_the_documented_ones():
    """Encoder and decoder must build the same integers on every platform (mpmath, not libm)."""
    h = hashlib.sha256()
    for i in range(E.SCALE_LEVELS):
        half, freqs = E.gaussian_table(i)
        assert freqs.min() >= 1 and freqs.sum() <= 1 << E.PRECISION and len(freqs) == 2 * half + 2
        h.update(freqs.astype("<i8").tobytes())
    assert h.hexdigest()[:16] == TABLES_DIGEST


def test_mean_tables_are_the_documented_ones():
    h = hashlib.sha256()
    for f in range(1, E.FRACTIONS):
        for i in range(E.SCALE_LEVELS):
            half, freqs = E.gaussian_table(i, f)
            assert freqs.min() >= 1 and freqs.sum() <= 1 << E.PRECISION and len(freqs) == 2 * half + 2
            h.update(freqs.astype("<i8").tobytes())
    assert h.hexdigest()[:16] == MEAN_TABLES_DIGEST


def test_shipped_mean_tables_are_the_computed_ones():
    """A sample of the entries (every one with PROGCODEC_EXHAUSTIVE=1: ~2 s of mpmath); a table
    centred on 4/8 is its own mirror image."""
    import os

    every = os.environ.get("PROGCODEC_EXHAUSTIVE", "") not in ("", "0")
    assert E._stored(E.MEAN_TABLES) is not None
    for f in range(1, E.FRACTIONS):
        for i in range(E.SCALE_LEVELS) if every else (0, 1, 17, 40, E.SCALE_LEVELS - 1):
            half, freqs = E.compute_table(i, f)
            got = E.gaussian_table(i, f)
            assert got[0] == half and np.array_equal(got[1], freqs), (i, f)
    half, freqs = E.gaussian_table(20, E.MEAN_STEPS // 2)
    inner = freqs[1 : 2 * half + 1]  # values 1 - L .. L: symmetric about 1/2
    np.testing.assert_array_equal(inner, inner[::-1])


def test_without_the_mean_tables_file_they_are_computed(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "MEAN_TABLES", tmp_path / "missing.npz")
    E._stored.cache_clear()
    E.gaussian_table.cache_clear()
    try:
        assert E._stored(E.MEAN_TABLES) is None
        half, freqs = E.gaussian_table(3, 2)
        assert half == E.compute_table(3, 2)[0] and np.array_equal(freqs, E.compute_table(3, 2)[1])
    finally:
        E._stored.cache_clear()
        E.gaussian_table.cache_clear()


def test_shipped_tables_are_the_computed_ones(tmp_path, monkeypatch):
    """The file a fresh process reads holds exactly what mpmath computes; without it (or for
    another coder) the tables are computed."""
    assert E._stored() is not None
    for i in range(E.SCALE_LEVELS):
        half, freqs = E.compute_table(i)
        got = E.gaussian_table(i)
        assert got[0] == half and np.array_equal(got[1], freqs), i
    shipped = E.TABLES.read_bytes()
    with np.load(E.TABLES) as f:
        good = dict(f)
    wrong = dict(good, freqs=good["freqs"].copy())
    wrong["freqs"][0] = 0  # a frequency every symbol needs
    for name, content in (("missing", None), ("other-coder", dict(good, coder=np.array("other"))),
                          ("malformed", wrong), ("cut", shipped[: len(shipped) // 2]), ("flipped", None)):
        path = tmp_path / f"{name}.npz"
        if isinstance(content, dict):
            np.savez(path, **content)
        elif content is not None:
            path.write_bytes(content)
        elif name == "flipped":
            path.write_bytes(shipped[:100] + bytes([shipped[100] ^ 0xFF]) + shipped[101:])
        monkeypatch.setattr(E, "TABLES", path)
        E._stored.cache_clear()
        assert E._stored() is None, name
    E._stored.cache_clear()


def test_rate_is_close_to_ideal():
    rng = np.random.default_rng(0)
    scales = np.exp(rng.uniform(np.log(0.3), np.log(20), 100_000))
    x = np.round(rng.normal(0, scales)).astype(np.int64)
    payload, _ = E.encode_layer([x], [E.Gaussian(scales)])
    p = _ndtr((x + 0.5) / scales) - _ndtr((x - 0.5) / scales)
    ideal_bytes = -np.log2(p).sum() / 8
    assert len(payload) < ideal_bytes * 1.01


TABLES_DIGEST = "b0351fe1fdcd5c70"
MEAN_TABLES_DIGEST = "e904d691d0995ea0"


def test_non_contiguous_probabilities_are_coded_at_their_true_rate():
    """constriction ignores numpy strides; a transposed table must still cost -log2 p."""
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (16, 40, 32))  # channels first, as a network outputs them
    probs = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    probs_t = probs.transpose(1, 2, 0)  # (40, 32, 16): the category axis is strided
    assert not probs_t.flags.c_contiguous
    symbols = np.array([[rng.choice(16, p=probs_t[i, j]) for j in range(32)] for i in range(40)])
    payload, check = E.encode_layer([symbols], [E.Categorical(probs_t)])
    (out,) = E.decode_layer(payload, [E.Categorical(np.ascontiguousarray(probs_t))], check)
    np.testing.assert_array_equal(out, symbols)
    ideal = -np.log2(np.take_along_axis(probs_t, symbols[..., None], -1)).sum() / 8
    assert len(payload) < ideal * 1.05 + 16
