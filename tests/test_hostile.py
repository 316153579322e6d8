"""Issue 17: hostile input. Each test is one reproduction from the issue, made small and fast."""
import io
import threading
import time
import zlib
from dataclasses import replace

import msgpack
import numpy as np
import pytest
import torch
import zstandard
from PIL import Image, ImageFile

import progcodec
from conftest import smooth_image
from progcodec import Limits, bitstream, entropy
from progcodec.image import padded_size
from progcodec.stream import StreamDecoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pyr():
    return progcodec.encode(smooth_image(40, 24), model="pyramid", rate="low")


def restream(data: bytes, frames=None, **changes) -> bytes:
    """Re-write a stream with header fields changed (CRCs recomputed)."""
    header, old = bitstream.read(data)
    frames = [(f.payload, f.prior_check) for f in old] if frames is None else frames
    return bitstream.write(replace(header, stored_size=None, **changes), frames)


def crafted(model: str, w: int, h: int, payload: bytes) -> bytes:
    """Layer 1 is ``payload`` with the prior check the decoder computes (an attacker can compute
    it: the first prior needs no data); later layers are 4 zero bytes."""
    m = progcodec.registry.load(model)
    small = progcodec.encode(smooth_image(24, 16).convert("L" if m.channels == 1 else "RGB"), model=model)
    header, _ = bitstream.read(small)
    ph, pw = padded_size(h, w, m.stride)
    with torch.inference_mode():
        check = entropy.prior_check(m.decoder(ph, pw, bitstream.unpack_side(header)).prior(0))
    frames = [(payload, check)] + [(bytes(4), 0)] * (header.layers - 1)
    return bitstream.write(replace(header, width=w, height=h, stored_size=None), frames)


# -- item 1: payload over-read, shapes in the prior check, memory budget ---------------------------
def test_coder_refuses_reading_past_the_payload():
    rng = np.random.default_rng(0)
    sym = rng.integers(-3, 4, size=200)
    payload, check = entropy.encode_layer([sym], [entropy.Gaussian(np.full(200, 2.0))])
    more = [entropy.Gaussian(np.full(200_000, 2.0))]
    with pytest.raises(progcodec.FormatError):  # over-read (or constriction's own refusal)
        entropy.decode_layer(payload, more)
    t = time.perf_counter()
    with pytest.raises(progcodec.FormatError, match="ends before its symbols"):  # zeros: the old bomb
        entropy.decode_layer(bytes(4), [entropy.Gaussian(np.full(4_000_000, 0.2))])
    assert time.perf_counter() - t < 10  # stops after the first chunk (loaded 2-core machine), not after 4M symbols
    with pytest.raises(progcodec.FormatError, match="ends before its symbols"):
        entropy.decode_layer(bytes(8), [entropy.Categorical(np.full(16, 1 / 16), shape=(100_000,))])
    with pytest.raises(progcodec.FormatError, match="does not end with its symbols"):
        entropy.decode_layer(payload + b"\x12\x34\x56\x78" * 3, [entropy.Gaussian(np.full(200, 2.0))])
    assert (entropy.decode_layer(payload, [entropy.Gaussian(np.full(200, 2.0))], check)[0] == sym).all()


@pytest.mark.parametrize("model", ["pyramid", "vq-vae", "pq-mim"])
def test_small_stream_declaring_a_large_image_is_refused_early(model):
    """Was: 300-500 B streams decoded a full-size image from zeros (GBs of RSS, minutes)."""
    for payload in (bytes(4), bytes(np.random.default_rng(1).integers(0, 256, 256, dtype=np.uint8))):
        data = crafted(model, 256, 256, payload)
        assert len(data) < 1024
        t = time.perf_counter()
        with pytest.raises(progcodec.BitstreamError) as info:
            list(progcodec.decode_stream([data]))
        assert isinstance(info.value, (progcodec.FormatError, progcodec.PriorMismatchError))
        assert time.perf_counter() - t < 20


@pytest.mark.parametrize("model", ["vq-vae", "hqa"])
def test_prior_check_covers_shared_table_shapes(model):
    """Was: rewriting width/height of a vq-vae/hqa stream passed layer 1 (shared tables)."""
    m = progcodec.registry.load(model)
    data = progcodec.encode(smooth_image(64, 48), model=model)
    bad = restream(data, width=64 + m.stride, height=48)
    with pytest.raises(progcodec.PriorMismatchError):
        list(progcodec.decode_stream([bad]))


