"""model.bin v1: constants, quantizers, writer and reader (the spec is docs/FORMAT.md).

This module is the single source of truth for the format in Python. Sections:

1. constants and tensor types (``MAGIC``, ``PREAMBLE``, ``tensor_nbytes``);
2. quantizers (``quantize_q8_0``, ``quantize_mxfp4``, ``to_bf16``) and their
   ``dequantize_*`` twins, vectorized numpy following FORMAT.md's rules bit for bit;
3. validation shared by writer and reader (hparams, required tensors, layout);
4. the streaming, atomic ``ModelWriter`` and the ``write_model`` convenience;
5. the reader ``read_model`` returning a memory-mapped ``ModelFile``.
"""

from __future__ import annotations

import bisect
import json
import math
import mmap
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgemoe.errors import (
    ChecksumError,
    ModelFormatError,
    ModelIOError,
    UnsupportedVersionError,
)

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
QK = 32  # elements per q8_0 / mxfp4 block

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
DENSE_TYPES = ("q8_0", "bf16", "f32")

EXPERT_PARTS = ("gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias")
_EXPERT_RE = re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.([a-z_]+)$")

FP4_VALUES = np.array(
    [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32
)
# Midpoints between consecutive FP4 magnitudes; a tie goes to the lower magnitude.
_FP4_MIDPOINTS = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], dtype=np.float32)

Q8_0_BLOCK = np.dtype([("d", "<f2"), ("q", "i1", (QK,))])
assert Q8_0_BLOCK.itemsize == 34


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
    n = 1
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            raise ValueError(f"bad dimension {d!r} in shape {list(shape)}")
        n *= d
    if type_ in BLOCK_TYPES:
        if len(shape) == 0 or shape[-1] % QK != 0:
            raise ValueError(
                f"type {type_} needs a last dimension that is a multiple of {QK}, "
                f"got shape {list(shape)}"
            )
    num, den = TYPE_SIZES[type_]
    return n * num // den


# =============================================================================== 2. quantizers


