"""Exception types raised by edgemoe.

Every error edgemoe raises derives from :class:`EdgemoeError`; most also derive from the
matching builtin (``ValueError``, ``OSError``, ...) so generic handlers keep working.
"""

from __future__ import annotations


class EdgemoeError(Exception):
    """Base class of every edgemoe error."""


class ModelFormatError(EdgemoeError, ValueError):
    """A model file is not a valid model.bin (the message names the file and field)."""


class UnsupportedVersionError(ModelFormatError):
    """A model.bin of a format version this build does not know."""


class ChecksumError(ModelFormatError):
    """A CRC-32 stored in a model.bin does not match its bytes."""


class ModelIOError(EdgemoeError, OSError):
    """A model file could not be opened, read or mapped."""


class ContextFullError(EdgemoeError, ValueError):
    """Evaluating the tokens would exceed the context's capacity (n_ctx)."""


class ConversionError(EdgemoeError, ValueError):
    """A checkpoint cannot be converted (missing, foreign or corrupt input)."""


class TokenizerError(EdgemoeError, ValueError):
    """A tokenizer is missing, invalid, or a text cannot be encoded."""


class InvalidArgumentError(EdgemoeError, ValueError):
    """An argument was rejected (e.g. a token id outside the vocabulary)."""


class OutOfMemoryError(EdgemoeError, MemoryError):
    """The core could not allocate memory (e.g. for a KV cache of the requested n_ctx)."""
