"""Pillow integration: Image.open, fewer layers, Parser feeding, truncated files."""
import io

import numpy as np
import pytest
from PIL import Image, ImageFile

import progcodec


def pixels(im):
    return np.asarray(im)


def test_image_open_decodes_all_layers(stream, tmp_path):
    path = tmp_path / "x.pcs"
    path.write_bytes(stream)
    with Image.open(path) as im:
        assert im.format == "PCS" and im.size == (96, 64) and im.info["layers"] == 5
        assert (pixels(im) == pixels(progcodec.decode(stream).image)).all()


def test_fewer_layers(stream):
    im = Image.open(io.BytesIO(stream))
    im.set_layers(2)
    assert (pixels(im) == pixels(progcodec.decode(stream, layers=2).image)).all()


def test_parser_feeding(stream):
    parser = ImageFile.Parser()
    for i in range(0, len(stream), 37):
        parser.feed(stream[i : i + 37])
    assert (pixels(parser.close()) == pixels(progcodec.decode(stream).image)).all()


def test_truncated_file(stream, monkeypatch):
    cut = stream[: progcodec.info(stream).layer_ends()[3] + 5]
    with pytest.raises(OSError):
        Image.open(io.BytesIO(cut)).load()
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    im = Image.open(io.BytesIO(cut))
    im.load()
    assert (pixels(im) == pixels(progcodec.decode(stream, layers=4).image)).all()


def test_other_files_are_not_claimed():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).format == "PNG"


def test_save_handler(photo, tmp_path):
    """Issue 16 item 7: Image.save("x.pcs") encodes (it was a raw KeyError: 'PCS')."""
    path = tmp_path / "x.pcs"
    photo.save(path, model="pyramid", rate="low")
    data = path.read_bytes()
    assert data == progcodec.encode(photo, model="pyramid", rate="low")
    photo.save(tmp_path / "default.pcs")
    assert progcodec.info((tmp_path / "default.pcs").read_bytes()).rate == "medium"
    buf = io.BytesIO()
    photo.convert("RGBA").save(buf, format="PCS")
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.mode == "RGBA" and im.size == photo.size


def test_save_refuses_unknown_options_and_models(photo, tmp_path):
    with pytest.raises(ValueError, match="quality"):
        photo.save(tmp_path / "a.pcs", quality=90)
    with pytest.raises(progcodec.UnknownModelError):
        photo.save(tmp_path / "b.pcs", model="nosuch")
    assert not list(tmp_path.iterdir())  # Pillow removes what it started writing
