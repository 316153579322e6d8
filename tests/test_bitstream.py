"""Container format: chunking invariance, every prefix, every corruption, header fuzzing."""
from dataclasses import replace

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from progcodec import bitstream as B
from progcodec import errors


def make_stream(sizes=(5, 0, 17, 3)) -> bytes:
    header = B.Header(model="m", rate="r", model_version="1", weights="w", width=4, height=3, mode="RGB",
                      layer_sizes=(), layer_names=tuple(f"l{i}" for i in range(len(sizes))),
                      encoded_layers=len(sizes), coder="c")
    frames = [(bytes((i * 7 + j) % 256 for j in range(n)), 1000 + i) for i, n in enumerate(sizes)]
    return B.write(header, frames)


STREAM = make_stream()
HEADER, FRAMES = B.read(STREAM)


def feed_all(data: bytes, cuts=()):
    """Events from ``data`` split at ``cuts``; returns (events, error or None)."""
    reader, events = B.Reader(), []
    bounds = [0, *sorted(set(cuts)), len(data)]
    try:
        for a, b in zip(bounds, bounds[1:]):
            events += reader.feed(data[a:b])
        reader.close()
    except errors.BitstreamError as exc:
        return events, exc
    return events, None


@given(st.lists(st.integers(0, len(STREAM)), max_size=20))
def test_any_chunking_gives_the_same_events(cuts):
    events, err = feed_all(STREAM, cuts)
    assert err is None
    assert events == [HEADER, *FRAMES]


def test_byte_by_byte():
    reader = B.Reader()
    events = [e for i in range(len(STREAM)) for e in reader.feed(STREAM[i : i + 1])]
    reader.close()
    assert events == [HEADER, *FRAMES]


def test_every_prefix_yields_exactly_its_complete_layers_then_truncation():
    ends = HEADER.layer_ends()
    assert ends[-1] == len(STREAM)
    for n in range(len(STREAM)):
        events, err = feed_all(STREAM[:n])
        assert isinstance(err, errors.TruncatedError), n
        complete = [f for f, end in zip(FRAMES, ends) if end <= n]
        expected = ([HEADER] if n >= HEADER.header_bytes() else []) + complete
        assert events == expected, n


@given(st.integers(0, len(STREAM) - 1), st.integers(1, 255))
def test_flipping_any_byte_keeps_only_intact_earlier_layers(pos, xor):
    bad = bytearray(STREAM)
    bad[pos] ^= xor
    events, err = feed_all(bytes(bad))
    assert isinstance(err, errors.BitstreamError)
    assert events == [HEADER, *FRAMES][: len(events)]
    damaged_layer = sum(end <= pos for end in [HEADER.header_bytes(), *HEADER.layer_ends()])
    assert len(events) <= damaged_layer


@given(st.integers(0, len(STREAM) - 1))
def test_removing_any_byte_is_an_error_not_a_silent_end(pos):
    bad = STREAM[:pos] + STREAM[pos + 1 :]
    events, err = feed_all(bad)
    assert isinstance(err, errors.BitstreamError)
    assert events == [HEADER, *FRAMES][: len(events)]


def test_duplicated_or_reordered_frames_are_refused():
    h = HEADER.header_bytes()
    ends = HEADER.layer_ends()
    f1, f2 = STREAM[h : ends[0]], STREAM[ends[0] : ends[1]]
    for bad in (STREAM[:h] + f1 + f1 + STREAM[ends[0]:], STREAM[:h] + f2 + f1 + STREAM[ends[1]:]):
        events, err = feed_all(bad)
        assert isinstance(err, errors.FormatError)


def test_trailing_data_is_refused():
    events, err = feed_all(STREAM + b"x")
    assert isinstance(err, errors.TrailingDataError) and len(events) == 1 + len(FRAMES)


def test_not_a_stream():
    assert isinstance(feed_all(b"GIF89a....")[1], errors.FormatError)
    assert isinstance(feed_all(b"\x89PNG")[1], errors.FormatError)  # refused after 2 bytes


def test_future_major_version_is_refused():
    bad = bytearray(STREAM)
    bad[8] = 2
    assert isinstance(feed_all(bytes(bad))[1], errors.UnsupportedVersionError)


def _with_header(body: dict, compact: bool = False) -> bytes:
    raw = msgpack.packb(body, use_bin_type=True)
    if compact:  # format 1.2
        raw = B.zstandard.ZstdCompressor(dict_data=B.header_dict(), write_dict_id=False).compress(raw)
    pre = B._PRE.pack(B.MAGIC, 1, 2 if compact else 0, len(raw))
    return pre + raw + B._CRC.pack(B.zlib.crc32(pre[8:] + raw))


VALID_BODY = msgpack.unpackb(B.pack_header(HEADER)[B.PREAMBLE_SIZE:-4], raw=False)


