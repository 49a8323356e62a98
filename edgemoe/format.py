"""model.bin v1: constants, validation and reader (the spec is docs/FORMAT.md).

The format's Python side is three modules with one job each:

- ``edgemoe.format`` (this one): 1. constants and tensor types (``MAGIC``, ``PREAMBLE``,
  ``tensor_nbytes``); 2. validation shared by writer and reader (hparams, required
  tensors, tokenizer, layout); 3. the reader ``read_model`` returning a memory-mapped
  ``ModelFile``;
- ``edgemoe.quant``: the quantizers (``quantize_q8_0``, ``quantize_mxfp4``, ``to_bf16``) and
  their ``dequantize_*`` twins, vectorized numpy following FORMAT.md's rules bit for bit;
- ``edgemoe.writer``: the streaming, atomic ``ModelWriter`` and the ``write_model``
  convenience.

``quant`` imports neither of the others; this module decodes tensors with ``quant``, and
``writer`` builds on both.
"""

from __future__ import annotations

import bisect
import json
import math
import mmap
import os
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.errors import (
    ChecksumError,
    ModelFormatError,
    ModelIOError,
    UnsupportedVersionError,
)
from edgemoe.quant import QK, decode_tensor, element_count

# =============================================================================== 1. constants

MAGIC = b"EDGEMOE\0"
VERSION = 1
#: magic, version, header_crc32, header_offset, header_length, data_offset, file_length,
#: alignment, expert_alignment, reserved
PREAMBLE = struct.Struct("<8sIIQQQQII8s")
PREAMBLE_SIZE = 64
HEADER_OFFSET = 64
ALIGNMENT = 64
EXPERT_ALIGNMENT = 65536
DATA_ALIGNMENT = 4096
MIN_EXPERT_ALIGNMENT = 4096
ARCHITECTURE = "gpt-oss"

assert PREAMBLE.size == PREAMBLE_SIZE

#: Every tensor type; values are (numerator, denominator) bytes per element.
TYPE_SIZES: dict[str, tuple[int, int]] = {
    "f32": (4, 1),
    "f16": (2, 1),
    "bf16": (2, 1),
    "u8": (1, 1),
    "q8_0": (34, QK),
    "mxfp4": (17, QK),
}
TYPES = tuple(TYPE_SIZES)
BLOCK_TYPES = frozenset({"q8_0", "mxfp4"})
#: Types allowed for the "dense type" matrices (embedding, attention projections, lm_head).
DENSE_TYPES = ("q8_0", "bf16", "f32", "mxfp4")

EXPERT_PARTS = ("gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias")
_EXPERT_RE = re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.([a-z_]+)$")


def align_up(n: int, a: int) -> int:
    """Round ``n`` up to a multiple of ``a`` (a power of two)."""
    return (n + a - 1) & ~(a - 1)


def is_pow2(n: int) -> bool:
    """True if ``n`` is a positive power of two."""
    return n > 0 and (n & (n - 1)) == 0


def expert_tensor_name(layer: int, expert: int, part: str) -> str:
    """Name of one expert tensor, e.g. ``model.layers.0.mlp.experts.3.down_proj``."""
    return f"model.layers.{layer}.mlp.experts.{expert}.{part}"


def parse_expert_name(name: str) -> tuple[int, int, str] | None:
    """``(layer, expert, part)`` of an expert tensor name, or None for any other name."""
    m = _EXPERT_RE.match(name)
    if m is None or m.group(3) not in EXPERT_PARTS:
        return None
    return int(m.group(1)), int(m.group(2)), m.group(3)


def tensor_nbytes(type_: str, shape: Sequence[int]) -> int:
    """Bytes of a tensor of this type and shape.

    Raises:
        ValueError: unknown type, negative dimension, or a block type whose last
            dimension is not a multiple of 32.
    """
    if type_ not in TYPE_SIZES:
        raise ValueError(f"unknown tensor type {type_!r} (known: {', '.join(TYPES)})")
    n = element_count(shape, type_ if type_ in BLOCK_TYPES else None)
    num, den = TYPE_SIZES[type_]
    return n * num // den


# =============================================================================== 2. validation


