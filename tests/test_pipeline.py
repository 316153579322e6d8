"""End to end through the pyramid plugin: encode, streaming decode, errors a user meets."""
import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import progcodec
from progcodec import bitstream, registry
from progcodec.image import psnr, to_tensor
from progcodec_plugins.pyramid import Pyramid

from conftest import smooth_image


def steps_of(chunks, **kw):
    return list(progcodec.decode_stream(chunks, **kw))


def test_layers_refine_the_image(photo, stream):
    steps = steps_of([stream])
    x = to_tensor(photo)[0]
    assert [s.layer for s in steps] == [1, 2, 3, 4, 5]
    assert all(s.layers_total == 5 and s.image.size == photo.size for s in steps)
    quality = [psnr(s.tensor, x) for s in steps]
    assert all(b > a - 0.05 for a, b in zip(quality, quality[1:])), quality
    assert quality[-1] > quality[0] + 8
    assert [s.bytes_consumed for s in steps] == progcodec.info(stream).layer_ends()
    assert steps[-1].bytes_consumed == len(stream)


@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from(Pyramid.rates))
def test_any_size_roundtrips_to_the_right_size(w, h, rate):
    img = smooth_image(w, h, seed=w * 41 + h)
    data = progcodec.encode(img, rate=rate)
    assert progcodec.encode(img, rate=rate) == data  # deterministic
    steps = steps_of([data])
    assert steps[-1].image.size == (w, h) and steps[-1].tensor.shape == (3, h, w)


@given(st.lists(st.integers(0, 3000), max_size=12))
def test_decoding_any_chunking_equals_one_shot(stream, cuts):
    cuts = sorted(c for c in set(cuts) if c < len(stream))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    ref = steps_of([stream])
    got = steps_of(iter(chunks))
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert a.layer == b.layer and a.bytes_consumed == b.bytes_consumed
        assert torch.equal(a.tensor, b.tensor)


def test_every_prefix_decodes_its_layers_then_raises(stream):
    ends = progcodec.info(stream).layer_ends()
    for cut in sorted({1, 10, ends[0] - 1, ends[0], ends[0] + 1, ends[2], len(stream) - 1}):
        got = []
        with pytest.raises(progcodec.TruncatedError):
            for step in progcodec.decode_stream([stream[:cut]]):
                got.append(step.layer)
        assert got == [k + 1 for k, e in enumerate(ends) if e <= cut]


def test_asking_for_fewer_layers_needs_only_their_bytes(stream):
    ends = progcodec.info(stream).layer_ends()
    full = steps_of([stream])
    part = progcodec.decode(stream[: ends[1]], layers=2)
    assert part.layer == 2 and torch.equal(part.tensor, full[1].tensor)
    assert progcodec.decode(stream, layers=99).layer == 5


def test_reader_stops_consuming_once_done(stream):
    consumed = []

    def chunks():
        for i in range(0, len(stream), 16):
            consumed.append(i)
            yield stream[i : i + 16]
    steps_of(chunks(), layers=1)
    assert consumed[-1] < progcodec.info(stream).layer_ends()[1]


def test_truncated_file_is_complete_and_decodes_the_same(stream):
    cut = progcodec.truncate(stream, layers=3)
    assert progcodec.info(cut).layers == 3
    assert torch.equal(progcodec.decode(cut).tensor, steps_of([stream])[2].tensor)


def test_corruption_yields_intact_layers_then_error(stream):
    ends = progcodec.info(stream).layer_ends()
    bad = bytearray(stream)
    bad[ends[1] + 20] ^= 0x40  # inside layer 3
    got = []
    with pytest.raises(progcodec.ChecksumError):
        for step in progcodec.decode_stream([bytes(bad)]):
            got.append(step.layer)
    assert got == [1, 2]


def test_async_variant_matches(stream):
    async def chunks():
        for i in range(0, len(stream), 100):
            await asyncio.sleep(0)
            yield stream[i : i + 100]

    async def run():
        return [s async for s in progcodec.adecode_stream(chunks())]
    got = asyncio.run(run())
    ref = steps_of([stream])
    assert [s.layer for s in got] == [1, 2, 3, 4, 5]
    assert all(torch.equal(a.tensor, b.tensor) for a, b in zip(got, ref))


