"""progcodec: progressive delivery of images coded with learned codecs.

>>> data = progcodec.encode(img, model="pyramid")
>>> for step in progcodec.decode_stream(chunks):   # any iterable of bytes, split anywhere
...     show(step.image)                            # one refinement per completed layer
"""
from .bitstream import Header, truncate
from .codec import decode, encode, info
from .errors import (BitstreamError, ChecksumError, ConcurrentUseError, DecodeOSError, FormatError, HeaderError, LimitError, ModelError,
                     PluginLoadError, PriorMismatchError, ProgcodecError, TrailingDataError, TruncatedError,
                     UnknownModelError, UnsupportedVersionError, WeightsMismatchError)
from .limits import LIMITS, Limits
from .plugin import Analysis, LayerDecoder, Model
from .stream import DecodeStep, StreamDecoder, adecode_stream, decode_stream
from .threads import get_threads, set_threads
from . import pillow  # noqa: E402,F401  (registers the .pcs format with Pillow)

__version__ = "0.1.0"

__all__ = [
    "set_threads", "get_threads",
    "encode", "decode", "decode_stream", "adecode_stream", "info", "truncate", "StreamDecoder", "DecodeStep",
    "Header", "Model", "LayerDecoder", "Analysis", "LIMITS", "Limits", "ProgcodecError", "BitstreamError",
    "FormatError", "UnsupportedVersionError", "HeaderError", "ChecksumError", "TruncatedError",
    "TrailingDataError", "LimitError", "PriorMismatchError", "ModelError", "UnknownModelError",
    "PluginLoadError", "WeightsMismatchError", "ConcurrentUseError", "DecodeOSError",
]