@dataclass(frozen=True)
class TensorSpec:
    """A tensor to be written: name, type and shape (outermost first)."""

    name: str
    type: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class TensorInfo:
    """A tensor in a model.bin: where its bytes are and their CRC-32."""

    name: str
    type: str
    shape: tuple[int, ...]
    offset: int
    length: int
    crc32: int


@dataclass(frozen=True)
class ExpertSpan:
    """The contiguous byte span holding one expert's four tensors."""

    layer: int
    expert: int
    offset: int
    length: int


_INT_HPARAMS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "num_local_experts",
    "num_experts_per_tok",
    "sliding_window",
    "max_position_embeddings",
)
_FLOAT_HPARAMS = ("rms_norm_eps", "swiglu_limit", "swiglu_alpha")
LAYER_TYPES = ("sliding_attention", "full_attention")
ROPE_TYPES = ("yarn", "default")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def validate_hparams(hp: object, where: str) -> None:
    """Check FORMAT.md's ``hparams`` object; raises ModelFormatError naming the field."""

    def bad(field: str, msg: str) -> ModelFormatError:
        return ModelFormatError(f"{where}: hparams.{field}: {msg}")

    if not isinstance(hp, dict):
        raise ModelFormatError(f"{where}: hparams: expected an object")
    for k in _INT_HPARAMS:
        if k not in hp:
            raise bad(k, "missing")
        if not _is_int(hp[k]) or hp[k] < 1:
            raise bad(k, f"must be a positive integer, got {hp[k]!r}")
    for k in _FLOAT_HPARAMS:
        if k not in hp:
            raise bad(k, "missing")
        if not _is_num(hp[k]) or hp[k] <= 0:
            raise bad(k, f"must be a positive number, got {hp[k]!r}")
    for k in ("hidden_size", "intermediate_size"):
        if hp[k] % QK:
            raise bad(k, f"must be a multiple of {QK}, got {hp[k]}")
    if hp["head_dim"] % 2:
        raise bad("head_dim", f"must be even, got {hp['head_dim']}")
    if hp["num_attention_heads"] % hp["num_key_value_heads"]:
        raise bad(
            "num_key_value_heads",
            f"{hp['num_key_value_heads']} does not divide "
            f"num_attention_heads {hp['num_attention_heads']}",
        )
    if hp["num_experts_per_tok"] > hp["num_local_experts"]:
        raise bad(
            "num_experts_per_tok",
            f"{hp['num_experts_per_tok']} > num_local_experts {hp['num_local_experts']}",
        )
    lt = hp.get("layer_types")
    if not isinstance(lt, list) or len(lt) != hp["num_hidden_layers"]:
        raise bad("layer_types", f"must be a list of num_hidden_layers={hp['num_hidden_layers']}")
    for i, t in enumerate(lt):
        if t not in LAYER_TYPES:
            raise bad(f"layer_types[{i}]", f"must be one of {LAYER_TYPES}, got {t!r}")
    _validate_rope(hp.get("rope"), bad)
    eos = hp.get("eos_token_ids")
    if not isinstance(eos, list):
        raise bad("eos_token_ids", "must be a list of token ids")
    for i, t in enumerate(eos):
        if not _is_int(t) or not 0 <= t:
            raise bad(f"eos_token_ids[{i}]", f"must be a non-negative integer, got {t!r}")


def _validate_rope(rope: object, bad: Any) -> None:
    if not isinstance(rope, dict):
        raise bad("rope", "missing or not an object")
    if rope.get("type") not in ROPE_TYPES:
        raise bad("rope.type", f"must be one of {ROPE_TYPES}, got {rope.get('type')!r}")
    fields = ["theta"]
    if rope["type"] == "yarn":
        fields += ["factor", "beta_fast", "beta_slow", "original_max_position_embeddings"]
    for k in fields:
        if not _is_num(rope.get(k)) or rope[k] <= 0:
            raise bad(f"rope.{k}", f"must be a positive number, got {rope.get(k)!r}")
    if rope["type"] == "yarn" and not isinstance(rope.get("truncate"), bool):
        raise bad("rope.truncate", f"must be true or false, got {rope.get('truncate')!r}")