def _rewrite_header(stream: bytes, **changes) -> bytes:
    header, frames = bitstream.read(stream)
    return bitstream.write(replace(header, **changes), [(f.payload, f.prior_check) for f in frames])


def test_unknown_model_and_other_weights_are_clear_errors(stream):
    with pytest.raises(progcodec.UnknownModelError, match="no-such-model"):
        progcodec.decode(_rewrite_header(stream, model="no-such-model"))
    with pytest.raises(progcodec.WeightsMismatchError, match="deadbeef"):
        progcodec.decode(_rewrite_header(stream, weights="deadbeef"))
    with pytest.raises(progcodec.UnknownModelError):
        progcodec.encode(smooth_image(8, 8), model="no-such-model")
    with pytest.raises(progcodec.UnknownModelError):
        progcodec.decode(_rewrite_header(stream, rate="ultra"))


class _Drifted(Pyramid):
    """A model whose prior differs slightly from the encoder's (like other hardware would)."""

    def decoder(self, height, width, side):
        state = super().decoder(height, width, side)
        state.scales = state.scales * 1.5
        return state


def test_prior_mismatch_is_reported_not_decoded(stream):
    registry.unregister("pyramid")
    registry.register(_Drifted, "pyramid")
    try:
        with pytest.raises(progcodec.PriorMismatchError):
            progcodec.decode(stream)
    finally:
        registry.unregister("pyramid")


def test_hostile_side_information_is_a_bitstream_error(stream):
    packed, codec = bitstream.pack_side({"scales": "nonsense"})
    with pytest.raises(progcodec.BitstreamError, match="side information"):
        progcodec.decode(_rewrite_header(stream, side=packed, extra={"side_codec": codec}))


def test_absurd_input_image_is_refused(monkeypatch):
    monkeypatch.setattr(progcodec.LIMITS, "max_pixels", 1000)
    with pytest.raises(progcodec.LimitError):
        progcodec.encode(smooth_image(40, 40))


def test_grayscale_and_rgba_inputs_keep_their_mode(photo):
    """Issue 16: L stays L, RGBA stays RGBA (alpha losslessly), palette images come back RGB."""
    for mode, back in (("L", "L"), ("RGBA", "RGBA"), ("P", "RGB"), ("LA", "LA")):
        out = progcodec.decode(progcodec.encode(photo.convert(mode)))
        assert out.image.mode == back and out.image.size == photo.size


def test_step_fields(stream):
    step = steps_of([stream])[0]
    assert isinstance(step.tensor, torch.Tensor) and step.tensor.dtype == torch.float32
    assert 0 <= step.tensor.min() and step.tensor.max() <= 1
    assert step.bpp == pytest.approx(8 * step.bytes_consumed / (96 * 64))
    assert np.asarray(step.image).shape == (64, 96, 3)


def test_latest_only_skips_stale_renders(stream):
    ends = progcodec.info(stream).layer_ends()
    chunks = [stream[: ends[2]], stream[ends[2] :]]
    got = list(progcodec.decode_stream(chunks, latest_only=True))
    assert [s.layer for s in got] == [3, 5]
    ref = steps_of([stream])
    assert torch.equal(got[0].tensor, ref[2].tensor) and torch.equal(got[1].tensor, ref[4].tensor)


@pytest.mark.parametrize("which", ["pyramid", "overfit"])
def test_latest_only_delivers_the_layers_before_a_failing_one(stream, which):
    """Was: with layers 1-3 in one chunk and layer 3 failing its prior check, latest_only had
    rendered neither 1 nor 2 and returned nothing; now layer 2 is delivered, then the error."""
    data = stream if which == "pyramid" else (Path(__file__).parent / "data/overfit_v2_64x48.pcs").read_bytes()
    header, frames = bitstream.read(data)
    fr = [(f.payload, f.prior_check) for f in frames]
    fr[2] = (fr[2][0], fr[2][1] ^ 1)  # layer 3 (for overfit: 2 coding steps, the first pushed)
    bad = bitstream.write(header, fr)
    dec = progcodec.StreamDecoder(latest_only=True)
    got = dec.feed(bad)
    assert [s.layer for s in got] == [2]
    assert torch.equal(got[0].tensor, steps_of([data])[1].tensor)
    with pytest.raises(progcodec.PriorMismatchError):
        dec.feed(b"")
