"""Synthetic gpt-oss checkpoints in Hugging Face layout (``--synthetic P --synthetic-format hf``).

Writes a directory shaped like the published openai/gpt-oss-20b repo: config.json (legacy
``rope_theta`` + ``rope_scaling`` keys and ``quantization_config`` as published),
generation_config.json, ``model-0000i-of-0000n.safetensors`` shards with
model.safetensors.index.json, and the o200k_harmony tokenizer files. Dense weights, biases,
norms and sinks are BF16; experts are MXFP4 ``*_blocks`` [E, R, K/32, 16] / ``*_scales``
[E, R, K/32] (uint8) with BF16 ``*_bias`` [E, R]. The values follow the model.bin writer's
recipe (``synthetic.value_fill``): seeded, random FP4 codes with one scale byte per tensor,
so activations stay finite. Both ``edgemoe quantize DIR`` and llama.cpp's
convert_hf_to_gguf.py read it.

Each shard's header is written first (all shapes are known), then the tensor data is
streamed in chunks (``DirectWriter``: O_DIRECT, writes overlapped with generating the next
values), so memory stays flat and writing is bound by the disk. Everything goes
to ``OUT.partial-PID`` next to ``OUT``, is fsynced, and is renamed to ``OUT`` only when
complete (the index is written last).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.errors import ConversionError
from edgemoe.quant import bf16_to_f32, to_bf16

from .direct_writer import DirectWriter
from .progress import Progress
from .synthetic import (
    PRESETS,
    _o200k_spec,
    check_routing_skew,
    mxfp4_scale_byte,
    router_bias_offsets,
    value_fill,
)
from .tokenizer_files import harmony_tokenizer_files

#: Largest shard, in bytes of tensor data (transformers' default ``max_shard_size="5GB"``).
MAX_SHARD_BYTES = 5_000_000_000
#: Elements (or bytes) produced at a time; temporaries are a few times this in bytes.
CHUNK = 1 << 22

MODULES_NOT_CONVERTED = [
    "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head",
]
_BOS, _ENDOFTEXT, _RETURN, _CALL = 199998, 199999, 200002, 200012  # o200k_harmony ids


@dataclass(frozen=True)
class HfTensor:
    """One checkpoint tensor and how to fill it: ``normal`` (BF16 values of ``std`` around
    ``mean``), ``codes`` (random bytes: FP4 blocks) or ``scale`` (every byte ``fill``)."""

    name: str
    dtype: str  # "BF16" or "U8"
    shape: tuple[int, ...]
    kind: str
    std: float = 0.0
    mean: float = 0.0
    fill: int = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's data."""
        return math.prod(self.shape) * (2 if self.dtype == "BF16" else 1)


# ------------------------------------------------------------------------------ plan


def _bf16(name: str, shape: tuple[int, ...]) -> HfTensor:
    std, mean = value_fill(name, shape)
    return HfTensor(name, "BF16", shape, "normal", std, mean)


