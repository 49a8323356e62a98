"""model.bin writer: plan the layout, stream the tensors, commit atomically (docs/FORMAT.md).

``ModelWriter`` writes a file one tensor at a time (the converter's path); ``write_model``
writes one from in-memory arrays (tests and small models). Constants, types and validation
come from ``edgemoe.format``, the tensor encodings from ``edgemoe.quant``.
"""

from __future__ import annotations

import json
import mmap
import os
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgemoe.errors import ModelIOError
from edgemoe.format import (
    ALIGNMENT,
    ARCHITECTURE,
    DATA_ALIGNMENT,
    EXPERT_ALIGNMENT,
    EXPERT_PARTS,
    HEADER_OFFSET,
    MAGIC,
    MIN_EXPERT_ALIGNMENT,
    PREAMBLE,
    VERSION,
    ExpertSpan,
    TensorInfo,
    TensorSpec,
    align_up,
    is_pow2,
    parse_expert_name,
    tensor_nbytes,
    validate_header,
    validate_tensor_set,
    validate_tokenizer,
)
from edgemoe.quant import encode_tensor


def plan_layout(
    specs: Sequence[TensorSpec], data_offset: int, expert_alignment: int = EXPERT_ALIGNMENT
) -> tuple[list[TensorInfo], list[ExpertSpan], int]:
    """Place tensors: the non-expert tensors first (each 64-aligned, in the given order),
    then one span per (layer, expert) in ascending order, each at a multiple of
    ``expert_alignment`` holding the four parts in EXPERT_PARTS order.

    Returns ``(tensors in file order with crc32 0, expert spans, file_length)``.
    Raises ValueError on a duplicate name or an incomplete expert.
    """
    seen: set[str] = set()
    dense: list[TensorSpec] = []
    groups: dict[tuple[int, int], dict[str, TensorSpec]] = {}
    for s in specs:
        if s.name in seen:
            raise ValueError(f"duplicate tensor name {s.name!r}")
        seen.add(s.name)
        parsed = parse_expert_name(s.name)
        if parsed is None:
            dense.append(s)
        else:
            groups.setdefault(parsed[:2], {})[parsed[2]] = s
    infos: list[TensorInfo] = []
    pos = data_offset

    def place(s: TensorSpec) -> None:
        nonlocal pos
        pos = align_up(pos, ALIGNMENT)
        n = tensor_nbytes(s.type, s.shape)
        infos.append(TensorInfo(s.name, s.type, tuple(s.shape), pos, n, 0))
        pos += n

    for s in dense:
        place(s)
    spans: list[ExpertSpan] = []
    for (layer, expert), parts in sorted(groups.items()):
        missing = [p for p in EXPERT_PARTS if p not in parts]
        if missing:
            raise ValueError(f"expert {layer}.{expert} lacks {', '.join(missing)}")
        pos = align_up(pos, expert_alignment)
        start = pos
        for p in EXPERT_PARTS:
            place(parts[p])
        spans.append(ExpertSpan(layer, expert, start, pos - start))
    return infos, spans, pos


def _header_bytes(meta: Mapping[str, Any], infos: Sequence[TensorInfo],
                  spans: Sequence[ExpertSpan]) -> bytes:
    obj = dict(meta)
    obj["tensors"] = [
        {"name": t.name, "type": t.type, "shape": list(t.shape), "offset": t.offset,
         "length": t.length, "crc32": f"{t.crc32:08x}"}
        for t in infos
    ]
    obj["experts"] = [
        {"layer": s.layer, "expert": s.expert, "offset": s.offset, "length": s.length}
        for s in spans
    ]
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _as_byte_views(data: Any) -> Iterator[memoryview]:
    if isinstance(data, np.ndarray):
        yield memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
    elif isinstance(data, (bytes, bytearray, memoryview, mmap.mmap)):
        yield memoryview(data).cast("B")
    else:
        for chunk in data:
            yield from _as_byte_views(chunk)


def _pwrite_all(fd: int, view: memoryview, offset: int, where: Path) -> None:
    while len(view):
        try:
            n = os.pwrite(fd, view, offset)
        except OSError as e:   # disk full, I/O error: name the file, not a bare errno
            raise ModelIOError(f"{where}: cannot write: {e.strerror or e}") from None
        view = view[n:]
        offset += n


