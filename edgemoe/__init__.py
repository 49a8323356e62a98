"""edgemoe: run Mixture-of-Experts language models (gpt-oss) on ordinary CPUs, offline.

Quick start::

    import edgemoe
    with edgemoe.load("model.bin") as model:
        print(model.generate("The capital of France is", max_tokens=16, temperature=0))
        reply = model.chat([{"role": "user", "content": "Hi!"}], reasoning_effort="low")
        print(reply.content)

The compiled core is imported lazily, so submodules such as :mod:`edgemoe.format` work
without it (the converter and tests rely on that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgemoe.errors import (
    ChecksumError,
    ContextFullError,
    ConversionError,
    EdgemoeError,
    InvalidArgumentError,
    ModelFormatError,
    ModelIOError,
    OutOfMemoryError,
    TokenizerError,
    UnsupportedVersionError,
)

__version__ = "0.1.0"

__all__ = [
    "ChecksumError",
    "ContextFullError",
    "ConversionError",
    "EdgemoeError",
    "InvalidArgumentError",
    "Model",
    "ModelFormatError",
    "ModelIOError",
    "OutOfMemoryError",
    "Session",
    "TokenizerError",
    "UnsupportedVersionError",
    "__version__",
    "load",
]

if TYPE_CHECKING:
    from edgemoe.model import Model, Session


def load(
    path: str | Any,
    *,
    threads: int | None = None,
    n_ctx: int | None = None,
    verify: bool = False,
    memory_budget: str | int | None = None,
    policy: str = "lfu",
    prefetch: bool = True,
    io_threads: int = 2,
    activations: str = "int16",
) -> Model:
    """Open a model.bin for inference.

    Args:
        path: the model.bin file.
        threads: worker threads for the core (default: physical cores).
        n_ctx: context length in tokens per session (default: min(4096, the model's maximum)).
        verify: check every tensor's CRC-32 first (reads the whole file once).
        memory_budget: bytes (or a size such as ``"6G"``) of weights to keep in memory. The
            non-expert weights are read in at load; experts go through a cache of fixed size,
            read with ``pread`` by background threads (docs/MEMORY.md). ``None``: plain mmap,
            the page cache decides. Too small for the non-expert weights plus one layer's
            active experts: ``InvalidArgumentError`` naming the smallest budget that works.
        policy: the cache's replacement policy under a budget: ``"lfu"`` (default; least
            often used, per-expert counts that age) or ``"lru"`` (docs/MEMORY.md compares).
        prefetch: under a budget, read ahead the experts the next layer will probably use.
        io_threads: background readers under a budget.
        activations: how products with q8_0 and mxfp4 weights round the activations, per
            block of 32 with its own scale: ``"int16"`` (default; at most 2^-16 of the block's
            largest value per element) or ``"int8"`` (2^-8, as llama.cpp's q8_0 activations;
            faster generation, measured in docs/PERFORMANCE.md).

    Returns:
        A :class:`~edgemoe.model.Model`; close it with ``close()`` or use it as a context manager.

    Raises:
        ModelFormatError: the file is not a valid model.bin (the message names the field).
        ModelIOError: the file cannot be opened or mapped.
    """
    from edgemoe.model import Model

    return Model(path, threads=threads, n_ctx=n_ctx, verify=verify, memory_budget=memory_budget,
                 policy=policy, prefetch=prefetch, io_threads=io_threads, activations=activations)


def __getattr__(name: str) -> Any:
    if name in ("Model", "Session"):
        from edgemoe import model

        return getattr(model, name)
    raise AttributeError(f"module 'edgemoe' has no attribute {name!r}")