def test_streams_with_the_shapeless_prior_check_still_decode():
    """Frames written before the check covered shapes hold the legacy CRC: still accepted."""
    data = progcodec.encode(smooth_image(64, 48), model="vq-vae")
    header, frames = bitstream.read(data)
    m = progcodec.registry.load("vq-vae")
    state = m.decoder(*padded_size(header.height, header.width, m.stride), bitstream.unpack_side(header))
    old = []
    with torch.inference_mode():
        for f in frames:
            params = state.prior(f.index)
            assert f.prior_check == entropy.prior_check(params) != entropy.legacy_prior_check(params)
            old.append((f.payload, entropy.legacy_prior_check(params)))
            state.push(f.index, entropy.decode_layer(f.payload, params))
    legacy = bitstream.write(header, old)
    assert torch.equal(progcodec.decode(legacy).tensor, progcodec.decode(data).tensor)


def test_memory_budget_refuses_the_header_before_allocating(monkeypatch):
    data = crafted("pyramid", 64, 64, bytes(4))
    m = progcodec.registry.load("pyramid")
    need = 64 * 64 * m.decode_bytes_per_pixel
    called = []
    monkeypatch.setattr(type(m), "decoder", lambda *a: called.append(a))
    dec = StreamDecoder(limits=Limits(max_decode_bytes=need - 1))
    with pytest.raises(progcodec.LimitError, match="MiB limit for untrusted input"):
        dec.feed(data)
    assert not called
    monkeypatch.setattr(progcodec.LIMITS, "max_decode_bytes", need - 1)  # the global default counts too
    with pytest.raises(progcodec.LimitError):
        StreamDecoder().feed(data)
    over = crafted("hqa", 4096, 4096, bytes(4))  # inside max_pixels, far over the default budget
    monkeypatch.undo()
    with pytest.raises(progcodec.LimitError):
        StreamDecoder().feed(over)


def test_every_bundled_model_declares_its_decode_memory():
    for name in ("pyramid", "hqa", "hqa-digits", "vq-vae", "pq-mim", "qres-vae"):
        cls = progcodec.registry.get_class(name)
        assert cls.decode_bytes_per_pixel < progcodec.Model.decode_bytes_per_pixel, name
    assert progcodec.LIMITS.max_decode_bytes == 2 << 30


# -- item 2: side-information bombs -------------------------------------------------------------
def _with_side(data: bytes, side: bytes, codec: str) -> bytes:
    header, _ = bitstream.read(data)
    return restream(data, side=side, extra={**header.extra, "side_codec": codec})


@pytest.mark.parametrize("declared", [True, False])
def test_zstd_side_info_is_capped_before_decompressing(pyr, declared):
    bomb = zstandard.ZstdCompressor(level=19, write_content_size=declared).compress(bytes(8 << 20))
    data = _with_side(pyr, bomb, "zstd")
    t = time.perf_counter()
    with pytest.raises(progcodec.LimitError, match="side information"):
        list(progcodec.decode_stream([data], limits=Limits(max_side_info_bytes=1 << 16)))
    assert time.perf_counter() - t < 1


@pytest.mark.parametrize("side", [
    msgpack.packb({"a": [{}] * (1 << 21)}),                       # 2M empty maps in one array
    msgpack.packb({f"k{i}": [{}] * 300_000 for i in range(4)}),    # many arrays under the count cap
    b"\x81\xa1a" + b"\x91" * 40 + b"\x01",                          # 40 levels deep
])
def test_msgpack_side_info_is_bounded(pyr, side):
    t = time.perf_counter()
    with pytest.raises((progcodec.LimitError, progcodec.HeaderError)):
        list(progcodec.decode_stream([_with_side(pyr, side, "raw")]))
    assert time.perf_counter() - t < 2


def test_header_msgpack_is_bounded():
    raw = msgpack.packb({"model": "pyramid", "pad": [[]] * 300_000})
    pre = bitstream._PRE.pack(bitstream.MAGIC, 1, 0, len(raw))
    data = pre + raw + bitstream._CRC.pack(zlib.crc32(pre[8:] + raw))
    with pytest.raises(progcodec.LimitError):
        bitstream.Reader(Limits(max_side_info_items=1 << 16)).feed(data)


# -- item 3: sticky errors -------------------------------------------------------------------
def _raises_every_time(dec, exc_type, more: bytes):
    with pytest.raises(exc_type) as first:
        dec.feed(more)
    for call in (lambda: dec.close(), lambda: dec.feed(more), lambda: dec.feed(b""), lambda: dec.close()):
        with pytest.raises(exc_type) as again:
            call()
        assert again.value is first.value


