"""Fuzzing the full decoder: every input either decodes intact layers exactly or raises BitstreamError.

Runs a bounded number of examples by default; PROGCODEC_FUZZ_EXAMPLES=N runs N per test.
"""
import os

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import progcodec
from conftest import smooth_image

N = int(os.environ.get("PROGCODEC_FUZZ_EXAMPLES", "60"))
fuzz = settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck))
STREAM = progcodec.encode(smooth_image(40, 24), rate="low")
REF = list(progcodec.decode_stream([STREAM]))
ENDS = progcodec.info(STREAM).layer_ends()


def outcome(data: bytes):
    """Decode; check every shown layer is exactly the intact one; return (layers, error)."""
    got = []
    try:
        for step in progcodec.decode_stream([data]):
            got.append(step)
    except progcodec.BitstreamError as exc:
        err = exc
    else:
        err = None
    for step in got:
        ref = REF[step.layer - 1]
        assert step.layer <= len(REF) and torch.equal(step.tensor, ref.tensor)
    return got, err


@fuzz
@given(st.binary(max_size=400))
def test_random_bytes(data):
    got, err = outcome(data)
    assert err is not None and not got


@fuzz
@given(st.binary(max_size=300))
def test_random_bytes_after_a_valid_magic(tail):
    got, err = outcome(STREAM[:8] + tail)
    assert err is not None and not got


@fuzz
@given(st.lists(st.tuples(st.integers(0, len(STREAM) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_streams(edits):
    bad = bytearray(STREAM)
    for pos, val in edits:
        bad[pos] = val
    got, err = outcome(bytes(bad))
    if bytes(bad) != STREAM:
        assert err is not None
        assert len(got) <= sum(end <= min(p for p, v in edits if STREAM[p] != v) for end in ENDS)


@fuzz
@given(st.integers(0, len(STREAM)), st.integers(0, len(STREAM)), st.binary(max_size=40))
def test_spliced_streams(a, b, insert):
    a, b = min(a, b), max(a, b)
    data = STREAM[:a] + insert + STREAM[b:]
    got, err = outcome(data)
    if data != STREAM:
        assert err is not None


@fuzz
@given(st.permutations(range(len(ENDS))), st.integers(0, len(ENDS) - 1))
def test_reordered_and_duplicated_frames(order, dup):
    starts = [ENDS[0] - (ENDS[0] - progcodec.info(STREAM).header_bytes())] + ENDS[:-1]
    frames = [STREAM[s:e] for s, e in zip(starts, ENDS)]
    body = [frames[i] for i in order]
    body.insert(dup, frames[dup])
    got, err = outcome(STREAM[: starts[0]] + b"".join(body))
    assert err is not None
