"""Lazy, streaming reader of safetensors files (single or sharded via an index).

The safetensors header is parsed here directly (8-byte little-endian length, then JSON)
so that bf16 tensors, which numpy has no dtype for, can be read as raw ``uint16`` and any
slice of a tensor can be read with ``os.pread`` without loading the rest: peak memory is
the slice being converted, never the whole checkpoint.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.errors import ConversionError

#: safetensors dtype -> numpy storage dtype (bf16 as its raw uint16 bits).
STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U16": np.dtype("<u2"),
    "U32": np.dtype("<u4"),
    "U64": np.dtype("<u8"),
    "BOOL": np.dtype("?"),
}
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors file: dtype, shape and absolute byte range."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    path: Path
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's data."""
        return self.end - self.start


class SafetensorsFile:
    """An open safetensors file: its tensor table, read lazily with ``pread``."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` and parse and validate its header (ConversionError if corrupt)."""
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise ConversionError(f"{path}: cannot open: {e.strerror or e}") from e
        try:
            self.entries = self._parse(os.fstat(self._fd).st_size)
        except BaseException:
            os.close(self._fd)
            raise

    def _corrupt(self, msg: str) -> ConversionError:
        return ConversionError(f"{self.path}: corrupt or truncated safetensors file: {msg}")

    def _parse(self, size: int) -> dict[str, TensorEntry]:
        if size < 8:
            raise self._corrupt(f"{size} bytes, too short for a header")
        n = int.from_bytes(os.pread(self._fd, 8, 0), "little")
        if n > _MAX_HEADER or 8 + n > size:
            raise self._corrupt(f"header length {n} does not fit in the file's {size} bytes")
        raw = os.pread(self._fd, n, 8)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise self._corrupt(f"header is not valid JSON ({e})") from e
        if not isinstance(header, dict):
            raise self._corrupt("header is not a JSON object")
        base = 8 + n
        entries: dict[str, TensorEntry] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            entries[name] = self._entry(name, info, base, size)
        return entries

    def _entry(self, name: str, info: Any, base: int, size: int) -> TensorEntry:
        try:
            dtype, shape, (lo, hi) = info["dtype"], info["shape"], info["data_offsets"]
        except (TypeError, KeyError, ValueError) as e:
            raise self._corrupt(f"tensor {name!r}: malformed entry") from e
        if dtype not in STORAGE_DTYPES:
            raise ConversionError(f"{self.path}: tensor {name!r}: unsupported dtype {dtype}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise self._corrupt(f"tensor {name!r}: bad shape {shape!r}")
        need = math.prod(shape) * STORAGE_DTYPES[dtype].itemsize
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi) or hi - lo != need:
            raise self._corrupt(f"tensor {name!r}: data_offsets [{lo}, {hi}) do not hold "
                                f"{need} bytes of {dtype} {shape}")
        if base + hi > size:
            raise self._corrupt(f"tensor {name!r} ends at byte {base + hi}, past the end of "
                                f"the file ({size} bytes)")
        return TensorEntry(name, dtype, tuple(shape), self.path, base + lo, base + hi)

    def read(self, entry: TensorEntry, start: int = 0, length: int | None = None) -> bytes:
        """Read ``length`` bytes at ``start`` within the tensor's data (all of it by default)."""
        if length is None:
            length = entry.nbytes - start
        out = bytearray()
        pos = entry.start + start
        while len(out) < length:
            chunk = os.pread(self._fd, min(length - len(out), 1 << 26), pos)
            if not chunk:
                raise self._corrupt(f"tensor {entry.name!r}: unexpected end of file")
            out += chunk
            pos += len(chunk)
        return bytes(out)

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Checkpoint:
    """The tensors of a checkpoint directory: ``model.safetensors`` or the shards named
    by ``model.safetensors.index.json`` (or every ``*.safetensors`` as a fallback)."""

    def __init__(self, directory: Path) -> None:
        """Open every shard's header (no tensor data is read)."""
        self.directory = directory
        self.files: list[SafetensorsFile] = []
        self.entries: dict[str, TensorEntry] = {}
        self._by_path: dict[Path, SafetensorsFile] = {}
        try:
            for path in self._shard_paths():
                f = SafetensorsFile(path)
                self.files.append(f)
                self._by_path[path] = f
                for name, e in f.entries.items():
                    if name in self.entries:
                        raise ConversionError(
                            f"{path}: tensor {name!r} also appears in {self.entries[name].path}"
                        )
                    self.entries[name] = e
            self._check_index()
        except BaseException:
            self.close()
            raise

    def _shard_paths(self) -> list[Path]:
        index = self.directory / "model.safetensors.index.json"
        single = self.directory / "model.safetensors"
        if index.is_file():
            self._index = _read_index(index)
            names = sorted(set(self._index.values()))
            paths = [self.directory / n for n in names]
            for n, p in zip(names, paths, strict=True):
                if not p.is_file():
                    raise ConversionError(f"{index}: shard {n!r} is missing from {self.directory}")
            return paths
        self._index = {}
        if single.is_file():
            return [single]
        paths = sorted(self.directory.glob("*.safetensors"))
        if not paths:
            raise ConversionError(f"{self.directory}: no model.safetensors, "
                                  "model.safetensors.index.json or *.safetensors file")
        return paths

    def _check_index(self) -> None:
        for name, shard in self._index.items():
            e = self.entries.get(name)
            if e is None or e.path.name != shard:
                raise ConversionError(
                    f"{self.directory / 'model.safetensors.index.json'}: tensor {name!r} is "
                    f"mapped to {shard!r} but that shard does not contain it"
                )

    def get(self, name: str) -> TensorEntry | None:
        """The tensor's entry, or None if the checkpoint has no tensor of that name."""
        return self.entries.get(name)

    def read(self, entry: TensorEntry, start: int = 0, length: int | None = None) -> bytes:
        """Read bytes of a tensor (see ``SafetensorsFile.read``)."""
        return self._by_path[entry.path].read(entry, start, length)

    def read_f32(self, entry: TensorEntry, start_elem: int = 0, count: int | None = None
                 ) -> np.ndarray:
        """Read elements ``[start_elem, start_elem + count)`` of a float tensor as f32."""
        if entry.dtype not in FLOAT_DTYPES:
            raise ConversionError(f"{entry.path}: tensor {entry.name!r}: dtype {entry.dtype} "
                                  "is not a float type")
        dt = STORAGE_DTYPES[entry.dtype]
        if count is None:
            count = math.prod(entry.shape) - start_elem
        raw = np.frombuffer(self.read(entry, start_elem * dt.itemsize, count * dt.itemsize), dt)
        if entry.dtype == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)

    def iter_rows_f32(self, entry: TensorEntry, max_elems: int = 1 << 22
                      ) -> Iterator[np.ndarray]:
        """Yield a float tensor as f32 row blocks ``[rows, last_dim]`` of at most about
        ``max_elems`` elements each (1-D tensors come as one block)."""
        width = entry.shape[-1] if entry.shape else 1
        rows = math.prod(entry.shape) // max(width, 1) if width else 0
        step = max(1, max_elems // max(width, 1))
        for r in range(0, rows, step):
            n = min(step, rows - r)
            yield self.read_f32(entry, r * width, n * width).reshape(n, width)

    def close(self) -> None:
        """Close every shard."""
        for f in self.files:
            f.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_index(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise ConversionError(f"{path}: not a valid safetensors index ({e})") from e
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and "/" not in v and v not in ("", ".", "..")
        for k, v in weight_map.items()
    ):
        raise ConversionError(f"{path}: weight_map must map tensor names to shard file names")
    return weight_map