@given(st.dictionaries(st.sampled_from(sorted(VALID_BODY)), st.one_of(
    st.none(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=5), st.binary(max_size=5),
    st.lists(st.lists(st.one_of(st.integers(-5, 2**40), st.text(max_size=3)), max_size=3), max_size=300),
    st.floats())))
def test_header_fuzzing_gives_header_errors_only(changes):
    body = {**VALID_BODY, **changes}
    for compact in (False, True):
        events, err = feed_all(_with_header(body, compact))
        assert err is None or isinstance(err, errors.BitstreamError)


def test_compact_headers_read_back_and_keep_their_form():
    """Format 1.2 (opt-in): the header map zstd-compressed with the format's dictionary, same
    fields; plain streams stay 1.0 byte for byte; truncation keeps either form."""
    assert STREAM[8:10] == bytes([1, 0]) and not HEADER.compact
    compact = B.write(replace(HEADER, compact=True), [(f.payload, f.prior_check) for f in FRAMES])
    header, frames = B.read(compact)
    assert compact[8:10] == bytes([1, 2]) and header.compact and header == HEADER
    assert header.header_bytes() < HEADER.header_bytes()
    assert [f.payload for f in frames] == [f.payload for f in FRAMES]
    assert B.truncate(compact, layers=4) == compact and B.truncate(compact, layers=2)[8:10] == bytes([1, 2])
    assert B.truncate(STREAM, layers=2)[8:10] == bytes([1, 0])


def test_the_header_dictionary_is_the_published_one():
    import hashlib
    import importlib.util
    from pathlib import Path

    data = B.HEADER_DICT.read_bytes()
    assert hashlib.sha256(data).hexdigest() == B.HEADER_DICT_SHA256
    path = Path(__file__).resolve().parents[1] / "scripts" / "header_dictionary.py"
    if path.exists():  # the script rebuilds it byte for byte
        spec = importlib.util.spec_from_file_location("header_dictionary", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        assert mod.build() == data


def test_damaged_or_bombed_compressed_headers_are_refused():
    def stream(raw):
        pre = B._PRE.pack(B.MAGIC, 1, 2, len(raw))
        return pre + raw + B._CRC.pack(B.zlib.crc32(pre[8:] + raw))

    assert isinstance(feed_all(stream(b"not zstd at all"))[1], errors.HeaderError)
    good = B.pack_header(replace(HEADER, compact=True))[B.PREAMBLE_SIZE:-4]
    assert isinstance(feed_all(stream(good[:-3]))[1], errors.HeaderError)   # cut inside
    big = b"\x00" * (B.LIMITS.max_header_bytes + 1)
    for declared in (True, False):
        bomb = B.zstandard.ZstdCompressor(dict_data=B.header_dict(), write_content_size=declared).compress(big)
        events, err = feed_all(stream(bomb))
        assert isinstance(err, errors.LimitError) and events == [], declared


def test_a_missing_or_altered_dictionary_is_a_clear_error(tmp_path, monkeypatch):
    compact = B.write(replace(HEADER, compact=True), [(f.payload, f.prior_check) for f in FRAMES])
    for content in (None, b"not the dictionary"):
        path = tmp_path / "dict.bin"
        if content:
            path.write_bytes(content)
        monkeypatch.setattr(B, "HEADER_DICT", path)
        B.header_dict.cache_clear()
        assert isinstance(feed_all(compact)[1], errors.UnsupportedVersionError)
        assert feed_all(STREAM)[1] is None  # plain streams need no dictionary
    monkeypatch.undo()
    B.header_dict.cache_clear()


def test_absurd_sizes_are_refused_before_allocation():
    for w, h in [(100000, 100000), (1 << 20, 1)]:
        events, err = feed_all(_with_header({**VALID_BODY, "width": w, "height": h}))
        assert isinstance(err, errors.LimitError) and events == []
    huge = [["l", 4 << 30]] + VALID_BODY["layers"][1:]
    assert isinstance(feed_all(_with_header({**VALID_BODY, "layers": huge}))[1], errors.LimitError)
    pre = B._PRE.pack(B.MAGIC, 1, 0, 0xFFFFFFFF)
    assert isinstance(feed_all(pre)[1], errors.LimitError)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_truncate_rewrites_a_complete_valid_stream(k):
    cut = B.truncate(STREAM, layers=k)
    header, frames = B.read(cut)
    assert header.layers == k and header.encoded_layers == 4 and frames == [
        replace(f, end=e) for f, e in zip(FRAMES[:k], header.layer_ends())]
    assert B.truncate(STREAM, max_bytes=len(cut)) == cut
    assert B.truncate(STREAM[: HEADER.layer_ends()[k - 1]], layers=k) == cut


def test_truncate_refuses_impossible_requests():
    with pytest.raises(errors.TruncatedError):
        B.truncate(STREAM[: HEADER.layer_ends()[1]], layers=3)
    with pytest.raises(errors.LimitError):
        B.truncate(STREAM, max_bytes=10)
