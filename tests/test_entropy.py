"""Lossless round-trips of the entropy layer for any symbols and parameters."""
import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from progcodec import entropy as E
from progcodec.errors import FormatError, PriorMismatchError

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
    import torch

    def ndtr(v):
        return torch.special.ndtr(torch.from_numpy(v)).numpy()

    rng = np.random.default_rng(0)
    scales = np.exp(rng.uniform(np.log(0.3), np.log(20), 100_000))
    x = np.round(rng.normal(0, scales)).astype(np.int64)
    payload, _ = E.encode_layer([x], [E.Gaussian(scales)])
    p = ndtr((x + 0.5) / scales) - ndtr((x - 0.5) / scales)
    ideal_bytes = -np.log2(p).sum() / 8
    assert len(payload) < ideal_bytes * 1.01


TABLES_DIGEST = "b0351fe1fdcd5c70"


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