def _experts(prefix: str, E: int, part: str, rows: int, cols: int) -> list[HfTensor]:
    """``part``'s blocks, scales and bias for a logical [E, rows, cols] MXFP4 weight."""
    stem = prefix + part
    scale = mxfp4_scale_byte(value_fill(stem, (rows, cols))[0])
    return [
        HfTensor(stem + "_blocks", "U8", (E, rows, cols // 32, 16), "codes"),
        HfTensor(stem + "_scales", "U8", (E, rows, cols // 32), "scale", fill=scale),
        _bf16(stem + "_bias", (E, rows)),
    ]


def _layer(hp: dict[str, Any], n: int) -> list[HfTensor]:
    H, FF, E = hp["hidden_size"], hp["intermediate_size"], hp["num_local_experts"]
    nh, hd = hp["num_attention_heads"], hp["head_dim"]
    q, kv = nh * hd, hp["num_key_value_heads"] * hd
    p = f"model.layers.{n}."
    out = [_bf16(p + "input_layernorm.weight", (H,))]
    for proj, rows, cols in (("q", q, H), ("k", kv, H), ("v", kv, H), ("o", H, q)):
        out += [_bf16(p + f"self_attn.{proj}_proj.weight", (rows, cols)),
                _bf16(p + f"self_attn.{proj}_proj.bias", (rows,))]
    out += [
        _bf16(p + "self_attn.sinks", (nh,)),
        _bf16(p + "post_attention_layernorm.weight", (H,)),
        _bf16(p + "mlp.router.weight", (E, H)),
        _bf16(p + "mlp.router.bias", (E,)),
    ]
    out += _experts(p + "mlp.experts.", E, "gate_up_proj", 2 * FF, H)
    out += _experts(p + "mlp.experts.", E, "down_proj", H, FF)
    return out


def hf_plan(hp: dict[str, Any]) -> list[HfTensor]:
    """Every tensor of the checkpoint, in file order (the published names and shapes)."""
    V, H = hp["vocab_size"], hp["hidden_size"]
    out = [_bf16("model.embed_tokens.weight", (V, H))]
    for n in range(hp["num_hidden_layers"]):
        out += _layer(hp, n)
    return out + [_bf16("model.norm.weight", (H,)), _bf16("lm_head.weight", (V, H))]


def shard_plan(plan: list[HfTensor], max_bytes: int = MAX_SHARD_BYTES
               ) -> dict[str, list[HfTensor]]:
    """File name -> its tensors: consecutive tensors, at most ``max_bytes`` per shard (a
    larger tensor gets a shard of its own)."""
    groups: list[list[HfTensor]] = [[]]
    size = 0
    for t in plan:
        if groups[-1] and size + t.nbytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.nbytes
    n = len(groups)
    return {f"model-{i:05d}-of-{n:05d}.safetensors": g for i, g in enumerate(groups, 1)}


# ------------------------------------------------------------------------------ json files


def hf_config(hp: dict[str, Any], preset: str, seed: int, routing_skew: float = 0.0
              ) -> dict[str, Any]:
    """config.json as published for gpt-oss (legacy rope keys), with ``hp``'s values; the
    ``edgemoe_synthetic`` key records the preset, seed and any routing skew."""
    rope = hp["rope"]
    theta = rope["theta"]
    synthetic: dict[str, Any] = {"preset": preset, "seed": seed,
                                 "weights": "random (not a trained model)"}
    if routing_skew:
        synthetic["routing_skew"] = routing_skew
    return {
        "architectures": ["GptOssForCausalLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "eos_token_id": _RETURN,
        "experts_per_token": hp["num_experts_per_tok"],
        "head_dim": hp["head_dim"],
        "hidden_act": "silu",
        "hidden_size": hp["hidden_size"],
        "initial_context_length": rope["original_max_position_embeddings"],
        "initializer_range": 0.02,
        "intermediate_size": hp["intermediate_size"],
        "layer_types": list(hp["layer_types"]),
        "max_position_embeddings": hp["max_position_embeddings"],
        "model_type": "gpt_oss",
        "num_attention_heads": hp["num_attention_heads"],
        "num_experts_per_tok": hp["num_experts_per_tok"],
        "num_hidden_layers": hp["num_hidden_layers"],
        "num_key_value_heads": hp["num_key_value_heads"],
        "num_local_experts": hp["num_local_experts"],
        "output_router_logits": False,
        "pad_token_id": _ENDOFTEXT,
        "quantization_config": {"modules_to_not_convert": list(MODULES_NOT_CONVERTED),
                                "quant_method": "mxfp4"},
        "rms_norm_eps": hp["rms_norm_eps"],
        "rope_scaling": {
            "beta_fast": rope["beta_fast"], "beta_slow": rope["beta_slow"],
            "factor": rope["factor"],
            "original_max_position_embeddings": rope["original_max_position_embeddings"],
            "rope_type": "yarn", "truncate": rope["truncate"],
        },
        "rope_theta": int(theta) if float(theta).is_integer() else theta,
        "router_aux_loss_coef": 0.9,
        "sliding_window": hp["sliding_window"],
        "swiglu_limit": hp["swiglu_limit"],
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": hp["vocab_size"],
        "edgemoe_synthetic": synthetic,
    }


def generation_config() -> dict[str, Any]:
    """generation_config.json as published for gpt-oss."""
    return {"bos_token_id": _BOS, "do_sample": True,
            "eos_token_id": [_RETURN, _ENDOFTEXT, _CALL], "pad_token_id": _ENDOFTEXT}


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


@functools.cache
def _tokenizer_files() -> dict[str, bytes]:
    """The o200k_harmony tokenizer files (built once per process: about 4 s)."""
    return harmony_tokenizer_files(_o200k_spec())


# ------------------------------------------------------------------------------ data


@functools.cache
def _normal_quantiles() -> np.ndarray:
    """The standard normal's quantiles at (i + 0.5) / 65536, i = 0 .. 65535 (float64)."""
    inv_cdf = statistics.NormalDist().inv_cdf
    return np.array([inv_cdf((i + 0.5) / 65536) for i in range(65536)])


def _random_u16(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.bit_generator.random_raw(-(-n // 4)).view("<u2")[:n]


def _normal_bf16(t: HfTensor, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Normal values (``mean``, ``std``) as BF16 bits, drawn by inverse-CDF lookup of 16
    random bits (a normal up to bf16 rounding, tails cut at 4.3 std): several times faster
    than ``standard_normal`` plus rounding, which would make writing CPU-bound."""
    table = to_bf16(np.float32(t.mean) + np.float32(t.std) * _normal_quantiles()
                    .astype(np.float32)).astype("<u2")
    total = math.prod(t.shape)
    for off in range(0, total, CHUNK):
        yield table[_random_u16(rng, min(CHUNK, total - off))]


def _plus_offset_bf16(chunks: Iterator[np.ndarray], offset: np.ndarray
                     ) -> Iterator[np.ndarray]:
    """BF16 bits of ``chunks`` (one tensor) plus f32 ``offset``, rounded back to BF16."""
    bits = np.concatenate(list(chunks))
    yield to_bf16(bf16_to_f32(bits) + offset).astype("<u2")


def _tensor_chunks(t: HfTensor, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The tensor's little-endian data, a few MB at a time."""
    if t.kind == "normal":
        yield from _normal_bf16(t, rng)
        return
    for off in range(0, t.nbytes, CHUNK):
        n = min(CHUNK, t.nbytes - off)
        if t.kind == "codes":
            yield rng.bit_generator.random_raw(-(-n // 8)).view(np.uint8)[:n]
        else:
            yield np.full(n, t.fill, np.uint8)


def safetensors_header(tensors: list[HfTensor]) -> bytes:
    """The 8-byte length and JSON header of a safetensors file holding ``tensors`` in order
    (padded with spaces to a multiple of 8, as the safetensors library does)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape),
                          "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def _write_shard(path: Path, tensors: list[HfTensor], index: dict[str, int], seed: int,
                 bar: Progress, offsets: dict[str, np.ndarray] | None = None) -> None:
    """Write one shard; ``offsets`` (name -> f32 values) are added to those BF16 tensors."""
    offsets = offsets or {}
    with DirectWriter(path) as f:
        f.write(safetensors_header(tensors))
        for t in tensors:
            rng = np.random.default_rng([seed, index[t.name]])
            start = f.size
            chunks = _tensor_chunks(t, rng)
            if t.name in offsets:  # a router bias (a few dozen values)
                chunks = _plus_offset_bf16(chunks, offsets[t.name])
            for chunk in chunks:
                bar.advance(f.write(chunk), t.name)
            if f.size - start != t.nbytes:  # pragma: no cover - a bug in _tensor_chunks
                raise AssertionError(f"{t.name}: wrote {f.size - start} bytes, "
                                     f"expected {t.nbytes}")


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------ directory


def _staging_dir(out: Path) -> Path:
    """Check ``out`` may be written and create the ``OUT.partial-PID`` directory next to it."""
    if out.exists() and not out.is_dir():
        raise ConversionError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise ConversionError(f"{out}: directory exists and is not empty; give a new or "
                              "empty directory")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise ConversionError(f"{out}: parent directory {parent} does not exist")
    tmp = parent / f"{out.name}.partial-{os.getpid()}"
    try:
        tmp.mkdir()
    except OSError as e:
        raise ConversionError(f"{tmp}: cannot create: {e.strerror or e}") from e
    return tmp


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, out: Path) -> None:
    """fsync the staging directory and rename it to ``out`` (an empty ``out`` is replaced)."""
    _fsync_dir(tmp)
    try:
        os.replace(tmp, out)
    except OSError as e:
        raise ConversionError(f"{out}: cannot move {tmp} into place: {e.strerror or e}") from e
    _fsync_dir(tmp.parent)


def _write_checkpoint(tmp: Path, preset: str, seed: int, max_shard_bytes: int,
                      progress: bool, routing_skew: float = 0.0) -> tuple[int, int]:
    """Write every file into ``tmp``; returns (bytes of tensor data, number of shards)."""
    hp = PRESETS[preset]
    plan = hf_plan(hp)
    index = {t.name: i for i, t in enumerate(plan)}
    shards = shard_plan(plan, max_shard_bytes)
    offsets = router_bias_offsets(hp, seed, routing_skew)
    _write_file(tmp / "config.json", _json_bytes(hf_config(hp, preset, seed, routing_skew)))
    _write_file(tmp / "generation_config.json", _json_bytes(generation_config()))
    for name, data in _tokenizer_files().items():
        _write_file(tmp / name, data)
    total = sum(t.nbytes for t in plan)
    bar = Progress(total, enabled=progress)
    for fname, tensors in shards.items():
        _write_shard(tmp / fname, tensors, index, seed, bar, offsets)
    bar.finish()
    weight_map = {t.name: fname for fname, ts in shards.items() for t in ts}
    doc = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    _write_file(tmp / "model.safetensors.index.json", _json_bytes(doc))  # last
    return total, len(shards)


def write_synthetic_hf(
    preset: str, out_dir: str | os.PathLike[str], *, seed: int = 0,
    routing_skew: float = 0.0, max_shard_bytes: int = MAX_SHARD_BYTES, progress: bool = True,
) -> int:
    """Write the synthetic model ``preset`` as a Hugging Face checkpoint directory.

    ``out_dir`` must not exist or be empty; it appears only once complete. Returns the
    bytes of tensor data written. ``routing_skew`` adds the same router-bias offsets as
    ``synthetic.write_synthetic`` (``synthetic.routing_skew_offsets``).

    Raises:
        ConversionError: unknown preset, negative or non-finite routing_skew, ``out_dir``
            not empty or not creatable.
    """
    if preset not in PRESETS:
        raise ConversionError(f"unknown synthetic preset {preset!r} "
                              f"(known: {', '.join(PRESETS)})")
    if max_shard_bytes <= 0:
        raise ConversionError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    try:
        routing_skew = check_routing_skew(routing_skew)
    except ValueError as e:
        raise ConversionError(str(e)) from None
    out = Path(out_dir)
    start = time.monotonic()
    tmp = _staging_dir(out)
    try:
        total, n_shards = _write_checkpoint(tmp, preset, seed, max_shard_bytes, progress,
                                            routing_skew)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        print(f"wrote {out}/: {total / 1e9:.2f} GB of tensors in {n_shards} shard(s), "
              f"{time.monotonic() - start:.1f} s", file=sys.stderr)
    return total