def _as_f32_blocks(x: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 0 or a.shape[-1] % QK != 0:
        raise ValueError(f"{what}: last dimension must be a multiple of {QK}, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: input contains NaN or infinity")
    return a.reshape(-1, QK)


def round_half_away(v: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves away from zero (C ``roundf``), exactly."""
    t = np.trunc(v)
    frac = v - t  # exact for floats
    return np.where(np.abs(frac) >= 0.5, t + np.sign(v), t)


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """Quantize to q8_0 (FORMAT.md rule); returns the tensor's bytes as a 1-D uint8 array.

    Per block of 32 along the last dimension: ``d = f16(min(amax / 127, 65504))`` (the
    division in f32), ``q = clamp(round_half_away(x / f32(d)), -127, 127)`` (an f32
    division), ``q = 0`` when ``d == 0``.
    """
    b = _as_f32_blocks(x, "q8_0")
    amax = np.abs(b).max(axis=1)
    d16 = np.minimum(amax / np.float32(127), np.float32(65504)).astype(np.float16)
    d32 = d16.astype(np.float32)
    safe = np.where(d32 == 0, np.float32(1), d32)[:, None]
    q = np.clip(round_half_away(b / safe), -127, 127)
    q[d32 == 0] = 0
    out = np.empty(b.shape[0], dtype=Q8_0_BLOCK)
    out["d"] = d16
    out["q"] = q.astype(np.int8)
    return out.view(np.uint8).reshape(-1)


def dequantize_q8_0(data: Any, shape: Sequence[int]) -> np.ndarray:
    """Decode q8_0 bytes to an f32 array of ``shape``."""
    blocks = np.frombuffer(data, dtype=Q8_0_BLOCK, count=tensor_nbytes("q8_0", shape) // 34)
    v = blocks["d"].astype(np.float32)[:, None] * blocks["q"].astype(np.float32)
    return v.reshape(tuple(shape))


def mxfp4_exponents(amax: np.ndarray) -> np.ndarray:
    """Scale exponent per block: the smallest integer e with ``amax <= 6 * 2**e``, exactly.

    With ``amax = m * 2**k`` (frexp, m in [0.5, 1)): ``e = k - 3`` if ``m <= 0.75`` else
    ``k - 2``; ``amax == 0`` gives -127; the result is clamped to [-127, 127].
    """
    m, k = np.frexp(np.asarray(amax, dtype=np.float32))
    e = np.where(m <= np.float32(0.75), k - 3, k - 2).astype(np.int32)
    e = np.where(amax == 0, -127, e)
    return np.clip(e, -127, 127).astype(np.int32)


def quantize_mxfp4_blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantize ``x[..., K]`` to MXFP4 in gpt-oss's layout: ``(blocks[..., K/32, 16],
    scales[..., K/32])`` uint8 (FORMAT.md rule: nearest code, ties to the lower code index).
    """
    a = np.asarray(x, dtype=np.float32)
    b = _as_f32_blocks(a, "mxfp4")
    e = mxfp4_exponents(np.abs(b).max(axis=1))
    v = np.ldexp(b, (-e)[:, None])
    av = np.abs(v)
    mag = np.zeros(av.shape, np.uint8)
    for mid in _FP4_MIDPOINTS:  # magnitude index = number of midpoints strictly below |v|
        mag += av > mid
    codes = np.where((v < 0) & (mag > 0), mag | 8, mag).astype(np.uint8)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    lead = a.shape[:-1]
    g = a.shape[-1] // QK
    blocks = packed.reshape(*lead, g, 16)
    scales = (e + 127).astype(np.uint8).reshape(*lead, g)
    return blocks, scales


def pack_mxfp4(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """FORMAT.md's planar mxfp4 bytes (all blocks, then all scales) as a 1-D uint8 array."""
    blocks = np.asarray(blocks, dtype=np.uint8)
    scales = np.asarray(scales, dtype=np.uint8)
    if blocks.shape[-1] != 16 or blocks.shape[:-1] != scales.shape:
        raise ValueError(f"mxfp4 blocks {blocks.shape} and scales {scales.shape} do not match")
    return np.concatenate([blocks.reshape(-1), scales.reshape(-1)])


def quantize_mxfp4(x: np.ndarray) -> np.ndarray:
    """Quantize ``x[..., K]`` to the planar mxfp4 bytes of FORMAT.md (1-D uint8)."""
    return pack_mxfp4(*quantize_mxfp4_blocks(x))


def unpack_mxfp4(data: Any, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Split planar mxfp4 bytes into ``(blocks[R, K/32, 16], scales[R, K/32])`` views."""
    nbytes = tensor_nbytes("mxfp4", shape)
    raw = np.frombuffer(data, dtype=np.uint8, count=nbytes)
    n_groups = nbytes // 17
    g = shape[-1] // QK
    blocks = raw[: n_groups * 16].reshape(-1, g, 16)
    scales = raw[n_groups * 16 :].reshape(-1, g)
    return blocks, scales


def dequantize_mxfp4(data: Any, shape: Sequence[int]) -> np.ndarray:
    """Decode planar mxfp4 bytes to an f32 array of ``shape``."""
    blocks, scales = unpack_mxfp4(data, shape)
    v = np.stack([FP4_VALUES[blocks & 15], FP4_VALUES[blocks >> 4]], axis=-1)
    v = v.reshape(*blocks.shape[:-1], QK)
    out = np.ldexp(v, scales.astype(np.int32)[..., None] - 127)
    return out.astype(np.float32).reshape(tuple(shape))


def to_bf16(x: np.ndarray) -> np.ndarray:
    """Round f32 to bfloat16, nearest even; returns the bits as uint16 (NaN stays quiet NaN)."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    u = a.view(np.uint32)
    # Only NaNs can wrap around in uint32 here, and they are replaced below.
    out = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        out[nan] = (u[nan] >> 16).astype(np.uint16) | np.uint16(0x40)
    return out


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bits (uint16) to f32 exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def encode_tensor(type_: str, x: np.ndarray) -> np.ndarray:
    """Encode a numeric array as a tensor of ``type_``; returns its bytes as 1-D uint8."""
    if type_ == "f32":
        out = np.ascontiguousarray(x, dtype="<f4")
    elif type_ == "f16":
        out = np.ascontiguousarray(x, dtype="<f2")
    elif type_ == "bf16":
        out = to_bf16(np.asarray(x, dtype=np.float32)).astype("<u2")
    elif type_ == "u8":
        out = np.ascontiguousarray(x, dtype=np.uint8)
    elif type_ == "q8_0":
        return quantize_q8_0(x)
    elif type_ == "mxfp4":
        return quantize_mxfp4(x)
    else:
        raise ValueError(f"unknown tensor type {type_!r}")
    return out.reshape(-1).view(np.uint8)


def decode_tensor(type_: str, data: Any, shape: Sequence[int]) -> np.ndarray:
    """Decode a tensor's bytes to an array of ``shape``: f32 for float types, uint8 for u8."""
    count = math.prod(shape)
    if type_ == "f32":
        return np.frombuffer(data, "<f4", count).astype(np.float32).reshape(tuple(shape))
    if type_ == "f16":
        return np.frombuffer(data, "<f2", count).astype(np.float32).reshape(tuple(shape))
    if type_ == "bf16":
        return bf16_to_f32(np.frombuffer(data, "<u2", count)).reshape(tuple(shape))
    if type_ == "u8":
        return np.frombuffer(data, np.uint8, count).reshape(tuple(shape))
    if type_ == "q8_0":
        return dequantize_q8_0(data, shape)
    if type_ == "mxfp4":
        return dequantize_mxfp4(data, shape)
    raise ValueError(f"unknown tensor type {type_!r}")


# =============================================================================== 3. validation


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


# =============================================================================== 4. writer


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


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while len(view):
        n = os.pwrite(fd, view, offset)
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
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        self._fd, self._tmp = fd, tmp
        try:
            os.ftruncate(fd, self.file_length)
            header = _header_bytes(self._meta, self._infos, self.spans)
            _pwrite_all(fd, memoryview(header), HEADER_OFFSET)
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
            _pwrite_all(self._fd, view, pos)
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
            _pwrite_all(self._fd, memoryview(header), HEADER_OFFSET)
            pre = PREAMBLE.pack(MAGIC, VERSION, zlib.crc32(header), HEADER_OFFSET,
                                self.header_length, self.data_offset, self.file_length,
                                ALIGNMENT, self.expert_alignment, bytes(8))
            _pwrite_all(self._fd, memoryview(pre), 0)
            os.fchmod(self._fd, 0o666 & ~_umask())
            os.fsync(self._fd)
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


def default_tensor_type(name: str, dense: str = "q8_0") -> str:
    """FORMAT.md's type for a tensor name: mxfp4 expert matrices, ``dense`` for the
    embedding/attention/lm_head matrices, u8 for the tokenizer, f32 otherwise."""
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


# =============================================================================== 5. reader


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