def required_tensors(hp: Mapping[str, Any]) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """Every tensor architecture gpt-oss needs: name -> (allowed types, shape)."""
    V, H, I = hp["vocab_size"], hp["hidden_size"], hp["intermediate_size"]  # noqa: E741
    nh, nkv, hd, E = (
        hp["num_attention_heads"],
        hp["num_key_value_heads"],
        hp["head_dim"],
        hp["num_local_experts"],
    )
    dense, f32, mx = DENSE_TYPES, ("f32",), ("mxfp4",)
    req: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
        "model.embed_tokens.weight": (dense, (V, H)),
        "model.norm.weight": (f32, (H,)),
        "lm_head.weight": (dense, (V, H)),
    }
    for n in range(hp["num_hidden_layers"]):
        p = f"model.layers.{n}."
        req[p + "input_layernorm.weight"] = (f32, (H,))
        req[p + "post_attention_layernorm.weight"] = (f32, (H,))
        for proj, rows in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd)):
            req[p + f"self_attn.{proj}_proj.weight"] = (dense, (rows, H))
            req[p + f"self_attn.{proj}_proj.bias"] = (f32, (rows,))
        req[p + "self_attn.o_proj.weight"] = (dense, (H, nh * hd))
        req[p + "self_attn.o_proj.bias"] = (f32, (H,))
        req[p + "self_attn.sinks"] = (f32, (nh,))
        req[p + "mlp.router.weight"] = (f32, (E, H))
        req[p + "mlp.router.bias"] = (f32, (E,))
        for e in range(E):
            req[expert_tensor_name(n, e, "gate_up_proj")] = (mx, (2 * I, H))
            req[expert_tensor_name(n, e, "gate_up_proj_bias")] = (f32, (2 * I,))
            req[expert_tensor_name(n, e, "down_proj")] = (mx, (H, I))
            req[expert_tensor_name(n, e, "down_proj_bias")] = (f32, (H,))
    return req


def validate_tokenizer(tok: object, hp: Mapping[str, Any], tensors: Mapping[str, Any],
                       where: str) -> None:
    """Check the header's ``tokenizer`` object (or null) against hparams and tensors."""
    if tok is None:
        return

    def bad(field: str, msg: str) -> ModelFormatError:
        return ModelFormatError(f"{where}: tokenizer.{field}: {msg}")

    if not isinstance(tok, dict):
        raise ModelFormatError(f"{where}: tokenizer: expected an object or null")
    if tok.get("kind") != "tiktoken-bpe":
        raise bad("kind", f"must be 'tiktoken-bpe', got {tok.get('kind')!r}")
    for k in ("name", "pat_str"):
        if not isinstance(tok.get(k), str):
            raise bad(k, "must be a string")
    n_vocab = tok.get("n_vocab")
    if not _is_int(n_vocab) or not 0 < n_vocab <= hp["vocab_size"]:
        raise bad("n_vocab", f"must be in 1..vocab_size={hp['vocab_size']}, got {n_vocab!r}")
    specials = tok.get("special_tokens")
    if not isinstance(specials, dict):
        raise bad("special_tokens", "must be an object")
    for name, i in specials.items():
        if not _is_int(i) or not 0 <= i < n_vocab:
            raise bad(f"special_tokens[{name!r}]", f"id {i!r} outside 0..{n_vocab - 1}")
    rt = tok.get("ranks_tensor")
    t = tensors.get(rt) if isinstance(rt, str) else None
    if t is None:
        raise bad("ranks_tensor", f"names no tensor: {rt!r}")
    if t.type != "u8" or len(t.shape) != 1:
        raise bad("ranks_tensor", f"tensor {rt!r} must be 1-D u8, got {t.type} {list(t.shape)}")


def validate_tensor_set(hp: Mapping[str, Any], tensors: Mapping[str, Any], where: str) -> None:
    """Check every required tensor is present with an allowed type and the right shape."""
    for name, (types, shape) in required_tensors(hp).items():
        t = tensors.get(name)
        if t is None:
            raise ModelFormatError(f"{where}: tensors: missing tensor {name!r}")
        if t.type not in types:
            raise ModelFormatError(
                f"{where}: tensor {name!r}: type {t.type} not allowed (expected {'|'.join(types)})"
            )
        if tuple(t.shape) != shape:
            raise ModelFormatError(
                f"{where}: tensor {name!r}: shape {list(t.shape)}, expected {list(shape)}"
            )