class ModelWriter:
    """Write a model.bin atomically, one tensor at a time.

    The layout is planned up front from ``specs``; ``write_tensor`` streams each tensor to
    its offset (any order) computing its CRC-32; ``commit`` writes the final header and
    preamble, fsyncs and renames the temporary file over ``path``. Used as a context
    manager it commits on success and removes the temporary file on any exception, so
    ``path`` is either untouched or a complete file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        meta: Mapping[str, Any],
        specs: Sequence[TensorSpec],
        *,
        expert_alignment: int = EXPERT_ALIGNMENT,
        validate: bool = True,
    ) -> None:
        """Plan the layout and create the temporary file.

        Args:
            path: destination file.
            meta: the header without ``tensors``/``experts`` (format, version,
                architecture, hparams, tokenizer, source).
            specs: every tensor to write.
            expert_alignment: power of two >= 4096.
            validate: check hparams, required tensors and tokenizer before writing.
        """
        if not is_pow2(expert_alignment) or expert_alignment < MIN_EXPERT_ALIGNMENT:
            raise ValueError(f"expert_alignment must be a power of two >= 4096: {expert_alignment}")
        self.path = Path(path)
        self.expert_alignment = expert_alignment
        self._meta = {k: v for k, v in meta.items() if k not in ("tensors", "experts")}
        self._plan(list(specs))
        if validate:
            where = str(self.path)
            validate_header(self._meta, where)
            validate_tensor_set(self._meta["hparams"], self.tensors, where)
            validate_tokenizer(self._meta.get("tokenizer"), self._meta["hparams"],
                               self.tensors, where)
        self._crcs: dict[str, int] = {}
        self._fd: int | None = None
        self._tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                       dir=self.path.parent)
        except OSError as e:
            raise ModelIOError(f"{self.path}: cannot create a file in {self.path.parent}: "
                               f"{e.strerror or e}") from None
        self._fd, self._tmp = fd, tmp
        try:
            os.ftruncate(fd, self.file_length)
            header = _header_bytes(self._meta, self._infos, self.spans)
            _pwrite_all(fd, memoryview(header), HEADER_OFFSET, self.path)
        except BaseException:
            self.abort()
            raise

    def _plan(self, specs: list[TensorSpec]) -> None:
        data_offset = DATA_ALIGNMENT
        while True:
            infos, spans, end = plan_layout(specs, data_offset, self.expert_alignment)
            need = HEADER_OFFSET + len(_header_bytes(self._meta, infos, spans))
            if need <= data_offset:
                break
            data_offset = align_up(need, DATA_ALIGNMENT)
        self.data_offset = data_offset
        self.header_length = data_offset - HEADER_OFFSET
        self.file_length = end
        self._infos = infos
        self.spans = spans
        self.tensors: dict[str, TensorInfo] = {t.name: t for t in infos}

    @property
    def pending(self) -> list[str]:
        """Names of the tensors not yet written."""
        return [t.name for t in self._infos if t.name not in self._crcs]

    def write_tensor(self, name: str, data: Any) -> None:
        """Write one tensor's bytes: a bytes-like object, a numpy array (its raw bytes), or
        an iterable of those (chunks, written in order). The total must equal its length."""
        if self._fd is None:
            raise ValueError(f"{self.path}: writer is closed")
        info = self.tensors.get(name)
        if info is None:
            raise KeyError(f"{self.path}: tensor {name!r} is not in the layout")
        if name in self._crcs:
            raise ValueError(f"{self.path}: tensor {name!r} written twice")
        crc, pos, end = 0, info.offset, info.offset + info.length
        for view in _as_byte_views(data):
            if pos + len(view) > end:
                raise ValueError(f"{self.path}: tensor {name!r}: more than {info.length} bytes")
            _pwrite_all(self._fd, view, pos, self.path)
            crc = zlib.crc32(view, crc)
            pos += len(view)
        if pos != end:
            raise ValueError(
                f"{self.path}: tensor {name!r}: got {pos - info.offset} bytes, "
                f"expected {info.length}"
            )
        self._crcs[name] = crc

    def commit(self) -> None:
        """Finish: final header and preamble, fsync, rename over the destination."""
        if self._fd is None or self._tmp is None:
            raise ValueError(f"{self.path}: writer is closed")
        if self.pending:
            self.abort()
            raise ValueError(f"{self.path}: tensors never written: {', '.join(self.pending[:5])}")
        try:
            infos = [
                TensorInfo(t.name, t.type, t.shape, t.offset, t.length, self._crcs[t.name])
                for t in self._infos
            ]
            header = _header_bytes(self._meta, infos, self.spans)
            header += b" " * (self.header_length - len(header))
            assert len(header) == self.header_length
            _pwrite_all(self._fd, memoryview(header), HEADER_OFFSET, self.path)
            pre = PREAMBLE.pack(MAGIC, VERSION, zlib.crc32(header), HEADER_OFFSET,
                                self.header_length, self.data_offset, self.file_length,
                                ALIGNMENT, self.expert_alignment, bytes(8))
            _pwrite_all(self._fd, memoryview(pre), 0, self.path)
            os.fchmod(self._fd, 0o666 & ~_umask())
            try:
                os.fsync(self._fd)   # where a full disk may first show
            except OSError as e:
                raise ModelIOError(f"{self.path}: cannot write: {e.strerror or e}") from None
            os.close(self._fd)
            self._fd = None
            os.replace(self._tmp, self.path)
            self._tmp = None
            _fsync_dir(self.path.parent)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Close and delete the temporary file; the destination is left untouched."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None

    def __enter__(self) -> ModelWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            if self._fd is not None:
                self.commit()
        else:
            self.abort()

    def __del__(self) -> None:
        if getattr(self, "_tmp", None) is not None:
            self.abort()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RawTensor:
    """Already-encoded tensor bytes for ``write_model`` (e.g. mxfp4 passed through)."""

    type: str
    shape: tuple[int, ...]
    data: Any


class TokenizerLike(Protocol):
    """What ``write_model`` needs of a tokenizer (``edgemoe.tokenizer.TokenizerSpec``)."""

    def header(self) -> dict[str, Any]: ...

    def ranks_blob(self) -> bytes: ...


RANKS_TENSOR = "tokenizer.ranks"


def default_tensor_type(name: str, dense: str = "q8_0", head: str | None = None) -> str:
    """FORMAT.md's type for a tensor name: mxfp4 expert matrices, ``dense`` for the
    embedding/attention/lm_head matrices (``head``, if given, for lm_head), u8 for the
    tokenizer, f32 otherwise."""
    if name == "lm_head.weight" and head is not None:
        return head
    parsed = parse_expert_name(name)
    if parsed is not None:
        return "mxfp4" if parsed[2] in ("gate_up_proj", "down_proj") else "f32"
    if name == RANKS_TENSOR:
        return "u8"
    if name in ("model.embed_tokens.weight", "lm_head.weight") or (
        name.endswith("_proj.weight") and ".self_attn." in name
    ):
        return dense
    return "f32"


def tokenizer_header(tok: TokenizerLike) -> dict[str, Any]:
    """The header's tokenizer object for ``tok``, pointing at ``tokenizer.ranks``."""
    h = dict(tok.header())
    h.setdefault("kind", "tiktoken-bpe")
    h["ranks_tensor"] = RANKS_TENSOR
    return h


