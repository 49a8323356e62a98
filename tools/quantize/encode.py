"""Turn one tensor's source into model.bin bytes, chunk by chunk (bounded memory)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from edgemoe.errors import ConversionError
from edgemoe.quant import encode_tensor, quantize_mxfp4_blocks

from .safetensors_io import Checkpoint
from .sources import DenseExpertSource, FloatSource, Mxfp4Source, Source

#: Elements converted at a time; the quantizers' temporaries are a few times this in bytes.
CHUNK_ELEMS = 1 << 22


def _row_chunks(ckpt: Checkpoint, src: FloatSource) -> Iterator[np.ndarray]:
    """The source as f32 [n, width] arrays of consecutive rows (a 1-D source is one row),
    about CHUNK_ELEMS elements at a time."""
    width = src.shape[-1] if len(src.shape) > 1 else math.prod(src.shape)
    rows = math.prod(src.shape) // width if width else 0
    step = max(1, CHUNK_ELEMS // max(width, 1))
    for r in range(0, rows, step):
        n = min(step, rows - r)
        yield ckpt.read_f32(src.entry, src.start + r * width, n * width).reshape(n, width)


def _float_chunks(ckpt: Checkpoint, src: FloatSource, out_type: str) -> Iterator[np.ndarray]:
    for x in _row_chunks(ckpt, src):
        if out_type in ("f32", "bf16", "f16") and not np.isfinite(x).all():
            raise ValueError("input contains NaN or infinity")
        yield encode_tensor(out_type, x)


def _planar_mxfp4(row_chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """A matrix given as chunks of consecutive rows, quantized to mxfp4 in FORMAT.md's planar
    layout: each chunk's blocks as it comes, then all the scales (R·K/32 bytes, kept until
    the end)."""
    scales: list[np.ndarray] = []
    for x in row_chunks:
        blocks, s = quantize_mxfp4_blocks(x)
        scales.append(s.reshape(-1))
        yield blocks.reshape(-1)
    yield from scales


def _mxfp4_copy(ckpt: Checkpoint, src: Mxfp4Source) -> Iterator[bytes]:
    """gpt-oss blocks/scales of one expert, copied unchanged: blocks first, then scales."""
    for entry in (src.blocks, src.scales):
        per_expert = entry.nbytes // entry.shape[0]
        start = src.expert * per_expert
        for off in range(0, per_expert, 1 << 24):
            yield ckpt.read(entry, start + off, min(1 << 24, per_expert - off))


def _dense_expert(ckpt: Checkpoint, src: DenseExpertSource) -> Iterator[np.ndarray]:
    """One expert's [in, out] matrix, transposed to [out, in] and quantized to mxfp4."""
    _, n_in, n_out = src.entry.shape
    w = ckpt.read_f32(src.entry, src.expert * n_in * n_out, n_in * n_out).reshape(n_in, n_out)
    step = max(1, CHUNK_ELEMS // n_in)
    yield from _planar_mxfp4(w[:, r : r + step].T for r in range(0, n_out, step))


def tensor_chunks(ckpt: Checkpoint, name: str, src: Source, out_type: str
                  ) -> Iterator[np.ndarray | bytes]:
    """Yield the bytes of model.bin tensor ``name`` of ``out_type`` built from ``src``.

    Raises:
        ConversionError: non-finite input, or a shape the type cannot hold (names the tensor).
    """
    entry = src.entry if not isinstance(src, Mxfp4Source) else src.blocks
    where = f"{entry.path}: tensor {entry.name!r} (for {name})"
    try:
        if isinstance(src, Mxfp4Source):
            yield from _mxfp4_copy(ckpt, src)
        elif isinstance(src, DenseExpertSource):
            yield from _dense_expert(ckpt, src)
        elif out_type == "mxfp4":
            yield from _planar_mxfp4(_row_chunks(ckpt, src))
        else:
            yield from _float_chunks(ckpt, src, out_type)
    except ValueError as e:
        if isinstance(e, ConversionError):
            raise
        raise ConversionError(f"{where}: {e}") from e