def test_unknown_model_error_is_sticky(pyr):
    bad = restream(pyr, model="nosuch-model")
    dec = StreamDecoder()
    _raises_every_time(dec, progcodec.UnknownModelError, bad)


def test_weights_mismatch_error_is_sticky(pyr):
    _raises_every_time(StreamDecoder(), progcodec.WeightsMismatchError,
                       restream(progcodec.encode(smooth_image(32, 32), model="vq-vae"), weights="0" * 16))


def test_layer_error_after_good_layers_is_sticky(pyr):
    header, frames = bitstream.read(pyr)
    fr = [(f.payload, f.prior_check) for f in frames]
    fr[1] = (fr[1][0], fr[1][1] ^ 1)  # layer 2: prior check mismatch
    bad = bitstream.write(header, fr)
    dec = StreamDecoder()
    steps = dec.feed(bad)
    assert [s.layer for s in steps] == [1]
    _raises_every_time(dec, progcodec.PriorMismatchError, b"")


def test_error_on_first_feed_is_sticky_for_later_frames():
    """Was: vq-vae returned [] for later frames after the header's error."""
    data = progcodec.encode(smooth_image(32, 32), model="vq-vae")
    bad = restream(data, coder="other-coder")
    dec = StreamDecoder()
    with pytest.raises(progcodec.HeaderError):
        dec.feed(bad[:-20])
    with pytest.raises(progcodec.HeaderError):
        dec.feed(bad[-20:])
    with pytest.raises(progcodec.HeaderError):
        dec.close()


def test_truncation_error_from_close_is_sticky(pyr):
    dec = StreamDecoder()
    dec.feed(pyr[:-3])
    with pytest.raises(progcodec.TruncatedError) as first:
        dec.close()
    with pytest.raises(progcodec.TruncatedError) as again:
        dec.feed(pyr[-3:])
    assert again.value is first.value


# -- item 4: Pillow -------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", [False, True])
def test_pillow_reports_damage_not_truncation(stream, monkeypatch, flag):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", flag)
    ends = progcodec.info(stream).layer_ends()
    bad = bytearray(stream)
    bad[ends[2] - 8] ^= 1  # inside layer 3's payload
    with pytest.raises(OSError) as info:
        Image.open(io.BytesIO(bytes(bad))).load()
    assert isinstance(info.value, progcodec.DecodeOSError)
    assert isinstance(info.value.error, progcodec.ChecksumError) and info.value.__cause__ is info.value.error
    parser = ImageFile.Parser()
    with pytest.raises(progcodec.DecodeOSError):
        parser.feed(bytes(bad))
        parser.close()


def test_pillow_wraps_model_errors(pyr):
    with pytest.raises(OSError) as info:
        Image.open(io.BytesIO(restream(pyr, model="nosuch-model"))).load()
    assert isinstance(info.value.__cause__, progcodec.UnknownModelError)