def make_meta(hparams: Mapping[str, Any], tokenizer: Mapping[str, Any] | None,
              source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The header's fixed part (everything except ``tensors`` and ``experts``)."""
    return {
        "format": "edgemoe",
        "version": VERSION,
        "architecture": ARCHITECTURE,
        "hparams": dict(hparams),
        "tokenizer": dict(tokenizer) if tokenizer is not None else None,
        "source": dict(source or {}),
    }


def write_model(
    path: str | os.PathLike[str],
    hparams: Mapping[str, Any],
    tensors: Mapping[str, np.ndarray | RawTensor | tuple[str, np.ndarray]],
    tokenizer: TokenizerLike | tuple[Mapping[str, Any], bytes] | None = None,
    *,
    dense: str = "q8_0",
    source: Mapping[str, Any] | None = None,
    expert_alignment: int = EXPERT_ALIGNMENT,
    validate: bool = True,
) -> None:
    """Write a model.bin from in-memory arrays (for tests and small models).

    Each value of ``tensors`` is a numeric array (encoded to ``default_tensor_type(name,
    dense)``), a ``(type, array)`` pair (the array encoded to that type), or a
    ``RawTensor`` (bytes written as they are). ``tokenizer`` is a TokenizerSpec-like
    object or ``(header_dict, ranks_blob)``; its ranks go to the ``tokenizer.ranks`` tensor.
    """
    encoded: dict[str, tuple[str, tuple[int, ...], Any]] = {}
    for name, v in tensors.items():
        if isinstance(v, RawTensor):
            encoded[name] = (v.type, tuple(v.shape), v.data)
        else:
            typ, arr = v if isinstance(v, tuple) else (default_tensor_type(name, dense), v)
            arr = np.asarray(arr)
            encoded[name] = (typ, tuple(int(d) for d in arr.shape), encode_tensor(typ, arr))
    tok_header: dict[str, Any] | None = None
    if tokenizer is not None:
        if isinstance(tokenizer, tuple):
            tok_header, blob = dict(tokenizer[0]), tokenizer[1]
            tok_header["ranks_tensor"] = RANKS_TENSOR
        else:
            tok_header, blob = tokenizer_header(tokenizer), tokenizer.ranks_blob()
        encoded[RANKS_TENSOR] = ("u8", (len(blob),), blob)
    specs = [TensorSpec(n, t, s) for n, (t, s, _) in encoded.items()]
    meta = make_meta(hparams, tok_header, source)
    with ModelWriter(path, meta, specs, expert_alignment=expert_alignment,
                     validate=validate) as w:
        for name, (_, _, data) in encoded.items():
            w.write_tensor(name, data)
