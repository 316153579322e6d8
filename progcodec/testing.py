"""Conformance kit for model plugins: one call checks a plugin against the contract.

In a plugin's own tests::

    from progcodec.testing import check_plugin

    def test_conformance():
        check_plugin("my-model")          # every rate point; raises AssertionError on a defect

Checks (hypothesis drives the image sizes, chunk splits and corruptions; needs the
``test`` extra): lossless symbol round-trip through the bitstream, chunk-split invariance,
every prefix decodes to an image of the right size and range, determinism (same bytes
twice), clear errors on truncation and corruption, and that the prior is a pure function of
the decoded layers.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from . import bitstream, codec, entropy, errors, registry
from .image import pad, to_tensor
from .stream import StreamDecoder, decode_stream


def sample_image(width: int, height: int, seed: int = 0, channels: int = 3) -> Image.Image:
    """A deterministic photo-like image: smooth colour gradients plus mild texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = [128 + 90 * np.sin(xx / (7 + 5 * c) + yy / 11 + c + seed) * np.cos(yy / (9 + 3 * c)) for c in range(3)]
    arr = np.clip(np.stack(planes, -1) + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    return img if channels == 3 else img.convert("L")


def _steps(chunks, **kw):
    return list(decode_stream(chunks, **kw))


def check_roundtrip(name: str, rate: str | None, img: Image.Image) -> bytes:
    """Symbols survive the bitstream exactly; encoding is deterministic; every layer renders."""
    model = registry.load(name, rate)
    data = codec.encode(img, model=name, rate=rate)
    assert codec.encode(img, model=name, rate=rate) == data, f"{name}: encoding the same image twice differs"
    with torch.inference_mode():
        analysis = model.analyze(pad(to_tensor(img, model.channels), model.stride))
    dec = StreamDecoder()
    steps = dec.feed(data)
    dec.close()
    assert len(dec.symbols) == model.layers == len(steps), f"{name}: expected {model.layers} layers"
    for k, (sent, got) in enumerate(zip(analysis.symbols, dec.symbols)):
        assert same_symbols(sent, got), f"{name}: layer {k + 1} symbols changed in the bitstream"
    for step in steps:
        t = step.tensor
        assert t.shape == (model.channels, img.height, img.width), f"{name}: layer {step.layer} has shape {t.shape}"
        assert torch.isfinite(t).all() and t.min() >= 0 and t.max() <= 1, f"{name}: layer {step.layer} out of [0,1]"
        assert step.image.size == img.size
    return data


def same_symbols(a, b) -> bool:
    """Equal symbol arrays, nested as one layer's parts (or its steps' parts) are."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(same_symbols(x, y) for x, y in zip(a, b)))
    return np.array_equal(np.asarray(a), np.asarray(b))


def check_prior_is_pure(name: str, rate: str | None, data: bytes) -> None:
    """Two fresh decoders fed the same layers build identical priors, whatever else is called."""
    model = registry.load(name, rate)
    header, frames = bitstream.read(data)
    dec = StreamDecoder(render=False)
    dec.feed(data)
    h, w = pad(torch.zeros(1, 1, header.height, header.width), model.stride).shape[-2:]
    side = bitstream.unpack_side(header)
    a, b = model.decoder(h, w, side), model.decoder(h, w, side)
    with torch.inference_mode():
        for k, symbols in enumerate(dec.symbols):
            n = a.coding_steps(k)
            stored = entropy.LayerReader(frames[k].payload, frames[k].prior_check, n).checks
            for s, part in enumerate([symbols] if n == 1 else symbols):
                first = entropy.prior_check(a.step_prior(k, s))
                if k or s:
                    b.image()  # rendering must not disturb the state
                assert entropy.prior_check(a.step_prior(k, s)) == first, \
                    f"{name}: prior of layer {k + 1} step {s + 1} changes when computed twice"
                assert entropy.prior_check(b.step_prior(k, s)) == first == stored[s], \
                    f"{name}: prior of layer {k + 1} step {s + 1} is not a pure function of the decoded layers"
                a.step_push(k, s, part)
                b.step_push(k, s, part)


def check_chunking(data: bytes, cuts: list[int]) -> None:
    """Any split of the stream gives exactly the one-shot result."""
    cuts = sorted({c % len(data) for c in cuts})
    chunks = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)])]
    ref, got = _steps([data]), _steps(iter(chunks))
    assert [s.layer for s in got] == [s.layer for s in ref], "chunking changed the layers decoded"
    for a, b in zip(got, ref):
        assert torch.equal(a.tensor, b.tensor), f"chunking changed the image of layer {a.layer}"


def check_prefixes(data: bytes, max_cuts: int | None = None) -> None:
    """Every cut yields the complete layers it holds, then a TruncatedError (unless asked for fewer).

    ``max_cuts``: check only that many layer boundaries, spread evenly and always including the
    first and the last (each cut decodes from scratch, so all of them cost O(layers²) decodes).
    """
    ends = codec.info(data).layer_ends()
    ref = _steps([data])
    picked = range(len(ends) - 1)
    if max_cuts is not None and len(picked) > max_cuts:
        picked = sorted({round(i * (len(picked) - 1) / max(1, max_cuts - 1)) for i in range(max_cuts)})
    for k in picked:
        end = ends[k]
        for cut in (end, end + 1):
            got = []
            try:
                for step in decode_stream([data[:cut]]):
                    got.append(step)
            except errors.TruncatedError:
                pass
            else:
                raise AssertionError(f"a stream cut at byte {cut} decoded without a TruncatedError")
            assert [s.layer for s in got] == list(range(1, k + 2))
            assert torch.equal(got[-1].tensor, ref[k].tensor)
        part = _steps([data[:end]], layers=k + 1)
        assert len(part) == k + 1 and torch.equal(part[-1].tensor, ref[k].tensor)


def check_corruption(data: bytes, pos: int, xor: int) -> None:
    """A damaged byte gives at most the intact earlier layers, then a BitstreamError."""
    pos %= len(data)
    bad = bytearray(data)
    bad[pos] ^= (xor % 255) + 1
    ref, got = _steps([data]), []
    try:
        for step in decode_stream([bytes(bad)]):
            got.append(step)
    except errors.BitstreamError:
        pass
    else:
        raise AssertionError(f"flipping byte {pos} went unnoticed")
    intact = sum(end <= pos for end in codec.info(data).layer_ends())
    assert len(got) <= intact, f"byte {pos} is in layer {intact + 1} but {len(got)} layers were shown"
    for a, b in zip(got, ref):
        assert torch.equal(a.tensor, b.tensor)


def check_plugin(name: str, rates=None, max_examples: int = 5, max_side: int | None = None,
                 max_cuts: int | None = None) -> None:
    """Run every check on plugin ``name`` (all its rate points unless ``rates`` is given).

    ``max_side`` bounds the test images, ``max_cuts`` the layer boundaries of :func:`check_prefixes`
    (default: every one); smaller values make a quick run for models with many layers.
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    cls = registry.get_class(name)
    stride = cls.stride
    side = max_side or max(2 * stride, 48)
    cfg = settings(max_examples=max_examples, deadline=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))
    for rate in rates or cls.rates:
        data = check_roundtrip(name, rate, sample_image(side + 3, side - 5 if side > 8 else side, channels=cls.channels))
        check_prior_is_pure(name, rate, data)
        check_prefixes(data, max_cuts)

        @cfg
        @given(st.integers(1, side), st.integers(1, side), st.integers(0, 2**16))
        def sizes(w, h, seed):
            check_roundtrip(name, rate, sample_image(w, h, seed, cls.channels))

        @cfg
        @given(st.lists(st.integers(0, len(data)), max_size=10))
        def chunking(cuts):
            check_chunking(data, cuts)

        @cfg
        @given(st.integers(0, len(data) - 1), st.integers(0, 254))
        def corruption(pos, xor):
            check_corruption(data, pos, xor)

        sizes()
        chunking()
        corruption()