# -- item 5: offsets from the stream's header length ----------------------------------------------
def _wide_msgpack(obj) -> bytes:
    """msgpack with the widest encodings (map16/array16/str16/uint32/bin32), valid but not ours."""
    import struct

    if isinstance(obj, dict):
        return b"\xde" + struct.pack(">H", len(obj)) + b"".join(_wide_msgpack(k) + _wide_msgpack(v)
                                                                 for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return b"\xdc" + struct.pack(">H", len(obj)) + b"".join(map(_wide_msgpack, obj))
    if isinstance(obj, str):
        b = obj.encode()
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(obj, bytes):
        return b"\xc6" + struct.pack(">I", len(obj)) + obj
    if isinstance(obj, int):
        return b"\xce" + struct.pack(">I", obj)
    raise TypeError(type(obj))


def wide_header_stream(data: bytes) -> bytes:
    header, frames = bitstream.read(data)
    ours = bitstream.pack_header(header)
    body = msgpack.unpackb(ours[bitstream.PREAMBLE_SIZE:-4], raw=False)
    raw = _wide_msgpack(body)
    pre = bitstream._PRE.pack(bitstream.MAGIC, 1, ours[9], len(raw))
    return (pre + raw + bitstream._CRC.pack(zlib.crc32(pre[8:] + raw))
            + b"".join(bitstream.pack_frame(f.index, f.payload, f.prior_check) for f in frames))


def test_layer_offsets_come_from_the_stream(pyr):
    wide = wide_header_stream(pyr)
    h = progcodec.info(wide)
    assert len(wide) > len(pyr) and h.header_bytes() > progcodec.info(pyr).header_bytes()
    assert h.layer_ends()[-1] == len(wide)
    assert [s.bytes_consumed for s in progcodec.decode_stream([wide])] == h.layer_ends()
    cut = wide[: h.layer_ends()[1]]
    assert torch.equal(progcodec.decode(cut, layers=2).tensor, progcodec.decode(pyr, layers=2).tensor)
    assert progcodec.info(progcodec.truncate(wide, layers=2)).layers == 2
    im = Image.open(io.BytesIO(wide))
    assert im.info["layer_ends"] == h.layer_ends()


# -- item 7: one decoder, two threads ----------------------------------------------------------
def test_concurrent_feed_raises_a_clear_error(pyr):
    dec = StreamDecoder()
    dec._busy.acquire()  # another thread is inside feed()
    try:
        with pytest.raises(progcodec.ConcurrentUseError, match="one thread at a time"):
            dec.feed(pyr)
    finally:
        dec._busy.release()
    with pytest.raises(progcodec.ConcurrentUseError):  # a chunk was lost: the decoder stays failed
        dec.feed(pyr)


def test_two_threads_never_get_wrong_layers_or_attribute_errors():
    """Was: AttributeError in 33-77% of trials, and pq-mim gave wrong 'complete' layers."""
    data = progcodec.encode(smooth_image(64, 48), model="pq-mim")
    ref = [s.tensor for s in progcodec.decode_stream([data])]
    chunks = [data[i : i + 23] for i in range(0, len(data), 23)]
    for trial in range(3):
        dec, got, errs = StreamDecoder(), [], []
        it = iter(chunks)
        lock = threading.Lock()

        def work():
            while True:
                with lock:
                    chunk = next(it, None)
                if chunk is None:
                    return
                try:
                    got.extend(dec.feed(chunk))
                except progcodec.ProgcodecError as exc:
                    errs.append(exc)
                    return

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(isinstance(e, (progcodec.ConcurrentUseError, progcodec.BitstreamError)) for e in errs)
        for s in got:  # whatever interleaving happened, every layer shown is the right one
            assert torch.equal(s.tensor, ref[s.layer - 1])


# -- item 9: renders across thread counts ---------------------------------------------------------
def _decode_with_threads(data, n):
    torch.set_num_threads(n)
    try:
        return [s.tensor for s in progcodec.decode_stream([data])]
    finally:
        torch.set_num_threads(1)


def test_qres_vae_render_is_bit_identical_across_thread_counts():
    """Was: up to one 8-bit level apart on a few pixels between 1 and 2 threads (float32 render)."""
    data = progcodec.encode(smooth_image(128, 96, seed=2), model="qres-vae")
    one, two = _decode_with_threads(data, 1), _decode_with_threads(data, 2)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


def test_pq_mim_render_tolerance_across_thread_counts():
    """pq-mim renders in float32 (float64 needed ~4 kB/pixel of im2col memory and 3-10x the time):
    symbols are identical, renders may differ by float32 rounding, at most one 8-bit level."""
    data = progcodec.encode(smooth_image(128, 96, seed=2), model="pq-mim")
    one, two = _decode_with_threads(data, 1), _decode_with_threads(data, 2)
    for a, b in zip(one, two):
        assert float((a - b).abs().max()) <= 1e-5
        assert int(((a * 255).round() - (b * 255).round()).abs().max()) <= 1


# -- fuzz: random payloads against random priors never over-read silently ------------------------
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
import os  # noqa: E402

_N = int(os.environ.get("PROGCODEC_FUZZ_EXAMPLES", "60"))


@settings(max_examples=_N, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=64), st.integers(1, 200_000), st.floats(0.11, 64), st.integers(2, 300))
def test_random_payloads_decode_or_raise_format_error(payload, n, scale, k):
    payload = payload[: len(payload) // 4 * 4]
    words = len(payload) // 4
    for params in ([entropy.Gaussian(np.full(n, scale))], [entropy.Categorical(np.full(k, 1 / k), shape=(n,))]):
        try:
            out = entropy.decode_layer(payload, params)
        except progcodec.FormatError:
            continue
        assert out[0].size == n
        if isinstance(params[0], entropy.Categorical):  # n uniform symbols carry n*log2(k) bits
            assert n * np.log2(k) * 0.999 <= 32 * words + 64