def validate_header(header: object, where: str) -> None:
    """Check the header's top-level keys, hparams and tokenizer (not the tensor layout)."""
    if not isinstance(header, dict):
        raise ModelFormatError(f"{where}: header: the JSON is not an object")
    if header.get("format") != "edgemoe":
        raise ModelFormatError(f"{where}: header.format: expected 'edgemoe', got "
                               f"{header.get('format')!r}")
    if header.get("version") != VERSION:
        raise UnsupportedVersionError(
            f"{where}: header.version: {header.get('version')!r}, this reader knows {VERSION}"
        )
    if header.get("architecture") != ARCHITECTURE:
        raise ModelFormatError(
            f"{where}: header.architecture: {header.get('architecture')!r} is not supported "
            f"(expected {ARCHITECTURE!r})"
        )
    validate_hparams(header.get("hparams"), where)


# =============================================================================== 3. reader


class ModelFile:
    """An open, validated model.bin, memory-mapped read-only. Use ``read_model``."""

    def __init__(self, path: Path, mm: mmap.mmap, fields: tuple[Any, ...],
                 header: dict[str, Any], tensors: dict[str, TensorInfo],
                 experts: list[ExpertSpan]) -> None:
        self.path = path
        self._mm: mmap.mmap | None = mm
        (_, self.version, self.header_crc32, self.header_offset, self.header_length,
         self.data_offset, self.file_length, self.alignment, self.expert_alignment,
         _) = fields
        self.header = header
        self.hparams: dict[str, Any] = header["hparams"]
        self.tokenizer: dict[str, Any] | None = header.get("tokenizer")
        self.tensors = tensors
        self.experts = experts

    def _map(self) -> mmap.mmap:
        if self._mm is None:
            raise ValueError(f"{self.path}: model file is closed")
        return self._mm

    def tensor_bytes(self, name: str) -> memoryview:
        """The tensor's bytes (a read-only view into the mapping; KeyError if absent)."""
        t = self.tensors[name]
        return memoryview(self._map())[t.offset : t.offset + t.length]

    def tensor(self, name: str) -> np.ndarray:
        """The tensor decoded to numpy (f32 for float types, uint8 for u8); a copy."""
        t = self.tensors[name]
        return np.array(decode_tensor(t.type, self.tensor_bytes(name), t.shape))

    def verify(self) -> None:
        """Check every tensor's CRC-32; raises ChecksumError naming the first bad tensor."""
        mm = self._map()
        step = 1 << 24
        for t in sorted(self.tensors.values(), key=lambda t: t.offset):
            crc = 0
            with memoryview(mm) as view:
                for off in range(t.offset, t.offset + t.length, step):
                    crc = zlib.crc32(view[off : min(off + step, t.offset + t.length)], crc)
            if crc != t.crc32:
                raise ChecksumError(
                    f"{self.path}: tensor {t.name!r}: CRC-32 {crc:08x} does not match the "
                    f"header's {t.crc32:08x} (the file is corrupt)"
                )

    def close(self) -> None:
        """Unmap the file. Views from ``tensor_bytes`` still alive keep the mapping open."""
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # released when the last exported view is garbage-collected

    def __enter__(self) -> ModelFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_model(path: str | os.PathLike[str]) -> ModelFile:
    """Open and validate a model.bin (FORMAT.md "Reading"; tensor CRCs are checked only by
    ``ModelFile.verify``).

    Raises:
        ModelIOError: the file cannot be opened or mapped.
        UnsupportedVersionError: a format version other than 1.
        ChecksumError: the header's CRC-32 does not match.
        ModelFormatError: anything else; the message names the file and the field.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < PREAMBLE_SIZE:
                raise ModelFormatError(
                    f"{p}: file is {size} bytes, shorter than the {PREAMBLE_SIZE}-byte preamble"
                )
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise ModelIOError(f"{p}: cannot open: {e.strerror or e}") from e
    try:
        fields = PREAMBLE.unpack_from(mm, 0)
        _check_preamble(str(p), fields, size)
        header = _parse_header(str(p), mm, fields)
        tensors, experts = _parse_layout(str(p), header, fields)
        validate_tensor_set(header["hparams"], tensors, str(p))
        validate_tokenizer(header.get("tokenizer"), header["hparams"], tensors, str(p))
        _check_experts(str(p), header["hparams"], tensors, experts, fields[8])
    except BaseException:
        mm.close()
        raise
    return ModelFile(p, mm, fields, header, tensors, experts)


def _check_preamble(where: str, fields: tuple[Any, ...], size: int) -> None:
    magic, version, _, h_off, h_len, d_off, f_len, align, e_align, _ = fields
    if magic != MAGIC:
        raise ModelFormatError(f"{where}: magic: {magic!r} is not {MAGIC!r} (not a model.bin)")
    if version != VERSION:
        raise UnsupportedVersionError(
            f"{where}: version: file is format version {version}, this reader knows {VERSION}"
        )
    if h_off != HEADER_OFFSET:
        raise ModelFormatError(f"{where}: header_offset: {h_off}, expected {HEADER_OFFSET}")
    if not h_off + h_len <= d_off <= f_len:
        raise ModelFormatError(
            f"{where}: header_length/data_offset/file_length: need header_offset + "
            f"header_length ({h_off} + {h_len}) <= data_offset ({d_off}) <= file_length ({f_len})"
        )
    if d_off % DATA_ALIGNMENT:
        raise ModelFormatError(f"{where}: data_offset: {d_off} not a multiple of {DATA_ALIGNMENT}")
    if f_len != size:
        raise ModelFormatError(
            f"{where}: file_length: header says {f_len} bytes, file has {size} "
            f"({'truncated' if size < f_len else 'appended to'})"
        )
    if not is_pow2(align):
        raise ModelFormatError(f"{where}: alignment: {align} is not a power of two")
    if not is_pow2(e_align) or e_align < MIN_EXPERT_ALIGNMENT:
        raise ModelFormatError(
            f"{where}: expert_alignment: {e_align} is not a power of two >= {MIN_EXPERT_ALIGNMENT}"
        )


def _parse_header(where: str, mm: mmap.mmap, fields: tuple[Any, ...]) -> dict[str, Any]:
    crc, h_off, h_len = fields[2], fields[3], fields[4]
    raw = mm[h_off : h_off + h_len]
    actual = zlib.crc32(raw)
    if actual != crc:
        raise ChecksumError(
            f"{where}: header_crc32: header CRC-32 {actual:08x} does not match the "
            f"preamble's {crc:08x} (the header is corrupt)"
        )

    def no_constant(s: str) -> float:
        raise ValueError(f"{s} is not allowed")

    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelFormatError(f"{where}: header: invalid JSON: {e}") from e
    validate_header(header, where)
    return header


def _parse_layout(where: str, header: dict[str, Any], fields: tuple[Any, ...]
                  ) -> tuple[dict[str, TensorInfo], list[ExpertSpan]]:
    d_off, f_len, align = fields[5], fields[6], fields[7]
    entries = header.get("tensors")
    if not isinstance(entries, list):
        raise ModelFormatError(f"{where}: tensors: expected a list")
    tensors: dict[str, TensorInfo] = {}
    for i, e in enumerate(entries):
        t = _parse_tensor_entry(f"{where}: tensors[{i}]", e, d_off, f_len, align)
        if t.name in tensors:
            raise ModelFormatError(f"{where}: tensors[{i}].name: duplicate {t.name!r}")
        tensors[t.name] = t
    ordered = sorted(tensors.values(), key=lambda t: t.offset)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.offset + a.length > b.offset:
            raise ModelFormatError(f"{where}: tensor {b.name!r}: overlaps tensor {a.name!r}")
    spans_raw = header.get("experts")
    if not isinstance(spans_raw, list):
        raise ModelFormatError(f"{where}: experts: expected a list")
    experts = [_parse_span(f"{where}: experts[{i}]", s, d_off, f_len, fields[8])
               for i, s in enumerate(spans_raw)]
    return tensors, experts


def _parse_tensor_entry(where: str, e: object, d_off: int, f_len: int, align: int) -> TensorInfo:
    if not isinstance(e, dict):
        raise ModelFormatError(f"{where}: expected an object")
    name = e.get("name")
    if not isinstance(name, str):
        raise ModelFormatError(f"{where}.name: expected a string")
    where = f"{where} ({name!r})"
    typ, shape = e.get("type"), e.get("shape")
    if typ not in TYPE_SIZES:
        raise ModelFormatError(f"{where}.type: unknown type {typ!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise ModelFormatError(f"{where}.shape: expected a list of non-negative integers")
    try:
        expected = tensor_nbytes(typ, shape)
    except ValueError as err:
        raise ModelFormatError(f"{where}.shape: {err}") from err
    off, length, crc = e.get("offset"), e.get("length"), e.get("crc32")
    if not _is_int(off) or not _is_int(length):
        raise ModelFormatError(f"{where}.offset/length: expected integers")
    if off % align:
        raise ModelFormatError(f"{where}.offset: {off} is not a multiple of {align}")
    if not (d_off <= off and length >= 0 and off + length <= f_len):
        raise ModelFormatError(
            f"{where}.offset: [{off}, {off + length}) is outside the data section "
            f"[{d_off}, {f_len})"
        )
    if length != expected:
        raise ModelFormatError(
            f"{where}.length: {length}, but type {typ} shape {shape} needs {expected}"
        )
    if not isinstance(crc, str) or not re.fullmatch(r"[0-9a-f]{8}", crc):
        raise ModelFormatError(f"{where}.crc32: expected 8 lowercase hex digits, got {crc!r}")
    return TensorInfo(name, typ, tuple(shape), off, length, int(crc, 16))


def _parse_span(where: str, s: object, d_off: int, f_len: int, e_align: int) -> ExpertSpan:
    if not isinstance(s, dict) or not all(
        _is_int(s.get(k)) and s[k] >= 0 for k in ("layer", "expert", "offset", "length")
    ):
        raise ModelFormatError(f"{where}: expected layer, expert, offset, length integers")
    span = ExpertSpan(s["layer"], s["expert"], s["offset"], s["length"])
    if span.offset % e_align:
        raise ModelFormatError(
            f"{where}.offset: {span.offset} is not a multiple of expert_alignment {e_align}"
        )
    if not (d_off <= span.offset and span.offset + span.length <= f_len):
        raise ModelFormatError(
            f"{where}.offset: [{span.offset}, {span.offset + span.length}) is outside the "
            f"data section [{d_off}, {f_len})"
        )
    return span


def _check_experts(where: str, hp: Mapping[str, Any], tensors: Mapping[str, TensorInfo],
                   experts: Sequence[ExpertSpan], e_align: int) -> None:
    n_layers, n_experts = hp["num_hidden_layers"], hp["num_local_experts"]
    by_key: dict[tuple[int, int], ExpertSpan] = {}
    for i, s in enumerate(experts):
        if s.layer >= n_layers or s.expert >= n_experts:
            raise ModelFormatError(
                f"{where}: experts[{i}]: layer {s.layer} expert {s.expert} does not exist"
            )
        if (s.layer, s.expert) in by_key:
            raise ModelFormatError(
                f"{where}: experts[{i}]: duplicate span for layer {s.layer} expert {s.expert}"
            )
        by_key[(s.layer, s.expert)] = s
    ordered = sorted(tensors.values(), key=lambda t: t.offset)
    offsets = [t.offset for t in ordered]
    for n in range(n_layers):
        for e in range(n_experts):
            span = by_key.get((n, e))
            if span is None:
                raise ModelFormatError(f"{where}: experts: no span for layer {n} expert {e}")
            end = span.offset + span.length
            lo = bisect.bisect_left(offsets, span.offset)
            hi = bisect.bisect_left(offsets, end)
            inside = [t.name for t in ordered[lo:hi]]
            want = [expert_tensor_name(n, e, p) for p in EXPERT_PARTS]
            last = tensors[want[-1]]
            if inside != want or offsets[lo] != span.offset or last.offset + last.length != end:
                raise ModelFormatError(
                    f"{where}: experts: span of layer {n} expert {e} [{span.offset}, {end}) "
                    f"does not hold exactly its four tensors in order {', '.join(EXPERT_PARTS)}"
                )
