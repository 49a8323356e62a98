"""The one checkpoint between Python and the C core: loads the cffi module and turns
status codes into typed exceptions."""

from __future__ import annotations

from edgemoe.errors import (
    ChecksumError,
    ContextFullError,
    EdgemoeError,
    InvalidArgumentError,
    ModelFormatError,
    ModelIOError,
    OutOfMemoryError,
    UnsupportedVersionError,
)

try:
    from edgemoe._edgemoe import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "edgemoe's compiled core (edgemoe._edgemoe) is missing: install the package with "
        "'pip install .' (or 'pip install -e .') so build.py compiles csrc/"
    ) from exc

__all__ = ["check", "ffi", "lib"]

_EXCEPTIONS: dict[int, type[EdgemoeError]] = {
    lib.EDGEMOE_ERR_IO: ModelIOError,
    lib.EDGEMOE_ERR_FORMAT: ModelFormatError,
    lib.EDGEMOE_ERR_VERSION: UnsupportedVersionError,
    lib.EDGEMOE_ERR_CHECKSUM: ChecksumError,
    lib.EDGEMOE_ERR_NOMEM: OutOfMemoryError,
    lib.EDGEMOE_ERR_ARG: InvalidArgumentError,
    lib.EDGEMOE_ERR_CONTEXT_FULL: ContextFullError,
    lib.EDGEMOE_ERR_UNSUPPORTED: ModelFormatError,
}


def check(status: int, message: str) -> None:
    """Raise the exception matching ``status`` (a C ``edgemoe_status``) unless it is OK."""
    if status == lib.EDGEMOE_OK:
        return
    name = ffi.string(lib.edgemoe_status_string(status)).decode()
    exc = _EXCEPTIONS.get(status, EdgemoeError)
    raise exc(message or name)
