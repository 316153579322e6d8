"""Issue 16 items 5 and 6: what encode accepts, and colour modes / alpha surviving a round trip."""
import numpy as np
import pytest
import torch
from PIL import Image

import progcodec
from progcodec import bitstream, modes
from progcodec.testing import sample_image

W, H = 40, 24


@pytest.fixture(scope="module")
def rgb():
    return sample_image(W, H)


@pytest.fixture(scope="module")
def mask():
    a = np.zeros((H, W), np.uint8)
    a[4:18, 6:30] = 255
    a[0, :] = np.arange(W) * 6  # a soft edge: every value must survive
    return a


def pixels(step):
    return np.asarray(step.image)


# item 5: inputs ------------------------------------------------------------------------

def test_path_pil_numpy_and_tensor_inputs_give_one_stream(rgb, tmp_path):
    path = tmp_path / "photo.png"
    rgb.save(path)
    arr = np.asarray(rgb)
    ref = progcodec.encode(rgb)
    assert progcodec.encode(str(path)) == ref
    assert progcodec.encode(path) == ref                                    # os.PathLike
    assert progcodec.encode(arr) == ref                                     # H x W x 3 uint8
    tensor = torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255    # C x H x W float
    assert progcodec.encode(tensor) == ref
    assert progcodec.encode(tensor[None]) == ref                            # 1 x C x H x W


def test_gray_numpy_input(rgb):
    gray = np.asarray(rgb.convert("L"))
    assert progcodec.encode(gray) == progcodec.encode(rgb.convert("L"))
    assert progcodec.decode(progcodec.encode(gray[:, :, None])).image.mode == "L"


@pytest.mark.parametrize("bad, error, match", [
    (b"\x89PNG...", TypeError, "BytesIO"),
    (12, TypeError, "expected an image"),
    ([[1, 2], [3, 4]], TypeError, "expected an image"),
    (np.zeros((8, 8, 3), np.float32), TypeError, "uint8"),
    (np.zeros((8, 8, 5), np.uint8), ValueError, "shape"),
    (np.zeros((2, 8, 8, 3), np.uint8), ValueError, "shape"),
    (np.zeros((0, 8, 3), np.uint8), ValueError, "empty"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), TypeError, "float"),
    (torch.zeros(8, 8, 3), ValueError, "shape"),
    (torch.full((3, 8, 8), 2.0), ValueError, r"\[0, 1\]"),
    (torch.full((3, 8, 8), float("nan")), ValueError, "finite"),
])
def test_unsupported_inputs_are_clear_errors(bad, error, match):
    with pytest.raises(error, match=match):
        progcodec.encode(bad)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        progcodec.encode(tmp_path / "nosuch.png")


# item 6: modes -------------------------------------------------------------------------

def test_plain_rgb_streams_are_unchanged_format_1_0(rgb):
    data = progcodec.encode(rgb)
    assert data[8:10] == b"\x01\x00"
    h = progcodec.info(data)
    assert "source_mode" not in h.extra and "alpha" not in h.extra
    assert progcodec.decode(data).image.mode == "RGB"


def test_gray_in_gray_out(rgb):
    gray = rgb.convert("L")
    data = progcodec.encode(gray)
    assert data[8:10] == b"\x01\x01" and progcodec.info(data).extra["source_mode"] == "L"
    steps = list(progcodec.decode_stream([data]))
    assert all(s.image.mode == "L" and s.tensor.shape == (1, H, W) for s in steps)
    as_rgb = progcodec.decode(progcodec.encode(gray.convert("RGB"))).image.convert("L")   # same coding
    assert np.abs(pixels(steps[-1]).astype(int) - np.asarray(as_rgb).astype(int)).max() <= 1
    with Image.open(__import__("io").BytesIO(data)) as im:
        assert im.mode == "L" and (np.asarray(im) == pixels(steps[-1])).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_survives_losslessly(rgb, mask, mode):
    img = rgb.convert(mode)
    img.putalpha(Image.fromarray(mask))
    data = progcodec.encode(img)
    h = progcodec.info(data)
    assert h.layer_names[1] == "alpha" and h.extra["alpha"] == {"frame": 1, "codec": "delta-zstd"}
    steps = list(progcodec.decode_stream([data]))
    assert [s.layer for s in steps] == list(range(1, 7)) and all(s.image.mode == mode for s in steps)
    assert (pixels(steps[0])[..., -1] == 255).all()          # before the alpha layer: opaque
    for s in steps[1:]:
        assert (pixels(s)[..., -1] == mask).all()             # from it on: exact
    # the colour is what the same image without alpha gives
    plain = progcodec.decode(progcodec.encode(img.convert("RGB" if mode == "RGBA" else "L")))
    assert (pixels(steps[-1])[..., :-1].squeeze() == pixels(plain)).all()


