"""model.bin tensor encodings: the q8_0, mxfp4 and bf16 quantizers and their decoders.

Vectorized numpy following docs/FORMAT.md's rules bit for bit ("Quantization rules");
``encode_tensor`` and ``decode_tensor`` dispatch on the tensor type. The file format's
constants, validation and reader are ``edgemoe.format``, the writer ``edgemoe.writer``;
this module imports neither.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

QK = 32  # elements per q8_0 / mxfp4 block

FP4_VALUES = np.array(
    [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32
)
# Midpoints between consecutive FP4 magnitudes; a tie goes to the lower magnitude.
_FP4_MIDPOINTS = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], dtype=np.float32)

Q8_0_BLOCK = np.dtype([("d", "<f2"), ("q", "i1", (QK,))])
assert Q8_0_BLOCK.itemsize == 34


def element_count(shape: Sequence[int], block_type: str | None = None) -> int:
    """Number of elements of ``shape``, checked; with ``block_type`` (q8_0 or mxfp4) the
    last dimension must also be a multiple of 32 (``edgemoe.format.tensor_nbytes`` uses it).

    Raises:
        ValueError: a negative or non-integer dimension, or a block type whose last
            dimension is not a multiple of 32.
    """
    n = 1
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            raise ValueError(f"bad dimension {d!r} in shape {list(shape)}")
        n *= d
    if block_type is not None:
        if len(shape) == 0 or shape[-1] % QK != 0:
            raise ValueError(
                f"type {block_type} needs a last dimension that is a multiple of {QK}, "
                f"got shape {list(shape)}"
            )
    return n


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
    blocks = np.frombuffer(data, dtype=Q8_0_BLOCK, count=element_count(shape, "q8_0") // QK)
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
    nbytes = element_count(shape, "mxfp4") * 17 // QK
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
