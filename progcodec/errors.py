"""Exception hierarchy: every malformed input ends in one of these, never in a torch traceback."""


class ProgcodecError(Exception):
    """Base class of every error progcodec raises on purpose."""


class BitstreamError(ProgcodecError, ValueError):
    """The bytes are not a valid (or not a complete) progcodec stream."""


class FormatError(BitstreamError):
    """Not a progcodec stream at all (bad magic) or a structurally malformed one."""


class UnsupportedVersionError(FormatError):
    """The stream uses a format version this library cannot read."""


class HeaderError(BitstreamError):
    """The header is damaged or holds values that make no sense."""


class ChecksumError(BitstreamError):
    """A header or layer frame failed its CRC-32 check (corrupted bytes)."""


class TruncatedError(BitstreamError):
    """The stream ended before the layers the caller asked for were complete."""


class TrailingDataError(BitstreamError):
    """Bytes follow the last layer the header announces."""


class LimitError(BitstreamError):
    """The stream asks for more resources than the configured limits allow."""


class PriorMismatchError(BitstreamError):
    """The decoder's prior differs from the encoder's (other weights or numerics)."""


class ModelError(ProgcodecError, LookupError):
    """A model is unknown, failed to load, or is not the one a stream was written with."""


class UnknownModelError(ModelError):
    """No installed plugin has this name (or rate point)."""


class PluginLoadError(ModelError):
    """An installed plugin failed to import or to load its weights."""


class WeightsMismatchError(ModelError):
    """The installed weights differ from those the stream was encoded with."""


class ConcurrentUseError(ProgcodecError, RuntimeError):
    """A ``StreamDecoder`` was called from a second thread while another call was running."""


class DecodeOSError(ProgcodecError, OSError):
    """What Pillow's ``load()`` raises for a damaged stream: an ``OSError`` (as Pillow users
    catch) whose ``error`` attribute and ``__cause__`` are the progcodec error itself."""

    def __init__(self, error: BaseException):
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