def test_alpha_streams_cut_and_chunked(rgb, mask):
    img = rgb.convert("RGBA")
    img.putalpha(Image.fromarray(mask))
    data = progcodec.encode(img)
    ends = progcodec.info(data).layer_ends()
    ref = list(progcodec.decode_stream([data]))
    chunks = [data[i:i + 29] for i in range(0, len(data), 29)]
    assert all(torch.equal(a.tensor, b.tensor) for a, b in zip(progcodec.decode_stream(chunks), ref))
    with pytest.raises(progcodec.TruncatedError):
        list(progcodec.decode_stream([data[: ends[3] + 3]]))
    assert torch.equal(progcodec.decode(data[: ends[3]], layers=4).tensor, ref[3].tensor)
    one = progcodec.truncate(data, layers=1)                  # before the alpha frame
    assert progcodec.decode(one).image.mode == "RGBA"
    two = progcodec.truncate(data, layers=2)
    assert torch.equal(progcodec.decode(two).tensor, ref[1].tensor)
    latest = list(progcodec.decode_stream([data[: ends[1]]], layers=2, latest_only=True))
    assert len(latest) == 1 and torch.equal(latest[0].tensor, ref[1].tensor)


def test_damaged_alpha_frame_is_a_bitstream_error(rgb, mask):
    img = rgb.convert("RGBA")
    img.putalpha(Image.fromarray(mask))
    data = progcodec.encode(img)
    h, frames = bitstream.read(data)
    bad = bitstream.write(h, [(f.payload if f.index != 1 else b"\x00" * 8, f.prior_check) for f in frames])
    got = []
    with pytest.raises(progcodec.FormatError, match="alpha"):
        for step in progcodec.decode_stream([bad]):
            got.append(step)
    assert len(got) == 1


@pytest.mark.parametrize("extra", [
    {"source_mode": "CMYK"},
    {"source_mode": "RGBA"},                                            # alpha mode without the frame
    {"alpha": {"frame": 1, "codec": "delta-zstd"}},                     # frame without the mode
    {"source_mode": "RGBA", "alpha": {"frame": 1, "codec": "webp"}},
    {"source_mode": "RGBA", "alpha": {"frame": 9, "codec": "delta-zstd"}},
    {"source_mode": "RGBA", "alpha": {"frame": 2, "codec": "delta-zstd"}},  # names a model layer
])
def test_inconsistent_mode_fields_are_header_errors(rgb, extra):
    data = progcodec.encode(rgb)
    h, frames = bitstream.read(data)
    from dataclasses import replace

    bad = bitstream.write(replace(h, extra={**h.extra, **extra}), [(f.payload, f.prior_check) for f in frames])
    with pytest.raises(progcodec.HeaderError):
        progcodec.decode(bad)


def test_gray_only_model_refuses_colour(rgb):
    with pytest.raises(ValueError, match="grayscale"):
        progcodec.encode(rgb, model="hqa-digits")
    # gray pixels in an RGB image are fine, and come back RGB
    assert progcodec.decode(progcodec.encode(rgb.convert("L").convert("RGB"), model="hqa-digits")).image.mode == "RGB"
    assert progcodec.decode(progcodec.encode(rgb.convert("L"), model="hqa-digits")).image.mode == "L"


def test_alpha_codec_roundtrip_property():
    from hypothesis import given
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    @given(arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20))))
    def roundtrip(a):
        assert (modes.decode_alpha(modes.encode_alpha(a), a.shape[1], a.shape[0]) == a).all()
    roundtrip()
