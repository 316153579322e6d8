"""Pillow integration: after ``import progcodec``, ``Image.open("x.pcs")`` decodes streams.

``im.set_layers(k)`` before ``load()`` decodes only the first k layers. Feeding through
``ImageFile.Parser`` works too; with ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` a cut file
loads its last complete refinement.

Saving: ``im.save("x.pcs", model="pyramid", rate="medium")`` (or ``format="PCS"``) encodes
with :func:`progcodec.encode`; both options are optional. The image keeps its mode (RGB, L,
RGBA, LA: alpha is carried losslessly).
"""
from __future__ import annotations

from PIL import Image, ImageFile

from . import bitstream, errors, modes
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
        self._mode = modes.output_mode(h)  # the encoder input's mode (format 1.1), else the coded one
        self.info.update(model=h.model, rate=h.rate, layers=h.layers, layer_ends=h.layer_ends())
        self.tile = [ImageFile._Tile("pcs", (0, 0) + self.size, 0, (None,))]

    def set_layers(self, layers: int | None) -> None:
        """Decode only the first ``layers`` layers on ``load()`` (None: all)."""
        self.tile = [ImageFile._Tile("pcs", (0, 0) + self.size, 0, (layers,))]


class _PcsDecoder(ImageFile.PyDecoder):
    """Push decoder: shows the latest complete refinement; done once the wanted layers are in."""

    def init(self, args):
        self.stream = StreamDecoder(layers=args[0] if args else None, latest_only=True)  # only steps[-1] is shown

    def decode(self, buffer):
        # Damage is raised as DecodeOSError (an OSError, the progcodec error chained) at once,
        # even with LOAD_TRUNCATED_IMAGES: Pillow would otherwise report it as truncation (or,
        # with that flag, load the layers before the damage silently). A cut stream still loads
        # its last complete layer under LOAD_TRUNCATED_IMAGES, as Pillow does for other formats.
        try:
            steps = self.stream.feed(bytes(buffer))
            if steps:
                self.set_as_raw(steps[-1].image.convert(self.mode).tobytes())
            if self.stream.finished:
                return -1, 0
            self.stream.feed(b"")  # raises damage found after the layers just shown
            if not buffer:
                try:
                    self.stream.close()  # raises TruncatedError
                except errors.TruncatedError:
                    if ImageFile.LOAD_TRUNCATED_IMAGES and self.stream.frames_done:
                        return -1, 0
                    raise
        except errors.ProgcodecError as exc:
            raise errors.DecodeOSError(exc) from exc
        return len(buffer), 0


Image.register_open(PcsImageFile.format, PcsImageFile, _accept)
Image.register_extension(PcsImageFile.format, ".pcs")
Image.register_mime(PcsImageFile.format, "image/x-progcodec")
Image.register_decoder("pcs", _PcsDecoder)


def _save(im, fp, filename):
    """Pillow save handler: ``im.save(path_or_file, "PCS", model=..., rate=...)``."""
    from . import codec, registry

    opts = im.encoderinfo
    unknown = sorted(set(opts) - {"model", "rate"})
    if unknown:
        raise ValueError(f"unknown option(s) for saving .pcs: {', '.join(unknown)} (options: model, rate)")
    if im.mode not in modes.OUTPUT_MODES:
        im = im.convert("RGBA" if "transparency" in im.info or im.mode in ("PA", "RGBa") else
                        "L" if im.mode in ("1", "I", "I;16", "F") else "RGB")
    fp.write(codec.encode(im, model=opts.get("model") or registry.DEFAULT_MODEL, rate=opts.get("rate")))


Image.register_save(PcsImageFile.format, _save)
