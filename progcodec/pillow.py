"""Pillow integration: after ``import progcodec``, ``Image.open("x.pcs")`` decodes streams.

``im.set_layers(k)`` before ``load()`` decodes only the first k layers. Feeding through
``ImageFile.Parser`` works too; with ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` a cut file
loads its last complete refinement.
"""
from __future__ import annotations

from PIL import Image, ImageFile

from . import bitstream, errors
from .stream import StreamDecoder


def _accept(prefix: bytes) -> bool:
    return prefix[:8] == bitstream.MAGIC


class PcsImageFile(ImageFile.ImageFile):
    format = "PCS"
    format_description = "progcodec layered stream"

    def _open(self):
        reader = bitstream.Reader()
        try:
            while reader.header is None:
                chunk = self.fp.read(4096)
                if not chunk:
                    raise SyntaxError("progcodec header incomplete")
                reader.feed(chunk)
        except errors.BitstreamError as exc:
            raise SyntaxError(str(exc)) from None
        h = reader.header
        self._size = (h.width, h.height)
        self._mode = h.mode
        self.info.update(model=h.model, rate=h.rate, layers=h.layers, layer_ends=h.layer_ends())
        self.tile = [ImageFile._Tile("pcs", (0, 0) + self.size, 0, (None,))]

    def set_layers(self, layers: int | None) -> None:
        """Decode only the first ``layers`` layers on ``load()`` (None: all)."""
        self.tile = [ImageFile._Tile("pcs", (0, 0) + self.size, 0, (layers,))]


class _PcsDecoder(ImageFile.PyDecoder):
    """Push decoder: shows the latest complete refinement; done once the wanted layers are in."""

    def init(self, args):
        self.stream = StreamDecoder(layers=args[0] if args else None)

    def decode(self, buffer):
        steps = self.stream.feed(bytes(buffer))
        if steps:
            self.set_as_raw(steps[-1].image.convert(self.mode).tobytes())
        if self.stream.finished:
            return -1, 0
        if not buffer:
            self.stream.close()  # raises TruncatedError
        return len(buffer), 0


Image.register_open(PcsImageFile.format, PcsImageFile, _accept)
Image.register_extension(PcsImageFile.format, ".pcs")
Image.register_mime(PcsImageFile.format, "image/x-progcodec")
Image.register_decoder("pcs", _PcsDecoder)
