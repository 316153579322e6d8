"""progcodec: progressive delivery of images coded with learned codecs.

>>> data = progcodec.encode(img, model="pyramid")
>>> for step in progcodec.decode_stream(chunks):   # any iterable of bytes, split anywhere
...     show(step.image)                            # one refinement per completed layer
"""
import os as _os
import sys as _sys

if "torch" not in _sys.modules:
    # OpenMP threads that sleep when idle instead of spinning (progcodec/threads.py): with busy-waiting
    # a 2-thread decode on a loaded 2-core machine took 14-41 s instead of 0.6 s. Only possible before
    # torch is imported; a value the user set is kept.
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
